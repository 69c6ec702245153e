//! The level 4 matcher: a 4-byte-hash table and a 7-byte-hash table of
//! single entries; a long-hash hit wins outright, a short-hash hit is
//! replaced by the next position's long candidate when that is longer, and
//! every third position inside a match is indexed.

use super::fast::{
    FastEncoder, History, MAX_MATCH_OFFSET, TABLE_BITS, TABLE_SIZE, hash_len, hash7, load32,
    load64, match_len, matchlen_long, new_table,
};
use super::tokens::Tokens;

pub(super) struct Level4 {
    h: History,
    table: Box<[i32]>,
    b_table: Box<[i32]>,
}

const INPUT_MARGIN: i32 = 12 - 1;
const MIN_NON_LITERAL_BLOCK_SIZE: usize = 1 + 1 + INPUT_MARGIN as usize;

#[inline(always)]
fn hs(u: u64) -> usize {
    hash_len(u, TABLE_BITS, 4)
}

#[inline(always)]
fn hl(u: u64) -> usize {
    hash7(u, TABLE_BITS)
}

impl FastEncoder for Level4 {
    fn new() -> Self {
        Level4 {
            h: History::new(),
            table: new_table(TABLE_SIZE),
            b_table: new_table(TABLE_SIZE),
        }
    }

    fn reset(&mut self) {
        self.h.reset();
    }

    fn encode(&mut self, dst: &mut Tokens, src: &[u8]) {
        if let Some(rebase) = self.h.needs_rebase() {
            match rebase {
                None => {
                    self.table.fill(0);
                    self.b_table.fill(0);
                }
                Some(min_off) => {
                    for v in self.table.iter_mut().chain(self.b_table.iter_mut()) {
                        *v = self.h.rebased(*v, min_off);
                    }
                }
            }
            self.h.cur = MAX_MATCH_OFFSET;
        }

        let mut s = self.h.add_block(src);
        if src.len() < MIN_NON_LITERAL_BLOCK_SIZE {
            return;
        }
        let cur = self.h.cur;
        let src = &self.h.hist[..];
        let table = &mut self.table[..];
        let b_table = &mut self.b_table[..];
        let mut next_emit = s;
        let s_limit = src.len() as i32 - INPUT_MARGIN;
        let mut cv = load64(src, s);

        'main: loop {
            const SKIP_LOG: i32 = 6;
            const DO_EVERY: i32 = 1;
            let mut next_s = s;
            let mut t;
            loop {
                let next_hash_s = hs(cv);
                let next_hash_l = hl(cv);
                s = next_s;
                next_s = s + DO_EVERY + ((s - next_emit) >> SKIP_LOG);
                if next_s > s_limit {
                    break 'main;
                }
                let s_candidate = table[next_hash_s];
                let l_candidate = b_table[next_hash_l];
                let next = load64(src, next_s);
                table[next_hash_s] = s + cur;
                b_table[next_hash_l] = s + cur;

                t = l_candidate - cur;
                if s - t < MAX_MATCH_OFFSET && cv as u32 == load32(src, t) {
                    // A long-hash match: take it.
                    break;
                }

                t = s_candidate - cur;
                if s - t < MAX_MATCH_OFFSET && cv as u32 == load32(src, t) {
                    // A 4-byte match; the next position's long candidate
                    // replaces it if longer.
                    let l_candidate = b_table[hl(next)];
                    let l_off = next_s - (l_candidate - cur);
                    if l_off < MAX_MATCH_OFFSET && load32(src, l_candidate - cur) == next as u32 {
                        let l1 = match_len(&src[(s + 4) as usize..], &src[(t + 4) as usize..]);
                        let l2 = match_len(
                            &src[(next_s + 4) as usize..],
                            &src[(next_s - l_off + 4) as usize..],
                        );
                        if l2 > l1 {
                            s = next_s;
                            t = l_candidate - cur;
                        }
                    }
                    break;
                }
                cv = next;
            }

            let mut l = matchlen_long(s + 4, t + 4, src) + 4;
            while t > 0 && s > next_emit && src[(t - 1) as usize] == src[(s - 1) as usize] {
                s -= 1;
                t -= 1;
                l += 1;
            }
            if next_emit < s {
                dst.add_literals(&src[next_emit as usize..s as usize]);
            }
            dst.add_match_long(l, (s - t - 1) as u32);
            s += l;
            next_emit = s;
            if next_s >= s {
                s = next_s + 1;
            }
            if s >= s_limit {
                if ((s + 8) as usize) < src.len() {
                    let cv = load64(src, s);
                    table[hs(cv)] = s + cur;
                    b_table[hl(cv)] = s + cur;
                }
                break 'main;
            }

            // Index every third position inside the match.
            let mut i = next_s;
            while i < s - 1 {
                let cv = load64(src, i);
                let e = i + cur;
                b_table[hl(cv)] = e;
                b_table[hl(cv >> 8)] = e + 1;
                table[hs(cv >> 8)] = e + 1;
                i += 3;
            }

            // Index s - 1 before carrying on at s.
            let x = load64(src, s - 1);
            let o = cur + s - 1;
            table[hs(x)] = o;
            b_table[hl(x)] = o;
            cv = x >> 8;
        }

        if (next_emit as usize) < src.len() {
            if dst.len() == 0 {
                return;
            }
            dst.add_literals(&src[next_emit as usize..]);
        }
    }
}
