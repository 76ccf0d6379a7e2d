//! The agent endpoints over HTTP (the real router): join-token
//! registration, per-host tokens, heartbeats with reports, long-polled
//! assignments.

mod common;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::{api, Api};
use jdos_server::dev::{self, DevTopology};
use jdos_store::json as sjson;
use jdos_types::agent::{AgentSession, AssignmentList, HeartbeatReply};
use jdos_types::group::ContainerTemplate;
use jdos_types::resources::GIB;
use jdos_types::{keys, App, BusinessLevel, Group, Host, Resources};
use serde_json::{json, Value};

const JOIN: &str = "join.test-secret";

async fn setup() -> Api {
    let a = api().await;
    a.state.set_join_token(JOIN);
    a
}

fn register_body(name: &str, dc: &str) -> Value {
    json!({
        "host": {
            "name": name, "datacenter": dc, "switch": "langfang-s1", "rack": "langfang-s1-r1",
            "capacity": {"cpu_millis": 8000, "memory_bytes": 8589934592u64},
            "labels": {"jdos.io/agent": "yes"},
            "driver": "fake"
        },
        "version": "test"
    })
}

async fn register(a: &Api, name: &str) -> AgentSession {
    let r = a
        .post(
            "/api/v1/agents/register",
            JOIN,
            register_body(name, "langfang"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    serde_json::from_str(&r.text).unwrap()
}

#[tokio::test]
async fn register_needs_the_join_token_and_issues_a_host_token() {
    let a = setup().await;
    let r = a
        .post(
            "/api/v1/agents/register",
            "wrong",
            register_body("h1", "langfang"),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    // An API token is not a join token either.
    let r = a
        .post(
            "/api/v1/agents/register",
            &a.admin,
            register_body("h1", "langfang"),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    let s = register(&a, "h1").await;
    assert_eq!(s.host.name, "h1");
    assert_eq!(s.heartbeat_interval_ms, 1000);
    assert_eq!(
        (s.suspect_after_ms, s.down_after_ms, s.fence_after_ms),
        (3000, 6000, 5000)
    );
    // Bad input names the field and writes nothing.
    let rev = a.revision().await;
    let mut bad = register_body("Bad Name!", "langfang");
    bad["host"]["capacity"]["cpu_millis"] = json!(0);
    let r = a.post("/api/v1/agents/register", JOIN, bad).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(r.text.contains("host.name"), "{}", r.text);
    assert_eq!(a.revision().await, rev);
}

#[tokio::test]
async fn an_agent_token_only_opens_its_own_host() {
    let a = setup().await;
    let s1 = register(&a, "h1").await;
    let _s2 = register(&a, "h2").await;
    let hb = json!({"epoch": 0, "reports": []});
    let r = a
        .post("/api/v1/agents/h1/heartbeat", &s1.token, hb.clone())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = a
        .post("/api/v1/agents/h2/heartbeat", &s1.token, hb.clone())
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    let r = a.get("/api/v1/agents/h2/assignments", &s1.token).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    // The admin token is not an agent token.
    let r = a
        .post("/api/v1/agents/h1/heartbeat", &a.admin, hb.clone())
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    // Re-registering issues a new token; the old one stops working.
    let s1b = register(&a, "h1").await;
    let r = a
        .post("/api/v1/agents/h1/heartbeat", &s1.token, hb.clone())
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    let r = a.post("/api/v1/agents/h1/heartbeat", &s1b.token, hb).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

#[tokio::test]
async fn re_registration_keeps_epoch_state_and_cordon() {
    let a = setup().await;
    register(&a, "h1").await;
    let store = a.state.store();
    let mut h: Host = sjson::decode(&store.get(&keys::host("h1")).await.unwrap().unwrap()).unwrap();
    h.epoch = 3;
    h.cordoned = true;
    store
        .put(&keys::host("h1"), sjson::encode(&h).unwrap(), None)
        .await
        .unwrap();
    let mut body = register_body("h1", "langfang");
    body["host"]["capacity"]["cpu_millis"] = json!(16000);
    let r = a.post("/api/v1/agents/register", JOIN, body).await;
    let s: AgentSession = serde_json::from_str(&r.text).unwrap();
    assert_eq!((s.host.epoch, s.host.cordoned), (3, true));
    assert_eq!(s.host.capacity.cpu_millis, 16000);
    // Another datacenter is refused for a real host …
    let r = a
        .post(
            "/api/v1/agents/register",
            JOIN,
            register_body("h1", "suqian"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
}

#[tokio::test]
async fn an_agent_takes_over_a_simulated_host() {
    let a = setup().await;
    let topo = DevTopology {
        datacenters: 1,
        switches_per_dc: 1,
        racks_per_switch: 1,
        hosts_per_rack: 1,
        ..Default::default()
    };
    dev::seed(&a.state, &topo).await.unwrap();
    let name = "langfang-s1-r1-h1";
    let s = register(&a, name).await;
    assert_eq!(s.host.driver, "fake");
    assert!(!s.host.labels.contains_key("jdos.io/simulated"));
}

async fn seed_group(a: &Api) -> Group {
    let store = a.state.store();
    let app = App {
        name: "shop".into(),
        owner: "alice".into(),
        department: "retail".into(),
        business_level: BusinessLevel::Normal,
        description: String::new(),
        labels: Default::default(),
        created_at_ms: 0,
    };
    store
        .put(&keys::app("shop"), sjson::encode(&app).unwrap(), None)
        .await
        .unwrap();
    Group {
        app: "shop".into(),
        env: "production".into(),
        name: "web".into(),
        datacenter: "langfang".into(),
        replicas: 1,
        template: ContainerTemplate {
            image: "jdos-busybox:latest".into(),
            resources: Resources::new(1000, GIB),
            ..Default::default()
        },
        placement: Default::default(),
        autoscaling: None,
    }
}

#[tokio::test]
async fn long_poll_wakes_on_a_new_work_order_and_reports_flow_back() {
    let a = setup().await;
    let s = register(&a, "h1").await;
    let g = seed_group(&a).await;
    let r = a
        .get("/api/v1/agents/h1/assignments?after=0", &s.token)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let first: AssignmentList = serde_json::from_str(&r.text).unwrap();
    assert!(first.items.is_empty());
    // Nothing changes: the poll waits out its wait_ms.
    let t = Instant::now();
    let path = format!(
        "/api/v1/agents/h1/assignments?after={}&wait_ms=150",
        first.revision
    );
    let r = a.get(&path, &s.token).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        t.elapsed() >= Duration::from_millis(140),
        "{:?}",
        t.elapsed()
    );
    // A work order arrives while the agent waits: it answers within ms.
    let poll = {
        let app = a.app.clone();
        let token = s.token.clone();
        let path = format!(
            "/api/v1/agents/h1/assignments?after={}&wait_ms=10000",
            first.revision
        );
        tokio::spawn(async move {
            use tower::ServiceExt;
            let req = axum::http::Request::get(path)
                .header("authorization", format!("Bearer {token}"))
                .body(axum::body::Body::empty())
                .unwrap();
            let resp = app.oneshot(req).await.unwrap();
            let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
                .await
                .unwrap();
            (
                Instant::now(),
                serde_json::from_slice::<AssignmentList>(&bytes).unwrap(),
            )
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let cs = a.state.platform().place_missing(&g, 1).await.unwrap();
    let ids: Vec<_> = cs.iter().map(|c| c.id.clone()).collect();
    let published = Instant::now();
    a.state.platform().publish(&g, &ids).await.unwrap();
    let (answered, list) = poll.await.unwrap();
    let latency = answered.duration_since(published);
    assert!(
        latency < Duration::from_millis(500),
        "long-poll answered after {latency:?}"
    );
    assert_eq!(list.items.len(), 1);
    assert!(list.revision > first.revision);
    let c = &list.items[0].container;
    assert_eq!(c.host.as_deref(), Some("h1"));
    // The agent reports it running; a stale-epoch report is ignored.
    let stale = json!({"epoch": 0, "reports": [{
        "id": c.id, "phase": "failed", "epoch": c.host_epoch + 1, "generation": 0
    }]});
    let r = a.post("/api/v1/agents/h1/heartbeat", &s.token, stale).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let rec = a.state.platform().records(&ids).await.unwrap();
    assert_eq!(rec[0].0.phase, jdos_types::ContainerPhase::Scheduled);
    let hb = json!({"epoch": 0, "reports": [{
        "id": c.id, "phase": "running", "epoch": c.host_epoch, "generation": 0
    }]});
    let r = a.post("/api/v1/agents/h1/heartbeat", &s.token, hb).await;
    let reply: HeartbeatReply = serde_json::from_str(&r.text).unwrap();
    assert_eq!(reply.assignments_revision, list.revision);
    let rec = a.state.platform().records(&ids).await.unwrap();
    assert_eq!(rec[0].0.phase, jdos_types::ContainerPhase::Running);
    // The host view lists it through the by-host index.
    let d = a.get("/api/v1/hosts/h1", &a.admin).await.json();
    assert_eq!(d["containers"].as_array().unwrap().len(), 1);
}

/// With `known` (the revision of the list the agent holds), orders that did
/// not change since come by identity only; changed and new ones in full.
#[tokio::test]
async fn orders_unchanged_since_the_known_list_come_by_identity_only() {
    let a = setup().await;
    let s = register(&a, "h1").await;
    let mut g = seed_group(&a).await;
    g.placement.max_per_host = Some(4);
    let fetch = |after: u64, known: u64| {
        let a = &a;
        let token = s.token.clone();
        async move {
            let path = format!("/api/v1/agents/h1/assignments?after={after}&known={known}");
            let r = a.get(&path, &token).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            serde_json::from_str::<AssignmentList>(&r.text).unwrap()
        }
    };
    let platform = a.state.platform();
    let cs = platform.place_missing(&g, 3).await.unwrap();
    let ids: Vec<_> = cs.iter().map(|c| c.id.clone()).collect();
    platform.publish(&g, &ids).await.unwrap();
    let l1 = fetch(0, 0).await;
    assert_eq!((l1.items.len(), l1.kept.len()), (3, 0));
    // Nothing changed since l1: every order by identity.
    let same = fetch(0, l1.revision).await;
    assert!(same.items.is_empty());
    assert_eq!(same.kept.len(), 3);

    // One order changes (a rolling restart's generation), one is added.
    let order = &l1.items[0];
    let mut bumped = order.clone();
    bumped.generation += 1;
    a.state
        .store()
        .put(
            &keys::assignment("h1", order.id()),
            sjson::encode(&bumped).unwrap(),
            None,
        )
        .await
        .unwrap();
    let more = platform.place_missing(&g, 4).await.unwrap();
    let new_ids: Vec<_> = more
        .iter()
        .map(|c| c.id.clone())
        .filter(|id| !ids.contains(id))
        .collect();
    assert_eq!(new_ids.len(), 1);
    platform.publish(&g, &new_ids).await.unwrap();
    let l2 = fetch(l1.revision, l1.revision).await;
    let full = fetch(0, 0).await;
    assert_eq!(full.items.len(), 4);
    assert_eq!(l2.revision, full.revision);
    let mut sent: Vec<_> = l2.items.iter().map(|a| a.id().clone()).collect();
    sent.sort();
    let mut want = vec![order.id().clone(), new_ids[0].clone()];
    want.sort();
    assert_eq!(sent, want, "the changed and the new order in full");
    assert_eq!(l2.kept.len(), 2);
    // Together they are the full list, each sent order as it is now.
    for item in &l2.items {
        assert!(full.items.contains(item));
    }
    for id in &l2.kept {
        let now = full.items.iter().find(|a| a.id() == id).unwrap();
        assert!(l1.items.contains(now), "{id} unchanged since l1");
    }
}

#[tokio::test]
async fn heartbeats_are_kept_in_memory_not_written_every_time() {
    let a = setup().await;
    let s = register(&a, "h1").await;
    let hb = json!({"epoch": 0, "reports": []});
    let r = a
        .post("/api/v1/agents/h1/heartbeat", &s.token, hb.clone())
        .await;
    let reply: HeartbeatReply = serde_json::from_str(&r.text).unwrap();
    assert!(!reply.want_full, "registration counts as seen");
    let rev = a.revision().await;
    for _ in 0..5 {
        let r = a
            .post("/api/v1/agents/h1/heartbeat", &s.token, hb.clone())
            .await;
        assert_eq!(r.status, StatusCode::OK);
    }
    assert_eq!(
        a.revision().await,
        rev,
        "heartbeats without news write nothing"
    );
    let seen = a.state.liveness().get("h1").unwrap();
    assert!(seen.last_seen_ms > 0);
}
