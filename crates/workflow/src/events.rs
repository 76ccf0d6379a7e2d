//! The engine's observer: the server records these as events.

use async_trait::async_trait;
use jdos_types::{EventResult, Task};

/// Told about every task transition (see [`crate::actions`]): submit, each
/// step's success or failed attempt, and the end (succeeded, failed,
/// cancelled). Called after the transition was committed; it must not fail
/// the task, so it returns nothing.
#[async_trait]
pub trait TaskEvents: Send + Sync {
    /// Records one transition of `task` (its state after the transition).
    async fn record(&self, task: &Task, action: &str, result: EventResult, message: String);
}

/// A [`TaskEvents`] that records nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEvents;

#[async_trait]
impl TaskEvents for NoEvents {
    async fn record(&self, _task: &Task, _action: &str, _result: EventResult, _message: String) {}
}
