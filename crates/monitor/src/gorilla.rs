//! Gorilla chunk codec (Pelkonen et al., "Gorilla: A Fast, Scalable, In-Memory Time Series
//! Database", VLDB 2015, §4.1).
//!
//! Layout of one chunk's bit stream:
//! - first sample: timestamp as 64 raw bits, value as 64 raw bits;
//! - every later sample: the timestamp's delta-of-delta (the first delta is taken against a
//!   previous delta of 0), then the value XOR-ed with the previous value.
//!
//! Delta-of-delta buckets are the paper's: `0` → `'0'`; `[-63, 64]` → `'10'` + 7 bits;
//! `[-255, 256]` → `'110'` + 9 bits; `[-2047, 2048]` → `'1110'` + 12 bits. The paper's last
//! bucket is `'1111'` + 32 bits for second-resolution timestamps; ours are milliseconds and
//! must round-trip for *any* irregular `i64` sequence, so the escape carries 64 bits
//! (wrapping arithmetic makes every delta representable).
//!
//! Values follow the paper exactly: XOR 0 → `'0'`; else `'1'` then either `'0'` + the
//! meaningful bits when they fit inside the previous leading/trailing-zero window, or `'1'` +
//! 5 bits of leading zeros (capped at 31) + 6 bits of meaningful length (64 stored as 0) +
//! the meaningful bits. Values are handled as raw `u64` bit patterns, so NaN payloads,
//! infinities and negative zero round-trip exactly.
//!
//! The sample count is kept beside the stream (not as an end marker), so a reader knows
//! where to stop. Timestamps inside a chunk must strictly increase: an append with a
//! timestamp ≤ the last one is rejected with [`OutOfOrder`] and leaves the chunk unchanged.

use crate::bits::{BitReader, BitWriter};

/// One sample: timestamp in milliseconds since the Unix epoch, and value.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sample {
    /// Milliseconds since the Unix epoch.
    pub t: i64,
    /// The value.
    pub v: f64,
}

impl Sample {
    /// A sample at `t` ms with value `v`.
    pub fn new(t: i64, v: f64) -> Self {
        Self { t, v }
    }

    /// Bitwise equality (NaN payloads and the sign of zero included).
    pub fn same_bits(&self, other: &Sample) -> bool {
        self.t == other.t && self.v.to_bits() == other.v.to_bits()
    }
}

/// A sample was not newer than the last sample of its chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("out-of-order sample: timestamp {got} is not after the chunk's last timestamp {last}")]
pub struct OutOfOrder {
    /// Last timestamp accepted into the chunk.
    pub last: i64,
    /// The rejected timestamp.
    pub got: i64,
}

/// Paper buckets for the delta-of-delta: (prefix bits, prefix length, payload bits).
const DOD_BUCKETS: [(u64, u32, u32); 3] = [(0b10, 2, 7), (0b110, 3, 9), (0b1110, 4, 12)];

/// Encoder of one open (head) chunk.
#[derive(Debug, Clone, Default)]
pub struct ChunkEncoder {
    w: BitWriter,
    count: u32,
    first_t: i64,
    prev_t: i64,
    prev_delta: i64,
    prev_v: u64,
    /// Leading/trailing zeros of the current XOR window; `None` until one is written.
    window: Option<(u32, u32)>,
}

impl ChunkEncoder {
    /// An empty chunk.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of samples appended.
    pub fn len(&self) -> u32 {
        self.count
    }

    /// True when no sample was appended.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Timestamp of the last sample, if any.
    pub fn last_t(&self) -> Option<i64> {
        (self.count > 0).then_some(self.prev_t)
    }

    /// Size of the encoded stream so far, in bits.
    pub fn len_bits(&self) -> u64 {
        self.w.len_bits()
    }

    /// Appends a sample; rejects (without change) a timestamp not after the last one.
    #[inline]
    pub fn append(&mut self, t: i64, v: f64) -> Result<(), OutOfOrder> {
        let bits = v.to_bits();
        if self.count == 0 {
            self.w.write_bits(t as u64, 64);
            self.w.write_bits(bits, 64);
            self.first_t = t;
        } else {
            if t <= self.prev_t {
                return Err(OutOfOrder {
                    last: self.prev_t,
                    got: t,
                });
            }
            let delta = t.wrapping_sub(self.prev_t);
            let dod = delta.wrapping_sub(self.prev_delta);
            self.write_dod(dod);
            self.write_value(bits);
            self.prev_delta = delta;
        }
        self.prev_t = t;
        self.prev_v = bits;
        self.count += 1;
        Ok(())
    }

    #[inline]
    fn write_dod(&mut self, dod: i64) {
        if dod == 0 {
            self.w.write_bit(false);
            return;
        }
        for (prefix, plen, n) in DOD_BUCKETS {
            let half = 1i64 << (n - 1);
            if dod >= -(half - 1) && dod <= half {
                self.w.write_bits(prefix, plen);
                // Offset into [0, 2^n - 1], as in the paper's asymmetric ranges.
                self.w.write_bits((dod + half - 1) as u64, n);
                return;
            }
        }
        self.w.write_bits(0b1111, 4);
        self.w.write_bits(dod as u64, 64);
    }

    #[inline]
    fn write_value(&mut self, bits: u64) {
        let xor = bits ^ self.prev_v;
        if xor == 0 {
            self.w.write_bit(false);
            return;
        }
        let lz = xor.leading_zeros().min(31);
        let tz = xor.trailing_zeros();
        match self.window {
            Some((plz, ptz)) if lz >= plz && tz >= ptz => {
                // '10': reuse the previous window.
                self.w.write_bits(0b10, 2);
                self.w.write_bits(xor >> ptz, 64 - plz - ptz);
            }
            _ => {
                let sig = 64 - lz - tz;
                self.w.write_bits(0b11, 2);
                self.w.write_bits(u64::from(lz), 5);
                // 64 meaningful bits cannot be stored in 6 bits; 0 is impossible, so it means 64.
                self.w.write_bits(u64::from(sig & 63), 6);
                self.w.write_bits(xor >> tz, sig);
                self.window = Some((lz, tz));
            }
        }
    }

    /// A sealed copy of the chunk so far (the encoder stays open).
    pub fn to_chunk(&self) -> Chunk {
        Chunk {
            count: self.count,
            first_t: self.first_t,
            last_t: self.prev_t,
            data: self.w.to_bytes().into_boxed_slice(),
        }
    }
}

/// An immutable, encoded chunk of samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    count: u32,
    first_t: i64,
    last_t: i64,
    data: Box<[u8]>,
}

impl Chunk {
    /// Rebuilds a chunk from its persisted parts. The data is trusted to come from
    /// [`Chunk::data`]; a corrupt stream only makes iteration stop early.
    pub fn from_parts(count: u32, first_t: i64, last_t: i64, data: Box<[u8]>) -> Self {
        Self {
            count,
            first_t,
            last_t,
            data,
        }
    }

    /// Encodes samples into a chunk.
    pub fn encode(samples: &[Sample]) -> Result<Self, OutOfOrder> {
        let mut e = ChunkEncoder::new();
        for s in samples {
            e.append(s.t, s.v)?;
        }
        Ok(e.to_chunk())
    }

    /// Number of samples.
    pub fn len(&self) -> u32 {
        self.count
    }

    /// True when the chunk holds no sample.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// First timestamp (meaningless when empty).
    pub fn first_t(&self) -> i64 {
        self.first_t
    }

    /// Last timestamp (meaningless when empty).
    pub fn last_t(&self) -> i64 {
        self.last_t
    }

    /// The encoded bit stream.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Iterates the samples in timestamp order.
    pub fn iter(&self) -> ChunkIter<'_> {
        ChunkIter {
            r: BitReader::new(&self.data),
            left: self.count,
            started: false,
            t: 0,
            delta: 0,
            v: 0,
            lz: 0,
            tz: 0,
            corrupt: false,
        }
    }

    /// Decodes every sample.
    pub fn decode(&self) -> Vec<Sample> {
        self.iter().collect()
    }
}

impl<'a> IntoIterator for &'a Chunk {
    type Item = Sample;
    type IntoIter = ChunkIter<'a>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Streaming decoder of a [`Chunk`].
#[derive(Debug, Clone)]
pub struct ChunkIter<'a> {
    r: BitReader<'a>,
    left: u32,
    started: bool,
    t: i64,
    delta: i64,
    v: u64,
    lz: u32,
    tz: u32,
    corrupt: bool,
}

impl ChunkIter<'_> {
    /// True if decoding stopped because the stream was shorter than its sample count
    /// (only possible for a chunk built from corrupt parts).
    pub fn hit_corruption(&self) -> bool {
        self.corrupt
    }

    fn step(&mut self) -> Result<Sample, crate::bits::EndOfStream> {
        if !self.started {
            self.t = self.r.read_bits(64)? as i64;
            self.v = self.r.read_bits(64)?;
            self.started = true;
            return Ok(Sample::new(self.t, f64::from_bits(self.v)));
        }
        let dod = match self.r.read_unary(4)? {
            0 => 0,
            k @ 1..=3 => {
                let n = DOD_BUCKETS[(k - 1) as usize].2;
                let half = 1i64 << (n - 1);
                self.r.read_bits(n)? as i64 - (half - 1)
            }
            _ => self.r.read_bits(64)? as i64,
        };
        self.delta = self.delta.wrapping_add(dod);
        self.t = self.t.wrapping_add(self.delta);
        // '0' same value, '10' reuse the window, '11' new window.
        if self.r.read_bit()? {
            if self.r.read_bit()? {
                self.lz = self.r.read_bits(5)? as u32;
                let mut sig = self.r.read_bits(6)? as u32;
                if sig == 0 {
                    sig = 64;
                }
                if self.lz + sig > 64 {
                    return Err(crate::bits::EndOfStream);
                }
                self.tz = 64 - self.lz - sig;
            }
            let sig = 64 - self.lz - self.tz;
            let x = self.r.read_bits(sig)?;
            self.v ^= if self.tz >= 64 { 0 } else { x << self.tz };
        }
        Ok(Sample::new(self.t, f64::from_bits(self.v)))
    }
}

impl Iterator for ChunkIter<'_> {
    type Item = Sample;

    #[inline]
    fn next(&mut self) -> Option<Sample> {
        if self.left == 0 {
            return None;
        }
        match self.step() {
            Ok(s) => {
                self.left -= 1;
                Some(s)
            }
            Err(_) => {
                self.corrupt = true;
                self.left = 0;
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits_of(samples: &[(i64, f64)]) -> (Vec<u8>, u64) {
        let mut e = ChunkEncoder::new();
        for &(t, v) in samples {
            e.append(t, v).unwrap();
        }
        (e.to_chunk().data().to_vec(), e.len_bits())
    }

    /// Known answer: the bit-exact stream for a short series, worked out by hand from the
    /// paper's rules.
    #[test]
    fn known_answer_stream() {
        // t: 1000, 2000 (delta 1000, dod 1000 → '1110' + 12 bits of 1000+2047),
        //    3000 (dod 0 → '0'), 3001 (delta 1, dod -999 → '1110' + 12 bits of -999+2047).
        // v: 1.0, 1.0 ('0'), 2.0 (0x4000.. ^ 0x3FF0.. = 0x7FF0_0000_0000_0000:
        //    lz 1, tz 52, sig 11 → '11' 00001 001011 + eleven 1s), 2.0 ('0').
        let (bytes, nbits) = bits_of(&[(1000, 1.0), (2000, 1.0), (3000, 2.0), (3001, 2.0)]);
        let mut w = BitWriter::new();
        w.write_bits(1000, 64);
        w.write_bits(1.0f64.to_bits(), 64);
        w.write_bits(0b1110, 4);
        w.write_bits(1000 + 2047, 12);
        w.write_bit(false);
        w.write_bit(false);
        w.write_bits(0b11, 2);
        w.write_bits(1, 5);
        w.write_bits(11, 6);
        w.write_bits(0x7FF, 11);
        w.write_bits(0b1110, 4);
        w.write_bits((-999i64 + 2047) as u64, 12);
        w.write_bit(false);
        assert_eq!(nbits, 128 + 17 + 25 + 17);
        assert_eq!(bytes, w.to_bytes());
    }

    /// A perfectly regular, constant series costs 2 bits per sample after the first.
    #[test]
    fn regular_constant_series_costs_two_bits_per_sample() {
        let samples: Vec<(i64, f64)> = (0..721).map(|i| (i * 10_000, 42.0)).collect();
        let (_, nbits) = bits_of(&samples);
        // first sample 128 bits; second: dod = 10000 → escape 4 + 64 bits, value '0';
        // the remaining 719: '0' + '0'.
        assert_eq!(nbits, 128 + 69 + 719 * 2);
    }

    #[test]
    fn every_dod_bucket_and_special_values_round_trip() {
        let ts = [
            -5i64,
            0,
            1,
            65,
            130,
            500,
            2600,
            2601,
            i64::MAX / 2,
            i64::MAX - 1,
            i64::MAX,
        ];
        let vs = [
            0.0,
            -0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::from_bits(0x7FF8_0000_0000_0001),
            f64::from_bits(0xFFF0_0000_0000_0BAD),
            f64::MIN_POSITIVE,
            5e-324,
            f64::MAX,
            1.5,
            1.5,
        ];
        let samples: Vec<Sample> = ts.iter().zip(vs).map(|(&t, v)| Sample::new(t, v)).collect();
        let c = Chunk::encode(&samples).unwrap();
        let back = c.decode();
        assert_eq!(back.len(), samples.len());
        for (a, b) in samples.iter().zip(&back) {
            assert!(a.same_bits(b), "{a:?} != {b:?}");
        }
        assert_eq!(c.first_t(), -5);
        assert_eq!(c.last_t(), i64::MAX);
    }

    #[test]
    fn out_of_order_and_duplicate_are_rejected_without_change() {
        let mut e = ChunkEncoder::new();
        e.append(100, 1.0).unwrap();
        e.append(200, 2.0).unwrap();
        let before = e.to_chunk();
        assert_eq!(
            e.append(150, 3.0),
            Err(OutOfOrder {
                last: 200,
                got: 150
            })
        );
        assert!(e.append(200, 3.0).is_err());
        assert_eq!(e.to_chunk(), before);
        e.append(201, 3.0).unwrap();
        assert_eq!(e.to_chunk().decode().len(), 3);
    }

    #[test]
    fn corrupt_chunk_stops_early_without_panic() {
        let samples: Vec<Sample> = (0..100)
            .map(|i| Sample::new(i * 7, i as f64 * 0.1))
            .collect();
        let c = Chunk::encode(&samples).unwrap();
        let short = Chunk::from_parts(100, 0, 693, c.data()[..c.data().len() / 2].into());
        let mut it = short.iter();
        let n = it.by_ref().count();
        assert!(n < 100);
        assert!(it.hit_corruption());
    }
}
