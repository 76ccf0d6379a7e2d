//! The hooks executor against a real HTTP server on loopback.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use jdos_server::hooks::{HookExecutor, HookOrigin, HookPayload, HookPhase};
use jdos_server::AppState;
use jdos_store::{json, MemoryStore};
use jdos_types::group::{Hook, HookAction, Hooks};
use jdos_types::{keys, Container, Event, EventResult, GroupKey, InstanceId, Resources};

/// What the receiving server does with attempt n (1-based).
#[derive(Clone)]
struct Receiver {
    calls: Arc<AtomicU32>,
    bodies: Arc<Mutex<Vec<HookPayload>>>,
    /// Attempts that fail with 503 before one succeeds (u32::MAX = never).
    fail_first: u32,
    /// Sleep this long before answering.
    delay: Duration,
    /// Status of a failing answer.
    fail_status: StatusCode,
}

async fn receive(
    State(r): State<Receiver>,
    Json(body): Json<HookPayload>,
) -> (StatusCode, &'static str) {
    let n = r.calls.fetch_add(1, Ordering::SeqCst) + 1;
    r.bodies.lock().unwrap().push(body);
    tokio::time::sleep(r.delay).await;
    if n <= r.fail_first {
        (r.fail_status, "grant refused: user exists")
    } else {
        (StatusCode::OK, "ok")
    }
}

async fn serve(r: Receiver) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/grant", post(receive)).with_state(r);
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/grant")
}

fn receiver(fail_first: u32, delay: Duration, fail_status: StatusCode) -> Receiver {
    Receiver {
        calls: Arc::new(AtomicU32::new(0)),
        bodies: Arc::new(Mutex::new(Vec::new())),
        fail_first,
        delay,
        fail_status,
    }
}

fn container() -> Container {
    let g = GroupKey::new("shop", "production", "web");
    Container {
        id: InstanceId::new(&g, 3),
        datacenter: "dc1".into(),
        host: Some("h1".into()),
        host_epoch: 1,
        network: Some("net1".into()),
        ip: Some("10.0.0.7".parse().unwrap()),
        image: "jdos-busybox:latest".into(),
        resources: Resources::default(),
        desired: Default::default(),
        phase: Default::default(),
        restarts: 0,
        message: String::new(),
        created_at_ms: 0,
        updated_at_ms: 0,
    }
}

fn hooks(url: &str, timeout_ms: u64, retries: u32) -> Hooks {
    Hooks {
        pre_start: vec![Hook {
            name: "db-grant".into(),
            action: HookAction::Webhook {
                url: url.to_string(),
                method: "POST".into(),
                headers: BTreeMap::from([("x-team".to_string(), "dba".to_string())]),
            },
            timeout_ms,
            retries,
        }],
        ..Default::default()
    }
}

fn executor() -> HookExecutor {
    HookExecutor::new(Duration::from_millis(10), Duration::from_millis(50))
}

fn origin() -> HookOrigin {
    HookOrigin {
        actor: "alice".into(),
        task: Some("t-1".into()),
        department: Some("retail".into()),
    }
}

async fn events(st: &AppState) -> Vec<Event> {
    json::list_all(st.store(), keys::EVENTS).await.unwrap()
}

#[tokio::test]
async fn a_2xx_answer_is_success_and_the_body_describes_the_container() {
    let r = receiver(0, Duration::ZERO, StatusCode::SERVICE_UNAVAILABLE);
    let url = serve(r.clone()).await;
    let st = AppState::new(Arc::new(MemoryStore::new()));
    executor()
        .run(
            &st,
            &hooks(&url, 1000, 2),
            HookPhase::PreStart,
            &container(),
            &origin(),
        )
        .await
        .unwrap();
    assert_eq!(r.calls.load(Ordering::SeqCst), 1);
    let body = r.bodies.lock().unwrap()[0].clone();
    assert_eq!(body.container, "shop/production/web/3");
    assert_eq!(body.phase, HookPhase::PreStart);
    assert_eq!(body.hook, "db-grant");
    assert_eq!(body.ip, Some("10.0.0.7".parse().unwrap()));
    assert_eq!(body.host.as_deref(), Some("h1"));
    assert_eq!(body.task.as_deref(), Some("t-1"));
    assert_eq!(body.attempt, 1);
    let ev = events(&st).await;
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].action, "hook.pre_start");
    assert_eq!(ev[0].result, EventResult::Success);
    assert_eq!(ev[0].object, "shop/production/web/3");
    assert_eq!(ev[0].department.as_deref(), Some("retail"));
    assert!(ev[0].message.contains("answered 200"), "{}", ev[0].message);
}

#[tokio::test]
async fn a_failing_attempt_is_retried_until_one_succeeds() {
    let r = receiver(2, Duration::ZERO, StatusCode::SERVICE_UNAVAILABLE);
    let url = serve(r.clone()).await;
    let st = AppState::new(Arc::new(MemoryStore::new()));
    executor()
        .run(
            &st,
            &hooks(&url, 1000, 2),
            HookPhase::PreStart,
            &container(),
            &origin(),
        )
        .await
        .unwrap();
    assert_eq!(r.calls.load(Ordering::SeqCst), 3);
    let attempts: Vec<u32> = r.bodies.lock().unwrap().iter().map(|b| b.attempt).collect();
    assert_eq!(attempts, [1, 2, 3]);
    let ev = events(&st).await;
    assert_eq!(ev.len(), 1, "one event per hook run, not per attempt");
    assert!(ev[0].message.contains("attempt 3/3"), "{}", ev[0].message);
}

#[tokio::test]
async fn an_attempt_past_its_timeout_fails_the_hook() {
    let r = receiver(0, Duration::from_millis(800), StatusCode::OK);
    let url = serve(r.clone()).await;
    let st = AppState::new(Arc::new(MemoryStore::new()));
    let started = std::time::Instant::now();
    let err = executor()
        .run(
            &st,
            &hooks(&url, 100, 1),
            HookPhase::PreStart,
            &container(),
            &origin(),
        )
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_millis(700),
        "attempts were not cut short"
    );
    assert_eq!(err.attempts, 2);
    assert!(err.reason.contains("timed out after 100 ms"), "{err}");
    let ev = events(&st).await;
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].result, EventResult::Failure);
    assert!(ev[0].message.contains("timed out"), "{}", ev[0].message);
}

#[tokio::test]
async fn a_non_2xx_answer_fails_with_its_status_and_body() {
    let r = receiver(u32::MAX, Duration::ZERO, StatusCode::CONFLICT);
    let url = serve(r.clone()).await;
    let st = AppState::new(Arc::new(MemoryStore::new()));
    let err = executor()
        .run(
            &st,
            &hooks(&url, 1000, 2),
            HookPhase::PreStart,
            &container(),
            &origin(),
        )
        .await
        .unwrap_err();
    assert_eq!(r.calls.load(Ordering::SeqCst), 3);
    assert_eq!(err.hook, "db-grant");
    assert_eq!(err.phase, HookPhase::PreStart);
    assert!(err.reason.contains("answered 409: grant refused"), "{err}");
    let ev = events(&st).await;
    assert_eq!(ev[0].result, EventResult::Failure);
    assert!(ev[0].message.contains("409"), "{}", ev[0].message);
}

#[tokio::test]
async fn a_refused_connection_is_a_clear_failure() {
    // Bind then drop: nothing listens on that port any more.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let st = AppState::new(Arc::new(MemoryStore::new()));
    let err = executor()
        .run(
            &st,
            &hooks(&format!("http://127.0.0.1:{port}/grant"), 500, 0),
            HookPhase::PreStart,
            &container(),
            &origin(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.attempts, 1);
    assert!(err.reason.contains("failed"), "{err}");
}

#[tokio::test]
async fn builtins_record_their_run_and_stop_at_the_first_failure() {
    let r = receiver(u32::MAX, Duration::ZERO, StatusCode::INTERNAL_SERVER_ERROR);
    let url = serve(r.clone()).await;
    let st = AppState::new(Arc::new(MemoryStore::new()));
    let mut h = hooks(&url, 500, 0);
    let log = Hook {
        name: "announce".into(),
        action: HookAction::Builtin {
            builtin: "log".into(),
            params: BTreeMap::from([("message".to_string(), "web replica up".to_string())]),
        },
        timeout_ms: 1000,
        retries: 0,
    };
    let noop = Hook {
        name: "later".into(),
        action: HookAction::Builtin {
            builtin: "noop".into(),
            params: BTreeMap::new(),
        },
        timeout_ms: 1000,
        retries: 0,
    };
    h.post_start = vec![log, h.pre_start[0].clone(), noop];
    let err = executor()
        .run(&st, &h, HookPhase::PostStart, &container(), &origin())
        .await
        .unwrap_err();
    assert_eq!(err.hook, "db-grant");
    let ev = events(&st).await;
    let got: Vec<(&str, EventResult)> = ev.iter().map(|e| (e.action.as_str(), e.result)).collect();
    assert_eq!(
        got,
        [
            ("hook.post_start", EventResult::Success),
            ("hook.post_start", EventResult::Failure)
        ],
        "the hook after the failed one does not run"
    );
    assert!(ev[0].message.contains("web replica up"));
}

#[tokio::test]
async fn many_containers_run_in_parallel_each_with_its_own_outcome() {
    let r = receiver(0, Duration::from_millis(100), StatusCode::OK);
    let url = serve(r.clone()).await;
    let st = AppState::new(Arc::new(MemoryStore::new()));
    let cs: Vec<Container> = (0..20)
        .map(|i| {
            let mut c = container();
            c.id.index = i;
            c
        })
        .collect();
    let started = std::time::Instant::now();
    let out = executor()
        .run_many(
            &st,
            &hooks(&url, 2000, 0),
            HookPhase::PreStart,
            &cs,
            &origin(),
        )
        .await;
    assert!(out.iter().all(Result::is_ok));
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "20 × 100 ms hooks took {:?}: not parallel",
        started.elapsed()
    );
    assert_eq!(r.calls.load(Ordering::SeqCst), 20);
}
