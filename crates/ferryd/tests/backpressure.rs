//! A leaf whose engine falls behind a fast link (a slow disk, a slow CPU)
//! holds the sender back: received frames wait for its engine only up to
//! ferryd's frame budget, QUIC flow control stops the base, and the rest of
//! the payload stays at the base until the leaf catches up; then every byte
//! arrives, verified. Both nodes run in this process, so that the test can
//! stop the leaf's engine thread.

mod support;

use std::future::Future;
use std::time::Duration;

use ferry_core::{Endpoint, PayloadKind, Submission};
use ferryd::admin::store_bytes;
use ferryd::config::Config;
use ferryd::daemon::Node;
use ferryd::driver::{FRAME_BUDGET, Input};
use rand::{RngCore, SeedableRng};
use support::{configure, free_port, init, peer};

const PAYLOAD: usize = 96 << 20;

#[test]
fn a_leaf_engine_that_falls_behind_holds_the_sender_back() {
    let root = tempfile::tempdir().unwrap();
    let base_dir = init(root.path(), "base", "base");
    let leaf_dir = init(root.path(), "leaf", "leaf");
    let leaf_port = free_port();
    let profile = "drone-wifi";
    configure(
        &base_dir,
        "base",
        free_port(),
        &peer("leaf", &leaf_dir, Some(leaf_port), profile),
    );
    configure(
        &leaf_dir,
        "leaf",
        leaf_port,
        &peer("base", &base_dir, None, profile),
    );
    let config = |node: &support::Node| Config::load(&node.dir.join("ferryd.toml")).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let leaf = Node::start(config(&leaf_dir)).await.unwrap();
        let base = Node::start(config(&base_dir)).await.unwrap();
        let mut data = vec![0u8; PAYLOAD];
        rand_chacha::ChaCha8Rng::seed_from_u64(9).fill_bytes(&mut data);
        let manifest = store_bytes(&base.store, "payload", data.clone())
            .await
            .unwrap();
        until("the link is up", || async {
            !base.engine.status().await.unwrap().links_up.is_empty()
        })
        .await;
        let (to, mut delivered) = tokio::sync::mpsc::unbounded_channel();
        leaf.engine.send(Input::Watch {
            kind: PayloadKind::Blob,
            to,
        });
        base.engine
            .submit(Submission::new(
                Endpoint::Node(leaf.id),
                PayloadKind::Blob,
                manifest,
                Duration::from_secs(3600),
            ))
            .await
            .unwrap();

        // Once chunks arrive, the leaf's engine stops, as if its disk hung.
        until("the first chunks arrive", || async {
            let status = leaf.engine.status().await.unwrap();
            status
                .bundles
                .iter()
                .any(|b| b.received.is_some_and(|(got, _)| got > 0))
        })
        .await;
        let (resume, stopped) = std::sync::mpsc::channel::<()>();
        leaf.engine.send(Input::WithEngine(Box::new(move |_, _| {
            let _ = stopped.recv();
        })));

        // The base soon has nowhere to put more: what it handed its link
        // stops growing, far short of the payload.
        let handed = || async {
            let status = base.engine.status().await.unwrap();
            status.links.iter().map(|l| l.bytes_out).sum::<u64>()
        };
        let mut before = handed().await;
        let held_at = loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let now = handed().await;
            if now == before || now >= PAYLOAD as u64 {
                break now;
            }
            before = now;
        };
        let queued = leaf.engine.queued_frame_bytes();
        println!("engine stopped: the base handed {held_at} of {PAYLOAD} bytes; {queued} wait at the leaf");
        assert!(
            held_at < PAYLOAD as u64 / 4 * 3,
            "the base handed {held_at} of {PAYLOAD} bytes to a leaf whose engine is stopped \
             ({queued} bytes queued for it)"
        );
        assert!(
            queued > 0 && queued <= u64::from(FRAME_BUDGET),
            "{queued} bytes wait for the leaf's engine; the budget is {FRAME_BUDGET}"
        );

        // The engine resumes: everything arrives.
        resume.send(()).unwrap();
        let (_, got) = tokio::time::timeout(Duration::from_secs(120), delivered.recv())
            .await
            .expect("delivered within two minutes")
            .expect("the leaf's engine runs");
        assert_eq!(got, manifest);
        let mut out = Vec::new();
        let object = leaf.store.get_manifest(manifest).unwrap().unwrap();
        leaf.store.read_object(&object, &mut out).unwrap();
        assert!(out == data, "the leaf's copy differs from what was sent");
        base.stop().await;
        leaf.stop().await;
    });
}

/// Polls `condition` every 5 ms until it holds; panics after 30 s.
async fn until<F: Future<Output = bool>>(what: &str, mut condition: impl FnMut() -> F) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
