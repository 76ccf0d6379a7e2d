//! Scheduling: the app mutex, the concurrency limit, several workers.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use jdos_workflow::{EngineConfig, TaskState};
use serde_json::json;

const T: Duration = Duration::from_secs(30);

fn sleepy(app: &str, ms: u64) -> jdos_workflow::NewTask {
    let mut t = script(app, &["a", "b"], json!({}));
    t.params["sleep_ms"] = json!(ms);
    t
}

/// Per app, the run intervals of its tasks (first step start, last step
/// end), in start order.
fn intervals(
    calls: &[Call],
) -> HashMap<String, Vec<(String, std::time::Instant, std::time::Instant)>> {
    let mut per_task: HashMap<String, (String, std::time::Instant, std::time::Instant)> =
        HashMap::new();
    for c in calls {
        let e = per_task
            .entry(c.task.clone())
            .or_insert((c.app.clone(), c.start, c.end));
        e.1 = e.1.min(c.start);
        e.2 = e.2.max(c.end);
    }
    let mut per_app: HashMap<String, Vec<_>> = HashMap::new();
    for (task, (app, s, e)) in per_task {
        per_app.entry(app).or_default().push((task, s, e));
    }
    for v in per_app.values_mut() {
        v.sort_by_key(|x| x.1);
    }
    per_app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_of_one_app_run_serially_in_order_and_apps_in_parallel() {
    let store = memory().await;
    let op = ScriptOp::new();
    let w = start(engine(
        store.clone(),
        config("w1"),
        op.clone(),
        Arc::new(Recorder::default()),
    ));
    let mut ids = Vec::new();
    for i in 0..5 {
        for app in ["a", "b", "c"] {
            let t = w.engine.submit(sleepy(app, 10 + i)).await.unwrap();
            ids.push((app, t.id));
        }
    }
    for (_, id) in &ids {
        assert_eq!(
            w.engine.wait(id, T).await.unwrap().state,
            TaskState::Succeeded
        );
    }
    let per_app = intervals(&op.calls());
    for (app, runs) in &per_app {
        assert_eq!(runs.len(), 5);
        for pair in runs.windows(2) {
            assert!(pair[0].2 <= pair[1].1, "tasks of {app} overlap");
        }
        // FIFO: start order is submission order.
        let submitted: Vec<_> = ids
            .iter()
            .filter(|(a, _)| a == app)
            .map(|(_, id)| id.clone())
            .collect();
        let started: Vec<_> = runs.iter().map(|r| r.0.clone()).collect();
        assert_eq!(started, submitted, "app {app} ran out of order");
    }
    // Different apps did overlap.
    let a = &per_app["a"];
    let b = &per_app["b"];
    let overlap = a.iter().any(|x| b.iter().any(|y| x.1 < y.2 && y.1 < x.2));
    assert!(overlap, "apps a and b never ran at the same time");
    assert_clean(store.as_ref()).await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_more_tasks_run_at_once_than_the_concurrency_limit() {
    let store = memory().await;
    let op = ScriptOp::new();
    let cfg = EngineConfig {
        concurrency: 3,
        ..config("w1")
    };
    let w = start(engine(
        store.clone(),
        cfg,
        op.clone(),
        Arc::new(Recorder::default()),
    ));
    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(
            w.engine
                .submit(sleepy(&format!("app{i}"), 15))
                .await
                .unwrap()
                .id,
        );
    }
    for id in &ids {
        w.engine.wait(id, T).await.unwrap();
    }
    // Sweep the task intervals: at most 3 at any instant, and 3 reached.
    let per_app = intervals(&op.calls());
    let mut edges = Vec::new();
    for runs in per_app.values() {
        for r in runs {
            edges.push((r.1, 1i32));
            edges.push((r.2, -1));
        }
    }
    edges.sort();
    let (mut cur, mut max) = (0, 0);
    for (_, d) in edges {
        cur += d;
        max = max.max(cur);
    }
    assert_eq!(max, 3);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_share_the_work_and_never_run_a_task_twice() {
    let store = memory().await;
    let op = ScriptOp::new();
    let cfg = |id| EngineConfig {
        concurrency: 4,
        ..config(id)
    };
    let w1 = start(engine(
        store.clone(),
        cfg("w1"),
        op.clone(),
        Arc::new(Recorder::default()),
    ));
    let w2 = start(engine(
        store.clone(),
        cfg("w2"),
        op.clone(),
        Arc::new(Recorder::default()),
    ));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut ids = Vec::new();
    for i in 0..60 {
        let e = if i % 2 == 0 { &w1.engine } else { &w2.engine };
        ids.push(
            e.submit(sleepy(&format!("app{}", i % 15), 3))
                .await
                .unwrap()
                .id,
        );
    }
    for id in &ids {
        assert_eq!(
            w1.engine.wait(id, T).await.unwrap().state,
            TaskState::Succeeded
        );
    }
    let calls = op.calls();
    // Each step of each task ran exactly once.
    let mut seen = HashSet::new();
    for c in &calls {
        assert!(
            seen.insert((c.task.clone(), c.step.clone())),
            "{} {} ran twice",
            c.task,
            c.step
        );
    }
    assert_eq!(seen.len(), 120);
    let workers: HashSet<_> = calls.iter().map(|c| c.worker.as_str()).collect();
    assert_eq!(workers.len(), 2, "both workers took tasks");
    for (app, runs) in intervals(&calls) {
        for pair in runs.windows(2) {
            assert!(
                pair[0].2 <= pair[1].1,
                "tasks of {app} overlap across workers"
            );
        }
    }
    assert_eq!(w1.engine.workers().await.unwrap().len(), 2);
    assert_clean(store.as_ref()).await;
    w1.stop().await;
    w2.stop().await;
}
