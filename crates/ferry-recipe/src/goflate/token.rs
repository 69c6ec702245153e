//! The LZ77 token stream between the matchers and the block writer.
//!
//! Go packs each token into a `u32` and the block writer's statistics are
//! taken over that packing, so the same layout is kept here: a literal is
//! its byte value, a match has bit 30 set, the length minus 3 in bits
//! 22..30 and the distance minus 1 in bits 0..22. The end-of-block marker
//! is the literal 256.

/// One literal byte or one back-reference.
pub(crate) type Token = u32;

const MATCH_TYPE: u32 = 1 << 30;
const LENGTH_SHIFT: u32 = 22;
const OFFSET_MASK: u32 = (1 << LENGTH_SHIFT) - 1;

/// The shortest match the wire format has.
pub(crate) const BASE_MATCH_LENGTH: usize = 3;
/// The shortest match Go's hash-chain matcher emits.
pub(crate) const MIN_MATCH_LENGTH: usize = 4;
/// The longest match the wire format has.
pub(crate) const MAX_MATCH_LENGTH: usize = 258;
/// The farthest back a match may reach.
pub(crate) const MAX_MATCH_OFFSET: usize = 1 << 15;

/// A literal token.
#[inline]
pub(crate) fn literal(byte: u8) -> Token {
    u32::from(byte)
}

/// A match of `length` bytes (3..=258) starting `distance` bytes back
/// (1..=32768).
#[inline]
pub(crate) fn matched(length: usize, distance: usize) -> Token {
    debug_assert!((BASE_MATCH_LENGTH..=MAX_MATCH_LENGTH).contains(&length));
    debug_assert!((1..=MAX_MATCH_OFFSET).contains(&distance));
    MATCH_TYPE + (((length - BASE_MATCH_LENGTH) as u32) << LENGTH_SHIFT) + (distance as u32 - 1)
}

/// Whether `t` is a literal (or the end-of-block marker).
#[inline]
pub(crate) fn is_literal(t: Token) -> bool {
    t < MATCH_TYPE
}

/// Length minus 3 of a match token.
#[inline]
pub(crate) fn xlength(t: Token) -> u32 {
    (t - MATCH_TYPE) >> LENGTH_SHIFT
}

/// Distance minus 1 of a match token.
#[inline]
pub(crate) fn xoffset(t: Token) -> u32 {
    t & OFFSET_MASK
}

/// The first length symbol's index in the literal/length alphabet.
pub(crate) const LENGTH_CODES_START: usize = 257;
/// The end-of-block symbol.
pub(crate) const END_BLOCK_MARKER: usize = 256;
/// Symbols in the literal/length alphabet Go sizes its tables for.
pub(crate) const MAX_NUM_LIT: usize = 286;
/// Symbols in the distance alphabet.
pub(crate) const OFFSET_CODE_COUNT: usize = 30;

/// Smallest length minus 3 of each of the 29 length symbols.
pub(crate) const LENGTH_BASE: [u32; 29] = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 112, 128,
    160, 192, 224, 255,
];

/// Extra bits after each length symbol.
pub(crate) const LENGTH_EXTRA_BITS: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];

/// Smallest distance minus 1 of each of the 30 distance symbols.
pub(crate) const OFFSET_BASE: [u32; 30] = [
    0x000000, 0x000001, 0x000002, 0x000003, 0x000004, 0x000006, 0x000008, 0x00000c, 0x000010,
    0x000018, 0x000020, 0x000030, 0x000040, 0x000060, 0x000080, 0x0000c0, 0x000100, 0x000180,
    0x000200, 0x000300, 0x000400, 0x000600, 0x000800, 0x000c00, 0x001000, 0x001800, 0x002000,
    0x003000, 0x004000, 0x006000,
];

/// Extra bits after each distance symbol.
pub(crate) const OFFSET_EXTRA_BITS: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];

/// Length symbol (0-based) of each length minus 3. Length 258 has its own
/// symbol even though 227..=258 would fit the one before it.
static LENGTH_CODES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut x = 0;
    while x < 256 {
        let mut code = 0;
        while code + 1 < LENGTH_BASE.len() && LENGTH_BASE[code + 1] <= x as u32 {
            code += 1;
        }
        table[x] = code as u8;
        x += 1;
    }
    table
};

/// Distance symbol of each distance minus 1 below 256.
static OFFSET_CODES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut x = 0;
    while x < 256 {
        let mut code = 0;
        while code + 1 < OFFSET_BASE.len() && OFFSET_BASE[code + 1] <= x as u32 {
            code += 1;
        }
        table[x] = code as u8;
        x += 1;
    }
    table
};

/// Length symbol (0-based, add [`LENGTH_CODES_START`]) of a length minus 3.
#[inline]
pub(crate) fn length_code(xlength: u32) -> usize {
    usize::from(LENGTH_CODES[xlength as usize])
}

/// Distance symbol of a distance minus 1.
#[inline]
pub(crate) fn offset_code(xoffset: u32) -> usize {
    if xoffset < 256 {
        usize::from(OFFSET_CODES[xoffset as usize])
    } else if xoffset >> 7 < 256 {
        usize::from(OFFSET_CODES[(xoffset >> 7) as usize]) + 14
    } else {
        usize::from(OFFSET_CODES[(xoffset >> 14) as usize]) + 28
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_tables_match_the_rfc() {
        assert_eq!(length_code(0), 0);
        assert_eq!(length_code(8), 8);
        assert_eq!(length_code(9), 8);
        assert_eq!(length_code(254), 27);
        assert_eq!(length_code(255), 28);
        for x in 0..32768u32 {
            let c = offset_code(x);
            assert!(OFFSET_BASE[c] <= x);
            assert!(x < OFFSET_BASE[c] + (1 << OFFSET_EXTRA_BITS[c]));
        }
        for x in 0..256u32 {
            let c = length_code(x);
            assert!(LENGTH_BASE[c] <= x);
            assert!(c == 28 || x < LENGTH_BASE[c] + (1 << LENGTH_EXTRA_BITS[c]));
        }
    }

    #[test]
    fn tokens_round_trip() {
        let t = matched(258, 32768);
        assert!(!is_literal(t));
        assert_eq!(xlength(t), 255);
        assert_eq!(xoffset(t), 32767);
        assert!(is_literal(literal(255)));
    }
}
