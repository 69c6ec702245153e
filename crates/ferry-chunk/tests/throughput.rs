//! Throughput of chunking + hashing against plain single-threaded BLAKE3 over
//! a 256 MiB pseudo-random buffer, the figure `benches/ingest.rs` checks.
//!
//! A measurement, not a test: nothing is asserted about timings. Run it with
//! `cargo test --release -p ferry-chunk --test throughput -- --ignored --nocapture`
//! on an otherwise idle machine (`RUNS=40` takes the best of more runs, which
//! helps on a busy one). Besides wall-clock ratios it prints the CPU
//! time each variant used (Linux only), which background load disturbs much
//! less: on two cores, `blake3 cpu / (chunk_slice cpu / 2)` is the ratio an
//! idle machine would give if both cores were busy throughout.

use std::hint::black_box;
use std::time::{Duration, Instant};

use ferry_chunk::Chunker;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

const LEN: usize = 256 << 20;

/// CPU time used by the whole process so far (all threads, exited ones
/// included), from /proc/self/stat; `None` where that is unavailable.
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split(' ').collect();
    // utime and stime are fields 14 and 15 of the line, in clock ticks (100 Hz).
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// Best wall-clock time of `runs` runs, and the total CPU time they used.
fn measure(runs: usize, mut f: impl FnMut()) -> (Duration, Option<Duration>) {
    let cpu_before = process_cpu();
    let best = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .min()
        .expect("at least one run");
    let cpu = process_cpu()
        .zip(cpu_before)
        .map(|(after, before)| (after - before) / runs as u32);
    (best, cpu)
}

fn gib_s(d: Duration) -> f64 {
    LEN as f64 / d.as_secs_f64() / f64::from(1u32 << 30)
}

#[test]
#[ignore = "a measurement; run with --release -- --ignored --nocapture"]
fn chunk_slice_against_single_threaded_blake3() {
    let seed = 0x5eed;
    let mut data = vec![0u8; LEN];
    ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut data);
    let chunker = Chunker::default();
    let serial = Chunker::default().with_threads(1);
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(7);

    let (hash, hash_cpu) = measure(runs, || {
        black_box(blake3::hash(black_box(&data)));
    });
    let mut chunks = 0;
    let (chunk, chunk_cpu) = measure(runs, || {
        chunks = black_box(chunker.chunk_slice(black_box(&data))).len();
    });
    println!(
        "blake3::hash {:.2} GiB/s; chunk_slice ({} threads, {chunks} chunks) {:.2} GiB/s; ratio {:.3} (seed {seed:#x}, best of {runs})",
        gib_s(hash),
        chunker.threads(),
        gib_s(chunk),
        hash.as_secs_f64() / chunk.as_secs_f64()
    );
    if let (Some(hash_cpu), Some(chunk_cpu)) = (hash_cpu, chunk_cpu) {
        println!(
            "cpu per run: blake3::hash {:.0} ms, chunk_slice {:.0} ms (all threads); ratio with {} busy cores {:.3}",
            hash_cpu.as_secs_f64() * 1e3,
            chunk_cpu.as_secs_f64() * 1e3,
            chunker.threads(),
            hash_cpu.as_secs_f64() / (chunk_cpu.as_secs_f64() / chunker.threads() as f64)
        );
    }

    let (one, _) = measure(3, || {
        black_box(serial.chunk_slice(black_box(&data)));
    });
    println!(
        "chunk_slice on 1 thread {:.2} GiB/s, ratio {:.3}",
        gib_s(one),
        hash.as_secs_f64() / one.as_secs_f64()
    );

    // The two parts of the work, each on one thread.
    let (cut_only, _) = measure(3, || {
        black_box(fastcdc::v2020::FastCDC::new(black_box(&data), 4096, 16384, 65536).count());
    });
    let spans = serial.chunk_slice(&data);
    let (hash_only, _) = measure(3, || {
        for span in &spans {
            black_box(blake3::hash(
                &data[span.offset as usize..span.end() as usize],
            ));
        }
    });
    println!(
        "1 thread: cut points only {:.2} GiB/s, per-chunk blake3::hash only {:.2} GiB/s",
        gib_s(cut_only),
        gib_s(hash_only)
    );

    let (reader, _) = measure(3, || {
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
