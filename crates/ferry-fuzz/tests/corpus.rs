//! Every file in `fuzz/corpus/NAME/` and `fuzz/regressions/NAME/` through
//! its target, so the corpora the fuzzer grew and every crash it found run
//! on stable in CI.

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// Runs every file under `fuzz/KIND/NAME/`; the number of files run.
fn run(kind: &str, name: &str, target: fn(&[u8])) -> usize {
    let dir = fuzz_dir().join(kind).join(name);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return 0;
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("readable directory").path())
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != "README.md"))
        .collect();
    files.sort();
    for file in &files {
        let data = std::fs::read(file).expect("readable file");
        let outcome = std::panic::catch_unwind(|| target(&data));
        assert!(outcome.is_ok(), "{} failed", file.display());
    }
    files.len()
}

#[test]
fn every_target_has_a_corpus() {
    for (name, _) in ferry_fuzz::TARGETS {
        let dir = fuzz_dir().join("corpus").join(name);
        assert!(
            dir.is_dir(),
            "no corpus for target {name}: {}",
            dir.display()
        );
        let fuzz_target = fuzz_dir().join("fuzz_targets").join(format!("{name}.rs"));
        assert!(
            fuzz_target.is_file(),
            "no fuzz target {}",
            fuzz_target.display()
        );
    }
}

macro_rules! corpus_tests {
    ($($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            let target = ferry_fuzz::TARGETS
                .iter()
                .find(|(n, _)| *n == stringify!($name))
                .expect("a target of that name")
                .1;
            let seeds = run("corpus", stringify!($name), target);
            assert!(seeds > 0, "the corpus of {} is empty", stringify!($name));
            run("regressions", stringify!($name), target);
        }
    )*};
}

corpus_tests!(
    frame, engine, serial, manifest, volume, oci, git, paths, sealed
);

/// The seeds the generator makes now pass too (the committed corpus may lag
/// behind an encoder change).
#[test]
fn fresh_seeds_pass() {
    for (target, name, bytes) in ferry_fuzz::seeds::all() {
        let f = ferry_fuzz::TARGETS
            .iter()
            .find(|(n, _)| *n == target)
            .expect("a target of that name")
            .1;
        let outcome = std::panic::catch_unwind(|| f(&bytes));
        assert!(outcome.is_ok(), "seed {target}/{name} failed");
    }
}

/// Inputs that still fail in a crate this work may not change
/// (`fuzz/known/NAME/`, see fuzz/README.md): run with `--ignored`; once
/// fixed, move them to `fuzz/regressions/NAME/`.
#[test]
#[ignore = "inputs in fuzz/known/ fail until their bug is fixed; run to see whether one is"]
fn known_open_findings() {
    for (name, target) in ferry_fuzz::TARGETS {
        run("known", name, *target);
    }
}
