//! The embedded time-series database: index, head blocks, closed blocks, persistence,
//! retention and hourly downsampling.
//!
//! Time is cut into fixed windows of [`Options::block_ms`] (default 2 h, aligned to the
//! epoch). Each series has one open Gorilla chunk per open window (the *head*). A window is
//! *closed* once a sample at or after `window end + close_grace_ms` has been appended: its
//! chunks become immutable, their hourly points are computed, and both are written to
//! `blocks/<start>.blk` and `hourly/<start>.hrl` (write temp → fsync → rename → fsync dir).
//! Samples older than the end of the last closed window are rejected ([`TsdbError::TooOld`]);
//! samples not newer than their chunk's last sample are rejected ([`TsdbError::OutOfOrder`]).
//!
//! Durability: closed blocks survive a crash. The head lives in memory and in a write-ahead
//! log (`head.wal`, [`Options::wal`]): every batch is written to it before being applied,
//! so a process crash loses nothing; the log is fsynced only by [`Tsdb::sync_wal`], so a
//! machine crash loses what was appended since the last `sync_wal`, closed window or head
//! snapshot. [`Tsdb::flush_head`] (called by [`Tsdb::close`] and after a window closes)
//! snapshots the head to `head.snap` and empties the log. Without the WAL, a crash loses
//! the head (at most `block_ms + close_grace_ms` of data).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::downsample::{hourly, HourlyPoint, HOUR_MS};
use crate::gorilla::{Chunk, ChunkEncoder, Sample};
use crate::labels::{Index, Labels, LabelsError, SeriesId};
use crate::segment::{self, Buf, Cur, SeriesLog, Wal, WalRecord};

/// Earliest timestamp a [`Tsdb`] stores (−2^62 ms, ~146 million years before 1970); the
/// bound keeps window arithmetic free of overflow. Chunks themselves accept any `i64`.
pub const MIN_TIMESTAMP: i64 = -(1 << 62);
/// Latest timestamp a [`Tsdb`] stores (2^62 ms).
pub const MAX_TIMESTAMP: i64 = 1 << 62;

/// Tuning of a [`Tsdb`]. All durations in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Options {
    /// Length of a block window; a multiple of one hour (default 2 h, as in Gorilla and Prometheus).
    pub block_ms: i64,
    /// How long after a window's end late samples are still accepted before it closes (default 10 min).
    pub close_grace_ms: i64,
    /// Raw closed blocks ending more than this before `now` are dropped (default 15 days).
    pub raw_retention_ms: i64,
    /// Hourly points older than this are dropped (default 400 days; must be ≥ raw retention).
    pub hourly_retention_ms: i64,
    /// Keep a write-ahead log of the head (`head.wal`) when persistent (default true).
    pub wal: bool,
    /// When the WAL grows past this many bytes (20 per sample), the head is snapshotted
    /// (~1.3 bytes per sample) and the WAL emptied, bounding disk use and replay time
    /// (default 64 MiB).
    pub wal_max_bytes: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            block_ms: 2 * HOUR_MS,
            close_grace_ms: 10 * 60_000,
            raw_retention_ms: 15 * 24 * HOUR_MS,
            hourly_retention_ms: 400 * 24 * HOUR_MS,
            wal: true,
            wal_max_bytes: 64 << 20,
        }
    }
}

impl Options {
    fn validate(&self) -> Result<(), TsdbError> {
        let bad = |m: &str| Err(TsdbError::InvalidOptions(m.to_string()));
        if self.block_ms <= 0 || self.block_ms % HOUR_MS != 0 {
            return bad("block_ms must be a positive multiple of one hour (3600000)");
        }
        if self.close_grace_ms < 0 {
            return bad("close_grace_ms must not be negative");
        }
        if self.raw_retention_ms <= 0 || self.hourly_retention_ms < self.raw_retention_ms {
            return bad("retentions must be positive and hourly_retention_ms >= raw_retention_ms");
        }
        Ok(())
    }
}

/// Errors of the time-series database.
#[derive(Debug, thiserror::Error)]
pub enum TsdbError {
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A persisted file is damaged; move it away (or restore it) and reopen.
    #[error("corrupt file {path}: {reason}")]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// What was wrong.
        reason: &'static str,
    },
    /// The options are inconsistent.
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    /// The label set is invalid.
    #[error(transparent)]
    Labels(#[from] LabelsError),
    /// The series id was never handed out by this database.
    #[error("unknown series id {0}")]
    UnknownSeries(SeriesId),
    /// The sample is not newer than the last sample of its series in that window.
    #[error("series {series}: out-of-order sample at {t} (last accepted {last})")]
    OutOfOrder {
        /// The series.
        series: SeriesId,
        /// The rejected timestamp.
        t: i64,
        /// The last accepted timestamp.
        last: i64,
    },
    /// The timestamp is outside [`MIN_TIMESTAMP`, `MAX_TIMESTAMP`].
    #[error("timestamp {0} is outside the supported range ±2^62 ms")]
    TimestampOutOfRange(i64),
    /// The sample falls in a window that is already closed.
    #[error("series {series}: sample at {t} is older than the closed blocks (closed until {closed_until})")]
    TooOld {
        /// The series.
        series: SeriesId,
        /// The rejected timestamp.
        t: i64,
        /// End of the last closed window.
        closed_until: i64,
    },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> TsdbError + 'a {
    move |source| TsdbError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Outcome of [`Tsdb::append_batch`]: how many samples were stored or rejected, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AppendSummary {
    /// Stored samples.
    pub accepted: u64,
    /// Rejected: not newer than the series' last sample.
    pub out_of_order: u64,
    /// Rejected: in an already closed window (or outside the supported time range).
    pub too_old: u64,
    /// Rejected: unknown series id.
    pub unknown_series: u64,
}

/// Sizes and counts, for monitoring the monitor and for the bytes-per-sample benchmark.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    /// Series in the index.
    pub series: u64,
    /// Open windows.
    pub head_windows: u64,
    /// Samples in open chunks.
    pub head_samples: u64,
    /// Encoded bytes of open chunks.
    pub head_bytes: u64,
    /// Closed windows held.
    pub closed_windows: u64,
    /// Closed chunks held.
    pub closed_chunks: u64,
    /// Samples in closed chunks.
    pub closed_samples: u64,
    /// Encoded Gorilla bytes of closed chunks (stream only).
    pub closed_bytes: u64,
    /// Hourly points held.
    pub hourly_points: u64,
}

/// Open chunks of one window, indexed by series id.
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) chunks: Vec<ChunkEncoder>,
}

/// Immutable chunks of a closed window, sorted by series id.
#[derive(Debug)]
pub(crate) struct Closed {
    pub(crate) end: i64,
    pub(crate) chunks: Vec<(SeriesId, Chunk)>,
}

/// Hourly points of a closed window, sorted by series id.
#[derive(Debug)]
pub(crate) struct HourlyBlock {
    pub(crate) end: i64,
    pub(crate) series: Vec<(SeriesId, Vec<HourlyPoint>)>,
}

/// What [`Tsdb::apply_retention`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Raw blocks dropped.
    pub raw_blocks: u64,
    /// Hourly blocks dropped.
    pub hourly_blocks: u64,
}

/// The time-series database. Not internally synchronized: wrap it in a lock to share it
/// (appends take `&mut self`, queries `&self`).
#[derive(Debug)]
pub struct Tsdb {
    opts: Options,
    dir: Option<PathBuf>,
    series_log: Option<SeriesLog>,
    wal: Option<Wal>,
    /// Ids below this are in the series log.
    logged_series: usize,
    pub(crate) index: Index,
    pub(crate) heads: BTreeMap<i64, Head>,
    pub(crate) closed: BTreeMap<i64, Closed>,
    pub(crate) hourly: BTreeMap<i64, HourlyBlock>,
    pub(crate) closed_until: i64,
    max_t: i64,
    /// Newest sample per series (`t == i64::MIN` when none), for "latest value" views.
    latest: Vec<Sample>,
}

impl std::fmt::Debug for SeriesLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SeriesLog")
    }
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Wal({})", self.path().display())
    }
}

impl Tsdb {
    /// A database without persistence (tests, benchmarks, the simulator).
    pub fn in_memory(opts: Options) -> Result<Self, TsdbError> {
        opts.validate()?;
        Ok(Self {
            opts,
            dir: None,
            series_log: None,
            wal: None,
            logged_series: 0,
            index: Index::default(),
            heads: BTreeMap::new(),
            closed: BTreeMap::new(),
            hourly: BTreeMap::new(),
            closed_until: i64::MIN,
            max_t: i64::MIN,
            latest: Vec::new(),
        })
    }

    /// Opens (creating) a database in `dir`, loading closed blocks, hourly points and the
    /// head snapshot. A damaged block file is an error naming the file, not silently skipped.
    pub fn open(dir: impl AsRef<Path>, opts: Options) -> Result<Self, TsdbError> {
        let dir = dir.as_ref().to_path_buf();
        let mut db = Self::in_memory(opts)?;
        for sub in ["blocks", "hourly"] {
            let p = dir.join(sub);
            fs::create_dir_all(&p).map_err(io_err("create", &p))?;
        }
        let log_path = dir.join("series.log");
        let (log, series) = SeriesLog::open(&log_path).map_err(io_err("open", &log_path))?;
        for (id, labels) in series {
            let (got, _) = db.index.get_or_insert(&labels);
            if got != id {
                return Err(TsdbError::Corrupt {
                    path: log_path,
                    reason: "series ids are not dense and in order",
                });
            }
        }
        db.logged_series = db.index.len();
        db.series_log = Some(log);
        let nseries = db.index.len();
        let corrupt = |path: &Path, c: segment::Corrupt| TsdbError::Corrupt {
            path: path.to_path_buf(),
            reason: c.0,
        };

        for path in list_files(&dir.join("blocks"), "blk")? {
            let data = fs::read(&path).map_err(io_err("read", &path))?;
            let body =
                segment::read_framed(&data, segment::BLOCK_MAGIC).map_err(|c| corrupt(&path, c))?;
            let (start, end, chunks) =
                segment::get_chunks(&mut Cur::new(&body)).map_err(|c| corrupt(&path, c))?;
            if chunks.iter().any(|(id, _)| *id as usize >= nseries) {
                return Err(corrupt(&path, segment::Corrupt("unknown series id")));
            }
            db.closed_until = db.closed_until.max(end);
            if let Some((_, c)) = chunks.last() {
                db.max_t = db.max_t.max(c.last_t());
            }
            db.closed.insert(start, Closed { end, chunks });
        }
        for path in list_files(&dir.join("hourly"), "hrl")? {
            let data = fs::read(&path).map_err(io_err("read", &path))?;
            let body = segment::read_framed(&data, segment::HOURLY_MAGIC)
                .map_err(|c| corrupt(&path, c))?;
            let (start, end, series) =
                segment::get_hourly(&mut Cur::new(&body)).map_err(|c| corrupt(&path, c))?;
            if series.iter().any(|(id, _)| *id as usize >= nseries) {
                return Err(corrupt(&path, segment::Corrupt("unknown series id")));
            }
            db.closed_until = db.closed_until.max(end);
            db.hourly.insert(start, HourlyBlock { end, series });
        }
        let snap = dir.join("head.snap");
        match fs::read(&snap) {
            Ok(data) => {
                let body = segment::read_framed(&data, segment::HEAD_MAGIC)
                    .map_err(|c| corrupt(&snap, c))?;
                let mut cur = Cur::new(&body);
                let n = cur.u32().map_err(|c| corrupt(&snap, c))?;
                for _ in 0..n {
                    let (start, _end, chunks) =
                        segment::get_chunks(&mut cur).map_err(|c| corrupt(&snap, c))?;
                    // Windows closed after the snapshot was taken are already in blocks.
                    if start < db.closed_until {
                        continue;
                    }
                    for (id, chunk) in chunks {
                        if id as usize >= nseries {
                            return Err(corrupt(&snap, segment::Corrupt("unknown series id")));
                        }
                        for s in chunk.iter() {
                            // Re-appending rebuilds the encoder state; order is guaranteed.
                            let _ = db.append_inner(id, s.t, s.v);
                        }
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("read", &snap)(e)),
        }
        if db.opts.wal {
            let wal_path = dir.join("head.wal");
            let (wal, records) = Wal::open(&wal_path).map_err(io_err("open", &wal_path))?;
            let mut replayed = 0u64;
            for rec in records {
                match rec {
                    WalRecord::Series(id, labels) => {
                        if db.index.get_or_insert(&labels).0 != id {
                            return Err(TsdbError::Corrupt {
                                path: wal_path,
                                reason: "series id does not match the index",
                            });
                        }
                    }
                    WalRecord::Samples(batch) => {
                        for (id, s) in batch {
                            // Samples already in the snapshot or in closed blocks, and
                            // samples rejected when first appended, are rejected again.
                            if db.append_inner(id, s.t, s.v).is_ok() {
                                replayed += 1;
                            }
                        }
                    }
                }
            }
            tracing::info!(replayed, "wal replayed");
            db.wal = Some(wal);
        }
        db.fill_latest_from_closed();
        db.dir = Some(dir);
        tracing::info!(
            series = db.index.len(),
            closed = db.closed.len(),
            hourly = db.hourly.len(),
            heads = db.heads.len(),
            "tsdb opened"
        );
        Ok(db)
    }

    /// Sets the newest sample of series that have none in the head from the newest
    /// closed block holding them (each such series' chunk is decoded once).
    fn fill_latest_from_closed(&mut self) {
        let n = self.index.len();
        self.latest.resize(n, Sample::new(i64::MIN, f64::NAN));
        for blk in self.closed.values().rev() {
            for (id, c) in &blk.chunks {
                let l = &mut self.latest[*id as usize];
                if l.t == i64::MIN {
                    if let Some(s) = c.iter().last() {
                        *l = s;
                    }
                }
            }
        }
    }

    /// The newest sample of series `id`, if it has any.
    pub fn latest(&self, id: SeriesId) -> Option<Sample> {
        self.latest
            .get(id as usize)
            .copied()
            .filter(|s| s.t != i64::MIN)
    }

    /// The options in force.
    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// The series index (labels, postings, selection).
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Id for `labels`, creating the series if new. Callers (the ingest path) cache it and
    /// append by id, as Prometheus appenders do with series refs.
    pub fn series(&mut self, labels: &Labels) -> SeriesId {
        let (id, new) = self.index.get_or_insert(labels);
        if new {
            if let Some(wal) = self.wal.as_mut() {
                // Buffered; written ahead of the next samples.
                wal.push_series(id, labels);
            }
        }
        id
    }

    /// Fsyncs the write-ahead log, bounding what a machine crash can lose (a process crash
    /// loses nothing already appended). No-op without a WAL.
    pub fn sync_wal(&mut self) -> Result<(), TsdbError> {
        if let Some(wal) = self.wal.as_mut() {
            let p = wal.path().to_path_buf();
            wal.sync().map_err(io_err("sync", &p))?;
        }
        Ok(())
    }

    fn wal_write(&mut self, batch: &[(SeriesId, Sample)]) -> Result<(), TsdbError> {
        if let Some(wal) = self.wal.as_mut() {
            wal.push_samples(batch);
            let p = wal.path().to_path_buf();
            wal.write().map_err(io_err("write", &p))?;
        }
        Ok(())
    }

    /// Start of the window holding `t`.
    pub fn window_of(&self, t: i64) -> i64 {
        t.div_euclid(self.opts.block_ms)
            .saturating_mul(self.opts.block_ms)
    }

    /// End of the last closed window (`i64::MIN` when none).
    pub fn closed_until(&self) -> i64 {
        self.closed_until
    }

    #[inline]
    fn append_inner(&mut self, id: SeriesId, t: i64, v: f64) -> Result<(), TsdbError> {
        let n = self.index.len();
        if id as usize >= n {
            return Err(TsdbError::UnknownSeries(id));
        }
        if !(MIN_TIMESTAMP..=MAX_TIMESTAMP).contains(&t) {
            return Err(TsdbError::TimestampOutOfRange(t));
        }
        if t < self.closed_until {
            return Err(TsdbError::TooOld {
                series: id,
                t,
                closed_until: self.closed_until,
            });
        }
        let w = self.window_of(t);
        let head = self
            .heads
            .entry(w)
            .or_insert_with(|| Head { chunks: Vec::new() });
        if head.chunks.len() <= id as usize {
            head.chunks.resize_with(n, ChunkEncoder::new);
        }
        head.chunks[id as usize]
            .append(t, v)
            .map_err(|e| TsdbError::OutOfOrder {
                series: id,
                t,
                last: e.last,
            })?;
        if t > self.max_t {
            self.max_t = t;
        }
        if self.latest.len() <= id as usize {
            self.latest.resize(n, Sample::new(i64::MIN, f64::NAN));
        }
        let l = &mut self.latest[id as usize];
        if t > l.t {
            *l = Sample::new(t, v);
        }
        Ok(())
    }

    /// Appends one sample, then closes windows that became due.
    ///
    /// If closing fails (I/O), the sample is stored and the window stays open; the error is
    /// returned and closing is retried on the next append.
    pub fn append(&mut self, id: SeriesId, t: i64, v: f64) -> Result<(), TsdbError> {
        self.wal_write(&[(id, Sample::new(t, v))])?;
        self.append_inner(id, t, v)?;
        self.close_due()
    }

    /// Appends a batch (any order across series; per series in time order). Bad samples are
    /// counted and skipped, the rest stored; then windows that became due are closed.
    pub fn append_batch(
        &mut self,
        batch: &[(SeriesId, Sample)],
    ) -> Result<AppendSummary, TsdbError> {
        // Logged before it is applied; if the log write fails nothing is applied.
        self.wal_write(batch)?;
        let mut sum = AppendSummary::default();
        for &(id, s) in batch {
            match self.append_inner(id, s.t, s.v) {
                Ok(()) => sum.accepted += 1,
                Err(TsdbError::OutOfOrder { .. }) => sum.out_of_order += 1,
                Err(TsdbError::TooOld { .. } | TsdbError::TimestampOutOfRange(_)) => {
                    sum.too_old += 1
                }
                Err(_) => sum.unknown_series += 1,
            }
        }
        self.close_due()?;
        Ok(sum)
    }

    /// Closes every open window whose end + grace is at or before the newest sample.
    fn close_due(&mut self) -> Result<(), TsdbError> {
        let mut closed = false;
        while let Some((&start, _)) = self.heads.first_key_value() {
            let end = start + self.opts.block_ms;
            if self.max_t < end.saturating_add(self.opts.close_grace_ms) {
                break;
            }
            self.close_window(start)?;
            closed = true;
        }
        let wal_full = self
            .wal
            .as_ref()
            .is_some_and(|w| w.len() > self.opts.wal_max_bytes);
        if (closed && self.wal.is_some()) || wal_full {
            // The WAL holds samples now in blocks, or has grown large: snapshot the head
            // (compressed) and empty the log.
            self.flush_head()?;
        }
        Ok(())
    }

    /// Closes every open window ending at or before `t`, regardless of grace (e.g. on a
    /// controlled shutdown or in tests).
    pub fn seal_through(&mut self, t: i64) -> Result<(), TsdbError> {
        let mut closed = false;
        while let Some((&start, _)) = self.heads.first_key_value() {
            if start + self.opts.block_ms > t {
                break;
            }
            self.close_window(start)?;
            closed = true;
        }
        if closed && self.wal.is_some() {
            self.flush_head()?;
        }
        Ok(())
    }

    fn log_new_series(&mut self) -> Result<(), TsdbError> {
        if let (Some(log), Some(dir)) = (self.series_log.as_mut(), self.dir.as_ref()) {
            let n = self.index.len();
            if self.logged_series < n {
                let new: Vec<(SeriesId, &Labels)> = (self.logged_series..n)
                    .map(|i| {
                        (
                            i as SeriesId,
                            self.index.labels(i as SeriesId).expect("dense ids"),
                        )
                    })
                    .collect();
                let p = dir.join("series.log");
                log.append(&new).map_err(io_err("append", &p))?;
                self.logged_series = n;
            }
        }
        Ok(())
    }

    fn close_window(&mut self, start: i64) -> Result<(), TsdbError> {
        let end = start + self.opts.block_ms;
        let head = &self.heads[&start];
        let chunks: Vec<(SeriesId, Chunk)> = head
            .chunks
            .iter()
            .enumerate()
            .filter(|(_, e)| !e.is_empty())
            .map(|(i, e)| (i as SeriesId, e.to_chunk()))
            .collect();
        let hourly_pts: Vec<(SeriesId, Vec<HourlyPoint>)> = chunks
            .iter()
            .map(|(id, c)| (*id, hourly(c.iter())))
            .filter(|(_, p)| !p.is_empty())
            .collect();
        if self.dir.is_some() {
            self.log_new_series()?;
            let dir = self.dir.as_ref().expect("checked");
            let mut b = Buf::default();
            segment::put_chunks(&mut b, start, end, &chunks);
            let p = block_path(dir, start);
            segment::write_atomic(&p, segment::BLOCK_MAGIC, &b.0).map_err(io_err("write", &p))?;
            let mut b = Buf::default();
            segment::put_hourly(&mut b, start, end, &hourly_pts);
            let p = hourly_path(dir, start);
            segment::write_atomic(&p, segment::HOURLY_MAGIC, &b.0).map_err(io_err("write", &p))?;
        }
        tracing::debug!(window = start, chunks = chunks.len(), "block closed");
        self.heads.remove(&start);
        self.closed.insert(start, Closed { end, chunks });
        self.hourly.insert(
            start,
            HourlyBlock {
                end,
                series: hourly_pts,
            },
        );
        self.closed_until = self.closed_until.max(end);
        Ok(())
    }

    /// Snapshots the open windows to `head.snap` (no-op in memory).
    pub fn flush_head(&mut self) -> Result<(), TsdbError> {
        if self.dir.is_none() {
            return Ok(());
        }
        self.log_new_series()?;
        let mut b = Buf::default();
        b.u32(self.heads.len() as u32);
        for (&start, head) in &self.heads {
            let chunks: Vec<(SeriesId, Chunk)> = head
                .chunks
                .iter()
                .enumerate()
                .filter(|(_, e)| !e.is_empty())
                .map(|(i, e)| (i as SeriesId, e.to_chunk()))
                .collect();
            segment::put_chunks(&mut b, start, start + self.opts.block_ms, &chunks);
        }
        let p = self.dir.as_ref().expect("checked").join("head.snap");
        segment::write_atomic(&p, segment::HEAD_MAGIC, &b.0).map_err(io_err("write", &p))?;
        if let Some(wal) = self.wal.as_mut() {
            let p = wal.path().to_path_buf();
            wal.reset().map_err(io_err("truncate", &p))?;
        }
        Ok(())
    }

    /// Snapshots the head and releases the database.
    pub fn close(mut self) -> Result<(), TsdbError> {
        self.flush_head()
    }

    /// Drops raw blocks ending at or before `now_ms - raw_retention_ms` and hourly blocks
    /// ending at or before `now_ms - hourly_retention_ms`, files first.
    pub fn apply_retention(&mut self, now_ms: i64) -> Result<RetentionReport, TsdbError> {
        let dir = self.dir.as_deref();
        let rep = RetentionReport {
            raw_blocks: drop_ended(
                &mut self.closed,
                now_ms.saturating_sub(self.opts.raw_retention_ms),
                |b| b.end,
                dir.map(|d| move |s| block_path(d, s)),
            )?,
            hourly_blocks: drop_ended(
                &mut self.hourly,
                now_ms.saturating_sub(self.opts.hourly_retention_ms),
                |b| b.end,
                dir.map(|d| move |s| hourly_path(d, s)),
            )?,
        };
        if rep != RetentionReport::default() {
            tracing::info!(
                raw = rep.raw_blocks,
                hourly = rep.hourly_blocks,
                "retention applied"
            );
        }
        Ok(rep)
    }

    /// Counts and sizes.
    pub fn stats(&self) -> Stats {
        let mut s = Stats {
            series: self.index.len() as u64,
            head_windows: self.heads.len() as u64,
            closed_windows: self.closed.len() as u64,
            ..Stats::default()
        };
        for h in self.heads.values() {
            for e in &h.chunks {
                s.head_samples += u64::from(e.len());
                s.head_bytes += e.len_bits().div_ceil(8);
            }
        }
        for b in self.closed.values() {
            s.closed_chunks += b.chunks.len() as u64;
            for (_, c) in &b.chunks {
                s.closed_samples += u64::from(c.len());
                s.closed_bytes += c.data().len() as u64;
            }
        }
        for b in self.hourly.values() {
            s.hourly_points += b.series.iter().map(|(_, p)| p.len() as u64).sum::<u64>();
        }
        s
    }

    /// Hourly points of series `id` with `hour` in `[start, end)`, from closed windows
    /// (open windows are not downsampled yet; [`Tsdb::query`] covers them from raw data).
    pub fn hourly_points(&self, id: SeriesId, start: i64, end: i64) -> Vec<HourlyPoint> {
        let mut out = Vec::new();
        self.for_each_hourly(id, start, end, |p| out.push(*p));
        out
    }

    pub(crate) fn for_each_hourly(
        &self,
        id: SeriesId,
        start: i64,
        end: i64,
        mut f: impl FnMut(&HourlyPoint),
    ) {
        if start >= end {
            return;
        }
        for blk in self
            .hourly
            .range(self.window_of(start)..end)
            .map(|(_, b)| b)
        {
            if let Ok(i) = blk.series.binary_search_by_key(&id, |(s, _)| *s) {
                for p in blk.series[i]
                    .1
                    .iter()
                    .filter(|p| p.hour >= start && p.hour < end)
                {
                    f(p);
                }
            }
        }
    }

    /// Calls `f` for every sample of series `id` with `start ≤ t < end`, in time order.
    pub fn for_each_sample(&self, id: SeriesId, start: i64, end: i64, mut f: impl FnMut(Sample)) {
        if start >= end {
            return;
        }
        let from = self.window_of(start);
        let mut feed = |c: &Chunk| {
            if c.is_empty() || c.last_t() < start || c.first_t() >= end {
                return;
            }
            if c.first_t() >= start && c.last_t() < end {
                // Wholly inside the range (the common case): no per-sample bounds checks.
                c.iter().for_each(&mut f);
                return;
            }
            for s in c.iter() {
                if s.t >= end {
                    break;
                }
                if s.t >= start {
                    f(s);
                }
            }
        };
        for blk in self.closed.range(from..end).map(|(_, b)| b) {
            if let Ok(i) = blk.chunks.binary_search_by_key(&id, |(s, _)| *s) {
                feed(&blk.chunks[i].1);
            }
        }
        for head in self.heads.range(from..end).map(|(_, h)| h) {
            if let Some(e) = head.chunks.get(id as usize) {
                if !e.is_empty() && e.last_t().is_some_and(|l| l >= start) {
                    feed(&e.to_chunk());
                }
            }
        }
    }

    /// Raw samples of series `id` with `start ≤ t < end`.
    pub fn range(&self, id: SeriesId, start: i64, end: i64) -> Vec<Sample> {
        let mut out = Vec::new();
        self.for_each_sample(id, start, end, |s| out.push(s));
        out
    }
}

fn block_path(dir: &Path, start: i64) -> PathBuf {
    dir.join("blocks").join(format!("{start}.blk"))
}

fn hourly_path(dir: &Path, start: i64) -> PathBuf {
    dir.join("hourly").join(format!("{start}.hrl"))
}

/// Removes the blocks of `blocks` ending at or before `cut`, each one's file
/// (when persisted) before its entry; returns how many were removed.
fn drop_ended<B>(
    blocks: &mut BTreeMap<i64, B>,
    cut: i64,
    end: impl Fn(&B) -> i64,
    file: Option<impl Fn(i64) -> PathBuf>,
) -> Result<u64, TsdbError> {
    let old: Vec<i64> = blocks
        .iter()
        .filter(|(_, b)| end(b) <= cut)
        .map(|(&s, _)| s)
        .collect();
    for s in &old {
        if let Some(path) = &file {
            remove_if_exists(&path(*s))?;
        }
        blocks.remove(s);
    }
    Ok(old.len() as u64)
}

fn remove_if_exists(p: &Path) -> Result<(), TsdbError> {
    match fs::remove_file(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("remove", p)(e)),
    }
}

/// Files with extension `ext` in `dir`; leftover `.tmp` files from a crash are removed.
fn list_files(dir: &Path, ext: &str) -> Result<Vec<PathBuf>, TsdbError> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).map_err(io_err("list", dir))? {
        let p = e.map_err(io_err("list", dir))?.path();
        match p.extension().and_then(|x| x.to_str()) {
            Some(x) if x == ext => out.push(p),
            Some("tmp") => remove_if_exists(&p)?,
            _ => {}
        }
    }
    out.sort();
    Ok(out)
}
