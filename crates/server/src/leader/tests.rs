//! Two server states on one store: only one runs the controller at a time,
//! the other takes over when the leader stops, crashes or cannot renew.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use jdos_store::{
    KeyValue, LeaseId, MemoryStore, RangeOptions, RangePage, Revision, Store, StoreError, Txn,
    TxnResponse, Watch,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{current, spawn, Elector, LeaderConfig};
use crate::state::AppState;

const CFG: LeaderConfig = LeaderConfig {
    ttl: Duration::from_millis(900),
};
/// Scheduling slack on a loaded machine.
const SLACK: Duration = Duration::from_millis(400);

/// Every controller round, in order: who ran it.
#[derive(Clone, Default)]
struct Rounds(Arc<Mutex<Vec<&'static str>>>);

impl Rounds {
    /// A controller that records a round every 20 ms.
    fn controller(
        &self,
        who: &'static str,
    ) -> impl FnMut(watch::Receiver<bool>) -> JoinHandle<()> + Send + 'static {
        let rounds = self.clone();
        move |_stop| {
            let rounds = rounds.clone();
            tokio::spawn(async move {
                loop {
                    rounds.0.lock().unwrap().push(who);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        }
    }

    fn count(&self, who: &str) -> usize {
        self.0.lock().unwrap().iter().filter(|w| **w == who).count()
    }

    /// How often the acting controller changed: with two acting at once the
    /// rounds interleave and this grows with every round.
    fn switches(&self) -> usize {
        self.0
            .lock()
            .unwrap()
            .windows(2)
            .filter(|w| w[0] != w[1])
            .count()
    }
}

/// A store whose lease renewals can be made to hang or fail.
struct Flaky {
    inner: Arc<dyn Store>,
    /// 0: works, 1: renewals hang, 2: renewals fail.
    mode: AtomicU8,
}

#[async_trait]
impl Store for Flaky {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        self.inner.get(key).await
    }
    async fn range(&self, prefix: &str, opts: RangeOptions) -> Result<RangePage, StoreError> {
        self.inner.range(prefix, opts).await
    }
    async fn put(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> Result<Revision, StoreError> {
        self.inner.put(key, value, lease).await
    }
    async fn delete(&self, key: &str) -> Result<Option<Revision>, StoreError> {
        self.inner.delete(key).await
    }
    async fn txn(&self, txn: Txn) -> Result<TxnResponse, StoreError> {
        self.inner.txn(txn).await
    }
    async fn watch(&self, prefix: &str, from: Revision) -> Result<Watch, StoreError> {
        self.inner.watch(prefix, from).await
    }
    async fn lease_grant(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        self.inner.lease_grant(ttl).await
    }
    async fn lease_keep_alive(&self, lease: LeaseId) -> Result<(), StoreError> {
        match self.mode.load(Ordering::SeqCst) {
            1 => std::future::pending().await,
            2 => Err(StoreError::Backend("connection refused".into())),
            _ => self.inner.lease_keep_alive(lease).await,
        }
    }
    async fn lease_revoke(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.inner.lease_revoke(lease).await
    }
    async fn revision(&self) -> Result<Revision, StoreError> {
        self.inner.revision().await
    }
    async fn compact(&self, rev: Revision) -> Result<(), StoreError> {
        self.inner.compact(rev).await
    }
}

fn elect(st: &AppState, who: &'static str, rounds: &Rounds) -> (Elector, watch::Sender<bool>) {
    let (tx, rx) = watch::channel(false);
    let e = spawn(st, "test", who, CFG, rx, rounds.controller(who));
    (e, tx)
}

/// Waits until `cond` holds; how long that took, or `None` after `limit`.
async fn within(limit: Duration, cond: impl Fn() -> bool) -> Option<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if cond() {
            return Some(t0.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_acts_and_the_other_takes_over_at_stop() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let (a, b) = (AppState::new(store.clone()), AppState::new(store.clone()));
    let rounds = Rounds::default();
    let (ea, stop_a) = elect(&a, "a", &rounds);
    let (eb, stop_b) = elect(&b, "b", &rounds);
    within(CFG.period() * 2 + SLACK, || {
        ea.is_leader() || eb.is_leader()
    })
    .await
    .expect("someone leads");
    tokio::time::sleep(CFG.ttl * 2).await;
    assert!(ea.is_leader() != eb.is_leader(), "exactly one leads");
    let (leader, follower, stop, other) = if ea.is_leader() {
        (&ea, &eb, stop_a, "b")
    } else {
        (&eb, &ea, stop_b, "a")
    };
    assert_eq!(rounds.count(other), 0, "the follower never acted");
    assert!(rounds.count(if other == "a" { "b" } else { "a" }) > 10);
    assert_eq!(rounds.switches(), 0);

    // A stopping leader revokes its lease: the follower takes over within
    // one period, not a TTL.
    stop.send(true).unwrap();
    let took = within(CFG.period() + SLACK, || follower.is_leader())
        .await
        .expect("the follower took over");
    assert!(!leader.is_leader());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        rounds.switches(),
        1,
        "handed over once, never interleaved (took {took:?})"
    );
    let rec = current(store.as_ref(), "test")
        .await
        .unwrap()
        .expect("a leader record");
    assert_eq!(rec.holder, other);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_leader_is_replaced_after_its_lease_expires() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let (a, b) = (AppState::new(store.clone()), AppState::new(store.clone()));
    let rounds = Rounds::default();
    let (ea, _stop_a) = elect(&a, "a", &rounds);
    within(CFG.period() + SLACK, || ea.is_leader())
        .await
        .expect("a leads");
    let (eb, _stop_b) = elect(&b, "b", &rounds);
    tokio::time::sleep(CFG.period() * 2).await;
    assert!(!eb.is_leader());

    // Dropped without a stop, as a crash: the lease stays until its TTL.
    drop(ea);
    let took = within(CFG.ttl + CFG.period() + SLACK, || eb.is_leader())
        .await
        .expect("b took over within TTL + one period");
    assert!(
        took >= CFG.ttl - CFG.period() - Duration::from_millis(50),
        "b waited for a's lease to expire (took {took:?})"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(rounds.switches(), 1);
    assert!(rounds.count("b") > 0);
}

/// `mode` 1: renewals hang; 2: renewals fail.
async fn leader_that_cannot_renew_stops(mode: u8) {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let flaky = Arc::new(Flaky {
        inner: store.clone(),
        mode: AtomicU8::new(0),
    });
    let a = AppState::new(flaky.clone());
    let b = AppState::new(store.clone());
    let rounds = Rounds::default();
    let (ea, _stop_a) = elect(&a, "a", &rounds);
    within(CFG.period() + SLACK, || ea.is_leader())
        .await
        .expect("a leads");
    let (eb, _stop_b) = elect(&b, "b", &rounds);
    tokio::time::sleep(CFG.period() * 2).await;

    flaky.mode.store(mode, Ordering::SeqCst);
    // a stops before its lease could expire (TTL after its last renewal).
    let stopped = within(CFG.ttl + SLACK, || !ea.is_leader())
        .await
        .expect("a stopped leading");
    assert!(stopped <= CFG.ttl, "fenced before the TTL ({stopped:?})");
    let a_rounds = rounds.count("a");
    within(CFG.ttl + CFG.period() + SLACK, || eb.is_leader())
        .await
        .expect("b took over");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rounds.count("a"), a_rounds, "a no longer acts");
    assert!(rounds.count("b") > 0);
    assert_eq!(rounds.switches(), 1, "a stopped before b started");
    assert!(!ea.is_leader());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_renewals_hang_stops_acting_before_its_lease_expires() {
    leader_that_cannot_renew_stops(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_renewals_fail_stops_acting_before_its_lease_expires() {
    leader_that_cannot_renew_stops(2).await;
}
