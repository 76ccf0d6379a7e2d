//! The embedded backend on redb: one file, group commit, every acknowledged
//! write fsynced.
//!
//! All state is also held in the shared in-memory core, so reads and watches
//! never touch the file; the file is written by the single writer thread
//! (one redb transaction with `Durability::Immediate` per batch of queued
//! writes) and read only at open.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::time::Duration;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::codec::{decode_events, decode_kv, encode_events, encode_kv};
use crate::core::{Core, Effect, Plan};
use crate::engine::{delegate_store, Engine, Persist};
use crate::{KeyValue, Result, StoreError, StoreOptions};

/// key → encoded [`KeyValue`] (without the key).
const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
/// revision → encoded events of that revision (recent ones only).
const HISTORY: TableDefinition<u64, &[u8]> = TableDefinition::new("history");
/// lease id → TTL in milliseconds.
const LEASES: TableDefinition<u64, u64> = TableDefinition::new("leases");
/// Counters: `revision`, `compacted`, `next_lease`.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

fn backend(what: &str, e: impl Display) -> StoreError {
    StoreError::Backend(format!("{what}: {e}"))
}

/// A store persisted in one redb file.
///
/// Writes from all tasks are queued to one writer thread, committed together
/// in one durable transaction and acknowledged after the commit (group
/// commit), so a burst of concurrent writers shares each fsync.
#[derive(Clone)]
pub struct RedbStore {
    engine: Engine,
    path: PathBuf,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl RedbStore {
    /// Opens (or creates) the store file at `path` with default options.
    /// Blocking: reads the whole key space into memory.
    pub fn open(path: impl AsRef<Path>) -> Result<RedbStore> {
        Self::open_with(path, StoreOptions::default())
    }

    /// Opens (or creates) the store file at `path`. Leases found in the file
    /// get a full TTL from now, as etcd does after a restart.
    pub fn open_with(path: impl AsRef<Path>, opts: StoreOptions) -> Result<RedbStore> {
        let path = path.as_ref().to_path_buf();
        let span = tracing::info_span!("store_open", path = %path.display());
        let _enter = span.enter();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| backend(&format!("cannot create {}", dir.display()), e))?;
        }
        let db = Database::create(&path)
            .map_err(|e| backend(&format!("cannot open {}", path.display()), e))?;
        init_tables(&db)?;
        let core = load(&db, &opts)?;
        tracing::info!(
            keys = core.kvs.len(),
            revision = core.revision,
            leases = core.leases.len(),
            "store loaded"
        );
        let persist = RedbPersist {
            db,
            disk_history: opts.disk_history.max(1),
        };
        let engine = Engine::start(core, Some(Box::new(persist)))?;
        Ok(RedbStore { engine, path })
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

delegate_store!(RedbStore);

fn init_tables(db: &Database) -> Result<()> {
    let txn = db.begin_write().map_err(|e| backend("begin", e))?;
    {
        txn.open_table(KV).map_err(|e| backend("open kv", e))?;
        txn.open_table(HISTORY)
            .map_err(|e| backend("open history", e))?;
        txn.open_table(LEASES)
            .map_err(|e| backend("open leases", e))?;
        txn.open_table(META).map_err(|e| backend("open meta", e))?;
    }
    txn.commit().map_err(|e| backend("commit", e))
}

fn load(db: &Database, opts: &StoreOptions) -> Result<Core> {
    let r = db.begin_read().map_err(|e| backend("begin read", e))?;
    let meta = r.open_table(META).map_err(|e| backend("open meta", e))?;
    let get_meta = |k: &str| -> Result<u64> {
        Ok(meta
            .get(k)
            .map_err(|e| backend("read meta", e))?
            .map(|v| v.value())
            .unwrap_or(0))
    };
    let revision = get_meta("revision")?;
    let compacted = get_meta("compacted")?.max(1);
    let next_lease = get_meta("next_lease")?.max(1);

    let mut kvs = BTreeMap::new();
    let t = r.open_table(KV).map_err(|e| backend("open kv", e))?;
    for item in t.iter().map_err(|e| backend("read kv", e))? {
        let (k, v) = item.map_err(|e| backend("read kv", e))?;
        let key = k.value().to_string();
        let kv: KeyValue = decode_kv(&key, v.value())?;
        kvs.insert(key, kv);
    }

    let mut leases = Vec::new();
    let t = r
        .open_table(LEASES)
        .map_err(|e| backend("open leases", e))?;
    for item in t.iter().map_err(|e| backend("read leases", e))? {
        let (k, v) = item.map_err(|e| backend("read leases", e))?;
        leases.push((k.value(), Duration::from_millis(v.value())));
    }

    let mut history = Vec::new();
    let t = r
        .open_table(HISTORY)
        .map_err(|e| backend("open history", e))?;
    let mut events_kept = 0usize;
    // Newest first, up to what the in-memory history would keep anyway.
    for item in t.iter().map_err(|e| backend("read history", e))?.rev() {
        let (k, v) = item.map_err(|e| backend("read history", e))?;
        let events = decode_events(v.value())?;
        events_kept += events.len();
        history.push((k.value(), events));
        if events_kept >= opts.history_events {
            break;
        }
    }
    history.reverse();

    Ok(Core::restore(
        opts.limits(),
        kvs,
        revision,
        compacted,
        leases,
        next_lease,
        history,
    ))
}

struct RedbPersist {
    db: Database,
    disk_history: u64,
}

impl Persist for RedbPersist {
    fn persist(&mut self, plan: &Plan) -> Result<()> {
        // `Durability::Immediate` is redb's default: commit returns after fsync.
        let txn = self.db.begin_write().map_err(|e| backend("begin", e))?;
        {
            let mut kv = txn.open_table(KV).map_err(|e| backend("open kv", e))?;
            let mut buf = Vec::new();
            for (key, v) in &plan.kvs {
                match v {
                    Some(v) => {
                        buf.clear();
                        encode_kv(v, &mut buf);
                        kv.insert(key.as_str(), buf.as_slice())
                            .map_err(|e| backend("write kv", e))?;
                    }
                    None => {
                        kv.remove(key.as_str())
                            .map_err(|e| backend("delete kv", e))?;
                    }
                }
            }
            let mut leases = txn
                .open_table(LEASES)
                .map_err(|e| backend("open leases", e))?;
            for (id, ttl) in &plan.leases {
                match ttl {
                    Some(ttl) => {
                        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
                        leases
                            .insert(*id, ms)
                            .map_err(|e| backend("write lease", e))?;
                    }
                    None => {
                        leases.remove(*id).map_err(|e| backend("delete lease", e))?;
                    }
                }
            }
            let mut hist = txn
                .open_table(HISTORY)
                .map_err(|e| backend("open history", e))?;
            // Only the newest `disk_history` revisions are kept; a big batch
            // skips writing the ones it would trim right away.
            let floor = plan
                .compacted
                .max(plan.revision.saturating_sub(self.disk_history) + 1);
            for effect in &plan.effects {
                if let Effect::Commit { rev, events } = effect {
                    if *rev >= floor {
                        hist.insert(*rev, encode_events(events).as_slice())
                            .map_err(|e| backend("write history", e))?;
                    }
                }
            }
            hist.retain_in(..floor, |_, _| false)
                .map_err(|e| backend("trim history", e))?;
            let mut meta = txn.open_table(META).map_err(|e| backend("open meta", e))?;
            for (k, v) in [
                ("revision", plan.revision),
                ("compacted", plan.compacted),
                ("next_lease", plan.next_lease),
            ] {
                meta.insert(k, v).map_err(|e| backend("write meta", e))?;
            }
        }
        txn.commit().map_err(|e| backend("commit", e))
    }
}
