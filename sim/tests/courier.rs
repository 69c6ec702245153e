//! A courier on a schedule next to a radio link, on the simulator's virtual
//! clock: every week a drive leaves the base with an export for an
//! air-gapped site, arrives two days later, and comes back two days after
//! that with the site's receipts; each trip may lose the drive. Meanwhile a
//! leaf gets its releases over a slow radio link. Real engines, real
//! volumes (bytes), one seed.

use std::time::Duration;

use ferry_chunk::{Chunker, ChunkerConfig};
use ferry_core::{
    Endpoint, EngineConfig, Event, ExportOptions, Instant, MemStore, NodeId, PayloadKind, Priority,
    Routes, Submission,
};
use ferry_sim::{LinkModel, Net, put_object};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

const BASE: NodeId = NodeId([1; 32]);
const SITE: NodeId = NodeId([2; 32]);
const LEAF: NodeId = NodeId([3; 32]);
const DAY: Duration = Duration::from_secs(24 * 3600);

fn seed() -> u64 {
    std::env::var("FERRY_SIM_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(11)
}

/// What happened, for the determinism check and the assertions.
#[derive(Debug, PartialEq, Eq, Default)]
struct Log {
    lines: Vec<String>,
    lost: u32,
    carried_bytes: u64,
    full_bytes: u64,
}

/// Runs `weeks` of trips losing each medium with probability `loss`, then
/// `clear_weeks` in which nothing is lost.
fn run(
    seed: u64,
    weeks: u32,
    clear_weeks: u32,
    loss: f64,
) -> (Net, Log, Vec<ferry_core::BundleId>) {
    let mut net = Net::new(seed);
    let mut base_config = EngineConfig::new(BASE, seed);
    base_config.routes = Routes {
        // The site is reached only by courier; the leaf over the radio.
        next_hop: [(SITE, SITE), (LEAF, LEAF)].into(),
        ..Default::default()
    };
    let base = net.add_node(base_config, MemStore::new());
    let site = net.add_node(EngineConfig::new(SITE, seed + 1), MemStore::new());
    let leaf = net.add_node(EngineConfig::new(LEAF, seed + 2), MemStore::new());
    // iridium-sbd-like: 2.4 kbit/s, 10 s round trip, 340-byte frames, 2 % loss.
    let mut radio = LinkModel::new(2_400, Duration::from_secs(10), 340);
    radio.loss = ferry_sim::Loss::Bernoulli(0.02);
    let wire = net.add_wire(base, leaf, radio);
    net.set_up(wire, true);

    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xc0c0);
    let chunker = Chunker::new(ChunkerConfig::default()).unwrap();
    let mut log = Log::default();
    let mut site_bundles = Vec::new();
    // A release of a few files, changed a little each week.
    let mut files: Vec<Vec<u8>> = (0..4)
        .map(|i| {
            let mut b = vec![0; 60_000 + 40_000 * i];
            rng.fill_bytes(&mut b);
            b
        })
        .collect();
    let start = Instant(1_700_000_000_000_000);
    net.run_until(start);
    for week in 0..weeks + clear_weeks {
        let monday = start + DAY * 7 * week;
        net.run_until(monday);
        // This week's release: one file edited, all sent to the site, a
        // small config to the leaf over the radio.
        let changed = rng.random_range(0..files.len());
        let at = rng.random_range(0..files[changed].len() - 64);
        rng.fill_bytes(&mut files[changed][at..at + 64]);
        for file in &files {
            let manifest = put_object(net.engine_mut(base).store_mut(), &chunker, file).unwrap();
            let now = net.now;
            let id = net
                .engine_mut(base)
                .submit(
                    now,
                    Submission {
                        destination: Endpoint::Node(SITE),
                        lifetime: DAY * 365,
                        priority: Priority::Normal,
                        kind: PayloadKind::Blob,
                        manifest,
                        release: format!("week {week}").into_bytes(),
                        signature: Vec::new(),
                    },
                )
                .unwrap();
            site_bundles.push(id);
        }
        let mut config = vec![0; 1_500];
        rng.fill_bytes(&mut config);
        let manifest = put_object(net.engine_mut(base).store_mut(), &chunker, &config).unwrap();
        let now = net.now;
        net.engine_mut(base)
            .submit(
                now,
                Submission {
                    destination: Endpoint::Node(LEAF),
                    lifetime: DAY * 365,
                    priority: Priority::Normal,
                    kind: PayloadKind::Blob,
                    manifest,
                    release: format!("leaf week {week}").into_bytes(),
                    signature: Vec::new(),
                },
            )
            .unwrap();

        // The courier leaves with this week's export.
        let now = net.now;
        let plan = net
            .engine_mut(base)
            .plan_export(now, Endpoint::Node(SITE), ExportOptions::default())
            .unwrap();
        let mut volume = Vec::new();
        plan.write_volume(0, net.engine(base).store(), &mut volume, |_| {})
            .unwrap();
        log.carried_bytes += volume.len() as u64;
        log.full_bytes += plan.summary().full_bytes;
        let lossy = week < weeks;
        let out_lost = lossy && rng.random_bool(loss);
        let back_lost = lossy && rng.random_bool(loss);
        net.run_until(monday + DAY * 2);
        let mut receipts = Vec::new();
        if out_lost {
            log.lost += 1;
            log.lines.push(format!(
                "week {week}: drive lost on the way out ({} B)",
                volume.len()
            ));
        } else {
            let now = net.now;
            let report = net
                .engine_mut(site)
                .import_volume(now, &volume[..])
                .unwrap();
            assert!(report.problems.is_empty(), "{:?}", report.problems);
            log.lines.push(format!(
                "week {week}: site took {} bundle(s), {} already held, {} B",
                report.accepted.len(),
                report.already_held.len(),
                volume.len()
            ));
        }
        // The courier always brings receipts back (the site's state, even
        // if nothing new arrived).
        let now = net.now;
        net.engine(site)
            .export_receipts(now, &mut receipts)
            .unwrap();
        net.run_until(monday + DAY * 4);
        if back_lost {
            log.lost += 1;
            log.lines
                .push(format!("week {week}: receipts lost on the way back"));
        } else {
            let now = net.now;
            let report = net
                .engine_mut(base)
                .import_volume(now, &receipts[..])
                .unwrap();
            log.lines.push(format!(
                "week {week}: base released {} bundle(s)",
                report.released.len()
            ));
        }
    }
    net.run_until(start + DAY * 7 * (weeks + clear_weeks));
    (net, log, site_bundles)
}

#[test]
fn a_weekly_courier_that_loses_drives_still_delivers_everything_and_releases_custody() {
    let seed = seed();
    println!("seed {seed} (FERRY_SIM_SEED to change)");
    let (net, log, site_bundles) = run(seed, 8, 2, 0.3);
    for line in &log.lines {
        println!("{line}");
    }
    assert!(log.lost > 0, "the seed should lose at least one drive");
    let (base, site, leaf) = (0, 1, 2);
    for id in &site_bundles {
        let record = net.engine(site).bundle(id).expect("delivered at the site");
        assert!(record.delivered);
        assert_eq!(record.custody_from, Some(BASE));
        assert!(
            net.engine(base).bundle(id).unwrap().pending_hops.is_empty(),
            "custody of {id} released at the base"
        );
    }
    // Each release reached the site at least two days after it was made.
    for (at, event) in net.events(site) {
        if let Event::Delivered { bundle, .. } = event {
            assert!(
                at.saturating_since(Instant::from_millis(bundle.created_ms)) >= DAY * 2,
                "{bundle} arrived faster than the courier"
            );
        }
    }
    // The radio link carried the leaf's configs meanwhile.
    let leaf_delivered = net
        .events(leaf)
        .iter()
        .filter(|(_, e)| matches!(e, Event::Delivered { .. }))
        .count();
    assert_eq!(leaf_delivered, 10, "one config a week over the radio");
    // Drives carry what the site lacks, not whole releases.
    assert!(
        log.carried_bytes * 3 < log.full_bytes,
        "carried {} B against {} B of full exports",
        log.carried_bytes,
        log.full_bytes
    );
}

#[test]
fn the_same_seed_gives_the_same_trips() {
    let seed = seed();
    let (a, log_a, _) = run(seed, 3, 1, 0.5);
    let (b, log_b, _) = run(seed, 3, 1, 0.5);
    assert_eq!(log_a, log_b);
    for node in 0..3 {
        assert_eq!(a.events(node), b.events(node), "node {node}");
    }
}
