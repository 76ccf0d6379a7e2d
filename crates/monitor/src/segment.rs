//! On-disk formats: closed raw blocks, hourly downsample blocks, head snapshots and the
//! append-only series log. Every file ends with an FNV-1a 64 checksum of its body; whole
//! files are written to a temporary name, fsynced and renamed, so a crash leaves either the
//! old state or the complete new file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::downsample::HourlyPoint;
use crate::gorilla::Chunk;
use crate::labels::{Labels, SeriesId};

/// Magic of a raw block file.
pub(crate) const BLOCK_MAGIC: &[u8; 8] = b"JDTSBLK1";
/// Magic of an hourly downsample file.
pub(crate) const HOURLY_MAGIC: &[u8; 8] = b"JDTSHRL1";
/// Magic of a head snapshot.
pub(crate) const HEAD_MAGIC: &[u8; 8] = b"JDTSHED1";

/// A file failed to parse or its checksum did not match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Corrupt(pub &'static str);

pub(crate) fn fnv64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Little-endian byte builder.
#[derive(Default)]
pub(crate) struct Buf(pub Vec<u8>);

impl Buf {
    pub fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn f64(&mut self, v: f64) {
        self.0.extend_from_slice(&v.to_bits().to_le_bytes());
    }
    pub fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
    }
    pub fn str16(&mut self, s: &str) {
        // Labels::from_pairs guarantees ≤ u16::MAX bytes.
        self.u16(s.len() as u16);
        self.0.extend_from_slice(s.as_bytes());
    }
}

/// Little-endian byte reader.
pub(crate) struct Cur<'a> {
    d: &'a [u8],
}

impl<'a> Cur<'a> {
    pub fn new(d: &'a [u8]) -> Self {
        Self { d }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], Corrupt> {
        if self.d.len() < n {
            return Err(Corrupt("truncated"));
        }
        let (a, b) = self.d.split_at(n);
        self.d = b;
        Ok(a)
    }
    pub fn is_empty(&self) -> bool {
        self.d.is_empty()
    }
    pub fn u16(&mut self) -> Result<u16, Corrupt> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }
    pub fn u32(&mut self) -> Result<u32, Corrupt> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    pub fn i64(&mut self) -> Result<i64, Corrupt> {
        Ok(i64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    pub fn f64(&mut self) -> Result<f64, Corrupt> {
        Ok(f64::from_bits(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        )))
    }
    pub fn bytes(&mut self) -> Result<&'a [u8], Corrupt> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    pub fn str16(&mut self) -> Result<String, Corrupt> {
        let n = self.u16()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| Corrupt("label is not utf-8"))
    }
}

/// Frames `body` with `magic` and a checksum and writes it atomically to `path`.
pub(crate) fn write_atomic(path: &Path, magic: &[u8; 8], body: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(magic)?;
        f.write_all(body)?;
        f.write_all(&fnv64(body).to_le_bytes())?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Makes a rename or file creation in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Reads a file written by [`write_atomic`], checking magic and checksum.
pub(crate) fn read_framed(data: &[u8], magic: &[u8; 8]) -> Result<Vec<u8>, Corrupt> {
    if data.len() < 16 || &data[..8] != magic {
        return Err(Corrupt("bad magic"));
    }
    let body = &data[8..data.len() - 8];
    let sum = u64::from_le_bytes(data[data.len() - 8..].try_into().expect("8 bytes"));
    if fnv64(body) != sum {
        return Err(Corrupt("checksum mismatch"));
    }
    Ok(body.to_vec())
}

/// Encodes one window of chunks (shared by block files and head snapshots).
pub(crate) fn put_chunks(b: &mut Buf, start: i64, end: i64, chunks: &[(SeriesId, Chunk)]) {
    b.i64(start);
    b.i64(end);
    b.u32(chunks.len() as u32);
    for (id, c) in chunks {
        b.u32(*id);
        b.u32(c.len());
        b.i64(c.first_t());
        b.i64(c.last_t());
        b.bytes(c.data());
    }
}

/// A decoded window of chunks.
pub(crate) type Window = (i64, i64, Vec<(SeriesId, Chunk)>);

pub(crate) fn get_chunks(c: &mut Cur<'_>) -> Result<Window, Corrupt> {
    let start = c.i64()?;
    let end = c.i64()?;
    let n = c.u32()? as usize;
    let mut out = Vec::with_capacity(n.min(1 << 20));
    for _ in 0..n {
        let id = c.u32()?;
        let count = c.u32()?;
        let first = c.i64()?;
        let last = c.i64()?;
        let data = c.bytes()?;
        out.push((id, Chunk::from_parts(count, first, last, data.into())));
    }
    Ok((start, end, out))
}

pub(crate) fn put_hourly(
    b: &mut Buf,
    start: i64,
    end: i64,
    series: &[(SeriesId, Vec<HourlyPoint>)],
) {
    b.i64(start);
    b.i64(end);
    b.u32(series.len() as u32);
    for (id, pts) in series {
        b.u32(*id);
        b.u32(pts.len() as u32);
        for p in pts {
            b.i64(p.hour);
            b.u32(p.count);
            b.f64(p.sum);
            b.f64(p.min);
            b.f64(p.max);
            b.f64(p.last);
        }
    }
}

/// A decoded hourly file.
pub(crate) type HourlyWindow = (i64, i64, Vec<(SeriesId, Vec<HourlyPoint>)>);

pub(crate) fn get_hourly(c: &mut Cur<'_>) -> Result<HourlyWindow, Corrupt> {
    let start = c.i64()?;
    let end = c.i64()?;
    let n = c.u32()? as usize;
    let mut out = Vec::with_capacity(n.min(1 << 20));
    for _ in 0..n {
        let id = c.u32()?;
        let np = c.u32()? as usize;
        let mut pts = Vec::with_capacity(np.min(1 << 16));
        for _ in 0..np {
            pts.push(HourlyPoint {
                hour: c.i64()?,
                count: c.u32()?,
                sum: c.f64()?,
                min: c.f64()?,
                max: c.f64()?,
                last: c.f64()?,
            });
        }
        out.push((id, pts));
    }
    Ok((start, end, out))
}

/// Opens (creating) an append-only log of checksummed records for appending
/// and returns its intact records and the length of the intact prefix. A torn
/// or corrupt tail (a crash mid-append) is cut off, so new appends follow the
/// last good record.
fn open_record_log<R>(
    path: &Path,
    what: &str,
    record: impl Fn(&mut Cur<'_>) -> Result<R, Corrupt>,
) -> io::Result<(File, Vec<R>, u64)> {
    let data = match fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    let mut good = 0usize;
    let mut c = Cur::new(&data);
    while !c.is_empty() {
        let Ok(rec) = record(&mut c) else { break };
        out.push(rec);
        good = data.len() - c.d.len();
    }
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    if good < data.len() {
        tracing::warn!(path = %path.display(), good, len = data.len(), "{what}: dropping torn tail");
        file.set_len(good as u64)?;
        file.sync_all()?;
    }
    Ok((file, out, good as u64))
}

/// Append-only log of series definitions: `u32 body length | body | u64 checksum`, body =
/// `u32 id | u16 pairs | (str16 name, str16 value)*`. A torn last record (crash mid-append)
/// is ignored and cut off on open.
pub(crate) struct SeriesLog {
    path: PathBuf,
    file: File,
}

impl SeriesLog {
    /// Opens (creating) the log and returns the series it holds, in id order.
    pub fn open(path: &Path) -> io::Result<(Self, Vec<(SeriesId, Labels)>)> {
        let (file, out, _) = open_record_log(path, "series log", Self::record)?;
        Ok((
            Self {
                path: path.to_path_buf(),
                file,
            },
            out,
        ))
    }

    fn record(c: &mut Cur<'_>) -> Result<(SeriesId, Labels), Corrupt> {
        let body = c.bytes()?;
        let sum = c.i64()? as u64;
        if fnv64(body) != sum {
            return Err(Corrupt("series record checksum"));
        }
        let mut b = Cur::new(body);
        let id = b.u32()?;
        let n = b.u16()? as usize;
        let mut pairs = Vec::with_capacity(n);
        for _ in 0..n {
            pairs.push((b.str16()?, b.str16()?));
        }
        let labels = Labels::from_pairs(pairs).map_err(|_| Corrupt("invalid labels"))?;
        Ok((id, labels))
    }

    /// Appends definitions and fsyncs (called before a block referencing them is written).
    pub fn append(&mut self, series: &[(SeriesId, &Labels)]) -> io::Result<()> {
        if series.is_empty() {
            return Ok(());
        }
        let mut out = Buf::default();
        for (id, labels) in series {
            let mut body = Buf::default();
            body.u32(*id);
            body.u16(labels.pairs().len() as u16);
            for (k, v) in labels.pairs() {
                body.str16(k);
                body.str16(v);
            }
            out.bytes(&body.0);
            out.i64(fnv64(&body.0) as i64);
        }
        self.file.write_all(&out.0)?;
        self.file.sync_data()?;
        tracing::debug!(path = %self.path.display(), n = series.len(), "series log appended");
        Ok(())
    }
}

/// Checksum for WAL frames: FNV-style mixing a 64-bit word at a time (8× faster than the
/// byte-wise FNV on the ingest path; it only has to catch torn or garbled tails).
pub(crate) fn wal_sum(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        h = (h ^ u64::from_le_bytes(w.try_into().expect("8 bytes")))
            .wrapping_mul(0x0000_0100_0000_01b3);
        h ^= h >> 29;
    }
    for &b in words.remainder() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A record of the head write-ahead log.
pub(crate) enum WalRecord {
    /// A series created since the last head snapshot.
    Series(SeriesId, Labels),
    /// A batch of samples as it was appended.
    Samples(Vec<(SeriesId, crate::gorilla::Sample)>),
}

const WAL_SERIES: u8 = 1;
const WAL_SAMPLES: u8 = 2;

/// Write-ahead log of the head: frames `u32 body length | body | u64 checksum`, body =
/// `u8 kind | payload`. Written (not fsynced) before each batch is applied, so a process
/// crash loses nothing; fsync with [`Wal::sync`] bounds what a machine crash can lose.
/// Emptied whenever the head is snapshotted (window close, `flush_head`).
pub(crate) struct Wal {
    path: PathBuf,
    file: File,
    buf: Vec<u8>,
    /// Length of the intact prefix of the file.
    len: u64,
}

impl Wal {
    /// Opens (creating) the log and returns its intact records; a torn tail is cut off.
    pub fn open(path: &Path) -> io::Result<(Self, Vec<WalRecord>)> {
        let (file, out, good) = open_record_log(path, "wal", Self::record)?;
        Ok((
            Self {
                path: path.to_path_buf(),
                file,
                buf: Vec::new(),
                len: good,
            },
            out,
        ))
    }

    fn record(c: &mut Cur<'_>) -> Result<WalRecord, Corrupt> {
        let body = c.bytes()?;
        let sum = c.i64()? as u64;
        if wal_sum(body) != sum {
            return Err(Corrupt("wal checksum"));
        }
        let (&kind, payload) = body.split_first().ok_or(Corrupt("empty wal frame"))?;
        let mut b = Cur::new(payload);
        match kind {
            WAL_SERIES => {
                let id = b.u32()?;
                let n = b.u16()? as usize;
                let mut pairs = Vec::with_capacity(n);
                for _ in 0..n {
                    pairs.push((b.str16()?, b.str16()?));
                }
                let labels = Labels::from_pairs(pairs).map_err(|_| Corrupt("invalid labels"))?;
                Ok(WalRecord::Series(id, labels))
            }
            WAL_SAMPLES => {
                let n = b.u32()? as usize;
                let mut v = Vec::with_capacity(n.min(1 << 20));
                for _ in 0..n {
                    let id = b.u32()?;
                    let t = b.i64()?;
                    let val = b.f64()?;
                    v.push((id, crate::gorilla::Sample::new(t, val)));
                }
                Ok(WalRecord::Samples(v))
            }
            _ => Err(Corrupt("unknown wal record kind")),
        }
    }

    fn frame(&mut self, fill: impl FnOnce(&mut Vec<u8>)) {
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        fill(&mut self.buf);
        let len = (self.buf.len() - at - 4) as u32;
        self.buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
        let sum = wal_sum(&self.buf[at + 4..]);
        self.buf.extend_from_slice(&sum.to_le_bytes());
    }

    /// Buffers a series definition.
    pub fn push_series(&mut self, id: SeriesId, labels: &Labels) {
        self.frame(|b| {
            let mut x = Buf(std::mem::take(b));
            x.0.push(WAL_SERIES);
            x.u32(id);
            x.u16(labels.pairs().len() as u16);
            for (k, v) in labels.pairs() {
                x.str16(k);
                x.str16(v);
            }
            *b = x.0;
        });
    }

    /// Buffers a batch of samples.
    pub fn push_samples(&mut self, batch: &[(SeriesId, crate::gorilla::Sample)]) {
        self.frame(|b| {
            b.reserve(5 + batch.len() * 20);
            b.push(WAL_SAMPLES);
            b.extend_from_slice(&(batch.len() as u32).to_le_bytes());
            for (id, s) in batch {
                b.extend_from_slice(&id.to_le_bytes());
                b.extend_from_slice(&s.t.to_le_bytes());
                b.extend_from_slice(&s.v.to_bits().to_le_bytes());
            }
        });
    }

    /// Writes the buffered frames to the file (page cache; see [`Wal::sync`]).
    pub fn write(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let r = self.file.write_all(&self.buf);
        match r {
            Ok(()) => self.len += self.buf.len() as u64,
            // Cut a partial frame so later frames are not hidden behind it on replay.
            Err(_) => {
                let _ = self.file.set_len(self.len);
            }
        }
        self.buf.clear();
        r
    }

    /// Writes and fsyncs.
    pub fn sync(&mut self) -> io::Result<()> {
        self.write()?;
        self.file.sync_data()
    }

    /// Empties the log (after a head snapshot made its content redundant).
    pub fn reset(&mut self) -> io::Result<()> {
        self.buf.clear();
        self.file.set_len(0)?;
        self.len = 0;
        self.file.sync_all()
    }

    /// Bytes in the file (written frames).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
