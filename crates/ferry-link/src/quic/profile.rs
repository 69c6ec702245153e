//! [`TransportProfile`]: QUIC tuned to a link's rate and round-trip time.
//!
//! # Congestion control: BBR
//! ferry's QUIC links (LTE in the bush, geostationary satellite, drone Wi-Fi)
//! lose packets at random, 0.5–2 %, not only when a queue overflows. A
//! loss-based controller (NewReno, Cubic — quinn's default) reads every loss
//! as congestion and cuts its window; BBR instead models the path's
//! bottleneck bandwidth and minimum RTT and paces at that rate, so random loss
//! costs only the lost packets. quinn marks its BBR as experimental; it is
//! the only model-based controller quinn has.
//!
//! Measured through an impairing relay (`tests/quic_measure.rs`: rate, delay,
//! Bernoulli loss, a bottleneck queue of one RTT; 3 MiB of bulk frames; one
//! run each on a busy two-core machine), goodput as a fraction of
//! rate × (1 − loss):
//!
//! | path | BBR | Cubic |
//! |---|---|---|
//! | `lte-bush`: 2 Mbit/s, 80 ms, 1 % | 0.97 | 0.72 |
//! | `geo-sat`: 512 kbit/s, 650 ms, 0.5 % | 0.93 | 0.95 |
//!
//! The cost: quinn's BBR overfills a one-RTT queue (about 1,500 tail drops
//! over the `lte-bush` transfer against Cubic's 44). On a link ferry has to
//! itself that costs little (the goodput above includes it), but it would
//! hurt other flows sharing the
//! bottleneck; [`Congestion::Cubic`] is there for such links.
//!
//! # Windows and timers
//! Flow-control windows are at least twice the bandwidth-delay product, so
//! flow control never throttles a full pipe (one BDP in flight plus one of
//! slack for a receiver that reads late), with a floor for short paths and a
//! ceiling that bounds memory per connection. The idle timeout is at least ten
//! round trips (so a few lost keep-alives on a long path don't end the link)
//! and keep-alives go at a quarter of it.

use std::sync::Arc;
use std::time::Duration;

use quinn::congestion::{BbrConfig, CubicConfig};
use quinn::{IdleTimeout, TransportConfig, VarInt};

use super::{LinkError, MAX_FRAME_LEN};

/// Smallest per-stream receive window: 1 MiB.
const MIN_STREAM_WINDOW: u64 = 1 << 20;
/// Largest per-stream receive window: 64 MiB.
const MAX_STREAM_WINDOW: u64 = 64 << 20;
/// Shortest idle timeout: 30 s.
const MIN_IDLE: Duration = Duration::from_secs(30);
/// RTTs outside this range are clamped into it.
const MIN_RTT: Duration = Duration::from_millis(1);
const MAX_RTT: Duration = Duration::from_secs(60);
/// Concurrent unidirectional streams a peer may open (ferry uses one per
/// direction; the rest is slack).
const MAX_UNI_STREAMS: u32 = 4;

/// QUIC transport settings for one kind of link. Build one with
/// [`for_link`](Self::for_link), adjust fields if needed, and give it to
/// [`QuicEndpoint::bind`](super::QuicEndpoint::bind).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportProfile {
    /// The link's expected rate, bits per second.
    pub rate_bps: u64,
    /// The RTT assumed before the first measurement.
    pub initial_rtt: Duration,
    /// Bytes a peer may send on one stream ahead of our reading.
    pub stream_receive_window: u64,
    /// Bytes a peer may send on all streams ahead of our reading.
    pub receive_window: u64,
    /// Bytes we buffer unacknowledged on all streams.
    pub send_window: u64,
    /// A connection with no traffic for this long is dead.
    pub max_idle_timeout: Duration,
    /// How often to send a keep-alive on a quiet connection.
    pub keep_alive_interval: Duration,
    /// The largest frame accepted or sent.
    pub max_frame_len: u32,
    /// The congestion controller.
    pub congestion: Congestion,
}

/// Which congestion controller a link runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Congestion {
    /// BBR: paces at the measured bottleneck rate; random loss costs only the
    /// lost packets (see the module docs). The default.
    #[default]
    Bbr,
    /// Cubic, quinn's own default: loss-based. For comparison, or as a
    /// fallback should quinn's experimental BBR misbehave.
    Cubic,
}

impl TransportProfile {
    /// A profile for a link of `rate_bps` bits per second and round-trip time
    /// `rtt`: windows of at least 2 × rate × RTT (1 MiB floor, 64 MiB per
    /// stream ceiling), idle timeout max(30 s, 10 × RTT), keep-alive a quarter
    /// of that, [`Congestion::Bbr`]. The frame limit is [`MAX_FRAME_LEN`].
    pub fn for_link(rate_bps: u64, rtt: Duration) -> TransportProfile {
        let rtt = rtt.clamp(MIN_RTT, MAX_RTT);
        let bdp = u128::from(rate_bps) * rtt.as_micros() / 8 / 1_000_000;
        let two_bdp = u64::try_from(bdp.saturating_mul(2)).unwrap_or(u64::MAX);
        let stream = two_bdp.clamp(MIN_STREAM_WINDOW, MAX_STREAM_WINDOW);
        // Room for the control stream and the bulk stream at once, so a
        // backed-up bulk stream never starves control of connection credit.
        let connection = stream * 2;
        let idle = (rtt * 10).max(MIN_IDLE);
        TransportProfile {
            rate_bps,
            initial_rtt: rtt,
            stream_receive_window: stream,
            receive_window: connection,
            send_window: connection,
            max_idle_timeout: idle,
            keep_alive_interval: idle / 4,
            max_frame_len: MAX_FRAME_LEN,
            congestion: Congestion::Bbr,
        }
    }

    /// The quinn transport configuration for this profile.
    pub fn transport_config(&self) -> Result<TransportConfig, LinkError> {
        let varint = |what: &str, v: u64| {
            VarInt::from_u64(v).map_err(|_| LinkError::Config(format!("{what} {v} is too large")))
        };
        let idle = IdleTimeout::try_from(self.max_idle_timeout).map_err(|_| {
            LinkError::Config(format!(
                "idle timeout {:?} is too large",
                self.max_idle_timeout
            ))
        })?;
        if self.keep_alive_interval.is_zero() || self.keep_alive_interval >= self.max_idle_timeout {
            return Err(LinkError::Config(format!(
                "keep-alive interval {:?} must be non-zero and below the idle timeout {:?}",
                self.keep_alive_interval, self.max_idle_timeout
            )));
        }
        let mut config = TransportConfig::default();
        config
            .initial_rtt(self.initial_rtt)
            .stream_receive_window(varint("stream receive window", self.stream_receive_window)?)
            .receive_window(varint("receive window", self.receive_window)?)
            .send_window(self.send_window)
            .max_idle_timeout(Some(idle))
            .keep_alive_interval(Some(self.keep_alive_interval))
            .max_concurrent_bidi_streams(VarInt::from_u32(1))
            .max_concurrent_uni_streams(VarInt::from_u32(MAX_UNI_STREAMS))
            .datagram_receive_buffer_size(None);
        match self.congestion {
            Congestion::Bbr => config.congestion_controller_factory(Arc::new(BbrConfig::default())),
            Congestion::Cubic => {
                config.congestion_controller_factory(Arc::new(CubicConfig::default()))
            }
        };
        Ok(config)
    }
}

impl Default for TransportProfile {
    /// A generic Internet path: 20 Mbit/s, 100 ms.
    fn default() -> Self {
        TransportProfile::for_link(20_000_000, Duration::from_millis(100))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The QUIC rows of the design brief's link profiles: (rate, RTT).
    const PROFILES: [(u64, u64); 3] = [(2_000_000, 80), (512_000, 650), (20_000_000, 5)];

    #[test]
    fn windows_cover_twice_the_bandwidth_delay_product() {
        for (rate, rtt_ms) in PROFILES.into_iter().chain([(100_000_000, 300)]) {
            let p = TransportProfile::for_link(rate, Duration::from_millis(rtt_ms));
            let two_bdp = rate * rtt_ms / 1000 / 8 * 2;
            assert!(p.stream_receive_window >= two_bdp, "{rate} {rtt_ms}");
            assert!(p.receive_window >= two_bdp);
            assert!(p.send_window >= two_bdp);
            assert!(p.receive_window >= 2 * p.stream_receive_window);
            p.transport_config().unwrap();
        }
    }

    #[test]
    fn windows_have_floor_and_ceiling() {
        let slow = TransportProfile::for_link(2_400, Duration::from_secs(10));
        assert_eq!(slow.stream_receive_window, MIN_STREAM_WINDOW);
        let huge = TransportProfile::for_link(u64::MAX, Duration::from_secs(3600));
        assert_eq!(huge.stream_receive_window, MAX_STREAM_WINDOW);
        huge.transport_config().unwrap();
    }

    #[test]
    fn timers_scale_with_rtt() {
        for (rate, rtt_ms) in PROFILES.into_iter().chain([(2_400, 10_000)]) {
            let rtt = Duration::from_millis(rtt_ms);
            let p = TransportProfile::for_link(rate, rtt);
            assert!(p.max_idle_timeout >= rtt * 10);
            assert!(p.max_idle_timeout >= MIN_IDLE);
            assert!(p.keep_alive_interval < p.max_idle_timeout / 3);
            assert_eq!(p.initial_rtt, rtt);
        }
    }

    #[test]
    fn bad_timers_are_refused() {
        let mut p = TransportProfile::default();
        p.keep_alive_interval = p.max_idle_timeout;
        assert!(matches!(p.transport_config(), Err(LinkError::Config(_))));
    }
}
