//! Test harness: a scripted operation that records every call, an event
//! recorder, and engine start/stop helpers.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use jdos_store::Store;
use jdos_workflow::{
    Engine, EngineConfig, EventResult, NewTask, Operation, StepContext, StepError, StepOutcome,
    Task, TaskEvents, WorkflowError,
};
use serde_json::json;

/// One call the scripted op saw.
#[derive(Debug, Clone)]
pub struct Call {
    pub task: String,
    pub app: String,
    pub step: String,
    pub compensate: bool,
    pub worker: String,
    pub attempt: u32,
    pub start: Instant,
    pub end: Instant,
}

/// Kind `script`: steps and the outcome of each call come from the params:
/// `{"steps": ["a", "b"], "script": {"b": ["retry", "done"]}, "sleep_ms": 5}`.
/// A step's n-th call takes the n-th outcome (the last one repeats; default
/// `done`). Outcomes: `done`, `retry`, `fatal`, `wait` (5 ms), `panic`,
/// `nothing` (done, having changed nothing), `until_cancel` (waits until cancelled), `hang_on:<worker>` (sleeps an
/// hour on that worker, else done), `slow_on:<worker>` (500 ms on that
/// worker, then done).
#[derive(Default)]
pub struct ScriptOp {
    pub calls: Mutex<Vec<Call>>,
    counts: Mutex<HashMap<(String, String), usize>>,
}

impl ScriptOp {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    pub fn calls_of(&self, task: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.task == task)
            .collect()
    }
}

#[async_trait]
impl Operation for ScriptOp {
    fn kind(&self) -> &'static str {
        "script"
    }

    fn steps(&self, task: &Task) -> Result<Vec<String>, WorkflowError> {
        let steps = task.params["steps"]
            .as_array()
            .ok_or(WorkflowError::Invalid {
                field: "params.steps".into(),
                message: "missing".into(),
            })?;
        Ok(steps
            .iter()
            .map(|s| s.as_str().unwrap_or_default().to_string())
            .collect())
    }

    async fn run_step(&self, ctx: &mut StepContext, step: &str) -> Result<StepOutcome, StepError> {
        let start = Instant::now();
        let task = ctx.task().clone();
        let n = {
            let mut c = self.counts.lock().unwrap();
            let e = c.entry((task.id.clone(), step.to_string())).or_default();
            *e += 1;
            *e - 1
        };
        let script = task.params["script"][step]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let outcome = script
            .get(n)
            .or(script.last())
            .and_then(|v| v.as_str())
            .unwrap_or("done")
            .to_string();
        let sleep = task.params["sleep_ms"].as_u64().unwrap_or(0);
        if sleep > 0 {
            tokio::time::sleep(Duration::from_millis(sleep)).await;
        }
        let result = match outcome.as_str() {
            "done" => Ok(StepOutcome::done(format!("{step} ok"))),
            "nothing" => Ok(StepOutcome::nothing(format!("{step} unchanged"))),
            "retry" => Err(StepError::retry(format!("{step} flaked"))),
            "fatal" => Err(StepError::fatal(format!("{step} broke"))),
            "wait" => Ok(StepOutcome::wait(
                Duration::from_millis(5),
                format!("{step} waiting"),
            )),
            "panic" => panic!("{step} panicked"),
            "until_cancel" => {
                if ctx.is_cancelled() {
                    Ok(StepOutcome::done("stopped by cancel"))
                } else {
                    Ok(StepOutcome::wait(
                        Duration::from_secs(3600),
                        "waiting for a cancel",
                    ))
                }
            }
            o if o.starts_with("slow_on:") => {
                if ctx.worker_id() == &o["slow_on:".len()..] {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Ok(StepOutcome::done(format!("{step} ok")))
            }
            o if o.starts_with("hang_on:") => {
                if ctx.worker_id() == &o["hang_on:".len()..] {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                Ok(StepOutcome::done("ok"))
            }
            o => Err(StepError::fatal(format!("unknown script outcome {o}"))),
        };
        self.calls.lock().unwrap().push(Call {
            task: task.id.clone(),
            app: task.app.clone(),
            step: step.to_string(),
            compensate: false,
            worker: ctx.worker_id().to_string(),
            attempt: ctx.attempt(),
            start,
            end: Instant::now(),
        });
        result
    }

    async fn compensate(&self, ctx: &mut StepContext, failed_step: &str) -> Result<(), StepError> {
        let now = Instant::now();
        self.calls.lock().unwrap().push(Call {
            task: ctx.task().id.clone(),
            app: ctx.task().app.clone(),
            step: failed_step.to_string(),
            compensate: true,
            worker: ctx.worker_id().to_string(),
            attempt: ctx.attempt(),
            start: now,
            end: now,
        });
        Ok(())
    }
}

/// Records every event.
#[derive(Default)]
pub struct Recorder {
    pub events: Mutex<Vec<(String, String, EventResult, String)>>,
}

impl Recorder {
    /// The events of a task once its final one was recorded (events are
    /// recorded after the commit that `wait` may see first).
    pub async fn settled(&self, task: &str) -> Vec<(String, EventResult)> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let ev = self.of(task);
            let done = ev.last().is_some_and(|e| {
                ["task.succeeded", "task.failed", "task.cancelled"].contains(&e.0.as_str())
            });
            if done || Instant::now() > deadline {
                return ev;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    pub fn of(&self, task: &str) -> Vec<(String, EventResult)> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.0 == task)
            .map(|e| (e.1.clone(), e.2))
            .collect()
    }
}

#[async_trait]
impl TaskEvents for Recorder {
    async fn record(&self, task: &Task, action: &str, result: EventResult, message: String) {
        self.events
            .lock()
            .unwrap()
            .push((task.id.clone(), action.to_string(), result, message));
    }
}

/// Commits each step's event in the task write's own transaction (under
/// `/test-events/<task>/`), as the server's recorder does; the rest it
/// records like [`Recorder`].
#[derive(Default)]
pub struct InTxn {
    pub recorded: Recorder,
    pub committed: Mutex<Vec<(String, String, EventResult, String)>>,
    pub stale: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl TaskEvents for InTxn {
    async fn record(&self, task: &Task, action: &str, result: EventResult, message: String) {
        self.recorded.record(task, action, result, message).await;
    }

    async fn commit(
        &self,
        store: &dyn jdos_store::Store,
        compares: Vec<jdos_store::Compare>,
        mut ops: Vec<jdos_store::TxnOp>,
        event: jdos_workflow::TransitionEvent<'_>,
    ) -> Result<Option<jdos_store::Revision>, jdos_store::StoreError> {
        let n = self.committed.lock().unwrap().len();
        let all: Vec<(String, EventResult, String)> = event
            .earlier
            .iter()
            .map(|e| (e.action.to_string(), e.result, e.message.clone()))
            .chain(std::iter::once((
                event.action.to_string(),
                event.result,
                event.message.to_string(),
            )))
            .collect();
        for (i, e) in all.iter().enumerate() {
            ops.push(jdos_store::TxnOp::put(
                format!("/test-events/{}/{:04}", event.task.id, n + i),
                e.2.as_bytes().to_vec(),
            ));
        }
        let mut txn = jdos_store::Txn::new();
        txn.compares = compares;
        txn.success = ops;
        let resp = store.txn(txn).await?;
        if !resp.succeeded {
            self.stale.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            return Ok(None);
        }
        let mut committed = self.committed.lock().unwrap();
        for (action, result, message) in all {
            committed.push((event.task.id.clone(), action, result, message));
        }
        Ok(Some(resp.revision))
    }
}

impl InTxn {
    /// `task`'s committed events (action, result, message), in order.
    pub fn committed_of(&self, task: &str) -> Vec<(String, EventResult, String)> {
        self.committed
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.0 == task)
            .map(|e| (e.1.clone(), e.2, e.3.clone()))
            .collect()
    }
}

/// Fast retries for tests.
pub fn config(worker: &str) -> EngineConfig {
    EngineConfig {
        worker_id: worker.into(),
        concurrency: 16,
        lease_ttl: Duration::from_secs(10),
        max_attempts: 3,
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(40),
    }
}

pub struct Running {
    pub engine: Arc<Engine>,
    pub stop: tokio::sync::watch::Sender<bool>,
    pub handle: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Graceful stop.
    pub async fn stop(self) {
        self.stop.send(true).unwrap();
        self.handle.await.unwrap();
    }

    /// As if the process died: no lease revoke, nothing written.
    pub async fn kill(self) {
        self.handle.abort();
        let _ = self.handle.await;
    }
}

pub fn engine(
    store: Arc<dyn Store>,
    config: EngineConfig,
    op: Arc<dyn Operation>,
    events: Arc<dyn TaskEvents>,
) -> Arc<Engine> {
    let mut e = Engine::new(store, config, events);
    e.register(op);
    Arc::new(e)
}

pub fn start(engine: Arc<Engine>) -> Running {
    let (stop, rx) = tokio::sync::watch::channel(false);
    let handle = engine.start(rx);
    Running {
        engine,
        stop,
        handle,
    }
}

pub fn script(app: &str, steps: &[&str], script: serde_json::Value) -> NewTask {
    NewTask {
        kind: "script".into(),
        app: app.into(),
        department: None,
        object: format!("test {app}"),
        actor: "tester".into(),
        params: json!({ "steps": steps, "script": script }),
    }
}

pub async fn memory() -> Arc<dyn Store> {
    jdos_store::open("memory://").await.unwrap()
}

/// No queue entry, no app lock is left.
pub async fn assert_clean(store: &dyn Store) {
    use jdos_store::RangeOptions;
    let q = store
        .range(jdos_types::keys::TASK_QUEUE, RangeOptions::default())
        .await
        .unwrap();
    assert!(q.kvs.is_empty(), "queue entries left: {:?}", q.kvs);
    let l = store
        .range(&jdos_workflow::app_lock_key(""), RangeOptions::default())
        .await
        .unwrap();
    assert!(l.kvs.is_empty(), "app locks left: {:?}", l.kvs);
}
