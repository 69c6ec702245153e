//! `cargo bench --bench oci_bump`: what an image version bump costs on a link.
//!
//! A base publishes tag v1 of an OCI layout to a leaf over one link
//! (2 Mbit/s, 80 ms RTT, MTU 1400, no loss: the bench measures what dedupe
//! leaves to send, not loss recovery), the leaf applies it; then the base
//! publishes v2 and every byte ferry puts on the link for it, both
//! directions (headers, offers, want-lists, manifests, chunk frames,
//! custody signals), is counted. Prints one JSON line:
//! - bytes_vs_changed_layers = those bytes / the compressed size of v2's
//!   layers that v1 lacks (the baseline: what a layer-level mirror or
//!   Zarf's differential package moves for the bump);
//! - bit_exact_fraction = v2's blobs (walked from its tag at the leaf, each
//!   fetched from the leaf's registry over HTTP) whose bytes have their
//!   original sha256, over all of v2's blobs.
//!
//! Default images: `ferry_oci::fixture` (a 4 MiB base layer shared by v1
//! and v2, and a 1 MiB app layer that changes). `-- --layout DIR --from TAG
//! --to TAG` measures an existing OCI layout instead. The engines are the
//! real ones on ferry-sim's virtual clock; apply and serving are the real
//! ferry-oci code.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ferry_core::{
    Endpoint, EngineConfig, Event, MemStore, NodeId, PayloadKind, Priority, Routes, Store,
    Submission,
};
use ferry_oci::{Digest, ImageStore, Layout, Limits, OciRelease, Stamp, fixture, media};
use ferry_sim::{LinkModel, Net, NodeIndex};

const REPO: &str = "bench/image";

fn main() {
    let mut layout: Option<PathBuf> = None;
    let (mut from, mut to) = ("v1".to_owned(), "v2".to_owned());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--layout" => layout = args.next().map(PathBuf::from),
            "--from" => from = args.next().expect("--from TAG"),
            "--to" => to = args.next().expect("--to TAG"),
            "--bench" => {}
            other => panic!("unknown argument {other}; use --layout DIR --from TAG --to TAG"),
        }
    }
    let temp = tempfile::tempdir().expect("a temporary directory");
    let (layout, images) = match layout {
        Some(dir) => (dir, "layout"),
        None => {
            let dir = temp.path().join("images");
            fixture::test_layout(&dir, 4096, 1024).expect("writing the test images");
            (dir, "fixture")
        }
    };
    let source = Layout::open(&layout).unwrap_or_else(|e| panic!("{e}"));

    let node = |n: u8| NodeId([n; 32]);
    let mut net = Net::new(7);
    let mut base = EngineConfig::new(node(1), 7);
    base.routes = Routes {
        next_hop: [(node(2), node(2))].into(),
        ..Routes::default()
    };
    let b = net.add_node(base, MemStore::new());
    let l = net.add_node(EngineConfig::new(node(2), 8), MemStore::new());
    let wire = net.add_wire(
        b,
        l,
        LinkModel::new(2_000_000, Duration::from_millis(80), 1400),
    );
    net.set_up(wire, true);
    let leaf_images = Arc::new(ImageStore::open(&temp.path().join("leaf")).expect("leaf store"));

    let publish = |net: &mut Net, tag: &str| {
        let plan = ferry_oci::plan(&source, REPO, &[tag.to_owned()], Limits::default())
            .unwrap_or_else(|e| panic!("{e}"));
        let staged = ferry_oci::stage(
            net.engine_mut(b).store_mut(),
            &ferry_oci::ingest::Chunking::default(),
            &ferry_oci::Recipes::default(),
            &source,
            &plan,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let now = net.now;
        let id = net
            .engine_mut(b)
            .submit(
                now,
                Submission {
                    destination: Endpoint::Node(node(2)),
                    lifetime: Duration::from_secs(7 * 24 * 3600),
                    priority: Priority::Normal,
                    kind: PayloadKind::Oci,
                    manifest: staged.manifest,
                    release: staged.release.encode(),
                },
            )
            .expect("submit");
        let limit = net.now + Duration::from_secs(24 * 3600);
        let arrived = |net: &Net| {
            net.events(l)
                .iter()
                .any(|(_, e)| matches!(e, Event::Delivered { bundle, .. } if *bundle == id))
        };
        assert!(
            net.run_while(limit, |net| !arrived(net)),
            "{tag} never arrived"
        );
        // Let custody signals and the last acknowledgements cross too.
        let settle = net.now + Duration::from_secs(60);
        net.run_until(settle);
        apply(net, l, &leaf_images, id);
        plan
    };

    let v1 = publish(&mut net, &from);
    let before = net.stats(wire);
    let v2 = publish(&mut net, &to);
    let after = net.stats(wire);
    let frames = (after.frames[0] - before.frames[0]) + (after.frames[1] - before.frames[1]);
    let back = after.bytes[1] - before.bytes[1];
    let (before, after) = (before.bytes, after.bytes);
    let bump_bytes = (after[0] - before[0]) + (after[1] - before[1]);

    let v1_blobs: BTreeSet<Digest> = v1.blobs.iter().map(|d| d.digest).collect();
    let changed_layers: u64 = v2
        .blobs
        .iter()
        .filter(|d| is_layer(&d.media_type) && !v1_blobs.contains(&d.digest))
        .map(|d| d.size)
        .sum();
    let v2_bytes: u64 = v2.bytes();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    std::thread::spawn(move || runtime.block_on(ferry_oci::serve::serve(listener, leaf_images)));
    let exact = v2
        .blobs
        .iter()
        .filter(|d| {
            let kind = if media::is_manifest(&d.media_type) {
                "manifests"
            } else {
                "blobs"
            };
            let body = get(addr, &format!("/v2/{REPO}/{kind}/{}", d.digest));
            Digest::of(&body) == d.digest && body.len() as u64 == d.size
        })
        .count();

    println!(
        "{}",
        serde_json::json!({
            "bench": "oci_bump",
            "bytes_vs_changed_layers": bump_bytes as f64 / changed_layers.max(1) as f64,
            "bit_exact_fraction": exact as f64 / v2.blobs.len() as f64,
            "images": images,
            "from": from,
            "to": to,
            "bump_wire_bytes": bump_bytes,
            "bump_wire_frames": frames,
            "bump_bytes_leaf_to_base": back,
            "baseline_changed_layer_bytes": changed_layers,
            "v2_image_bytes": v2_bytes,
            "v2_blobs": v2.blobs.len(),
            "v2_blobs_served_exact": exact,
            "bump_vs_whole_v2": bump_bytes as f64 / v2_bytes.max(1) as f64,
        })
    );
}

fn is_layer(media_type: &str) -> bool {
    !media::is_manifest(media_type)
        && media_type != media::OCI_CONFIG
        && media_type != media::DOCKER_CONFIG
        && media_type != media::OCI_EMPTY
}

/// What the leaf's daemon does with a delivered OCI bundle.
fn apply(net: &Net, leaf: NodeIndex, images: &ImageStore, id: ferry_core::BundleId) {
    let engine = net.engine(leaf);
    let record = engine.bundle(&id).expect("delivered bundle is held");
    let release = OciRelease::decode(&record.header.release).expect("a valid release");
    let manifest = engine
        .store()
        .get_manifest(record.header.manifest)
        .expect("store")
        .expect("root manifest held");
    let stamp = Stamp {
        created_ms: id.created_ms,
        sequence: id.sequence,
    };
    images
        .apply(engine.store(), &manifest, &release, stamp)
        .unwrap_or_else(|e| panic!("apply: {e}"));
}

/// A plain HTTP/1.1 GET; the body of a 200, or nothing.
fn get(addr: SocketAddr, path: &str) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read");
    let Some(split) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Vec::new();
    };
    if !response.starts_with(b"HTTP/1.1 200") {
        return Vec::new();
    }
    response[split + 4..].to_vec()
}
