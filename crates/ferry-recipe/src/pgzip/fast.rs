//! What levels 1–6 (and the default, which is level 5) share: the match
//! history buffer with its moving base offset, the hash functions, match
//! length helpers, and the compressor loop that feeds the matcher 65535
//! bytes at a time and picks stored / literal-only / dynamic blocks from
//! how many tokens the matcher produced.

use super::bit_writer::BlockWriter;
use super::blocks::BlockCompressor;
use super::tokens::{MAX_STORE_BLOCK_SIZE, Tokens};

/// Largest match distance.
pub(super) const MAX_MATCH_OFFSET: i32 = 1 << 15;
/// Bytes of history kept before it is shifted down.
const ALLOC_HISTORY: usize = MAX_STORE_BLOCK_SIZE * 5;
/// When the base offset reaches this, tables are rebased.
/// (2^31 - history allocation - 65535 - 1.)
pub(super) const BUFFER_RESET: i32 = i32::MAX - ALLOC_HISTORY as i32 - MAX_STORE_BLOCK_SIZE as i32;
/// Bits of the standard hash tables.
pub(super) const TABLE_BITS: u32 = 15;
pub(super) const TABLE_SIZE: usize = 1 << TABLE_BITS;

const PRIME3: u32 = 506_832_829;
const PRIME4: u32 = 2_654_435_761;
const PRIME5: u64 = 889_523_592_379;
const PRIME6: u64 = 227_718_039_650_203;
const PRIME7: u64 = 58_295_818_150_454_627;
const PRIME8: u64 = 0xcf1b_bcdc_b7a5_6463;

/// Hash of the low `mls` bytes of `u` into `bits` bits.
#[inline(always)]
pub(super) fn hash_len(u: u64, bits: u32, mls: u32) -> usize {
    (match mls {
        3 => (((u as u32) << 8).wrapping_mul(PRIME3)) >> (32 - bits),
        5 => ((u << 24).wrapping_mul(PRIME5) >> (64 - bits)) as u32,
        6 => ((u << 16).wrapping_mul(PRIME6) >> (64 - bits)) as u32,
        7 => ((u << 8).wrapping_mul(PRIME7) >> (64 - bits)) as u32,
        8 => (u.wrapping_mul(PRIME8) >> (64 - bits)) as u32,
        _ => (u as u32).wrapping_mul(PRIME4) >> (32 - bits),
    }) as usize
}

/// Hash of the low 7 bytes of `u` into `bits` bits.
#[inline(always)]
pub(super) fn hash7(u: u64, bits: u32) -> usize {
    hash_len(u, bits, 7)
}

#[inline(always)]
pub(super) fn load32(b: &[u8], i: i32) -> u32 {
    let i = i as usize;
    u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"))
}

#[inline(always)]
pub(super) fn load64(b: &[u8], i: i32) -> u64 {
    let i = i as usize;
    u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"))
}

/// Length of the common prefix of `a` and `b` (`b` at least as long).
#[inline]
pub(super) fn match_len(a: &[u8], b: &[u8]) -> usize {
    let b = &b[..a.len()];
    let mut i = 0;
    while i + 8 <= a.len() {
        let x = u64::from_le_bytes(a[i..i + 8].try_into().expect("8"))
            ^ u64::from_le_bytes(b[i..i + 8].try_into().expect("8"));
        if x != 0 {
            return i + (x.trailing_zeros() >> 3) as usize;
        }
        i += 8;
    }
    while i < a.len() && a[i] == b[i] {
        i += 1;
    }
    i
}

/// Match length at `s` against `t`, at most 254 bytes.
#[inline]
pub(super) fn matchlen(s: i32, t: i32, src: &[u8]) -> i32 {
    let (s, t) = (s as usize, t as usize);
    let end = (s + 258 - 4).min(src.len());
    match_len(&src[s..end], &src[t..]) as i32
}

/// Match length at `s` against `t`, up to the end of the input.
#[inline]
pub(super) fn matchlen_long(s: i32, t: i32, src: &[u8]) -> i32 {
    match_len(&src[s as usize..], &src[t as usize..]) as i32
}

/// The history a fast matcher searches, with `cur`, the stream offset of
/// `hist[0]` plus a gap: table entries hold `position + cur`, and bumping
/// `cur` past the window on reset makes every old entry unreachable.
pub(super) struct History {
    pub(super) hist: Vec<u8>,
    pub(super) cur: i32,
}

impl History {
    pub(super) fn new() -> Self {
        History {
            hist: Vec::with_capacity(ALLOC_HISTORY),
            cur: MAX_STORE_BLOCK_SIZE as i32,
        }
    }

    /// Appends `src`, first sliding the last 32 KiB down when full;
    /// returns where `src` starts in `hist`.
    pub(super) fn add_block(&mut self, src: &[u8]) -> i32 {
        if self.hist.len() + src.len() > ALLOC_HISTORY {
            let offset = self.hist.len() - MAX_MATCH_OFFSET as usize;
            self.hist.copy_within(offset.., 0);
            self.cur += offset as i32;
            self.hist.truncate(MAX_MATCH_OFFSET as usize);
        }
        let s = self.hist.len() as i32;
        self.hist.extend_from_slice(src);
        s
    }

    pub(super) fn reset(&mut self) {
        if self.cur <= BUFFER_RESET {
            self.cur += MAX_MATCH_OFFSET + self.hist.len() as i32;
        }
        self.hist.clear();
    }

    /// The new base offset and the stale limit when `cur` must be rebased
    /// (`None` if it need not be); `Some((minimum, None))` means the
    /// history is empty and the tables are to be cleared.
    pub(super) fn needs_rebase(&self) -> Option<Option<i32>> {
        if self.cur < BUFFER_RESET {
            return None;
        }
        if self.hist.is_empty() {
            return Some(None);
        }
        Some(Some(self.cur + self.hist.len() as i32 - MAX_MATCH_OFFSET))
    }

    /// Rebases one table entry given the stale limit from `needs_rebase`.
    #[inline]
    pub(super) fn rebased(&self, v: i32, min_off: i32) -> i32 {
        if v <= min_off {
            0
        } else {
            v - self.cur + MAX_MATCH_OFFSET
        }
    }
}

/// A level's matcher.
pub(super) trait FastEncoder {
    fn new() -> Self;
    /// Appends `src` to the history and emits its tokens into `dst`.
    fn encode(&mut self, dst: &mut Tokens, src: &[u8]);
    fn reset(&mut self);
}

/// A table of plain entries.
pub(super) fn new_table(size: usize) -> Box<[i32]> {
    vec![0; size].into_boxed_slice()
}

/// A table whose entries remember the previous occupant too.
#[derive(Clone, Copy, Default)]
pub(super) struct PrevEntry {
    pub(super) cur: i32,
    pub(super) prev: i32,
}

pub(super) fn new_prev_table(size: usize) -> Box<[PrevEntry]> {
    vec![PrevEntry::default(); size].into_boxed_slice()
}

impl PrevEntry {
    #[inline(always)]
    pub(super) fn push(&mut self, offset: i32) {
        self.prev = self.cur;
        self.cur = offset;
    }
}

/// klauspost's compressor for levels 1–6.
pub(super) struct FastDeflate<E: FastEncoder> {
    enc: E,
    tokens: Tokens,
    w: BlockWriter,
}

impl<E: FastEncoder> FastDeflate<E> {
    pub(super) fn new(out: Vec<u8>) -> Self {
        FastDeflate {
            enc: E::new(),
            tokens: Tokens::new(),
            w: BlockWriter::new(out, 7),
        }
    }

    /// One full window (or, with `sync`, the last one of a flush).
    fn store_fast(&mut self, window: &[u8], sync: bool) {
        if window.len() < MAX_STORE_BLOCK_SIZE {
            debug_assert!(sync);
            // Very small chunks are stored or coded as literals.
            if window.len() < 128 {
                if window.is_empty() {
                    return;
                }
                if window.len() <= 32 {
                    self.w.write_stored(window, false);
                } else {
                    self.w.write_block_huff(false, window, true);
                }
                self.tokens.reset();
                self.enc.reset();
                return;
            }
        }
        self.enc.encode(&mut self.tokens, window);
        let n = self.tokens.len();
        if n == 0 {
            // No matches at all.
            self.w.write_stored(window, false);
        } else if n > window.len() - (window.len() >> 4) {
            // Matches removed less than 1/16 of the literals.
            self.w.write_block_huff(false, window, sync);
        } else {
            self.w
                .write_block_dynamic(&mut self.tokens, false, Some(window), sync);
        }
        self.tokens.reset();
    }
}

impl<E: FastEncoder> BlockCompressor for FastDeflate<E> {
    fn reset(&mut self, dict: &[u8]) {
        self.w.reset();
        self.enc.reset();
        self.tokens.reset();
        // The dictionary is run through the matcher and its tokens dropped.
        let dict = &dict[dict.len().saturating_sub(MAX_MATCH_OFFSET as usize)..];
        self.enc.encode(&mut self.tokens, dict);
        self.tokens.reset();
    }

    fn write_and_flush(&mut self, data: &[u8]) {
        let mut chunks = data.chunks(MAX_STORE_BLOCK_SIZE).peekable();
        while let Some(chunk) = chunks.next() {
            self.store_fast(chunk, chunks.peek().is_none());
        }
        self.w.write_stored_header(0, false);
        self.w.flush();
    }

    fn close(&mut self) {
        self.w.write_stored_header(0, true);
        self.w.flush();
    }

    fn into_output(self) -> Vec<u8> {
        self.w.sink.out
    }
}
