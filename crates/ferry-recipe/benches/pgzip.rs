//! Throughput of the pgzip replay (single-threaded), next to the real
//! pgzip (which uses every core). `cargo bench -p ferry-recipe --bench
//! pgzip [-- MIB]` (`PGZIP_LEVELS="1 9"` for other levels); the input is MIB (default 64) mebibytes of layer-like
//! data: system binaries, text and padding.

use std::time::Instant;

use ferry_recipe::gozip::{self, Family};
use ferry_recipe::pgzip;

fn input(len: usize) -> Vec<u8> {
    let mut bins: Vec<_> = std::fs::read_dir("/usr/bin")
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    bins.sort();
    let mut out = Vec::with_capacity(len);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for (i, path) in bins.iter().cycle().enumerate() {
        if out.len() >= len || i > 100_000 {
            break;
        }
        let Ok(bytes) = std::fs::read(path) else {
            continue;
        };
        out.extend_from_slice(&[0u8; 512]);
        out.extend_from_slice(&bytes[..bytes.len().min(2 << 20)]);
        // Some text and some noise between files.
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.extend_from_slice(if x.is_multiple_of(3) {
                b"layer "
            } else {
                b"image "
            });
        }
        out.extend((0..4096).map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        }));
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.truncate(len);
    out
}

/// CPU time of this thread so far (Linux), to see past a busy machine.
fn thread_cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: f64 = stat.split_whitespace().next()?.parse().ok()?;
    Some(ns / 1e9)
}

fn main() {
    let mib: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(64);
    let data = input(mib << 20);
    let size = data.len() as f64 / 1e6;
    // PGZIP_LEVELS="1 9" measures other levels (at 1 MiB blocks).
    let runs: Vec<(i32, usize)> = match std::env::var("PGZIP_LEVELS") {
        Ok(levels) => levels
            .split_whitespace()
            .filter_map(|l| l.parse().ok())
            .map(|l| (l, 1 << 20))
            .collect(),
        Err(_) => vec![(-1, 1 << 20), (-1, 512 << 10), (-1, 256 << 10)],
    };
    for (level, block) in runs {
        let t = Instant::now();
        let cpu = thread_cpu_secs();
        let out = pgzip::compress(&data, level, block).expect("replayed level");
        let secs = t.elapsed().as_secs_f64();
        let cpu = match (cpu, thread_cpu_secs()) {
            (Some(a), Some(b)) => format!(", {:.1} MB per CPU second", size / (b - a)),
            _ => String::new(),
        };
        println!(
            "replay  level {level:2} block {block:7}: {size:.1} MB -> {:.1} MB in {secs:.2} s = {:.1} MB/s{cpu}",
            out.len() as f64 / 1e6,
            size / secs
        );
        let t = Instant::now();
        match gozip::gzip(Family::Pgzip { block_size: block }, level, &data) {
            Ok(member) => {
                let secs = t.elapsed().as_secs_f64();
                let same = gozip::deflate_body(&member) == &out[..];
                println!(
                    "gozip   level {level:2} block {block:7}: {secs:.2} s = {:.1} MB/s (all cores), same bytes: {same}",
                    size / secs
                );
            }
            Err(e) => println!("gozip unavailable: {e}"),
        }
    }
}
