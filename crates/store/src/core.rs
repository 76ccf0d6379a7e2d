//! The in-memory MVCC core shared by every embedded backend.
//!
//! [`Core`] holds the current key space (a `BTreeMap`, so prefix lists are
//! ordered range scans), the global revision, a bounded log of recent
//! revisions for watch replay, the live watchers and the lease table.
//!
//! Writes happen in two steps so that a persistent backend can make them
//! durable before anyone sees them:
//! 1. a [`Planner`] evaluates a sequence of [`WriteReq`]s against the core
//!    plus its own overlay of not-yet-applied changes (later requests of a
//!    batch see earlier ones), producing a [`Plan`] and one result per
//!    request, without mutating the core;
//! 2. after the backend persisted the plan, [`Core::apply`] folds it into
//!    the core and fans the events out to watchers.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::{
    Compare, EventKind, KeyValue, LeaseId, OpResponse, RangeOptions, RangePage, Result, Revision,
    StoreError, Txn, TxnOp, TxnResponse, Watch, WatchEvent,
};

/// Longest accepted key, in bytes.
pub(crate) const MAX_KEY_LEN: usize = 8 * 1024;

/// Tunables of the core.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CoreLimits {
    /// Events kept for watch replay; older revisions count as compacted.
    pub history_events: usize,
    /// Batches a watcher may have queued before it is dropped.
    pub watch_buffer: usize,
}

/// A lease in memory.
#[derive(Debug, Clone)]
pub(crate) struct LeaseState {
    pub ttl: Duration,
    pub deadline: Instant,
    pub keys: BTreeSet<String>,
}

struct HistEntry {
    rev: Revision,
    events: Arc<Vec<WatchEvent>>,
}

struct Watcher {
    prefix: String,
    from: Revision,
    tx: mpsc::Sender<Result<Vec<WatchEvent>>>,
}

impl Watcher {
    /// Hands `batch` (events of revision `rev` under its prefix) to the
    /// watcher; false when the watcher is gone or fell too far behind.
    fn offer(&self, rev: Revision, batch: &[WatchEvent]) -> bool {
        if rev < self.from || batch.is_empty() {
            return !self.tx.is_closed();
        }
        match self.tx.try_send(Ok(batch.to_vec())) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                // Dropping the sender ends the watch once the receiver
                // drained what is queued; it must re-list and re-watch.
                tracing::warn!(prefix = %self.prefix, rev, "watcher fell too far behind; ending its watch");
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// The live watchers. Every prefix of the key layout ends in `/`
/// (`/jdos/assign/<host>/`), so those watchers are indexed by prefix and an
/// event reaches them by looking up each `/`-prefix of its key: a commit
/// costs O(events × key depth), not O(events × watchers) — 6,000 agents
/// each long-polling their host's prefix would otherwise make every write
/// scan 6,000 prefixes under the write lock. Other prefixes (exact keys,
/// the empty prefix) are few and checked one by one.
#[derive(Default)]
struct Watchers {
    by_dir: HashMap<String, Vec<Watcher>>,
    other: Vec<Watcher>,
    /// Notifications since closed watchers were last swept from `by_dir`.
    since_sweep: usize,
}

impl Watchers {
    fn add(&mut self, w: Watcher) {
        if w.prefix.ends_with('/') {
            let list = self.by_dir.entry(w.prefix.clone()).or_default();
            list.retain(|w| !w.tx.is_closed());
            list.push(w);
        } else {
            self.other.retain(|w| !w.tx.is_closed());
            self.other.push(w);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_dir.values().map(Vec::len).sum::<usize>() + self.other.len()
    }

    fn notify(&mut self, rev: Revision, events: &[WatchEvent]) {
        if !self.by_dir.is_empty() {
            let mut batches: HashMap<&str, Vec<WatchEvent>> = HashMap::new();
            for e in events {
                let key = e.kv.key.as_str();
                for (i, b) in key.bytes().enumerate() {
                    if b == b'/' && self.by_dir.contains_key(&key[..=i]) {
                        batches.entry(&key[..=i]).or_default().push(e.clone());
                    }
                }
            }
            for (prefix, batch) in batches {
                if let Some(list) = self.by_dir.get_mut(prefix) {
                    list.retain(|w| w.offer(rev, &batch));
                    if list.is_empty() {
                        self.by_dir.remove(prefix);
                    }
                }
            }
            // Watchers whose prefix sees no writes are otherwise never
            // visited: sweep the closed ones now and then.
            self.since_sweep += 1;
            if self.since_sweep >= 1024 {
                self.since_sweep = 0;
                self.by_dir.retain(|_, list| {
                    list.retain(|w| !w.tx.is_closed());
                    !list.is_empty()
                });
            }
        }
        self.other
            .retain(|w| w.offer(rev, &filter_events(events, &w.prefix)));
    }
}

/// The in-memory state of a store.
pub(crate) struct Core {
    pub kvs: BTreeMap<String, KeyValue>,
    pub revision: Revision,
    /// Oldest revision a watch may start from; every revision in
    /// `compacted..=revision` is in `history`.
    pub compacted: Revision,
    pub leases: HashMap<LeaseId, LeaseState>,
    pub next_lease: LeaseId,
    history: VecDeque<HistEntry>,
    history_len: usize,
    watchers: Watchers,
    limits: CoreLimits,
}

/// One write request, as queued to the single writer.
#[derive(Debug, Clone)]
pub(crate) enum WriteReq {
    Txn(Txn),
    LeaseGrant(Duration),
    LeaseRevoke(LeaseId),
    /// Revoke the lease only if it is (still) past its deadline.
    LeaseExpire(LeaseId),
    Compact(Revision),
}

/// The result of one [`WriteReq`].
#[derive(Debug, Clone)]
pub(crate) enum WriteResp {
    Txn(TxnResponse),
    Lease(LeaseId),
    Done,
}

/// One step of a plan, applied in order.
#[derive(Debug, Clone)]
pub(crate) enum Effect {
    Commit {
        rev: Revision,
        events: Vec<WatchEvent>,
    },
    Grant {
        id: LeaseId,
        ttl: Duration,
    },
    Revoke {
        id: LeaseId,
    },
    Compact(Revision),
}

/// The changes of a batch of write requests.
#[derive(Debug, Clone, Default)]
pub(crate) struct Plan {
    pub effects: Vec<Effect>,
    /// Final state of every key the batch touched (`None` = deleted).
    pub kvs: BTreeMap<String, Option<KeyValue>>,
    /// Final state of every lease the batch touched (`None` = revoked).
    pub leases: BTreeMap<LeaseId, Option<Duration>>,
    pub revision: Revision,
    pub next_lease: LeaseId,
    pub compacted: Revision,
}

impl Plan {
    /// True when applying the plan would change nothing.
    pub fn is_empty(&self) -> bool {
        self.effects.is_empty()
    }
}

/// Reads through a poisoned lock: the core is only mutated by `apply`, which
/// does not panic midway on valid plans.
pub(crate) fn read(lock: &std::sync::RwLock<Core>) -> std::sync::RwLockReadGuard<'_, Core> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

/// Write access, see [`read`].
pub(crate) fn write(lock: &std::sync::RwLock<Core>) -> std::sync::RwLockWriteGuard<'_, Core> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn validate_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(StoreError::Invalid("key must not be empty".into()));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(StoreError::Invalid(format!(
            "key of {} bytes is longer than the {MAX_KEY_LEN} allowed",
            key.len()
        )));
    }
    Ok(())
}

impl Core {
    /// An empty core.
    pub fn new(limits: CoreLimits) -> Self {
        Core {
            kvs: BTreeMap::new(),
            revision: 0,
            compacted: 1,
            leases: HashMap::new(),
            next_lease: 1,
            history: VecDeque::new(),
            history_len: 0,
            watchers: Watchers::default(),
            limits: CoreLimits {
                history_events: limits.history_events.max(1),
                watch_buffer: limits.watch_buffer.max(1),
            },
        }
    }

    /// Restores a core from persisted state. `history` is ascending by
    /// revision; only its contiguous tail ending at `revision` is kept, and
    /// everything older counts as compacted.
    pub fn restore(
        limits: CoreLimits,
        kvs: BTreeMap<String, KeyValue>,
        revision: Revision,
        compacted: Revision,
        leases: Vec<(LeaseId, Duration)>,
        next_lease: LeaseId,
        history: Vec<(Revision, Vec<WatchEvent>)>,
    ) -> Self {
        let mut core = Core::new(limits);
        let now = Instant::now();
        for (id, ttl) in leases {
            core.leases.insert(
                id,
                LeaseState {
                    ttl,
                    deadline: now + ttl,
                    keys: BTreeSet::new(),
                },
            );
        }
        for kv in kvs.values() {
            if let Some(l) = kv.lease {
                if let Some(ls) = core.leases.get_mut(&l) {
                    ls.keys.insert(kv.key.clone());
                }
            }
        }
        core.kvs = kvs;
        core.revision = revision;
        core.next_lease = next_lease.max(1);
        // Only a contiguous tail of history ending at `revision` is usable.
        let mut expect = revision;
        let mut tail = Vec::new();
        for (rev, events) in history.into_iter().rev() {
            if rev != expect || rev == 0 {
                break;
            }
            tail.push((rev, events));
            expect -= 1;
        }
        tail.reverse();
        core.compacted = compacted.max(expect + 1);
        for (rev, events) in tail {
            if rev >= core.compacted {
                core.history_len += events.len();
                core.history.push_back(HistEntry {
                    rev,
                    events: Arc::new(events),
                });
            }
        }
        core.trim_history();
        core
    }

    /// The history entries of revisions in `after+1..=upto` still held.
    pub fn history_range(
        &self,
        after: Revision,
        upto: Revision,
    ) -> Vec<(Revision, Arc<Vec<WatchEvent>>)> {
        let start = self.history.partition_point(|h| h.rev <= after);
        self.history
            .range(start..)
            .take_while(|h| h.rev <= upto)
            .map(|h| (h.rev, h.events.clone()))
            .collect()
    }

    /// Reads one key.
    pub fn get(&self, key: &str) -> Option<KeyValue> {
        self.kvs.get(key).cloned()
    }

    /// Reads one page of keys under `prefix`.
    pub fn range(&self, prefix: &str, opts: &RangeOptions) -> RangePage {
        let start = match &opts.start_after {
            Some(after) if after.as_str() >= prefix => Bound::Excluded(after.as_str()),
            _ => Bound::Included(prefix),
        };
        let limit = if opts.limit == 0 {
            usize::MAX
        } else {
            opts.limit
        };
        let mut kvs = Vec::with_capacity(limit.min(1 << 16));
        let mut more = false;
        for (k, kv) in self
            .kvs
            .range::<str, _>((start, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
        {
            if kvs.len() == limit {
                more = true;
                break;
            }
            if opts.keys_only {
                kvs.push(KeyValue {
                    key: k.clone(),
                    value: Vec::new(),
                    ..kv.clone_without_value()
                });
            } else {
                kvs.push(kv.clone());
            }
        }
        RangePage {
            kvs,
            more,
            revision: self.revision,
        }
    }

    /// Registers a watcher; replays history from `from` first.
    pub fn watch(&mut self, prefix: &str, from: Revision) -> Result<Watch> {
        let from = if from == 0 { self.revision + 1 } else { from };
        if from < self.compacted {
            return Err(StoreError::Compacted {
                requested: from,
                compacted: self.compacted,
            });
        }
        let replay: Vec<Vec<WatchEvent>> = self
            .history
            .iter()
            .filter(|h| h.rev >= from)
            .map(|h| filter_events(&h.events, prefix))
            .filter(|b| !b.is_empty())
            .collect();
        // The replay must fit: the buffer bound applies to live events only,
        // and the replay itself is bounded by the history size.
        // Saturating and capped: `watch_buffer` is a caller's option, and
        // tokio panics on a capacity above its semaphore's maximum.
        let capacity = replay
            .len()
            .saturating_add(self.limits.watch_buffer)
            .min(tokio::sync::Semaphore::MAX_PERMITS);
        let (tx, rx) = mpsc::channel(capacity);
        for batch in replay {
            // Cannot fail: the channel was sized for the replay.
            let _ = tx.try_send(Ok(batch));
        }
        self.watchers.add(Watcher {
            prefix: prefix.to_string(),
            from,
            tx,
        });
        Ok(Watch { rx })
    }

    /// Number of live watchers (closed ones are pruned on the next write).
    #[cfg(test)]
    pub fn watcher_count(&self) -> usize {
        self.watchers.len()
    }

    /// Leases whose deadline has passed.
    pub fn expired_leases(&self, now: Instant) -> Vec<LeaseId> {
        self.leases
            .iter()
            .filter(|(_, l)| l.deadline <= now)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Renews a lease. A lease past its deadline counts as gone even if the
    /// ticker has not revoked it yet (as in etcd): renewing it would let
    /// its keys outlive the TTL and race the queued revocation.
    pub fn keep_alive(&mut self, id: LeaseId) -> Result<()> {
        let now = Instant::now();
        match self.leases.get_mut(&id) {
            Some(l) if l.deadline > now => {
                l.deadline = now + l.ttl;
                Ok(())
            }
            _ => Err(StoreError::LeaseNotFound(id)),
        }
    }

    /// Folds a plan into the core and notifies watchers.
    pub fn apply(&mut self, plan: Plan) {
        for effect in plan.effects {
            match effect {
                Effect::Commit { rev, events } => {
                    for ev in &events {
                        let key = &ev.kv.key;
                        if let Some(pl) = ev.prev.as_ref().and_then(|p| p.lease) {
                            if let Some(ls) = self.leases.get_mut(&pl) {
                                ls.keys.remove(key);
                            }
                        }
                        match ev.kind {
                            EventKind::Put => {
                                if let Some(l) = ev.kv.lease {
                                    if let Some(ls) = self.leases.get_mut(&l) {
                                        ls.keys.insert(key.clone());
                                    }
                                }
                                self.kvs.insert(key.clone(), ev.kv.clone());
                            }
                            EventKind::Delete => {
                                self.kvs.remove(key);
                            }
                        }
                    }
                    self.revision = rev;
                    let events = Arc::new(events);
                    self.notify(rev, &events);
                    self.history_len += events.len();
                    self.history.push_back(HistEntry { rev, events });
                    self.trim_history();
                }
                Effect::Grant { id, ttl } => {
                    self.leases.insert(
                        id,
                        LeaseState {
                            ttl,
                            deadline: Instant::now() + ttl,
                            keys: BTreeSet::new(),
                        },
                    );
                }
                Effect::Revoke { id } => {
                    self.leases.remove(&id);
                }
                Effect::Compact(rev) => {
                    if rev > self.compacted {
                        self.compacted = rev;
                        while self.history.front().is_some_and(|h| h.rev < rev) {
                            if let Some(h) = self.history.pop_front() {
                                self.history_len -= h.events.len();
                            }
                        }
                    }
                }
            }
        }
        self.next_lease = self.next_lease.max(plan.next_lease);
    }

    fn trim_history(&mut self) {
        while self.history_len > self.limits.history_events && self.history.len() > 1 {
            if let Some(h) = self.history.pop_front() {
                self.history_len -= h.events.len();
                self.compacted = self.compacted.max(h.rev + 1);
            }
        }
    }

    fn notify(&mut self, rev: Revision, events: &Arc<Vec<WatchEvent>>) {
        self.watchers.notify(rev, events);
    }
}

impl KeyValue {
    fn clone_without_value(&self) -> KeyValue {
        KeyValue {
            key: String::new(),
            value: Vec::new(),
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
            lease: self.lease,
        }
    }
}

fn filter_events(events: &[WatchEvent], prefix: &str) -> Vec<WatchEvent> {
    events
        .iter()
        .filter(|e| e.kv.key.starts_with(prefix))
        .cloned()
        .collect()
}

/// Evaluates write requests against a core plus the changes of the
/// requests planned before them.
pub(crate) struct Planner<'a> {
    core: &'a Core,
    plan: Plan,
}

impl<'a> Planner<'a> {
    /// A planner over `core`.
    pub fn new(core: &'a Core) -> Self {
        Planner {
            core,
            plan: Plan {
                revision: core.revision,
                next_lease: core.next_lease,
                compacted: core.compacted,
                ..Plan::default()
            },
        }
    }

    /// The accumulated plan.
    pub fn finish(self) -> Plan {
        self.plan
    }

    /// Plans one request; on error nothing of it is in the plan.
    pub fn plan(&mut self, req: &WriteReq) -> Result<WriteResp> {
        match req {
            WriteReq::Txn(txn) => self.txn(txn).map(WriteResp::Txn),
            WriteReq::LeaseGrant(ttl) => self.grant(*ttl).map(WriteResp::Lease),
            WriteReq::LeaseRevoke(id) => {
                if !self.lease_exists(*id) {
                    return Err(StoreError::LeaseNotFound(*id));
                }
                self.revoke(*id);
                Ok(WriteResp::Done)
            }
            WriteReq::LeaseExpire(id) => {
                let expired = self.lease_exists(*id)
                    && !self.plan.leases.contains_key(id)
                    && self
                        .core
                        .leases
                        .get(id)
                        .is_some_and(|l| l.deadline <= Instant::now());
                if expired {
                    tracing::debug!(lease = id, "lease expired");
                    self.revoke(*id);
                }
                Ok(WriteResp::Done)
            }
            WriteReq::Compact(rev) => {
                if *rev > self.plan.revision {
                    return Err(StoreError::FutureRevision {
                        requested: *rev,
                        current: self.plan.revision,
                    });
                }
                if *rev > self.plan.compacted {
                    self.plan.compacted = *rev;
                    self.plan.effects.push(Effect::Compact(*rev));
                }
                Ok(WriteResp::Done)
            }
        }
    }

    fn lookup(&self, key: &str) -> Option<KeyValue> {
        match self.plan.kvs.get(key) {
            Some(v) => v.clone(),
            None => self.core.kvs.get(key).cloned(),
        }
    }

    fn lookup_ref(&self, key: &str) -> Option<&KeyValue> {
        match self.plan.kvs.get(key) {
            Some(v) => v.as_ref(),
            None => self.core.kvs.get(key),
        }
    }

    fn lease_exists(&self, id: LeaseId) -> bool {
        match self.plan.leases.get(&id) {
            Some(v) => v.is_some(),
            None => self.core.leases.contains_key(&id),
        }
    }

    fn prefix_keys(&self, prefix: &str) -> Vec<String> {
        let mut keys: BTreeSet<&String> = self
            .core
            .kvs
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k)
            .collect();
        keys.extend(
            self.plan
                .kvs
                .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(k, _)| k),
        );
        keys.into_iter()
            .filter(|k| self.lookup_ref(k).is_some())
            .cloned()
            .collect()
    }

    fn compare(&self, c: &Compare) -> bool {
        c.holds(self.lookup_ref(&c.key))
    }

    fn validate_txn(&self, txn: &Txn) -> Result<()> {
        for c in &txn.compares {
            validate_key(&c.key)?;
        }
        for op in txn.success.iter().chain(&txn.failure) {
            match op {
                TxnOp::Put { key, .. } | TxnOp::Delete { key } | TxnOp::Get { key } => {
                    validate_key(key)?
                }
                TxnOp::DeletePrefix { .. } => {}
            }
        }
        check_branch_writes(&txn.success)?;
        check_branch_writes(&txn.failure)
    }

    fn txn(&mut self, txn: &Txn) -> Result<TxnResponse> {
        self.validate_txn(txn)?;
        let succeeded = txn.compares.iter().all(|c| self.compare(c));
        let ops = if succeeded {
            &txn.success
        } else {
            &txn.failure
        };
        for op in ops {
            if let TxnOp::Put { lease: Some(l), .. } = op {
                if !self.lease_exists(*l) {
                    return Err(StoreError::LeaseNotFound(*l));
                }
            }
        }
        let rev = self.plan.revision + 1;
        let mut events = Vec::new();
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            match op {
                TxnOp::Put { key, value, lease } => {
                    let prev = self.lookup(key);
                    let kv = KeyValue {
                        key: key.clone(),
                        value: value.clone(),
                        create_revision: prev.as_ref().map_or(rev, |p| p.create_revision),
                        mod_revision: rev,
                        version: prev.as_ref().map_or(1, |p| p.version + 1),
                        lease: *lease,
                    };
                    self.plan.kvs.insert(key.clone(), Some(kv.clone()));
                    events.push(WatchEvent {
                        kind: EventKind::Put,
                        kv,
                        prev: prev.clone(),
                    });
                    responses.push(OpResponse::Put { prev });
                }
                TxnOp::Delete { key } => {
                    let deleted = u64::from(self.delete_key(key, rev, &mut events));
                    responses.push(OpResponse::Delete { deleted });
                }
                TxnOp::DeletePrefix { prefix } => {
                    let mut deleted = 0;
                    for key in self.prefix_keys(prefix) {
                        deleted += u64::from(self.delete_key(&key, rev, &mut events));
                    }
                    responses.push(OpResponse::Delete { deleted });
                }
                TxnOp::Get { key } => responses.push(OpResponse::Get {
                    kv: self.lookup(key),
                }),
            }
        }
        if !events.is_empty() {
            self.plan.revision = rev;
            self.plan.effects.push(Effect::Commit { rev, events });
        }
        Ok(TxnResponse {
            succeeded,
            revision: self.plan.revision,
            responses,
        })
    }

    fn delete_key(&mut self, key: &str, rev: Revision, events: &mut Vec<WatchEvent>) -> bool {
        let Some(prev) = self.lookup(key) else {
            return false;
        };
        self.plan.kvs.insert(key.to_string(), None);
        events.push(WatchEvent {
            kind: EventKind::Delete,
            kv: KeyValue {
                key: key.to_string(),
                value: Vec::new(),
                create_revision: 0,
                mod_revision: rev,
                version: 0,
                lease: None,
            },
            prev: Some(prev),
        });
        true
    }

    fn grant(&mut self, ttl: Duration) -> Result<LeaseId> {
        if ttl.is_zero() {
            return Err(StoreError::Invalid("lease ttl must be positive".into()));
        }
        if ttl > Duration::from_secs(365 * 24 * 3600) {
            return Err(StoreError::Invalid("lease ttl must be under a year".into()));
        }
        let id = self.plan.next_lease;
        self.plan.next_lease += 1;
        self.plan.leases.insert(id, Some(ttl));
        self.plan.effects.push(Effect::Grant { id, ttl });
        Ok(id)
    }

    /// Deletes every key attached to the lease (one revision) and drops it.
    fn revoke(&mut self, id: LeaseId) {
        let mut candidates: BTreeSet<String> = self
            .core
            .leases
            .get(&id)
            .map(|l| l.keys.clone())
            .unwrap_or_default();
        candidates.extend(
            self.plan
                .kvs
                .iter()
                .filter(|(_, v)| v.as_ref().is_some_and(|kv| kv.lease == Some(id)))
                .map(|(k, _)| k.clone()),
        );
        let rev = self.plan.revision + 1;
        let mut events = Vec::new();
        for key in candidates {
            if self.lookup_ref(&key).is_some_and(|kv| kv.lease == Some(id)) {
                self.delete_key(&key, rev, &mut events);
            }
        }
        if !events.is_empty() {
            self.plan.revision = rev;
            self.plan.effects.push(Effect::Commit { rev, events });
        }
        self.plan.leases.insert(id, None);
        self.plan.effects.push(Effect::Revoke { id });
    }
}

/// etcd refuses a transaction branch that writes one key twice ("duplicate
/// key given in txn request"): two puts of a key, a put and a delete of it, or
/// a put under a prefix the branch also deletes. Refusing it here too keeps
/// every backend's semantics identical and rules out two events for one key
/// at one revision. Deleting a key twice is allowed, as in etcd.
fn check_branch_writes(ops: &[TxnOp]) -> Result<()> {
    let mut puts = std::collections::HashSet::new();
    let mut deletes = std::collections::HashSet::new();
    let mut prefixes = Vec::new();
    for op in ops {
        match op {
            TxnOp::Put { key, .. } => {
                if !puts.insert(key.as_str()) {
                    return Err(duplicate(key));
                }
            }
            TxnOp::Delete { key } => {
                deletes.insert(key.as_str());
            }
            TxnOp::DeletePrefix { prefix } => prefixes.push(prefix.as_str()),
            TxnOp::Get { .. } => {}
        }
    }
    for key in &puts {
        if deletes.contains(key) || prefixes.iter().any(|p| key.starts_with(p)) {
            return Err(duplicate(key));
        }
    }
    Ok(())
}

fn duplicate(key: &str) -> StoreError {
    StoreError::Invalid(format!(
        "key {key:?} is written twice in one transaction branch: merge the operations"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(history_events: usize, watch_buffer: usize) -> CoreLimits {
        CoreLimits {
            history_events,
            watch_buffer,
        }
    }

    fn put(core: &mut Core, key: &str, v: &[u8]) -> Result<WriteResp> {
        let (plan, res) = {
            let mut p = Planner::new(core);
            let res = p.plan(&WriteReq::Txn(Txn::new().and_then(TxnOp::put(key, v))));
            (p.finish(), res)
        };
        core.apply(plan);
        res
    }

    #[test]
    fn slow_watcher_is_dropped_not_buffered_forever() {
        let mut core = Core::new(limits(1000, 4));
        let mut w = core.watch("/", 0).unwrap();
        for i in 0..10u8 {
            put(&mut core, "/a", &[i]).unwrap();
        }
        assert_eq!(core.watcher_count(), 0);
        // What was queued before the overflow is still delivered, in order,
        // then the watch ends.
        let mut got = Vec::new();
        while let Ok(b) = w.rx.try_recv() {
            got.push(b.unwrap()[0].kv.mod_revision);
        }
        assert_eq!(got, [1, 2, 3, 4]);
        assert!(w.rx.is_closed());
    }

    #[test]
    fn closed_directory_watchers_are_swept() {
        let mut core = Core::new(limits(100_000, 2_000));
        let quiet: Vec<_> = (0..100)
            .map(|i| core.watch(&format!("/q/{i}/"), 0).unwrap())
            .collect();
        let _live = core.watch("/busy/", 0).unwrap();
        assert_eq!(core.watcher_count(), 101);
        drop(quiet);
        // No write ever lands under `/q/…`; the periodic sweep prunes them.
        for i in 0..1100u32 {
            put(&mut core, "/busy/k", &i.to_le_bytes()).unwrap();
        }
        assert_eq!(core.watcher_count(), 1);
    }

    #[test]
    fn bounded_history_counts_as_compacted() {
        let mut core = Core::new(limits(3, 16));
        for i in 0..10u8 {
            put(&mut core, "/a", &[i]).unwrap();
        }
        assert_eq!(core.compacted, 8);
        assert!(matches!(
            core.watch("/", 7),
            Err(StoreError::Compacted {
                requested: 7,
                compacted: 8
            })
        ));
        let mut w = core.watch("/", 8).unwrap();
        assert_eq!(w.rx.try_recv().unwrap().unwrap()[0].kv.mod_revision, 8);
    }

    #[test]
    fn batch_planning_sees_earlier_requests() {
        let core = Core::new(limits(100, 16));
        let mut p = Planner::new(&core);
        let grant = p.plan(&WriteReq::LeaseGrant(Duration::from_secs(5)));
        let Ok(WriteResp::Lease(l)) = grant else {
            panic!("grant: {grant:?}")
        };
        let put = WriteReq::Txn(Txn::new().and_then(TxnOp::Put {
            key: "/k".into(),
            value: b"v".to_vec(),
            lease: Some(l),
        }));
        assert!(p.plan(&put).is_ok());
        let cas = WriteReq::Txn(
            Txn::new()
                .when(Compare::absent("/k"))
                .and_then(TxnOp::put("/k", "other")),
        );
        let Ok(WriteResp::Txn(r)) = p.plan(&cas) else {
            panic!("cas")
        };
        assert!(!r.succeeded);
        assert!(p.plan(&WriteReq::LeaseRevoke(l)).is_ok());
        assert_eq!(
            p.plan(&put).unwrap_err(),
            StoreError::LeaseNotFound(l),
            "a lease revoked earlier in the batch is gone"
        );
        let plan = p.finish();
        assert_eq!(plan.revision, 2);
        assert_eq!(plan.kvs.get("/k"), Some(&None));
        assert_eq!(plan.leases.get(&l), Some(&None));
    }

    #[test]
    fn an_unbounded_watch_buffer_option_does_not_panic() {
        let mut core = Core::new(limits(100, usize::MAX));
        put(&mut core, "/a", b"1").unwrap();
        let mut w = core.watch("/", 1).unwrap();
        put(&mut core, "/a", b"2").unwrap();
        assert_eq!(w.rx.try_recv().unwrap().unwrap()[0].kv.mod_revision, 1);
        assert_eq!(w.rx.try_recv().unwrap().unwrap()[0].kv.mod_revision, 2);
    }

    #[test]
    fn an_expired_lease_cannot_be_kept_alive() {
        let mut core = Core::new(limits(100, 16));
        let (plan, res) = {
            let mut p = Planner::new(&core);
            let res = p.plan(&WriteReq::LeaseGrant(Duration::from_millis(1)));
            (p.finish(), res)
        };
        core.apply(plan);
        let Ok(WriteResp::Lease(l)) = res else {
            panic!("grant: {res:?}")
        };
        std::thread::sleep(Duration::from_millis(5));
        // Not yet revoked by a ticker, but past its deadline.
        assert_eq!(core.expired_leases(Instant::now()), [l]);
        assert_eq!(core.keep_alive(l), Err(StoreError::LeaseNotFound(l)));
        assert_eq!(core.expired_leases(Instant::now()), [l], "still expired");
    }

    #[test]
    fn restore_keeps_contiguous_history_tail() {
        let kv = KeyValue {
            key: "/a".into(),
            value: b"x".to_vec(),
            create_revision: 5,
            mod_revision: 5,
            version: 1,
            lease: Some(3),
        };
        let ev = |rev| {
            vec![WatchEvent {
                kind: EventKind::Put,
                kv: KeyValue {
                    mod_revision: rev,
                    ..kv.clone()
                },
                prev: None,
            }]
        };
        let core = Core::restore(
            limits(100, 16),
            BTreeMap::from([("/a".to_string(), kv.clone())]),
            5,
            1,
            vec![(3, Duration::from_secs(10))],
            4,
            vec![(1, ev(1)), (3, ev(3)), (4, ev(4)), (5, ev(5))],
        );
        assert_eq!(core.compacted, 3);
        assert!(core.leases[&3].keys.contains("/a"));
        assert_eq!(core.next_lease, 4);
    }
}
