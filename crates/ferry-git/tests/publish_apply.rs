//! Publish and apply with the real git, no network: releases in order, out
//! of order, twice, corrupt, and a generated history replayed step by step.

use std::collections::BTreeMap;

use ferry_git::fixture::{self, Replay};
use ferry_git::{
    Applier, ApplyError, ApplyOutcome, DestinationState, Git, GitRelease, Lost, Oid, Publication,
    Publisher,
};

const SEED: u64 = 6;

/// A generated upstream of `commits` commits, its publisher and a leaf's
/// applier, all in `_dir`.
struct Setup {
    replay: Replay,
    publisher: Publisher,
    applier: Applier,
    _dir: tempfile::TempDir,
}

fn setup(commits: usize) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    eprintln!("fixture seed {SEED}, {commits} commits");
    let replay = fixture::generate(&dir.path().join("upstream.git"), commits, SEED)
        .expect("generate repository");
    let publisher = Publisher::new(replay.git.dir(), "fleet", &[]).unwrap();
    let applier = Applier::new(dir.path().join("served")).unwrap();
    Setup {
        replay,
        publisher,
        applier,
        _dir: dir,
    }
}

fn leaf_refs(applier: &Applier, name: &str) -> BTreeMap<String, Oid> {
    Git::new(applier.root().repo_dir(name).unwrap())
        .refs(&["refs/".to_owned()])
        .unwrap()
}

fn fsck(applier: &Applier, name: &str) {
    Git::new(applier.root().repo_dir(name).unwrap())
        .run(["fsck", "--strict", "--no-dangling"], b"")
        .expect("git fsck is clean");
}

fn publish(publisher: &Publisher, state: &mut DestinationState, now: u64) -> Publication {
    let p = publisher
        .publish(state, now)
        .unwrap()
        .expect("refs changed");
    state.record_sent(&p);
    p
}

fn apply(applier: &Applier, p: &Publication) -> ApplyOutcome {
    let release = GitRelease::decode(&p.release.encode()).unwrap();
    applier.apply(&release, &mut p.payload.as_slice()).unwrap()
}

/// Applies `p`, which must apply now and leave the leaf showing `refs`,
/// with a repository `git fsck` finds clean.
fn applies(applier: &Applier, p: &Publication, refs: &BTreeMap<String, Oid>) {
    assert!(matches!(apply(applier, p), ApplyOutcome::Applied { .. }));
    assert_eq!(&leaf_refs(applier, "fleet"), refs);
    fsck(applier, "fleet");
}

#[test]
fn a_generated_history_replays_step_by_step() {
    let Setup {
        replay,
        publisher,
        applier,
        _dir,
    } = setup(300);
    assert!(replay.steps.len() >= 300, "{} steps", replay.steps.len());
    let mut state = DestinationState::default();
    for (i, step) in replay.steps.iter().enumerate() {
        fixture::set_refs(&replay.git, &step.refs).unwrap();
        let p = publish(&publisher, &mut state, i as u64 + 1);
        assert!(
            matches!(apply(&applier, &p), ApplyOutcome::Applied { .. }),
            "step {i} ({})",
            step.what
        );
        state.confirm(p.release.sequence);
        assert_eq!(
            leaf_refs(&applier, "fleet"),
            step.refs,
            "step {i} ({})",
            step.what
        );
        if i % 25 == 0 || step.what == "force-push" {
            fsck(&applier, "fleet");
        }
    }
    fsck(&applier, "fleet");
}

#[test]
fn a_later_release_waits_for_its_predecessor() {
    let Setup {
        replay,
        publisher,
        applier,
        _dir,
    } = setup(20);
    let mut state = DestinationState::default();
    let mut pubs = Vec::new();
    for (i, step) in replay.steps.iter().take(4).enumerate() {
        fixture::set_refs(&replay.git, &step.refs).unwrap();
        let p = publish(&publisher, &mut state, i as u64 + 1);
        state.confirm(p.release.sequence);
        pubs.push(p);
    }
    assert!(matches!(
        apply(&applier, &pubs[0]),
        ApplyOutcome::Applied { .. }
    ));
    assert_eq!(
        apply(&applier, &pubs[3]),
        ApplyOutcome::Pending { waiting_for: 3 }
    );
    assert_eq!(
        apply(&applier, &pubs[2]),
        ApplyOutcome::Pending { waiting_for: 2 }
    );
    assert_eq!(leaf_refs(&applier, "fleet"), replay.steps[0].refs);
    assert_eq!(
        apply(&applier, &pubs[1]),
        ApplyOutcome::Applied {
            changed_refs: 1,
            then: vec![3, 4]
        }
    );
    assert_eq!(leaf_refs(&applier, "fleet"), replay.steps[3].refs);
    fsck(&applier, "fleet");
}

/// A pending release whose base is applied but whose objects are still
/// missing stays pending (its pack intact) until they arrive.
#[test]
fn a_pending_release_missing_objects_survives_a_drain() {
    let Setup {
        replay,
        publisher,
        applier,
        _dir,
    } = setup(20);
    let mut state = DestinationState::default();
    let mut pubs = Vec::new();
    for (i, step) in replay.steps.iter().take(3).enumerate() {
        fixture::set_refs(&replay.git, &step.refs).unwrap();
        let p = publish(&publisher, &mut state, i as u64 + 1);
        state.confirm(p.release.sequence);
        pubs.push(p);
    }
    // Release 3 claims release 1 as its base, but needs release 2's objects.
    let mut third = GitRelease::decode(&pubs[2].release.encode()).unwrap();
    third.base = Some(pubs[0].release.sequence);
    third.prerequisites = replay.steps[1].refs.values().copied().collect();
    let third_pack = pubs[2].payload.clone();
    assert!(matches!(
        applier.apply(&third, &mut third_pack.as_slice()).unwrap(),
        ApplyOutcome::Pending { .. }
    ));
    // Applying release 1 drains the pending one: its objects are missing,
    // so it must stay pending, pack and all.
    assert_eq!(
        apply(&applier, &pubs[0]),
        ApplyOutcome::Applied {
            changed_refs: replay.steps[0].refs.len(),
            then: vec![]
        }
    );
    assert_eq!(
        apply(&applier, &pubs[1]),
        ApplyOutcome::Applied {
            changed_refs: 1,
            then: vec![3]
        }
    );
    assert_eq!(leaf_refs(&applier, "fleet"), replay.steps[2].refs);
    fsck(&applier, "fleet");
}

#[test]
fn applying_a_release_twice_changes_nothing() {
    let Setup {
        replay,
        publisher,
        applier,
        _dir,
    } = setup(5);
    let p = publish(&publisher, &mut DestinationState::default(), 1);
    assert!(matches!(apply(&applier, &p), ApplyOutcome::Applied { .. }));
    assert_eq!(apply(&applier, &p), ApplyOutcome::AlreadyApplied);
    assert_eq!(leaf_refs(&applier, "fleet"), replay.steps[0].refs);
}

#[test]
fn unchanged_refs_publish_nothing() {
    let Setup {
        publisher, _dir, ..
    } = setup(5);
    let mut state = DestinationState::default();
    publish(&publisher, &mut state, 1);
    assert!(publisher.publish(&state, 2).unwrap().is_none());
}

#[test]
fn a_corrupt_pack_is_an_error_and_moves_no_ref() {
    let Setup {
        replay,
        publisher,
        applier,
        _dir,
    } = setup(10);
    let mut state = DestinationState::default();
    let first = publish(&publisher, &mut state, 1);
    assert!(matches!(
        apply(&applier, &first),
        ApplyOutcome::Applied { .. }
    ));
    state.confirm(first.release.sequence);
    fixture::set_refs(&replay.git, &replay.steps[1].refs).unwrap();
    let next = publish(&publisher, &mut state, 2);
    for corrupt in [
        {
            let mut b = next.payload.clone();
            let mid = b.len() / 2;
            b[mid] ^= 0x55;
            b
        },
        next.payload[..next.payload.len() / 2].to_vec(),
        Vec::new(),
    ] {
        let err = applier
            .apply(&next.release, &mut corrupt.as_slice())
            .unwrap_err();
        assert!(matches!(err, ApplyError::Incomplete { .. }), "{err}");
        assert_eq!(leaf_refs(&applier, "fleet"), replay.steps[0].refs);
    }
    applies(&applier, &next, &replay.steps[1].refs);
}

#[test]
fn a_release_naming_objects_the_pack_lacks_moves_no_ref() {
    let Setup {
        replay,
        publisher,
        applier,
        _dir,
    } = setup(10);
    let mut state = DestinationState::default();
    let first = publish(&publisher, &mut state, 1);
    apply(&applier, &first);
    state.confirm(first.release.sequence);
    fixture::set_refs(&replay.git, &replay.steps[1].refs).unwrap();
    let mut next = publish(&publisher, &mut state, 2);
    next.release.refs.push(ferry_git::RefUpdate {
        name: "refs/heads/evil".into(),
        target: Some(Oid([0xab; 20])),
    });
    let err = applier
        .apply(&next.release, &mut next.payload.as_slice())
        .unwrap_err();
    assert!(matches!(err, ApplyError::Incomplete { .. }), "{err}");
    assert_eq!(leaf_refs(&applier, "fleet"), replay.steps[0].refs);
}

/// Publishes replay step `step` (the refs set first).
fn publish_step(
    replay: &Replay,
    publisher: &Publisher,
    state: &mut DestinationState,
    step: usize,
) -> Publication {
    fixture::set_refs(&replay.git, &replay.steps[step].refs).unwrap();
    publish(publisher, state, step as u64 + 1)
}

/// A release that never arrives (its bundle expired before the next hop
/// took it) would hold every later one pending at the leaf for ever: once
/// it is given up, the next release builds on the last one that arrives.
#[test]
fn a_lost_release_is_rebuilt_on_the_last_one_that_arrives() {
    let Setup {
        replay,
        publisher,
        applier,
        _dir,
    } = setup(20);
    let mut state = DestinationState::default();
    let first = publish_step(&replay, &publisher, &mut state, 0);
    assert!(matches!(
        apply(&applier, &first),
        ApplyOutcome::Applied { .. }
    ));
    state.confirm(first.release.sequence);
    let lost = publish_step(&replay, &publisher, &mut state, 1);
    let after_lost = publish_step(&replay, &publisher, &mut state, 2);
    assert_eq!(after_lost.release.base, Some(lost.release.sequence));
    assert_eq!(
        apply(&applier, &after_lost),
        ApplyOutcome::Pending {
            waiting_for: lost.release.sequence
        }
    );

    assert_eq!(
        state.lost(Some(lost.release.sequence)),
        Lost::RolledBack {
            to: first.release.sequence
        }
    );
    // Later news of releases already given up changes nothing.
    let rolled_back = state.clone();
    assert_eq!(state.lost(Some(after_lost.release.sequence)), Lost::Ignored);
    state.confirm(after_lost.release.sequence);
    assert_eq!(state, rolled_back);

    let next = publish_step(&replay, &publisher, &mut state, 3);
    assert_eq!(next.release.base, Some(first.release.sequence));
    applies(&applier, &next, &replay.steps[3].refs);
    // The release held pending behind the lost one is gone with it.
    assert_eq!(apply(&applier, &after_lost), ApplyOutcome::AlreadyApplied);
}

/// A release lost after the next hop took custody (its lifetime ended at a
/// relay, or the leaf refused it) leaves nothing sent known to arrive: the
/// next release is whole, and news of releases before it is ignored.
#[test]
fn a_release_lost_past_the_next_hop_makes_the_next_one_whole() {
    let Setup {
        replay,
        publisher,
        applier,
        _dir,
    } = setup(20);
    let mut state = DestinationState::default();
    let first = publish_step(&replay, &publisher, &mut state, 0);
    apply(&applier, &first);
    state.confirm(first.release.sequence);
    let mut lost = Vec::new();
    for step in 1..3 {
        let p = publish_step(&replay, &publisher, &mut state, step);
        state.confirm(p.release.sequence);
        lost.push(p.release.sequence);
    }
    assert_eq!(state.lost(Some(lost[0])), Lost::Reset);
    let whole = publish_step(&replay, &publisher, &mut state, 3);
    assert_eq!(whole.release.base, None);
    assert_eq!(state.lost(Some(lost[1])), Lost::Ignored);
    applies(&applier, &whole, &replay.steps[3].refs);
}

/// Releases lost one after another roll back to the newest one still on
/// its way; a lost release with no sequence known resets.
#[test]
fn lost_releases_roll_back_to_the_newest_still_on_its_way() {
    let Setup {
        replay,
        publisher,
        _dir,
        ..
    } = setup(20);
    let mut state = DestinationState::default();
    let sequences: Vec<u64> = (0..4)
        .map(|step| {
            publish_step(&replay, &publisher, &mut state, step)
                .release
                .sequence
        })
        .collect();
    state.confirm(sequences[0]);
    assert_eq!(
        state.lost(Some(sequences[3])),
        Lost::RolledBack { to: sequences[2] }
    );
    assert_eq!(state.sent_refs, replay.steps[2].refs);
    assert_eq!(
        state.lost(Some(sequences[2])),
        Lost::RolledBack { to: sequences[1] }
    );
    assert_eq!(
        state.lost(Some(sequences[1])),
        Lost::RolledBack { to: sequences[0] }
    );
    assert_eq!(state.sent_refs, replay.steps[0].refs);
    assert!(state.in_flight.is_empty());
    assert_eq!(state.lost(None), Lost::Reset);
    assert_eq!(state, DestinationState::default());
}
