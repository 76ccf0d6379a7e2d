//! The jdos state store: revisioned keys, compare-and-swap transactions,
//! prefix watch and leases, with etcd's semantics.
//!
//! Every backend implements [`Store`] and must pass the conformance suite in
//! [`conformance`]. Keys are UTF-8 paths (see `jdos_types::keys`), values are
//! opaque bytes (JSON by convention, see [`json`]).
//!
//! # Backends
//!
//! Open one with [`open`] (`memory://`, `redb:///path/file.redb` or a plain
//! path). Both embedded backends share one in-memory MVCC core: the key space
//! in a `BTreeMap` (reads and prefix lists never touch disk), the global
//! revision, a bounded log of recent revisions for watch replay, the watchers
//! and the lease table. So their semantics are identical and a
//! [`MemoryStore`] is a faithful stand-in for a [`RedbStore`] in tests.
//!
//! - [`MemoryStore`]: writes apply under the core's lock; nothing persists.
//! - [`RedbStore`]: one redb file. Writers enqueue to a single writer thread
//!   that drains the queue, evaluates the batch in order (so
//!   compare-and-swap sees every earlier write), commits it in one fsynced
//!   transaction, applies it to the core and only then acknowledges each
//!   writer (group commit). Readers and watchers therefore never see a write
//!   that could be lost in a crash.
//!
//! # Watches
//!
//! A watch replays the kept history from its start revision, then streams
//! live batches (one per revision) into a bounded channel. A watcher that
//! lets [`StoreOptions::watch_buffer`] batches pile up has its watch ended:
//! it receives what was queued, then `None`, and must re-list and watch again
//! from the list's revision — memory stays bounded whatever the watcher does.
//! History older than [`StoreOptions::history_events`] events counts as
//! compacted.
//!
//! # Leases
//!
//! A lease that is not kept alive within its TTL is revoked by a background
//! ticker (50 ms resolution): its keys are deleted in one revision, with
//! delete events. Persistent backends keep leases across restarts and give
//! each a full TTL from the open, as etcd does.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

mod codec;
pub mod conformance;
mod core;
mod engine;
mod memory;
mod redb_store;
mod wal;

pub use memory::MemoryStore;
pub use redb_store::RedbStore;

/// Tunables of the embedded backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// Watch events kept in memory for replay; a watch from an older revision
    /// fails with [`StoreError::Compacted`].
    pub history_events: usize,
    /// Event batches a watcher may have queued; a watcher that falls further
    /// behind has its watch ended (its channel closes) and must re-list.
    pub watch_buffer: usize,
    /// Revisions of history kept on disk (persistent backends), replayed to
    /// watches after a restart.
    pub disk_history: u64,
    /// redb: longest time between checkpoints of the write-ahead log into
    /// the file while writes come in (the log is replayed after a crash).
    pub checkpoint_every: std::time::Duration,
    /// redb: log bytes after which a checkpoint is due sooner.
    pub checkpoint_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            history_events: 200_000,
            watch_buffer: 16_384,
            disk_history: 10_000,
            checkpoint_every: std::time::Duration::from_secs(1),
            checkpoint_bytes: 64 << 20,
        }
    }
}

impl StoreOptions {
    fn limits(&self) -> core::CoreLimits {
        core::CoreLimits {
            history_events: self.history_events,
            watch_buffer: self.watch_buffer,
        }
    }
}

/// Opens a store by URL:
/// - `memory://` — a fresh in-memory [`MemoryStore`];
/// - `redb:///abs/path/file.redb`, `redb://rel/path.redb` or a plain path —
///   a [`RedbStore`] in that file (created with its directory if missing).
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    open_with(url, StoreOptions::default()).await
}

/// Like [`open`], with options for the embedded backends.
pub async fn open_with(url: &str, opts: StoreOptions) -> Result<Arc<dyn Store>> {
    if let Some(rest) = url.strip_prefix("memory:") {
        if !rest.is_empty() && rest != "//" {
            return Err(StoreError::Invalid(format!(
                "memory store url takes no path: {url:?} (use memory://)"
            )));
        }
        return Ok(Arc::new(MemoryStore::with_options(opts)));
    }
    let path = match url.strip_prefix("redb://") {
        Some(p) => p,
        None if url.contains("://") => {
            return Err(StoreError::Invalid(format!(
                "unsupported store url {url:?}: expected memory://, redb:///path/file.redb or a file path"
            )))
        }
        None => url,
    };
    if path.is_empty() {
        return Err(StoreError::Invalid(format!(
            "store url {url:?} has no file path"
        )));
    }
    let path = std::path::PathBuf::from(path);
    let store = tokio::task::spawn_blocking(move || RedbStore::open_with(path, opts))
        .await
        .map_err(|e| StoreError::Backend(format!("store open task failed: {e}")))??;
    Ok(Arc::new(store))
}

/// A store revision. The global revision increases by one with every committed
/// write transaction (a put, a delete that removed something, or a txn whose
/// chosen branch wrote something); 0 means "never".
pub type Revision = u64;

/// A lease id; 0 is never a valid lease.
pub type LeaseId = u64;

/// A key with its value and revisions, as etcd's `mvccpb.KeyValue`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value.
    pub value: Vec<u8>,
    /// Revision of the write that created the key (since its last delete).
    pub create_revision: Revision,
    /// Revision of the last write to the key.
    pub mod_revision: Revision,
    /// Number of writes since creation (1 after the first put).
    pub version: u64,
    /// Lease the key is attached to, if any.
    pub lease: Option<LeaseId>,
}

/// Options of a prefix range read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeOptions {
    /// Only keys strictly greater than this (for pagination: pass the last key
    /// of the previous page).
    pub start_after: Option<String>,
    /// At most this many keys (0 = no limit).
    pub limit: usize,
    /// Return keys and revisions only, with empty values.
    pub keys_only: bool,
}

/// One page of a range read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangePage {
    /// Keys in ascending order.
    pub kvs: Vec<KeyValue>,
    /// True when more keys match after the last one returned.
    pub more: bool,
    /// The store's revision at the time of the read.
    pub revision: Revision,
}

/// How a [`Compare`] compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// Equal.
    Equal,
    /// Not equal.
    NotEqual,
    /// Less than.
    Less,
    /// Greater than.
    Greater,
}

/// What a [`Compare`] looks at. A missing key has create/mod revision 0,
/// version 0 and no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CmpTarget {
    /// The key's version.
    Version(u64),
    /// The key's create revision (0 = the key does not exist).
    CreateRevision(Revision),
    /// The key's mod revision.
    ModRevision(Revision),
    /// The key's value (a missing key never equals any value).
    Value(Vec<u8>),
}

/// One condition of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compare {
    /// Key compared.
    pub key: String,
    /// Operator.
    pub op: CmpOp,
    /// Target.
    pub target: CmpTarget,
}

impl Compare {
    /// The key does not exist.
    pub fn absent(key: impl Into<String>) -> Self {
        Compare {
            key: key.into(),
            op: CmpOp::Equal,
            target: CmpTarget::CreateRevision(0),
        }
    }

    /// The key was last modified at `rev` (0 = does not exist).
    pub fn mod_revision(key: impl Into<String>, rev: Revision) -> Self {
        Compare {
            key: key.into(),
            op: CmpOp::Equal,
            target: CmpTarget::ModRevision(rev),
        }
    }

    /// The key holds exactly `value`.
    pub fn value(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Compare {
            key: key.into(),
            op: CmpOp::Equal,
            target: CmpTarget::Value(value.into()),
        }
    }

    /// Whether this condition holds for `kv`, the key's current state
    /// (`None`: absent), as a transaction evaluates it.
    pub fn holds(&self, kv: Option<&KeyValue>) -> bool {
        let ord = match &self.target {
            CmpTarget::Version(v) => kv.map_or(0, |kv| kv.version).cmp(v),
            CmpTarget::CreateRevision(r) => kv.map_or(0, |kv| kv.create_revision).cmp(r),
            CmpTarget::ModRevision(r) => kv.map_or(0, |kv| kv.mod_revision).cmp(r),
            CmpTarget::Value(v) => match kv {
                // A missing key compares false with any value, whatever the op.
                None => return false,
                Some(kv) => kv.value.as_slice().cmp(v.as_slice()),
            },
        };
        match self.op {
            CmpOp::Equal => ord.is_eq(),
            CmpOp::NotEqual => ord.is_ne(),
            CmpOp::Less => ord.is_lt(),
            CmpOp::Greater => ord.is_gt(),
        }
    }
}

/// One operation of a transaction branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOp {
    /// Put a key, optionally attached to a lease.
    Put {
        /// Key.
        key: String,
        /// Value.
        value: Vec<u8>,
        /// Lease.
        lease: Option<LeaseId>,
    },
    /// Delete one key.
    Delete {
        /// Key.
        key: String,
    },
    /// Delete every key under a prefix.
    DeletePrefix {
        /// Prefix.
        prefix: String,
    },
    /// Read one key (its result appears in [`TxnResponse::responses`]).
    Get {
        /// Key.
        key: String,
    },
}

impl TxnOp {
    /// A put with no lease.
    pub fn put(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        TxnOp::Put {
            key: key.into(),
            value: value.into(),
            lease: None,
        }
    }

    /// A delete.
    pub fn delete(key: impl Into<String>) -> Self {
        TxnOp::Delete { key: key.into() }
    }
}

/// A multi-key transaction: if every compare holds, apply `success`, else
/// `failure`. Atomic: all of a branch commits at one revision or none does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    /// Conditions, all of which must hold.
    pub compares: Vec<Compare>,
    /// Applied when they hold.
    pub success: Vec<TxnOp>,
    /// Applied otherwise.
    pub failure: Vec<TxnOp>,
}

impl Txn {
    /// An empty transaction.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a condition.
    pub fn when(mut self, c: Compare) -> Self {
        self.compares.push(c);
        self
    }

    /// Adds a success operation.
    pub fn and_then(mut self, op: TxnOp) -> Self {
        self.success.push(op);
        self
    }

    /// Adds a failure operation.
    pub fn or_else(mut self, op: TxnOp) -> Self {
        self.failure.push(op);
        self
    }
}

/// What one [`TxnOp`] returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResponse {
    /// A put; the key's previous value, if any.
    Put {
        /// Previous key-value.
        prev: Option<KeyValue>,
    },
    /// A delete / delete-prefix; how many keys were removed.
    Delete {
        /// Keys removed.
        deleted: u64,
    },
    /// A get.
    Get {
        /// The key-value, if present.
        kv: Option<KeyValue>,
    },
}

/// Result of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnResponse {
    /// True when every compare held and `success` ran.
    pub succeeded: bool,
    /// The store revision after the transaction.
    pub revision: Revision,
    /// One response per operation of the branch that ran.
    pub responses: Vec<OpResponse>,
}

/// Kind of a watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A put.
    Put,
    /// A delete (including a lease expiry).
    Delete,
}

/// A change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    /// Put or delete.
    pub kind: EventKind,
    /// The key-value after the change; for a delete, the key with an empty
    /// value and `mod_revision` set to the deleting revision.
    pub kv: KeyValue,
    /// The key-value before the change, if it existed.
    pub prev: Option<KeyValue>,
}

/// A stream of watch events, in revision order, with no gaps and no
/// duplicates. Each batch holds the events of exactly one revision (one
/// transaction), in the order the transaction applied them.
pub struct Watch {
    /// Receives batches of events; closed when the store drops the watch
    /// (e.g. the watcher fell too far behind: re-list and watch again).
    pub rx: tokio::sync::mpsc::Receiver<Result<Vec<WatchEvent>, StoreError>>,
}

impl Watch {
    /// The next batch of events, or `None` when the watch ended.
    pub async fn next(&mut self) -> Option<Result<Vec<WatchEvent>, StoreError>> {
        self.rx.recv().await
    }
}

/// Store errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// A watch asked for history that was compacted away.
    #[error("revision {requested} was compacted (oldest kept is {compacted}): list again and watch from the list's revision")]
    Compacted {
        /// Revision asked for.
        requested: Revision,
        /// Oldest revision still available.
        compacted: Revision,
    },
    /// A revision in the future was asked for.
    #[error("revision {requested} is newer than the store's {current}")]
    FutureRevision {
        /// Revision asked for.
        requested: Revision,
        /// Current revision.
        current: Revision,
    },
    /// The lease does not exist (never granted, revoked or expired).
    #[error("lease {0} not found (expired or revoked)")]
    LeaseNotFound(LeaseId),
    /// The input was not acceptable (empty key, bad TTL, too large …).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The backend failed (disk, network); the write may not have happened.
    #[error("store backend failed: {0}")]
    Backend(String),
    /// The store is closed.
    #[error("store is closed")]
    Closed,
}

/// Result alias.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A revisioned key-value store with etcd's semantics.
///
/// Every write is durable when its future resolves (for persistent
/// backends). Implementations batch concurrent writes (group commit) so
/// that many writers share one sync.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Reads one key.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Reads the keys under `prefix` in ascending order, one page at a time.
    async fn range(&self, prefix: &str, opts: RangeOptions) -> Result<RangePage>;

    /// Writes one key, returning the new revision.
    async fn put(&self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> Result<Revision>;

    /// Deletes one key, returning the revision of the delete, or `None` when
    /// the key did not exist (nothing was written).
    async fn delete(&self, key: &str) -> Result<Option<Revision>>;

    /// Runs a compare-and-swap transaction atomically.
    async fn txn(&self, txn: Txn) -> Result<TxnResponse>;

    /// Watches every key under `prefix`, from revision `from` (inclusive);
    /// `0` means "from now on".
    async fn watch(&self, prefix: &str, from: Revision) -> Result<Watch>;

    /// Grants a lease with the given time to live.
    async fn lease_grant(&self, ttl: Duration) -> Result<LeaseId>;

    /// Renews a lease for another TTL.
    async fn lease_keep_alive(&self, lease: LeaseId) -> Result<()>;

    /// Revokes a lease, deleting every key attached to it.
    async fn lease_revoke(&self, lease: LeaseId) -> Result<()>;

    /// The current global revision.
    async fn revision(&self) -> Result<Revision>;

    /// Drops history older than `rev`: watches from before it fail with
    /// [`StoreError::Compacted`].
    async fn compact(&self, rev: Revision) -> Result<()>;

    /// Most operations (and, separately, compares) a writer should combine
    /// into one transaction. etcd refuses more than 128 by default
    /// (`--max-txn-ops`); the embedded backends commit any size, and a
    /// batch costs them one log append whatever it holds.
    fn max_txn_ops(&self) -> usize {
        EMBEDDED_MAX_TXN_OPS
    }
}

/// [`Store::max_txn_ops`] of the embedded backends.
pub const EMBEDDED_MAX_TXN_OPS: usize = 4096;

/// Visits every key-value under `prefix` in key order, one page of at most
/// `page_size` keys at a time (0 = no limit), so a large prefix is never
/// held in one answer. Returns the store revision of the first page's read.
/// The caller's error type only has to accept store errors.
pub async fn for_each_page<S, E, F>(
    store: &S,
    prefix: &str,
    page_size: usize,
    mut f: F,
) -> std::result::Result<Revision, E>
where
    S: Store + ?Sized,
    E: From<StoreError>,
    F: FnMut(&[KeyValue]) -> std::result::Result<(), E>,
{
    let mut start_after = None;
    let mut first_revision = None;
    loop {
        let page = store
            .range(
                prefix,
                RangeOptions {
                    start_after: start_after.take(),
                    limit: page_size,
                    keys_only: false,
                },
            )
            .await?;
        let revision = *first_revision.get_or_insert(page.revision);
        f(&page.kvs)?;
        match (page.more, page.kvs.last()) {
            (true, Some(last)) => start_after = Some(last.key.clone()),
            _ => return Ok(revision),
        }
    }
}

/// JSON helpers for storing typed values.
pub mod json {
    use serde::{de::DeserializeOwned, Serialize};

    use crate::{KeyValue, StoreError};

    /// Serializes a value for the store.
    pub fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
        serde_json::to_vec(v).map_err(|e| StoreError::Invalid(format!("cannot encode value: {e}")))
    }

    /// Deserializes a stored value.
    pub fn decode<T: DeserializeOwned>(kv: &KeyValue) -> Result<T, StoreError> {
        serde_json::from_slice(&kv.value)
            .map_err(|e| StoreError::Backend(format!("corrupt value at {}: {e}", kv.key)))
    }

    /// Reads and decodes every value under `prefix`, in key order, page by
    /// page. Its cost grows with the data: for summaries and checkers, not
    /// for request paths that must stay bounded.
    pub async fn list_all<T: DeserializeOwned>(
        store: &(impl crate::Store + ?Sized),
        prefix: &str,
    ) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        crate::for_each_page(store, prefix, 4096, |kvs| {
            for kv in kvs {
                out.push(decode(kv)?);
            }
            Ok::<_, StoreError>(())
        })
        .await?;
        Ok(out)
    }
}
