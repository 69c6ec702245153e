//! Reports: the figures DTN users know from The ONE's MessageStatsReport
//! (delivery ratio, latency, overhead, hop counts, buffer occupancy), plus
//! custody retransmissions, bytes on air and goodput per link, and dedupe
//! savings. Written as a human summary, JSON and a CSV time series.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use ferry_core::Instant;
use serde::Serialize;

use crate::net::Net;
use crate::run::Tally;
use crate::scenario::Scenario;

/// One row of the time series.
#[derive(Clone, Debug)]
pub struct Sample {
    pub t_s: f64,
    pub created: u64,
    /// Deliveries wanted so far (bundles × destinations).
    pub wanted: u64,
    pub delivered: u64,
    pub links_up: u64,
    pub store_bytes_avg: f64,
    pub store_bytes_max: u64,
    /// Bundles held with next hops still to take custody.
    pub bundles_forwarding: u64,
    /// Bytes on the air per wire since the previous sample.
    pub bytes_since_last: Vec<u64>,
}

/// One wire's figures.
#[derive(Clone, Debug, Serialize)]
pub struct LinkReport {
    pub name: String,
    pub profile: String,
    pub rate_bps: u64,
    pub loss_mean: f64,
    /// Bytes on the air, framing included: [a→b, b→a].
    pub bytes_on_air: [u64; 2],
    pub frames: [u64; 2],
    pub lost: [u64; 2],
    pub dropped: [u64; 2],
    pub oversize: [u64; 2],
    /// Fraction of the run the link was up.
    pub uptime: f64,
    /// Seconds during which some bundle was waiting to cross the link.
    pub active_s: f64,
    /// Seconds of `active_s` the link was up.
    pub active_up_s: f64,
    /// Bytes that had to cross (chunks new to the receiver) for the
    /// bundles that crossed it.
    pub carried_bytes: u64,
    /// rate × (1 − loss), bits/s, while up.
    pub physical_limit_bps: f64,
    /// carried bits / (physical limit × active time up); None without work.
    pub goodput_ratio: Option<f64>,
}

/// One workload's releases.
#[derive(Clone, Debug, Serialize)]
pub struct WorkloadReport {
    pub name: String,
    pub releases: u64,
    pub payload_bytes_avg: f64,
    /// Bytes of chunks no earlier version had, per release.
    pub new_bytes_avg: f64,
}

/// The report of one run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub scenario: String,
    pub seed: u64,
    pub event_log_hash: String,
    pub log_entries: u64,
    pub simulated_s: f64,
    pub wall_s: f64,
    pub nodes: usize,
    pub links: usize,
    /// Bundles submitted.
    pub created: u64,
    /// Deliveries wanted: each bundle at each destination.
    pub wanted: u64,
    pub delivered: u64,
    pub delivery_ratio: f64,
    pub latency_avg_s: f64,
    pub latency_median_s: f64,
    pub latency_p95_s: f64,
    pub latency_max_s: f64,
    /// (custody transfers − deliveries) / deliveries, as The ONE counts relays.
    pub overhead_ratio: f64,
    /// Bytes on the air over payload bytes delivered.
    pub bytes_on_air_per_delivered_byte: f64,
    pub hop_count_avg: f64,
    pub hop_count_max: u32,
    pub buffer_bytes_avg: f64,
    pub buffer_bytes_max: u64,
    pub custody_transfers: u64,
    /// Offers repeated because the next hop did not answer in time.
    pub custody_retransmissions: u64,
    pub custody_refusals: u64,
    pub expired: u64,
    pub crashes: u64,
    pub payload_bytes_delivered: u64,
    pub bytes_on_air: u64,
    /// Over every link that had work: carried bits / physical limit over
    /// the time the link was up with work.
    pub goodput_ratio: f64,
    /// Share of payload bytes that did not need to cross a link because the
    /// receiver already held those chunks.
    pub dedupe_savings: f64,
    pub dedupe_saved_bytes: u64,
    pub workloads: Vec<WorkloadReport>,
    pub per_link: Vec<LinkReport>,
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Up time of a wire within [from, to], from its contact changes.
fn up_within(changes: &[(Instant, bool)], from: Instant, to: Instant) -> Duration {
    let mut total = Duration::ZERO;
    let mut up = false;
    let mut since = from;
    for &(t, state) in changes {
        if t >= to {
            break;
        }
        if t > from && up {
            total += t.saturating_since(since);
        }
        up = state;
        since = t.max(from);
    }
    if up {
        total += to.saturating_since(since);
    }
    total
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn build_report(
    scenario: &Scenario,
    seed: u64,
    net: &Net,
    tally: &Tally,
    samples: &[Sample],
    reoffers: u64,
    start: Instant,
    duration: Duration,
    wall: Duration,
) -> (Report, Vec<f64>) {
    let end = start + duration;
    let mut latencies = Vec::new();
    let mut hops = Vec::new();
    let mut wanted = 0u64;
    let mut payload_delivered = 0u64;
    for b in tally.bundles.values() {
        wanted += b.destinations.len() as u64;
        for &(node, at, hop) in &b.deliveries {
            if b.destinations.contains(&node) {
                latencies.push(at.saturating_since(b.submitted).as_secs_f64());
                hops.push(hop);
                payload_delivered += b.payload;
            }
        }
    }
    latencies.sort_by(f64::total_cmp);
    let delivered = latencies.len() as u64;
    let mut per_link = Vec::new();
    let (mut carried_bits, mut limit_bits) = (0f64, 0f64);
    let (mut payload_crossing, mut new_crossing) = (0u64, 0u64);
    let mut bytes_on_air = 0u64;
    let empty = Vec::new();
    for (w, l) in scenario.links.iter().enumerate() {
        let s = net.stats(w);
        bytes_on_air += s.bytes[0] + s.bytes[1];
        let changes = tally.contacts.get(&w).unwrap_or(&empty);
        let mut spans: Vec<(Instant, Instant)> = Vec::new();
        let mut carried = 0u64;
        for &(from, to, payload, new) in tally.crossings.get(&w).into_iter().flatten() {
            spans.push((from, to));
            carried += new;
            payload_crossing += payload;
            new_crossing += new;
        }
        spans.sort();
        let mut merged: Vec<(Instant, Instant)> = Vec::new();
        for (a, b) in spans {
            match merged.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        let active: Duration = merged.iter().map(|(a, b)| b.saturating_since(*a)).sum();
        let active_up: Duration = merged.iter().map(|&(a, b)| up_within(changes, a, b)).sum();
        let limit = l.model.rate_bps as f64 * (1.0 - l.model.loss.mean());
        let goodput = (!merged.is_empty() && active_up > Duration::ZERO)
            .then(|| carried as f64 * 8.0 / (limit * active_up.as_secs_f64()));
        if goodput.is_some() {
            carried_bits += carried as f64 * 8.0;
            limit_bits += limit * active_up.as_secs_f64();
        }
        per_link.push(LinkReport {
            name: l.name.clone(),
            profile: l.profile.to_string(),
            rate_bps: l.model.rate_bps,
            loss_mean: l.model.loss.mean(),
            bytes_on_air: s.bytes,
            frames: s.frames,
            lost: s.lost,
            dropped: s.dropped,
            oversize: s.oversize,
            uptime: up_within(changes, start, end).as_secs_f64() / duration.as_secs_f64(),
            active_s: active.as_secs_f64(),
            active_up_s: active_up.as_secs_f64(),
            carried_bytes: carried,
            physical_limit_bps: limit,
            goodput_ratio: goodput,
        });
    }
    let buffer_avg =
        samples.iter().map(|s| s.store_bytes_avg).sum::<f64>() / samples.len().max(1) as f64;
    let report = Report {
        scenario: scenario.name.clone(),
        seed,
        event_log_hash: net.event_log_hash(),
        log_entries: net.log_len(),
        simulated_s: duration.as_secs_f64(),
        wall_s: wall.as_secs_f64(),
        nodes: scenario.nodes.len(),
        links: scenario.links.len(),
        created: tally.bundles.len() as u64,
        wanted,
        delivered,
        delivery_ratio: if wanted == 0 {
            0.0
        } else {
            delivered as f64 / wanted as f64
        },
        latency_avg_s: latencies.iter().sum::<f64>() / latencies.len().max(1) as f64,
        latency_median_s: quantile(&latencies, 0.5),
        latency_p95_s: quantile(&latencies, 0.95),
        latency_max_s: latencies.last().copied().unwrap_or(0.0),
        overhead_ratio: if delivered == 0 {
            0.0
        } else {
            (tally.custody_transfers as f64 - delivered as f64) / delivered as f64
        },
        bytes_on_air_per_delivered_byte: bytes_on_air as f64 / payload_delivered.max(1) as f64,
        hop_count_avg: hops.iter().map(|&h| f64::from(h)).sum::<f64>() / hops.len().max(1) as f64,
        hop_count_max: hops.iter().copied().max().unwrap_or(0),
        buffer_bytes_avg: buffer_avg,
        buffer_bytes_max: samples.iter().map(|s| s.store_bytes_max).max().unwrap_or(0),
        custody_transfers: tally.custody_transfers,
        custody_retransmissions: reoffers,
        custody_refusals: tally.refusals,
        expired: tally.expired,
        crashes: tally.crashes,
        payload_bytes_delivered: payload_delivered,
        bytes_on_air,
        goodput_ratio: if limit_bits > 0.0 {
            carried_bits / limit_bits
        } else {
            0.0
        },
        dedupe_savings: if payload_crossing == 0 {
            0.0
        } else {
            1.0 - new_crossing as f64 / payload_crossing as f64
        },
        dedupe_saved_bytes: payload_crossing - new_crossing,
        workloads: scenario
            .workloads
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let releases: Vec<_> = tally.bundles.values().filter(|b| b.workload == i).collect();
                let n = releases.len().max(1) as f64;
                WorkloadReport {
                    name: w.name.clone(),
                    releases: releases.len() as u64,
                    payload_bytes_avg: releases.iter().map(|b| b.payload as f64).sum::<f64>() / n,
                    new_bytes_avg: releases.iter().map(|b| b.new_bytes as f64).sum::<f64>() / n,
                }
            })
            .collect(),
        per_link,
    };
    (report, latencies)
}

/// Link classes: a scenario's `[[link]]` entry, by the name before any `/`.
pub fn link_classes(scenario: &Scenario) -> BTreeMap<String, Vec<usize>> {
    let mut classes: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (w, l) in scenario.links.iter().enumerate() {
        let class = l.name.split('/').next().unwrap_or(&l.name).to_string();
        classes.entry(class).or_default().push(w);
    }
    classes
}

/// Utilisation of each link class in each sample interval: bits on the air
/// over what the class's links could carry (both directions).
pub fn utilisation(scenario: &Scenario, samples: &[Sample]) -> Vec<(String, Vec<f64>)> {
    link_classes(scenario)
        .into_iter()
        .map(|(class, wires)| {
            let capacity: f64 = wires
                .iter()
                .map(|&w| scenario.links[w].model.rate_bps as f64 * 2.0)
                .sum();
            let series = samples
                .windows(2)
                .map(|pair| {
                    let dt = (pair[1].t_s - pair[0].t_s).max(1e-9);
                    let bits: u64 = wires.iter().map(|&w| pair[1].bytes_since_last[w] * 8).sum();
                    bits as f64 / (capacity * dt)
                })
                .collect();
            (class, series)
        })
        .collect()
}

/// The time series as CSV.
pub fn timeseries_csv(scenario: &Scenario, samples: &[Sample]) -> String {
    let util = utilisation(scenario, samples);
    let mut out = String::from(
        "t_s,created,wanted,delivered,delivery_ratio,links_up,store_bytes_avg,store_bytes_max,bundles_forwarding",
    );
    for (class, _) in &util {
        let _ = write!(out, ",util_{class}");
    }
    out.push('\n');
    for (i, s) in samples.iter().enumerate() {
        let ratio = if s.wanted == 0 {
            0.0
        } else {
            s.delivered as f64 / s.wanted as f64
        };
        let _ = write!(
            out,
            "{:.3},{},{},{},{:.6},{},{:.0},{},{}",
            s.t_s,
            s.created,
            s.wanted,
            s.delivered,
            ratio,
            s.links_up,
            s.store_bytes_avg,
            s.store_bytes_max,
            s.bundles_forwarding
        );
        for (_, series) in &util {
            let v = if i == 0 { 0.0 } else { series[i - 1] };
            let _ = write!(out, ",{v:.6}");
        }
        out.push('\n');
    }
    out
}

/// The human summary.
pub fn summary(scenario: &Scenario, r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "scenario        {} (seed {})", r.scenario, r.seed);
    if !scenario.description.is_empty() {
        let _ = writeln!(s, "                {}", scenario.description);
    }
    let _ = writeln!(
        s,
        "event log       {} entries, hash {}",
        r.log_entries, r.event_log_hash
    );
    let _ = writeln!(
        s,
        "time            {:.0} s simulated in {:.2} s wall; {} nodes, {} links",
        r.simulated_s, r.wall_s, r.nodes, r.links
    );
    let _ = writeln!(
        s,
        "delivery        {} of {} wanted ({:.4}); {} bundles created",
        r.delivered, r.wanted, r.delivery_ratio, r.created
    );
    let _ = writeln!(
        s,
        "latency         avg {:.1} s, median {:.1} s, p95 {:.1} s, max {:.1} s",
        r.latency_avg_s, r.latency_median_s, r.latency_p95_s, r.latency_max_s
    );
    let _ = writeln!(
        s,
        "hops            avg {:.2}, max {}; overhead ratio {:.3}",
        r.hop_count_avg, r.hop_count_max, r.overhead_ratio
    );
    let _ = writeln!(
        s,
        "custody         {} transfers, {} retransmissions (re-offers), {} refusals, {} expired, {} crashes",
        r.custody_transfers, r.custody_retransmissions, r.custody_refusals, r.expired, r.crashes
    );
    let _ = writeln!(
        s,
        "buffers         avg {:.0} B per node, max {} B",
        r.buffer_bytes_avg, r.buffer_bytes_max
    );
    let _ = writeln!(
        s,
        "bytes           {} on the air for {} payload bytes delivered ({:.3} per byte)",
        r.bytes_on_air, r.payload_bytes_delivered, r.bytes_on_air_per_delivered_byte
    );
    let _ = writeln!(
        s,
        "dedupe          {:.4} of payload bytes did not cross ({} bytes saved)",
        r.dedupe_savings, r.dedupe_saved_bytes
    );
    let _ = writeln!(
        s,
        "goodput ratio   {:.4} (carried bits / physical limit while up with work)",
        r.goodput_ratio
    );
    for w in &r.workloads {
        let _ = writeln!(
            s,
            "workload        {}: {} releases, {:.0} B each, {:.0} B of new chunks each",
            w.name, w.releases, w.payload_bytes_avg, w.new_bytes_avg
        );
    }
    let _ = writeln!(s, "links (by class):");
    for (class, wires) in link_classes(scenario) {
        let links: Vec<&LinkReport> = wires.iter().map(|&w| &r.per_link[w]).collect();
        let air: u64 = links
            .iter()
            .map(|l| l.bytes_on_air[0] + l.bytes_on_air[1])
            .sum();
        let lost: u64 = links.iter().map(|l| l.lost[0] + l.lost[1]).sum();
        let frames: u64 = links.iter().map(|l| l.frames[0] + l.frames[1]).sum();
        let goodputs: Vec<f64> = links.iter().filter_map(|l| l.goodput_ratio).collect();
        let goodput = if goodputs.is_empty() {
            "-".to_string()
        } else {
            format!(
                "{:.4}",
                goodputs.iter().sum::<f64>() / goodputs.len() as f64
            )
        };
        let _ = writeln!(
            s,
            "  {class:<20} {} × {}: {air} B on air, {frames} frames, {lost} lost, uptime {:.3}, goodput ratio {goodput}",
            links.len(),
            links[0].profile,
            links.iter().map(|l| l.uptime).sum::<f64>() / links.len() as f64,
        );
    }
    s
}
