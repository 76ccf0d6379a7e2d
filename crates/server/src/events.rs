//! The event recorder: every mutating call writes its [`Event`] in the same
//! store transaction as the mutation itself, so that a crash cannot keep one
//! and lose the other.
//!
//! Sequence numbers come from a counter key that every event-writing
//! transaction compare-and-swaps, so they are unique and increase in commit
//! order even with several server replicas on one store (a reader following
//! the trail with `after_seq` never misses an event committed later with a
//! smaller number).
//!
//! Within one process the recorder combines concurrent mutations: callers
//! queue their mutation, and whoever holds the commit lock drains the queue
//! and commits every mutation whose keys are disjoint from the others' in
//! ONE store transaction (consecutive sequence numbers, one counter CAS, one
//! fsync). When a combined transaction fails on some mutations' own
//! conditions, its failure branch's reads of every compared key tell which:
//! those are answered stale and the others are committed together again.

use jdos_store::{json, Compare, KeyValue, OpResponse, Revision, Store, StoreError, Txn, TxnOp};
use jdos_types::{keys, Event, EventResult, UnixMillis};
use std::collections::{HashMap, HashSet};

use tokio::sync::{oneshot, Mutex};

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

type Reply = oneshot::Sender<Result<Commit, StoreError>>;

struct Queued {
    m: Mutation,
    /// Further events recorded in the same transaction, after `m.event`.
    also: Vec<EventDraft>,
    now_ms: UnixMillis,
    reply: Reply,
}

impl Queued {
    /// Events it records.
    fn events(&self) -> u64 {
        1 + self.also.len() as u64
    }
}

/// Most mutations combined into one store transaction.
const MAX_COMBINED: usize = 512;
/// Operations of the store's limit ([`Store::max_txn_ops`]) kept free, so
/// a combined transaction stays inside it with room to spare.
const TXN_OPS_MARGIN: usize = 8;

/// Writes events, alone or with the mutation they record.
#[derive(Default)]
pub struct EventRecorder {
    queue: std::sync::Mutex<Vec<Queued>>,
    seq: Mutex<SeqCache>,
}

impl std::fmt::Debug for EventRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventRecorder").finish_non_exhaustive()
    }
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
        self.commit_with(store, m, Vec::new(), now_ms).await
    }

    /// Commits `m`, its event and the events `also` (numbered after it)
    /// atomically: e.g. an apply and the `task.submit` events of the tasks
    /// it queues, in one round trip. [`Commit::Done`] names `m`'s event.
    pub async fn commit_with(
        &self,
        store: &dyn Store,
        m: Mutation,
        also: Vec<EventDraft>,
        now_ms: UnixMillis,
    ) -> Result<Commit, StoreError> {
        let (tx, mut rx) = oneshot::channel();
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Queued {
                m,
                also,
                now_ms,
                reply: tx,
            });
        let mut cache = self.seq.lock().await;
        // A previous lock holder may have committed this one already.
        if let Ok(r) = rx.try_recv() {
            return r;
        }
        let batch = std::mem::take(&mut *self.queue.lock().unwrap_or_else(|p| p.into_inner()));
        commit_batch(store, &mut cache, batch).await;
        drop(cache);
        rx.await
            .unwrap_or_else(|_| Err(StoreError::Backend("event commit abandoned".into())))
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

/// Keys a mutation reads or writes; `None` when it touches a whole prefix
/// (such a mutation is committed alone).
fn touched(m: &Mutation) -> Option<Vec<&str>> {
    let mut keys: Vec<&str> = m.compares.iter().map(|c| c.key.as_str()).collect();
    for op in &m.ops {
        match op {
            TxnOp::Put { key, .. } | TxnOp::Delete { key } | TxnOp::Get { key } => keys.push(key),
            TxnOp::DeletePrefix { .. } => return None,
        }
    }
    Some(keys)
}

/// Splits the queue into rounds of mutations with pairwise disjoint keys,
/// keeping queue order, so that combining them changes no outcome.
fn rounds(batch: Vec<Queued>, max_ops: usize) -> Vec<Vec<Queued>> {
    let mut rounds: Vec<Vec<Queued>> = Vec::new();
    let mut current: Vec<Queued> = Vec::new();
    let mut keys: HashSet<String> = HashSet::new();
    // One op for the counter and one compare on it.
    let (mut ops, mut cmps) = (1usize, 1usize);
    for q in batch {
        let (q_ops, q_cmps) = (q.m.ops.len() + q.also.len() + 1, q.m.compares.len());
        let fits = match touched(&q.m) {
            Some(ks) => {
                current.is_empty()
                    || (current.len() < MAX_COMBINED
                        && ops + q_ops <= max_ops
                        && cmps + q_cmps <= max_ops
                        && ks.iter().all(|k| !keys.contains(*k)))
            }
            None => current.is_empty(),
        };
        if !fits {
            rounds.push(std::mem::take(&mut current));
            keys.clear();
            (ops, cmps) = (1, 1);
        }
        ops += q_ops;
        cmps += q_cmps;
        if let Some(ks) = touched(&q.m) {
            keys.extend(ks.into_iter().map(str::to_string));
        }
        let solo = touched(&q.m).is_none();
        current.push(q);
        if solo {
            rounds.push(std::mem::take(&mut current));
            keys.clear();
            (ops, cmps) = (1, 1);
        }
    }
    if !current.is_empty() {
        rounds.push(current);
    }
    rounds
}

/// Store transactions one batch took, and how many of its mutations were
/// stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchStats {
    txns: usize,
    stale: usize,
}

async fn commit_batch(store: &dyn Store, cache: &mut SeqCache, batch: Vec<Queued>) -> BatchStats {
    let max_ops = store.max_txn_ops().saturating_sub(TXN_OPS_MARGIN).max(2);
    let (mutations, started) = (batch.len(), std::time::Instant::now());
    let rounds = rounds(batch, max_ops);
    let (planned, mut txns, mut stale) = (rounds.len(), 0usize, 0usize);
    for mut round in rounds {
        while !round.is_empty() {
            txns += 1;
            match commit_round(store, cache, &round).await {
                Ok(Round::Committed(results)) => {
                    for (q, r) in round.drain(..).zip(results) {
                        let _ = q.reply.send(Ok(r));
                    }
                }
                // Some mutations' own conditions failed: they get their
                // answer, the others go again together.
                Ok(Round::Stale(failed)) if !failed.is_empty() => {
                    stale += failed.len();
                    let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut round)
                        .into_iter()
                        .enumerate()
                        .partition(|(i, _)| failed.contains(i));
                    for (_, q) in gone {
                        let _ = q.reply.send(Ok(Commit::Stale));
                    }
                    round = kept.into_iter().map(|(_, q)| q).collect();
                }
                // Failed, yet every condition read back holds (a backend
                // that does not return the failure branch's reads): one at
                // a time, so that each gets its own answer.
                Ok(Round::Stale(_)) => {
                    for q in round.drain(..) {
                        txns += 1;
                        let r = commit_round(store, cache, std::slice::from_ref(&q))
                            .await
                            .map(|r| match r {
                                Round::Committed(v) => v[0],
                                Round::Stale(_) => Commit::Stale,
                            });
                        let _ = q.reply.send(r);
                    }
                }
                Err(e) => {
                    for q in round.drain(..) {
                        let _ = q.reply.send(Err(e.clone()));
                    }
                }
            }
        }
    }
    tracing::debug!(
        mutations,
        rounds = planned,
        txns,
        stale,
        elapsed_us = started.elapsed().as_micros() as u64,
        "events committed"
    );
    BatchStats { txns, stale }
}

/// What one combined transaction did.
enum Round {
    /// Every mutation was written, in order.
    Committed(Vec<Commit>),
    /// Nothing was written: these mutations' (indices) own conditions fail.
    Stale(Vec<usize>),
}

/// Commits every mutation of `round` in one transaction; when one's own
/// condition fails, nothing is written and the failure branch's reads of
/// every compared key tell which.
async fn commit_round(
    store: &dyn Store,
    cache: &mut SeqCache,
    round: &[Queued],
) -> Result<Round, StoreError> {
    // Bounded: each retry means another writer (another replica) advanced
    // the counter between our read and our write.
    for _ in 0..64 {
        if !cache.loaded {
            reload(store, cache).await?;
        }
        let first = cache.last_seq + 1;
        let last = cache.last_seq + round.iter().map(Queued::events).sum::<u64>();
        let mut txn = Txn::new().when(Compare::mod_revision(EVENT_SEQ_KEY, cache.mod_revision));
        txn.failure.push(TxnOp::Get {
            key: EVENT_SEQ_KEY.to_string(),
        });
        let mut read: HashSet<&str> = HashSet::new();
        let mut seqs = Vec::with_capacity(round.len());
        let mut seq = first;
        for q in round {
            seqs.push(seq);
            txn.compares.extend(q.m.compares.iter().cloned());
            for c in &q.m.compares {
                if read.insert(c.key.as_str()) {
                    txn.failure.push(TxnOp::Get { key: c.key.clone() });
                }
            }
            txn.success.extend(q.m.ops.iter().cloned());
            for draft in std::iter::once(&q.m.event).chain(&q.also) {
                let event = draft.clone().into_event(seq, q.now_ms);
                txn.success
                    .push(TxnOp::put(keys::event(seq), json::encode(&event)?));
                seq += 1;
            }
        }
        txn.success
            .push(TxnOp::put(EVENT_SEQ_KEY, json::encode(&last)?));
        let resp = store.txn(txn).await?;
        if resp.succeeded {
            cache.last_seq = last;
            cache.mod_revision = resp.revision;
            return Ok(Round::Committed(
                seqs.into_iter()
                    .map(|seq| Commit::Done {
                        revision: resp.revision,
                        seq,
                    })
                    .collect(),
            ));
        }
        let mut now: HashMap<&str, &KeyValue> = HashMap::new();
        for r in &resp.responses {
            if let OpResponse::Get { kv: Some(kv) } = r {
                now.insert(kv.key.as_str(), kv);
            }
        }
        let counter_rev = match resp.responses.first() {
            Some(OpResponse::Get { kv }) => kv.as_ref().map_or(0, |kv| kv.mod_revision),
            _ => {
                cache.loaded = false;
                continue;
            }
        };
        if counter_rev != cache.mod_revision {
            cache.loaded = false;
            continue;
        }
        // The counter held, so some mutations' own conditions failed.
        let failed = round
            .iter()
            .enumerate()
            .filter(|(_, q)| {
                q.m.compares
                    .iter()
                    .any(|c| !c.holds(now.get(c.key.as_str()).copied()))
            })
            .map(|(i, _)| i)
            .collect();
        return Ok(Round::Stale(failed));
    }
    Err(StoreError::Backend(
        "event sequence counter kept changing under this server: too many writers".into(),
    ))
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

#[cfg(test)]
mod tests {
    use super::*;
    use jdos_store::MemoryStore;

    fn put(key: &str, cmp: Compare) -> Mutation {
        Mutation {
            compares: vec![cmp],
            ops: vec![TxnOp::put(key, b"1".to_vec())],
            event: EventDraft::new("t", "x.put", "x", key),
        }
    }

    fn queued(m: Mutation) -> (Queued, oneshot::Receiver<Result<Commit, StoreError>>) {
        let (reply, rx) = oneshot::channel();
        (
            Queued {
                m,
                also: Vec::new(),
                now_ms: 7,
                reply,
            },
            rx,
        )
    }

    #[test]
    fn rounds_keep_overlapping_mutations_apart() {
        let ms = [
            put("/a", Compare::absent("/a")),
            put("/b", Compare::absent("/b")),
            put("/a", Compare::absent("/a")),
            put("/c", Compare::absent("/c")),
        ];
        let rs = rounds(ms.into_iter().map(|m| queued(m).0).collect(), 120);
        let shape: Vec<Vec<&str>> = rs
            .iter()
            .map(|r| r.iter().map(|q| q.m.event.object.as_str()).collect())
            .collect();
        assert_eq!(shape, [vec!["/a", "/b"], vec!["/a", "/c"]]);
    }

    #[test]
    fn rounds_stay_within_the_store_txn_limit() {
        let ms = || -> Vec<Queued> {
            (0..200)
                .map(|i| {
                    let k = format!("/k{i}");
                    queued(put(&k, Compare::absent(k.as_str()))).0
                })
                .collect()
        };
        // etcd's 128 (less the margin), then the embedded stores' limit.
        let etcd = 128 - TXN_OPS_MARGIN;
        let rs = rounds(ms(), etcd);
        assert!(rs.len() > 1);
        assert_eq!(rs.iter().map(Vec::len).sum::<usize>(), 200);
        for r in &rs {
            let ops: usize = 1 + r.iter().map(|q| q.m.ops.len() + 1).sum::<usize>();
            assert!(ops <= etcd, "{ops}");
        }
        let embedded = jdos_store::EMBEDDED_MAX_TXN_OPS - TXN_OPS_MARGIN;
        assert_eq!(rounds(ms(), embedded).len(), 1, "one transaction");
    }

    #[tokio::test]
    async fn a_stale_mutation_does_not_sink_its_round() {
        let store = MemoryStore::new();
        let mut cache = SeqCache::default();
        let (a, ra) = queued(put("/a", Compare::absent("/a")));
        let (b, rb) = queued(put("/b", Compare::mod_revision("/b", 999)));
        let (c, rc) = queued(put("/c", Compare::absent("/c")));
        let (d, rd) = queued(put("/a", Compare::absent("/a")));
        commit_batch(&store, &mut cache, vec![a, b, c, d]).await;
        let (ra, rb, rc, rd) = (
            ra.await.unwrap().unwrap(),
            rb.await.unwrap().unwrap(),
            rc.await.unwrap().unwrap(),
            rd.await.unwrap().unwrap(),
        );
        assert!(matches!(ra, Commit::Done { seq: 1, .. }), "{ra:?}");
        assert_eq!(rb, Commit::Stale);
        assert!(matches!(rc, Commit::Done { seq: 2, .. }), "{rc:?}");
        assert_eq!(rd, Commit::Stale, "the second create of /a sees the first");
        assert!(store.get("/b").await.unwrap().is_none());
        let ev: Event = json::decode(&store.get(&keys::event(2)).await.unwrap().unwrap()).unwrap();
        assert_eq!((ev.object.as_str(), ev.time_ms), ("/c", 7));
        assert!(store.get(&keys::event(3)).await.unwrap().is_none());
    }

    /// A mutation's further events take the numbers right after its own,
    /// in the same transaction as the mutations combined with it.
    #[tokio::test]
    async fn further_events_are_numbered_after_their_mutation() {
        let store = MemoryStore::new();
        let rec = EventRecorder::new();
        let also = vec![
            EventDraft::new("t", "task.submit", "task", "t1"),
            EventDraft::new("t", "task.submit", "task", "t2"),
        ];
        let (a, b) = tokio::join!(
            rec.commit_with(&store, put("/a", Compare::absent("/a")), also, 7),
            rec.commit(&store, put("/b", Compare::absent("/b")), 7),
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        let Commit::Done { seq: sa, .. } = a else {
            panic!("{a:?}")
        };
        let Commit::Done { seq: sb, .. } = b else {
            panic!("{b:?}")
        };
        let objects: Vec<String> = {
            let mut v = Vec::new();
            for seq in 1..=4 {
                let kv = store.get(&keys::event(seq)).await.unwrap().unwrap();
                v.push(json::decode::<Event>(&kv).unwrap().object);
            }
            v
        };
        // Whichever was queued first, "/a" is followed by its two submits.
        let at = usize::try_from(sa - 1).unwrap();
        assert_eq!(&objects[at..at + 3], ["/a", "t1", "t2"]);
        assert_eq!(objects[usize::try_from(sb - 1).unwrap()], "/b");
        let counter: u64 = json::decode(&store.get(EVENT_SEQ_KEY).await.unwrap().unwrap()).unwrap();
        assert_eq!(counter, 4);
    }

    /// Stale mutations in a combined round cost one more transaction, not
    /// one per mutation: the failure branch's reads name them.
    #[tokio::test]
    async fn stale_mutations_are_sorted_out_in_one_more_transaction() {
        let store = MemoryStore::new();
        store.put("/k7", b"0".to_vec(), None).await.unwrap();
        let mut cache = SeqCache::default();
        let (mut batch, mut replies) = (Vec::new(), Vec::new());
        for i in 0..40 {
            let k = format!("/k{i}");
            // Every tenth expects a revision the key does not have (or
            // creates a key that exists: /k7).
            let cmp = match i {
                7 => Compare::absent(k.as_str()),
                _ if i % 10 == 3 => Compare::mod_revision(k.as_str(), 999),
                _ => Compare::absent(k.as_str()),
            };
            let (q, rx) = queued(put(&k, cmp));
            batch.push(q);
            replies.push(rx);
        }
        let stats = commit_batch(&store, &mut cache, batch).await;
        assert_eq!(stats, BatchStats { txns: 2, stale: 5 });
        let mut seq = 0;
        for (i, rx) in replies.into_iter().enumerate() {
            let r = rx.await.unwrap().unwrap();
            if i == 7 || i % 10 == 3 {
                assert_eq!(r, Commit::Stale, "mutation {i}");
            } else {
                seq += 1;
                assert!(
                    matches!(r, Commit::Done { seq: s, .. } if s == seq),
                    "{i}: {r:?}"
                );
            }
        }
        assert_eq!(seq, 35);
        let ev: Event = json::decode(&store.get(&keys::event(35)).await.unwrap().unwrap()).unwrap();
        assert_eq!(ev.object, "/k39");
        assert_eq!(store.get("/k7").await.unwrap().unwrap().value, b"0");
        assert!(store.get("/k3").await.unwrap().is_none());
    }
}
