//! What a step sees: its task, the store, and ways to persist progress.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use jdos_store::{json, Compare, OpResponse, Revision, Store, StoreError, Txn, TxnOp};
use jdos_types::task::Progress;
use jdos_types::{keys, EventResult, Task};
use serde::{de::DeserializeOwned, Serialize};
use tokio::sync::Notify;

use crate::events::{PendingEvent, TaskEvents, TransitionEvent};
use crate::StepError;

/// Progress is written at most this often (the last unit always is).
const PROGRESS_INTERVAL_MS: u64 = 1_000;

/// A one-way flag tasks can await (cancel, shutdown).
#[derive(Debug, Default)]
pub(crate) struct Flag {
    set: AtomicBool,
    notify: Notify,
}

impl Flag {
    pub(crate) fn set(&self) {
        self.set.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub(crate) fn is_set(&self) -> bool {
        self.set.load(Ordering::SeqCst)
    }

    /// Resolves once the flag is set.
    pub(crate) async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Registered before the check, so a set() in between is not missed.
            notified.as_mut().enable();
            if self.is_set() {
                return;
            }
            notified.await;
        }
    }
}

/// Why a write of the task did not happen.
#[derive(Debug)]
pub(crate) enum PersistError {
    /// This worker no longer holds the app's lock: another one may run the
    /// task now, so this one must drop it without touching anything.
    Fenced,
    /// The store failed; the write may be retried.
    Store(StoreError),
}

impl From<StoreError> for PersistError {
    fn from(e: StoreError) -> Self {
        PersistError::Store(e)
    }
}

/// The context of one step run: the task (params, scratch data, timeline),
/// the store, and the cancel flag.
pub struct StepContext {
    pub(crate) task: Task,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) task_rev: Revision,
    pub(crate) lock_key: String,
    pub(crate) lock_rev: Revision,
    pub(crate) fenced: bool,
    pub(crate) cancel: Arc<Flag>,
    pub(crate) step: String,
    pub(crate) attempt: u32,
    pub(crate) worker_id: Arc<str>,
    pub(crate) last_progress_ms: u64,
    pub(crate) events: Arc<dyn TaskEvents>,
    /// Transitions made in memory since the last write (steps that changed
    /// nothing), whose events go with the next one.
    pub(crate) pending: Vec<PendingEvent>,
}

impl std::fmt::Debug for StepContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepContext")
            .field("task", &self.task.id)
            .field("step", &self.step)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

impl StepContext {
    /// The task as last written (params, data, timeline).
    pub fn task(&self) -> &Task {
        &self.task
    }

    /// The store the engine runs on.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Name of the step being run (or compensated).
    pub fn step(&self) -> &str {
        &self.step
    }

    /// Attempt number of this run of the step (1 for the first; a `Wait`
    /// does not count).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Id of the worker running the task.
    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    /// The task's parameters, decoded; a mismatch is fatal (retrying cannot
    /// fix the parameters).
    pub fn params<T: DeserializeOwned>(&self) -> Result<T, StepError> {
        serde_json::from_value(self.task.params.clone()).map_err(|e| {
            StepError::Fatal(format!(
                "task {} has invalid {} params: {e}",
                self.task.id, self.task.kind
            ))
        })
    }

    /// The scratch data steps saved with [`StepContext::save_data`]
    /// (`T::default()` before the first save).
    pub fn data<T: DeserializeOwned + Default>(&self) -> Result<T, StepError> {
        if self.task.data.is_null() {
            return Ok(T::default());
        }
        serde_json::from_value(self.task.data.clone()).map_err(|e| {
            StepError::Fatal(format!("task {} has unreadable data: {e}", self.task.id))
        })
    }

    /// Replaces the scratch data and writes the task now, so that a re-run
    /// of the step after a crash sees it.
    pub async fn save_data<T: Serialize>(&mut self, data: &T) -> Result<(), StepError> {
        self.set_data(data)?;
        self.persist_step().await
    }

    /// Replaces the scratch data without writing it: it goes with the
    /// task's next write. For a decision a re-run may make again, e.g. by a
    /// step that returns [`crate::StepOutcome::Nothing`].
    pub fn set_data<T: Serialize>(&mut self, data: &T) -> Result<(), StepError> {
        self.task.data = serde_json::to_value(data)
            .map_err(|e| StepError::Fatal(format!("cannot encode task data: {e}")))?;
        Ok(())
    }

    /// Reports progress of the current step (`done` of `total` `unit`s).
    /// Written at most once a second, and always when `done == total`;
    /// a failed write is only logged (progress is informational).
    pub async fn set_progress(&mut self, done: u64, total: u64, unit: &str) {
        let progress = Progress {
            done,
            total,
            unit: unit.to_string(),
        };
        if self.task.progress.as_ref() == Some(&progress) {
            return;
        }
        self.task.progress = Some(progress);
        let now = crate::now_ms();
        if done < total && now < self.last_progress_ms + PROGRESS_INTERVAL_MS {
            return;
        }
        self.last_progress_ms = now;
        if let Err(e) = self.persist_step().await {
            tracing::debug!(task = %self.task.id, error = %e, "progress not written");
        }
    }

    /// True once a cancel of the task was requested: a long step (a `Wait`
    /// loop) may stop early; the engine stops at the next step boundary.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_set()
    }

    /// Resolves when a cancel is requested (for `select!` in long steps).
    pub async fn cancelled(&self) {
        self.cancel.wait().await
    }

    async fn persist_step(&mut self) -> Result<(), StepError> {
        match self.persist(Vec::new()).await {
            Ok(()) => Ok(()),
            Err(PersistError::Fenced) => Err(StepError::Retry(
                "this worker lost the task to another worker".into(),
            )),
            Err(PersistError::Store(e)) => Err(StepError::Retry(e.to_string())),
        }
    }

    /// Writes the task (plus `extra` operations) if this worker still holds
    /// the app lock it claimed and nobody else wrote the task meanwhile; a
    /// concurrent cancel request is merged in and the write retried.
    pub(crate) async fn persist(&mut self, extra: Vec<TxnOp>) -> Result<(), PersistError> {
        self.persist_with(extra, None).await
    }

    /// [`Self::persist`], committing `event` (action, result, message) in
    /// the same transaction when given: the transition and its record go
    /// together, in one of the recorder's combined commits.
    pub(crate) async fn persist_with(
        &mut self,
        extra: Vec<TxnOp>,
        event: Option<(&str, EventResult, &str)>,
    ) -> Result<(), PersistError> {
        if self.fenced {
            return Err(PersistError::Fenced);
        }
        let task_key = keys::task(&self.task.id);
        // Transitions made in memory ride on this write: the last of them
        // stands for it when it has no event of its own.
        let (event, earlier) = match (event, self.pending.split_last()) {
            (Some(e), _) => (e, self.pending.len()),
            (None, Some((last, _))) => (
                (last.action, last.result, last.message.as_str()),
                self.pending.len() - 1,
            ),
            (None, None) => return self.persist_alone(&task_key, extra).await,
        };
        let (action, result, message) = (event.0, event.1, event.2.to_string());
        loop {
            self.task.updated_at_ms = crate::now_ms();
            let compares = vec![
                Compare::mod_revision(&task_key, self.task_rev),
                Compare::mod_revision(&self.lock_key, self.lock_rev),
            ];
            let mut ops = vec![TxnOp::put(&task_key, json::encode(&self.task)?)];
            ops.extend(extra.iter().cloned());
            let event = TransitionEvent {
                task: &self.task,
                action,
                result,
                message: &message,
                earlier: &self.pending[..earlier],
            };
            let events = self.events.clone();
            if let Some(rev) = events
                .commit(self.store.as_ref(), compares, ops, event)
                .await?
            {
                self.task_rev = rev;
                self.pending.clear();
                return Ok(());
            }
            let stored = self.store.get(&task_key).await?;
            let lock = self.store.get(&self.lock_key).await?;
            self.merge_or_fence(stored, lock)?;
        }
    }

    async fn persist_alone(
        &mut self,
        task_key: &str,
        extra: Vec<TxnOp>,
    ) -> Result<(), PersistError> {
        loop {
            self.task.updated_at_ms = crate::now_ms();
            let mut txn = Txn::new()
                .when(Compare::mod_revision(task_key, self.task_rev))
                .when(Compare::mod_revision(&self.lock_key, self.lock_rev))
                .and_then(TxnOp::put(task_key, json::encode(&self.task)?))
                .or_else(TxnOp::Get {
                    key: task_key.to_string(),
                })
                .or_else(TxnOp::Get {
                    key: self.lock_key.clone(),
                });
            txn.success.extend(extra.iter().cloned());
            let resp = self.store.txn(txn).await?;
            if resp.succeeded {
                self.task_rev = resp.revision;
                return Ok(());
            }
            let (stored, lock) = match resp.responses.as_slice() {
                [OpResponse::Get { kv: t }, OpResponse::Get { kv: l }] => (t.clone(), l.clone()),
                _ => return Err(StoreError::Backend("unexpected txn response".into()).into()),
            };
            self.merge_or_fence(stored, lock)?;
        }
    }

    /// After a failed write: fenced when the lock is no longer ours, else
    /// the task was written from outside (only a cancel request does that):
    /// merge it in and write again.
    fn merge_or_fence(
        &mut self,
        stored: Option<jdos_store::KeyValue>,
        lock: Option<jdos_store::KeyValue>,
    ) -> Result<(), PersistError> {
        let still_ours = lock.is_some_and(|l| l.mod_revision == self.lock_rev);
        let Some(stored) = stored.filter(|_| still_ours) else {
            self.fenced = true;
            return Err(PersistError::Fenced);
        };
        let theirs: Task = json::decode(&stored)?;
        if theirs.cancel_requested {
            self.task.cancel_requested = true;
            self.cancel.set();
        }
        self.task_rev = stored.mod_revision;
        Ok(())
    }
}
