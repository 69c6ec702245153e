//! Levels 7–9: klauspost's lazy matcher over a 64 KiB sliding window with
//! 4-byte hash chains (17-bit heads, 32 KiB of links).
//!
//! A match is emitted only if the match starting one byte later is not
//! longer; before emitting, the matcher also tries the chain of the
//! match's last bytes for a longer match ending in the same place. After a
//! long run without matches it emits literals in bigger steps. Level 9
//! ranks candidates by estimated bit gain (literal code lengths of the
//! lookahead minus the extra bits of distance and length) rather than by
//! length. Token chunks of 32768 go to the block writer with the window
//! bytes they cover — which for a block's first chunk still includes the
//! preset dictionary, as in the original.

use super::bit_writer::BlockWriter;
use super::blocks::BlockCompressor;
use super::huffman::HuffmanEncoder;
use super::tokens::{LENGTH_CODES, LENGTH_EXTRA_BITS, OFFSET_EXTRA_BITS, Tokens, offset_code};

const WINDOW_SIZE: usize = 1 << 15;
const WINDOW_MASK: usize = WINDOW_SIZE - 1;
const MIN_MATCH: usize = 4;
const MAX_MATCH: usize = 258;
const HASH_BITS: u32 = 17;
const HASH_SIZE: usize = 1 << HASH_BITS;
const MAX_HASH_OFFSET: i64 = 1 << 28;
const MAX_FLATE_BLOCK_TOKENS: usize = 1 << 15;
/// Marks a block start that has slid out of the window.
const BLOCK_START_GONE: usize = i32::MAX as usize;

#[derive(Clone, Copy)]
struct Params {
    lazy: usize,
    nice: usize,
    chain: usize,
}

fn params(level: i32) -> Option<Params> {
    Some(match level {
        7 => Params {
            lazy: 12,
            nice: 16,
            chain: 24,
        },
        8 => Params {
            lazy: 30,
            nice: 40,
            chain: 64,
        },
        9 => Params {
            lazy: 258,
            nice: 258,
            chain: 1024,
        },
        _ => return None,
    })
}

#[inline(always)]
fn hash4(b: &[u8]) -> usize {
    let u = u32::from_le_bytes(b[..4].try_into().expect("4 bytes"));
    (u.wrapping_mul(2_654_435_761) >> (32 - HASH_BITS)) as usize
}

pub(super) struct Lazy {
    p: Params,
    window: Box<[u8]>,
    window_end: usize,
    block_start: usize,
    index: usize,
    length: usize,
    offset: usize,
    max_insert_index: usize,
    chain_head: i64,
    hash_offset: i64,
    /// Literals since the last match (wraps at 65536).
    ii: u16,
    byte_available: bool,
    sync: bool,
    hash_head: Box<[u32]>,
    hash_prev: Box<[u32]>,
    /// Literal code of the lookahead, for level 9's gain estimate.
    lit_est: HuffmanEncoder,
    /// `lit_bits[j] - lit_bits[i]`: bits of `window[i..j]` under
    /// `lit_est` (valid from `index` on since the last estimate).
    lit_bits: Box<[u32]>,
    tokens: Tokens,
    w: BlockWriter,
}

impl Lazy {
    pub(super) fn new(out: Vec<u8>, level: i32) -> Option<Self> {
        Some(Lazy {
            p: params(level)?,
            window: vec![0; 2 * WINDOW_SIZE].into_boxed_slice(),
            window_end: 0,
            block_start: 0,
            index: 0,
            length: MIN_MATCH - 1,
            offset: 0,
            max_insert_index: 0,
            chain_head: -1,
            hash_offset: 1,
            ii: 0,
            byte_available: false,
            sync: false,
            hash_head: vec![0; HASH_SIZE].into_boxed_slice(),
            hash_prev: vec![0; WINDOW_SIZE].into_boxed_slice(),
            lit_est: HuffmanEncoder::new(256),
            lit_bits: vec![0; 2 * WINDOW_SIZE + 1].into_boxed_slice(),
            tokens: Tokens::new(),
            w: BlockWriter::new(out, 8),
        })
    }

    /// Inserts position `di` into the hash chains under hash `h`.
    #[inline(always)]
    fn insert(&mut self, di: usize, h: usize) -> u32 {
        let ch = self.hash_head[h];
        self.hash_prev[di & WINDOW_MASK] = ch;
        self.hash_head[h] = (di as i64 + self.hash_offset) as u32;
        ch
    }

    /// Hashes and inserts every position of `window[start..end]` that has
    /// four bytes inside it.
    fn insert_range(&mut self, start: usize, end: usize) {
        if end < start + MIN_MATCH {
            return;
        }
        for di in start..=end - MIN_MATCH {
            let h = hash4(&self.window[di..]);
            self.insert(di, h);
        }
    }

    fn fill(&mut self, b: &[u8]) -> usize {
        if self.index >= 2 * WINDOW_SIZE - (MIN_MATCH + MAX_MATCH) {
            // Slide the window down by 32 KiB.
            self.window.copy_within(WINDOW_SIZE.., 0);
            self.index -= WINDOW_SIZE;
            self.window_end -= WINDOW_SIZE;
            self.block_start = if self.block_start >= WINDOW_SIZE {
                self.block_start - WINDOW_SIZE
            } else {
                BLOCK_START_GONE
            };
            self.hash_offset += WINDOW_SIZE as i64;
            if self.hash_offset > MAX_HASH_OFFSET {
                let delta = self.hash_offset - 1;
                self.hash_offset -= delta;
                self.chain_head -= delta;
                for v in self.hash_prev.iter_mut().chain(self.hash_head.iter_mut()) {
                    *v = if i64::from(*v) > delta {
                        (i64::from(*v) - delta) as u32
                    } else {
                        0
                    };
                }
            }
        }
        let n = b.len().min(self.window.len() - self.window_end);
        self.window[self.window_end..self.window_end + n].copy_from_slice(&b[..n]);
        self.window_end += n;
        n
    }

    fn write_block(&mut self, index: usize, eof: bool) {
        if index > 0 || eof {
            let input = (self.block_start <= index).then(|| &self.window[self.block_start..index]);
            self.block_start = index;
            self.w
                .write_block_dynamic(&mut self.tokens, eof, input, self.sync);
        }
    }

    fn add_literal_flushing(&mut self, lit: u8) {
        self.tokens.add_literal(lit);
        if self.tokens.len() == MAX_FLATE_BLOCK_TOKENS {
            self.write_block(self.index, false);
            self.tokens.reset();
        }
    }

    /// Longest (or, at level 9, most profitable) match at `pos` along the
    /// chain starting at `prev_head`.
    fn find_match(&self, pos: usize, prev_head: i64, lookahead: usize) -> Option<(usize, usize)> {
        let min_match_look = lookahead.min(MAX_MATCH);
        let win = &self.window[..pos + min_match_look];
        let nice = (win.len() - pos).min(self.p.nice);
        let mut tries = self.p.chain;
        let mut length = MIN_MATCH - 1;
        let mut w_end = win[pos + length];
        let w_pos = &win[pos..];
        let min_index = pos.saturating_sub(WINDOW_SIZE) as i64;
        let mut found = None;
        let by_gain = self.p.chain >= 100;
        let mut c_gain: i64 = 0;
        let mut i = prev_head;
        while tries > 0 {
            let iu = i as usize;
            if w_end == win[iu + length] {
                let n = super::fast::match_len(&win[iu..iu + min_match_look], w_pos);
                if n > length {
                    let better = if by_gain {
                        const BASE_COST: i64 = 6;
                        let raw = self.lit_bits[pos + n] - self.lit_bits[pos];
                        let gain = i64::from(raw)
                            - i64::from(OFFSET_EXTRA_BITS[offset_code((pos - iu) as u32) as usize])
                            - BASE_COST
                            - i64::from(LENGTH_EXTRA_BITS[LENGTH_CODES[(n - 3) & 255] as usize]);
                        if gain > c_gain {
                            c_gain = gain;
                            true
                        } else {
                            false
                        }
                    } else {
                        true
                    };
                    if better {
                        length = n;
                        found = Some((n, pos - iu));
                        if n >= nice {
                            break;
                        }
                        w_end = win[pos + n];
                    }
                }
            }
            if i <= min_index {
                break;
            }
            i = i64::from(self.hash_prev[iu & WINDOW_MASK]) - self.hash_offset;
            if i < min_index {
                break;
            }
            tries -= 1;
        }
        found
    }

    /// Processes the window; without `sync` it stops while a full match
    /// of lookahead remains.
    fn step(&mut self) {
        if self.window_end - self.index < MIN_MATCH + MAX_MATCH && !self.sync {
            return;
        }
        if self.window_end != self.index && self.p.chain > 100 {
            let mut counts = [0u16; 256];
            for &b in &self.window[self.index..self.window_end] {
                counts[b as usize] = counts[b as usize].wrapping_add(1);
            }
            self.lit_est.generate(&counts, 15);
            // Running sums of the code lengths, for the gain of any match
            // starting in the lookahead.
            let mut sum = 0u32;
            self.lit_bits[self.index] = 0;
            for (i, &b) in self.window[self.index..self.window_end].iter().enumerate() {
                sum += u32::from(self.lit_est.codes[b as usize].len);
                self.lit_bits[self.index + i + 1] = sum;
            }
        }
        self.max_insert_index = self.window_end.saturating_sub(MIN_MATCH - 1);

        loop {
            let lookahead = self.window_end - self.index;
            if lookahead < MIN_MATCH + MAX_MATCH {
                if !self.sync {
                    return;
                }
                if lookahead == 0 {
                    if self.byte_available {
                        self.tokens.add_literal(self.window[self.index - 1]);
                        self.byte_available = false;
                    }
                    if self.tokens.len() > 0 {
                        self.write_block(self.index, false);
                        self.tokens.reset();
                    }
                    return;
                }
            }
            if self.index < self.max_insert_index {
                let h = hash4(&self.window[self.index..]);
                self.chain_head = i64::from(self.insert(self.index, h));
            }
            let mut prev_length = self.length;
            let mut prev_offset = self.offset;
            self.length = MIN_MATCH - 1;
            self.offset = 0;
            let min_index = self.index.saturating_sub(WINDOW_SIZE);

            if self.chain_head - self.hash_offset >= min_index as i64
                && lookahead > prev_length
                && prev_length < self.p.lazy
                && let Some((l, o)) =
                    self.find_match(self.index, self.chain_head - self.hash_offset, lookahead)
            {
                self.length = l;
                self.offset = o;
            }

            if prev_length >= MIN_MATCH && self.length <= prev_length {
                // Look for a longer match ending where the previous one
                // ends (two bytes of slack at its end).
                const CHECK_OFF: usize = 2;
                let prev_index = self.index - 1;
                if prev_index + prev_length + CHECK_OFF < self.max_insert_index {
                    let end = lookahead.min(MAX_MATCH) + prev_index;
                    let idx = prev_index + prev_length - (4 - CHECK_OFF);
                    let h = hash4(&self.window[idx..]);
                    let ch2 = i64::from(self.hash_head[h]) - self.hash_offset - prev_length as i64
                        + (4 - CHECK_OFF) as i64;
                    if ch2 > min_index as i64 {
                        let ch2 = ch2 as usize;
                        let length = super::fast::match_len(
                            &self.window[prev_index..end],
                            &self.window[ch2..],
                        );
                        if length > prev_length {
                            prev_length = length;
                            prev_offset = prev_index - ch2;
                        }
                    }
                }
                self.tokens
                    .add_match((prev_length - 3) as u32, (prev_offset - 1) as u32);

                // Hash the positions the match covers.
                let new_index = self.index + prev_length - 1;
                let end = new_index.min(self.max_insert_index) + MIN_MATCH - 1;
                let start = (self.index + 1).min(self.max_insert_index);
                self.insert_range(start, end);

                self.index = new_index;
                self.byte_available = false;
                self.length = MIN_MATCH - 1;
                if self.tokens.len() == MAX_FLATE_BLOCK_TOKENS {
                    self.write_block(self.index, false);
                    self.tokens.reset();
                }
                self.ii = 0;
            } else {
                if self.length >= MIN_MATCH {
                    self.ii = 0;
                }
                if self.byte_available {
                    self.ii = self.ii.wrapping_add(1);
                    self.add_literal_flushing(self.window[self.index - 1]);
                    self.index += 1;

                    // After a long run without matches, skip ahead.
                    let n = i64::from(self.ii) - self.p.chain as i64;
                    if n > 0 {
                        let n = 1 + (n >> 6);
                        for _ in 0..n {
                            if self.index >= self.window_end - 1 {
                                break;
                            }
                            self.add_literal_flushing(self.window[self.index - 1]);
                            if self.index < self.max_insert_index {
                                let h = hash4(&self.window[self.index..]);
                                self.chain_head = i64::from(self.insert(self.index, h));
                            }
                            self.index += 1;
                        }
                        self.add_literal_flushing(self.window[self.index - 1]);
                        self.byte_available = false;
                    }
                } else {
                    self.index += 1;
                    self.byte_available = true;
                }
            }
        }
    }
}

impl BlockCompressor for Lazy {
    fn reset(&mut self, dict: &[u8]) {
        self.w.reset();
        self.sync = false;
        self.chain_head = -1;
        self.hash_head.fill(0);
        self.hash_prev.fill(0);
        self.hash_offset = 1;
        self.index = 0;
        self.window_end = 0;
        self.block_start = 0;
        self.byte_available = false;
        self.tokens.reset();
        self.length = MIN_MATCH - 1;
        self.offset = 0;
        self.ii = 0;
        self.max_insert_index = 0;

        // The dictionary goes into the window with its positions hashed,
        // in runs of 256.
        let dict = &dict[dict.len().saturating_sub(WINDOW_SIZE)..];
        let n = dict.len();
        self.window[..n].copy_from_slice(dict);
        let loops = (n + 256 - MIN_MATCH) / 256;
        for j in 0..loops {
            let start = j * 256;
            let end = (start + 256 + MIN_MATCH - 1).min(n);
            self.insert_range(start, end);
        }
        self.window_end += n;
        self.index = n;
    }

    fn write_and_flush(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.window_end == self.window.len() || self.sync {
                self.step();
            }
            let n = self.fill(data);
            data = &data[n..];
        }
        self.sync = true;
        self.step();
        self.w.write_stored_header(0, false);
        self.w.flush();
        self.sync = false;
    }

    fn close(&mut self) {
        self.sync = true;
        self.step();
        self.w.write_stored_header(0, true);
        self.w.flush();
    }

    fn into_output(self) -> Vec<u8> {
        self.w.sink.out
    }
}
