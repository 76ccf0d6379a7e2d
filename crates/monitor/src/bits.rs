//! Bit-granular writer and reader used by the Gorilla chunk codec.
//!
//! Bits are written most-significant first. The writer keeps up to 64 pending bits in a
//! register and spills whole 64-bit words, so the hot path is a shift and an or.

/// Shift left that yields 0 for a shift of 64 (plain `<<` would overflow).
#[inline]
fn shl(x: u64, n: u32) -> u64 {
    if n >= 64 {
        0
    } else {
        x << n
    }
}

/// Mask of the low `n` bits (`n` ≤ 64).
#[inline]
fn low_mask(n: u32) -> u64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

/// Append-only bit stream.
#[derive(Debug, Clone, Default)]
pub struct BitWriter {
    bytes: Vec<u8>,
    /// Pending bits, right-aligned: the low `filled` bits are valid.
    acc: u64,
    filled: u32,
}

impl BitWriter {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of bits written so far.
    pub fn len_bits(&self) -> u64 {
        self.bytes.len() as u64 * 8 + u64::from(self.filled)
    }

    /// Writes one bit.
    #[inline]
    pub fn write_bit(&mut self, bit: bool) {
        self.write_bits(u64::from(bit), 1);
    }

    /// Writes the low `n` bits of `value` (`n` ≤ 64), most significant first.
    #[inline]
    pub fn write_bits(&mut self, value: u64, n: u32) {
        debug_assert!(n <= 64);
        if n == 0 {
            return;
        }
        let v = value & low_mask(n);
        let free = 64 - self.filled;
        if n < free {
            self.acc = (self.acc << n) | v;
            self.filled += n;
        } else {
            // Fill the register with the top `free` bits of v, spill it, keep the rest.
            let rest = n - free;
            let word = shl(self.acc, free) | (v >> rest);
            self.bytes.extend_from_slice(&word.to_be_bytes());
            self.acc = v & low_mask(rest);
            self.filled = rest;
        }
    }

    /// The written bits as bytes, the last byte zero-padded; the writer stays usable.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.bytes.len() + 8);
        out.extend_from_slice(&self.bytes);
        if self.filled > 0 {
            let word = self.acc << (64 - self.filled);
            let n = self.filled.div_ceil(8) as usize;
            out.extend_from_slice(&word.to_be_bytes()[..n]);
        }
        out
    }

    /// Heap bytes currently held (for memory accounting).
    pub fn capacity_bytes(&self) -> usize {
        self.bytes.capacity()
    }
}

/// Reader over bytes produced by [`BitWriter::to_bytes`]. Keeps a 64-bit look-ahead
/// register refilled a word at a time, so most reads are a shift.
#[derive(Debug, Clone)]
pub struct BitReader<'a> {
    data: &'a [u8],
    /// Next byte of `data` not yet loaded into `buf`.
    next: usize,
    /// Look-ahead bits, left-aligned; the top `avail` bits are valid, the rest are either
    /// zero or the true following bits (so OR-ing a refill over them is harmless).
    buf: u64,
    avail: u32,
}

/// The stream ended before the requested bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndOfStream;

impl<'a> BitReader<'a> {
    /// A reader positioned at the first bit of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            next: 0,
            buf: 0,
            avail: 0,
        }
    }

    /// Bits left to read (including the zero padding of the last byte).
    pub fn remaining_bits(&self) -> u64 {
        u64::from(self.avail) + (self.data.len() - self.next) as u64 * 8
    }

    /// Tops the register up to at least 57 valid bits (fewer at the end of the data).
    #[inline]
    fn refill(&mut self) {
        if let Some(chunk) = self.data.get(self.next..self.next + 8) {
            let w = u64::from_be_bytes(chunk.try_into().expect("8 bytes"));
            self.buf |= w >> self.avail;
            let take = (63 - self.avail) / 8;
            self.next += take as usize;
            self.avail += take * 8;
        } else {
            while self.avail <= 56 && self.next < self.data.len() {
                self.buf |= u64::from(self.data[self.next]) << (56 - self.avail);
                self.next += 1;
                self.avail += 8;
            }
        }
    }

    /// Reads up to 56 bits at once.
    #[inline]
    fn read_short(&mut self, n: u32) -> Result<u64, EndOfStream> {
        debug_assert!(n <= 56 && n > 0);
        if self.avail < n {
            self.refill();
            if self.avail < n {
                return Err(EndOfStream);
            }
        }
        let v = self.buf >> (64 - n);
        self.buf <<= n;
        self.avail -= n;
        Ok(v)
    }

    /// Reads `n` bits (`n` ≤ 64) as the low bits of the result.
    #[inline]
    pub fn read_bits(&mut self, n: u32) -> Result<u64, EndOfStream> {
        debug_assert!(n <= 64);
        match n {
            0 => Ok(0),
            1..=56 => self.read_short(n),
            _ => {
                let hi = self.read_short(32)?;
                let lo = self.read_short(n - 32)?;
                Ok((hi << (n - 32)) | lo)
            }
        }
    }

    /// Reads one bit.
    #[inline]
    pub fn read_bit(&mut self) -> Result<bool, EndOfStream> {
        Ok(self.read_short(1)? == 1)
    }

    /// Counts up to `max` (≤ 8) consecutive one bits, consuming them and the terminating
    /// zero (if `max` ones were read, no terminator is consumed). Used for the prefix codes.
    #[inline]
    pub fn read_unary(&mut self, max: u32) -> Result<u32, EndOfStream> {
        debug_assert!(max <= 8);
        if self.avail <= max {
            self.refill();
        }
        if self.avail > max {
            let k = self.buf.leading_ones().min(max);
            let used = if k < max { k + 1 } else { k };
            self.buf <<= used;
            self.avail -= used;
            return Ok(k);
        }
        // Near the end of the stream: bit by bit.
        let mut n = 0;
        while n < max {
            if !self.read_bit()? {
                return Ok(n);
            }
            n += 1;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixed_widths_round_trip() {
        let items: Vec<(u64, u32)> = (0..2000u64)
            .map(|i| {
                let n = (i * 7 % 64 + 1) as u32;
                (i.wrapping_mul(0x9E37_79B9_7F4A_7C15), n)
            })
            .collect();
        let mut w = BitWriter::new();
        for &(v, n) in &items {
            w.write_bits(v, n);
        }
        let total: u64 = items.iter().map(|&(_, n)| u64::from(n)).sum();
        assert_eq!(w.len_bits(), total);
        let bytes = w.to_bytes();
        assert_eq!(bytes.len() as u64, total.div_ceil(8));
        let mut r = BitReader::new(&bytes);
        for &(v, n) in &items {
            assert_eq!(r.read_bits(n).unwrap(), v & low_mask(n), "width {n}");
        }
        assert!(r.remaining_bits() < 8);
    }

    #[test]
    fn unary_prefixes_near_and_far_from_the_end() {
        let mut w = BitWriter::new();
        for k in 0..4u64 {
            // k ones then a zero
            w.write_bits(((1u64 << k) - 1) << 1, k as u32 + 1);
        }
        w.write_bits(0b1111, 4);
        w.write_bits(0b1110, 4);
        let bytes = w.to_bytes();
        let mut r = BitReader::new(&bytes);
        for k in 0..4 {
            assert_eq!(r.read_unary(4).unwrap(), k);
        }
        assert_eq!(r.read_unary(4).unwrap(), 4);
        assert_eq!(r.read_unary(4).unwrap(), 3);
    }

    #[test]
    fn known_bit_pattern() {
        let mut w = BitWriter::new();
        w.write_bits(0b101, 3);
        w.write_bit(true);
        w.write_bits(0, 4);
        w.write_bits(0xFF, 8);
        w.write_bits(0b1, 2);
        assert_eq!(w.to_bytes(), vec![0b1011_0000, 0xFF, 0b0100_0000]);
    }

    #[test]
    fn reading_past_the_end_fails() {
        let bytes = [0xAB];
        let mut r = BitReader::new(&bytes);
        assert_eq!(r.read_bits(8).unwrap(), 0xAB);
        assert_eq!(r.read_bit(), Err(EndOfStream));
    }
}
