//! Pieces a sender handed to a link that a want-list may not have seen.
//!
//! A want-list names what the receiver lacked when it wrote it. Pieces sent
//! since may still be on their way: asked for again, they would go twice.
//! The sender keeps each piece with its round (the serial of the checkpoint
//! that ends the data it went with) and leaves it out of a want-list's
//! answer until the receiver has answered that checkpoint or a later one.
//!
//! How long a piece counts as in flight depends on the link:
//! - an unreliable link may lose the checkpoint too, so a piece is also
//!   forgotten once it has had the in-flight window to arrive;
//! - a reliable link (QUIC) delivers bulk frames in order or ends the
//!   contact, which ends the session and this record with it. A piece there
//!   waits for its round's answer however long the link holds it: QUIC
//!   behind a slower path can hold seconds of data while a re-offer, on the
//!   control stream, overtakes it. Runs of whole chunks are kept as one
//!   entry, so a bundle sent in one go costs one entry, whatever its size.

use std::collections::VecDeque;
use std::time::Duration;

use crate::types::Instant;

/// The byte range that stands for a whole chunk.
const WHOLE: (u32, u32) = (0, u32::MAX);

/// Pieces handed over in one go: one piece, or a run of whole chunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Sent {
    at: Instant,
    /// Chunk indexes `first..=last`.
    first: u32,
    last: u32,
    /// Bytes of each of those chunks; [`WHOLE`] for whole chunks.
    bytes: (u32, u32),
    /// The `checkpoint_serial` that ends their round.
    round: u32,
}

/// What one outbound handle has in flight, oldest first. Rounds and times
/// only grow along it, so forgetting takes from the front.
#[derive(Debug)]
pub(crate) struct InFlight {
    sent: VecDeque<Sent>,
    /// How long a piece may take to arrive on an unreliable link; None on a
    /// reliable one, where only its round's answer ends it.
    window: Option<Duration>,
}

impl InFlight {
    /// Nothing in flight yet on a link that is reliable, or else whose
    /// pieces arrive within `window` if at all.
    pub(crate) fn new(reliable: bool, window: Duration) -> Self {
        Self {
            sent: VecDeque::new(),
            window: (!reliable).then_some(window),
        }
    }

    /// Notes bytes `start..end` of chunk `index` handed over at `at` in
    /// `round`; `whole` if they are the whole chunk. On a reliable link a
    /// whole chunk following a run of whole chunks of the same round joins
    /// it; on an unreliable one, pieces past their window are forgotten.
    pub(crate) fn push(
        &mut self,
        at: Instant,
        index: u32,
        (start, end): (u32, u32),
        whole: bool,
        round: u32,
    ) {
        self.forget(0, at);
        let bytes = if whole { WHOLE } else { (start, end) };
        if self.window.is_none()
            && whole
            && let Some(last) = self.sent.back_mut()
            && last.bytes == WHOLE
            && last.round == round
            && last.last.checked_add(1) == Some(index)
        {
            last.last = index;
            return;
        }
        self.sent.push_back(Sent {
            at,
            first: index,
            last: index,
            bytes,
            round,
        });
    }

    /// Forgets pieces of rounds up to `answered` (the receiver saw their
    /// checkpoint: what it still lacks of them did not arrive; rounds count
    /// from 1) and, on an unreliable link, those handed over a window or
    /// more before `now` (any want-list arriving now has seen them).
    pub(crate) fn forget(&mut self, answered: u32, now: Instant) {
        while self.sent.front().is_some_and(|sent| {
            sent.round <= answered || self.window.is_some_and(|window| sent.at + window <= now)
        }) {
            self.sent.pop_front();
        }
    }

    /// The pieces left, arranged for lookups by chunk.
    pub(crate) fn index(&self) -> InFlightIndex {
        let mut whole: Vec<(u32, u32)> = Vec::new();
        let mut parts = Vec::new();
        for sent in &self.sent {
            if sent.bytes == WHOLE {
                whole.push((sent.first, sent.last));
            } else {
                parts.push((sent.first, sent.bytes.0, sent.bytes.1));
            }
        }
        whole.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(whole.len());
        for (first, last) in whole {
            match merged.last_mut() {
                Some(run) if first <= run.1.saturating_add(1) => run.1 = run.1.max(last),
                _ => merged.push((first, last)),
            }
        }
        parts.sort_unstable();
        InFlightIndex {
            whole: merged,
            parts,
        }
    }

    #[cfg(test)]
    fn entries(&self) -> usize {
        self.sent.len()
    }
}

/// [`InFlight`]'s pieces by chunk: whole chunks as disjoint sorted runs
/// (`first..=last`), other pieces sorted by chunk.
#[derive(Debug)]
pub(crate) struct InFlightIndex {
    whole: Vec<(u32, u32)>,
    parts: Vec<(u32, u32, u32)>,
}

impl InFlightIndex {
    /// `gaps` of chunk `index` (byte ranges wanted) without what is in flight.
    pub(crate) fn subtract(&self, index: u32, gaps: Vec<(u32, u32)>) -> Vec<(u32, u32)> {
        let run = self.whole.partition_point(|&(first, _)| first <= index);
        if run > 0 && index <= self.whole[run - 1].1 {
            return Vec::new();
        }
        let first = self.parts.partition_point(|&(i, ..)| i < index);
        let mut gaps = gaps;
        for &(_, s, e) in self.parts[first..].iter().take_while(|p| p.0 == index) {
            gaps = gaps
                .into_iter()
                .flat_map(|(a, b)| [(a, b.min(s)), (a.max(e), b)])
                .filter(|(a, b)| a < b)
                .collect();
        }
        gaps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Instant = Instant(1_000_000);

    fn later(ms: u64) -> Instant {
        T0 + Duration::from_millis(ms)
    }

    #[test]
    fn whole_chunks_of_one_round_are_one_entry_on_a_reliable_link() {
        let mut in_flight = InFlight::new(true, Duration::ZERO);
        for index in 0..10_000 {
            in_flight.push(later(u64::from(index)), index, (0, 100), true, 1);
        }
        assert_eq!(in_flight.entries(), 1);
        let index = in_flight.index();
        assert!(index.subtract(0, vec![(0, 100)]).is_empty());
        assert!(index.subtract(9_999, vec![(0, 100)]).is_empty());
        assert_eq!(index.subtract(10_000, vec![(0, 100)]), vec![(0, 100)]);
        // A new round starts a new entry; so does a gap in the indexes.
        in_flight.push(later(1), 10_000, (0, 100), true, 2);
        in_flight.push(later(2), 10_002, (0, 100), true, 2);
        assert_eq!(in_flight.entries(), 3);
        // Unmerged on an unreliable link.
        let mut each = InFlight::new(false, Duration::from_secs(1));
        each.push(T0, 0, (0, 100), true, 1);
        each.push(T0, 1, (0, 100), true, 1);
        assert_eq!(each.entries(), 2);
    }

    #[test]
    fn pieces_are_left_out_of_what_is_wanted_until_their_round_is_answered() {
        let mut in_flight = InFlight::new(true, Duration::ZERO);
        in_flight.push(T0, 3, (0, 500), false, 1);
        in_flight.push(T0, 3, (1000, 1500), false, 1);
        in_flight.push(T0, 4, (0, 2000), true, 1);
        in_flight.push(T0, 5, (0, 10), true, 2);
        let index = in_flight.index();
        assert_eq!(
            index.subtract(3, vec![(0, 2000)]),
            vec![(500, 1000), (1500, 2000)]
        );
        assert!(index.subtract(4, vec![(0, 2000)]).is_empty());
        assert_eq!(index.subtract(2, vec![(0, 2000)]), vec![(0, 2000)]);
        // The receiver saw checkpoint 1: what it lacks of round 1 was lost.
        in_flight.forget(1, T0);
        let index = in_flight.index();
        assert_eq!(index.subtract(3, vec![(0, 2000)]), vec![(0, 2000)]);
        assert!(index.subtract(5, vec![(0, 10)]).is_empty());
        // On a reliable link, time alone forgets nothing.
        in_flight.forget(0, later(3_600_000));
        assert_eq!(in_flight.entries(), 1);
    }

    #[test]
    fn on_an_unreliable_link_pieces_past_the_window_are_forgotten() {
        let mut in_flight = InFlight::new(false, Duration::from_millis(100));
        in_flight.push(T0, 0, (0, 100), false, 1);
        in_flight.push(later(50), 1, (0, 100), false, 1);
        in_flight.forget(0, later(99));
        assert_eq!(in_flight.entries(), 2);
        in_flight.forget(0, later(100));
        assert_eq!(in_flight.entries(), 1);
        let index = in_flight.index();
        assert_eq!(index.subtract(0, vec![(0, 100)]), vec![(0, 100)]);
        assert!(index.subtract(1, vec![(0, 100)]).is_empty());
    }

    #[test]
    fn overlapping_runs_from_several_rounds_cover_their_union() {
        let mut in_flight = InFlight::new(true, Duration::ZERO);
        for index in 10..20 {
            in_flight.push(T0, index, (0, 1), true, 1);
        }
        for index in 5..12 {
            in_flight.push(T0, index, (0, 1), true, 2);
        }
        in_flight.push(T0, u32::MAX, (0, 1), true, 2);
        let index = in_flight.index();
        for chunk in (5..20).chain([u32::MAX]) {
            assert!(index.subtract(chunk, vec![(0, 1)]).is_empty(), "{chunk}");
        }
        for chunk in [4, 20] {
            assert_eq!(index.subtract(chunk, vec![(0, 1)]), vec![(0, 1)]);
        }
    }
}
