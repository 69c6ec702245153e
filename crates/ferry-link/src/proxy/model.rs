//! [`ImpairmentModel`]: what one proxy does to the datagrams crossing it.

use std::time::Duration;

use crate::profile::{LinkProfile, Loss, Schedule};

/// The smallest queue [`ImpairmentModel::from_profile`] and
/// [`ImpairmentModel::new`] give a link: 64 KiB.
pub const MIN_QUEUE_BYTES: u64 = 64 * 1024;

/// How the proxy impairs each direction of a link.
///
/// Both directions get the same model, each with its own random stream, loss
/// state and queue. The setters (`with_*`) change one field and nothing else:
/// [`ImpairmentModel::with_rate`] and [`ImpairmentModel::with_rtt`] do not
/// resize the queue.
#[derive(Clone, Debug, PartialEq)]
pub struct ImpairmentModel {
    /// Line rate in bits per second: a datagram of `len` bytes occupies the
    /// line for `len × 8 / rate_bps` (UDP payload bytes; no header overhead).
    pub rate_bps: u64,
    /// One-way delay added after serialisation.
    pub delay: Duration,
    /// Extra delay drawn uniformly from `[0, jitter)` per datagram; a
    /// non-zero jitter reorders datagrams, as netem's does.
    pub jitter: Duration,
    /// Which datagrams are lost on the line.
    pub loss: Loss,
    /// Probability a datagram that is not lost arrives twice.
    pub duplicate: f64,
    /// Bytes that may wait for (or be in) serialisation; a datagram that
    /// would take the backlog over this is dropped (tail drop).
    pub queue_limit_bytes: u64,
    /// When the link is up, counted from [`Proxy::start`](super::Proxy::start).
    pub schedule: Schedule,
}

/// Why an [`ImpairmentModel`] cannot be used.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ModelError {
    /// The line rate is zero.
    #[error("the line rate must be above 0 bit/s")]
    ZeroRate,
    /// A loss-model parameter is not a probability.
    #[error("loss model: {0}")]
    Loss(String),
    /// The duplication probability is not in [0, 1].
    #[error("duplicate = {0} is not a probability in [0, 1]")]
    Duplicate(f64),
    /// The queue holds nothing, so every datagram would be dropped.
    #[error("the queue limit must be above 0 bytes")]
    ZeroQueue,
    /// A periodic schedule with a zero period.
    #[error("a contact schedule's period must be above zero")]
    ZeroPeriod,
}

impl ImpairmentModel {
    /// A clean link: `rate_bps`, one-way delay `rtt / 2`, no jitter, loss or
    /// duplication, always up, and a queue of one bandwidth-delay product (at
    /// least [`MIN_QUEUE_BYTES`]).
    pub fn new(rate_bps: u64, rtt: Duration) -> Self {
        Self {
            rate_bps,
            delay: rtt / 2,
            jitter: Duration::ZERO,
            loss: Loss::None,
            duplicate: 0.0,
            queue_limit_bytes: bdp_bytes(rate_bps, rtt).max(MIN_QUEUE_BYTES),
            schedule: Schedule::Always,
        }
    }

    /// The model of a named link: its rate, half its RTT one way, its loss
    /// and its contact schedule, a queue of one bandwidth-delay product (at
    /// least [`MIN_QUEUE_BYTES`]), no jitter or duplication.
    ///
    /// A profile's frame size and half-duplex flag are not modelled: the
    /// proxy carries whatever datagrams it is given, both ways at once.
    pub fn from_profile(profile: &LinkProfile) -> Self {
        Self {
            loss: profile.loss,
            schedule: profile.schedule,
            ..Self::new(profile.rate_bps, profile.rtt)
        }
    }

    /// Sets the line rate (bits per second).
    #[must_use]
    pub fn with_rate(mut self, rate_bps: u64) -> Self {
        self.rate_bps = rate_bps;
        self
    }

    /// Sets the one-way delay to half of `rtt`.
    #[must_use]
    pub fn with_rtt(mut self, rtt: Duration) -> Self {
        self.delay = rtt / 2;
        self
    }

    /// Sets the one-way delay.
    #[must_use]
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Sets the jitter (extra delay in `[0, jitter)`).
    #[must_use]
    pub fn with_jitter(mut self, jitter: Duration) -> Self {
        self.jitter = jitter;
        self
    }

    /// Sets the loss model.
    #[must_use]
    pub fn with_loss(mut self, loss: Loss) -> Self {
        self.loss = loss;
        self
    }

    /// Sets the duplication probability.
    #[must_use]
    pub fn with_duplicate(mut self, probability: f64) -> Self {
        self.duplicate = probability;
        self
    }

    /// Sets the queue limit in bytes.
    #[must_use]
    pub fn with_queue_limit(mut self, bytes: u64) -> Self {
        self.queue_limit_bytes = bytes;
        self
    }

    /// Sets the contact schedule.
    #[must_use]
    pub fn with_schedule(mut self, schedule: Schedule) -> Self {
        self.schedule = schedule;
        self
    }

    /// Keeps the link up all the time ([`Schedule::Always`]).
    #[must_use]
    pub fn always_up(self) -> Self {
        self.with_schedule(Schedule::Always)
    }

    /// Checks the rate and queue are above zero, every probability is in
    /// [0, 1] and a periodic schedule has a period.
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.rate_bps == 0 {
            return Err(ModelError::ZeroRate);
        }
        self.loss.validate().map_err(ModelError::Loss)?;
        if !(0.0..=1.0).contains(&self.duplicate) {
            return Err(ModelError::Duplicate(self.duplicate));
        }
        if self.queue_limit_bytes == 0 {
            return Err(ModelError::ZeroQueue);
        }
        match self.schedule {
            Schedule::Always => {}
            Schedule::Periodic { period, .. } | Schedule::Outages { period, .. } => {
                if period.is_zero() {
                    return Err(ModelError::ZeroPeriod);
                }
            }
        }
        Ok(())
    }

    /// How long `bytes` occupy the line.
    pub fn serialisation(&self, bytes: usize) -> Duration {
        ferry_core::transmission_time(bytes as u64, self.rate_bps.max(1)).unwrap_or_default()
    }

    /// How many bytes the line sends in `time` (rounded up).
    pub(crate) fn bytes_in(&self, time: Duration) -> u64 {
        let bits = time.as_nanos() * u128::from(self.rate_bps);
        u64::try_from(bits.div_ceil(8 * 1_000_000_000)).unwrap_or(u64::MAX)
    }
}

/// One bandwidth-delay product in bytes.
fn bdp_bytes(rate_bps: u64, rtt: Duration) -> u64 {
    let bits = u128::from(rate_bps) * rtt.as_nanos() / 1_000_000_000;
    u64::try_from(bits / 8).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_become_models() {
        let geo = ImpairmentModel::from_profile(LinkProfile::named("geo-sat").unwrap());
        assert_eq!(geo.rate_bps, 512_000);
        assert_eq!(geo.delay, Duration::from_millis(325));
        // 512 kbit/s × 650 ms = 41.6 kB, under the floor.
        assert_eq!(geo.queue_limit_bytes, MIN_QUEUE_BYTES);
        assert_eq!(geo.loss, Loss::Bernoulli(0.005));
        let drone = ImpairmentModel::from_profile(LinkProfile::named("drone-wifi").unwrap());
        // 20 Mbit/s × 5 ms = 12.5 kB; still the floor.
        assert_eq!(drone.queue_limit_bytes, MIN_QUEUE_BYTES);
        let fat = ImpairmentModel::new(100_000_000, Duration::from_millis(100));
        assert_eq!(fat.queue_limit_bytes, 1_250_000);
        for p in crate::profile::PROFILES {
            ImpairmentModel::from_profile(p).validate().unwrap();
        }
    }

    #[test]
    fn validation_names_the_bad_field() {
        let clean = ImpairmentModel::new(1_000_000, Duration::from_millis(40));
        assert_eq!(
            clean.clone().with_rate(0).validate(),
            Err(ModelError::ZeroRate)
        );
        assert!(matches!(
            clean.clone().with_loss(Loss::Bernoulli(1.5)).validate(),
            Err(ModelError::Loss(m)) if m.contains("1.5")
        ));
        assert_eq!(
            clean.clone().with_duplicate(-0.1).validate(),
            Err(ModelError::Duplicate(-0.1))
        );
        assert_eq!(
            clean.clone().with_queue_limit(0).validate(),
            Err(ModelError::ZeroQueue)
        );
        assert_eq!(
            clean
                .clone()
                .with_schedule(Schedule::Periodic {
                    up: Duration::ZERO,
                    period: Duration::ZERO
                })
                .validate(),
            Err(ModelError::ZeroPeriod)
        );
        assert!(clean.with_duplicate(f64::NAN).validate().is_err());
    }

    #[test]
    fn serialisation_and_backlog_agree() {
        let m = ImpairmentModel::new(1_000_000, Duration::ZERO);
        assert_eq!(m.serialisation(1000), Duration::from_millis(8));
        assert_eq!(m.bytes_in(Duration::from_millis(8)), 1000);
        assert_eq!(m.bytes_in(Duration::from_nanos(1)), 1);
    }
}
