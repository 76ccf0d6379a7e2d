//! Resume: a dead worker's tasks are taken over after its lease expires,
//! or at once by the same worker id restarted.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use jdos_workflow::{EngineConfig, TaskState};
use serde_json::json;

const T: Duration = Duration::from_secs(20);

async fn until_step_started(op: &ScriptOp, store: &dyn jdos_store::Store, id: &str, step: usize) {
    let deadline = Instant::now() + T;
    loop {
        let kv = store
            .get(&jdos_types::keys::task(id))
            .await
            .unwrap()
            .unwrap();
        let t: jdos_workflow::Task = serde_json::from_slice(&kv.value).unwrap();
        if t.steps[step].state == TaskState::Running {
            // Give the step's future time to start.
            tokio::time::sleep(Duration::from_millis(30)).await;
            return;
        }
        assert!(
            Instant::now() < deadline,
            "step {step} never started: {:?}",
            op.calls()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_worker_resumes_a_dead_workers_task_after_its_lease_expires() {
    let store = memory().await;
    let op = ScriptOp::new();
    let ttl = Duration::from_millis(600);
    let cfg = |id| EngineConfig {
        lease_ttl: ttl,
        ..config(id)
    };
    let a = start(engine(
        store.clone(),
        cfg("a"),
        op.clone(),
        Arc::new(Recorder::default()),
    ));
    let t = a
        .engine
        .submit(script(
            "shop",
            &["place", "publish", "wait"],
            json!({"publish": ["hang_on:a"]}),
        ))
        .await
        .unwrap();
    until_step_started(&op, store.as_ref(), &t.id, 1).await;
    // A second task of the app queues behind the first.
    let t2 = a
        .engine
        .submit(script("shop", &["x"], json!({})))
        .await
        .unwrap();
    let b = start(engine(
        store.clone(),
        cfg("b"),
        op.clone(),
        Arc::new(Recorder::default()),
    ));
    tokio::time::sleep(Duration::from_millis(100)).await;
    a.kill().await;
    let died = Instant::now();
    let done = b.engine.wait(&t.id, T).await.unwrap();
    let took = died.elapsed();
    assert_eq!(done.state, TaskState::Succeeded, "{done:?}");
    assert!(
        took >= ttl / 2,
        "resumed before the lease could expire: {took:?}"
    );
    assert!(took < ttl * 5, "resume took {took:?}");
    let calls = op.calls_of(&t.id);
    let place: Vec<_> = calls.iter().filter(|c| c.step == "place").collect();
    assert_eq!(place.len(), 1, "a finished step is not run again");
    let publish: Vec<_> = calls.iter().filter(|c| c.step == "publish").collect();
    assert_eq!(publish.len(), 1, "only b's run of publish returned");
    assert_eq!(publish[0].worker, "b");
    assert_eq!(
        b.engine.wait(&t2.id, T).await.unwrap().state,
        TaskState::Succeeded
    );
    // The dead worker's registration went with its lease.
    let workers = b.engine.workers().await.unwrap();
    assert_eq!(
        workers.iter().map(|w| w.id.as_str()).collect::<Vec<_>>(),
        ["b"]
    );
    assert_clean(store.as_ref()).await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_that_changed_nothing_runs_again_when_its_worker_dies_before_the_next_write() {
    let store = memory().await;
    let op = ScriptOp::new();
    let cfg = EngineConfig {
        lease_ttl: Duration::from_secs(30),
        ..config("w1")
    };
    let events = Arc::new(Recorder::default());
    let first = start(engine(
        store.clone(),
        cfg.clone(),
        op.clone(),
        events.clone(),
    ));
    let t = first
        .engine
        .submit(script(
            "shop",
            &["a", "b", "c"],
            json!({"b": ["nothing"], "c": ["hang_on:w1", "done"]}),
        ))
        .await
        .unwrap();
    // b ran and c hangs: the store still says b is running.
    until_step_started(&op, store.as_ref(), &t.id, 1).await;
    let deadline = Instant::now() + T;
    while !op.calls_of(&t.id).iter().any(|c| c.step == "b") {
        assert!(Instant::now() < deadline, "b never ran");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    first.kill().await;
    let stored: jdos_workflow::Task = serde_json::from_slice(
        &store
            .get(&jdos_types::keys::task(&t.id))
            .await
            .unwrap()
            .unwrap()
            .value,
    )
    .unwrap();
    assert_eq!(stored.steps[1].state, TaskState::Running);
    // The same worker id restarted resumes at b (at once: its own lock).
    let again = start(engine(store.clone(), cfg, op.clone(), events.clone()));
    let done = again.engine.wait(&t.id, T).await.unwrap();
    assert_eq!(done.state, TaskState::Succeeded, "{done:?}");
    let runs = |step: &str| {
        op.calls_of(&t.id)
            .iter()
            .filter(|c| c.step == step)
            .map(|c| c.worker.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(runs("a").len(), 1);
    assert_eq!(runs("b").len(), 2, "b's first run was never written");
    assert_eq!(runs("c").len(), 1, "the hanging run of c never returned");
    // One event per step: the dead worker's in-memory one was never written.
    events.settled(&t.id).await;
    let steps: Vec<_> = events
        .of(&t.id)
        .into_iter()
        .filter(|e| e.0 == jdos_workflow::actions::STEP)
        .collect();
    assert_eq!(steps.len(), 3, "{steps:?}");
    again.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_worker_restarted_resumes_its_tasks_at_once() {
    let store = memory().await;
    let op = ScriptOp::new();
    // A long TTL: waiting for it would fail the test.
    let cfg = EngineConfig {
        lease_ttl: Duration::from_secs(30),
        ..config("w1")
    };
    let first = start(engine(
        store.clone(),
        cfg.clone(),
        op.clone(),
        Arc::new(Recorder::default()),
    ));
    let t = first
        .engine
        .submit(script(
            "shop",
            &["a", "b"],
            json!({"b": ["until_cancel"], "a": ["done"]}),
        ))
        .await
        .unwrap();
    until_step_started(&op, store.as_ref(), &t.id, 1).await;
    first.kill().await;
    let restarted = Instant::now();
    let again = start(engine(
        store.clone(),
        cfg,
        op.clone(),
        Arc::new(Recorder::default()),
    ));
    // Running again: the step waits for a cancel.
    let deadline = Instant::now() + Duration::from_secs(5);
    while op.calls_of(&t.id).iter().filter(|c| c.step == "b").count() < 2 {
        assert!(
            Instant::now() < deadline,
            "not resumed: {:?}",
            op.calls_of(&t.id)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(restarted.elapsed() < Duration::from_secs(5));
    again.engine.cancel(&t.id, "test").await.unwrap();
    let done = again.engine.wait(&t.id, T).await.unwrap();
    assert_eq!(done.state, TaskState::Cancelled);
    assert_eq!(
        op.calls_of(&t.id).iter().filter(|c| c.step == "a").count(),
        1
    );
    assert_clean(store.as_ref()).await;
    again.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_hands_tasks_over_without_waiting_for_the_ttl() {
    let store = memory().await;
    let op = ScriptOp::new();
    let cfg = |id| EngineConfig {
        lease_ttl: Duration::from_secs(30),
        ..config(id)
    };
    let a = start(engine(
        store.clone(),
        cfg("a"),
        op.clone(),
        Arc::new(Recorder::default()),
    ));
    let t = a
        .engine
        .submit(script("shop", &["a", "b"], json!({"b": ["until_cancel"]})))
        .await
        .unwrap();
    until_step_started(&op, store.as_ref(), &t.id, 1).await;
    let b = start(engine(
        store.clone(),
        cfg("b"),
        op.clone(),
        Arc::new(Recorder::default()),
    ));
    a.stop().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !op.calls_of(&t.id).iter().any(|c| c.worker == "b") {
        assert!(Instant::now() < deadline, "b never took the task over");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    b.engine.cancel(&t.id, "test").await.unwrap();
    assert_eq!(
        b.engine.wait(&t.id, T).await.unwrap().state,
        TaskState::Cancelled
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_lost_its_lease_is_fenced_and_cannot_overwrite_the_task() {
    let store = memory().await;
    let op = ScriptOp::new();
    let a = start(engine(
        store.clone(),
        config("a"),
        op.clone(),
        Arc::new(Recorder::default()),
    ));
    let t = a
        .engine
        .submit(script(
            "shop",
            &["place", "publish", "hooks"],
            json!({"publish": ["slow_on:a"]}),
        ))
        .await
        .unwrap();
    until_step_started(&op, store.as_ref(), &t.id, 1).await;
    let b = start(engine(
        store.clone(),
        config("b"),
        op.clone(),
        Arc::new(Recorder::default()),
    ));
    tokio::time::sleep(Duration::from_millis(50)).await;
    // As if a's process stalled past its TTL: its lease (and app lock) go.
    let lease = store
        .get(&jdos_workflow::worker_key("a"))
        .await
        .unwrap()
        .unwrap()
        .lease
        .unwrap();
    store.lease_revoke(lease).await.unwrap();
    let done = b.engine.wait(&t.id, T).await.unwrap();
    assert_eq!(done.state, TaskState::Succeeded);
    // a's slow step returns after b took over: its write is refused.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let calls = op.calls_of(&t.id);
    assert!(
        calls.iter().any(|c| c.step == "publish" && c.worker == "a"),
        "{calls:?}"
    );
    let after_a: Vec<_> = calls.iter().filter(|c| c.step == "hooks").collect();
    assert_eq!(after_a.len(), 1, "only b went on to the next step");
    assert_eq!(after_a[0].worker, "b");
    let stored = b.engine.get(&t.id).await.unwrap().unwrap();
    assert_eq!(stored, done, "the fenced worker wrote nothing");
    // The lease loss leaves nothing stuck: later tasks still run.
    let t2 = a
        .engine
        .submit(script("other", &["x"], json!({})))
        .await
        .unwrap();
    assert_eq!(
        a.engine.wait(&t2.id, T).await.unwrap().state,
        TaskState::Succeeded
    );
    assert_clean(store.as_ref()).await;
    a.stop().await;
    b.stop().await;
}
