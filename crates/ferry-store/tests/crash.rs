//! A real child process writes synced batches and is killed with SIGKILL at
//! random points; every batch it reported synced must be there after reopen.
//!
//! The child is this same test binary, re-run with `FERRY_CRASH_CHILD` set.
//! `FERRY_CRASH_SEED` replays a run; the seed is printed on failure.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use ferry_chunk::{ChunkId, ManifestBuilder, ManifestId};
use ferry_store::{Batch, Cf, RocksStore, StoreConfig};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

const CHILD_DIR: &str = "FERRY_CRASH_CHILD";
const CHILD_START: &str = "FERRY_CRASH_START";
const ROUNDS: usize = 8;

/// The chunks of batch `n`: deterministic, so the parent can check contents.
fn batch_chunks(n: u64) -> Vec<Vec<u8>> {
    let mut rng = ChaCha8Rng::seed_from_u64(n);
    (0..rng.random_range(1..6))
        .map(|_| {
            let mut chunk = vec![0; rng.random_range(1..40_000)];
            rng.fill_bytes(&mut chunk);
            chunk
        })
        .collect()
}

fn batch_key(n: u64) -> Vec<u8> {
    format!("batch/{n:010}").into_bytes()
}

/// Child: write batches forever, printing each one once it is synced.
fn child(dir: &Path, start: u64) -> ! {
    let store = RocksStore::open(dir, StoreConfig::default()).expect("child opens store");
    for n in start.. {
        let mut builder = ManifestBuilder::new();
        let mut offset = 0;
        for chunk in batch_chunks(n) {
            let id = ChunkId::of(&chunk);
            store.put_chunk(id, &chunk).expect("child puts chunk");
            builder
                .push(
                    ferry_chunk::ChunkSpan {
                        offset,
                        len: chunk.len() as u32,
                        id,
                    },
                    &chunk,
                )
                .expect("in order");
            offset += chunk.len() as u64;
        }
        let manifest = store
            .put_manifest(&builder.finish())
            .expect("child puts manifest");
        let mut batch = Batch::new();
        batch.put(Cf::Meta, batch_key(n), manifest.as_bytes().to_vec());
        store.write_synced(&batch).expect("child syncs batch");
        println!("synced {n}");
    }
    unreachable!()
}

fn verify(dir: &Path, upto: u64, seed: u64) {
    let store = RocksStore::open(dir, StoreConfig::default())
        .unwrap_or_else(|e| panic!("seed {seed}: store does not reopen after SIGKILL: {e}"));
    for n in 0..=upto {
        let value = store
            .get(Cf::Meta, &batch_key(n))
            .unwrap()
            .unwrap_or_else(|| panic!("seed {seed}: batch {n} was reported synced but is gone"));
        let id = ManifestId::from_slice(&value).expect("manifest id");
        let manifest = store
            .get_manifest(id)
            .unwrap()
            .unwrap_or_else(|| panic!("seed {seed}: manifest of batch {n} is gone"));
        let expected = batch_chunks(n);
        let ids: Vec<_> = manifest.entries().iter().map(|entry| entry.id).collect();
        assert_eq!(
            ids.len(),
            expected.len(),
            "seed {seed}: batch {n} chunk count"
        );
        for (id, bytes) in ids.into_iter().zip(expected) {
            let stored = store
                .get_chunk(id)
                .unwrap_or_else(|e| panic!("seed {seed}: batch {n}: {e}"))
                .unwrap_or_else(|| panic!("seed {seed}: chunk {id} of synced batch {n} is gone"));
            assert_eq!(stored, bytes, "seed {seed}: batch {n} chunk content");
        }
    }
}

#[test]
fn synced_batches_survive_sigkill() {
    if let Some(dir) = std::env::var_os(CHILD_DIR) {
        let start = std::env::var(CHILD_START).unwrap().parse().unwrap();
        child(Path::new(&dir), start);
    }
    let seed = std::env::var("FERRY_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x00c0_ffee);
    eprintln!("crash test seed {seed} (set FERRY_CRASH_SEED to replay)");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut reported: Option<u64> = None;
    for round in 0..ROUNDS {
        let start = reported.map_or(0, |n| n + 1);
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "synced_batches_survive_sigkill",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR, dir.path())
            .env(CHILD_START, start.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Let it report a random number of batches, then kill it a random
        // moment later: mid-write, mid-flush, mid-compaction or between batches.
        let target = rng.random_range(1..25);
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut seen = 0;
        while seen < target {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("seed {seed}: child exited early in round {round}"))
                .unwrap();
            if let Some(n) = line.strip_prefix("synced ") {
                reported = Some(n.parse().unwrap());
                seen += 1;
            }
        }
        std::thread::sleep(Duration::from_micros(rng.random_range(0..20_000)));
        child.kill().unwrap(); // SIGKILL
        // Batches it reported while we slept count too.
        for line in lines.map_while(Result::ok) {
            if let Some(n) = line.strip_prefix("synced ") {
                reported = Some(n.parse().unwrap());
            }
        }
        child.wait().unwrap();
        verify(dir.path(), reported.unwrap(), seed);
    }
}
