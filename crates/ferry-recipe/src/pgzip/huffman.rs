//! Length-limited Huffman codes as klauspost/compress builds them.
//!
//! Symbols with a nonzero count are sorted by (count, symbol) with the
//! library's own quicksort — whose depth-limit fallback is a heapsort by
//! symbol alone, so the exact partition sequence is replayed — then the
//! number of codes of each length comes from the boundary package-merge
//! walk over levels, and codes are handed out canonically: longest codes to
//! the rarest symbols, within one length in symbol order.

/// One code: bit pattern already reversed for LSB-first output, and its
/// length. Length 0 means the symbol has no code.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(super) struct HCode {
    pub(super) code: u16,
    pub(super) len: u8,
}

impl HCode {
    fn new(code: u16, len: u8) -> Self {
        HCode {
            code: reverse_bits(code, len),
            len,
        }
    }

    #[inline]
    pub(super) fn is_zero(self) -> bool {
        self.len == 0 && self.code == 0
    }
}

fn reverse_bits(number: u16, bit_length: u8) -> u16 {
    (number << ((16 - u32::from(bit_length)) & 15)).reverse_bits()
}

#[derive(Clone, Copy, Default)]
struct Node {
    literal: u16,
    freq: u16,
}

const MAX_NODE: Node = Node {
    literal: u16::MAX,
    freq: u16::MAX,
};

/// A Huffman code over a fixed alphabet, rebuilt in place by
/// [`HuffmanEncoder::generate`]. Codes of symbols past the frequency slice
/// given to `generate` keep their old values, as in the original.
pub(super) struct HuffmanEncoder {
    pub(super) codes: Vec<HCode>,
    bit_count: [i32; 17],
    nodes: Vec<Node>,
}

impl HuffmanEncoder {
    pub(super) fn new(size: usize) -> Self {
        HuffmanEncoder {
            codes: vec![HCode::default(); size],
            bit_count: [0; 17],
            nodes: vec![Node::default(); size + 1],
        }
    }

    /// The fixed literal/length code of RFC 1951.
    pub(super) fn fixed_literal() -> Self {
        let mut h = HuffmanEncoder::new(286);
        for ch in 0..286u16 {
            let (bits, size) = match ch {
                0..=143 => (ch + 48, 8),
                144..=255 => (ch + 400 - 144, 9),
                256..=279 => (ch - 256, 7),
                _ => (ch + 192 - 280, 8),
            };
            h.codes[ch as usize] = HCode::new(bits, size);
        }
        h
    }

    /// The fixed offset code of RFC 1951.
    pub(super) fn fixed_offset() -> Self {
        let mut h = HuffmanEncoder::new(30);
        for ch in 0..30u16 {
            h.codes[ch as usize] = HCode::new(ch, 5);
        }
        h
    }

    /// Bits to code `freq` with this code (symbols without a code count 0).
    pub(super) fn bit_length(&self, freq: &[u16]) -> usize {
        freq.iter()
            .zip(&self.codes)
            .filter(|(f, _)| **f != 0)
            .map(|(&f, c)| usize::from(f) * usize::from(c.len))
            .sum()
    }

    /// Like [`bit_length`](Self::bit_length), but `None` when a used symbol
    /// has no code.
    pub(super) fn can_reuse_bits(&self, freq: &[u16]) -> Option<usize> {
        let mut total = 0;
        for (&f, c) in freq.iter().zip(&self.codes) {
            if f != 0 {
                if c.is_zero() {
                    return None;
                }
                total += usize::from(f) * usize::from(c.len);
            }
        }
        Some(total)
    }

    /// Rebuilds the code for `freq` with codes at most `max_bits` long.
    pub(super) fn generate(&mut self, freq: &[u16], max_bits: i32) {
        let mut count = 0;
        for (i, &f) in freq.iter().enumerate() {
            if f != 0 {
                self.nodes[count] = Node {
                    literal: i as u16,
                    freq: f,
                };
                count += 1;
            } else {
                self.codes[i] = HCode::default();
            }
        }
        if count <= 2 {
            // One or two symbols: each gets a one-bit code, in symbol order.
            for i in 0..count {
                let node = self.nodes[i];
                self.codes[node.literal as usize] = HCode {
                    code: i as u16,
                    len: 1,
                };
            }
            return;
        }
        sort_by_freq(&mut self.nodes[..count]);
        let max_bits = self.bit_counts(count, max_bits);
        self.assign(count, max_bits);
    }

    /// How many symbols get each code length (in `self.bit_count[1..]`);
    /// returns the effective maximum length.
    fn bit_counts(&mut self, n: usize, mut max_bits: i32) -> usize {
        #[derive(Clone, Copy, Default)]
        struct Level {
            level: i32,
            last_freq: i32,
            next_char_freq: i32,
            next_pair_freq: i32,
            needed: i32,
        }
        let list = &mut self.nodes[..n + 1];
        list[n] = MAX_NODE;
        let n = n as i32;
        if max_bits > n - 1 {
            max_bits = n - 1;
        }
        let mut levels = [Level::default(); 16];
        let mut leaf_counts = [[0i32; 16]; 16];

        let l2f = i32::from(list[2].freq);
        let l1f = i32::from(list[1].freq);
        let l0f = i32::from(list[0].freq) + i32::from(list[1].freq);
        for level in 1..=max_bits {
            let l = level as usize;
            levels[l] = Level {
                level,
                last_freq: l1f,
                next_char_freq: l2f,
                next_pair_freq: l0f,
                needed: 0,
            };
            leaf_counts[l][l] = 2;
            if level == 1 {
                levels[l].next_pair_freq = i32::MAX;
            }
        }
        levels[max_bits as usize].needed = 2 * n - 4;

        let mut level = max_bits as usize;
        while level < 16 {
            if levels[level].next_pair_freq == i32::MAX && levels[level].next_char_freq == i32::MAX
            {
                // Out of leaves and pairs on this level.
                levels[level].needed = 0;
                levels[level + 1].next_pair_freq = i32::MAX;
                level += 1;
                continue;
            }
            let prev_freq = levels[level].last_freq;
            if levels[level].next_char_freq < levels[level].next_pair_freq {
                // Next item on this level is a leaf.
                let next = leaf_counts[level][level] + 1;
                levels[level].last_freq = levels[level].next_char_freq;
                leaf_counts[level][level] = next;
                let e = list[next as usize];
                levels[level].next_char_freq = if e.literal < u16::MAX {
                    i32::from(e.freq)
                } else {
                    i32::MAX
                };
            } else {
                // Next item is a pair from the level below.
                levels[level].last_freq = levels[level].next_pair_freq;
                let save = leaf_counts[level][level];
                leaf_counts[level] = leaf_counts[level - 1];
                leaf_counts[level][level] = save;
                let below = levels[level].level as usize - 1;
                levels[below].needed = 2;
            }
            levels[level].needed -= 1;
            if levels[level].needed == 0 {
                if levels[level].level == max_bits {
                    break;
                }
                let up = levels[level].level as usize + 1;
                levels[up].next_pair_freq = prev_freq + levels[level].last_freq;
                level += 1;
            } else {
                while levels[level - 1].needed > 0 {
                    level -= 1;
                }
            }
        }
        assert_eq!(
            leaf_counts[max_bits as usize][max_bits as usize], n,
            "huffman: leaf count mismatch"
        );

        let max_bits = max_bits as usize;
        let counts = &leaf_counts[max_bits];
        // Level `max_bits` holds the 1-bit codes, level 1 the longest.
        for (bits, level) in (1..).zip((1..=max_bits).rev()) {
            self.bit_count[bits] = counts[level] - counts[level - 1];
        }
        max_bits
    }

    /// Canonical codes: the `bit_count[len]` most frequent remaining
    /// symbols get length `len`, numbered in symbol order.
    fn assign(&mut self, count: usize, max_bits: usize) {
        let mut code = 0u16;
        let mut end = count;
        for n in 0..=max_bits {
            code <<= 1;
            let bits = self.bit_count[n];
            if n == 0 || bits == 0 {
                continue;
            }
            let start = end - bits as usize;
            let chunk = &mut self.nodes[start..end];
            // Symbols are distinct, so any sort gives the same order.
            chunk.sort_unstable_by_key(|node| node.literal);
            for node in chunk.iter() {
                self.codes[node.literal as usize] = HCode::new(code, n as u8);
                code = code.wrapping_add(1);
            }
            end = start;
        }
    }
}

// ---------------------------------------------------------------------------
// The sort by (frequency, symbol): a replay of the library's quicksort
// (median-of-three / ninther pivots, duplicate protection, shell+insertion
// sort below 13 elements). Its depth-limit fallback sorts by symbol only,
// so the result is not always a (frequency, symbol) order, and the steps
// must be followed exactly.

#[inline]
fn less(data: &[Node], i: usize, j: usize) -> bool {
    let (a, b) = (data[i], data[j]);
    a.freq == b.freq && a.literal < b.literal || a.freq < b.freq
}

fn sort_by_freq(data: &mut [Node]) {
    let n = data.len();
    quick_sort(data, 0, n, max_depth(n));
}

fn max_depth(n: usize) -> usize {
    let mut depth = 0;
    let mut i = n;
    while i > 0 {
        depth += 1;
        i >>= 1;
    }
    depth * 2
}

fn quick_sort(data: &mut [Node], mut a: usize, mut b: usize, mut max_depth: usize) {
    while b - a > 12 {
        if max_depth == 0 {
            heap_sort_by_literal(data, a, b);
            return;
        }
        max_depth -= 1;
        let (mlo, mhi) = do_pivot(data, a, b);
        if mlo - a < b - mhi {
            quick_sort(data, a, mlo, max_depth);
            a = mhi;
        } else {
            quick_sort(data, mhi, b, max_depth);
            b = mlo;
        }
    }
    if b - a > 1 {
        // Shell sort pass with gap 6, then insertion sort.
        for i in a + 6..b {
            if less(data, i, i - 6) {
                data.swap(i, i - 6);
            }
        }
        for i in a + 1..b {
            let mut j = i;
            while j > a && less(data, j, j - 1) {
                data.swap(j, j - 1);
                j -= 1;
            }
        }
    }
}

/// Moves the median of `data[m0], data[m1], data[m2]` into `data[m1]`.
fn median_of_three(data: &mut [Node], m1: usize, m0: usize, m2: usize) {
    if less(data, m1, m0) {
        data.swap(m1, m0);
    }
    if less(data, m2, m1) {
        data.swap(m2, m1);
        if less(data, m1, m0) {
            data.swap(m1, m0);
        }
    }
}

fn do_pivot(data: &mut [Node], lo: usize, hi: usize) -> (usize, usize) {
    let m = (lo + hi) >> 1;
    if hi - lo > 40 {
        let s = (hi - lo) / 8;
        median_of_three(data, lo, lo + s, lo + 2 * s);
        median_of_three(data, m, m - s, m + s);
        median_of_three(data, hi - 1, hi - 1 - s, hi - 1 - 2 * s);
    }
    median_of_three(data, lo, m, hi - 1);

    let pivot = lo;
    let (mut a, mut c) = (lo + 1, hi - 1);
    while a < c && less(data, a, pivot) {
        a += 1;
    }
    let mut b = a;
    loop {
        while b < c && less(data, b, pivot) {
            b += 1;
        }
        while b < c && less(data, pivot, c - 1) {
            c -= 1;
        }
        if b >= c {
            break;
        }
        data.swap(b, c - 1);
        b += 1;
        c -= 1;
    }
    let mut protect = hi - c < 5;
    if !protect && hi - c < (hi - lo) / 4 {
        let mut dups = 0;
        if less(data, hi - 1, pivot) {
            data.swap(c, hi - 1);
            c += 1;
            dups += 1;
        }
        if less(data, pivot, b - 1) {
            b -= 1;
            dups += 1;
        }
        if less(data, pivot, m) {
            data.swap(m, b - 1);
            b -= 1;
            dups += 1;
        }
        protect = dups > 1;
    }
    if protect {
        loop {
            while a < b && less(data, pivot, b - 1) {
                b -= 1;
            }
            while a < b && less(data, a, pivot) {
                a += 1;
            }
            if a >= b {
                break;
            }
            data.swap(a, b - 1);
            a += 1;
            b -= 1;
        }
    }
    data.swap(pivot, b - 1);
    (b - 1, c)
}

/// The fallback the original reaches at depth zero: a heapsort comparing
/// symbols only.
fn heap_sort_by_literal(data: &mut [Node], a: usize, b: usize) {
    let first = a;
    let hi = b - a;
    let mut i = (hi as isize - 1) / 2;
    while i >= 0 {
        sift_down_by_literal(data, i as usize, hi, first);
        i -= 1;
    }
    for i in (0..hi).rev() {
        data.swap(first, first + i);
        sift_down_by_literal(data, 0, i, first);
    }
}

fn sift_down_by_literal(data: &mut [Node], lo: usize, hi: usize, first: usize) {
    let mut root = lo;
    loop {
        let mut child = 2 * root + 1;
        if child >= hi {
            break;
        }
        if child + 1 < hi && data[first + child].literal < data[first + child + 1].literal {
            child += 1;
        }
        if data[first + root].literal > data[first + child].literal {
            return;
        }
        data.swap(first + root, first + child);
        root = child;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_matches_total_order_on_typical_lists() {
        let mut seed = 12345u32;
        for n in 3..290 {
            let mut v: Vec<Node> = (0..n)
                .map(|i| {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    Node {
                        literal: i as u16,
                        freq: ((seed >> 16) % 50 + 1) as u16,
                    }
                })
                .collect();
            let mut w = v.clone();
            sort_by_freq(&mut v);
            w.sort_by_key(|x| (x.freq, x.literal));
            assert!(
                v.iter()
                    .zip(&w)
                    .all(|(a, b)| a.literal == b.literal && a.freq == b.freq)
            );
        }
    }

    #[test]
    fn fixed_codes() {
        let f = HuffmanEncoder::fixed_literal();
        assert_eq!(f.codes[0].len, 8);
        assert_eq!(f.codes[256].len, 7);
        assert_eq!(f.codes[256].code, 0);
        assert_eq!(f.codes[144].len, 9);
    }
}
