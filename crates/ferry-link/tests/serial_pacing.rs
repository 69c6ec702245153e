//! Pacing: serialisation time and back-to-back frames.

use std::time::Duration;

use ferry_core::Instant;
use ferry_link::serial::{ConfigError, Pacer};
use proptest::prelude::*;

#[test]
fn acoustic_frame_takes_its_bits_over_the_rate() {
    let pacer = Pacer::new(5000, 10).unwrap();
    assert_eq!(pacer.airtime(256), Duration::from_millis(512));
    assert_eq!(pacer.airtime(0), Duration::ZERO);
    assert_eq!(
        Pacer::new(0, 10).err(),
        Some(ConfigError::Pacing {
            baud_bps: 0,
            bits_per_byte: 10
        })
    );
    assert!(Pacer::new(9600, 0).is_err());
}

proptest! {
    /// N bytes at B baud, 10 bits a byte, take N * 10 / B seconds (rounded up to the µs).
    #[test]
    fn airtime_is_bits_over_rate(len in 0usize..100_000, baud in 1u32..=1_000_000) {
        let micros = (len as u128 * 10 * 1_000_000).div_ceil(u128::from(baud));
        prop_assert_eq!(Pacer::new(baud, 10).unwrap().airtime(len).as_micros(), micros);
    }

    /// Frames handed over at any times never overlap on the line, each
    /// occupies exactly its airtime, and none starts before it was handed over.
    #[test]
    fn back_to_back_frames_never_overlap(
        baud in 300u32..=115_200,
        sends in prop::collection::vec((0u64..2_000_000, 0usize..2048), 1..100),
    ) {
        let mut pacer = Pacer::new(baud, 10).unwrap();
        let mut now = Instant::ZERO;
        let mut line_free = Instant::ZERO;
        for (gap, len) in sends {
            now = now + Duration::from_micros(gap);
            prop_assert_eq!(pacer.can_send(now), now >= line_free);
            let slot = pacer.send(now, len);
            prop_assert!(slot.start >= now && slot.start >= line_free);
            prop_assert_eq!(slot.start, now.max(line_free));
            prop_assert_eq!(slot.end.saturating_since(slot.start), pacer.airtime(len));
            prop_assert_eq!(pacer.busy_until(), slot.end);
            line_free = slot.end;
        }
    }
}
