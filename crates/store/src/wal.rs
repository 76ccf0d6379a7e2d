//! The write-ahead log in front of the redb file.
//!
//! A batch is durable once its record is appended to the current segment
//! and `fdatasync`ed: one sequential write, where a redb commit rewrote
//! every B-tree page the batch touched (0.6 ms a commit, most of a busy
//! writer's time). The redb file becomes a checkpoint, brought up to date in
//! large transactions off the write path; a segment is removed once a
//! checkpoint covers it.
//!
//! Segments are files `<seq>.wal` (16 digits) in a directory beside the redb
//! file. A record is `[len: u32][crc32: u32][payload]`; a record cut short
//! by a crash (never acknowledged) fails its check and ends its segment.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::codec::{decode_events, encode_events, Reader};
use crate::core::{Effect, Plan};
use crate::{LeaseId, Result, Revision, StoreError, WatchEvent};

fn io(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Backend(format!("{what} {}: {e}", path.display()))
}

/// One batch as logged: its commits with their events, the leases it
/// changed and the counters after it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Record {
    /// The store's revision before the batch.
    pub base: Revision,
    /// The store's revision after it.
    pub revision: Revision,
    pub compacted: Revision,
    pub next_lease: LeaseId,
    /// Each commit's revision and events, in order.
    pub commits: Vec<(Revision, Vec<WatchEvent>)>,
    /// Final state of each lease the batch touched (`None` = revoked).
    pub leases: Vec<(LeaseId, Option<Duration>)>,
}

/// The revision before `plan`: a checkpoint taken between two batches is
/// at the later one's base.
pub(crate) fn base_of(plan: &Plan) -> Revision {
    plan.effects
        .iter()
        .find_map(|e| match e {
            Effect::Commit { rev, .. } => Some(rev.saturating_sub(1)),
            _ => None,
        })
        .unwrap_or(plan.revision)
}

/// Encodes `plan` as a record payload.
fn encode_plan(plan: &Plan, out: &mut Vec<u8>) {
    let commits: Vec<(Revision, &Vec<WatchEvent>)> = plan
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::Commit { rev, events } => Some((*rev, events)),
            _ => None,
        })
        .collect();
    for n in [
        base_of(plan),
        plan.revision,
        plan.compacted,
        plan.next_lease,
    ] {
        out.extend_from_slice(&n.to_le_bytes());
    }
    out.extend_from_slice(&(commits.len() as u64).to_le_bytes());
    for (rev, events) in commits {
        let bytes = encode_events(events);
        out.extend_from_slice(&rev.to_le_bytes());
        out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        out.extend_from_slice(&bytes);
    }
    out.extend_from_slice(&(plan.leases.len() as u64).to_le_bytes());
    for (id, ttl) in &plan.leases {
        out.extend_from_slice(&id.to_le_bytes());
        match ttl {
            Some(ttl) => {
                out.push(1);
                let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
                out.extend_from_slice(&ms.to_le_bytes());
            }
            None => out.push(0),
        }
    }
}

fn decode_record(payload: &[u8]) -> Result<Record> {
    let mut r = Reader::new(payload);
    let base = r.u64()?;
    let revision = r.u64()?;
    let compacted = r.u64()?;
    let next_lease = r.u64()?;
    let n = r.u64()?;
    let mut commits = Vec::with_capacity(n.min(1 << 16) as usize);
    for _ in 0..n {
        let rev = r.u64()?;
        let len = r.u64()? as usize;
        commits.push((rev, decode_events(r.bytes(len)?)?));
    }
    let n = r.u64()?;
    let mut leases = Vec::with_capacity(n.min(1 << 16) as usize);
    for _ in 0..n {
        let id = r.u64()?;
        let ttl = match r.u8()? {
            0 => None,
            _ => Some(Duration::from_millis(r.u64()?)),
        };
        leases.push((id, ttl));
    }
    r.end()?;
    Ok(Record {
        base,
        revision,
        compacted,
        next_lease,
        commits,
        leases,
    })
}

/// CRC-32 (IEEE), table-driven: enough to tell a torn tail from a record.
fn crc32(bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    let mut c = !0u32;
    for b in bytes {
        c = TABLE[((c ^ u32::from(*b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

/// The directory of the log of the redb file at `db`.
pub(crate) fn dir_of(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".wal");
    db.with_file_name(name)
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:016}.wal"))
}

/// The segments in `dir`, oldest first.
pub(crate) fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io("cannot read", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io("cannot read", dir, e))?;
        let name = entry.file_name();
        let Some(seq) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".wal"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        out.push((seq, entry.path()));
    }
    out.sort();
    Ok(out)
}

/// Reads every whole record of the segments in `dir`, oldest first. A
/// record that fails its check ends its segment (a crash cut it short; it
/// was never acknowledged).
pub(crate) fn read_all(dir: &Path) -> Result<Vec<Record>> {
    let mut out = Vec::new();
    for (_, path) in segments(dir)? {
        let bytes = std::fs::read(&path).map_err(|e| io("cannot read", &path, e))?;
        let mut at = 0usize;
        while at + 8 <= bytes.len() {
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap_or_default()) as usize;
            let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap_or_default());
            let Some(payload) = bytes.get(at + 8..at + 8 + len) else {
                break;
            };
            if crc32(payload) != crc {
                break;
            }
            out.push(decode_record(payload)?);
            at += 8 + len;
        }
        if at < bytes.len() {
            tracing::warn!(
                segment = %path.display(),
                dropped_bytes = bytes.len() - at,
                "write-ahead log ends in a partial record (a crash cut it short); ignored"
            );
        }
    }
    Ok(out)
}

/// Removes the segments numbered `seq` and below.
pub(crate) fn remove_through(dir: &Path, seq: u64) -> Result<()> {
    for (s, path) in segments(dir)? {
        if s <= seq {
            std::fs::remove_file(&path).map_err(|e| io("cannot remove", &path, e))?;
        }
    }
    Ok(())
}

/// The appending end of the log.
pub(crate) struct Wal {
    dir: PathBuf,
    seq: u64,
    file: File,
    len: u64,
    buf: Vec<u8>,
}

impl Wal {
    /// Starts a new segment after every existing one.
    pub fn open(dir: &Path) -> Result<Wal> {
        std::fs::create_dir_all(dir).map_err(|e| io("cannot create", dir, e))?;
        let seq = segments(dir)?.last().map_or(1, |(s, _)| s + 1);
        let file = Self::create(dir, seq)?;
        Ok(Wal {
            dir: dir.to_path_buf(),
            seq,
            file,
            len: 0,
            buf: Vec::new(),
        })
    }

    fn create(dir: &Path, seq: u64) -> Result<File> {
        let path = segment_path(dir, seq);
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(|e| io("cannot create", &path, e))?;
        // The new name must survive a crash too.
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("cannot sync", dir, e))?;
        Ok(file)
    }

    /// Appends `plan` and returns once it is on disk.
    pub fn append(&mut self, plan: &Plan) -> Result<()> {
        self.buf.clear();
        self.buf.extend_from_slice(&[0u8; 8]);
        encode_plan(plan, &mut self.buf);
        let payload = &self.buf[8..];
        let len = u32::try_from(payload.len())
            .map_err(|_| StoreError::Backend("a write batch over 4 GiB".into()))?;
        let crc = crc32(payload);
        self.buf[..4].copy_from_slice(&len.to_le_bytes());
        self.buf[4..8].copy_from_slice(&crc.to_le_bytes());
        let path = || segment_path(&self.dir, self.seq);
        let written = self
            .file
            .write_all(&self.buf)
            .map_err(|e| io("cannot append to", &path(), e))
            .and_then(|()| {
                self.file
                    .sync_data()
                    .map_err(|e| io("cannot sync", &path(), e))
            });
        if written.is_err() {
            // The batch fails: take back whatever of it reached the file,
            // so a later replay cannot apply what was never acknowledged.
            let _ = self.file.set_len(self.len);
        }
        written?;
        self.len += self.buf.len() as u64;
        Ok(())
    }

    /// Bytes in the current segment.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Closes the current segment and starts the next; returns the closed
    /// one's number.
    pub fn rotate(&mut self) -> Result<u64> {
        let closed = self.seq;
        self.file = Self::create(&self.dir, closed + 1)?;
        self.seq = closed + 1;
        self.len = 0;
        Ok(closed)
    }

    /// The current segment's number.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EventKind, KeyValue};

    fn plan(rev: Revision, key: &str, value: &str) -> Plan {
        let kv = KeyValue {
            key: key.into(),
            value: value.as_bytes().to_vec(),
            create_revision: rev,
            mod_revision: rev,
            version: 1,
            lease: None,
        };
        Plan {
            effects: vec![Effect::Commit {
                rev,
                events: vec![WatchEvent {
                    kind: EventKind::Put,
                    kv: kv.clone(),
                    prev: None,
                }],
            }],
            kvs: [(key.to_string(), Some(kv))].into_iter().collect(),
            leases: [(7, Some(Duration::from_secs(3)))].into_iter().collect(),
            revision: rev,
            next_lease: 8,
            compacted: 1,
        }
    }

    #[test]
    fn crc_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn records_round_trip_across_segments_and_a_torn_tail_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path().join("s.redb.wal");
        let mut wal = Wal::open(&dir).unwrap();
        wal.append(&plan(1, "/a", "x")).unwrap();
        assert_eq!(wal.rotate().unwrap(), 1);
        wal.append(&plan(2, "/b", "y")).unwrap();
        wal.append(&plan(3, "/a", "z")).unwrap();
        let full = wal.len();
        drop(wal);
        let recs = read_all(&dir).unwrap();
        assert_eq!(recs.len(), 3);
        assert_eq!((recs[0].base, recs[0].revision), (0, 1));
        assert_eq!(recs[2].commits[0].1[0].kv.value, b"z");
        assert_eq!(recs[1].leases, vec![(7, Some(Duration::from_secs(3)))]);

        // Cut the last record short; then whole but with a flipped byte.
        let last = segment_path(&dir, 2);
        let whole = std::fs::read(&last).unwrap();
        assert_eq!(whole.len() as u64, full);
        std::fs::write(&last, &whole[..whole.len() - 3]).unwrap();
        assert_eq!(read_all(&dir).unwrap().len(), 2);
        let mut flipped = whole.clone();
        let n = flipped.len();
        flipped[n - 10] ^= 0xff;
        std::fs::write(&last, &flipped).unwrap();
        assert_eq!(read_all(&dir).unwrap().len(), 2);
        std::fs::write(&last, &whole).unwrap();
        assert_eq!(read_all(&dir).unwrap().len(), 3);

        // A new log starts after the existing segments; removal by number.
        let wal = Wal::open(&dir).unwrap();
        assert_eq!(wal.seq, 3);
        remove_through(&dir, 2).unwrap();
        assert_eq!(segments(&dir).unwrap().len(), 1);
    }
}
