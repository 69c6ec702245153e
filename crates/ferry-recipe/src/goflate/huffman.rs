//! Length-limited Huffman codes the way Go builds them.
//!
//! Any optimal length-limited code would decode the same, but the bytes
//! depend on exactly which symbol gets which length, so this replays Go's
//! construction step for step:
//!
//! - symbols with a zero count get no code; with one or two symbols left,
//!   each gets a one-bit code numbered in symbol order;
//! - otherwise the symbols are sorted by (count, symbol) and Go's
//!   level-by-level chain construction (a package-merge variant that tracks,
//!   per level, the next leaf and the next pair from the level below, and
//!   prefers the pair when the two weigh the same) yields how many symbols
//!   get each length;
//! - lengths are handed out from the most frequent end of that sorted list,
//!   and within one length the codes are numbered in symbol order, giving a
//!   canonical code.

/// A code word, already bit-reversed for LSB-first output, and its length.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(crate) struct HCode {
    pub(crate) code: u16,
    pub(crate) len: u16,
}

#[derive(Clone, Copy, Default)]
struct Node {
    symbol: u16,
    freq: i32,
}

/// The longest code the construction supports, plus one.
const MAX_BITS_LIMIT: usize = 16;

/// A code over one alphabet, rebuilt for each block.
pub(crate) struct HuffmanEncoder {
    pub(crate) codes: Vec<HCode>,
    /// Scratch list of the used symbols, one spare slot for the sentinel.
    nodes: Vec<Node>,
}

impl HuffmanEncoder {
    pub(crate) fn new(size: usize) -> Self {
        HuffmanEncoder {
            codes: vec![HCode::default(); size],
            nodes: vec![Node::default(); size + 1],
        }
    }

    /// DEFLATE's fixed literal/length code (RFC 1951 3.2.6).
    pub(crate) fn fixed_literal() -> Self {
        let mut h = HuffmanEncoder::new(super::token::MAX_NUM_LIT);
        for (ch, c) in h.codes.iter_mut().enumerate() {
            let ch = ch as u16;
            let (bits, size) = match ch {
                0..=143 => (ch + 48, 8),
                144..=255 => (ch + 400 - 144, 9),
                256..=279 => (ch - 256, 7),
                _ => (ch + 192 - 280, 8),
            };
            *c = HCode {
                code: reverse_bits(bits, size),
                len: size,
            };
        }
        h
    }

    /// DEFLATE's fixed distance code: five bits each.
    pub(crate) fn fixed_offset() -> Self {
        let mut h = HuffmanEncoder::new(super::token::OFFSET_CODE_COUNT);
        for (ch, c) in h.codes.iter_mut().enumerate() {
            *c = HCode {
                code: reverse_bits(ch as u16, 5),
                len: 5,
            };
        }
        h
    }

    /// Bits the symbols counted in `freq` take in this code.
    pub(crate) fn bit_length(&self, freq: &[i32]) -> usize {
        freq.iter()
            .zip(&self.codes)
            .filter(|(f, _)| **f != 0)
            .map(|(f, c)| *f as usize * usize::from(c.len))
            .sum()
    }

    /// Rebuilds the code for the symbol counts `freq` (one per symbol of
    /// the alphabet), no code longer than `max_bits` (< 16).
    pub(crate) fn generate(&mut self, freq: &[i32], max_bits: usize) {
        debug_assert_eq!(freq.len(), self.codes.len());
        let mut count = 0;
        for (i, &f) in freq.iter().enumerate() {
            if f != 0 {
                self.nodes[count] = Node {
                    symbol: i as u16,
                    freq: f,
                };
                count += 1;
            } else {
                self.codes[i].len = 0;
            }
        }
        if count <= 2 {
            for i in 0..count {
                let symbol = usize::from(self.nodes[i].symbol);
                self.codes[symbol] = HCode {
                    code: i as u16,
                    len: 1,
                };
            }
            return;
        }
        let list = &mut self.nodes[..count];
        list.sort_unstable_by_key(|n| (n.freq, n.symbol));
        let bit_count = bit_counts(&mut self.nodes[..=count], max_bits);
        self.assign(&bit_count, count);
    }

    /// Hands out lengths from the most frequent end of the sorted list and
    /// canonical codes in symbol order within each length.
    fn assign(&mut self, bit_count: &[i32; MAX_BITS_LIMIT + 1], count: usize) {
        let mut code: u16 = 0;
        let mut end = count;
        for (n, &bits) in bit_count.iter().enumerate() {
            code <<= 1;
            if n == 0 || bits == 0 {
                continue;
            }
            let start = end - bits as usize;
            let chunk = &mut self.nodes[start..end];
            chunk.sort_unstable_by_key(|n| n.symbol);
            for node in chunk.iter() {
                self.codes[usize::from(node.symbol)] = HCode {
                    code: reverse_bits(code, n as u16),
                    len: n as u16,
                };
                code = code.wrapping_add(1);
            }
            end = start;
        }
    }
}

#[derive(Clone, Copy, Default)]
struct LevelInfo {
    /// Weight of the last chain made at this level.
    last_freq: i32,
    /// Weight of the next leaf this level would take.
    next_char_freq: i32,
    /// Weight of the next pair from the level below this level would take.
    next_pair_freq: i32,
    /// Chains still to make at this level before going up.
    needed: i32,
}

/// How many symbols get each code length (index = length), for `list`:
/// the used symbols sorted by (count, symbol) followed by one spare slot.
fn bit_counts(list: &mut [Node], max_bits: usize) -> [i32; MAX_BITS_LIMIT + 1] {
    assert!(max_bits < MAX_BITS_LIMIT, "code length limit too large");
    let n = list.len() - 1;
    list[n] = Node {
        symbol: u16::MAX,
        freq: i32::MAX,
    };
    // No tree over n leaves is deeper than n - 1.
    let max_bits = max_bits.min(n - 1);

    // Level 0 is a placeholder whose `needed` stays 0, so level 1's pair
    // weight is never taken.
    let mut levels = [LevelInfo::default(); MAX_BITS_LIMIT];
    // leaf_counts[i][j]: leaves left of the level-j ancestor of level i's
    // rightmost chain.
    let mut leaf_counts = [[0i32; MAX_BITS_LIMIT]; MAX_BITS_LIMIT];
    for level in 1..=max_bits {
        levels[level] = LevelInfo {
            last_freq: list[1].freq,
            next_char_freq: list[2].freq,
            next_pair_freq: if level == 1 {
                i32::MAX
            } else {
                list[0].freq + list[1].freq
            },
            needed: 0,
        };
        leaf_counts[level][level] = 2;
    }
    // 2n - 2 chains at the top level, two of them made above.
    levels[max_bits].needed = 2 * n as i32 - 4;

    let mut level = max_bits;
    loop {
        let l = levels[level];
        if l.next_pair_freq == i32::MAX && l.next_char_freq == i32::MAX {
            // Out of leaves and pairs: this level is done for good.
            levels[level].needed = 0;
            levels[level + 1].next_pair_freq = i32::MAX;
            level += 1;
            continue;
        }
        let prev_freq = l.last_freq;
        if l.next_char_freq < l.next_pair_freq {
            // Take the next leaf.
            let leaves = leaf_counts[level][level] + 1;
            levels[level].last_freq = l.next_char_freq;
            leaf_counts[level][level] = leaves;
            levels[level].next_char_freq = list[leaves as usize].freq;
        } else {
            // Take the pair from below, which has to be made again.
            levels[level].last_freq = l.next_pair_freq;
            let (below, here) = leaf_counts.split_at_mut(level);
            here[0][..level].copy_from_slice(&below[level - 1][..level]);
            levels[level - 1].needed = 2;
        }
        levels[level].needed -= 1;
        if levels[level].needed == 0 {
            if level == max_bits {
                break;
            }
            levels[level + 1].next_pair_freq = prev_freq.wrapping_add(levels[level].last_freq);
            level += 1;
        } else {
            while levels[level - 1].needed > 0 {
                level -= 1;
            }
        }
    }
    assert_eq!(
        leaf_counts[max_bits][max_bits], n as i32,
        "code construction lost leaves"
    );

    let mut bit_count = [0i32; MAX_BITS_LIMIT + 1];
    let counts = &leaf_counts[max_bits];
    for (bits, level) in (1..=max_bits).rev().enumerate() {
        bit_count[bits + 1] = counts[level] - counts[level - 1];
    }
    bit_count
}

/// The low `len` bits of `number` in reverse order.
#[inline]
pub(crate) fn reverse_bits(number: u16, len: u16) -> u16 {
    (number << (16 - len)).reverse_bits()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lengths(freq: &[i32], max_bits: usize) -> Vec<u16> {
        let mut h = HuffmanEncoder::new(freq.len());
        h.generate(freq, max_bits);
        h.codes.iter().map(|c| c.len).collect()
    }

    #[test]
    fn small_alphabets() {
        assert_eq!(lengths(&[0, 5, 0, 1], 15), vec![0, 1, 0, 1]);
        assert_eq!(lengths(&[1, 1, 1, 1], 15), vec![2, 2, 2, 2]);
        assert_eq!(lengths(&[1, 1, 2, 4], 15), vec![3, 3, 2, 1]);
    }

    #[test]
    fn respects_the_limit_and_kraft() {
        // Fibonacci counts make the unlimited tree as deep as possible.
        let mut freq = vec![1i32, 1];
        while freq.len() < 30 {
            let n = freq.len();
            freq.push(freq[n - 1] + freq[n - 2]);
        }
        for limit in [7usize, 10, 15] {
            let l = lengths(&freq, limit);
            assert!(l.iter().all(|&x| (1..=limit as u16).contains(&x)));
            let kraft: f64 = l.iter().map(|&x| 0.5f64.powi(i32::from(x))).sum();
            assert!((kraft - 1.0).abs() < 1e-12, "{limit}: {kraft}");
        }
    }
}
