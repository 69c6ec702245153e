//! Throughput of `goflate::compress` per level, next to the real Go
//! encoder (`gozip`, timed as a process fed through a pipe) on the same
//! input.
//!
//!     cargo bench -p ferry-recipe --bench goflate            # 120 MB
//!     GOFLATE_BENCH_MB=20 GOFLATE_BENCH_LEVELS=1,6 cargo bench -p ferry-recipe --bench goflate
//!
//! `GOFLATE_BENCH_GO=0` leaves Go out (for profiling ours alone).
//! Besides wall-clock throughput it prints throughput over the thread's
//! CPU time (from `/proc/thread-self/schedstat`), which is the steadier
//! number on a machine shared with other work. Go's time is wall clock of
//! the whole process, input pipe included.
//!
//! The input is tar-like: this repository's sources and /usr/bin binaries
//! behind 512-byte headers, repeated with small edits until it is big
//! enough (as consecutive image layers repeat most of their files).

use std::path::Path;
use std::time::Instant;

use ferry_recipe::goflate;
use ferry_recipe::gozip::{self, Family};

fn corpus(limit: usize) -> Vec<u8> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = Vec::new();
    for dir in ["crates", "sim", "tests", "benches"] {
        collect(&root.join(dir), &mut files);
    }
    if let Ok(bins) = std::fs::read_dir("/usr/bin") {
        files.extend(bins.flatten().map(|e| e.path()));
    }
    files.sort();
    let mut out = Vec::with_capacity(limit + (1 << 20));
    let mut round = 0u8;
    while out.len() < limit {
        for f in &files {
            let Ok(mut body) = std::fs::read(f) else {
                continue;
            };
            let at = round as usize * 4099 % body.len().max(1);
            if let Some(b) = body.get_mut(at) {
                *b ^= round;
            }
            let mut header = [0u8; 512];
            let name = f.to_string_lossy();
            let name = &name.as_bytes()[..name.len().min(100)];
            header[..name.len()].copy_from_slice(name);
            let size = format!("{:011o}\0", body.len());
            header[124..136].copy_from_slice(size.as_bytes());
            header[257..263].copy_from_slice(b"ustar\0");
            out.extend_from_slice(&header);
            out.extend_from_slice(&body);
            out.resize(out.len().next_multiple_of(512), 0);
            if out.len() >= limit {
                break;
            }
        }
        round = round.wrapping_add(1);
    }
    out.truncate(limit);
    out
}

fn collect(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            if !p.ends_with("target") {
                collect(&p, out);
            }
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Nanoseconds this thread has run on a CPU, if the kernel says.
fn cpu_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().next()?.parse().ok()
}

fn main() {
    let mb: usize = std::env::var("GOFLATE_BENCH_MB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    let data = corpus(mb << 20);
    let mbytes = data.len() as f64 / 1e6;
    println!("input: {mbytes:.1} MB tar-like");
    let levels: Vec<i32> = std::env::var("GOFLATE_BENCH_LEVELS")
        .map(|s| {
            s.split(',')
                .map(|l| l.trim().parse().expect("a level"))
                .collect()
        })
        .unwrap_or_else(|_| vec![-2, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    let with_go = std::env::var("GOFLATE_BENCH_GO").map_or(true, |v| v != "0");
    println!("level  ours MB/s  (cpu MB/s)  go MB/s  ratio  same");
    for level in levels {
        let cpu = cpu_ns();
        let t = Instant::now();
        let ours = goflate::compress(&data, level).unwrap();
        let ours_s = t.elapsed().as_secs_f64();
        let cpu_s = match (cpu, cpu_ns()) {
            (Some(a), Some(b)) => (b - a) as f64 / 1e9,
            _ => f64::NAN,
        };
        if !with_go {
            println!(
                "{level:>5}  {:>9.1}  {:>10.1}",
                mbytes / ours_s,
                mbytes / cpu_s
            );
            continue;
        }
        let t = Instant::now();
        let go = gozip::gzip(Family::Go, level, &data).expect("gozip");
        let go_s = t.elapsed().as_secs_f64();
        println!(
            "{level:>5}  {:>9.1}  {:>10.1}  {:>7.1}  {:>5.3}  {}",
            mbytes / ours_s,
            mbytes / cpu_s,
            mbytes / go_s,
            ours.len() as f64 / data.len() as f64,
            ours == gozip::deflate_body(&go)
        );
    }
}
