//! The level 1 matcher: one table of single entries hashed on 5 bytes,
//! probing two positions per step and skipping faster the longer it goes
//! without a match, then chaining straight into a repeat check at the end
//! of each match.

use super::fast::{
    FastEncoder, History, MAX_MATCH_OFFSET, TABLE_BITS, TABLE_SIZE, hash_len, load32, load64,
    new_table,
};
use super::tokens::Tokens;

pub(super) struct Level1 {
    h: History,
    table: Box<[i32]>,
}

const INPUT_MARGIN: i32 = 12 - 1;
const MIN_NON_LITERAL_BLOCK_SIZE: usize = 1 + 1 + INPUT_MARGIN as usize;

#[inline(always)]
fn hash(u: u64) -> usize {
    hash_len(u, TABLE_BITS, 5)
}

impl FastEncoder for Level1 {
    fn new() -> Self {
        Level1 {
            h: History::new(),
            table: new_table(TABLE_SIZE),
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
            let mut next_s;
            let mut candidate;
            loop {
                let mut next_hash = hash(cv);
                candidate = table[next_hash];
                next_s = s + DO_EVERY + ((s - next_emit) >> SKIP_LOG);
                if next_s > s_limit {
                    break 'main;
                }
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
                    table[next_hash] = next_s + cur;
                    break;
                }
                cv = now;
                s = next_s;
            }

            // A 4-byte match at s; emit it and keep matching while the
            // position right after each match matches too.
            loop {
                let mut t = candidate - cur;
                let mut l = 4 + super::fast::matchlen_long(s + 4, t + 4, src);

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
                    // Index the first pair after the match end.
                    if ((s + l + 8) as usize) < src.len() {
                        let cv = load64(src, s);
                        table[hash(cv)] = s + cur;
                    }
                    break 'main;
                }

                // Index s - 2 and s, and check for a match at s.
                let mut x = load64(src, s - 2);
                let o = cur + s - 2;
                table[hash(x)] = o;
                x >>= 16;
                let curr_hash = hash(x);
                candidate = table[curr_hash];
                table[curr_hash] = o + 2;

                let offset = s - (candidate - cur);
                if offset > MAX_MATCH_OFFSET || x as u32 != load32(src, candidate - cur) {
                    cv = x >> 8;
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
