//! Reassembly of one chunk from pieces that may arrive lost, duplicated or
//! out of order, and the byte ranges still missing.

/// Disjoint, sorted half-open ranges `[start, end)`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeSet {
    ranges: Vec<(u32, u32)>,
}

impl RangeSet {
    pub fn insert(&mut self, start: u32, end: u32) {
        if start >= end {
            return;
        }
        let (mut start, mut end) = (start, end);
        let mut merged = Vec::with_capacity(self.ranges.len() + 1);
        let mut placed = false;
        for &(s, e) in &self.ranges {
            if e < start {
                merged.push((s, e));
            } else if end < s {
                if !placed {
                    merged.push((start, end));
                    placed = true;
                }
                merged.push((s, e));
            } else {
                start = start.min(s);
                end = end.max(e);
            }
        }
        if !placed {
            merged.push((start, end));
        }
        self.ranges = merged;
    }

    pub fn covered(&self) -> u64 {
        self.ranges.iter().map(|&(s, e)| u64::from(e - s)).sum()
    }

    /// The gaps of `[0, len)` not covered by this set.
    pub fn gaps(&self, len: u32) -> Vec<(u32, u32)> {
        let mut gaps = Vec::new();
        let mut at = 0;
        for &(s, e) in &self.ranges {
            if s > at {
                gaps.push((at, s.min(len)));
            }
            at = at.max(e);
        }
        if at < len {
            gaps.push((at, len));
        }
        gaps
    }

    pub fn covers(&self, start: u32, end: u32) -> bool {
        self.ranges.iter().any(|&(s, e)| s <= start && end <= e)
    }
}

/// A chunk being put together from pieces.
#[derive(Clone, Debug)]
pub struct PieceBuf {
    data: Vec<u8>,
    have: RangeSet,
}

impl PieceBuf {
    pub fn new(len: u32) -> Self {
        Self {
            data: vec![0; len as usize],
            have: RangeSet::default(),
        }
    }

    pub fn len(&self) -> u32 {
        self.data.len() as u32
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Copies a piece in. Returns false if it does not fit the chunk.
    pub fn insert(&mut self, offset: u32, bytes: &[u8]) -> bool {
        let Some(end) = (offset as usize).checked_add(bytes.len()) else {
            return false;
        };
        if end > self.data.len() {
            return false;
        }
        self.data[offset as usize..end].copy_from_slice(bytes);
        self.have.insert(offset, end as u32);
        true
    }

    pub fn is_complete(&self) -> bool {
        self.have.covered() == self.data.len() as u64
    }

    pub fn received(&self) -> u64 {
        self.have.covered()
    }

    pub fn missing(&self) -> Vec<(u32, u32)> {
        self.have.gaps(self.len())
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_and_report_gaps() {
        let mut set = RangeSet::default();
        set.insert(10, 20);
        set.insert(30, 40);
        set.insert(15, 32);
        set.insert(50, 60);
        assert_eq!(set.gaps(70), vec![(0, 10), (40, 50), (60, 70)]);
        assert_eq!(set.covered(), 40);
        assert!(set.covers(12, 38));
        assert!(!set.covers(38, 52));
    }

    #[test]
    fn pieces_out_of_order_and_duplicated_complete_the_chunk() {
        let mut buf = PieceBuf::new(10);
        assert!(buf.insert(5, b"fghij"));
        assert!(buf.insert(5, b"fghij"));
        assert!(!buf.is_complete());
        assert_eq!(buf.missing(), vec![(0, 5)]);
        assert!(buf.insert(0, b"abcde"));
        assert!(buf.is_complete());
        assert!(!buf.insert(8, b"xyz"), "a piece past the end is refused");
        assert_eq!(buf.into_bytes(), b"abcdefghij");
    }
}
