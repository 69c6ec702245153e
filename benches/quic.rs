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
//! baseline's. FERRY_BENCH_MIB sets the payload size (default 256).

use std::time::{Duration, Instant};

use ferry_chunk::{Chunker, ChunkerConfig};
use ferry_core::{Endpoint, PayloadKind, Priority, Submission};
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
    let mut data = vec![0u8; mib << 20];
    rand_chacha::ChaCha8Rng::seed_from_u64(11).fill_bytes(&mut data);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let root = tempfile::tempdir().expect("a temporary directory");
    let keys = [NodeKey::generate().unwrap(), NodeKey::generate().unwrap()];
    let quinn = runtime.block_on(bare_quic(&keys, &data));
    let ferry = runtime.block_on(ferry(root.path(), &keys, &data));
    let bytes = data.len() as f64;
    println!(
        "{}",
        serde_json::json!({
            "bench": "quic",
            "ferry_vs_quinn": quinn.as_secs_f64() / ferry.as_secs_f64(),
            "payload_bytes": data.len(),
            "ferry_seconds": ferry.as_secs_f64(),
            "quinn_seconds": quinn.as_secs_f64(),
            "ferry_mbit_per_s": bytes * 8.0 / ferry.as_secs_f64() / 1e6,
            "quinn_mbit_per_s": bytes * 8.0 / quinn.as_secs_f64() / 1e6,
            "transport_profile": PROFILE,
        })
    );
}

fn transport() -> TransportProfile {
    let p = LinkProfile::named(PROFILE).expect("a built-in profile");
    TransportProfile::for_link(p.rate_bps, p.rtt)
}

/// The baseline: the bytes as 1 MiB frames on one QUIC stream.
async fn bare_quic(keys: &[NodeKey; 2], data: &[u8]) -> Duration {
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
    for frame in data.chunks(1 << 20) {
        link.send_bulk(frame.to_vec()).await.unwrap();
    }
    let end = receiver.await.unwrap();
    end - start
}

/// ferry: two nodes, the payload already in the base's store.
async fn ferry(root: &std::path::Path, keys: &[NodeKey; 2], data: &[u8]) -> Duration {
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
        let mut ingest = Ingest::new(&store, Chunker::new(ChunkerConfig::default()).unwrap());
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
    let start = Instant::now();
    base.engine
        .submit(Submission {
            destination: Endpoint::Node(leaf.id),
            lifetime: Duration::from_secs(3600),
            priority: Priority::Normal,
            kind: PayloadKind::Blob,
            manifest,
            release: Vec::new(),
        })
        .await
        .unwrap();
    loop {
        let status = leaf.engine.status().await.unwrap();
        if !status.delivered.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = start.elapsed();
    base.stop().await;
    leaf.stop().await;
    elapsed
}

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
