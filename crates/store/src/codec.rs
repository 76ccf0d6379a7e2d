//! Binary encoding of key-values and event batches on disk.
//!
//! A small fixed layout (little-endian integers, length-prefixed bytes)
//! rather than JSON: values are opaque bytes and the writer encodes a lot of
//! them during a burst.

use crate::{EventKind, KeyValue, Result, StoreError, WatchEvent};

/// Encodes everything of a key-value but its key (the table key holds it).
pub(crate) fn encode_kv(kv: &KeyValue, out: &mut Vec<u8>) {
    out.extend_from_slice(&kv.create_revision.to_le_bytes());
    out.extend_from_slice(&kv.mod_revision.to_le_bytes());
    out.extend_from_slice(&kv.version.to_le_bytes());
    out.extend_from_slice(&kv.lease.unwrap_or(0).to_le_bytes());
    out.extend_from_slice(&(kv.value.len() as u64).to_le_bytes());
    out.extend_from_slice(&kv.value);
}

/// Decodes what [`encode_kv`] wrote.
pub(crate) fn decode_kv(key: &str, bytes: &[u8]) -> Result<KeyValue> {
    let mut r = Reader { b: bytes, at: 0 };
    let kv = r.kv(key.to_string())?;
    r.end()?;
    Ok(kv)
}

/// Encodes the events of one revision.
pub(crate) fn encode_events(events: &[WatchEvent]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 * events.len());
    out.extend_from_slice(&(events.len() as u64).to_le_bytes());
    for ev in events {
        out.push(match ev.kind {
            EventKind::Put => 0,
            EventKind::Delete => 1,
        });
        out.extend_from_slice(&(ev.kv.key.len() as u64).to_le_bytes());
        out.extend_from_slice(ev.kv.key.as_bytes());
        encode_kv(&ev.kv, &mut out);
        match &ev.prev {
            None => out.push(0),
            Some(p) => {
                out.push(1);
                encode_kv(p, &mut out);
            }
        }
    }
    out
}

/// Decodes what [`encode_events`] wrote.
pub(crate) fn decode_events(bytes: &[u8]) -> Result<Vec<WatchEvent>> {
    let mut r = Reader { b: bytes, at: 0 };
    let n = r.u64()?;
    let mut events = Vec::with_capacity(n.min(1 << 16) as usize);
    for _ in 0..n {
        let kind = match r.u8()? {
            0 => EventKind::Put,
            1 => EventKind::Delete,
            k => return Err(corrupt(format!("event kind {k}"))),
        };
        let klen = r.u64()? as usize;
        let key = String::from_utf8(r.bytes(klen)?.to_vec())
            .map_err(|_| corrupt("event key is not UTF-8".into()))?;
        let kv = r.kv(key.clone())?;
        let prev = match r.u8()? {
            0 => None,
            1 => Some(r.kv(key)?),
            f => return Err(corrupt(format!("prev flag {f}"))),
        };
        events.push(WatchEvent { kind, kv, prev });
    }
    r.end()?;
    Ok(events)
}

fn corrupt(what: String) -> StoreError {
    StoreError::Backend(format!("corrupt store record: {what}"))
}

/// Reads the fixed layout back.
pub(crate) struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(b: &'a [u8]) -> Self {
        Reader { b, at: 0 }
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or_else(|| corrupt("truncated".into()))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }

    pub(crate) fn u8(&mut self) -> Result<u8> {
        Ok(self.bytes(1)?[0])
    }

    pub(crate) fn u64(&mut self) -> Result<u64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.bytes(8)?);
        Ok(u64::from_le_bytes(a))
    }

    fn kv(&mut self, key: String) -> Result<KeyValue> {
        let create_revision = self.u64()?;
        let mod_revision = self.u64()?;
        let version = self.u64()?;
        let lease = self.u64()?;
        let vlen = self.u64()? as usize;
        let value = self.bytes(vlen)?.to_vec();
        Ok(KeyValue {
            key,
            value,
            create_revision,
            mod_revision,
            version,
            lease: (lease != 0).then_some(lease),
        })
    }

    pub(crate) fn end(&self) -> Result<()> {
        if self.at == self.b.len() {
            Ok(())
        } else {
            Err(corrupt("trailing bytes".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, v: &[u8], lease: Option<u64>) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: v.to_vec(),
            create_revision: 3,
            mod_revision: 7,
            version: 2,
            lease,
        }
    }

    #[test]
    fn kv_round_trip() {
        let k = kv("/a", b"hello", Some(9));
        let mut b = Vec::new();
        encode_kv(&k, &mut b);
        assert_eq!(decode_kv("/a", &b).unwrap(), k);
        assert!(decode_kv("/a", &b[..b.len() - 1]).is_err());
    }

    #[test]
    fn events_round_trip() {
        let evs = vec![
            WatchEvent {
                kind: EventKind::Put,
                kv: kv("/a", b"x", None),
                prev: Some(kv("/a", b"", Some(1))),
            },
            WatchEvent {
                kind: EventKind::Delete,
                kv: kv("/b", b"", None),
                prev: None,
            },
        ];
        let b = encode_events(&evs);
        assert_eq!(decode_events(&b).unwrap(), evs);
        assert!(decode_events(&b[..b.len() - 2]).is_err());
    }
}
