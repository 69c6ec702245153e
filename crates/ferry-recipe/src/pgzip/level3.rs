//! The level 3 matcher: a 16-bit table (5-byte hash) whose buckets keep
//! the last two positions; both are checked and the longer match taken,
//! one position per step with slow skipping, every sixth position inside
//! a match indexed.

use super::fast::{
    FastEncoder, History, MAX_MATCH_OFFSET, PrevEntry, hash_len, load32, load64, match_len,
    matchlen_long, new_prev_table,
};
use super::tokens::Tokens;

const TABLE_BITS: u32 = 16;

pub(super) struct Level3 {
    h: History,
    table: Box<[PrevEntry]>,
}

const INPUT_MARGIN: i32 = 12 - 1;
const MIN_NON_LITERAL_BLOCK_SIZE: usize = 1 + 1 + INPUT_MARGIN as usize;

#[inline(always)]
fn hash(u: u64) -> usize {
    hash_len(u, TABLE_BITS, 5)
}

impl FastEncoder for Level3 {
    fn new() -> Self {
        Level3 {
            h: History::new(),
            table: new_prev_table(1 << TABLE_BITS),
        }
    }

    fn reset(&mut self) {
        self.h.reset();
    }

    fn encode(&mut self, dst: &mut Tokens, src: &[u8]) {
        if let Some(rebase) = self.h.needs_rebase() {
            match rebase {
                None => self.table.fill(PrevEntry::default()),
                Some(min_off) => {
                    for e in self.table.iter_mut() {
                        e.cur = self.h.rebased(e.cur, min_off);
                        e.prev = self.h.rebased(e.prev, min_off);
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
            const SKIP_LOG: i32 = 7;
            let mut next_s = s;
            let mut candidate;
            loop {
                let next_hash = hash(cv);
                s = next_s;
                next_s = s + 1 + ((s - next_emit) >> SKIP_LOG);
                if next_s > s_limit {
                    break 'main;
                }
                let candidates = table[next_hash];
                let now = load64(src, next_s);

                // Offsets below this are too far back (until s + 4).
                let min_offset = cur + s - (MAX_MATCH_OFFSET - 4);
                table[next_hash].push(s + cur);

                candidate = candidates.cur;
                if candidate < min_offset {
                    // The older one is out of reach too.
                    cv = now;
                    continue;
                }
                if cv as u32 == load32(src, candidate - cur) {
                    if candidates.prev < min_offset
                        || cv as u32 != load32(src, candidates.prev - cur)
                    {
                        break;
                    }
                    // Both match: take the longer.
                    let offset = s - (candidate - cur);
                    let o2 = s - (candidates.prev - cur);
                    let a = &src[(s + 4) as usize..];
                    let l1 = match_len(a, &src[(s - offset + 4) as usize..]);
                    let l2 = match_len(a, &src[(s - o2 + 4) as usize..]);
                    if l2 > l1 {
                        candidate = candidates.prev;
                    }
                    break;
                } else {
                    candidate = candidates.prev;
                    if candidate > min_offset && cv as u32 == load32(src, candidate - cur) {
                        break;
                    }
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
                    t += l;
                    // Index the first pair after the match end.
                    if ((t + 8) as usize) < src.len() && t > 0 {
                        let cv = load64(src, t);
                        table[hash(cv)].push(cur + t);
                    }
                    break 'main;
                }

                // Index every sixth position inside the match.
                let mut i = s - l + 2;
                while i < s - 5 {
                    table[hash(load64(src, i))].push(cur + i);
                    i += 6;
                }

                // Index s - 2 to s, and check for a match at s.
                let mut x = load64(src, s - 2);
                table[hash(x)].push(cur + s - 2);
                x >>= 8;
                table[hash(x)].push(cur + s - 1);
                x >>= 8;
                let curr_hash = hash(x);
                let candidates = table[curr_hash];
                cv = x;
                table[curr_hash].push(s + cur);

                candidate = candidates.cur;
                let min_offset = cur + s - (MAX_MATCH_OFFSET - 4);
                if candidate > min_offset {
                    if cv as u32 == load32(src, candidate - cur) {
                        continue;
                    }
                    candidate = candidates.prev;
                    if candidate > min_offset && cv as u32 == load32(src, candidate - cur) {
                        continue;
                    }
                }
                cv = x >> 8;
                s += 1;
                break;
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
