//! The level 6 matcher: level 5's tables (4-byte hash, single entries;
//! 7-byte hash, two entries) with a check of the last match distance one
//! byte ahead, the end-of-match retry against both long entries for every
//! match, and every position inside a match indexed in the long table.

use super::fast::{
    FastEncoder, History, MAX_MATCH_OFFSET, PrevEntry, TABLE_BITS, TABLE_SIZE, hash_len, hash7,
    load32, load64, matchlen, matchlen_long, new_prev_table, new_table,
};
use super::tokens::Tokens;

pub(super) struct Level6 {
    h: History,
    table: Box<[i32]>,
    b_table: Box<[PrevEntry]>,
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

impl FastEncoder for Level6 {
    fn new() -> Self {
        Level6 {
            h: History::new(),
            table: new_table(TABLE_SIZE),
            b_table: new_prev_table(TABLE_SIZE),
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
                    self.b_table.fill(PrevEntry::default());
                }
                Some(min_off) => {
                    for v in self.table.iter_mut() {
                        *v = self.h.rebased(*v, min_off);
                    }
                    for e in self.b_table.iter_mut() {
                        if e.cur <= min_off {
                            *e = PrevEntry::default();
                        } else {
                            e.cur = self.h.rebased(e.cur, min_off);
                            e.prev = self.h.rebased(e.prev, min_off);
                        }
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
        // Distance of the last match; 1 until there is one.
        let mut repeat: i32 = 1;

        'main: loop {
            const SKIP_LOG: i32 = 7;
            const DO_EVERY: i32 = 1;
            let mut next_s = s;
            let mut l: i32 = 0;
            let mut t: i32;
            loop {
                let mut next_hash_s = hs(cv);
                let mut next_hash_l = hl(cv);
                s = next_s;
                next_s = s + DO_EVERY + ((s - next_emit) >> SKIP_LOG);
                if next_s > s_limit {
                    break 'main;
                }
                let s_candidate = table[next_hash_s];
                let l_candidate = b_table[next_hash_l];
                let next = load64(src, next_s);
                table[next_hash_s] = s + cur;
                b_table[next_hash_l].push(s + cur);

                next_hash_s = hs(next);
                next_hash_l = hl(next);

                t = l_candidate.cur - cur;
                if s - t < MAX_MATCH_OFFSET {
                    if cv as u32 == load32(src, t) {
                        table[next_hash_s] = next_s + cur;
                        b_table[next_hash_l].push(next_s + cur);

                        let t2 = l_candidate.prev - cur;
                        if s - t2 < MAX_MATCH_OFFSET && cv as u32 == load32(src, t2) {
                            l = matchlen(s + 4, t + 4, src) + 4;
                            let ml1 = matchlen(s + 4, t2 + 4, src) + 4;
                            if ml1 > l {
                                t = t2;
                                l = ml1;
                                break;
                            }
                        }
                        break;
                    }
                    t = l_candidate.prev - cur;
                    if s - t < MAX_MATCH_OFFSET && cv as u32 == load32(src, t) {
                        table[next_hash_s] = next_s + cur;
                        b_table[next_hash_l].push(next_s + cur);
                        break;
                    }
                }

                t = s_candidate - cur;
                if s - t < MAX_MATCH_OFFSET && cv as u32 == load32(src, t) {
                    l = matchlen(s + 4, t + 4, src) + 4;
                    let l_candidate = b_table[next_hash_l];
                    table[next_hash_s] = next_s + cur;
                    b_table[next_hash_l].push(next_s + cur);

                    // The last distance, one byte on.
                    let t2 = s - repeat + 1;
                    if load32(src, t2) == (cv >> 8) as u32 {
                        let ml = matchlen(s + 5, t2 + 4, src) + 4;
                        if ml > l {
                            t = t2;
                            l = ml;
                            s += 1;
                            break;
                        }
                    }

                    // The next position's long candidates.
                    let t2 = l_candidate.cur - cur;
                    if next_s - t2 < MAX_MATCH_OFFSET {
                        if load32(src, t2) == next as u32 {
                            let ml = matchlen(next_s + 4, t2 + 4, src) + 4;
                            if ml > l {
                                t = t2;
                                s = next_s;
                                l = ml;
                            }
                        }
                        let t2 = l_candidate.prev - cur;
                        if next_s - t2 < MAX_MATCH_OFFSET && load32(src, t2) == next as u32 {
                            let ml = matchlen(next_s + 4, t2 + 4, src) + 4;
                            if ml > l {
                                t = t2;
                                s = next_s;
                                l = ml;
                                break;
                            }
                        }
                    }
                    break;
                }
                cv = next;
            }

            if l == 0 {
                l = matchlen_long(s + 4, t + 4, src) + 4;
            } else if l == 258 {
                l += matchlen_long(s + l, t + l, src);
            }

            // A better match may end where this one ends.
            let s_at = s + l;
            if s_at < s_limit {
                const SKIP_BEGINNING: i32 = 2;
                let e_long = b_table[hl(load64(src, s_at))];
                let t2 = e_long.cur - cur - l + SKIP_BEGINNING;
                let s2 = s + SKIP_BEGINNING;
                let off = s2 - t2;
                if off < MAX_MATCH_OFFSET {
                    if off > 0 && t2 >= 0 {
                        let l2 = matchlen_long(s2, t2, src);
                        if l2 > l {
                            t = t2;
                            l = l2;
                            s = s2;
                        }
                    }
                    let t2 = e_long.prev - cur - l + SKIP_BEGINNING;
                    let off = s2 - t2;
                    if off > 0 && off < MAX_MATCH_OFFSET && t2 >= 0 {
                        let l2 = matchlen_long(s2, t2, src);
                        if l2 > l {
                            t = t2;
                            l = l2;
                            s = s2;
                        }
                    }
                }
            }

            while t > 0 && s > next_emit && src[(t - 1) as usize] == src[(s - 1) as usize] {
                s -= 1;
                t -= 1;
                l += 1;
            }
            if next_emit < s {
                dst.add_literals(&src[next_emit as usize..s as usize]);
            }
            dst.add_match_long(l, (s - t - 1) as u32);
            repeat = s - t;
            s += l;
            next_emit = s;
            if next_s >= s {
                s = next_s + 1;
            }
            if s >= s_limit {
                // Index after the match end.
                let mut i = next_s + 1;
                while i < src.len() as i32 - 8 {
                    let cv = load64(src, i);
                    table[hs(cv)] = i + cur;
                    b_table[hl(cv)].push(i + cur);
                    i += 2;
                }
                break 'main;
            }

            // Every long hash inside the match, every second short one.
            let mut i = next_s + 1;
            while i < s - 1 {
                let cv = load64(src, i);
                let e = i + cur;
                table[hs(cv)] = e;
                b_table[hl(cv)].push(e);
                b_table[hl(cv >> 8)].push(e + 1);
                i += 2;
            }

            cv = load64(src, s);
        }

        if (next_emit as usize) < src.len() {
            if dst.len() == 0 {
                return;
            }
            dst.add_literals(&src[next_emit as usize..]);
        }
    }
}
