//! Step semantics: order, retries with back-off, waits, fatal errors,
//! compensation, cancel.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use jdos_workflow::{actions, EventResult, TaskState, WorkflowError};
use serde_json::json;

const T: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_run_in_order_and_the_timeline_is_kept() {
    let store = memory().await;
    let op = ScriptOp::new();
    let events = Arc::new(Recorder::default());
    let w = start(engine(
        store.clone(),
        config("w1"),
        op.clone(),
        events.clone(),
    ));
    let submitted = Instant::now();
    let t = w
        .engine
        .submit(script(
            "shop",
            &["place", "publish", "wait_running"],
            json!({}),
        ))
        .await
        .unwrap();
    assert_eq!(t.state, TaskState::Pending);
    assert!(t.steps.iter().all(|s| s.state == TaskState::Pending));
    let t = w.engine.wait(&t.id, T).await.unwrap();
    assert_eq!(t.state, TaskState::Succeeded, "{t:?}");
    assert!(t.error.is_empty() && t.worker.is_none());
    let calls = op.calls_of(&t.id);
    let names: Vec<_> = calls.iter().map(|c| c.step.as_str()).collect();
    assert_eq!(names, ["place", "publish", "wait_running"]);
    // Picked up from the queue watch, not a poll.
    assert!(calls[0].start - submitted < Duration::from_millis(500));
    for (s, name) in t.steps.iter().zip(["place", "publish", "wait_running"]) {
        assert_eq!(s.name, name);
        assert_eq!(s.state, TaskState::Succeeded);
        assert_eq!(s.attempts, 1);
        assert_eq!(s.message, format!("{name} ok"));
        assert!(s.started_at_ms > 0 && s.finished_at_ms >= s.started_at_ms);
    }
    for pair in t.steps.windows(2) {
        assert!(pair[1].started_at_ms >= pair[0].finished_at_ms);
    }
    assert_eq!(
        events.settled(&t.id).await,
        [
            (actions::SUBMIT.to_string(), EventResult::Success),
            (actions::STEP.to_string(), EventResult::Success),
            (actions::STEP.to_string(), EventResult::Success),
            (actions::STEP.to_string(), EventResult::Success),
            (actions::SUCCEEDED.to_string(), EventResult::Success),
        ]
    );
    // The stored task is the one wait returned.
    assert_eq!(w.engine.get(&t.id).await.unwrap().unwrap(), t);
    assert_clean(store.as_ref()).await;
    w.stop().await;
}

/// A step's end and its event are one write: the observer's `commit` gets
/// each, with the task as written, and nothing is recorded twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_step_commits_its_event_with_the_task_write() {
    let store = memory().await;
    let op = ScriptOp::new();
    let events = Arc::new(InTxn::default());
    let w = start(engine(
        store.clone(),
        config("w1"),
        op.clone(),
        events.clone(),
    ));
    let t = w
        .engine
        .submit(script("shop", &["place", "publish"], json!({})))
        .await
        .unwrap();
    let t = w.engine.wait(&t.id, T).await.unwrap();
    assert_eq!(t.state, TaskState::Succeeded, "{t:?}");
    // The end's event is recorded after the last write returned: once it
    // is there, so is every committed one.
    events.recorded.settled(&t.id).await;
    let committed = events.committed_of(&t.id);
    assert_eq!(
        committed,
        [
            (
                actions::STEP.to_string(),
                EventResult::Success,
                "step place done: place ok".to_string()
            ),
            (
                actions::STEP.to_string(),
                EventResult::Success,
                "step publish done: publish ok".to_string()
            ),
        ]
    );
    let in_store = store
        .range(&format!("/test-events/{}/", t.id), Default::default())
        .await
        .unwrap();
    assert_eq!(
        in_store.kvs.len(),
        2,
        "written with the task, not beside it"
    );
    // Only the submit and the task's end go through `record`.
    assert_eq!(
        events.recorded.settled(&t.id).await,
        [
            (actions::SUBMIT.to_string(), EventResult::Success),
            (actions::SUCCEEDED.to_string(), EventResult::Success),
        ]
    );
    assert_eq!(events.stale.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert_clean(store.as_ref()).await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_that_changed_nothing_ride_on_the_next_write() {
    let store = memory().await;
    let op = ScriptOp::new();
    let events = Arc::new(InTxn::default());
    let w = start(engine(
        store.clone(),
        config("w1"),
        op.clone(),
        events.clone(),
    ));
    let steps = ["a", "b", "c", "d"];
    let quiet = w
        .engine
        .submit(script(
            "shop",
            &steps,
            json!({"b": ["nothing"], "c": ["nothing"]}),
        ))
        .await
        .unwrap();
    let busy = w
        .engine
        .submit(script("shop", &steps, json!({})))
        .await
        .unwrap();
    let mut writes = Vec::new();
    for id in [&quiet.id, &busy.id] {
        let t = w.engine.wait(id, T).await.unwrap();
        assert_eq!(t.state, TaskState::Succeeded, "{t:?}");
        assert!(t.steps.iter().all(|s| s.state == TaskState::Succeeded));
        let kv = store
            .get(&jdos_types::keys::task(id))
            .await
            .unwrap()
            .unwrap();
        writes.push(kv.version);
    }
    // Submit, claim, a, and the end with d: b and c wrote nothing of
    // their own; each step of the other task did.
    assert_eq!(writes, [4, 6]);
    events.recorded.settled(&quiet.id).await;
    let t = w.engine.get(&quiet.id).await.unwrap().unwrap();
    assert_eq!(t.steps[1].message, "b unchanged");
    assert_eq!(t.steps[2].message, "c unchanged");
    // Every step still has its event, in order, written with the task.
    let committed: Vec<String> = events
        .committed_of(&quiet.id)
        .into_iter()
        .map(|e| e.2)
        .collect();
    assert_eq!(
        committed,
        [
            "step a done: a ok",
            "step b done: b unchanged",
            "step c done: c unchanged",
            "step d done: d ok"
        ]
    );
    let in_store = store
        .range(&format!("/test-events/{}/", quiet.id), Default::default())
        .await
        .unwrap();
    assert_eq!(in_store.kvs.len(), 4);
    assert_clean(store.as_ref()).await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_step_backs_off_and_succeeds_within_its_attempts() {
    let store = memory().await;
    let op = ScriptOp::new();
    let w = start(engine(
        store.clone(),
        config("w1"),
        op.clone(),
        Arc::new(Recorder::default()),
    ));
    let t = w
        .engine
        .submit(script(
            "shop",
            &["a", "b"],
            json!({"b": ["retry", "retry", "done"]}),
        ))
        .await
        .unwrap();
    let t = w.engine.wait(&t.id, T).await.unwrap();
    assert_eq!(t.state, TaskState::Succeeded, "{t:?}");
    assert_eq!(t.steps[1].attempts, 3);
    let b: Vec<_> = op
        .calls_of(&t.id)
        .into_iter()
        .filter(|c| c.step == "b")
        .collect();
    assert_eq!(b.iter().map(|c| c.attempt).collect::<Vec<_>>(), [1, 2, 3]);
    // Back-off 20 ms, then 40 ms.
    assert!(b[1].start - b[0].end >= Duration::from_millis(19));
    assert!(b[2].start - b[1].end >= Duration::from_millis(39));
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_run_out_then_the_task_fails_and_compensates() {
    let store = memory().await;
    let op = ScriptOp::new();
    let events = Arc::new(Recorder::default());
    let w = start(engine(
        store.clone(),
        config("w1"),
        op.clone(),
        events.clone(),
    ));
    let t = w
        .engine
        .submit(script(
            "shop",
            &["a", "hook", "c"],
            json!({"hook": ["retry"]}),
        ))
        .await
        .unwrap();
    let t = w.engine.wait(&t.id, T).await.unwrap();
    assert_eq!(t.state, TaskState::Failed);
    assert!(
        t.error
            .contains("step hook failed after 3 attempts: hook flaked"),
        "{}",
        t.error
    );
    assert_eq!(t.steps[1].state, TaskState::Failed);
    assert_eq!(t.steps[1].attempts, 3);
    assert_eq!(
        t.steps[2].state,
        TaskState::Pending,
        "later steps never ran"
    );
    let calls = op.calls_of(&t.id);
    assert!(calls.iter().all(|c| c.step != "c"));
    let comp: Vec<_> = calls.iter().filter(|c| c.compensate).collect();
    assert_eq!(comp.len(), 1);
    assert_eq!(comp[0].step, "hook");
    let ev = events.settled(&t.id).await;
    assert_eq!(
        ev.last().unwrap(),
        &(actions::FAILED.to_string(), EventResult::Failure)
    );
    assert_eq!(
        ev.iter()
            .filter(|e| e.1 == EventResult::Failure && e.0 == actions::STEP)
            .count(),
        3,
        "two retried attempts and the final failure: {ev:?}"
    );
    assert_clean(store.as_ref()).await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_step_counts_as_a_failed_attempt() {
    let store = memory().await;
    let op = ScriptOp::new();
    let w = start(engine(
        store.clone(),
        config("w1"),
        op.clone(),
        Arc::new(Recorder::default()),
    ));
    let t = w
        .engine
        .submit(script("shop", &["a"], json!({"a": ["panic", "done"]})))
        .await
        .unwrap();
    let t = w.engine.wait(&t.id, T).await.unwrap();
    assert_eq!(t.state, TaskState::Succeeded);
    assert_eq!(t.steps[0].attempts, 2);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_does_not_use_up_attempts() {
    let store = memory().await;
    let op = ScriptOp::new();
    let w = start(engine(
        store.clone(),
        config("w1"),
        op.clone(),
        Arc::new(Recorder::default()),
    ));
    // Eight waits with three attempts allowed.
    let mut script_ = vec!["wait"; 8];
    script_.push("done");
    let t = w
        .engine
        .submit(script(
            "shop",
            &["wait_running"],
            json!({ "wait_running": script_ }),
        ))
        .await
        .unwrap();
    let t = w.engine.wait(&t.id, T).await.unwrap();
    assert_eq!(t.state, TaskState::Succeeded, "{t:?}");
    assert_eq!(t.steps[0].attempts, 1);
    assert_eq!(op.calls_of(&t.id).len(), 9);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fatal_error_fails_at_once() {
    let store = memory().await;
    let op = ScriptOp::new();
    let w = start(engine(
        store.clone(),
        config("w1"),
        op.clone(),
        Arc::new(Recorder::default()),
    ));
    let t = w
        .engine
        .submit(script(
            "shop",
            &["a", "pre_start", "c"],
            json!({"pre_start": ["fatal"]}),
        ))
        .await
        .unwrap();
    let t = w.engine.wait(&t.id, T).await.unwrap();
    assert_eq!(t.state, TaskState::Failed);
    assert_eq!(t.error, "step pre_start failed: pre_start broke");
    assert_eq!(t.steps[1].attempts, 1);
    let calls = op.calls_of(&t.id);
    assert_eq!(
        calls.len(),
        3,
        "a, pre_start, compensate(pre_start): {calls:?}"
    );
    assert!(calls[2].compensate && calls[2].step == "pre_start");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_task_is_cancelled_at_once() {
    let store = memory().await;
    let op = ScriptOp::new();
    let events = Arc::new(Recorder::default());
    let w = start(engine(
        store.clone(),
        config("w1"),
        op.clone(),
        events.clone(),
    ));
    // The first task holds the app; the second waits behind it.
    let first = w
        .engine
        .submit(script("shop", &["a"], json!({"a": ["until_cancel"]})))
        .await
        .unwrap();
    let second = w
        .engine
        .submit(script("shop", &["a"], json!({})))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let c = w.engine.cancel(&second.id, "alice").await.unwrap();
    assert_eq!(c.state, TaskState::Cancelled);
    assert!(c.error.contains("alice"));
    assert_eq!(
        events.settled(&second.id).await.last().unwrap(),
        &(actions::CANCELLED.to_string(), EventResult::Success)
    );
    let first = w.engine.cancel(&first.id, "alice").await.unwrap();
    assert!(first.cancel_requested);
    let first = w.engine.wait(&first.id, T).await.unwrap();
    assert_eq!(first.state, TaskState::Cancelled);
    assert!(
        op.calls_of(&second.id).is_empty(),
        "a cancelled pending task never runs"
    );
    // Cancelling a finished task changes nothing.
    assert_eq!(w.engine.cancel(&second.id, "bob").await.unwrap(), c);
    assert!(matches!(
        w.engine.cancel("nope", "bob").await,
        Err(WorkflowError::NotFound(_))
    ));
    assert_clean(store.as_ref()).await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_task_is_cancelled_at_a_step_boundary_and_compensates() {
    let store = memory().await;
    let op = ScriptOp::new();
    let events = Arc::new(Recorder::default());
    let w = start(engine(
        store.clone(),
        config("w1"),
        op.clone(),
        events.clone(),
    ));
    let t = w
        .engine
        .submit(script(
            "shop",
            &["place", "wait_running", "hooks"],
            json!({"wait_running": ["until_cancel"]}),
        ))
        .await
        .unwrap();
    // Until the step is waiting.
    let deadline = Instant::now() + T;
    while op.calls_of(&t.id).len() < 2 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let asked = Instant::now();
    let c = w.engine.cancel(&t.id, "alice").await.unwrap();
    assert_eq!(c.state, TaskState::Running);
    assert!(c.cancel_requested);
    let t = w.engine.wait(&t.id, T).await.unwrap();
    // The hour-long wait was cut short.
    assert!(asked.elapsed() < Duration::from_secs(2));
    assert_eq!(t.state, TaskState::Cancelled, "{t:?}");
    assert_eq!(t.steps[0].state, TaskState::Succeeded);
    assert_eq!(t.steps[1].state, TaskState::Cancelled);
    assert_eq!(t.steps[2].state, TaskState::Pending);
    let calls = op.calls_of(&t.id);
    assert!(calls
        .iter()
        .any(|c| c.compensate && c.step == "wait_running"));
    assert!(calls.iter().all(|c| c.step != "hooks"));
    assert_eq!(
        events.settled(&t.id).await.last().unwrap(),
        &(actions::CANCELLED.to_string(), EventResult::Success)
    );
    assert_clean(store.as_ref()).await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_submissions_are_refused_with_the_field() {
    let store = memory().await;
    let e = engine(
        store.clone(),
        config("w1"),
        ScriptOp::new(),
        Arc::new(Recorder::default()),
    );
    let mut req = script("shop", &["a"], json!({}));
    req.kind = "deploy".into();
    let err = e.submit(req).await.unwrap_err();
    assert_eq!(err.code(), "unknown_task_kind");
    assert_eq!(err.field(), Some("kind"));
    let err = e.submit(script("", &["a"], json!({}))).await.unwrap_err();
    assert_eq!(err.field(), Some("app"));
    let err = e
        .submit(script("shop", &["a", "a"], json!({})))
        .await
        .unwrap_err();
    assert_eq!(err.field(), Some("steps"));
    let mut req = script("shop", &["a"], json!({}));
    req.params = json!({});
    let err = e.submit(req).await.unwrap_err();
    assert_eq!(err.field(), Some("params.steps"));
    assert!(
        e.list(&Default::default()).await.unwrap().is_empty(),
        "nothing written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_tasks_commit_in_the_callers_transaction() {
    let store = memory().await;
    let op = ScriptOp::new();
    let w = start(engine(
        store.clone(),
        config("w1"),
        op.clone(),
        Arc::new(Recorder::default()),
    ));
    let (task, ops) = w
        .engine
        .prepare(script("shop", &["a"], json!({})), 1_000)
        .unwrap();
    let mut txn = jdos_store::Txn::new().and_then(jdos_store::TxnOp::put("/test/group", "v2"));
    txn.success.extend(ops);
    assert!(store.txn(txn).await.unwrap().succeeded);
    let t = w.engine.wait(&task.id, T).await.unwrap();
    assert_eq!(t.state, TaskState::Succeeded);
    assert_eq!(t.created_at_ms, 1_000);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_filters_and_wait_times_out() {
    let store = memory().await;
    let op = ScriptOp::new();
    let w = start(engine(
        store.clone(),
        config("w1"),
        op.clone(),
        Arc::new(Recorder::default()),
    ));
    let a = w
        .engine
        .submit(script("a", &["x"], json!({})))
        .await
        .unwrap();
    let b = w
        .engine
        .submit(script("b", &["x"], json!({"x": ["until_cancel"]})))
        .await
        .unwrap();
    w.engine.wait(&a.id, T).await.unwrap();
    let err = w
        .engine
        .wait(&b.id, Duration::from_millis(50))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "timeout");
    let all = w.engine.list(&Default::default()).await.unwrap();
    assert_eq!(
        all.iter().map(|t| &t.id).collect::<Vec<_>>(),
        [&b.id, &a.id],
        "newest first"
    );
    let active = w
        .engine
        .list(&jdos_workflow::TaskFilter {
            active_only: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].id, b.id);
    let of_a = w
        .engine
        .list(&jdos_workflow::TaskFilter {
            app: Some("a".into()),
            state: Some(TaskState::Succeeded),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(of_a.len(), 1);
    let workers = w.engine.workers().await.unwrap();
    assert_eq!(workers.len(), 1);
    assert_eq!(workers[0].id, "w1");
    w.engine.cancel(&b.id, "t").await.unwrap();
    w.engine.wait(&b.id, T).await.unwrap();
    w.stop().await;
    // A stopped engine revokes its lease: the registration is gone.
    assert!(store
        .get(&jdos_workflow::worker_key("w1"))
        .await
        .unwrap()
        .is_none());
}
