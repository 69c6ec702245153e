//! base → relay → leaf as three ferryd processes over QUIC, each hop
//! through the impairment proxy at 10 % loss and 300 ms RTT. 50 MiB go to
//! the leaf; the relay is killed with SIGKILL while it is receiving, then
//! restarted; the leaf still gets every byte, verified, and no bundle is
//! lost. Run it with `cargo test --release --test relay_crash`.

mod support;

use std::time::Duration;

use ferry_link::profile::{LinkProfile, Loss};
use ferry_link::proxy::{ImpairmentModel, Proxy};
use ferryd::admin::Request;
use rand::{RngCore, SeedableRng};
use support::{configure, free_port, init, peer};

const SEED: u64 = 42;
const SIZE: usize = 50 << 20;

#[test]
fn relay_killed_mid_transfer_loses_nothing() {
    let root = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut base = init(root.path(), "base", "base");
    let mut relay = init(root.path(), "relay", "relay");
    let mut leaf = init(root.path(), "leaf", "leaf");
    let (relay_port, leaf_port) = (free_port(), free_port());
    // 10 % Bernoulli loss each way, 300 ms RTT, 100 Mbit/s.
    let model = ImpairmentModel::from_profile(LinkProfile::named("lte-bush").unwrap())
        .with_loss(Loss::Bernoulli(0.10))
        .with_rtt(Duration::from_millis(300))
        .with_rate(100_000_000)
        .always_up();
    let (to_relay, to_leaf) = rt.block_on(async {
        let to_relay = Proxy::start(
            "127.0.0.1:0".parse().unwrap(),
            format!("127.0.0.1:{relay_port}").parse().unwrap(),
            model.clone(),
            SEED,
        )
        .await
        .unwrap();
        let to_leaf = Proxy::start(
            "127.0.0.1:0".parse().unwrap(),
            format!("127.0.0.1:{leaf_port}").parse().unwrap(),
            model,
            SEED + 1,
        )
        .await
        .unwrap();
        (to_relay, to_leaf)
    });
    let via = |p: &Proxy| Some(p.local_addr().port());
    configure(
        &base,
        "base",
        free_port(),
        &format!(
            "{}[routes]\ndefault = \"relay\"\n",
            peer("relay", &relay, via(&to_relay), "geo-sat")
        ),
    );
    configure(
        &relay,
        "relay",
        relay_port,
        &format!(
            "{}{}",
            peer("base", &base, None, "geo-sat"),
            peer("leaf", &leaf, via(&to_leaf), "geo-sat")
        ),
    );
    configure(
        &leaf,
        "leaf",
        leaf_port,
        &peer("relay", &relay, None, "geo-sat"),
    );
    leaf.start();
    relay.start();
    base.start();

    let mut data = vec![0; SIZE];
    rand_chacha::ChaCha8Rng::seed_from_u64(SEED).fill_bytes(&mut data);
    let file = root.path().join("payload.bin");
    std::fs::write(&file, &data).unwrap();
    let minute = Duration::from_secs(60);
    let sent = base.send(&rt, &file, &leaf.id.clone());
    let manifest = sent[0]["manifest"].as_str().unwrap().to_string();

    // Kill the relay once it holds a good part of the bundle, not all of it.
    relay.wait_for(&rt, "the relay receiving", 10 * minute, |s| {
        s["bundles"].as_array().into_iter().flatten().any(|b| {
            b["received"][0]
                .as_u64()
                .is_some_and(|got| got > (SIZE / 3) as u64)
        })
    });
    relay.kill9();
    relay.start();

    let status = leaf.wait_for(&rt, "delivery at the leaf", 20 * minute, |s| {
        s["delivered"].as_array().is_some_and(|d| !d.is_empty())
    });
    assert_eq!(
        status["delivered"][0]["manifest"].as_str(),
        Some(manifest.as_str())
    );
    let out = root.path().join("out.bin");
    leaf.ask(
        &rt,
        &Request::Get {
            manifest,
            out: out.clone(),
        },
    )
    .unwrap();
    assert!(
        std::fs::read(&out).unwrap() == data,
        "seed {SEED}: bytes differ"
    );
    // Custody came back hop by hop: the base released the bundle.
    base.wait_for(&rt, "custody released at the base", 5 * minute, |s| {
        s["counters"]["custody_released"].as_u64() == Some(1)
    });
    let stats = [to_relay.stats(), to_leaf.stats()];
    println!("seed {SEED}: proxy stats {stats:?}");
}
