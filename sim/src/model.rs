//! How a wire treats frames: rate, latency, jitter, MTU, loss, duplication,
//! reordering, bit errors, queue limit, serial framing and half-duplex turns.
//! Pure description; [`crate::Net`] applies it.

use std::time::Duration;

use ferry_core::{LinkProperties, transmission_time};
use ferry_link::profile::{LinkProfile, Loss};
use ferry_link::serial::{SerialConfig, TurnConfig};

/// The sender's host hands frames to the wire faster than the air carries
/// them; the wire queues up to `frames` and drops the tail beyond.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QueueLimit {
    pub frames: usize,
    /// How fast the host hands frames over, bits/s.
    pub ingress_bps: u64,
}

/// Half-duplex timing: one end talks at a time (ferry-link's [`Turns`](ferry_link::serial::Turns)).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HalfDuplex {
    /// Longest turn.
    pub max_turn: Duration,
    /// Turnaround margin after a hand-over.
    pub guard: Duration,
}

/// How a wire treats frames, in each direction alike.
#[derive(Clone, Debug)]
pub struct LinkModel {
    pub rate_bps: u64,
    /// One-way latency.
    pub delay: Duration,
    /// Extra random delay in [0, jitter): reorders frames.
    pub jitter: Duration,
    /// Largest engine frame (without serial framing), or the modem's frame
    /// size on the air (with it).
    pub mtu: u32,
    pub loss: Loss,
    /// Probability a delivered frame arrives twice.
    pub duplicate: f64,
    /// Probability a frame is held back one more one-way delay, so later
    /// frames overtake it.
    pub reorder: f64,
    /// Probability each bit on the air is flipped. With serial framing the
    /// receiver's CRC finds the damage; without, the frame is dropped as a
    /// link-layer checksum would.
    pub bit_error_rate: f64,
    /// Frames cross as COBS + CRC modem frames (ferry-link's serial codec).
    pub serial: Option<SerialConfig>,
    /// One end talks at a time; needs `serial` (the turn flags ride in it).
    pub half_duplex: Option<HalfDuplex>,
    pub queue: Option<QueueLimit>,
    /// Tell the engines the link never loses frames (QUIC-like).
    pub reliable: bool,
    /// Let senders push chunks before the want-list returns.
    pub pipeline: bool,
}

impl LinkModel {
    /// A clean link with the given rate and round-trip time.
    pub fn new(rate_bps: u64, rtt: Duration, mtu: u32) -> Self {
        Self {
            rate_bps,
            delay: rtt / 2,
            jitter: Duration::ZERO,
            mtu,
            loss: Loss::None,
            duplicate: 0.0,
            reorder: 0.0,
            bit_error_rate: 0.0,
            serial: None,
            half_duplex: None,
            queue: None,
            reliable: false,
            pipeline: false,
        }
    }

    /// A named profile's rate, round trip, MTU and loss; half-duplex
    /// profiles get serial framing and turns. The schedule is the
    /// scenario's business.
    pub fn from_profile(profile: &LinkProfile) -> Self {
        let mut model = Self::new(profile.rate_bps, profile.rtt, profile.mtu);
        model.loss = profile.loss;
        model.pipeline = true;
        if profile.half_duplex || profile.mtu <= 512 {
            model.serial = Some(SerialConfig {
                modem_mtu: profile.mtu as usize,
                ..SerialConfig::default()
            });
        }
        if profile.half_duplex {
            model.half_duplex = Some(HalfDuplex {
                max_turn: Duration::from_secs(60),
                guard: Duration::from_millis(250),
            });
        }
        model
    }

    /// How long `bytes` on the air take at the link's rate.
    pub fn airtime(&self, bytes: usize) -> Duration {
        transmission_time(bytes as u64, self.rate_bps.max(1)).unwrap_or_default()
    }

    /// The largest engine frame the link carries.
    pub fn engine_mtu(&self) -> u32 {
        match &self.serial {
            Some(serial) => serial.max_payload() as u32,
            None => self.mtu,
        }
    }

    /// The turn timing both ends share, if half-duplex.
    pub fn turn_config(&self) -> Option<TurnConfig> {
        let half = self.half_duplex?;
        let frame = self.airtime(self.mtu as usize);
        let idle_max = Duration::from_secs(30).min(half.max_turn.saturating_sub(frame));
        Some(TurnConfig {
            max_turn: half.max_turn,
            max_frame_airtime: frame,
            propagation: self.one_way_max(),
            guard: half.guard + self.jitter,
            idle_initial: Duration::from_secs(1).min(idle_max),
            idle_max,
        })
    }

    /// The longest one-way delay from the end of a transmission to its
    /// arrival: latency, jitter, and a reordered frame's hold-back.
    pub fn one_way_max(&self) -> Duration {
        let held = if self.reorder > 0.0 {
            self.delay.max(Duration::from_millis(1))
        } else {
            Duration::ZERO
        };
        self.delay + self.jitter + held
    }

    /// What the engines are told when a contact starts.
    pub fn properties(&self) -> LinkProperties {
        let one_way = self.one_way_max();
        match &self.serial {
            Some(serial) => {
                let frame = self.airtime(serial.modem_mtu);
                // As ferryd's serial driver (`SerialLinkConfig::link_properties`):
                // an answer may wait for a whole turn of the other end.
                let turns = self
                    .half_duplex
                    .map_or(Duration::ZERO, |h| h.max_turn + h.guard + self.jitter);
                let payload = serial.max_payload() as u64;
                LinkProperties {
                    mtu: payload as u32,
                    rtt: (frame + one_way + turns) * 2,
                    reliable: false,
                    rate_bps: self.rate_bps * payload / serial.modem_mtu as u64,
                    pipeline: self.pipeline,
                }
            }
            None => LinkProperties {
                mtu: self.mtu,
                rtt: one_way * 2,
                reliable: self.reliable,
                rate_bps: self.rate_bps,
                pipeline: self.pipeline,
            },
        }
    }

    /// Checks the model can work; says what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        self.loss.validate()?;
        for (name, p) in [
            ("duplicate", self.duplicate),
            ("reorder", self.reorder),
            ("bit_error_rate", self.bit_error_rate),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("{name} = {p} is not a probability in [0, 1]"));
            }
        }
        if self.rate_bps == 0 {
            return Err("rate_bps must be positive".into());
        }
        if let Some(serial) = &self.serial {
            serial.validate().map_err(|e| e.to_string())?;
        } else if self.mtu < ferry_core::mtu::MIN_MTU {
            return Err(format!(
                "mtu = {} is below the engine's minimum of {} bytes",
                self.mtu,
                ferry_core::mtu::MIN_MTU
            ));
        }
        if self.half_duplex.is_some() {
            if self.serial.is_none() {
                return Err("half_duplex needs serial framing (the turn flags ride in it)".into());
            }
            if self.queue.is_some() {
                return Err("a half-duplex link has no separate queue limit".into());
            }
            let config = self.turn_config().expect("half-duplex");
            config.validate().map_err(|e| e.to_string())?;
        }
        if let Some(q) = &self.queue
            && (q.frames == 0 || q.ingress_bps == 0)
        {
            return Err("queue needs at least one frame and a positive ingress rate".into());
        }
        Ok(())
    }
}
