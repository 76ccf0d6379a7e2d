//! The engine: the public API (submit, cancel, get, list, wait) and the
//! worker loop that claims and runs tasks.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jdos_store::{
    for_each_page, json, Compare, EventKind, KeyValue, Revision, Store, StoreError, Txn, TxnOp,
    Watch,
};
use jdos_types::{keys, EventResult, Task, TaskState, UnixMillis};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use tracing::Instrument;

use crate::context::Flag;
use crate::mirror::Mirror;
use crate::runner::{run_task, RunEnd};
use crate::{actions, app_lock_key, queue_key, worker_key, Operation, TaskEvents, WorkflowError};

/// Settings of one worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// This worker's id, stable across restarts (e.g. the server's name): a
    /// restarted worker takes over its previous incarnation's tasks at once.
    /// Two live engines must never share an id.
    pub worker_id: String,
    /// Tasks run at the same time (each of a different app).
    pub concurrency: usize,
    /// Time to live of the worker's lease: a dead worker's tasks are resumed
    /// elsewhere this long after it stopped renewing.
    pub lease_ttl: Duration,
    /// Attempts of a step ([`crate::StepError::Retry`]) before the task fails.
    pub max_attempts: u32,
    /// Back-off before the second attempt; doubles with each attempt.
    pub backoff_initial: Duration,
    /// Back-off ceiling.
    pub backoff_max: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            worker_id: "worker-1".into(),
            concurrency: 16,
            lease_ttl: Duration::from_secs(10),
            max_attempts: 5,
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
        }
    }
}

impl EngineConfig {
    /// Defaults with this worker id.
    pub fn new(worker_id: impl Into<String>) -> Self {
        EngineConfig {
            worker_id: worker_id.into(),
            ..Default::default()
        }
    }

    /// Back-off after the `attempt`-th failed attempt (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(30));
        self.backoff_initial
            .saturating_mul(factor)
            .min(self.backoff_max)
    }
}

/// A request for a new task.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NewTask {
    /// Operation kind (`deploy`, `scale` …); must be registered.
    pub kind: String,
    /// App it works on (tasks of one app run one at a time).
    pub app: String,
    /// Department of the app.
    #[serde(default)]
    pub department: Option<String>,
    /// What it works on, for humans (`group shop/prod/web`).
    #[serde(default)]
    pub object: String,
    /// Who asked for it.
    pub actor: String,
    /// Operation parameters.
    #[serde(default)]
    pub params: serde_json::Value,
}

/// Which tasks [`Engine::list`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskFilter {
    /// Of this app only.
    #[serde(default)]
    pub app: Option<String>,
    /// In this state only.
    #[serde(default)]
    pub state: Option<TaskState>,
    /// Of this kind only.
    #[serde(default)]
    pub kind: Option<String>,
    /// Of this department only.
    #[serde(default)]
    pub department: Option<String>,
    /// Unfinished tasks only (read through the queue index: cheap however
    /// many finished tasks are kept).
    #[serde(default)]
    pub active_only: bool,
    /// At most this many, newest first (0 = all).
    #[serde(default)]
    pub limit: usize,
}

impl TaskFilter {
    fn matches(&self, t: &Task) -> bool {
        self.app.as_ref().is_none_or(|a| *a == t.app)
            && self.state.is_none_or(|s| s == t.state)
            && self.kind.as_ref().is_none_or(|k| *k == t.kind)
            && self
                .department
                .as_ref()
                .is_none_or(|d| t.department.as_ref() == Some(d))
            && (!self.active_only || !t.state.is_terminal())
    }
}

/// A task's entry in the queue index `keys::TASK_QUEUE/<id>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueEntry {
    /// App of the task.
    pub app: String,
    /// Kind of the task.
    pub kind: String,
    /// A cancel was requested (tells the running worker through its watch).
    #[serde(default)]
    pub cancel: bool,
}

/// The value of an app lock `keys::LOCKS/app/<app>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// Worker holding it.
    pub worker: String,
    /// Task it runs.
    pub task: String,
}

/// A worker's registration `keys::WORKERS/<id>` (under its lease).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// Worker id.
    pub id: String,
    /// Its concurrency limit.
    pub concurrency: usize,
    /// When it registered.
    pub started_at_ms: UnixMillis,
}

/// A workflow worker and the API to its tasks. Build it, [`Engine::register`]
/// the operations, wrap it in an `Arc` and [`Engine::start`] it.
pub struct Engine {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) config: EngineConfig,
    pub(crate) events: Arc<dyn TaskEvents>,
    pub(crate) ops: HashMap<&'static str, Arc<dyn Operation>>,
    pub(crate) worker_id: Arc<str>,
    pub(crate) lease: AtomicU64,
    pub(crate) shutdown: Flag,
    waiters: Mutex<HashMap<String, Vec<oneshot::Sender<()>>>>,
    dispatching: AtomicBool,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("worker_id", &self.worker_id)
            .field("kinds", &self.ops.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// The message of a task's `task.submit` event.
pub fn submitted_message(task: &Task) -> String {
    format!("{} {} submitted by {}", task.kind, task.object, task.actor)
}

impl Engine {
    /// An engine over a store; nothing runs until [`Engine::start`].
    pub fn new(store: Arc<dyn Store>, config: EngineConfig, events: Arc<dyn TaskEvents>) -> Self {
        let worker_id: Arc<str> = config.worker_id.as_str().into();
        Engine {
            store,
            config,
            events,
            ops: HashMap::new(),
            worker_id,
            lease: AtomicU64::new(0),
            shutdown: Flag::default(),
            waiters: Mutex::new(HashMap::new()),
            dispatching: AtomicBool::new(false),
        }
    }

    /// Adds an operation (before [`Engine::start`]); one per kind, a later
    /// one replaces an earlier one of the same kind.
    pub fn register(&mut self, op: Arc<dyn Operation>) {
        self.ops.insert(op.kind(), op);
    }

    /// The worker's settings.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The store it runs on.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Kinds of the registered operations.
    pub fn kinds(&self) -> Vec<&'static str> {
        let mut k: Vec<_> = self.ops.keys().copied().collect();
        k.sort_unstable();
        k
    }

    /// Builds a new pending task and the store operations that queue it, for
    /// a caller that commits them in its own transaction (e.g. together with
    /// the change the task carries out). After the commit, call
    /// [`Engine::record_submitted`].
    pub fn prepare(
        &self,
        req: NewTask,
        now_ms: UnixMillis,
    ) -> Result<(Task, Vec<TxnOp>), WorkflowError> {
        let op = self
            .ops
            .get(req.kind.as_str())
            .ok_or_else(|| WorkflowError::UnknownKind(req.kind.clone()))?;
        if req.app.is_empty() {
            return Err(WorkflowError::invalid("app", "a task needs an app"));
        }
        if req.app.contains('/') || req.app.chars().any(char::is_control) {
            return Err(WorkflowError::invalid(
                "app",
                format!(
                    "app name {:?} must not contain '/' or control characters",
                    req.app
                ),
            ));
        }
        let mut task = Task {
            id: crate::new_task_id(now_ms),
            kind: req.kind,
            app: req.app,
            actor: if req.actor.is_empty() {
                "system".into()
            } else {
                req.actor
            },
            params: req.params,
            state: TaskState::Pending,
            steps: Vec::new(),
            department: req.department,
            object: req.object,
            data: serde_json::Value::Null,
            progress: None,
            error: String::new(),
            worker: None,
            not_before_ms: 0,
            cancel_requested: false,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
        };
        let names = op.steps(&task)?;
        let mut seen = std::collections::HashSet::new();
        for n in &names {
            if n.is_empty() || !seen.insert(n.as_str()) {
                return Err(WorkflowError::invalid(
                    "steps",
                    format!(
                        "operation {} gave an empty or repeated step name {n:?}",
                        task.kind
                    ),
                ));
            }
        }
        task.steps = names
            .into_iter()
            .map(|name| jdos_types::task::Step {
                name,
                ..Default::default()
            })
            .collect();
        let entry = QueueEntry {
            app: task.app.clone(),
            kind: task.kind.clone(),
            cancel: false,
        };
        let ops = vec![
            TxnOp::put(keys::task(&task.id), json::encode(&task)?),
            TxnOp::put(queue_key(&task.id), json::encode(&entry)?),
        ];
        Ok((task, ops))
    }

    /// Records the `task.submit` event of a task queued through
    /// [`Engine::prepare`] (after the caller's commit; a caller that can put
    /// it in its own commit uses [`submitted_message`] instead).
    pub async fn record_submitted(&self, task: &Task) {
        self.events
            .record(
                task,
                actions::SUBMIT,
                EventResult::Success,
                submitted_message(task),
            )
            .await;
    }

    /// Queues a new task.
    pub async fn submit(&self, req: NewTask) -> Result<Task, WorkflowError> {
        let (task, ops) = self.prepare(req, crate::now_ms())?;
        let mut txn = Txn::new().when(Compare::absent(keys::task(&task.id)));
        txn.success = ops;
        let resp = self.store.txn(txn).await?;
        if !resp.succeeded {
            return Err(StoreError::Backend(format!("task id {} already exists", task.id)).into());
        }
        tracing::debug!(task = %task.id, app = %task.app, kind = %task.kind, "task submitted");
        self.record_submitted(&task).await;
        Ok(task)
    }

    /// Cancels a task: a pending one at once; a running one is told and
    /// stops at its next step boundary (then compensates). A finished task
    /// is returned unchanged.
    pub async fn cancel(&self, id: &str, actor: &str) -> Result<Task, WorkflowError> {
        let key = keys::task(id);
        loop {
            let kv = self
                .store
                .get(&key)
                .await?
                .ok_or_else(|| WorkflowError::NotFound(id.to_string()))?;
            let mut task: Task = json::decode(&kv)?;
            if task.state.is_terminal()
                || (task.cancel_requested && task.state != TaskState::Pending)
            {
                return Ok(task);
            }
            let now = crate::now_ms();
            task.cancel_requested = true;
            task.updated_at_ms = now;
            // A pending task holds no lock and was never claimed (the claim
            // marks it running in the same transaction that takes the lock).
            let pending = task.state == TaskState::Pending;
            let mut txn = Txn::new().when(Compare::mod_revision(&key, kv.mod_revision));
            if pending {
                task.state = TaskState::Cancelled;
                task.error = format!("cancelled by {actor} before it started");
                txn = txn
                    .and_then(TxnOp::put(&key, json::encode(&task)?))
                    .and_then(TxnOp::delete(queue_key(id)));
            } else {
                let entry = QueueEntry {
                    app: task.app.clone(),
                    kind: task.kind.clone(),
                    cancel: true,
                };
                txn = txn
                    .and_then(TxnOp::put(&key, json::encode(&task)?))
                    .and_then(TxnOp::put(queue_key(id), json::encode(&entry)?));
            }
            if !self.store.txn(txn).await?.succeeded {
                continue;
            }
            tracing::info!(task = %id, app = %task.app, %actor, pending, "task cancel requested");
            if pending {
                self.events
                    .record(
                        &task,
                        actions::CANCELLED,
                        EventResult::Success,
                        task.error.clone(),
                    )
                    .await;
            }
            return Ok(task);
        }
    }

    /// Reads a task.
    pub async fn get(&self, id: &str) -> Result<Option<Task>, WorkflowError> {
        match self.store.get(&keys::task(id)).await? {
            Some(kv) => Ok(Some(json::decode(&kv)?)),
            None => Ok(None),
        }
    }

    /// Lists tasks, newest first. Scans every kept task unless the filter is
    /// `active_only`.
    pub async fn list(&self, filter: &TaskFilter) -> Result<Vec<Task>, WorkflowError> {
        let mut out = Vec::new();
        if filter.active_only {
            let mut ids = Vec::new();
            for_each_page(self.store.as_ref(), keys::TASK_QUEUE, 4096, |kvs| {
                ids.extend(
                    kvs.iter()
                        .filter_map(|kv| kv.key.strip_prefix(keys::TASK_QUEUE))
                        .map(str::to_string),
                );
                Ok::<_, StoreError>(())
            })
            .await?;
            for id in ids.iter().rev() {
                if let Some(t) = self.get(id).await? {
                    if filter.matches(&t) {
                        out.push(t);
                        if filter.limit > 0 && out.len() >= filter.limit {
                            break;
                        }
                    }
                }
            }
            return Ok(out);
        }
        for_each_page(self.store.as_ref(), keys::TASKS, 4096, |kvs| {
            for kv in kvs {
                let t: Task = json::decode(kv)?;
                if filter.matches(&t) {
                    out.push(t);
                }
            }
            Ok::<_, StoreError>(())
        })
        .await?;
        out.reverse();
        if filter.limit > 0 {
            out.truncate(filter.limit);
        }
        Ok(out)
    }

    /// The registered workers.
    pub async fn workers(&self) -> Result<Vec<WorkerInfo>, WorkflowError> {
        Ok(json::list_all(self.store.as_ref(), keys::WORKERS).await?)
    }

    /// Waits until a task is finished (succeeded, failed or cancelled) and
    /// returns it; [`WorkflowError::Timeout`] after `timeout`.
    pub async fn wait(&self, id: &str, timeout: Duration) -> Result<Task, WorkflowError> {
        let deadline = tokio::time::Instant::now() + timeout;
        if !self.dispatching.load(Ordering::SeqCst) {
            return self.wait_by_watch(id, timeout, deadline).await;
        }
        let rx = {
            let (tx, rx) = oneshot::channel();
            let mut w = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
            w.entry(id.to_string()).or_default().push(tx);
            rx
        };
        // Registered before the read: a finish after the read is seen.
        let task = self
            .get(id)
            .await?
            .ok_or_else(|| WorkflowError::NotFound(id.to_string()))?;
        if task.state.is_terminal() {
            return Ok(task);
        }
        // A closed channel means the engine stopped: fall back to a watch.
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return self.wait_by_watch(id, timeout, deadline).await,
            Err(_) => {
                return Err(WorkflowError::Timeout {
                    id: id.to_string(),
                    timeout,
                })
            }
        }
        let task = self
            .get(id)
            .await?
            .ok_or_else(|| WorkflowError::NotFound(id.to_string()))?;
        if task.state.is_terminal() {
            Ok(task)
        } else {
            // The queue entry went away without a finish (removed by hand).
            Box::pin(self.wait(
                id,
                deadline.saturating_duration_since(tokio::time::Instant::now()),
            ))
            .await
        }
    }

    /// [`Engine::wait`] for an engine that does not run its worker loop.
    async fn wait_by_watch(
        &self,
        id: &str,
        timeout: Duration,
        deadline: tokio::time::Instant,
    ) -> Result<Task, WorkflowError> {
        let key = keys::task(id);
        let timed_out = || WorkflowError::Timeout {
            id: id.to_string(),
            timeout,
        };
        loop {
            let kv = self
                .store
                .get(&key)
                .await?
                .ok_or_else(|| WorkflowError::NotFound(id.to_string()))?;
            let task: Task = json::decode(&kv)?;
            if task.state.is_terminal() {
                return Ok(task);
            }
            let mut watch = self.store.watch(&key, kv.mod_revision + 1).await?;
            loop {
                match tokio::time::timeout_at(deadline, watch.next()).await {
                    Err(_) => return Err(timed_out()),
                    Ok(Some(Ok(batch))) => {
                        for ev in batch.iter().filter(|e| e.kv.key == key) {
                            if ev.kind == EventKind::Delete {
                                return Err(WorkflowError::NotFound(id.to_string()));
                            }
                            let t: Task = json::decode(&ev.kv)?;
                            if t.state.is_terminal() {
                                return Ok(t);
                            }
                        }
                    }
                    // The watch ended (compacted, fell behind): read again.
                    Ok(_) => break,
                }
            }
        }
    }

    fn notify_finished(&self, id: &str) {
        let senders = self
            .waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        for tx in senders.into_iter().flatten() {
            let _ = tx.send(());
        }
    }

    /// Runs the worker until `shutdown` turns true (or its sender is
    /// dropped): registers it, keeps its lease alive, and claims and runs
    /// tasks. On shutdown running tasks stop at their next step boundary (a
    /// step in progress may finish within one lease TTL), then the lease is
    /// revoked so that other workers resume them at once.
    pub fn start(self: &Arc<Self>, shutdown: tokio::sync::watch::Receiver<bool>) -> JoinHandle<()> {
        let engine = self.clone();
        let span = tracing::info_span!("workflow", worker = %self.worker_id);
        tokio::spawn(
            async move {
                engine.dispatching.store(true, Ordering::SeqCst);
                engine.clone().run(shutdown).await;
                engine.dispatching.store(false, Ordering::SeqCst);
                // Wake waiters: they fall back to a store watch.
                engine
                    .waiters
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clear();
            }
            .instrument(span),
        )
    }

    async fn run(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let stopping = |s: &tokio::sync::watch::Receiver<bool>| *s.borrow();
        // Register (retrying while the store is unavailable).
        let mut delay = Duration::from_millis(100);
        loop {
            if stopping(&shutdown) {
                return;
            }
            match self.register_worker().await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot register the worker; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        r = shutdown.changed() => if r.is_err() { return },
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
        // Aborted when this future is dropped (the engine task aborted, as in a
        // crash test) or at shutdown.
        let _keepalive = AbortOnDrop(tokio::spawn(self.clone().keep_alive().in_current_span()));
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut runs: JoinSet<RunEnd> = JoinSet::new();
        let mut run_apps: HashMap<tokio::task::Id, (String, String)> = HashMap::new();
        let mut cancels: HashMap<String, Arc<Flag>> = HashMap::new();
        let mut mirror = Mirror::new(self.ops.keys().map(|k| k.to_string()));
        'sync: loop {
            if stopping(&shutdown) {
                break;
            }
            let (mut qwatch, mut lwatch) = match self.resync(&mut mirror).await {
                Ok(w) => w,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list the task queue; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(500)) => continue 'sync,
                        _ = shutdown.changed() => break 'sync,
                    }
                }
            };
            loop {
                // Fill free slots with the oldest runnable tasks.
                while runs.len() < self.config.concurrency.max(1) {
                    let Some((id, app)) = mirror.take_ready() else {
                        break;
                    };
                    let flag = Arc::new(Flag::default());
                    cancels.insert(id.clone(), flag.clone());
                    let h = runs.spawn(run_task(self.clone(), id.clone(), app.clone(), flag));
                    run_apps.insert(h.id(), (app, id));
                }
                tokio::select! {
                    _ = shutdown.changed() => break 'sync,
                    _ = tick.tick() => {
                        if let Some(cutoff) = std::time::Instant::now().checked_sub(Duration::from_secs(2)) {
                            mirror.expire_blocked(cutoff);
                        }
                    }
                    batch = qwatch.next() => match batch {
                        Some(Ok(events)) => self.apply_queue(&mut mirror, &cancels, events),
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "task queue watch failed; listing again");
                            continue 'sync;
                        }
                        None => continue 'sync,
                    },
                    batch = lwatch.next() => match batch {
                        Some(Ok(events)) => apply_locks(&mut mirror, events),
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "lock watch failed; listing again");
                            continue 'sync;
                        }
                        None => continue 'sync,
                    },
                    Some(done) = runs.join_next_with_id(), if !runs.is_empty() => {
                        let (tid, end) = match done {
                            Ok((tid, end)) => (tid, end),
                            Err(e) => {
                                tracing::error!(error = %e, "a task run panicked");
                                (e.id(), RunEnd::Released)
                            }
                        };
                        let Some((app, id)) = run_apps.remove(&tid) else { continue };
                        cancels.remove(&id);
                        let blocked = match end {
                            RunEnd::Finished => {
                                // Its entry is gone (deleted with the final
                                // write): offer the app's next task now,
                                // before the watch tells us.
                                mirror.queue_delete(&id);
                                self.notify_finished(&id);
                                None
                            }
                            RunEnd::Blocked { until, on } => Some((until, on)),
                            RunEnd::Released => None,
                        };
                        mirror.release(&app, blocked);
                    }
                }
            }
        }
        // Shutdown: runs stop at a step boundary; give steps in progress one
        // lease TTL, then drop them (they are resumed from the store).
        self.shutdown.set();
        let grace = tokio::time::sleep(self.config.lease_ttl);
        tokio::pin!(grace);
        while !runs.is_empty() {
            tokio::select! {
                _ = runs.join_next() => {}
                _ = &mut grace => {
                    tracing::warn!(running = runs.len(), "steps still running at shutdown; abandoning them");
                    runs.abort_all();
                    while runs.join_next().await.is_some() {}
                }
            }
        }
        drop(_keepalive);
        let lease = self.lease.load(Ordering::SeqCst);
        if let Err(e) = self.store.lease_revoke(lease).await {
            tracing::debug!(error = %e, "worker lease not revoked at shutdown");
        }
        tracing::info!("workflow worker stopped");
    }

    /// Registers this worker under a fresh lease, first revoking the lease
    /// of a previous incarnation with the same id (which releases its app
    /// locks, so that its tasks resume now rather than after the TTL).
    async fn register_worker(&self) -> Result<(), StoreError> {
        let key = worker_key(&self.worker_id);
        if let Some(old) = self.store.get(&key).await?.and_then(|kv| kv.lease) {
            match self.store.lease_revoke(old).await {
                Ok(()) | Err(StoreError::LeaseNotFound(_)) => {}
                Err(e) => return Err(e),
            }
            tracing::info!(lease = old, "took over from this worker's previous run");
        }
        self.grant_and_put().await
    }

    async fn grant_and_put(&self) -> Result<(), StoreError> {
        let lease = self.store.lease_grant(self.config.lease_ttl).await?;
        let info = WorkerInfo {
            id: self.worker_id.to_string(),
            concurrency: self.config.concurrency,
            started_at_ms: crate::now_ms(),
        };
        self.store
            .put(
                &worker_key(&self.worker_id),
                json::encode(&info)?,
                Some(lease),
            )
            .await?;
        self.lease.store(lease, Ordering::SeqCst);
        Ok(())
    }

    /// Renews the lease three times per TTL; a lost lease (the process
    /// stalled longer than the TTL) is replaced: tasks running under the
    /// old one are fenced and resumed by whoever claims them next.
    async fn keep_alive(self: Arc<Self>) {
        let period = (self.config.lease_ttl / 3).max(Duration::from_millis(10));
        loop {
            tokio::time::sleep(period).await;
            let lease = self.lease.load(Ordering::SeqCst);
            match self.store.lease_keep_alive(lease).await {
                Ok(()) => {}
                Err(StoreError::LeaseNotFound(_)) => {
                    tracing::warn!(lease, "worker lease expired; registering again");
                    if let Err(e) = self.grant_and_put().await {
                        tracing::warn!(error = %e, "cannot register the worker again");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "worker lease not renewed"),
            }
        }
    }

    /// Lists the queue and the app locks into the mirror and watches both
    /// from the listing's revision.
    async fn resync(&self, mirror: &mut Mirror) -> Result<(Watch, Watch), StoreError> {
        let mut entries = Vec::new();
        let qrev = for_each_page(self.store.as_ref(), keys::TASK_QUEUE, 4096, |kvs| {
            for kv in kvs {
                if let Some(e) = decode_queue(kv) {
                    entries.push(e);
                }
            }
            Ok::<_, StoreError>(())
        })
        .await?;
        let qwatch = self.store.watch(keys::TASK_QUEUE, qrev + 1).await?;
        let lock_prefix = app_lock_key("");
        let mut apps = Vec::new();
        let lrev = for_each_page(self.store.as_ref(), &lock_prefix, 4096, |kvs| {
            apps.extend(
                kvs.iter()
                    .filter_map(|kv| kv.key.strip_prefix(&lock_prefix))
                    .map(str::to_string),
            );
            Ok::<_, StoreError>(())
        })
        .await?;
        let lwatch = self.store.watch(&lock_prefix, lrev + 1).await?;
        // Waiters whose task left the queue while no watch was running.
        let queued: std::collections::HashSet<&str> =
            entries.iter().map(|(id, _)| id.as_str()).collect();
        let gone: Vec<String> = self
            .waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .filter(|id| !queued.contains(id.as_str()))
            .cloned()
            .collect();
        for id in gone {
            self.notify_finished(&id);
        }
        tracing::debug!(
            queued = entries.len(),
            locks = apps.len(),
            "task queue listed"
        );
        mirror.reset_queue(entries, qrev);
        mirror.reset_locks(apps, lrev);
        Ok((qwatch, lwatch))
    }

    fn apply_queue(
        &self,
        mirror: &mut Mirror,
        cancels: &HashMap<String, Arc<Flag>>,
        events: Vec<jdos_store::WatchEvent>,
    ) {
        let mut rev: Revision = 0;
        for ev in events {
            rev = rev.max(ev.kv.mod_revision);
            match ev.kind {
                EventKind::Put => {
                    if let Some((id, entry)) = decode_queue(&ev.kv) {
                        if entry.cancel {
                            if let Some(flag) = cancels.get(&id) {
                                flag.set();
                            }
                        }
                        mirror.queue_put(id, entry);
                    }
                }
                EventKind::Delete => {
                    if let Some(id) = ev.kv.key.strip_prefix(keys::TASK_QUEUE) {
                        mirror.queue_delete(id);
                        self.notify_finished(id);
                    }
                }
            }
        }
        mirror.queue_caught_up(rev);
    }
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn apply_locks(mirror: &mut Mirror, events: Vec<jdos_store::WatchEvent>) {
    let prefix = app_lock_key("");
    let mut rev: Revision = 0;
    for ev in events {
        rev = rev.max(ev.kv.mod_revision);
        let Some(app) = ev.kv.key.strip_prefix(&prefix) else {
            continue;
        };
        match ev.kind {
            EventKind::Put => mirror.lock_put(app),
            EventKind::Delete => mirror.lock_delete(app),
        }
    }
    mirror.locks_caught_up(rev);
}

fn decode_queue(kv: &KeyValue) -> Option<(String, QueueEntry)> {
    let id = kv.key.strip_prefix(keys::TASK_QUEUE)?;
    match json::decode::<QueueEntry>(kv) {
        Ok(e) => Some((id.to_string(), e)),
        Err(e) => {
            tracing::warn!(key = %kv.key, error = %e, "ignoring an unreadable queue entry");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_ceiling() {
        let c = EngineConfig::default();
        let ms = |a| c.backoff(a).as_millis();
        assert_eq!(
            [ms(1), ms(2), ms(3), ms(6), ms(7)],
            [500, 1_000, 2_000, 16_000, 30_000]
        );
        assert_eq!(c.backoff(u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn filters_match_on_every_given_field() {
        let t = Task {
            id: "1".into(),
            kind: "deploy".into(),
            app: "shop".into(),
            actor: "a".into(),
            params: serde_json::Value::Null,
            state: TaskState::Running,
            steps: vec![],
            department: Some("retail".into()),
            object: String::new(),
            data: serde_json::Value::Null,
            progress: None,
            error: String::new(),
            worker: None,
            not_before_ms: 0,
            cancel_requested: false,
            created_at_ms: 0,
            updated_at_ms: 0,
        };
        let f = |f: TaskFilter| f.matches(&t);
        assert!(f(TaskFilter::default()));
        assert!(f(TaskFilter {
            app: Some("shop".into()),
            kind: Some("deploy".into()),
            active_only: true,
            ..Default::default()
        }));
        assert!(!f(TaskFilter {
            app: Some("web".into()),
            ..Default::default()
        }));
        assert!(!f(TaskFilter {
            state: Some(TaskState::Failed),
            ..Default::default()
        }));
        assert!(!f(TaskFilter {
            department: Some("ops".into()),
            ..Default::default()
        }));
    }
}
