//! The real server over TCP: admin token bootstrap on a redb data dir,
//! restart, openapi, metrics, dev seeding, graceful shutdown.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::http::StatusCode;

use jdos_server::dev::{self, DevTopology};
use jdos_server::{api, start, AppState, ServerConfig};
use jdos_store::{MemoryStore, Store};
use serde_json::Value;

fn config(dir: &std::path::Path) -> ServerConfig {
    ServerConfig::new("127.0.0.1:0".parse().unwrap(), dir)
}

#[tokio::test]
async fn admin_token_is_created_once_per_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(config(dir.path())).await.unwrap();
    let token = h
        .admin_token
        .clone()
        .expect("first start creates the admin token");
    let file = dir.path().join("admin.token");
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), token);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    assert!(dir.path().join("jdos.redb").exists());
    let client = reqwest::Client::new();
    let who: Value = client
        .get(format!("{}/api/v1/whoami", h.url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(who["role"], "admin");
    let rev = h.store().revision().await.unwrap();
    h.shutdown().await;

    // Same data dir: no new token, the old one still works, state kept.
    let h = start(config(dir.path())).await.unwrap();
    assert_eq!(h.admin_token, None);
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), token);
    // Kept, not reset (the workflow worker's registration writes on start).
    assert!(h.store().revision().await.unwrap() >= rev);
    let r = client
        .get(format!("{}/api/v1/whoami", h.url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let tokens: Value = client
        .get(format!("{}/api/v1/tokens", h.url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tokens["items"].as_array().unwrap().len(), 1);
    let addr = h.addr;
    h.shutdown().await;
    // Shut down means the port no longer answers.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn openapi_lists_every_route_with_body_schemas() {
    let a = common::api().await;
    let doc = a
        .raw("GET", "/api/v1/openapi.json", None, None)
        .await
        .json();
    assert_eq!(doc["openapi"], "3.0.3");
    let table = api::routes();
    let mut documented = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for m in ops.as_object().unwrap().keys() {
            documented.insert((m.to_uppercase(), path.clone()));
        }
    }
    let routed: BTreeSet<(String, String)> = table
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    assert_eq!(documented, routed);
    for want in [
        ("POST", "/api/v1/hosts"),
        ("PATCH", "/api/v1/hosts/{name}"),
        ("POST", "/api/v1/hosts/{name}/cordon"),
        ("GET", "/api/v1/datacenters"),
        ("DELETE", "/api/v1/apps/{name}"),
        ("GET", "/api/v1/events"),
        ("DELETE", "/api/v1/tokens/{id}"),
        ("GET", "/metrics"),
    ] {
        assert!(
            routed.contains(&(want.0.to_string(), want.1.to_string())),
            "{want:?}"
        );
    }
    let schemas = &doc["components"]["schemas"];
    let reg = &schemas["RegisterHost"];
    let required: BTreeSet<&str> = reg["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        required,
        ["capacity", "datacenter", "name", "rack", "switch"].into()
    );
    assert_eq!(
        reg["properties"]["capacity"]["properties"]["cpu_millis"]["type"],
        "integer"
    );
    assert_eq!(
        reg["properties"]["labels"]["additionalProperties"]["type"],
        "string"
    );
    assert_eq!(
        schemas["CreateToken"]["properties"]["role"]["enum"][1],
        "ops"
    );
    for s in [
        "Host",
        "HostDetail",
        "HostList",
        "App",
        "AppList",
        "EventList",
        "TokenCreated",
        "TopologyNodeArray",
        "WhoAmI",
        "ApiError",
        "UpdateHost",
    ] {
        assert!(schemas[s].is_object(), "schema {s} missing");
    }
    let op = &doc["paths"]["/api/v1/hosts/{name}"]["patch"];
    assert_eq!(
        op["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/UpdateHost"
    );
    assert_eq!(op["parameters"][0]["name"], "name");
    assert_eq!(
        doc["paths"]["/api/v1/hosts"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
}

#[tokio::test]
async fn metrics_expose_requests_latency_hosts_and_revision() {
    let a = common::api().await;
    a.register(&a.admin, "h1", "dc1", "s1", "r1").await;
    a.register(&a.admin, "h2", "dc1", "s1", "r1").await;
    a.call("POST", "/api/v1/hosts/h2/cordon", &a.admin, None)
        .await;
    a.get("/api/v1/hosts/h1", &a.admin).await;
    a.get("/api/v1/hosts/nope", &a.admin).await;
    let m = a.raw("GET", "/metrics", None, None).await.text;
    for line in [
        "jdos_http_requests_total{route=\"/api/v1/hosts\",method=\"POST\",status=\"201\"} 2",
        "jdos_http_requests_total{route=\"/api/v1/hosts/{name}\",method=\"GET\",status=\"200\"} 1",
        "jdos_http_requests_total{route=\"/api/v1/hosts/{name}\",method=\"GET\",status=\"404\"} 1",
        "jdos_http_request_duration_seconds_count{route=\"/api/v1/hosts\",method=\"POST\"} 2",
        "jdos_http_request_duration_seconds_bucket{route=\"/api/v1/hosts\",method=\"POST\",le=\"+Inf\"} 2",
        "jdos_hosts{state=\"ready\"} 2",
        "jdos_hosts{state=\"down\"} 0",
        "jdos_hosts_cordoned 1",
        "# TYPE jdos_http_request_duration_seconds histogram",
    ] {
        assert!(m.lines().any(|l| l == line), "missing {line:?} in\n{m}");
    }
    let rev = a.revision().await;
    assert!(m.contains(&format!("jdos_store_revision {rev}")), "{m}");
}

#[tokio::test]
async fn made_up_methods_do_not_grow_the_metric_labels() {
    let a = common::api().await;
    for i in 0..50 {
        let r = a.raw(&format!("X{i}"), "/healthz", None, None).await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{}", r.text);
    }
    let m = a.raw("GET", "/metrics", None, None).await.text;
    assert!(!m.contains("method=\"X0\""), "{m}");
    let line = "jdos_http_requests_total{route=\"/healthz\",method=\"other\",status=\"405\"} 50";
    assert!(m.lines().any(|l| l == line), "missing {line:?} in\n{m}");
}

#[tokio::test]
async fn dev_seed_registers_the_simulated_topology_idempotently() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let state = AppState::new(store);
    let topo = DevTopology::default();
    let hosts = dev::seed(&state, &topo).await.unwrap();
    assert_eq!(hosts.len(), 16);
    assert_eq!(topo.host_count(), 16);
    let names: BTreeSet<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names.len(), 16);
    assert!(hosts.iter().all(|h| h.driver == dev::SIMULATED_DRIVER));
    let dcs: BTreeSet<&str> = hosts.iter().map(|h| h.datacenter.as_str()).collect();
    assert_eq!(dcs, ["langfang", "suqian"].into());
    // Seeding again updates the same hosts.
    let again = dev::seed(&state, &topo).await.unwrap();
    assert_eq!(again.len(), 16);
    let all: Vec<jdos_types::Host> =
        jdos_server::kv::list_all(state.store(), jdos_types::keys::HOSTS)
            .await
            .unwrap();
    assert_eq!(all.len(), 16);
    let evs: Vec<jdos_types::Event> =
        jdos_server::kv::list_all(state.store(), jdos_types::keys::EVENTS)
            .await
            .unwrap();
    assert_eq!(
        evs.iter()
            .filter(|e| e.action == "host.register" && e.actor == "system:dev")
            .count(),
        32
    );
    let tree = api::topology::tree(&all, &[]);
    assert_eq!(tree.len(), 2);
    assert!(tree
        .iter()
        .all(|dc| dc.hosts == 8 && dc.children.len() == 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_on_one_store_share_one_event_sequence() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let r1 = AppState::new(store.clone());
    let r2 = AppState::new(store.clone());
    let topo = DevTopology {
        hosts_per_rack: 4,
        ..DevTopology::default()
    };
    let (a, b) = tokio::join!(dev::seed(&r1, &topo), dev::seed(&r2, &topo));
    assert_eq!(a.unwrap().len(), 32);
    assert_eq!(b.unwrap().len(), 32);
    let evs: Vec<jdos_types::Event> =
        jdos_server::kv::list_all(store.as_ref(), jdos_types::keys::EVENTS)
            .await
            .unwrap();
    let seqs: Vec<u64> = evs.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=64).collect::<Vec<_>>());
    assert_eq!(
        evs.iter()
            .filter(|e| e.message.starts_with("registered"))
            .count(),
        32
    );
}

#[tokio::test]
async fn restart_rebuilds_the_ipam_index_before_serving() {
    use jdos_ipam::Slot;
    use jdos_types::{GroupKey, InstanceId, Network};

    let dir = tempfile::tempdir().unwrap();
    let h = start(config(dir.path())).await.unwrap();
    let net = Network {
        name: "prod-a".into(),
        vlan: 100,
        subnet: "10.77.0.0/24".parse().unwrap(),
        gateway: "10.77.0.1".parse().unwrap(),
        reserved: vec![],
        zone: "prod".into(),
        switches: vec!["sw1".into()],
        quarantine_secs: 300,
    };
    let ipam = h.state().ipam().clone();
    ipam.create_network(net).await.unwrap();
    let id = InstanceId::new(&GroupKey::new("shop", "production", "web"), 0);
    let ip = ipam.allocate("prod-a", &id, None, 1_000).await.unwrap().ip;
    drop(ipam);
    h.shutdown().await;

    // A fresh process: the index holds the address before any request
    // touched the network, and the identity gets its address back.
    let h = start(config(dir.path())).await.unwrap();
    let ipam = h.state().ipam().clone();
    assert_eq!(ipam.index_slot("prod-a", ip), Some(Slot::Assigned));
    assert_eq!(
        ipam.allocate("prod-a", &id, None, 2_000).await.unwrap().ip,
        ip
    );
    h.shutdown().await;
}

/// Two servers on one store: one leads each singleton controller (and
/// `GET /api/v1/failover` says which); when it stops, the other takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_store_elect_one_leader_and_hand_over_at_stop() {
    use jdos_server::leader;
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = |dir: &std::path::Path, id: &str| {
        let mut c = config(dir);
        c.store_url = Some("memory://".into());
        c.worker_id = Some(id.into());
        jdos_server::start_with_store(c, AppState::new(store.clone()))
    };
    let holders = || async {
        let mut h = Vec::new();
        for c in [leader::FAILOVER, leader::AUTOSCALE, leader::ALERTING] {
            let rec = leader::current(store.as_ref(), c).await.unwrap();
            h.push(rec.map(|r| r.holder));
        }
        h
    };
    let s1 = server(d1.path(), "s1").await.unwrap();
    let token = s1.admin_token.clone().unwrap();
    let t0 = std::time::Instant::now();
    while holders().await != vec![Some("s1".to_string()); 3] {
        assert!(t0.elapsed().as_secs() < 5, "s1 alone takes every lead");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let s2 = server(d2.path(), "s2").await.unwrap();
    let client = reqwest::Client::new();
    let led_by = |url: String| {
        let (client, token) = (client.clone(), token.clone());
        async move {
            let v: Value = client
                .get(format!("{url}/api/v1/failover"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["leader"].as_str().map(str::to_string)
        }
    };
    // A second server keeps out.
    tokio::time::sleep(leader::LeaderConfig::default().period()).await;
    assert_eq!(holders().await, vec![Some("s1".to_string()); 3]);
    assert_eq!(led_by(s1.url()).await.as_deref(), Some("s1"));
    assert_eq!(led_by(s2.url()).await.as_deref(), Some("s1"));

    let url2 = s2.url();
    s1.shutdown().await;
    let period = leader::LeaderConfig::default().period();
    let t0 = std::time::Instant::now();
    while led_by(url2.clone()).await.as_deref() != Some("s2") {
        assert!(
            t0.elapsed() < period + std::time::Duration::from_secs(1),
            "s2 took over within one period"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let t0 = std::time::Instant::now();
    while holders().await != vec![Some("s2".to_string()); 3] {
        assert!(t0.elapsed() < period + std::time::Duration::from_secs(1));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    s2.shutdown().await;
}
