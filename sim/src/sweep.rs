//! Sweeps: one scenario across seeds and a grid of link parameters (loss,
//! round trip, MTU, contact duty cycle) into one CSV and one plot.

use std::fmt::Write as _;
use std::time::Duration;

use ferry_link::profile::{Loss, Schedule};

use crate::report::Report;
use crate::run::{Options, run};
use crate::scenario::{Contacts, Scenario};

/// A parameter the sweep varies on every link of the scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Param {
    /// Bernoulli loss probability.
    Loss,
    /// Round-trip time (humantime, e.g. 650ms).
    Rtt,
    /// Frame MTU in bytes (the modem's frame size on serial links).
    Mtu,
    /// Fraction of each period a scheduled link is up.
    Duty,
}

impl Param {
    pub fn name(self) -> &'static str {
        match self {
            Param::Loss => "loss",
            Param::Rtt => "rtt",
            Param::Mtu => "mtu",
            Param::Duty => "duty",
        }
    }
}

/// `NAME=v1,v2,…`, parsed; values kept as given and as numbers.
#[derive(Clone, Debug)]
pub struct Axis {
    pub param: Param,
    pub values: Vec<(String, f64)>,
}

impl std::str::FromStr for Axis {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let (name, values) = text
            .split_once('=')
            .ok_or_else(|| format!("{text:?}: expected NAME=v1,v2,… (loss, rtt, mtu or duty)"))?;
        let param = match name {
            "loss" => Param::Loss,
            "rtt" => Param::Rtt,
            "mtu" => Param::Mtu,
            "duty" => Param::Duty,
            other => {
                return Err(format!(
                    "unknown sweep parameter {other:?}; use loss, rtt, mtu or duty"
                ));
            }
        };
        let values = values
            .split(',')
            .map(|v| {
                let number = match param {
                    Param::Rtt => humantime::parse_duration(v)
                        .map(|d| d.as_secs_f64())
                        .map_err(|e| format!("{name}={v}: {e}")),
                    _ => v.parse::<f64>().map_err(|e| format!("{name}={v}: {e}")),
                }?;
                let ok = match param {
                    Param::Loss | Param::Duty => (0.0..=1.0).contains(&number),
                    Param::Rtt => number >= 0.0,
                    Param::Mtu => number >= 32.0 && number.fract() == 0.0,
                };
                if ok {
                    Ok((v.to_string(), number))
                } else {
                    Err(format!("{name}={v} is out of range"))
                }
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Axis { param, values })
    }
}

/// Seeds `a..b` (inclusive) or a single seed.
pub fn parse_seeds(text: &str) -> Result<Vec<u64>, String> {
    let parse = |s: &str| {
        s.trim()
            .parse::<u64>()
            .map_err(|e| format!("seed {s:?}: {e}"))
    };
    match text.split_once("..") {
        Some((a, b)) => {
            let (a, b) = (parse(a)?, parse(b.trim_start_matches('='))?);
            if a > b {
                return Err(format!("seeds {text:?}: empty range"));
            }
            Ok((a..=b).collect())
        }
        None => text.split(',').map(parse).collect(),
    }
}

/// The scenario with `param` set to `value` on every link.
pub fn apply(scenario: &mut Scenario, param: Param, value: f64) -> Result<(), String> {
    for l in &mut scenario.links {
        match param {
            Param::Loss => l.model.loss = Loss::Bernoulli(value),
            Param::Rtt => l.model.delay = Duration::from_secs_f64(value / 2.0),
            Param::Mtu => {
                l.model.mtu = value as u32;
                if let Some(s) = l.model.serial.as_mut() {
                    s.modem_mtu = value as usize;
                }
            }
            Param::Duty => {
                l.contacts = match &l.contacts {
                    Contacts::Schedule { schedule, phase } => {
                        let period = match schedule {
                            Schedule::Always => Duration::from_secs(3600),
                            Schedule::Periodic { period, .. }
                            | Schedule::Outages { period, .. } => *period,
                        };
                        Contacts::Schedule {
                            schedule: Schedule::Periodic {
                                up: period.mul_f64(value),
                                period,
                            },
                            phase: *phase,
                        }
                    }
                    Contacts::Windows(_) => {
                        return Err(format!(
                            "link {}: duty cycle applies to scheduled links, not explicit windows",
                            l.name
                        ));
                    }
                };
            }
        }
        l.model
            .validate()
            .map_err(|e| format!("link {}: {}={value}: {e}", l.name, param.name()))?;
    }
    Ok(())
}

/// One run of the grid.
pub struct Point {
    pub seed: u64,
    pub values: Vec<(Param, String, f64)>,
    pub report: Report,
}

/// Runs every combination of `axes` with every seed.
pub fn sweep(
    scenario: &Scenario,
    seeds: &[u64],
    axes: &[Axis],
    options: &Options,
    mut progress: impl FnMut(usize, usize),
) -> Result<Vec<Point>, String> {
    let mut combos: Vec<Vec<(Param, String, f64)>> = vec![Vec::new()];
    for axis in axes {
        combos = combos
            .into_iter()
            .flat_map(|c| {
                axis.values.iter().map(move |(text, v)| {
                    let mut c = c.clone();
                    c.push((axis.param, text.clone(), *v));
                    c
                })
            })
            .collect();
    }
    let total = combos.len() * seeds.len();
    let mut points = Vec::new();
    for combo in combos {
        let mut s = scenario.clone();
        for (param, _, v) in &combo {
            apply(&mut s, *param, *v)?;
        }
        for &seed in seeds {
            progress(points.len(), total);
            let outcome = run(&s, seed, options)?;
            points.push(Point {
                seed,
                values: combo.clone(),
                report: outcome.report,
            });
        }
    }
    Ok(points)
}

/// The sweep as CSV: one row per run.
pub fn csv(axes: &[Axis], points: &[Point]) -> String {
    let mut out = String::from("seed");
    for a in axes {
        let _ = write!(out, ",{}", a.param.name());
    }
    out.push_str(",delivery_ratio,goodput_ratio,latency_median_s,latency_p95_s,bytes_on_air,custody_retransmissions,event_log_hash\n");
    for p in points {
        let _ = write!(out, "{}", p.seed);
        for (_, text, _) in &p.values {
            let _ = write!(out, ",{text}");
        }
        let r = &p.report;
        let _ = writeln!(
            out,
            ",{:.6},{:.6},{:.3},{:.3},{},{},{}",
            r.delivery_ratio,
            r.goodput_ratio,
            r.latency_median_s,
            r.latency_p95_s,
            r.bytes_on_air,
            r.custody_retransmissions,
            r.event_log_hash
        );
    }
    out
}

/// Mean goodput and delivery ratio against the first axis, one line per
/// value of the other axes.
pub fn plot_series(axes: &[Axis], points: &[Point]) -> Vec<(String, Vec<(f64, f64)>)> {
    let mut series: std::collections::BTreeMap<
        String,
        std::collections::BTreeMap<u64, (f64, f64, f64)>,
    > = Default::default();
    for p in points {
        let rest: Vec<String> = p.values[1.min(p.values.len())..]
            .iter()
            .map(|(param, text, _)| format!("{}={text}", param.name()))
            .collect();
        let x = p.values.first().map_or(0.0, |v| v.2);
        for (what, y) in [
            ("goodput", p.report.goodput_ratio),
            ("delivery", p.report.delivery_ratio),
        ] {
            let name = if rest.is_empty() {
                what.to_string()
            } else {
                format!("{what} {}", rest.join(" "))
            };
            let e = series
                .entry(name)
                .or_default()
                .entry(x.to_bits())
                .or_insert((x, 0.0, 0.0));
            e.1 += y;
            e.2 += 1.0;
        }
    }
    let _ = axes;
    series
        .into_iter()
        .map(|(name, pts)| {
            let mut v: Vec<(f64, f64)> = pts.values().map(|&(x, sum, n)| (x, sum / n)).collect();
            v.sort_by(|a, b| a.0.total_cmp(&b.0));
            (name, v)
        })
        .collect()
}
