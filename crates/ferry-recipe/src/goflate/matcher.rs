//! Levels 2..=9: Go's hash-chain matcher.
//!
//! A 64 KiB window slides by 32 KiB whenever the scan position comes
//! within `MIN_MATCH_LENGTH + MAX_MATCH_LENGTH` bytes of its end. Every
//! position is hashed on its next four bytes into a 2^17-entry head table
//! chained through a 32 KiB previous-position table. Head entries are
//! stored offset by `hash_offset`, which grows by 32 KiB per slide and is
//! folded back (with entries older than the window cleared) once it passes
//! 2^24, as Go does. Go stores the chain links the same way; here they are
//! distances back instead, capped at 65535, which walks exactly the same
//! chains (a link reaching past the window ends the walk either way) in
//! half the memory.
//!
//! Levels 2 and 3 are greedy: a match of at least four bytes is taken at
//! once, and only matches no longer than `fast_skip_hashing` have their
//! inner positions hashed. Levels 4..=9 are lazy: a match found at one
//! position is emitted only if the next position does not find a longer
//! one, and no search is made once the pending match reaches `lazy`.
//! A match search walks at most `chain` entries, stops at `nice` bytes,
//! and accepts a four-byte match only within 4096 bytes; Go's `good`
//! threshold never applies because the search always starts from a
//! three-byte baseline.
//!
//! Tokens are cut into blocks of at most 2^14; a block may be stored only
//! while its input is still in the window.

use super::block_writer::BlockWriter;
use super::token::{self, MAX_MATCH_LENGTH, MIN_MATCH_LENGTH, Token};

const LOG_WINDOW_SIZE: usize = 15;
const WINDOW_SIZE: usize = 1 << LOG_WINDOW_SIZE;
const WINDOW_MASK: usize = WINDOW_SIZE - 1;
const HASH_BITS: u32 = 17;
const HASH_SIZE: usize = 1 << HASH_BITS;
const MAX_HASH_OFFSET: isize = 1 << 24;
const MAX_FLATE_BLOCK_TOKENS: usize = 1 << 14;
/// Once the scan is this close to the end of the input it has, it waits
/// for more (or for the end of the stream).
const LOOKAHEAD_MIN: usize = MIN_MATCH_LENGTH + MAX_MATCH_LENGTH;

/// One level's search parameters.
#[derive(Clone, Copy)]
struct Params {
    lazy: usize,
    nice: usize,
    chain: usize,
    /// Greedy levels only: matches up to this long get their inner
    /// positions hashed.
    fast_skip_hashing: Option<usize>,
}

fn params(level: i32) -> Params {
    let (lazy, nice, chain, skip) = match level {
        2 => (0, 16, 8, Some(5)),
        3 => (0, 32, 32, Some(6)),
        4 => (4, 16, 16, None),
        5 => (16, 32, 32, None),
        6 => (16, 128, 128, None),
        7 => (32, 128, 256, None),
        8 => (128, 258, 1024, None),
        9 => (258, 258, 4096, None),
        _ => unreachable!("level {level} has no hash-chain parameters"),
    };
    Params {
        lazy,
        nice,
        chain,
        fast_skip_hashing: skip,
    }
}

#[inline(always)]
fn hash4(b: &[u8]) -> usize {
    let v = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (v.wrapping_mul(0x1e35_a7bd) >> (32 - HASH_BITS)) as usize
}

/// How many of the first `max` bytes of `a` and `b` agree.
#[inline(always)]
fn match_len(a: &[u8], b: &[u8], max: usize) -> usize {
    let (a, b) = (&a[..max], &b[..max]);
    let mut n = 0;
    while n + 8 <= max {
        let x = u64::from_le_bytes(a[n..n + 8].try_into().unwrap())
            ^ u64::from_le_bytes(b[n..n + 8].try_into().unwrap());
        if x != 0 {
            return n + (x.trailing_zeros() / 8) as usize;
        }
        n += 8;
    }
    while n < max && a[n] == b[n] {
        n += 1;
    }
    n
}

/// A zeroed array on the heap (too big for the stack).
fn boxed_array<T: Copy + Default, const N: usize>() -> Box<[T; N]> {
    vec![T::default(); N]
        .into_boxed_slice()
        .try_into()
        .unwrap_or_else(|_| unreachable!())
}

struct Matcher {
    params: Params,
    window: Box<[u8; 2 * WINDOW_SIZE]>,
    hash_head: Box<[u32; HASH_SIZE]>,
    /// For each position in the last 32 KiB, how far back the previous
    /// position with the same hash is (saturating: anything past the
    /// window ends a chain walk either way).
    hash_prev: Box<[u16; WINDOW_SIZE]>,
    hash_offset: isize,
    /// The stored head found at the last hashed position.
    chain_head: isize,
    /// Next position to look at.
    index: usize,
    window_end: usize,
    /// Where the pending block's input starts, if still in the window.
    block_start: Option<usize>,
    /// Lazy levels: the byte before `index` is not yet emitted.
    byte_available: bool,
    tokens: Vec<Token>,
    /// Lazy levels: the match found at the previous position.
    length: usize,
    offset: usize,
    max_insert_index: usize,
    /// The input is complete: scan to its end.
    sync: bool,
    w: BlockWriter,
}

/// The DEFLATE stream Go writes at `level` (2..=9) for `data`.
pub(crate) fn compress(data: &[u8], level: i32) -> Vec<u8> {
    let mut m = Matcher {
        params: params(level),
        window: boxed_array(),
        hash_head: boxed_array(),
        hash_prev: boxed_array(),
        hash_offset: 1,
        chain_head: -1,
        index: 0,
        window_end: 0,
        block_start: Some(0),
        byte_available: false,
        tokens: Vec::with_capacity(MAX_FLATE_BLOCK_TOKENS + 1),
        length: MIN_MATCH_LENGTH - 1,
        offset: 0,
        max_insert_index: 0,
        sync: false,
        w: BlockWriter::new(data.len() / 2 + 64),
    };
    // Go's write loop: scan what the window holds, then top it up.
    let mut rest = data;
    while !rest.is_empty() {
        m.step();
        let n = m.fill(rest);
        rest = &rest[n..];
    }
    m.sync = true;
    m.step();
    m.w.write_stored_header(0, true);
    m.w.finish()
}

impl Matcher {
    /// Copies input into the window, first sliding it by 32 KiB if the scan
    /// has reached its end.
    fn fill(&mut self, b: &[u8]) -> usize {
        if self.index >= 2 * WINDOW_SIZE - LOOKAHEAD_MIN {
            self.window.copy_within(WINDOW_SIZE.., 0);
            self.index -= WINDOW_SIZE;
            self.window_end -= WINDOW_SIZE;
            self.block_start = self.block_start.and_then(|s| s.checked_sub(WINDOW_SIZE));
            self.hash_offset += WINDOW_SIZE as isize;
            if self.hash_offset > MAX_HASH_OFFSET {
                let delta = self.hash_offset - 1;
                self.hash_offset -= delta;
                self.chain_head -= delta;
                let delta = delta as u32;
                for v in self.hash_head.iter_mut() {
                    *v = v.saturating_sub(delta);
                }
            }
        }
        let n = b.len().min(self.window.len() - self.window_end);
        self.window[self.window_end..self.window_end + n].copy_from_slice(&b[..n]);
        self.window_end += n;
        n
    }

    fn step(&mut self) {
        if self.window_end - self.index < LOOKAHEAD_MIN && !self.sync {
            return;
        }
        self.max_insert_index = self.window_end.saturating_sub(MIN_MATCH_LENGTH - 1);
        match self.params.fast_skip_hashing {
            Some(skip) => self.greedy(skip),
            None => self.lazy(),
        }
    }

    /// Hashes the position `index` into the chains; returns the previous
    /// head of its chain.
    #[inline(always)]
    fn insert(&mut self, index: usize) -> u32 {
        let h = hash4(&self.window[index..index + MIN_MATCH_LENGTH]);
        let head = self.hash_head[h];
        let distance = index as isize - (head as isize - self.hash_offset);
        self.hash_prev[index & WINDOW_MASK] = distance.min(u16::MAX as isize) as u16;
        self.hash_head[h] = (index as isize + self.hash_offset) as u32;
        head
    }

    /// Whether the scan has to stop: returns true when it waits for more
    /// input or has flushed the last block.
    #[inline(always)]
    fn at_end(&mut self, lookahead: usize) -> bool {
        if lookahead < LOOKAHEAD_MIN {
            if !self.sync {
                return true;
            }
            if lookahead == 0 {
                if self.byte_available {
                    let b = self.window[self.index - 1];
                    self.tokens.push(token::literal(b));
                    self.byte_available = false;
                }
                if !self.tokens.is_empty() {
                    self.write_block(self.index);
                }
                return true;
            }
        }
        false
    }

    /// Hashes `index` if there are four bytes to hash, updating the chain
    /// head; returns the lowest position a match may start at.
    #[inline(always)]
    fn hash_current(&mut self) -> usize {
        if self.index < self.max_insert_index {
            self.chain_head = self.insert(self.index) as isize;
        }
        self.index.saturating_sub(WINDOW_SIZE)
    }

    fn greedy(&mut self, skip: usize) {
        loop {
            let lookahead = self.window_end - self.index;
            if self.at_end(lookahead) {
                return;
            }
            let min_index = self.hash_current();
            let mut length = MIN_MATCH_LENGTH - 1;
            let mut offset = 0;
            let head = self.chain_head - self.hash_offset;
            if head >= min_index as isize
                && lookahead > MIN_MATCH_LENGTH - 1
                && let Some((l, o)) = self.find_match(self.index, head as usize, lookahead)
            {
                (length, offset) = (l, o);
            }
            if length >= MIN_MATCH_LENGTH {
                self.tokens.push(token::matched(length, offset));
                if length <= skip {
                    let end = self.index + length;
                    for i in self.index + 1..end {
                        if i < self.max_insert_index {
                            self.insert(i);
                        }
                    }
                }
                self.index += length;
                if self.tokens.len() == MAX_FLATE_BLOCK_TOKENS {
                    self.write_block(self.index);
                }
            } else {
                let b = self.window[self.index];
                self.tokens.push(token::literal(b));
                self.index += 1;
                if self.tokens.len() == MAX_FLATE_BLOCK_TOKENS {
                    self.write_block(self.index);
                }
            }
        }
    }

    fn lazy(&mut self) {
        loop {
            let lookahead = self.window_end - self.index;
            if self.at_end(lookahead) {
                return;
            }
            let min_index = self.hash_current();
            let prev_length = self.length;
            let prev_offset = self.offset;
            self.length = MIN_MATCH_LENGTH - 1;
            self.offset = 0;
            let head = self.chain_head - self.hash_offset;
            if head >= min_index as isize
                && lookahead > prev_length
                && prev_length < self.params.lazy
                && let Some((l, o)) = self.find_match(self.index, head as usize, lookahead)
            {
                self.length = l;
                self.offset = o;
            }
            if prev_length >= MIN_MATCH_LENGTH && self.length <= prev_length {
                // The match from the previous position stands.
                self.tokens.push(token::matched(prev_length, prev_offset));
                let end = self.index + prev_length - 1;
                for i in self.index + 1..end {
                    if i < self.max_insert_index {
                        self.insert(i);
                    }
                }
                self.index = end;
                self.byte_available = false;
                self.length = MIN_MATCH_LENGTH - 1;
                if self.tokens.len() == MAX_FLATE_BLOCK_TOKENS {
                    self.write_block(self.index);
                }
            } else {
                if self.byte_available {
                    let b = self.window[self.index - 1];
                    self.tokens.push(token::literal(b));
                    if self.tokens.len() == MAX_FLATE_BLOCK_TOKENS {
                        self.write_block(self.index);
                    }
                }
                self.index += 1;
                self.byte_available = true;
            }
        }
    }

    /// The best match for `pos` longer than three bytes, walking the chain
    /// from `head`: (length, distance).
    #[inline(always)]
    fn find_match(&self, pos: usize, head: usize, lookahead: usize) -> Option<(usize, usize)> {
        let min_match_look = MAX_MATCH_LENGTH.min(lookahead);
        let win = &self.window[..pos + min_match_look];
        let nice = self.params.nice.min(min_match_look);
        let mut tries = self.params.chain;
        let mut length = MIN_MATCH_LENGTH - 1;
        let mut found = None;
        let mut w_end = win[pos + length];
        let w_pos = &win[pos..];
        let min_index = pos as isize - WINDOW_SIZE as isize;
        let mut i = head;
        while tries > 0 {
            if w_end == win[i + length] {
                let n = match_len(&win[i..], w_pos, min_match_look);
                if n > length && (n > MIN_MATCH_LENGTH || pos - i <= 4096) {
                    length = n;
                    found = Some((n, pos - i));
                    if n >= nice {
                        break;
                    }
                    w_end = win[pos + n];
                }
            }
            if i as isize == min_index {
                // The chain entry for this position was overwritten.
                break;
            }
            let next = i as isize - self.hash_prev[i & WINDOW_MASK] as isize;
            if next < min_index || next < 0 {
                break;
            }
            i = next as usize;
            tries -= 1;
        }
        found
    }

    /// Writes the pending tokens as a block ending at window position
    /// `index`.
    fn write_block(&mut self, index: usize) {
        let input = match self.block_start {
            Some(start) if start <= index => Some(&self.window[start..index]),
            _ => None,
        };
        self.w.write_block(&self.tokens, false, input);
        self.block_start = Some(index);
        self.tokens.clear();
    }
}
