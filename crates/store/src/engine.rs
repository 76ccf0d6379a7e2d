//! The engine shared by the embedded backends: a [`Core`] behind a lock, one
//! writer, and a lease-expiry ticker.
//!
//! Without persistence (memory) a write plans and applies under the core's
//! write lock. With persistence (redb) every write is queued to a single
//! writer thread which drains the queue, plans the whole batch in order (so
//! compare-and-swap sees every earlier write of the batch), persists it
//! durably as one unit (redb: one write-ahead log record), applies it to the
//! core and only then answers each caller: group commit.

use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, RwLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::oneshot;

use crate::core::{read, validate_key, write, Core, Plan, Planner, WriteReq, WriteResp};
use crate::{
    KeyValue, LeaseId, OpResponse, RangeOptions, RangePage, Result, Revision, Store, StoreError,
    Txn, TxnOp, TxnResponse, Watch,
};

/// Most write requests committed in one backend transaction.
const MAX_BATCH: usize = 16_384;

/// How often leases are checked for expiry.
const LEASE_TICK: Duration = Duration::from_millis(50);

/// Makes a planned batch durable.
pub(crate) trait Persist: Send + 'static {
    /// Called once before the first write with the state it persists
    /// (a backend that checkpoints in the background reads it there).
    fn attach(&mut self, _core: &Arc<RwLock<Core>>) {}

    /// Writes the plan in one durable transaction; on error nothing of it
    /// may be visible after a restart.
    fn persist(&mut self, plan: &Plan) -> Result<()>;
}

struct Request {
    req: WriteReq,
    reply: Option<oneshot::Sender<Result<WriteResp>>>,
}

struct Inner {
    core: Arc<RwLock<Core>>,
    /// `None` for the inline (memory) writer.
    /// Shared only with the lease ticker, which holds it weakly: the writer
    /// exits (and releases the file) once the last store handle is dropped.
    queue: Option<Arc<std_mpsc::Sender<Request>>>,
    writer: Option<JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the queue lets the writer finish what is queued and exit;
        // joining it releases the backend (e.g. the redb file lock) before
        // drop returns, so the store can be reopened at once.
        self.queue.take();
        if let Some(w) = self.writer.take() {
            if w.thread().id() != std::thread::current().id() {
                let _ = w.join();
            }
        }
    }
}

/// A store engine; cheap to clone.
#[derive(Clone)]
pub(crate) struct Engine {
    inner: Arc<Inner>,
}

impl Engine {
    /// An engine over `core`, persisting through `persist` when given.
    pub fn start(core: Core, persist: Option<Box<dyn Persist>>) -> Result<Engine> {
        let core = Arc::new(RwLock::new(core));
        let (queue, writer) = match persist {
            None => (None, None),
            Some(mut p) => {
                p.attach(&core);
                let (tx, rx) = std_mpsc::channel();
                let c = core.clone();
                let handle = std::thread::Builder::new()
                    .name("jdos-store-writer".into())
                    .spawn(move || writer_loop(c, rx, p))
                    .map_err(|e| StoreError::Backend(format!("cannot start writer: {e}")))?;
                (Some(Arc::new(tx)), Some(handle))
            }
        };
        let inner = Arc::new(Inner {
            core,
            queue,
            writer,
        });
        let ticker = Ticker {
            core: Arc::downgrade(&inner.core),
            queue: inner.queue.as_ref().map(Arc::downgrade),
        };
        // Like `std::thread::spawn`, panics only if the OS cannot create a thread.
        std::thread::spawn(move || ticker.run());
        Ok(Engine { inner })
    }

    /// An engine with no persistence.
    pub fn memory(core: Core) -> Engine {
        match Engine::start(core, None) {
            Ok(e) => e,
            // Unreachable: only starting the writer thread can fail.
            Err(e) => panic!("{e}"),
        }
    }

    async fn write(&self, req: WriteReq) -> Result<WriteResp> {
        match &self.inner.queue {
            None => Ok(apply_inline(&self.inner.core, req)?),
            Some(q) => {
                let (tx, rx) = oneshot::channel();
                q.send(Request {
                    req,
                    reply: Some(tx),
                })
                .map_err(|_| StoreError::Closed)?;
                rx.await.map_err(|_| StoreError::Closed)?
            }
        }
    }

    async fn txn_resp(&self, txn: Txn) -> Result<TxnResponse> {
        match self.write(WriteReq::Txn(txn)).await? {
            WriteResp::Txn(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }
}

fn unexpected(r: WriteResp) -> StoreError {
    StoreError::Backend(format!("internal: unexpected write response {r:?}"))
}

fn apply_inline(core: &RwLock<Core>, req: WriteReq) -> Result<WriteResp> {
    let mut c = write(core);
    let (plan, res) = {
        let mut p = Planner::new(&c);
        let res = p.plan(&req);
        (p.finish(), res)
    };
    if !plan.is_empty() {
        c.apply(plan);
    }
    res
}

fn writer_loop(
    core: Arc<RwLock<Core>>,
    rx: std_mpsc::Receiver<Request>,
    mut persist: Box<dyn Persist>,
) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let span = tracing::debug_span!("store_commit", writes = batch.len());
        let _enter = span.enter();
        let (plan, mut results) = {
            let c = read(&core);
            let mut p = Planner::new(&c);
            let results: Vec<Result<WriteResp>> = batch.iter().map(|r| p.plan(&r.req)).collect();
            (p.finish(), results)
        };
        if !plan.is_empty() {
            let t0 = std::time::Instant::now();
            let pr = persist.persist(&plan);
            tracing::debug!(
                revision = plan.revision,
                elapsed_us = t0.elapsed().as_micros() as u64,
                "batch persisted"
            );
            match pr {
                Ok(()) => write(&core).apply(plan),
                Err(e) => {
                    tracing::error!(error = %e, "store commit failed");
                    for r in results.iter_mut() {
                        if r.is_ok() {
                            *r = Err(e.clone());
                        }
                    }
                }
            }
        }
        for (req, res) in batch.into_iter().zip(results) {
            if let Some(tx) = req.reply {
                let _ = tx.send(res);
            }
        }
    }
}

/// Revokes expired leases. Holds the engine only weakly and never blocks
/// while holding it, so dropping the last store handle stops it.
struct Ticker {
    core: Weak<RwLock<Core>>,
    queue: Option<Weak<std_mpsc::Sender<Request>>>,
}

impl Ticker {
    fn run(self) {
        loop {
            std::thread::sleep(LEASE_TICK);
            let Some(core) = self.core.upgrade() else {
                return;
            };
            let expired = read(&core).expired_leases(Instant::now());
            for id in expired {
                let req = WriteReq::LeaseExpire(id);
                match &self.queue {
                    None => {
                        let _ = apply_inline(&core, req);
                    }
                    Some(q) => {
                        let Some(q) = q.upgrade() else {
                            return;
                        };
                        let _ = q.send(Request { req, reply: None });
                    }
                }
            }
        }
    }
}

#[async_trait]
impl Store for Engine {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        validate_key(key)?;
        Ok(read(&self.inner.core).get(key))
    }

    async fn range(&self, prefix: &str, opts: RangeOptions) -> Result<RangePage> {
        Ok(read(&self.inner.core).range(prefix, &opts))
    }

    async fn put(&self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> Result<Revision> {
        let txn = Txn::new().and_then(TxnOp::Put {
            key: key.to_string(),
            value,
            lease,
        });
        Ok(self.txn_resp(txn).await?.revision)
    }

    async fn delete(&self, key: &str) -> Result<Option<Revision>> {
        let r = self
            .txn_resp(Txn::new().and_then(TxnOp::delete(key)))
            .await?;
        match r.responses.first() {
            Some(OpResponse::Delete { deleted }) if *deleted > 0 => Ok(Some(r.revision)),
            _ => Ok(None),
        }
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        self.txn_resp(txn).await
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<Watch> {
        write(&self.inner.core).watch(prefix, from)
    }

    async fn lease_grant(&self, ttl: Duration) -> Result<LeaseId> {
        match self.write(WriteReq::LeaseGrant(ttl)).await? {
            WriteResp::Lease(id) => Ok(id),
            other => Err(unexpected(other)),
        }
    }

    async fn lease_keep_alive(&self, lease: LeaseId) -> Result<()> {
        write(&self.inner.core).keep_alive(lease)
    }

    async fn lease_revoke(&self, lease: LeaseId) -> Result<()> {
        self.write(WriteReq::LeaseRevoke(lease)).await.map(|_| ())
    }

    async fn revision(&self) -> Result<Revision> {
        Ok(read(&self.inner.core).revision)
    }

    async fn compact(&self, rev: Revision) -> Result<()> {
        self.write(WriteReq::Compact(rev)).await.map(|_| ())
    }
}

/// Implements [`Store`] for a newtype over [`Engine`] (field `engine`).
macro_rules! delegate_store {
    ($ty:ty) => {
        #[async_trait::async_trait]
        impl $crate::Store for $ty {
            async fn get(&self, key: &str) -> $crate::Result<Option<$crate::KeyValue>> {
                self.engine.get(key).await
            }
            async fn range(
                &self,
                prefix: &str,
                opts: $crate::RangeOptions,
            ) -> $crate::Result<$crate::RangePage> {
                self.engine.range(prefix, opts).await
            }
            async fn put(
                &self,
                key: &str,
                value: Vec<u8>,
                lease: Option<$crate::LeaseId>,
            ) -> $crate::Result<$crate::Revision> {
                self.engine.put(key, value, lease).await
            }
            async fn delete(&self, key: &str) -> $crate::Result<Option<$crate::Revision>> {
                self.engine.delete(key).await
            }
            async fn txn(&self, txn: $crate::Txn) -> $crate::Result<$crate::TxnResponse> {
                self.engine.txn(txn).await
            }
            async fn watch(
                &self,
                prefix: &str,
                from: $crate::Revision,
            ) -> $crate::Result<$crate::Watch> {
                self.engine.watch(prefix, from).await
            }
            async fn lease_grant(
                &self,
                ttl: std::time::Duration,
            ) -> $crate::Result<$crate::LeaseId> {
                self.engine.lease_grant(ttl).await
            }
            async fn lease_keep_alive(&self, lease: $crate::LeaseId) -> $crate::Result<()> {
                self.engine.lease_keep_alive(lease).await
            }
            async fn lease_revoke(&self, lease: $crate::LeaseId) -> $crate::Result<()> {
                self.engine.lease_revoke(lease).await
            }
            async fn revision(&self) -> $crate::Result<$crate::Revision> {
                self.engine.revision().await
            }
            async fn compact(&self, rev: $crate::Revision) -> $crate::Result<()> {
                self.engine.compact(rev).await
            }
        }
    };
}
pub(crate) use delegate_store;

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::core::CoreLimits;

    /// Fails every commit while `fail` is set; otherwise keeps nothing.
    struct Flaky {
        fail: Arc<AtomicBool>,
    }

    impl Persist for Flaky {
        fn persist(&mut self, _plan: &Plan) -> Result<()> {
            if self.fail.load(Ordering::SeqCst) {
                Err(StoreError::Backend("commit: disk full".into()))
            } else {
                Ok(())
            }
        }
    }

    /// Group commit: when the backend cannot commit a batch, every caller
    /// waiting on it gets the error (none hangs, none is told it succeeded),
    /// nothing of the batch becomes visible, and the store carries on once
    /// the backend recovers, with no gap in the revisions.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_commit_fails_every_waiting_writer_and_applies_nothing() {
        let fail = Arc::new(AtomicBool::new(true));
        let core = Core::new(CoreLimits {
            history_events: 100,
            watch_buffer: 16,
        });
        let engine = Engine::start(core, Some(Box::new(Flaky { fail: fail.clone() }))).unwrap();
        let mut w = engine.watch("/", 0).await.unwrap();
        let writers: Vec<_> = (0..20)
            .map(|i| {
                let e = engine.clone();
                tokio::spawn(async move { e.put(&format!("/k/{i}"), vec![1], None).await })
            })
            .collect();
        for t in writers {
            let r = tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .expect("a writer hangs after a failed commit")
                .unwrap();
            assert_eq!(r, Err(StoreError::Backend("commit: disk full".into())));
        }
        assert!(matches!(
            engine.lease_grant(Duration::from_secs(5)).await,
            Err(StoreError::Backend(_))
        ));
        assert_eq!(engine.revision().await.unwrap(), 0);
        assert_eq!(engine.get("/k/0").await.unwrap(), None);
        assert!(
            w.rx.try_recv().is_err(),
            "a watcher saw an uncommitted write"
        );

        fail.store(false, Ordering::SeqCst);
        assert_eq!(engine.put("/k/0", vec![2], None).await.unwrap(), 1);
        assert_eq!(engine.lease_grant(Duration::from_secs(5)).await.unwrap(), 1);
        let batch = w.next().await.unwrap().unwrap();
        assert_eq!(
            (batch[0].kv.mod_revision, batch[0].kv.value.clone()),
            (1, vec![2])
        );
    }
}
