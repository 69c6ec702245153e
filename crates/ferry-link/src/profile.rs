//! Link profiles: the named links of ferry's deployments (rate, round trip,
//! frame size, loss and contact pattern), shared by the daemon's transport
//! tuning, the impairment proxy and the simulator.
//!
//! Loss is Bernoulli or Gilbert-Elliott in netem's terms: in the good state
//! a frame is lost with probability `1 - k`, in the bad state with `1 - h`;
//! the chain moves good→bad with probability `p` and bad→good with `r` per
//! frame. The mean loss is `π_bad (1 - h) + (1 - π_bad)(1 - k)` with
//! `π_bad = p / (p + r)`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rand::Rng;

/// How a link loses frames.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Loss {
    None,
    /// Each frame lost independently with this probability.
    Bernoulli(f64),
    /// Bursts: a two-state Markov chain (netem's `gemodel p r 1-h 1-k`).
    GilbertElliott {
        p: f64,
        r: f64,
        h: f64,
        k: f64,
    },
}

impl Loss {
    /// The long-run fraction of frames lost.
    pub fn mean(&self) -> f64 {
        match *self {
            Loss::None => 0.0,
            Loss::Bernoulli(p) => p,
            Loss::GilbertElliott { p, r, h, k } => {
                let bad = if p + r > 0.0 { p / (p + r) } else { 0.0 };
                bad * (1.0 - h) + (1.0 - bad) * (1.0 - k)
            }
        }
    }

    /// Checks every probability is in [0, 1].
    pub fn validate(&self) -> Result<(), String> {
        let check = |name: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(format!("{name} = {v} is not a probability in [0, 1]"))
            }
        };
        match *self {
            Loss::None => Ok(()),
            Loss::Bernoulli(p) => check("loss", p),
            Loss::GilbertElliott { p, r, h, k } => {
                check("p", p)?;
                check("r", r)?;
                check("h", h)?;
                check("k", k)
            }
        }
    }
}

/// The state a loss model carries from frame to frame.
#[derive(Clone, Debug, Default)]
pub struct LossState {
    bad: bool,
}

impl LossState {
    /// Whether the next frame is lost.
    pub fn lose(&mut self, loss: &Loss, rng: &mut impl Rng) -> bool {
        match *loss {
            Loss::None => false,
            Loss::Bernoulli(p) => rng.random_bool(p.clamp(0.0, 1.0)),
            Loss::GilbertElliott { p, r, h, k } => {
                let flip = if self.bad { r } else { p };
                if rng.random_bool(flip.clamp(0.0, 1.0)) {
                    self.bad = !self.bad;
                }
                let lost = if self.bad { 1.0 - h } else { 1.0 - k };
                rng.random_bool(lost.clamp(0.0, 1.0))
            }
        }
    }
}

/// When a link is up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schedule {
    Always,
    /// Up for `up` at the start of every `period`.
    Periodic {
        up: Duration,
        period: Duration,
    },
    /// Up except for `outage` at the end of every `period`.
    Outages {
        outage: Duration,
        period: Duration,
    },
}

impl Schedule {
    /// Whether the link is up `since` after the schedule's origin, and when
    /// that next changes (None: never).
    pub fn at(&self, since: Duration) -> (bool, Option<Duration>) {
        let phase = |period: Duration| {
            let p = period.as_nanos().max(1);
            let into = Duration::from_nanos((since.as_nanos() % p) as u64);
            (into, since - into)
        };
        match *self {
            Schedule::Always => (true, None),
            Schedule::Periodic { up, period } => {
                let (into, start) = phase(period);
                if into < up {
                    (true, Some(start + up))
                } else {
                    (false, Some(start + period))
                }
            }
            Schedule::Outages { outage, period } => {
                let (into, start) = phase(period);
                let down_at = period.saturating_sub(outage);
                if into < down_at {
                    (true, Some(start + down_at))
                } else {
                    (false, Some(start + period))
                }
            }
        }
    }

    /// Fraction of the time the link is up.
    pub fn uptime(&self) -> f64 {
        match *self {
            Schedule::Always => 1.0,
            Schedule::Periodic { up, period } => {
                (up.as_secs_f64() / period.as_secs_f64().max(f64::MIN_POSITIVE)).min(1.0)
            }
            Schedule::Outages { outage, period } => {
                1.0 - (outage.as_secs_f64() / period.as_secs_f64().max(f64::MIN_POSITIVE)).min(1.0)
            }
        }
    }
}

/// A link as ferry's deployments meet it.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkProfile {
    pub name: &'static str,
    pub rate_bps: u64,
    pub rtt: Duration,
    /// Largest frame the link carries.
    pub mtu: u32,
    pub loss: Loss,
    /// One side talks at a time (acoustic modems).
    pub half_duplex: bool,
    pub schedule: Schedule,
}

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

const fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// The built-in profiles, by name.
pub const PROFILES: &[LinkProfile] = &[
    LinkProfile {
        name: "lte-bush",
        rate_bps: 2_000_000,
        rtt: millis(80),
        mtu: 1400,
        loss: Loss::Bernoulli(0.01),
        half_duplex: false,
        schedule: Schedule::Periodic {
            up: secs(20 * 60),
            period: secs(60 * 60),
        },
    },
    LinkProfile {
        name: "geo-sat",
        rate_bps: 512_000,
        rtt: millis(650),
        mtu: 1400,
        loss: Loss::Bernoulli(0.005),
        half_duplex: false,
        schedule: Schedule::Outages {
            outage: secs(2 * 60),
            period: secs(60 * 60),
        },
    },
    LinkProfile {
        name: "drone-wifi",
        rate_bps: 20_000_000,
        rtt: millis(5),
        mtu: 1400,
        // Mean 2.0 %, in bursts of about five frames.
        loss: Loss::GilbertElliott {
            p: 0.005,
            r: 0.2,
            h: 0.2,
            k: 0.9995,
        },
        half_duplex: false,
        schedule: Schedule::Periodic {
            up: secs(3 * 60),
            period: secs(30 * 60),
        },
    },
    LinkProfile {
        name: "iridium-sbd",
        rate_bps: 2_400,
        rtt: secs(10),
        mtu: 340,
        loss: Loss::Bernoulli(0.02),
        half_duplex: false,
        schedule: Schedule::Periodic {
            up: secs(8 * 60),
            period: secs(90 * 60),
        },
    },
    LinkProfile {
        name: "acoustic",
        rate_bps: 5_000,
        rtt: secs(2),
        mtu: 256,
        // Mean 3.0 %, in bursts of about three frames.
        loss: Loss::GilbertElliott {
            p: 0.01,
            r: 0.3,
            h: 0.1,
            k: 0.999,
        },
        half_duplex: true,
        schedule: Schedule::Always,
    },
];

impl LinkProfile {
    pub fn named(name: &str) -> Option<&'static LinkProfile> {
        PROFILES.iter().find(|p| p.name == name)
    }

    /// The physical limit on goodput: rate × (1 − loss) × uptime, in bits/s.
    pub fn physical_limit_bps(&self) -> f64 {
        self.rate_bps as f64 * (1.0 - self.loss.mean()) * self.schedule.uptime()
    }
}

/// An unknown profile name, with the known ones for the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown link profile {name:?}; known profiles: {known}")]
pub struct UnknownProfile {
    pub name: String,
    pub known: String,
}

impl FromStr for &'static LinkProfile {
    type Err = UnknownProfile;
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        LinkProfile::named(name).ok_or_else(|| UnknownProfile {
            name: name.to_string(),
            known: PROFILES
                .iter()
                .map(|p| p.name)
                .collect::<Vec<_>>()
                .join(", "),
        })
    }
}

impl fmt::Display for LinkProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({} bit/s, {:?} RTT, {} B frames, {:.1} % loss)",
            self.name,
            self.rate_bps,
            self.rtt,
            self.mtu,
            self.loss.mean() * 100.0
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn profiles_match_the_design_table() {
        let mean = |name| LinkProfile::named(name).unwrap().loss.mean();
        assert!((mean("lte-bush") - 0.01).abs() < 1e-9);
        assert!(
            (mean("drone-wifi") - 0.02).abs() < 0.001,
            "{}",
            mean("drone-wifi")
        );
        assert!(
            (mean("acoustic") - 0.03).abs() < 0.001,
            "{}",
            mean("acoustic")
        );
        for p in PROFILES {
            p.loss.validate().unwrap();
        }
        assert!(
            "satellite"
                .parse::<&LinkProfile>()
                .unwrap_err()
                .to_string()
                .contains("geo-sat")
        );
    }

    #[test]
    fn gilbert_elliott_loses_its_mean_in_bursts() {
        let loss = LinkProfile::named("acoustic").unwrap().loss;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut state = LossState::default();
        let n = 400_000;
        let mut lost = 0;
        let mut runs = 0;
        let mut previous = false;
        for _ in 0..n {
            let l = state.lose(&loss, &mut rng);
            lost += usize::from(l);
            runs += usize::from(l && !previous);
            previous = l;
        }
        let rate = lost as f64 / n as f64;
        assert!((rate - loss.mean()).abs() < 0.003, "rate {rate}");
        // Bernoulli at 3 % would give bursts of ~1.03 frames.
        assert!(
            lost as f64 / runs as f64 > 2.0,
            "mean burst {}",
            lost as f64 / runs as f64
        );
    }

    #[test]
    fn schedules_say_when_the_link_changes() {
        let s = Schedule::Periodic {
            up: secs(480),
            period: secs(5400),
        };
        assert_eq!(s.at(secs(0)), (true, Some(secs(480))));
        assert_eq!(s.at(secs(500)), (false, Some(secs(5400))));
        assert_eq!(s.at(secs(5401)), (true, Some(secs(5880))));
        let o = Schedule::Outages {
            outage: secs(120),
            period: secs(3600),
        };
        assert_eq!(o.at(secs(3500)), (false, Some(secs(3600))));
        assert!((o.uptime() - (1.0 - 120.0 / 3600.0)).abs() < 1e-12);
    }
}
