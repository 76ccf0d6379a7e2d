//! The event recorder: every mutating call writes its [`Event`] in the same
//! store transaction as the mutation itself, so that a crash cannot keep one
//! and lose the other.
//!
//! Sequence numbers come from a counter key that every event-writing
//! transaction compare-and-swaps, so they are unique and increase in commit
//! order even with several server replicas on one store. Within one process
//! the recorder serializes its commits behind a mutex (rather than letting
//! them race and retry), keeping the counter's last known revision so a
//! commit needs no extra read.

use jdos_store::{json, Compare, OpResponse, Revision, Store, StoreError, Txn, TxnOp};
use jdos_types::{keys, Event, EventResult, UnixMillis};
use tokio::sync::Mutex;

/// Key of the event sequence counter (decimal JSON number of the last seq used).
pub const EVENT_SEQ_KEY: &str = "/jdos/meta/event-seq";

/// Everything of an [`Event`] but its sequence number and time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventDraft {
    /// Token name, `system`, or `agent:<host>`.
    pub actor: String,
    /// Verb, e.g. `host.cordon`.
    pub action: String,
    /// Object kind, e.g. `host`.
    pub object_kind: String,
    /// Object name.
    pub object: String,
    /// App concerned.
    pub app: Option<String>,
    /// Department concerned.
    pub department: Option<String>,
    /// Outcome.
    pub result: EventResult,
    /// Details.
    pub message: String,
}

impl EventDraft {
    /// A successful action on an object.
    pub fn new(actor: &str, action: &str, object_kind: &str, object: &str) -> Self {
        EventDraft {
            actor: actor.to_string(),
            action: action.to_string(),
            object_kind: object_kind.to_string(),
            object: object.to_string(),
            app: None,
            department: None,
            result: EventResult::Success,
            message: String::new(),
        }
    }

    /// Sets the app and its department.
    pub fn app(mut self, app: &str, department: &str) -> Self {
        self.app = Some(app.to_string());
        self.department = Some(department.to_string());
        self
    }

    /// Sets the message.
    pub fn message(mut self, m: impl Into<String>) -> Self {
        self.message = m.into();
        self
    }

    /// Marks the action failed, with why.
    pub fn failed(mut self, m: impl Into<String>) -> Self {
        self.result = EventResult::Failure;
        self.message = m.into();
        self
    }

    fn into_event(self, seq: u64, time_ms: UnixMillis) -> Event {
        Event {
            seq,
            time_ms,
            actor: self.actor,
            action: self.action,
            object_kind: self.object_kind,
            object: self.object,
            app: self.app,
            department: self.department,
            result: self.result,
            message: self.message,
        }
    }
}

/// A mutation: conditions, writes, and the event that records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mutation {
    /// Conditions on the objects read to plan the writes (usually their mod revisions).
    pub compares: Vec<Compare>,
    /// The writes.
    pub ops: Vec<TxnOp>,
    /// The event recording it.
    pub event: EventDraft,
}

/// Outcome of [`EventRecorder::commit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// Written at `revision`, recorded as event `seq`.
    Done {
        /// Store revision of the transaction.
        revision: Revision,
        /// Event sequence number.
        seq: u64,
    },
    /// A condition of the mutation no longer held (someone else wrote one of
    /// its objects): nothing was written; read again and re-plan.
    Stale,
}

#[derive(Debug, Default)]
struct SeqCache {
    loaded: bool,
    last_seq: u64,
    mod_revision: Revision,
}

/// Writes events, alone or with the mutation they record.
#[derive(Debug, Default)]
pub struct EventRecorder {
    seq: Mutex<SeqCache>,
}

impl EventRecorder {
    /// A recorder; it reads the counter on first use.
    pub fn new() -> Self {
        Self::default()
    }

    /// Commits `m` and its event atomically.
    pub async fn commit(
        &self,
        store: &dyn Store,
        m: Mutation,
        now_ms: UnixMillis,
    ) -> Result<Commit, StoreError> {
        let mut cache = self.seq.lock().await;
        // Bounded: each retry means another writer advanced the counter, which
        // on one store only another replica does.
        for _ in 0..64 {
            if !cache.loaded {
                reload(store, &mut cache).await?;
            }
            let seq = cache.last_seq + 1;
            let event = m.event.clone().into_event(seq, now_ms);
            let mut txn = Txn::new().when(Compare::mod_revision(EVENT_SEQ_KEY, cache.mod_revision));
            txn.compares.extend(m.compares.iter().cloned());
            txn.success.extend(m.ops.iter().cloned());
            txn.success
                .push(TxnOp::put(EVENT_SEQ_KEY, json::encode(&seq)?));
            txn.success
                .push(TxnOp::put(keys::event(seq), json::encode(&event)?));
            txn.failure.push(TxnOp::Get {
                key: EVENT_SEQ_KEY.to_string(),
            });
            let resp = store.txn(txn).await?;
            if resp.succeeded {
                cache.last_seq = seq;
                cache.mod_revision = resp.revision;
                return Ok(Commit::Done {
                    revision: resp.revision,
                    seq,
                });
            }
            let counter_rev = match resp.responses.first() {
                Some(OpResponse::Get { kv }) => kv.as_ref().map_or(0, |kv| kv.mod_revision),
                _ => {
                    cache.loaded = false;
                    continue;
                }
            };
            if counter_rev == cache.mod_revision {
                // The counter held, so one of the mutation's own conditions failed.
                return Ok(Commit::Stale);
            }
            cache.loaded = false;
        }
        Err(StoreError::Backend(
            "event sequence counter kept changing under this server: too many writers".into(),
        ))
    }

    /// Records an event on its own (e.g. a failed or forbidden attempt).
    pub async fn record(
        &self,
        store: &dyn Store,
        event: EventDraft,
        now_ms: UnixMillis,
    ) -> Result<u64, StoreError> {
        let m = Mutation {
            compares: Vec::new(),
            ops: Vec::new(),
            event,
        };
        match self.commit(store, m, now_ms).await? {
            Commit::Done { seq, .. } => Ok(seq),
            Commit::Stale => Err(StoreError::Backend(
                "event with no condition reported stale".into(),
            )),
        }
    }
}

async fn reload(store: &dyn Store, cache: &mut SeqCache) -> Result<(), StoreError> {
    match store.get(EVENT_SEQ_KEY).await? {
        Some(kv) => {
            cache.last_seq = json::decode(&kv)?;
            cache.mod_revision = kv.mod_revision;
        }
        None => {
            cache.last_seq = 0;
            cache.mod_revision = 0;
        }
    }
    cache.loaded = true;
    Ok(())
}
