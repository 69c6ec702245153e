//! `cargo bench --bench quic`: ferry over QUIC on loopback against a bare
//! QUIC stream, in one process.
//!
//! - ferry: two ferryd nodes (`ferryd::daemon::Node`: engine thread, RocksDB
//!   store, QUIC links) on 127.0.0.1. The payload is already in the base's
//!   store (ingested before the clock starts); the clock runs from `submit`
//!   until the leaf reports the bundle delivered — offer, want-list, every
//!   chunk verified and stored, the custody record synced.
//! - baseline: the same two node keys and transport settings, one QUIC
//!   connection (ferry-link's `QuicEndpoint`), the same bytes written as
//!   1 MiB frames on one unidirectional stream (a 4-byte length prefix per
//!   frame is all it adds to quinn) until the receiver has read them all.
//!
//! Prints one JSON line with `ferry_vs_quinn` = ferry's throughput / the
//! baseline's, each the best of FERRY_BENCH_ROUNDS alternating rounds
//! (default 3; every round's ratio is printed too). FERRY_BENCH_MIB sets the
//! payload size (default 256) and FERRY_BENCH_AVG_KIB the chunker's average
//! chunk size (default ferry's 16; minimum a quarter, maximum four times):
//! ferry's costs are mostly per chunk, so larger chunks move faster.
//! `*_cores_busy` is the process's CPU time over the transfer's wall time:
//! how much of the machine each side used.
//!
//! Both transfers start on a fresh connection, and quinn's BBR enters
//! PROBE_RTT at the first acknowledgement that is not application-limited
//! (its probe timestamp starts unset): for about 200 ms the congestion
//! window is 4 packets, which on loopback carries the first 20 to 30 MiB at
//! about 1 Gbit/s, on either side alike. That shared stretch raises the
//! ratio above the ratio of the two sides' rates after it.
//!
//! The baseline keeps nothing, so for a like-for-like figure both ferry
//! stores live on tmpfs (`/dev/shm`, when there is one): the ratio measures
//! what the protocol, engine and store cost over bare QUIC, not the disk.
//! The run is then repeated with the stores on the default temporary
//! directory's disk and printed as `ferry_on_disk_vs_quinn`, with the disk's
//! own sequential write rate (`disk_mbit_per_s`, a synced 256 MiB write) for
//! scale: a node cannot take custody faster than its disk syncs.

use std::path::Path;
use std::time::{Duration, Instant};

use ferry_chunk::{Chunker, ChunkerConfig};
use ferry_core::{Endpoint, PayloadKind, Submission};
use ferry_link::identity::NodeKey;
use ferry_link::profile::LinkProfile;
use ferry_link::quic::{QuicEndpoint, TransportProfile, TrustPolicy};
use ferry_store::Ingest;
use ferryd::config::Config;
use ferryd::daemon::Node;
use rand::{RngCore, SeedableRng};

const PROFILE: &str = "drone-wifi";

fn main() {
    let mib: usize = std::env::var("FERRY_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let avg_kib: u32 = std::env::var("FERRY_BENCH_AVG_KIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ChunkerConfig::DEFAULT.avg_size >> 10);
    let chunking = ChunkerConfig::new(avg_kib << 8, avg_kib << 10, avg_kib << 12)
        .expect("FERRY_BENCH_AVG_KIB: a power of two from 1 to 4096");
    let rounds: usize = std::env::var("FERRY_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let mut data = vec![0u8; mib << 20];
    rand_chacha::ChaCha8Rng::seed_from_u64(11).fill_bytes(&mut data);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let keys = [NodeKey::generate().unwrap(), NodeKey::generate().unwrap()];
    // Rounds alternate the two, so a burst of load from elsewhere on the
    // machine hits both alike; each side's best round counts.
    let mut quinn = Vec::new();
    let mut in_memory = Vec::new();
    for _ in 0..rounds {
        quinn.push(runtime.block_on(bare_quic(&keys, &data)));
        let tmpfs = Path::new("/dev/shm");
        let memory = if tmpfs.is_dir() {
            tempfile::tempdir_in(tmpfs)
        } else {
            tempfile::tempdir()
        }
        .expect("a temporary directory");
        in_memory.push(runtime.block_on(ferry(memory.path(), &keys, &data, chunking)));
    }
    let disk = tempfile::tempdir().expect("a temporary directory");
    let on_disk = runtime.block_on(ferry(disk.path(), &keys, &data, chunking));
    let rounds_ratios: Vec<f64> = quinn
        .iter()
        .zip(&in_memory)
        .map(|(q, f)| q.wall.as_secs_f64() / f.wall.as_secs_f64())
        .collect();
    let quinn = best(&quinn);
    let in_memory = best(&in_memory);
    let disk_rate = disk_write_rate(disk.path());
    let bytes = data.len() as f64;
    let ratio = |run: Run| quinn.wall.as_secs_f64() / run.wall.as_secs_f64();
    let mbit = |run: Run| bytes * 8.0 / run.wall.as_secs_f64() / 1e6;
    println!(
        "{}",
        serde_json::json!({
            "bench": "quic",
            "ferry_vs_quinn": ratio(in_memory),
            "ferry_on_disk_vs_quinn": ratio(on_disk),
            "payload_bytes": data.len(),
            "ferry_seconds": in_memory.wall.as_secs_f64(),
            "quinn_seconds": quinn.wall.as_secs_f64(),
            "ferry_mbit_per_s": mbit(in_memory),
            "quinn_mbit_per_s": mbit(quinn),
            "ferry_on_disk_mbit_per_s": mbit(on_disk),
            "disk_mbit_per_s": disk_rate / 1e6,
            "rounds_ferry_vs_quinn": rounds_ratios,
            "ferry_cores_busy": in_memory.cores(),
            "quinn_cores_busy": quinn.cores(),
            "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
            "chunk_avg_bytes": chunking.avg_size,
            "transport_profile": PROFILE,
        })
    );
}

fn transport() -> TransportProfile {
    let p = LinkProfile::named(PROFILE).expect("a built-in profile");
    TransportProfile::for_link(p.rate_bps, p.rtt)
}

/// The baseline: the bytes as 1 MiB frames on one QUIC stream.
async fn bare_quic(keys: &[NodeKey; 2], data: &[u8]) -> Run {
    let any = "127.0.0.1:0".parse().unwrap();
    let server = QuicEndpoint::bind(
        any,
        &keys[1],
        TrustPolicy::pinned([keys[0].node_id()]),
        transport(),
    )
    .unwrap();
    let client = QuicEndpoint::bind(
        any,
        &keys[0],
        TrustPolicy::pinned([keys[1].node_id()]),
        transport(),
    )
    .unwrap();
    let addr = server.local_addr().unwrap();
    let expected = data.len();
    let receiver = tokio::spawn(async move {
        let link = server.accept().await.unwrap().unwrap();
        let mut got = 0;
        while got < expected {
            got += link
                .recv()
                .await
                .unwrap()
                .expect("frames until all arrived")
                .len();
        }
        Instant::now()
    });
    let link = client.connect(addr, keys[1].node_id()).await.unwrap();
    let start = Instant::now();
    let cpu = cpu_time();
    for frame in data.chunks(1 << 20) {
        link.send_bulk(frame.to_vec()).await.unwrap();
    }
    let end = receiver.await.unwrap();
    Run {
        wall: end - start,
        cpu: cpu_time() - cpu,
    }
}

/// How long a transfer took, and the CPU time the process spent meanwhile.
#[derive(Clone, Copy)]
struct Run {
    wall: Duration,
    cpu: Duration,
}

/// The fastest of `runs`.
fn best(runs: &[Run]) -> Run {
    *runs
        .iter()
        .min_by_key(|run| run.wall)
        .expect("at least one round")
}

impl Run {
    /// Cores kept busy on average.
    fn cores(&self) -> f64 {
        self.cpu.as_secs_f64() / self.wall.as_secs_f64()
    }
}

/// ferry: two nodes, the payload already in the base's store.
async fn ferry(root: &Path, keys: &[NodeKey; 2], data: &[u8], chunking: ChunkerConfig) -> Run {
    let ports = [free_port(), free_port()];
    let mut configs = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let dir = root.join(format!("node{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        key.save(dir.join("node.key")).unwrap();
        let other = &keys[1 - i];
        let dial = if i == 0 {
            format!("quic = \"127.0.0.1:{}\"\n", ports[1])
        } else {
            String::new()
        };
        let text = format!(
            "[node]\nkey = \"node.key\"\n[store]\npath = \"store\"\n[listen]\n\
             quic = \"127.0.0.1:{}\"\nadmin = \"ferryd.sock\"\n\
             [[peer]]\nname = \"other\"\nnode_id = \"{}\"\n{dial}profile = \"{PROFILE}\"\n",
            ports[i],
            other.node_id().to_hex()
        );
        let path = dir.join("ferryd.toml");
        std::fs::write(&path, text).unwrap();
        configs.push(Config::load(&path).unwrap());
    }
    let leaf = Node::start(configs.pop().unwrap()).await.unwrap();
    let base = Node::start(configs.pop().unwrap()).await.unwrap();
    let store = base.store.clone();
    let payload = data.to_vec();
    let manifest = tokio::task::spawn_blocking(move || {
        let mut ingest = Ingest::new(&store, Chunker::new(chunking).unwrap());
        let id = ingest.add("payload", &payload[..], |_| {}).unwrap();
        ingest.finish().unwrap();
        id
    })
    .await
    .unwrap();
    // Let the two connect before the clock starts.
    while base.engine.status().await.unwrap().links_up.is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Delivery is announced, not polled for: polling would cost the engine
    // thread work and the measurement up to a poll's interval.
    let (to, mut delivered) = tokio::sync::mpsc::unbounded_channel();
    leaf.engine.send(ferryd::driver::Input::Watch {
        kind: PayloadKind::Blob,
        to,
    });
    let start = Instant::now();
    let cpu = cpu_time();
    base.engine
        .submit(Submission::new(
            Endpoint::Node(leaf.id),
            PayloadKind::Blob,
            manifest,
            Duration::from_secs(3600),
        ))
        .await
        .unwrap();
    delivered.recv().await.expect("the leaf's engine runs");
    let run = Run {
        wall: start.elapsed(),
        cpu: cpu_time() - cpu,
    };
    base.stop().await;
    leaf.stop().await;
    run
}

/// The disk's sequential write rate in bit/s: 256 MiB written and synced.
fn disk_write_rate(dir: &Path) -> f64 {
    use std::io::Write;
    let path = dir.join("disk-rate");
    let block = vec![0x5a_u8; 1 << 20];
    let start = Instant::now();
    let mut file = std::fs::File::create(&path).unwrap();
    for _ in 0..256 {
        file.write_all(&block).unwrap();
    }
    file.sync_data().unwrap();
    let rate = (256u64 << 20) as f64 * 8.0 / start.elapsed().as_secs_f64();
    std::fs::remove_file(&path).unwrap();
    rate
}

/// CPU time this process has used so far (all threads, user and system),
/// from /proc/self/stat; zero where there is no /proc.
fn cpu_time() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields, in clock ticks (100 per second on Linux).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    Duration::from_millis(ticks * 10)
}

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
