//! `ferry ingest`, `ferry cat` and `ferry gc` as a user runs them: a real
//! process, real files, output parsed as JSON.

mod support;

use support::ferry;

use std::path::Path;
use std::process::{Command, Output};

use rand::{RngCore, SeedableRng};
use serde_json::Value;

fn ok_json(output: Output) -> Value {
    assert!(
        output.status.success(),
        "ferry failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON line ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

fn random_file(path: &Path, seed: u64, len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    rand_chacha::ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut bytes);
    std::fs::write(path, &bytes).unwrap();
    bytes
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn second_ingest_of_a_slightly_changed_tree_stores_little() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    let big = random_file(&tree.join("big.bin"), 1, 4 << 20);
    random_file(&tree.join("sub/small.bin"), 2, 10_000);
    let store = dir.path().join("store");

    let first = ok_json(ferry(&["ingest", "--store", s(&store), s(&tree)]));
    assert_eq!(first["bytes"], (4 << 20) + 10_000);
    assert_eq!(first["new_bytes"], first["bytes"]);
    assert_eq!(first["manifests"], 2);
    assert!(first["seconds"].as_f64().unwrap() >= 0.0);

    // Insert 10 bytes near the start of the big file.
    let mut changed = big[..1000].to_vec();
    changed.extend_from_slice(b"0123456789");
    changed.extend_from_slice(&big[1000..]);
    std::fs::write(tree.join("big.bin"), &changed).unwrap();

    let second = ok_json(ferry(&["ingest", "--store", s(&store), s(&tree)]));
    let new_bytes = second["new_bytes"].as_u64().unwrap();
    assert_eq!(second["bytes"], (4 << 20) + 10_010);
    assert!(
        new_bytes > 0 && new_bytes < 200_000,
        "a 10-byte insert stored {new_bytes} new bytes"
    );
    assert!(second["unique_chunks"].as_u64().unwrap() <= second["chunks"].as_u64().unwrap());
}

#[test]
fn stdin_round_trips_through_cat() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    let bytes = random_file(&input, 3, 700_000);
    let store = dir.path().join("store");
    let output = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["ingest", "--store", s(&store), "-"])
        .stdin(std::fs::File::open(&input).unwrap())
        .output()
        .unwrap();
    // Piped: JSON only on stdout, no progress bar on stderr.
    assert!(
        output.stderr.is_empty(),
        "unexpected stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = ok_json(output);
    let manifest = summary["manifest"].as_str().unwrap();
    let cat = ferry(&["cat", "--store", s(&store), manifest]);
    assert!(
        cat.status.success(),
        "{}",
        String::from_utf8_lossy(&cat.stderr)
    );
    assert!(cat.stdout == bytes, "cat returned different bytes");
}

#[test]
fn missing_path_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = ferry(&[
        "ingest",
        "--store",
        s(&dir.path().join("store")),
        "/no/such/path",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot read /no/such/path") && stderr.contains("No such file"),
        "{stderr}"
    );
}

#[test]
fn unwritable_store_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let out = ferry(&["ingest", "--store", s(&file.join("store")), s(&file)]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot create store directory"), "{stderr}");
}

#[test]
fn full_quota_is_a_clear_error_and_earlier_files_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    random_file(&tree.join("a-small"), 4, 50_000);
    random_file(&tree.join("b-large"), 5, 8 << 20);
    let store = dir.path().join("store");
    // Measure an empty store's size, then allow 2 MiB more.
    ok_json(ferry(&[
        "ingest",
        "--store",
        s(&store),
        s(&tree.join("a-small")),
    ]));
    let out = ferry(&["ingest", "--store", s(&store), "--quota", "3M", s(&tree)]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("store is full"), "{stderr}");
    assert!(
        stderr.contains("b-large"),
        "the error should name the file: {stderr}"
    );
}

#[test]
fn gc_reports_json() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    random_file(&file, 6, 100_000);
    let store = dir.path().join("store");
    ok_json(ferry(&["ingest", "--store", s(&store), s(&file)]));
    let report = ok_json(ferry(&["gc", "--store", s(&store)]));
    assert_eq!(report["live_manifests"], 1);
    assert_eq!(report["chunks_freed"], 0);
}
