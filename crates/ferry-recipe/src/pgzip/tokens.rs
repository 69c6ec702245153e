//! The token list klauspost's matchers fill: literals and matches packed in
//! one `u32` each, with running histograms of literal, length-code and
//! offset-code use, and the entropy estimate the block writer uses to decide
//! whether a fresh Huffman table beats reusing the previous one.

/// Largest chunk of input the fast levels compress at once, and the most a
/// stored block can hold.
pub(super) const MAX_STORE_BLOCK_SIZE: usize = 65535;

/// Tokens with this bit set are matches; below it, literals (0..=255) and
/// the end-of-block marker (256).
pub(super) const MATCH_TYPE: u32 = 1 << 30;
/// A match token keeps `length - 3` from this bit up.
pub(super) const LENGTH_SHIFT: u32 = 22;
/// The end-of-block symbol, stored as a token of its own.
pub(super) const END_BLOCK: u32 = 256;

/// Extra bits of length codes 257.. (indexed by code - 257).
pub(super) const LENGTH_EXTRA_BITS: [u8; 32] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0, 0, 0, 0,
];

/// `length - 3` at which each length code starts.
pub(super) const LENGTH_BASE: [u8; 29] = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 112, 128,
    160, 192, 224, 255,
];

/// Extra bits of each offset code.
pub(super) const OFFSET_EXTRA_BITS: [u8; 32] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13, 14, 14,
];

/// `distance - 1` at which each offset code starts.
pub(super) const OFFSET_BASE: [u32; 30] = [
    0x0000, 0x0001, 0x0002, 0x0003, 0x0004, 0x0006, 0x0008, 0x000c, 0x0010, 0x0018, 0x0020, 0x0030,
    0x0040, 0x0060, 0x0080, 0x00c0, 0x0100, 0x0180, 0x0200, 0x0300, 0x0400, 0x0600, 0x0800, 0x0c00,
    0x1000, 0x1800, 0x2000, 0x3000, 0x4000, 0x6000,
];

/// Length code (0-based, i.e. symbol - 257) of `length - 3`.
pub(super) static LENGTH_CODES: [u8; 256] = length_codes();

/// Offset code of `distance - 1` below 256.
static OFFSET_CODES: [u8; 256] = offset_codes();

const fn length_codes() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut code = 0;
    let mut x = 0;
    while x < 256 {
        while code + 1 < LENGTH_BASE.len() && LENGTH_BASE[code + 1] as usize <= x {
            code += 1;
        }
        t[x] = code as u8;
        x += 1;
    }
    t
}

const fn offset_codes() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut code = 0;
    let mut x = 0;
    while x < 256 {
        while code + 1 < OFFSET_BASE.len() && OFFSET_BASE[code + 1] as usize <= x {
            code += 1;
        }
        t[x] = code as u8;
        x += 1;
    }
    t
}

/// Offset code of `xoffset` (= distance - 1).
#[inline]
pub(super) fn offset_code(xoffset: u32) -> u32 {
    if xoffset < 256 {
        u32::from(OFFSET_CODES[xoffset as usize])
    } else {
        u32::from(OFFSET_CODES[((xoffset >> 7) & 255) as usize]) + 14
    }
}

/// Tokens of one chunk plus their histograms.
pub(super) struct Tokens {
    /// Packed tokens: literal byte, [`END_BLOCK`], or a match
    /// (`MATCH_TYPE | xlength << 22 | offset_code << 16 | xoffset`).
    pub(super) toks: Vec<u32>,
    pub(super) lit_hist: [u16; 256],
    /// Index 0 counts end-of-block markers, 1.. length codes 257...
    pub(super) extra_hist: [u16; 32],
    pub(super) off_hist: [u16; 32],
}

impl Tokens {
    pub(super) fn new() -> Self {
        Tokens {
            toks: Vec::with_capacity(MAX_STORE_BLOCK_SIZE + 1),
            lit_hist: [0; 256],
            extra_hist: [0; 32],
            off_hist: [0; 32],
        }
    }

    #[inline]
    pub(super) fn len(&self) -> usize {
        self.toks.len()
    }

    pub(super) fn reset(&mut self) {
        if self.toks.is_empty() {
            return;
        }
        self.toks.clear();
        self.lit_hist = [0; 256];
        self.extra_hist = [0; 32];
        self.off_hist = [0; 32];
    }

    #[inline]
    pub(super) fn add_literal(&mut self, lit: u8) {
        self.toks.push(u32::from(lit));
        self.lit_hist[lit as usize] = self.lit_hist[lit as usize].wrapping_add(1);
    }

    #[inline]
    pub(super) fn add_literals(&mut self, lits: &[u8]) {
        for &b in lits {
            self.add_literal(b);
        }
    }

    /// One match of `xlength` = length - 3 (at most 255) and `xoffset` =
    /// distance - 1.
    #[inline]
    pub(super) fn add_match(&mut self, xlength: u32, xoffset: u32) {
        let oc = offset_code(xoffset);
        self.extra_hist[usize::from(LENGTH_CODES[xlength as usize]) + 1] += 1;
        self.off_hist[(oc & 31) as usize] += 1;
        self.toks
            .push(MATCH_TYPE | xlength << LENGTH_SHIFT | oc << 16 | xoffset);
    }

    /// A match of any `length` (not reduced by 3) split into pieces of at
    /// most 258, never leaving a piece shorter than 3.
    #[inline]
    pub(super) fn add_match_long(&mut self, mut length: i32, xoffset: u32) {
        let oc = offset_code(xoffset);
        let packed_offset = oc << 16 | xoffset;
        while length > 0 {
            let mut xl = length;
            if xl > 258 {
                xl = if xl > 258 + 3 { 258 } else { 258 - 3 };
            }
            length -= xl;
            let xl = (xl - 3) as u32;
            self.extra_hist[usize::from(LENGTH_CODES[xl as usize]) + 1] += 1;
            self.off_hist[(oc & 31) as usize] += 1;
            self.toks
                .push(MATCH_TYPE | xl << LENGTH_SHIFT | packed_offset);
        }
    }

    pub(super) fn add_eob(&mut self) {
        self.toks.push(END_BLOCK);
        self.extra_hist[0] += 1;
    }

    /// Estimated size in bits of an optimal coding of these tokens: rounded
    /// Shannon entropy (single-precision, with a polynomial log2) plus the
    /// extra bits of lengths and offsets.
    pub(super) fn estimated_bits(&self) -> usize {
        let mut shannon = 0f32;
        let mut bits = 0usize;
        let mut n_matches = 0usize;
        let total = self.toks.len();
        if total > 0 {
            let inv_total = 1.0f32 / total as f32;
            for &v in &self.lit_hist {
                if v > 0 {
                    let n = f32::from(v);
                    shannon += at_least_one(-fast_log2(n * inv_total)) * n;
                }
            }
            // End of block.
            shannon += 15.0;
            for (i, &v) in self.extra_hist[1..30].iter().enumerate() {
                if v > 0 {
                    let n = f32::from(v);
                    shannon += at_least_one(-fast_log2(n * inv_total)) * n;
                    bits += usize::from(LENGTH_EXTRA_BITS[i & 31]) * usize::from(v);
                    n_matches += usize::from(v);
                }
            }
        }
        if n_matches > 0 {
            let inv_total = 1.0f32 / n_matches as f32;
            for (i, &v) in self.off_hist[..30].iter().enumerate() {
                if v > 0 {
                    let n = f32::from(v);
                    shannon += at_least_one(-fast_log2(n * inv_total)) * n;
                    bits += usize::from(OFFSET_EXTRA_BITS[i & 31]) * usize::from(v);
                }
            }
        }
        shannon as usize + bits
    }
}

/// The approximate log2 klauspost uses: exponent from the float's bits, a
/// quadratic in the mantissa.
#[allow(clippy::excessive_precision)]
fn fast_log2(val: f32) -> f32 {
    let mut ux = val.to_bits() as i32;
    let mut log2 = (((ux >> 23) & 255) - 128) as f32;
    ux &= -0x7f80_0001;
    ux += 127 << 23;
    let uval = f32::from_bits(ux as u32);
    log2 += ((-0.34484843f32) * uval + 2.02466578f32) * uval - 0.67487759f32;
    log2
}

fn at_least_one(v: f32) -> f32 {
    v.clamp(1.0, 15.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_tables() {
        assert_eq!(LENGTH_CODES[0], 0);
        assert_eq!(LENGTH_CODES[8], 8);
        assert_eq!(LENGTH_CODES[9], 8);
        assert_eq!(LENGTH_CODES[254], 27);
        assert_eq!(LENGTH_CODES[255], 28);
        assert_eq!(offset_code(0), 0);
        assert_eq!(offset_code(4), 4);
        assert_eq!(offset_code(5), 4);
        assert_eq!(offset_code(255), 15);
        assert_eq!(offset_code(256), 16);
        assert_eq!(offset_code(32767), 29);
        assert_eq!(offset_code(0x6000), 29);
        assert_eq!(offset_code(0x5fff), 28);
    }
}
