//! Pacing: never hand a modem bytes faster than it puts them on the air.
//!
//! A [`Pacer`] knows the line rate and when the line is next free. For each
//! frame it says when the frame starts and finishes leaving; the next frame
//! may start when the previous one has finished. Time is passed in, so the
//! pacer works the same on a real clock and on a virtual one.

use std::time::Duration;

use ferry_core::Instant;

use super::ConfigError;

/// When one frame occupies the line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    /// The first bit leaves (the line was free).
    pub start: Instant,
    /// The last bit has left; the next frame may start.
    pub end: Instant,
}

/// Serialisation-time bookkeeping for one transmitter.
#[derive(Clone, Debug)]
pub struct Pacer {
    baud_bps: u32,
    bits_per_byte: u32,
    busy_until: Instant,
}

impl Pacer {
    /// A line of `baud_bps` bits per second and `bits_per_byte` bits on the
    /// line per byte (10 for 8N1: a start bit, 8 data bits, a stop bit).
    pub fn new(baud_bps: u32, bits_per_byte: u32) -> Result<Self, ConfigError> {
        if baud_bps == 0 || bits_per_byte == 0 {
            return Err(ConfigError::Pacing {
                baud_bps,
                bits_per_byte,
            });
        }
        Ok(Pacer {
            baud_bps,
            bits_per_byte,
            busy_until: Instant::ZERO,
        })
    }

    /// How long `len` bytes take to leave, rounded up to the microsecond.
    pub fn airtime(&self, len: usize) -> Duration {
        let bits = len as u128 * u128::from(self.bits_per_byte);
        let micros = (bits * 1_000_000).div_ceil(u128::from(self.baud_bps));
        Duration::from_micros(micros.try_into().unwrap_or(u64::MAX))
    }

    /// When the line is free (possibly in the past).
    pub fn busy_until(&self) -> Instant {
        self.busy_until
    }

    /// Whether a frame may start at `now`.
    pub fn can_send(&self, now: Instant) -> bool {
        now >= self.busy_until
    }

    /// When a frame handed over at `now` would start: `now`, or when the
    /// line becomes free.
    pub fn next_start(&self, now: Instant) -> Instant {
        now.max(self.busy_until)
    }

    /// Books the line for a frame of `len` bytes handed over at `now`; a frame
    /// handed over early queues behind the one on the line.
    pub fn send(&mut self, now: Instant, len: usize) -> Slot {
        let start = self.next_start(now);
        self.busy_until = start + self.airtime(len);
        Slot {
            start,
            end: self.busy_until,
        }
    }
}
