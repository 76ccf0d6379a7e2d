//! The in-memory backend, for tests and `jdos dev` without a data dir.

use crate::core::Core;
use crate::engine::{delegate_store, Engine};
use crate::StoreOptions;

/// A store held in memory only; everything is lost when it is dropped.
///
/// Semantics are those of every embedded backend (they share one core), so
/// it is a faithful stand-in for [`crate::RedbStore`] in tests.
#[derive(Clone)]
pub struct MemoryStore {
    engine: Engine,
}

impl MemoryStore {
    /// An empty store with default options.
    pub fn new() -> Self {
        Self::with_options(StoreOptions::default())
    }

    /// An empty store with the given options.
    pub fn with_options(opts: StoreOptions) -> Self {
        MemoryStore {
            engine: Engine::memory(Core::new(opts.limits())),
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

delegate_store!(MemoryStore);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Compare, Store, Txn, TxnOp};

    #[tokio::test]
    async fn put_get_cas_watch() {
        let s = MemoryStore::new();
        assert_eq!(s.put("/a/1", b"x".to_vec(), None).await.unwrap(), 1);
        assert_eq!(s.put("/a/1", b"y".to_vec(), None).await.unwrap(), 2);
        let kv = s.get("/a/1").await.unwrap().unwrap();
        assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (1, 2, 2));
        let r = s
            .txn(
                Txn::new()
                    .when(Compare::mod_revision("/a/1", 1))
                    .and_then(TxnOp::put("/a/1", "z")),
            )
            .await
            .unwrap();
        assert!(!r.succeeded);
        assert_eq!(r.revision, 2);
        let mut w = s.watch("/a/", 1).await.unwrap();
        assert_eq!(w.next().await.unwrap().unwrap()[0].kv.mod_revision, 1);
        assert_eq!(w.next().await.unwrap().unwrap()[0].kv.mod_revision, 2);
        s.delete("/a/1").await.unwrap();
        let ev = w.next().await.unwrap().unwrap();
        assert_eq!(ev[0].kind, crate::EventKind::Delete);
        assert_eq!(ev[0].kv.mod_revision, 3);
    }
}
