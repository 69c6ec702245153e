//! Level 1 (BestSpeed): Go's Snappy-style single-probe matcher.
//!
//! Input is cut into blocks of 65535 bytes. Each block is scanned with a
//! 2^14-entry table keyed by a hash of four bytes, holding the position
//! and the four bytes themselves; a probe matches if those bytes agree and
//! the position is at most 32 KiB back, which may reach into the previous
//! block (kept as a copy). After 32 probes without a match the scan starts
//! skipping, one more byte per 32 probes. After a match the table is
//! updated at its last two positions and the byte after it is tried
//! straight away.
//!
//! Positions in the table are offset by a running `cur` that grows by each
//! block's length (so old entries fall out of reach), by 32 KiB more on a
//! reset, and is folded back before it could overflow an `i32`.
//!
//! A block whose matches remove less than a sixteenth of its tokens is
//! written Huffman-only; a short final block (under 128 bytes) is stored
//! (up to 16 bytes) or Huffman-only, and forgets the history.

use super::block_writer::{BlockWriter, MAX_STORE_BLOCK_SIZE};
use super::token::{self, BASE_MATCH_LENGTH, MAX_MATCH_LENGTH, MAX_MATCH_OFFSET, Token};

const TABLE_BITS: u32 = 14;
const TABLE_SIZE: usize = 1 << TABLE_BITS;
const TABLE_MASK: u32 = TABLE_SIZE as u32 - 1;
const TABLE_SHIFT: u32 = 32 - TABLE_BITS;
const BUFFER_RESET: i32 = i32::MAX - MAX_STORE_BLOCK_SIZE as i32 * 2;
const INPUT_MARGIN: usize = 16 - 1;
const MIN_NON_LITERAL_BLOCK_SIZE: usize = 1 + 1 + INPUT_MARGIN;

#[derive(Clone, Copy, Default)]
struct TableEntry {
    /// The four bytes at `offset`.
    val: u32,
    offset: i32,
}

#[inline(always)]
fn load32(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(b[i..i + 4].try_into().unwrap())
}

#[inline(always)]
fn load64(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(b[i..i + 8].try_into().unwrap())
}

#[inline(always)]
fn hash(u: u32) -> u32 {
    u.wrapping_mul(0x1e35_a7bd) >> TABLE_SHIFT
}

struct DeflateFast {
    table: Vec<TableEntry>,
    /// The previous block, empty if there is no usable history.
    prev: Vec<u8>,
    cur: i32,
}

impl DeflateFast {
    fn new() -> Self {
        DeflateFast {
            table: vec![TableEntry::default(); TABLE_SIZE],
            prev: Vec::with_capacity(MAX_STORE_BLOCK_SIZE),
            cur: MAX_STORE_BLOCK_SIZE as i32,
        }
    }

    /// Appends the tokens of `src` to `dst`.
    fn encode(&mut self, dst: &mut Vec<Token>, src: &[u8]) {
        if self.cur >= BUFFER_RESET {
            self.shift_offsets();
        }
        if src.len() < MIN_NON_LITERAL_BLOCK_SIZE {
            self.cur += MAX_STORE_BLOCK_SIZE as i32;
            self.prev.clear();
            dst.extend(src.iter().map(|&b| token::literal(b)));
            return;
        }

        // No match starts past here.
        let s_limit = (src.len() - INPUT_MARGIN) as i32;
        let mut next_emit = 0i32;
        let mut s = 0i32;
        let mut cv = load32(src, 0);
        let mut next_hash = hash(cv);

        'outer: loop {
            // Probe until a match, skipping faster the longer none turns up.
            let mut skip = 32i32;
            let mut next_s = s;
            let mut candidate;
            loop {
                s = next_s;
                let step = skip >> 5;
                next_s = s + step;
                skip += step;
                if next_s > s_limit {
                    break 'outer;
                }
                let slot = (next_hash & TABLE_MASK) as usize;
                candidate = self.table[slot];
                let now = load32(src, next_s as usize);
                self.table[slot] = TableEntry {
                    offset: s + self.cur,
                    val: cv,
                };
                next_hash = hash(now);
                let offset = s - (candidate.offset - self.cur);
                if offset > MAX_MATCH_OFFSET as i32 || cv != candidate.val {
                    cv = now;
                    continue;
                }
                break;
            }

            dst.extend(
                src[next_emit as usize..s as usize]
                    .iter()
                    .map(|&b| token::literal(b)),
            );

            // Emit matches back to back while the position right after one
            // matches too.
            loop {
                s += 4;
                let t = candidate.offset - self.cur + 4;
                let l = self.match_len(s, t, src);
                dst.push(token::matched(l as usize + 4, (s - t) as usize));
                s += l;
                next_emit = s;
                if s >= s_limit {
                    break 'outer;
                }
                let mut x = load64(src, s as usize - 1);
                let prev_hash = hash(x as u32);
                self.table[(prev_hash & TABLE_MASK) as usize] = TableEntry {
                    offset: self.cur + s - 1,
                    val: x as u32,
                };
                x >>= 8;
                let curr_hash = hash(x as u32);
                let slot = (curr_hash & TABLE_MASK) as usize;
                candidate = self.table[slot];
                self.table[slot] = TableEntry {
                    offset: self.cur + s,
                    val: x as u32,
                };
                let offset = s - (candidate.offset - self.cur);
                if offset > MAX_MATCH_OFFSET as i32 || x as u32 != candidate.val {
                    cv = (x >> 8) as u32;
                    next_hash = hash(cv);
                    s += 1;
                    break;
                }
            }
        }

        if (next_emit as usize) < src.len() {
            dst.extend(src[next_emit as usize..].iter().map(|&b| token::literal(b)));
        }
        self.cur += src.len() as i32;
        self.prev.clear();
        self.prev.extend_from_slice(src);
    }

    /// How far the match at `s` (four bytes already agreeing before it)
    /// extends, against `t` in this block or, if negative, in the previous
    /// one (continuing into this block's start).
    fn match_len(&self, s: i32, t: i32, src: &[u8]) -> i32 {
        let s = s as usize;
        let s1 = (s + MAX_MATCH_LENGTH - 4).min(src.len());
        let a = &src[s..s1];
        if t >= 0 {
            let b = &src[t as usize..];
            return common_prefix(a, &b[..a.len()]) as i32;
        }
        let tp = self.prev.len() as i32 + t;
        if tp < 0 {
            return 0;
        }
        let b = &self.prev[tp as usize..];
        let b = &b[..b.len().min(a.len())];
        let n = common_prefix(&a[..b.len()], b);
        if n < b.len() {
            return n as i32;
        }
        if s + n == s1 {
            return n as i32;
        }
        let a = &src[s + n..s1];
        (common_prefix(a, &src[..a.len()]) + n) as i32
    }

    /// Forgets the history: nothing in the table is in reach afterwards.
    fn reset(&mut self) {
        self.prev.clear();
        self.cur += MAX_MATCH_OFFSET as i32;
        if self.cur >= BUFFER_RESET {
            self.shift_offsets();
        }
    }

    /// Rebases the table so `cur` restarts at 32 KiB + 1, keeping what is
    /// still in reach.
    fn shift_offsets(&mut self) {
        if self.prev.is_empty() {
            self.table.fill(TableEntry::default());
        } else {
            for e in &mut self.table {
                e.offset = (e.offset - self.cur + MAX_MATCH_OFFSET as i32 + 1).max(0);
            }
        }
        self.cur = MAX_MATCH_OFFSET as i32 + 1;
    }
}

/// How many leading bytes `a` and `b` (of equal length) share.
#[inline(always)]
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    debug_assert_eq!(a.len(), b.len());
    let mut n = 0;
    while n + 8 <= a.len() {
        let x = u64::from_le_bytes(a[n..n + 8].try_into().unwrap())
            ^ u64::from_le_bytes(b[n..n + 8].try_into().unwrap());
        if x != 0 {
            return n + (x.trailing_zeros() / 8) as usize;
        }
        n += 8;
    }
    while n < a.len() && a[n] == b[n] {
        n += 1;
    }
    n
}

/// The DEFLATE stream Go writes at level 1 for `data`.
pub(crate) fn compress(data: &[u8]) -> Vec<u8> {
    let mut w = BlockWriter::new(data.len() / 2 + 64);
    let mut fast = DeflateFast::new();
    let mut tokens = Vec::with_capacity(MAX_STORE_BLOCK_SIZE);
    for block in data.chunks(MAX_STORE_BLOCK_SIZE) {
        let n = block.len();
        if n < 128 {
            // Only the last block can be short.
            if n <= 16 {
                w.write_stored(block);
            } else {
                w.write_block_huff(false, block);
            }
            fast.reset();
            continue;
        }
        tokens.clear();
        fast.encode(&mut tokens, block);
        if tokens.len() > n - (n >> 4) {
            w.write_block_huff(false, block);
        } else {
            w.write_block_dynamic(&tokens, false, block);
        }
    }
    w.write_stored_header(0, true);
    w.finish()
}

const _: () = assert!(BASE_MATCH_LENGTH == 3);
