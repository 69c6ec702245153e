//! The level 2 matcher: level 1's search with a 17-bit table (5-byte
//! hash), indexing three positions in every seven inside each match.

use super::fast::{
    FastEncoder, History, MAX_MATCH_OFFSET, hash_len, load32, load64, matchlen_long, new_table,
};
use super::tokens::Tokens;

const B_TABLE_BITS: u32 = 17;

pub(super) struct Level2 {
    h: History,
    table: Box<[i32]>,
}

const INPUT_MARGIN: i32 = 12 - 1;
const MIN_NON_LITERAL_BLOCK_SIZE: usize = 1 + 1 + INPUT_MARGIN as usize;

#[inline(always)]
fn hash(u: u64) -> usize {
    hash_len(u, B_TABLE_BITS, 5)
}

impl FastEncoder for Level2 {
    fn new() -> Self {
        Level2 {
            h: History::new(),
            table: new_table(1 << B_TABLE_BITS),
        }
    }

    fn reset(&mut self) {
        self.h.reset();
    }

    fn encode(&mut self, dst: &mut Tokens, src: &[u8]) {
        if let Some(rebase) = self.h.needs_rebase() {
            match rebase {
                None => self.table.fill(0),
                Some(min_off) => {
                    for v in self.table.iter_mut() {
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
        let mut next_emit = s;
        let s_limit = src.len() as i32 - INPUT_MARGIN;
        let mut cv = load64(src, s);

        'main: loop {
            const SKIP_LOG: i32 = 5;
            const DO_EVERY: i32 = 2;
            let mut next_s = s;
            let mut candidate;
            loop {
                let mut next_hash = hash(cv);
                s = next_s;
                next_s = s + DO_EVERY + ((s - next_emit) >> SKIP_LOG);
                if next_s > s_limit {
                    break 'main;
                }
                candidate = table[next_hash];
                let mut now = load64(src, next_s);
                table[next_hash] = s + cur;
                next_hash = hash(now);

                let offset = s - (candidate - cur);
                if offset < MAX_MATCH_OFFSET && cv as u32 == load32(src, candidate - cur) {
                    table[next_hash] = next_s + cur;
                    break;
                }

                // One more right away.
                cv = now;
                s = next_s;
                next_s += 1;
                candidate = table[next_hash];
                now >>= 8;
                table[next_hash] = s + cur;

                let offset = s - (candidate - cur);
                if offset < MAX_MATCH_OFFSET && cv as u32 == load32(src, candidate - cur) {
                    break;
                }
                cv = now;
            }

            loop {
                let mut t = candidate - cur;
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
                    if ((s + l + 8) as usize) < src.len() {
                        let cv = load64(src, s);
                        table[hash(cv)] = s + cur;
                    }
                    break 'main;
                }

                // Index three positions in every seven inside the match.
                let mut i = s - l + 2;
                while i < s - 5 {
                    let x = load64(src, i);
                    table[hash(x)] = cur + i;
                    table[hash(x >> 16)] = cur + i + 2;
                    table[hash(x >> 32)] = cur + i + 4;
                    i += 7;
                }

                // Index s - 2 to s, and check for a match at s.
                let x = load64(src, s - 2);
                let o = cur + s - 2;
                table[hash(x)] = o;
                table[hash(x >> 8)] = o + 1;
                let curr_hash = hash(x >> 16);
                candidate = table[curr_hash];
                table[curr_hash] = o + 2;

                let offset = s - (candidate - cur);
                if offset > MAX_MATCH_OFFSET || (x >> 16) as u32 != load32(src, candidate - cur) {
                    cv = x >> 24;
                    s += 1;
                    break;
                }
            }
        }

        if (next_emit as usize) < src.len() {
            if dst.len() == 0 {
                return;
            }
            dst.add_literals(&src[next_emit as usize..]);
        }
    }
}
