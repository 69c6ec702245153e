//! Publish and apply with the real git, no network: releases in order, out
//! of order, twice, corrupt, and a generated history replayed step by step.

use std::collections::BTreeMap;

use ferry_git::fixture::{self, Replay};
use ferry_git::{
    Applier, ApplyError, ApplyOutcome, DestinationState, Git, GitRelease, Oid, Publication,
    Publisher,
};

const SEED: u64 = 6;

fn replay(dir: &std::path::Path, commits: usize) -> Replay {
    eprintln!("fixture seed {SEED}, {commits} commits");
    fixture::generate(&dir.join("upstream.git"), commits, SEED).expect("generate repository")
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

#[test]
fn a_generated_history_replays_step_by_step() {
    let tmp = tempfile::tempdir().unwrap();
    let replay = replay(tmp.path(), 300);
    assert!(replay.steps.len() >= 300, "{} steps", replay.steps.len());
    let publisher = Publisher::new(replay.git.dir(), "fleet", &[]).unwrap();
    let applier = Applier::new(tmp.path().join("served")).unwrap();
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
    let tmp = tempfile::tempdir().unwrap();
    let replay = replay(tmp.path(), 20);
    let publisher = Publisher::new(replay.git.dir(), "fleet", &[]).unwrap();
    let applier = Applier::new(tmp.path().join("served")).unwrap();
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
    let tmp = tempfile::tempdir().unwrap();
    let replay = replay(tmp.path(), 20);
    let publisher = Publisher::new(replay.git.dir(), "fleet", &[]).unwrap();
    let applier = Applier::new(tmp.path().join("served")).unwrap();
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
    let tmp = tempfile::tempdir().unwrap();
    let replay = replay(tmp.path(), 5);
    let publisher = Publisher::new(replay.git.dir(), "fleet", &[]).unwrap();
    let applier = Applier::new(tmp.path().join("served")).unwrap();
    let p = publish(&publisher, &mut DestinationState::default(), 1);
    assert!(matches!(apply(&applier, &p), ApplyOutcome::Applied { .. }));
    assert_eq!(apply(&applier, &p), ApplyOutcome::AlreadyApplied);
    assert_eq!(leaf_refs(&applier, "fleet"), replay.steps[0].refs);
}

#[test]
fn unchanged_refs_publish_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let replay = replay(tmp.path(), 5);
    let publisher = Publisher::new(replay.git.dir(), "fleet", &[]).unwrap();
    let mut state = DestinationState::default();
    publish(&publisher, &mut state, 1);
    assert!(publisher.publish(&state, 2).unwrap().is_none());
}

#[test]
fn a_corrupt_pack_is_an_error_and_moves_no_ref() {
    let tmp = tempfile::tempdir().unwrap();
    let replay = replay(tmp.path(), 10);
    let publisher = Publisher::new(replay.git.dir(), "fleet", &[]).unwrap();
    let applier = Applier::new(tmp.path().join("served")).unwrap();
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
    assert!(matches!(
        apply(&applier, &next),
        ApplyOutcome::Applied { .. }
    ));
    assert_eq!(leaf_refs(&applier, "fleet"), replay.steps[1].refs);
    fsck(&applier, "fleet");
}

#[test]
fn a_release_naming_objects_the_pack_lacks_moves_no_ref() {
    let tmp = tempfile::tempdir().unwrap();
    let replay = replay(tmp.path(), 10);
    let publisher = Publisher::new(replay.git.dir(), "fleet", &[]).unwrap();
    let applier = Applier::new(tmp.path().join("served")).unwrap();
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
