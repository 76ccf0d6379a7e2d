//! The engine's observer: the server records these as events.

use async_trait::async_trait;
use jdos_store::{Compare, Revision, Store, StoreError, Txn, TxnOp};
use jdos_types::{EventResult, Task};

/// A transition made in memory and not written yet (a step that changed
/// nothing): its event goes with the task's next write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingEvent {
    /// One of [`crate::actions`].
    pub action: &'static str,
    /// Outcome.
    pub result: EventResult,
    /// What happened.
    pub message: String,
}

/// The event of one task transition, committed with the write that makes it.
#[derive(Debug, Clone, Copy)]
pub struct TransitionEvent<'a> {
    /// The task as written.
    pub task: &'a Task,
    /// One of [`crate::actions`].
    pub action: &'a str,
    /// Outcome.
    pub result: EventResult,
    /// What happened.
    pub message: &'a str,
    /// Transitions this write also makes, oldest first: their events come
    /// before this one's.
    pub earlier: &'a [PendingEvent],
}

/// Told about every task transition (see [`crate::actions`]): submit, each
/// step's success or failed attempt, and the end (succeeded, failed,
/// cancelled). Called after the transition was committed; it must not fail
/// the task, so it returns nothing.
#[async_trait]
pub trait TaskEvents: Send + Sync {
    /// Records one transition of `task` (its state after the transition).
    async fn record(&self, task: &Task, action: &str, result: EventResult, message: String);

    /// Commits a write of a task (`ops` when every compare holds) and the
    /// event of the transition it makes: `Some(revision)` when written,
    /// `None` when a compare failed (nothing written, no event). The
    /// default writes, then records; an observer that can put both in one
    /// store transaction should: a step then costs one commit, not two.
    async fn commit(
        &self,
        store: &dyn Store,
        compares: Vec<Compare>,
        ops: Vec<TxnOp>,
        event: TransitionEvent<'_>,
    ) -> Result<Option<Revision>, StoreError> {
        let mut txn = Txn::new();
        txn.compares = compares;
        txn.success = ops;
        let resp = store.txn(txn).await?;
        if !resp.succeeded {
            return Ok(None);
        }
        for e in event.earlier {
            self.record(event.task, e.action, e.result, e.message.clone())
                .await;
        }
        self.record(
            event.task,
            event.action,
            event.result,
            event.message.to_string(),
        )
        .await;
        Ok(Some(resp.revision))
    }
}

/// A [`TaskEvents`] that records nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEvents;

#[async_trait]
impl TaskEvents for NoEvents {
    async fn record(&self, _task: &Task, _action: &str, _result: EventResult, _message: String) {}
}
