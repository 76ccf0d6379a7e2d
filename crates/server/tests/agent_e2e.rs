//! Real `jdos_agent` agents (fake driver) against a real server over HTTP:
//! placement reaches running through their reports, a relocation moves a
//! container with its IP (the old host's agent destroys its copy), and a
//! retired container is finalized once its agent removed it.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use jdos_agent::{Agent, AgentConfig, HttpControlPlane};
use jdos_runtime::{Driver, FakeDriver, LabelFilter};
use jdos_server::{ServerConfig, ServerHandle};
use jdos_store::json;
use jdos_types::group::ContainerTemplate;
use jdos_types::resources::GIB;
use jdos_types::{keys, App, BusinessLevel, ContainerPhase, Group, InstanceId, Network, Resources};

const JOIN: &str = "join.e2e-secret";

struct Estate {
    server: ServerHandle,
    drivers: HashMap<String, Arc<FakeDriver>>,
    _stop: tokio::sync::watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

async fn estate() -> Estate {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new("127.0.0.1:0".parse().unwrap(), dir.path());
    config.store_url = Some("memory://".into());
    config.join_token = Some(JOIN.into());
    let server = jdos_server::start(config).await.unwrap();
    let st = server.state().clone();
    st.ipam()
        .create_network(Network {
            name: "net1".into(),
            vlan: 100,
            subnet: "10.9.0.0/24".parse().unwrap(),
            gateway: "10.9.0.1".parse().unwrap(),
            reserved: vec![],
            zone: "default".into(),
            switches: vec!["sw1".into(), "sw2".into()],
            quarantine_secs: 300,
        })
        .await
        .unwrap();
    let app = App {
        name: "shop".into(),
        owner: "alice".into(),
        department: "retail".into(),
        business_level: BusinessLevel::Normal,
        description: String::new(),
        labels: Default::default(),
        created_at_ms: 0,
    };
    st.store()
        .put(&keys::app("shop"), json::encode(&app).unwrap(), None)
        .await
        .unwrap();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let mut drivers = HashMap::new();
    for (name, sw) in [("h1", "sw1"), ("h2", "sw1"), ("h3", "sw2"), ("h4", "sw2")] {
        let mut cfg = AgentConfig::new(
            name,
            "dc1",
            sw,
            &format!("{sw}-r1"),
            Resources::new(4000, 8 * GIB),
        );
        cfg.resync_interval = Duration::from_millis(200);
        let driver = Arc::new(FakeDriver::new());
        drivers.insert(name.to_string(), driver.clone());
        let control = Arc::new(HttpControlPlane::new(&server.url(), JOIN).unwrap());
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = Agent::new(cfg).run(driver, control, shutdown).await {
                panic!("agent stopped: {e}");
            }
        });
    }
    // All four hosts registered.
    for _ in 0..200 {
        let hosts = jdos_store::json::list_all::<jdos_types::Host>(st.store(), keys::HOSTS)
            .await
            .unwrap();
        if hosts.len() == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Estate {
        server,
        drivers,
        _stop: stop,
        _dir: dir,
    }
}

fn group() -> Group {
    Group {
        app: "shop".into(),
        env: "production".into(),
        name: "web".into(),
        datacenter: "dc1".into(),
        replicas: 2,
        template: ContainerTemplate {
            image: "jdos-busybox:latest".into(),
            resources: Resources::new(1000, GIB),
            ..Default::default()
        },
        placement: Default::default(),
        autoscaling: None,
    }
}

/// The instances a host's engine holds.
async fn on(d: &FakeDriver) -> Vec<(InstanceId, Option<Ipv4Addr>)> {
    d.list(&LabelFilter::all())
        .await
        .unwrap()
        .into_iter()
        .filter_map(|s| s.instance.map(|i| (i, s.ip)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_agents_run_move_and_remove_containers() {
    let e = estate().await;
    let p = e.server.state().platform().clone();
    let g = group();
    let cs = p.place_missing(&g, 2).await.unwrap();
    let ids: Vec<InstanceId> = cs.iter().map(|c| c.id.clone()).collect();
    p.publish(&g, &ids).await.unwrap();
    let running = p
        .wait_phase(&ids, &[ContainerPhase::Running], Duration::from_secs(15))
        .await
        .unwrap();
    for c in &running {
        let d = &e.drivers[c.host.as_ref().unwrap()];
        let held = on(d).await;
        assert!(
            held.iter().any(|(i, _)| *i == c.id),
            "{} not on its host",
            c.id
        );
    }

    // Move index 0 off its host: same IP, old copy destroyed.
    let victim = running[0].clone();
    let old = victim.host.clone().unwrap();
    let moved = p
        .relocate(
            &g,
            std::slice::from_ref(&victim.id),
            std::slice::from_ref(&old),
            "test",
        )
        .await
        .unwrap();
    let new_host = moved[0].host.clone().unwrap();
    assert_ne!(new_host, old);
    let after = p
        .wait_phase(
            std::slice::from_ref(&victim.id),
            &[ContainerPhase::Running],
            Duration::from_secs(15),
        )
        .await
        .unwrap();
    assert_eq!(after[0].ip, victim.ip);
    assert_eq!(after[0].host.as_deref(), Some(new_host.as_str()));
    let mut gone = false;
    for _ in 0..200 {
        if !on(&e.drivers[&old])
            .await
            .iter()
            .any(|(i, _)| *i == victim.id)
        {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(gone, "the old host's agent destroyed its copy");

    // Retire index 1: its agent removes it, the sweeper finalizes it.
    let last = running[1].clone();
    p.retire(std::slice::from_ref(&last.id)).await.unwrap();
    p.wait_phase(std::slice::from_ref(&last.id), &[], Duration::from_secs(15))
        .await
        .unwrap();
    assert!(!on(&e.drivers[last.host.as_ref().unwrap()])
        .await
        .iter()
        .any(|(i, _)| *i == last.id));
    assert!(e
        .server
        .state()
        .ipam()
        .lookup(&last.id)
        .await
        .unwrap()
        .is_none());
    e.server.shutdown_trigger().shutdown();
}
