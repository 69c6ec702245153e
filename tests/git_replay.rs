//! A generated GitOps history (a few hundred commits, branches, tags, a
//! force-push) replayed release by release through base → relay → leaf with
//! 5 % frame loss on both hops: after every step the leaf's real bare
//! repository shows exactly the upstream's refs, and `git fsck` is clean.

#[path = "git_harness.rs"]
mod git_harness;

use ferry_git::fixture;
use ferry_git::{ApplyOutcome, Git, Publisher};

#[test]
fn a_history_replayed_over_two_lossy_hops_matches_upstream_at_every_step() {
    let seed: u64 = std::env::var("FERRY_TEST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(17);
    eprintln!("seed {seed} (FERRY_TEST_SEED)");
    let tmp = tempfile::tempdir().unwrap();
    let replay = fixture::generate(&tmp.path().join("upstream.git"), 300, seed).unwrap();
    let publisher = Publisher::new(replay.git.dir(), "fleet", &[]).unwrap();
    let mut net = git_harness::TwoHop::new(seed, 0.05, publisher, &tmp.path().join("served"));
    let leaf = Git::new(net.applier.root().repo_dir("fleet").unwrap());
    for (i, step) in replay.steps.iter().enumerate() {
        fixture::set_refs(&replay.git, &step.refs).unwrap();
        let out = net.step().expect("every step changes a ref");
        assert!(
            matches!(out.outcome, ApplyOutcome::Applied { .. }),
            "seed {seed} step {i} ({}): {:?}",
            step.what,
            out.outcome
        );
        assert_eq!(
            leaf.refs(&["refs/".to_owned()]).unwrap(),
            step.refs,
            "seed {seed} step {i} ({})",
            step.what
        );
        if i % 20 == 0 || step.what == "force-push" {
            leaf.run(["fsck", "--strict", "--no-dangling"], b"")
                .unwrap_or_else(|e| panic!("seed {seed} step {i}: {e}"));
        }
    }
    leaf.run(["fsck", "--strict", "--no-dangling"], b"")
        .unwrap();
    let lost = net.net.stats(net.first_hop).lost;
    assert!(
        lost[0] + lost[1] > 0,
        "the harness lost no frame: loss is not exercised"
    );
}
