//! The embedded backend on redb: one file plus its write-ahead log, group
//! commit, every acknowledged write fsynced.
//!
//! All state is also held in the shared in-memory core, so reads and watches
//! never touch the disk. The single writer thread appends each batch of
//! queued writes to the log ([`crate::wal`], one `fdatasync`) and then
//! acknowledges it. A checkpointer thread brings the redb file up to date in
//! one transaction every second or so ([`StoreOptions::checkpoint_every`],
//! sooner after [`StoreOptions::checkpoint_bytes`] of log) and removes the
//! log segments it covers. Opening loads the file and
//! replays the log written after its last checkpoint.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, RwLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::codec::{decode_events, decode_kv, encode_events, encode_kv};
use crate::core::{read, Core, Plan};
use crate::engine::{delegate_store, Engine, Persist};
use crate::wal::{self, Record, Wal};
use crate::{EventKind, KeyValue, LeaseId, Result, Revision, StoreError, StoreOptions, WatchEvent};

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
        let mut state = load(&db, &opts)?;
        let on_file = state.revision;
        let wal_dir = wal::dir_of(&path);
        let records = wal::read_all(&wal_dir)?;
        let touched = replay(&mut state, &records)?;
        if state.revision != on_file || !touched.is_empty() {
            // Into the file at once: the log restarts empty.
            let cp = state.checkpoint(&touched, on_file);
            write_checkpoint(&db, &cp, opts.disk_history.max(1))?;
        }
        if let Some((last, _)) = wal::segments(&wal_dir)?.last() {
            wal::remove_through(&wal_dir, *last)?;
        }
        tracing::info!(
            keys = state.kvs.len(),
            revision = state.revision,
            replayed = records.len(),
            leases = state.leases.len(),
            "store loaded"
        );
        let core = Core::restore(
            opts.limits(),
            state.kvs,
            state.revision,
            state.compacted,
            state.leases.into_iter().collect(),
            state.next_lease,
            state.history,
        );
        let persist = RedbPersist {
            wal: Wal::open(&wal_dir)?,
            broken: false,
            dirty: HashSet::new(),
            last_job: Instant::now(),
            db: Some(db),
            on_file: state.revision,
            disk_history: opts.disk_history.max(1),
            every: opts.checkpoint_every,
            bytes: opts.checkpoint_bytes.max(1),
            core: Weak::new(),
            checkpointer: None,
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

/// What the file (and then the log) holds, before it becomes a [`Core`].
struct Loaded {
    kvs: BTreeMap<String, KeyValue>,
    revision: Revision,
    compacted: Revision,
    leases: BTreeMap<LeaseId, Duration>,
    next_lease: LeaseId,
    history: Vec<(Revision, Vec<WatchEvent>)>,
}

impl Loaded {
    /// A checkpoint of the `touched` keys and the history after `after`.
    fn checkpoint(&self, touched: &HashSet<String>, after: Revision) -> Checkpoint {
        Checkpoint {
            kvs: touched
                .iter()
                .map(|k| (k.clone(), self.kvs.get(k).cloned()))
                .collect(),
            leases: self.leases.iter().map(|(id, ttl)| (*id, *ttl)).collect(),
            history: self
                .history
                .iter()
                .filter(|(rev, _)| *rev > after)
                .map(|(rev, events)| (*rev, Arc::new(events.clone())))
                .collect(),
            revision: self.revision,
            compacted: self.compacted,
            next_lease: self.next_lease,
        }
    }
}

fn load(db: &Database, opts: &StoreOptions) -> Result<Loaded> {
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

    let mut leases = BTreeMap::new();
    let t = r
        .open_table(LEASES)
        .map_err(|e| backend("open leases", e))?;
    for item in t.iter().map_err(|e| backend("read leases", e))? {
        let (k, v) = item.map_err(|e| backend("read leases", e))?;
        leases.insert(k.value(), Duration::from_millis(v.value()));
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

    Ok(Loaded {
        kvs,
        revision,
        compacted,
        leases,
        next_lease,
        history,
    })
}

/// Applies the log's records written after the file's last checkpoint;
/// answers the keys they touched.
///
/// A checkpoint at revision R was taken when the log moved to a new segment,
/// so every record of the older segments ends at or before R and the newer
/// ones start at R. The file may hold values newer than R (the checkpointer
/// reads the live state): replaying the newer records in order, each event
/// an absolute state, ends at the same values.
fn replay(state: &mut Loaded, records: &[Record]) -> Result<HashSet<String>> {
    let on_file = state.revision;
    let mut touched = HashSet::new();
    for rec in records {
        if rec.base < on_file {
            continue;
        }
        if rec.base != state.revision {
            return Err(StoreError::Backend(format!(
                "write-ahead log skips from revision {} to {}: acknowledged writes are missing",
                state.revision, rec.base
            )));
        }
        for (rev, events) in &rec.commits {
            for ev in events {
                let key = &ev.kv.key;
                match ev.kind {
                    EventKind::Put => {
                        state.kvs.insert(key.clone(), ev.kv.clone());
                    }
                    EventKind::Delete => {
                        state.kvs.remove(key);
                    }
                }
                touched.insert(key.clone());
            }
            state.history.push((*rev, events.clone()));
        }
        for (id, ttl) in &rec.leases {
            match ttl {
                Some(ttl) => state.leases.insert(*id, *ttl),
                None => state.leases.remove(id),
            };
        }
        state.revision = rec.revision;
        state.compacted = state.compacted.max(rec.compacted);
        state.next_lease = state.next_lease.max(rec.next_lease);
    }
    Ok(touched)
}

/// What one checkpoint writes to the file.
struct Checkpoint {
    /// Keys to write (`None`: delete).
    kvs: Vec<(String, Option<KeyValue>)>,
    /// The whole lease table.
    leases: Vec<(LeaseId, Duration)>,
    /// History entries not yet in the file.
    history: Vec<(Revision, Arc<Vec<WatchEvent>>)>,
    /// The log records up to this revision are in the file after it.
    revision: Revision,
    compacted: Revision,
    next_lease: LeaseId,
}

/// Writes `cp` in one durable redb transaction.
fn write_checkpoint(db: &Database, cp: &Checkpoint, disk_history: u64) -> Result<()> {
    // `Durability::Immediate` is redb's default: commit returns after fsync.
    let txn = db.begin_write().map_err(|e| backend("begin", e))?;
    {
        let mut kv = txn.open_table(KV).map_err(|e| backend("open kv", e))?;
        let mut buf = Vec::new();
        for (key, v) in &cp.kvs {
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
        leases
            .retain(|_, _| false)
            .map_err(|e| backend("clear leases", e))?;
        for (id, ttl) in &cp.leases {
            let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
            leases
                .insert(*id, ms)
                .map_err(|e| backend("write lease", e))?;
        }
        let mut hist = txn
            .open_table(HISTORY)
            .map_err(|e| backend("open history", e))?;
        // Only the newest `disk_history` revisions are kept.
        let floor = cp
            .compacted
            .max(cp.revision.saturating_sub(disk_history) + 1);
        for (rev, events) in &cp.history {
            if *rev >= floor {
                hist.insert(*rev, encode_events(events).as_slice())
                    .map_err(|e| backend("write history", e))?;
            }
        }
        hist.retain_in(..floor, |_, _| false)
            .map_err(|e| backend("trim history", e))?;
        let mut meta = txn.open_table(META).map_err(|e| backend("open meta", e))?;
        for (k, v) in [
            ("revision", cp.revision),
            ("compacted", cp.compacted),
            ("next_lease", cp.next_lease),
        ] {
            meta.insert(k, v).map_err(|e| backend("write meta", e))?;
        }
    }
    txn.commit().map_err(|e| backend("commit", e))
}

/// Log, then acknowledge; checkpoint into the file in the background.
struct RedbPersist {
    wal: Wal,
    /// An append failed part-way: the next batch starts a new segment, so
    /// the torn record ends its segment.
    broken: bool,
    /// Keys written since the last checkpoint job.
    dirty: HashSet<String>,
    last_job: Instant,
    /// Moved to the checkpointer thread at `attach`.
    db: Option<Database>,
    /// The file's revision once open replayed the log into it.
    on_file: Revision,
    disk_history: u64,
    every: Duration,
    bytes: u64,
    core: Weak<RwLock<Core>>,
    checkpointer: Option<Checkpointer>,
}

struct Checkpointer {
    jobs: Option<std_mpsc::Sender<Job>>,
    busy: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Write the `keys` into the file; the log up to revision `upto`, in the
/// segments up to `through`, is then covered.
struct Job {
    upto: Revision,
    keys: HashSet<String>,
    through: u64,
}

impl RedbPersist {
    fn send(&mut self, upto: Revision, through: u64) {
        let Some(c) = &self.checkpointer else { return };
        let job = Job {
            upto,
            keys: std::mem::take(&mut self.dirty),
            through,
        };
        c.busy.store(true, Ordering::SeqCst);
        if let Some(jobs) = &c.jobs {
            let _ = jobs.send(job);
        }
        self.last_job = Instant::now();
    }

    fn checkpoint_due(&self) -> bool {
        let idle = self
            .checkpointer
            .as_ref()
            .is_some_and(|c| !c.busy.load(Ordering::SeqCst));
        idle && self.wal.len() > 0
            && (self.wal.len() >= self.bytes || self.last_job.elapsed() >= self.every)
    }
}

impl Persist for RedbPersist {
    fn attach(&mut self, core: &Arc<RwLock<Core>>) {
        self.core = Arc::downgrade(core);
        let Some(db) = self.db.take() else { return };
        let (jobs, rx) = std_mpsc::channel();
        let busy = Arc::new(AtomicBool::new(false));
        let worker = CheckpointWorker {
            db,
            on_file: self.on_file,
            core: Arc::downgrade(core),
            dir: self.wal.dir().to_path_buf(),
            disk_history: self.disk_history,
            busy: busy.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("jdos-store-checkpoint".into())
            .spawn(move || worker.run(rx));
        match thread {
            Ok(thread) => {
                self.checkpointer = Some(Checkpointer {
                    jobs: Some(jobs),
                    busy,
                    thread: Some(thread),
                })
            }
            // The log keeps everything; the next open replays it.
            Err(e) => tracing::error!(error = %e, "cannot start the store checkpointer"),
        }
    }

    fn persist(&mut self, plan: &Plan) -> Result<()> {
        if self.broken {
            self.wal.rotate()?;
            self.broken = false;
        }
        if self.checkpoint_due() {
            let through = self.wal.rotate()?;
            self.send(wal::base_of(plan), through);
        }
        if let Err(e) = self.wal.append(plan) {
            self.broken = true;
            return Err(e);
        }
        self.dirty.extend(plan.kvs.keys().cloned());
        Ok(())
    }
}

impl Drop for RedbPersist {
    /// A clean stop checkpoints what the log holds, so the next open has
    /// nothing to replay, and releases the file before returning.
    fn drop(&mut self) {
        if let Some(core) = self.core.upgrade() {
            if self.wal.len() > 0 || !self.dirty.is_empty() {
                let upto = read(&core).revision;
                let through = self.wal.seq();
                self.send(upto, through);
            }
            if let Some(c) = &mut self.checkpointer {
                c.jobs.take();
                if let Some(t) = c.thread.take() {
                    let _ = t.join();
                }
            }
            drop(core);
        }
    }
}

/// The checkpointer thread's side.
struct CheckpointWorker {
    db: Database,
    /// The file's revision when the store opened.
    on_file: Revision,
    core: Weak<RwLock<Core>>,
    dir: PathBuf,
    disk_history: u64,
    busy: Arc<AtomicBool>,
}

impl CheckpointWorker {
    fn run(self, jobs: std_mpsc::Receiver<Job>) {
        // Keys of failed checkpoints are written by the next one, and their
        // segments are kept until then.
        let mut pending: HashSet<String> = HashSet::new();
        let mut after = self.on_file;
        while let Ok(job) = jobs.recv() {
            pending.extend(job.keys);
            let Some(core) = self.core.upgrade() else {
                break;
            };
            let cp = {
                let c = read(&core);
                Checkpoint {
                    kvs: pending
                        .iter()
                        .map(|k| (k.clone(), c.kvs.get(k).cloned()))
                        .collect(),
                    leases: c.leases.iter().map(|(id, l)| (*id, l.ttl)).collect(),
                    history: c.history_range(after, job.upto),
                    revision: job.upto,
                    compacted: c.compacted.min(job.upto.max(1)),
                    next_lease: c.next_lease,
                }
            };
            drop(core);
            let span =
                tracing::debug_span!("store_checkpoint", keys = cp.kvs.len(), upto = job.upto);
            let _enter = span.enter();
            let t0 = Instant::now();
            let done = write_checkpoint(&self.db, &cp, self.disk_history)
                .and_then(|()| wal::remove_through(&self.dir, job.through));
            match done {
                Ok(()) => {
                    pending.clear();
                    after = job.upto;
                    tracing::debug!(
                        elapsed_us = t0.elapsed().as_micros() as u64,
                        "checkpoint written"
                    );
                }
                Err(e) => {
                    tracing::error!(error = %e, "store checkpoint failed; the log keeps the writes")
                }
            }
            self.busy.store(false, Ordering::SeqCst);
        }
    }
}
