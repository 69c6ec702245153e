//! `cargo bench --bench git_replay [-- --repo PATH --branch NAME]`: a Git
//! history replayed release by release through base → relay → leaf.
//!
//! Each step sets the base's repository to the next refs of the history,
//! publishes with ferry-git (thin pack against what the relay confirmed),
//! carries the bundle over the real engines on ferry-sim's virtual clock
//! (2 Mbit/s, 80 ms RTT, MTU 1400, no loss: the figure is protocol
//! overhead, not repair) and applies it into a real bare repository at the
//! leaf, whose refs must then equal the base's.
//!
//! Prints one JSON line; `bytes_vs_git_bundle` = every byte ferry put on
//! the base ↔ relay link (both directions: Hellos, offers, want-lists, chunk
//! frames, custody signals) / the sum of `git bundle create <new> ^<old>`
//! sizes for the same steps (a full bundle for the first; steps git bundle
//! cannot express, like a ref deletion, count 0 for git). Also printed:
//! the deltified (`pack-objects` default, chosen) and undeltified
//! (`--window=0 --depth=0`, what gix writes) thin-pack sums, and where the
//! link bytes went by frame type.
//!
//! Without `--repo`, the generated repository (ferry_git::fixture, 300
//! commits, FERRY_BENCH_SEED); with it, the first-parent history of
//! `--branch` (default `main`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant as Clock;

use ferry_git::fixture::{self, Step};
use ferry_git::{Git, Oid, Publisher};

#[path = "../tests/git_harness.rs"]
mod git_harness;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let seed: u64 = std::env::var("FERRY_BENCH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let tmp = tempfile::tempdir().expect("temp dir");
    let started = Clock::now();
    let (git, steps, source) = match value("--repo") {
        Some(repo) => {
            let branch = value("--branch").unwrap_or_else(|| "main".into());
            let (git, steps) = borrow_history(Path::new(&repo), &branch, tmp.path());
            (git, steps, format!("{repo} first-parent {branch}"))
        }
        None => {
            let replay = fixture::generate(&tmp.path().join("upstream.git"), 300, seed)
                .expect("generate the repository");
            (replay.git, replay.steps, format!("generated, seed {seed}"))
        }
    };
    let publisher = Publisher::new(git.dir(), "replay", &[]).expect("publisher");
    let mut net = git_harness::TwoHop::new(seed, 0.0, publisher, &tmp.path().join("served"));
    net.net.record_transmissions();
    let leaf = Git::new(net.applier.root().repo_dir("replay").expect("name"));

    let (mut bundle_sum, mut deltified, mut undeltified, mut payload, mut release) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut previous: BTreeMap<String, Oid> = BTreeMap::new();
    for (i, step) in steps.iter().enumerate() {
        fixture::set_refs(&git, &step.refs).expect("set refs");
        bundle_sum += bundle_size(&git, &previous, &step.refs, &tmp.path().join("b"));
        deltified += pack_size(&git, &previous, &step.refs, false);
        undeltified += pack_size(&git, &previous, &step.refs, true);
        if let Some(out) = net.step() {
            payload += out.payload_bytes as u64;
            release += out.release_bytes as u64;
        }
        let leaf_refs = leaf.refs(&["refs/".to_owned()]).expect("leaf refs");
        assert_eq!(
            leaf_refs, step.refs,
            "step {i} ({}): leaf differs",
            step.what
        );
        previous = step.refs.clone();
    }
    let link = net.wire_bytes(net.first_hop);
    let breakdown = net.breakdown();
    println!(
        "{}",
        serde_json::json!({
            "bench": "git_replay",
            "bytes_vs_git_bundle": link as f64 / bundle_sum as f64,
            "commits": steps.len(),
            "source": source,
            "seed": seed,
            "ferry_link_bytes": link,
            "git_bundle_bytes": bundle_sum,
            "relay_to_leaf_bytes": net.wire_bytes(net.second_hop),
            "pack_payload_bytes": payload,
            "release_bytes": release,
            "thin_pack_deltified_bytes": deltified,
            "thin_pack_undeltified_bytes": undeltified,
            "link_bytes_by_frame": breakdown,
            "wall_seconds": started.elapsed().as_secs_f64(),
        })
    );
}

/// A bare repository borrowing `repo`'s objects (alternates), and the
/// first-parent history of `branch` as steps.
fn borrow_history(repo: &Path, branch: &str, tmp: &Path) -> (Git, Vec<Step>) {
    let common = Git::new(repo.join(".git"));
    let objects = if repo.join(".git").exists() {
        let dir = common
            .text(["rev-parse", "--git-common-dir"])
            .expect("git dir");
        let dir = PathBuf::from(dir);
        let dir = if dir.is_absolute() {
            dir
        } else {
            repo.join(".git").join(dir)
        };
        dir.join("objects")
    } else {
        repo.join("objects")
    };
    let src = objects
        .parent()
        .expect("objects dir has a parent")
        .to_owned();
    let steps = fixture::first_parent_history(&src, branch).expect("history");
    let dir = tmp.join("borrowed.git");
    let status = std::process::Command::new("git")
        .args(["init", "--bare", "-q"])
        .arg(&dir)
        .status()
        .expect("git init");
    assert!(status.success());
    std::fs::write(
        dir.join("objects/info/alternates"),
        format!("{}\n", objects.display()),
    )
    .expect("alternates");
    (Git::new(dir), steps)
}

fn revs(
    previous: &BTreeMap<String, Oid>,
    now: &BTreeMap<String, Oid>,
) -> (Vec<String>, Vec<String>) {
    let changed: Vec<String> = now
        .iter()
        .filter(|(n, o)| previous.get(*n) != Some(o))
        .map(|(n, _)| n.clone())
        .collect();
    let mut old: Vec<String> = previous.values().map(|o| format!("^{o}")).collect();
    old.sort();
    old.dedup();
    (changed, old)
}

/// `git bundle create` for what changed since `previous`; 0 when git
/// refuses (nothing new to carry, e.g. a deletion).
fn bundle_size(
    git: &Git,
    previous: &BTreeMap<String, Oid>,
    now: &BTreeMap<String, Oid>,
    file: &Path,
) -> u64 {
    let (changed, old) = revs(previous, now);
    if changed.is_empty() {
        return 0;
    }
    let _ = std::fs::remove_file(file);
    let mut args = vec![
        "bundle".to_owned(),
        "create".into(),
        "-q".into(),
        file.display().to_string(),
    ];
    args.extend(changed);
    args.extend(old);
    match git.run(&args, b"") {
        Ok(_) => std::fs::metadata(file).map(|m| m.len()).unwrap_or(0),
        Err(_) => 0,
    }
}

/// The size of the thin pack for the same step, deltified or not.
fn pack_size(
    git: &Git,
    previous: &BTreeMap<String, Oid>,
    now: &BTreeMap<String, Oid>,
    flat: bool,
) -> u64 {
    let (changed, old) = revs(previous, now);
    if changed.is_empty() {
        return 0;
    }
    let mut input: String = changed.iter().map(|n| format!("{}\n", now[n])).collect();
    for o in old {
        input.push_str(&o);
        input.push('\n');
    }
    let mut args = vec![
        "pack-objects",
        "--stdout",
        "--thin",
        "--revs",
        "--delta-base-offset",
        "-q",
    ];
    if flat {
        args.extend(["--window=0", "--depth=0"]);
    }
    git.run(args, input.as_bytes())
        .map(|p| p.len() as u64)
        .unwrap_or(0)
}
