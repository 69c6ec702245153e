//! The simulator as users run it: every shipped scenario runs (the heavy ones
//! shortened or shrunk) with its invariants checked, runs repeat exactly,
//! bad scenario files are rejected with their line, the link models behave
//! as specified, and the invariant checker catches a broken promise.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ferry_chunk::Chunker;
use ferry_core::{Endpoint, EngineConfig, MemStore, NodeId, PayloadKind, Submission};
use ferry_sim::run::{Options, Outcome, run};
use ferry_sim::scenario::Scenario;
use ferry_sim::{Entry, LinkModel, Loss, LossCause, Net, Observer, Record, put_object};

fn scenario_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(format!("{name}.toml"))
}

fn load(name: &str) -> Scenario {
    Scenario::load(&scenario_path(name)).unwrap_or_else(|e| panic!("{e}"))
}

fn options(duration: Option<Duration>) -> Options {
    Options {
        duration,
        ..Options::default()
    }
}

fn hours(h: u64) -> Duration {
    Duration::from_secs(h * 3600)
}

/// Runs, writes every output into a temporary directory, and checks they exist.
fn run_and_write(scenario: &Scenario, seed: u64, duration: Option<Duration>) -> Outcome {
    let outcome = run(scenario, seed, &options(duration))
        .unwrap_or_else(|e| panic!("{} seed {seed}: {e}", scenario.name));
    let dir = tempfile::tempdir().unwrap();
    ferry_sim::write_outputs(dir.path(), scenario, &outcome).unwrap();
    for file in [
        "summary.txt",
        "report.json",
        "timeseries.csv",
        "delivery.svg",
        "utilisation.svg",
        "latency_cdf.svg",
    ] {
        let len = std::fs::metadata(dir.path().join(file))
            .unwrap_or_else(|e| panic!("{}: {file}: {e}", scenario.name))
            .len();
        assert!(len > 0, "{}: {file} is empty", scenario.name);
    }
    outcome
}

#[test]
fn geo_sat_5pct_reaches_nine_tenths_of_the_physical_limit() {
    let s = load("geo-sat-5pct");
    let r = run_and_write(&s, s.seed, None).report;
    assert_eq!(r.delivery_ratio, 1.0, "seed {}", r.seed);
    assert!(
        r.goodput_ratio >= 0.90,
        "seed {}: goodput {}",
        r.seed,
        r.goodput_ratio
    );
}

#[test]
fn acoustic_ge_reaches_four_fifths_of_the_physical_limit() {
    let s = load("acoustic-ge");
    let r = run_and_write(&s, s.seed, None).report;
    assert_eq!(r.delivery_ratio, 1.0, "seed {}", r.seed);
    assert!(
        r.goodput_ratio >= 0.80,
        "seed {}: goodput {}",
        r.seed,
        r.goodput_ratio
    );
    let link = &r.per_link[0];
    assert!(
        link.lost[0] > 0,
        "seed {}: bursts and bit errors lose frames",
        r.seed
    );
}

#[test]
fn bush_delivers_the_first_two_days_of_releases() {
    let s = load("bush");
    let r = run_and_write(&s, s.seed, Some(hours(49))).report;
    assert_eq!(r.created, 4, "seed {}", r.seed);
    assert_eq!(r.delivery_ratio, 1.0, "seed {}", r.seed);
    assert!(
        r.dedupe_savings > 0.5,
        "seed {}: provisioned sites fetch only new chunks",
        r.seed
    );
}

#[test]
fn air_waits_for_the_drone_windows_and_delivers() {
    let s = load("air");
    let r = run_and_write(&s, s.seed, Some(hours(14))).report;
    assert!(r.created >= 3, "seed {}", r.seed);
    assert!(r.delivered > 0, "seed {}", r.seed);
    assert_eq!(r.hop_count_max, 2, "seed {}: base → drone → ground", r.seed);
}

#[test]
fn underwater_survives_the_buoy_crash_and_delivers_every_order() {
    let s = load("underwater");
    let r = run_and_write(&s, s.seed, None).report;
    assert_eq!(r.crashes, 1, "seed {}", r.seed);
    assert_eq!(r.delivery_ratio, 1.0, "seed {}", r.seed);
}

#[test]
fn fleet_in_miniature_fans_every_release_out_to_every_leaf() {
    // The shipped fleet with 40 leaves and 4 relays, for a day and a half.
    let text = std::fs::read_to_string(scenario_path("fleet"))
        .unwrap()
        .replace("count = 1000", "count = 40")
        .replace("count = 10", "count = 4");
    let s = Scenario::parse(&scenario_path("fleet"), &text).unwrap();
    let r = run_and_write(&s, s.seed, Some(hours(36))).report;
    assert_eq!(r.created, 4, "seed {}", r.seed);
    assert_eq!(r.wanted, 160, "seed {}", r.seed);
    assert_eq!(r.delivery_ratio, 1.0, "seed {}", r.seed);
    // Each bundle crosses each backhaul link once.
    let backhaul: u64 = r
        .per_link
        .iter()
        .filter(|l| l.name.starts_with("backhaul"))
        .map(|l| l.carried_bytes)
        .sum();
    let new: f64 = r.workloads.iter().map(|w| w.new_bytes_avg * 2.0).sum();
    assert!(
        (backhaul as f64 - new * 4.0).abs() < 1.0,
        "seed {}: {backhaul} vs {new}",
        r.seed
    );
}

#[test]
fn same_seed_same_log_hash_and_another_seed_another() {
    let s = load("geo-sat-5pct");
    let short = Some(Duration::from_secs(200));
    let hash = |seed| {
        run(&s, seed, &options(short))
            .unwrap()
            .report
            .event_log_hash
    };
    let first = hash(7);
    assert_eq!(first, hash(7), "seed 7: two runs differ");
    assert_ne!(first, hash(8), "seeds 7 and 8 give the same log");
}

#[test]
fn adding_a_link_leaves_the_other_links_random_streams_alone() {
    let base = std::fs::read_to_string(scenario_path("geo-sat-5pct")).unwrap();
    let extra = format!(
        "{base}\n[[node]]\nname = \"spare\"\n\n[[link]]\nfrom = \"ground\"\nto = \"spare\"\nprofile = \"lte-bush\"\nloss = 0.3\n"
    );
    let lost = |text: &str| {
        let s = Scenario::parse(&scenario_path("geo-sat-5pct"), text).unwrap();
        let r = run(&s, 3, &options(Some(Duration::from_secs(120))))
            .unwrap()
            .report;
        r.per_link[0].lost
    };
    assert_eq!(
        lost(&base),
        lost(&extra),
        "seed 3: the first link's losses moved"
    );
}

fn parse_err(text: &str) -> String {
    Scenario::parse(Path::new("bad.toml"), text)
        .expect_err("the scenario is invalid")
        .to_string()
}

const HEAD: &str =
    "name = \"t\"\nduration = \"1h\"\n[[node]]\nname = \"a\"\n[[node]]\nname = \"b\"\n";

#[test]
fn unknown_keys_and_impossible_values_are_rejected_with_file_and_line() {
    let cases = [
        (
            "[[link]]\nfrom = \"a\"\nto = \"b\"\nprofile = \"geo-sat\"\nspeed = 3\n",
            11,
            "speed",
        ),
        (
            "[[link]]\nfrom = \"a\"\nto = \"b\"\nprofile = \"geo-sat\"\nrate_bps = -5\n",
            11,
            "u64",
        ),
        (
            "[[link]]\nfrom = \"a\"\nto = \"b\"\nprofile = \"geo-sat\"\nloss = 1.5\n",
            11,
            "loss = 1.5",
        ),
        (
            "[[link]]\nfrom = \"a\"\nto = \"b\"\nprofile = \"satellite\"\n",
            10,
            "geo-sat",
        ),
        (
            "[[link]]\nfrom = \"a\"\nto = \"c\"\nprofile = \"geo-sat\"\n",
            9,
            "unknown node \"c\"",
        ),
        (
            "[[link]]\nfrom = \"a\"\nto = \"b\"\nprofile = \"geo-sat\"\nrtt = \"soon\"\n",
            11,
            "duration",
        ),
        (
            "[[link]]\nfrom = \"a\"\nto = \"b\"\nprofile = \"geo-sat\"\nduplicate = 0.1\nreorder = -0.2\n",
            12,
            "reorder",
        ),
    ];
    for (tail, line, reason) in cases {
        let err = parse_err(&format!("{HEAD}{tail}"));
        assert!(err.starts_with(&format!("bad.toml:{line}: ")), "{err}");
        assert!(err.contains(reason), "{err}");
    }
}

/// Collects log entries for the tests of link models.
struct Collect(std::rc::Rc<std::cell::RefCell<Vec<Entry>>>);

impl Observer for Collect {
    fn observe(&mut self, _: &Net, entry: &Entry) -> Result<(), String> {
        self.0.borrow_mut().push(entry.clone());
        Ok(())
    }
}

fn node(n: u8) -> NodeId {
    NodeId([n; 32])
}

/// Two nodes on one wire, a payload of `size` submitted at the first.
fn pair(
    seed: u64,
    model: LinkModel,
    size: usize,
) -> (Net, std::rc::Rc<std::cell::RefCell<Vec<Entry>>>) {
    let mut net = Net::new(seed);
    let mut config = EngineConfig::new(node(1), seed);
    config.routes.default_hop = Some(node(2));
    let a = net.add_node(config, MemStore::new());
    let b = net.add_node(EngineConfig::new(node(2), seed + 1), MemStore::new());
    let wire = net.add_wire(a, b, model);
    let log = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    net.set_observer(Box::new(Collect(log.clone())));
    let mut data = vec![0; size];
    rand::RngCore::fill_bytes(
        &mut <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(seed),
        &mut data,
    );
    let manifest = put_object(net.engine_mut(a).store_mut(), &Chunker::default(), &data).unwrap();
    let now = net.now;
    net.engine_mut(a)
        .submit(
            now,
            Submission::new(
                Endpoint::Node(node(2)),
                PayloadKind::Blob,
                manifest,
                Duration::from_secs(86_400),
            ),
        )
        .unwrap();
    net.set_up(wire, true);
    (net, log)
}

fn delivered(log: &[Entry]) -> bool {
    log.iter().any(|e| {
        matches!(
            e.record,
            Record::Engine {
                event: ferry_core::Event::Delivered { .. },
                ..
            }
        )
    })
}

#[test]
fn gilbert_elliott_loses_its_mean_in_bursts_on_the_wire() {
    let seed = 21;
    let mut model = LinkModel::new(10_000_000, Duration::from_millis(20), 1400);
    // Mean loss π_bad (1 − h) + π_good (1 − k) = 0.0323 · 0.9 + 0.9677 · 0.001 ≈ 3 %.
    model.loss = Loss::GilbertElliott {
        p: 0.01,
        r: 0.3,
        h: 0.1,
        k: 0.999,
    };
    let (mut net, log) = pair(seed, model, 12_000_000);
    net.run_until(net.now + Duration::from_secs(600));
    let log = log.borrow();
    assert!(delivered(&log), "seed {seed}: delivered");
    // Outcomes of the data direction's frames, in order.
    let outcomes: Vec<bool> = log
        .iter()
        .filter_map(|e| match e.record {
            Record::Sent { dir: 0, .. } => Some(false),
            Record::Lost {
                dir: 0,
                cause: LossCause::Channel,
                ..
            } => Some(true),
            _ => None,
        })
        .collect();
    // Each loss follows its Sent record: count frames and losses.
    let frames = outcomes.iter().filter(|l| !**l).count();
    let lost = outcomes.iter().filter(|l| **l).count();
    let rate = lost as f64 / frames as f64;
    assert!(
        (0.02..0.04).contains(&rate),
        "seed {seed}: loss {rate} over {frames} frames"
    );
    let mut bursts = 0;
    // Consecutive frames lost: a loss whose frame's predecessor was lost too.
    let per_frame: Vec<bool> = {
        let mut v = Vec::new();
        let mut it = outcomes.iter().peekable();
        while let Some(&sent) = it.next() {
            if !sent {
                let lost = it.peek().is_some_and(|&&next| next);
                if lost {
                    it.next();
                }
                v.push(lost);
            }
        }
        v
    };
    for pair in per_frame.windows(2) {
        if pair[1] && !pair[0] {
            bursts += 1;
        }
    }
    let mean_burst = lost as f64 / bursts.max(1) as f64;
    assert!(
        mean_burst > 2.0,
        "seed {seed}: mean burst {mean_burst} (Bernoulli ≈ 1.03)"
    );
}

#[test]
fn frames_in_flight_when_a_contact_closes_are_lost_and_the_transfer_resumes() {
    let seed = 22;
    let mut model = LinkModel::new(1_000_000, Duration::from_secs(4), 1400);
    model.pipeline = true;
    let (mut net, log) = pair(seed, model, 400_000);
    net.run_until(net.now + Duration::from_secs(5));
    net.set_up(0, false);
    net.run_until(net.now + Duration::from_secs(30));
    let cut = log
        .borrow()
        .iter()
        .filter(|e| {
            matches!(
                e.record,
                Record::Lost {
                    cause: LossCause::ContactEnded,
                    ..
                }
            )
        })
        .count();
    assert!(cut > 10, "seed {seed}: {cut} frames lost in flight");
    assert!(!delivered(&log.borrow()), "seed {seed}: not yet");
    net.set_up(0, true);
    net.run_until(net.now + Duration::from_secs(120));
    assert!(
        delivered(&log.borrow()),
        "seed {seed}: delivered in the next window"
    );
}

#[test]
fn bit_errors_on_a_serial_link_fail_the_crc_and_are_repaired() {
    let seed = 23;
    let mut model = LinkModel::from_profile(ferry_sim::LinkProfile::named("iridium-sbd").unwrap());
    model.loss = Loss::None;
    model.bit_error_rate = 1e-4;
    let (mut net, log) = pair(seed, model, 20_000);
    net.run_until(net.now + Duration::from_secs(3 * 3600));
    let log = log.borrow();
    let corrupt = log
        .iter()
        .filter(|e| {
            matches!(
                e.record,
                Record::Lost {
                    cause: LossCause::Corrupt,
                    ..
                }
            )
        })
        .count();
    assert!(
        corrupt > 5,
        "seed {seed}: {corrupt} frames failed their CRC"
    );
    assert!(delivered(&log), "seed {seed}: repaired and delivered");
}

#[test]
fn a_full_queue_drops_the_tail() {
    let seed = 24;
    let mut model = LinkModel::new(100_000, Duration::from_millis(100), 1400);
    model.pipeline = true;
    model.queue = Some(ferry_sim::QueueLimit {
        frames: 8,
        ingress_bps: 10_000_000,
    });
    let (mut net, log) = pair(seed, model, 300_000);
    net.run_until(net.now + Duration::from_secs(600));
    let log = log.borrow();
    assert!(
        log.iter().any(|e| matches!(
            e.record,
            Record::Lost {
                cause: LossCause::QueueFull,
                ..
            }
        )),
        "seed {seed}: the host outran the queue"
    );
    assert!(delivered(&log), "seed {seed}: repaired and delivered");
}

#[test]
fn the_checker_fails_a_run_whose_custodian_loses_its_disk() {
    // The relay holds custody (the leaf's window opens at 2 h) and loses
    // its store at 1 h: custody was dropped, and the run must say so.
    let text = r#"
name = "lost-disk"
duration = "4h"
[[node]]
name = "base"
[[node]]
name = "relay"
[[node]]
name = "leaf"
[[link]]
from = "base"
to = "relay"
profile = "lte-bush"
always_up = true
[[link]]
from = "relay"
to = "leaf"
profile = "lte-bush"
windows = [["2h", "3h"]]
[[workload]]
name = "w"
from = "base"
to = "leaf"
size = 100_000
first = "1m"
[[fault]]
at = "1h"
wipe = "relay"
for = "1m"
"#;
    let s = Scenario::parse(Path::new("lost-disk.toml"), text).unwrap();
    let err = match run(&s, 5, &options(None)) {
        Ok(_) => panic!("seed 5: the checker let a dropped custody pass"),
        Err(e) => e,
    };
    assert!(err.contains("seed 5"), "{err}");
    assert!(err.contains("step"), "{err}");
    assert!(err.contains("custody dropped"), "{err}");
    // The same scenario with a plain crash (the disk survives) passes.
    let s = Scenario::parse(Path::new("crash.toml"), &text.replace("wipe =", "crash =")).unwrap();
    let r = run(&s, 5, &options(None)).unwrap().report;
    assert_eq!(r.delivery_ratio, 1.0, "seed 5");
}

#[test]
fn sweep_writes_one_row_per_seed_and_grid_point() {
    let s = load("geo-sat-5pct");
    let axes = vec![
        "loss=0,0.05".parse().unwrap(),
        "rtt=100ms,650ms".parse().unwrap(),
    ];
    let points = ferry_sim::sweep::sweep(
        &s,
        &[1, 2],
        &axes,
        &options(Some(Duration::from_secs(200))),
        |_, _| {},
    )
    .unwrap();
    let csv = ferry_sim::sweep::csv(&axes, &points);
    assert_eq!(csv.lines().count(), 1 + 8, "{csv}");
    assert!(
        csv.starts_with("seed,loss,rtt,delivery_ratio,goodput_ratio"),
        "{csv}"
    );
    let series = ferry_sim::sweep::plot_series(&axes, &points);
    let dir = tempfile::tempdir().unwrap();
    ferry_sim::plot::lines(&dir.path().join("sweep.svg"), "t", "loss", "ratio", &series).unwrap();
    assert!("mtu=20".parse::<ferry_sim::sweep::Axis>().is_err());
    assert!("loss=2".parse::<ferry_sim::sweep::Axis>().is_err());
}

#[test]
fn the_command_prints_the_json_report() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferry-sim"))
        .args(["run", scenario_path("geo-sat-5pct").to_str().unwrap()])
        .args([
            "--seed",
            "4",
            "--duration",
            "2m",
            "--json",
            "--quiet",
            "--out",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "--quiet: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in [
        "scenario",
        "seed",
        "event_log_hash",
        "delivery_ratio",
        "goodput_ratio",
        "latency_p95_s",
    ] {
        assert!(json.get(key).is_some(), "{key} missing");
    }
    assert_eq!(json["seed"], 4);
    assert!(dir.path().join("delivery.svg").exists());
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_ferry-sim"))
        .args(["run", "/nonexistent.toml"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
}

#[test]
fn the_two_ends_of_a_half_duplex_link_never_talk_at_once() {
    let seed = 25;
    let model = LinkModel::from_profile(ferry_sim::LinkProfile::named("acoustic").unwrap());
    let rate = model.rate_bps as f64;
    let (mut net, log) = pair(seed, model, 30_000);
    net.run_until(net.now + Duration::from_secs(3 * 3600));
    let log = log.borrow();
    assert!(delivered(&log), "seed {seed}: delivered");
    let mut spans: Vec<(f64, f64, u8)> = log
        .iter()
        .filter_map(|e| match e.record {
            Record::Sent { dir, on_air, .. } => {
                let start = e.at.0 as f64 / 1e6;
                Some((start, start + f64::from(on_air) * 8.0 / rate, dir))
            }
            _ => None,
        })
        .collect();
    spans.sort_by(|a, b| a.0.total_cmp(&b.0));
    let turns = spans.windows(2).filter(|w| w[0].2 != w[1].2).count();
    assert!(turns > 4, "seed {seed}: {turns} changes of speaker");
    for w in spans.windows(2) {
        if w[0].2 != w[1].2 {
            assert!(
                w[1].0 >= w[0].1,
                "seed {seed}: both ends on the air at {}",
                w[1].0
            );
        }
    }
}

const RELAY: &str = r#"
name = "relay"
duration = "3h"
[[node]]
name = "base"
[[node]]
name = "relay"
[[node]]
name = "leaf"
[[link]]
from = "base"
to = "relay"
profile = "lte-bush"
always_up = true
[[link]]
name = "last-mile"
from = "relay"
to = "leaf"
profile = "lte-bush"
always_up = true
[[workload]]
name = "w"
from = "base"
to = "leaf"
size = 300_000
first = "1m"
"#;

#[test]
fn a_scripted_partition_delays_delivery_until_it_heals() {
    let text = format!("{RELAY}[[fault]]\nat = \"30s\"\ncut = \"last-mile\"\nfor = \"1h\"\n");
    let s = Scenario::parse(Path::new("cut.toml"), &text).unwrap();
    let r = run(&s, 6, &options(None)).unwrap().report;
    assert_eq!(r.delivery_ratio, 1.0, "seed 6");
    assert!(
        r.latency_max_s >= 3540.0,
        "seed 6: delivered after the cut, {} s",
        r.latency_max_s
    );
    let last_mile = r.per_link.iter().find(|l| l.name == "last-mile").unwrap();
    assert!(
        last_mile.uptime < 0.7,
        "seed 6: uptime {}",
        last_mile.uptime
    );
}

#[test]
fn a_full_relay_refuses_custody_and_the_base_keeps_the_bundle() {
    let text = RELAY.replace(
        "name = \"relay\"\n[[node]]",
        "name = \"relay\"\nquota = 50_000\n[[node]]",
    );
    let s = Scenario::parse(Path::new("quota.toml"), &text).unwrap();
    let r = run(&s, 7, &options(None)).unwrap().report;
    assert!(r.custody_refusals > 0, "seed 7: the relay refused");
    assert_eq!(r.delivered, 0, "seed 7: nothing can pass the full relay");
}
