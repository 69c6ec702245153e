//! DEFLATE's bit packing: codes and extra bits go in least significant bit
//! first, and a byte boundary is reached by padding with zero bits.
//!
//! Go buffers bits in 48-bit groups and bytes in 240-byte batches; neither
//! shows in the stream, so this writer keeps a plain 64-bit accumulator and
//! spills whole 32-bit words straight into the output vector.

/// An append-only bit stream.
pub(crate) struct BitWriter {
    out: Vec<u8>,
    bits: u64,
    nbits: u32,
}

impl BitWriter {
    pub(crate) fn new(capacity: usize) -> Self {
        BitWriter {
            out: Vec::with_capacity(capacity),
            bits: 0,
            nbits: 0,
        }
    }

    /// Appends the low `nb` (at most 16) bits of `value`.
    #[inline(always)]
    pub(crate) fn write_bits(&mut self, value: u32, nb: u32) {
        debug_assert!(nb <= 16 && u64::from(value) < 1u64 << nb.max(1));
        self.bits |= u64::from(value) << self.nbits;
        self.nbits += nb;
        if self.nbits >= 32 {
            self.out
                .extend_from_slice(&(self.bits as u32).to_le_bytes());
            self.bits >>= 32;
            self.nbits -= 32;
        }
    }

    /// Pads with zero bits to the next byte boundary and writes out what is
    /// pending.
    pub(crate) fn align(&mut self) {
        while self.nbits > 0 {
            self.out.push(self.bits as u8);
            self.bits >>= 8;
            self.nbits = self.nbits.saturating_sub(8);
        }
        self.bits = 0;
    }

    /// Appends raw bytes; the stream must be at a byte boundary.
    pub(crate) fn write_bytes(&mut self, bytes: &[u8]) {
        debug_assert_eq!(self.nbits % 8, 0, "raw bytes off a byte boundary");
        self.align();
        self.out.extend_from_slice(bytes);
    }

    /// The stream, padded to a whole byte.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        self.align();
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_lsb_first() {
        let mut w = BitWriter::new(0);
        w.write_bits(0b1, 1);
        w.write_bits(0b10, 2);
        w.write_bits(0xabcd, 16);
        w.write_bits(0xffff, 16);
        w.align();
        w.write_bytes(&[7]);
        let out = w.finish();
        let mut expect = 0b101u64 | (0xabcd << 3) | (0xffff << 19);
        let mut bytes = Vec::new();
        for _ in 0..5 {
            bytes.push(expect as u8);
            expect >>= 8;
        }
        bytes.push(7);
        assert_eq!(out, bytes);
    }
}
