//! The jdos workflow engine: durable tasks made of named, idempotent steps.
//!
//! A [`Task`] lives in the store at `keys::task(id)`; while it is not
//! finished, a small index entry at `keys::TASK_QUEUE/<id>` names its app.
//! Each [`Engine`] is one *worker*: it registers under `keys::WORKERS/<id>`
//! with a store lease it keeps alive, watches the queue, and runs up to
//! [`EngineConfig::concurrency`] tasks at a time.
//!
//! # Guarantees
//!
//! - **One task per app at a time.** A worker runs a task only while it holds
//!   the app's lock `keys::LOCKS/app/<app>`, created if absent in the same
//!   transaction that marks the task running, and attached to the worker's
//!   lease. Tasks of different apps run in parallel; tasks of one app run in
//!   id order (ids sort by creation time).
//! - **Nothing committed is lost.** Every step transition is written before
//!   the next action. Each write compares the task's and the lock's revisions,
//!   so a worker that lost its lock (its lease expired) cannot overwrite the
//!   task any more: it is *fenced* and drops the task.
//! - **Resume.** When a worker dies its lease expires, the store deletes its
//!   locks, and any worker takes the app's head task and resumes it from its
//!   first unfinished step. A worker restarted with the same `worker_id`
//!   revokes its previous lease at start and resumes its tasks at once.
//!   Steps therefore run *at least once*: see the contract on [`Operation`].
//! - **Bounded retries.** [`StepError::Retry`] is retried with exponential
//!   back-off up to [`EngineConfig::max_attempts`]; then (or on
//!   [`StepError::Fatal`], or a cancel) [`Operation::compensate`] runs and
//!   the task ends failed or cancelled with its `error`.
//!
//! # Cost
//!
//! Claiming a task is one read and one transaction; each step is one
//! transaction (the write that finishes a step also starts the next one; the
//! last one also deletes the queue entry and the lock). Workers learn about
//! new tasks and released locks from two prefix watches, and keep the queue
//! in memory indexed per app, so picking the next task is O(log n).

mod context;
mod engine;
mod error;
mod events;
mod id;
mod mirror;
mod operation;
mod runner;

pub use context::StepContext;
pub use engine::{
    submitted_message, Engine, EngineConfig, LockInfo, NewTask, QueueEntry, TaskFilter, WorkerInfo,
};
pub use error::WorkflowError;
pub use events::{NoEvents, PendingEvent, TaskEvents, TransitionEvent};
pub use id::new_task_id;
pub use jdos_types::task::{Progress, Step};
pub use jdos_types::{EventResult, Task, TaskState};
pub use operation::{Operation, StepError, StepOutcome};

/// Key of an app's mutex under `keys::LOCKS`.
pub fn app_lock_key(app: &str) -> String {
    format!("{}app/{app}", jdos_types::keys::LOCKS)
}

/// Key of a task's queue entry under `keys::TASK_QUEUE`.
pub fn queue_key(id: &str) -> String {
    format!("{}{id}", jdos_types::keys::TASK_QUEUE)
}

/// Key of a worker's registration under `keys::WORKERS`.
pub fn worker_key(id: &str) -> String {
    format!("{}{id}", jdos_types::keys::WORKERS)
}

/// Event actions recorded through [`TaskEvents`].
pub mod actions {
    /// A task was submitted.
    pub const SUBMIT: &str = "task.submit";
    /// A step finished (success) or failed an attempt (failure).
    pub const STEP: &str = "task.step";
    /// A task succeeded.
    pub const SUCCEEDED: &str = "task.succeeded";
    /// A task failed.
    pub const FAILED: &str = "task.failed";
    /// A task was cancelled.
    pub const CANCELLED: &str = "task.cancelled";
}

pub(crate) fn now_ms() -> jdos_types::UnixMillis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
