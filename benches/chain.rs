//! `cargo bench --bench chain`: base → relay → leaf over a lossy link.
//!
//! On a 2 Mbit/s, 80 ms RTT, MTU 1400 link with 5 % Bernoulli frame loss on
//! both hops, the base sends a 20 MiB object to the leaf, then the same object
//! again. Prints one JSON line:
//! - wire_over_ideal = bytes the relay sent to the leaf / (object bytes /
//!   (1 − loss)): 1.0 would be every payload byte sent once plus exactly the
//!   retransmissions loss forces, with no framing or control overhead;
//! - resend_fraction = bytes the relay sent the leaf for the second send /
//!   object bytes (only what the leaf lacks crosses a link: nothing).
//!
//! Both runs use the real engine (ferry-core) on ferry-sim's virtual clock.
//! FERRY_BENCH_SEED picks the seed; FERRY_BENCH_MIB the object size.

use std::time::Duration;

use ferry_chunk::{Chunker, ChunkerConfig};
use ferry_core::{Endpoint, Event, Instant, NodeId, PayloadKind, Submission};
use ferry_sim::{Chain, LinkModel, Net, put_object};
use rand::{RngCore, SeedableRng};

const LOSS: f64 = 0.05;

fn main() {
    let seed: u64 = std::env::var("FERRY_BENCH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let mib: usize = std::env::var("FERRY_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let mut data = vec![0u8; mib << 20];
    rand_chacha::ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut data);

    let node = |n: u8| NodeId([n; 32]);
    let mut model = LinkModel::new(2_000_000, Duration::from_millis(80), 1400);
    model.loss = ferry_sim::Loss::Bernoulli(LOSS);
    let Chain {
        mut net,
        base: b,
        leaf: l,
        last_hop: w2,
        ..
    } = Chain::new(seed, model);

    let delivered = |net: &Net| {
        net.events(l)
            .iter()
            .filter(|(_, e)| matches!(e, Event::Delivered { .. }))
            .count()
    };
    let deadline = |net: &Net| net.now + Duration::from_secs(24 * 3600);

    let started = net.now;
    send(&mut net, b, &data, node(3));
    let limit = deadline(&net);
    assert!(
        net.run_while(limit, |net| delivered(net) < 1),
        "seed {seed}: first send never arrived"
    );
    let first_time = net.now.saturating_since(started);
    let first_bytes = net.stats(w2).bytes[0];

    send(&mut net, b, &data, node(3));
    let limit = deadline(&net);
    assert!(
        net.run_while(limit, |net| delivered(net) < 2),
        "seed {seed}: second send never arrived"
    );
    let second_bytes = net.stats(w2).bytes[0] - first_bytes;

    let object = data.len() as f64;
    let ideal = object / (1.0 - LOSS);
    let physical_secs = object * 8.0 / (2_000_000.0 * (1.0 - LOSS));
    println!(
        "{}",
        serde_json::json!({
            "bench": "chain",
            "wire_over_ideal": first_bytes as f64 / ideal,
            "resend_fraction": second_bytes as f64 / object,
            "seed": seed,
            "object_bytes": data.len(),
            "ideal_bytes": ideal.round(),
            "relay_to_leaf_bytes": first_bytes,
            "second_send_bytes": second_bytes,
            "frames_lost_relay_to_leaf": net.stats(w2).lost[0],
            "first_send_virtual_seconds": first_time.as_secs_f64(),
            "goodput_over_physical_limit": physical_secs / first_time.as_secs_f64(),
        })
    );
}

/// Ingests `data` into the node's store and submits it as a bundle.
fn send(net: &mut Net, at: usize, data: &[u8], to: NodeId) {
    let chunker = Chunker::new(ChunkerConfig::default()).expect("default chunker config is valid");
    let manifest =
        put_object(net.engine_mut(at).store_mut(), &chunker, data).expect("memory store");
    let now: Instant = net.now;
    net.engine_mut(at)
        .submit(
            now,
            Submission::new(
                Endpoint::Node(to),
                PayloadKind::Blob,
                manifest,
                Duration::from_secs(7 * 24 * 3600),
            ),
        )
        .expect("submit");
}
