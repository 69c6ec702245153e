//! Throughput of chunking + hashing against plain single-threaded BLAKE3.
//!
//! Not a regular test (timings do not belong in assertions); run it with
//! `cargo test --release -p ferry-chunk --test throughput -- --ignored --nocapture`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use ferry_chunk::Chunker;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

fn best_of(runs: usize, mut f: impl FnMut()) -> Duration {
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .min()
        .expect("at least one run")
}

#[test]
#[ignore = "a measurement; run with --release -- --ignored --nocapture"]
fn chunk_slice_against_single_threaded_blake3() {
    const LEN: usize = 256 << 20;
    let seed = 0x5eed;
    let mut data = vec![0u8; LEN];
    ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut data);
    let chunker = Chunker::default();
    let runs = 7;

    // Interleave the two measurements so that machine noise hits both alike.
    let mut hash = Duration::MAX;
    let mut chunk = Duration::MAX;
    let mut chunks = 0;
    for _ in 0..runs {
        hash = hash.min(best_of(1, || {
            black_box(blake3::hash(black_box(&data)));
        }));
        chunk = chunk.min(best_of(1, || {
            chunks = black_box(chunker.chunk_slice(black_box(&data))).len();
        }));
    }
    let gib_s = |d: Duration| LEN as f64 / d.as_secs_f64() / (1u64 << 30) as f64;
    println!(
        "blake3::hash {:.2} GiB/s, chunk_slice ({} threads, {chunks} chunks) {:.2} GiB/s, ratio {:.3} (seed {seed:#x}, best of {runs})",
        gib_s(hash),
        chunker.threads(),
        gib_s(chunk),
        hash.as_secs_f64() / chunk.as_secs_f64()
    );
    let serial = Chunker::default().with_threads(1);
    let one = best_of(3, || {
        black_box(serial.chunk_slice(black_box(&data)));
    });
    println!(
        "chunk_slice on 1 thread {:.2} GiB/s, ratio {:.3}",
        gib_s(one),
        hash.as_secs_f64() / one.as_secs_f64()
    );
    // The two halves of the work, each on one thread.
    let cut_only = best_of(3, || {
        black_box(fastcdc::v2020::FastCDC::new(black_box(&data), 4096, 16384, 65536).count());
    });
    let spans = serial.chunk_slice(&data);
    let hash_only = best_of(3, || {
        for span in &spans {
            black_box(blake3::hash(
                &data[span.offset as usize..span.end() as usize],
            ));
        }
    });
    println!(
        "cut points only {:.2} GiB/s, per-chunk blake3 only {:.2} GiB/s",
        gib_s(cut_only),
        gib_s(hash_only)
    );
    let reader = best_of(3, || {
        let stats = chunker.chunk_reader(&data[..], |span, _| {
            black_box(span);
            Ok::<_, ()>(())
        });
        assert_eq!(stats.unwrap().bytes, LEN as u64);
    });
    println!(
        "chunk_reader (no-op sink) {:.2} GiB/s, ratio {:.3}",
        gib_s(reader),
        hash.as_secs_f64() / reader.as_secs_f64()
    );
}
