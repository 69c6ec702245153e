//! `cargo bench --bench ingest`: chunking and storing against their baselines.
//!
//! In one process, over one 256 MiB pseudo-random buffer, it times:
//! (a) single-threaded BLAKE3 of the buffer — the hash's own speed;
//! (b) FastCDC + BLAKE3 chunking of the buffer (ferry-chunk, both cores);
//! (c) chunking plus storing into a fresh RocksDB store, ending synced;
//! (d) writing the buffer to a plain file in the store's directory plus
//!     fdatasync — the disk's own limit.
//! and prints one JSON line with chunk_vs_blake3 = b/a and store_vs_disk = c/d
//! (throughput ratios), beside the baselines' own figures. Each figure is the
//! best of a few runs. FERRY_BENCH_MIB sets the buffer size, FERRY_BENCH_DIR
//! where stores and files go (default: the system temp directory).

use std::io::{Cursor, Write};
use std::time::{Duration, Instant};

use ferry_chunk::{Chunker, ChunkerConfig};
use ferry_store::{Ingest, RocksStore, StoreConfig};
use rand::{RngCore, SeedableRng};

const RUNS: usize = 3;

fn main() {
    let mib: usize = std::env::var("FERRY_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let base = std::env::var_os("FERRY_BENCH_DIR")
        .map(Into::into)
        .unwrap_or_else(std::env::temp_dir);
    let mut data = vec![0u8; mib << 20];
    rand_chacha::ChaCha8Rng::seed_from_u64(0x5eed).fill_bytes(&mut data);
    let bytes = data.len() as f64;
    let chunker = Chunker::new(ChunkerConfig::default()).expect("default chunker config is valid");

    let blake3 = best_of(|| {
        let start = Instant::now();
        std::hint::black_box(blake3::hash(&data));
        start.elapsed()
    });
    let mut chunks = 0;
    let chunking = best_of(|| {
        let start = Instant::now();
        chunks = std::hint::black_box(chunker.chunk_slice(&data)).len();
        start.elapsed()
    });
    let store = best_of(|| {
        let dir = tempfile::tempdir_in(&base).expect("temp dir for the bench store");
        let store = RocksStore::open(dir.path(), StoreConfig::default()).expect("open bench store");
        let start = Instant::now();
        let mut ingest = Ingest::new(&store, chunker.clone());
        ingest
            .add("bench", Cursor::new(&data), |_| {})
            .expect("ingest");
        ingest.finish().expect("sync");
        start.elapsed()
    });
    let disk = best_of(|| {
        let dir = tempfile::tempdir_in(&base).expect("temp dir for the disk baseline");
        let start = Instant::now();
        let mut file = std::fs::File::create(dir.path().join("plain")).expect("create plain file");
        file.write_all(&data).expect("write plain file");
        file.sync_data().expect("fdatasync");
        start.elapsed()
    });

    let rate = |d: Duration| bytes / d.as_secs_f64() / 1e6;
    println!(
        "{}",
        serde_json::json!({
            "bench": "ingest",
            "chunk_vs_blake3": rate(chunking) / rate(blake3),
            "store_vs_disk": rate(store) / rate(disk),
            "mib": mib,
            "chunks": chunks,
            "blake3_1thread_mb_s": rate(blake3),
            "chunk_mb_s": rate(chunking),
            "store_synced_mb_s": rate(store),
            "disk_fdatasync_mb_s": rate(disk),
        })
    );
}

fn best_of(mut run: impl FnMut() -> Duration) -> Duration {
    (0..RUNS).map(|_| run()).min().expect("RUNS > 0")
}
