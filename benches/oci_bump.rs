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
//! --to TAG` measures an existing OCI layout instead (and nothing else).
//! The engines are the real ones on ferry-sim's virtual clock; apply and
//! serving are the real ferry-oci code; gzip layers travel with rebuild
//! recipes where the base finds one.
//!
//! Then, per encoder family (GNU gzip `-n -6`, Go's compress/gzip, pgzip
//! with 1 MiB blocks; `ferry_oci::fixture::family_layout`: a 16 MiB base
//! layer and a 4 MiB app layer, v2 changing a few files in each), one JSON
//! line with the same figures plus `family`, the recipe each layer got,
//! and the first sync's bytes against v1's compressed size; one line over
//! all families; and per family the cost of rebuilding a ~120 MB layer at
//! a leaf against pulling it at 10 Mbit/s (`--no-families` skips these).

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_core::{
    Endpoint, EngineConfig, Event, MemStore, NodeId, PayloadKind, Priority, Routes, Store,
    Submission,
};
use ferry_oci::fixture::{self, Compressor};
use ferry_oci::{
    Digest, ImageStore, LayerReport, Layout, Limits, OciRelease, Recipes, Stamp, media,
};
use ferry_sim::{LinkModel, Net, NodeIndex};

const REPO: &str = "bench/image";

fn main() {
    let mut layout: Option<PathBuf> = None;
    let (mut from, mut to) = ("v1".to_owned(), "v2".to_owned());
    let mut families = true;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--layout" => layout = args.next().map(PathBuf::from),
            "--from" => from = args.next().expect("--from TAG"),
            "--to" => to = args.next().expect("--to TAG"),
            "--no-families" => families = false,
            "--bench" => {}
            other => panic!(
                "unknown argument {other}; use --layout DIR --from TAG --to TAG, --no-families"
            ),
        }
    }
    let temp = tempfile::tempdir().expect("a temporary directory");
    let (layout, images, families) = match layout {
        Some(dir) => (dir, "layout", false),
        None => {
            let dir = temp.path().join("images");
            fixture::test_layout(&dir, 4096, 1024).expect("writing the test images");
            (dir, "fixture", families)
        }
    };
    let m = measure(&layout, &from, &to, temp.path());
    println!(
        "{}",
        serde_json::json!({
            "bench": "oci_bump",
            "bytes_vs_changed_layers": m.bump_bytes as f64 / m.changed_layers.max(1) as f64,
            "bit_exact_fraction": m.exact as f64 / m.v2_blobs as f64,
            "images": images,
            "from": from,
            "to": to,
            "bump_wire_bytes": m.bump_bytes,
            "bump_wire_frames": m.frames,
            "bump_bytes_leaf_to_base": m.back,
            "baseline_changed_layer_bytes": m.changed_layers,
            "v2_image_bytes": m.v2_bytes,
            "v2_blobs": m.v2_blobs,
            "v2_blobs_served_exact": m.exact,
            "bump_vs_whole_v2": m.bump_bytes as f64 / m.v2_bytes.max(1) as f64,
        })
    );
    if !families {
        return;
    }

    let mut all = Vec::new();
    for family in Compressor::FAMILIES {
        let dir = temp.path().join(family.name());
        std::fs::create_dir_all(&dir).expect("a directory");
        let started = Instant::now();
        fixture::family_layout(&dir.join("images"), family, 16 << 10, 4 << 10)
            .expect("writing the family's images");
        let m = measure(&dir.join("images"), "v1", "v2", &dir);
        let layers: Vec<serde_json::Value> = [("v1", &m.v1_layers), ("v2", &m.v2_layers)]
            .iter()
            .flat_map(|(version, layers)| {
                layers.iter().map(move |l| {
                    serde_json::json!({
                        "version": version,
                        "digest": l.digest,
                        "recipe": l.recipe,
                        "blob_bytes": l.blob_bytes,
                        "segment_bytes": l.segment_bytes,
                        "new_bytes": l.new_bytes,
                        "rebuild_ms": l.rebuild_ms,
                    })
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "bench": "oci_bump",
                "family": family.name(),
                "bytes_vs_changed_layers": m.bump_bytes as f64 / m.changed_layers.max(1) as f64,
                "bit_exact_fraction": m.exact as f64 / m.v2_blobs as f64,
                "first_sync_wire_bytes": m.first_bytes,
                "v1_compressed_bytes": m.v1_bytes,
                "first_sync_vs_v1_compressed": m.first_bytes as f64 / m.v1_bytes.max(1) as f64,
                "bump_wire_bytes": m.bump_bytes,
                "baseline_changed_layer_bytes": m.changed_layers,
                "v2_blobs": m.v2_blobs,
                "v2_blobs_served_exact": m.exact,
                "layers": layers,
                "wall_s": started.elapsed().as_secs_f64(),
            })
        );
        all.push(m);
    }
    let sum = |f: fn(&Measured) -> u64| all.iter().map(f).sum::<u64>();
    println!(
        "{}",
        serde_json::json!({
            "bench": "oci_bump",
            "family": "all",
            "bytes_vs_changed_layers":
                sum(|m| m.bump_bytes) as f64 / sum(|m| m.changed_layers).max(1) as f64,
            "bit_exact_fraction": sum(|m| m.exact as u64) as f64 / sum(|m| m.v2_blobs as u64) as f64,
            "first_sync_wire_bytes": sum(|m| m.first_bytes),
            "v1_compressed_bytes": sum(|m| m.v1_bytes),
            "first_sync_vs_v1_compressed":
                sum(|m| m.first_bytes) as f64 / sum(|m| m.v1_bytes).max(1) as f64,
            "bump_wire_bytes": sum(|m| m.bump_bytes),
            "baseline_changed_layer_bytes": sum(|m| m.changed_layers),
        })
    );
    for family in Compressor::FAMILIES {
        rebuild_cost(family, 120);
    }
}

/// What one v1 → v2 run measured.
struct Measured {
    first_bytes: u64,
    v1_bytes: u64,
    bump_bytes: u64,
    frames: u64,
    back: u64,
    changed_layers: u64,
    v2_bytes: u64,
    v2_blobs: usize,
    exact: usize,
    v1_layers: Vec<LayerReport>,
    v2_layers: Vec<LayerReport>,
}

/// Publishes `from` then `to` of `layout` from a base to a leaf, applying
/// each; counts the bytes on the link and checks what the leaf serves.
fn measure(layout: &Path, from: &str, to: &str, work: &Path) -> Measured {
    let source = Layout::open(layout).unwrap_or_else(|e| panic!("{e}"));
    let recipes = Recipes::default();
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
    let leaf_images = Arc::new(ImageStore::open(&work.join("leaf")).expect("leaf store"));

    let publish = |net: &mut Net, tag: &str| {
        let plan = ferry_oci::plan(&source, REPO, &[tag.to_owned()], Limits::default())
            .unwrap_or_else(|e| panic!("{e}"));
        let staged = ferry_oci::stage(
            net.engine_mut(b).store_mut(),
            &ferry_oci::ingest::Chunking::default(),
            &recipes,
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
                    signature: Vec::new(),
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
        (plan, staged.layers)
    };

    let (v1, v1_layers) = publish(&mut net, from);
    let before = net.stats(wire);
    let first_bytes = before.bytes[0] + before.bytes[1];
    let (v2, v2_layers) = publish(&mut net, to);
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
    let v1_bytes: u64 = v1
        .blobs
        .iter()
        .filter(|d| is_layer(&d.media_type))
        .map(|d| d.size)
        .sum();

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
    Measured {
        first_bytes,
        v1_bytes,
        bump_bytes,
        frames,
        back,
        changed_layers,
        v2_bytes: v2.bytes(),
        v2_blobs: v2.blobs.len(),
        exact,
        v1_layers,
        v2_layers,
    }
}

/// Rebuilding a layer of about `mb` MB of `family` at a leaf (inflating
/// its packed chunks, running the recipe, hashing) against pulling it at
/// 10 Mbit/s.
fn rebuild_cost(family: Compressor, mb: usize) {
    let mut files = fixture::rootfs_files(mb * 1024 * 4 / 5);
    files.extend(fixture::service_files(mb * 1024 / 5));
    let tar = fixture::tar(&files).expect("a tar");
    let blob = family.gzip(&tar).expect("compressing");
    let started = Instant::now();
    let outcome = ferry_recipe::analyse(&blob, &Recipes::default().limits);
    let analyse_s = started.elapsed().as_secs_f64();
    let pull_s = blob.len() as f64 * 8.0 / 10e6;
    let line = match outcome {
        ferry_recipe::Outcome::Found(analysis) => {
            let packed = ferry_oci::pack::pack(&analysis.segment, &ferry_chunk::Chunker::default());
            let packed_bytes: usize = packed.iter().map(|p| p.bytes.len()).sum();
            let recipe = analysis.recipe.encode();
            drop(analysis.segment);
            let started = Instant::now();
            let mut segment = Vec::new();
            for p in &packed {
                ferry_oci::pack::unpack_one(&p.bytes, &mut segment, usize::MAX)
                    .expect("packed chunks inflate");
            }
            let recipe = ferry_recipe::Recipe::decode(&recipe).expect("a recipe");
            let rebuilt = recipe.rebuild(&segment).expect("a rebuild");
            let same = Digest::of(&rebuilt) == Digest::of(&blob);
            let rebuild_s = started.elapsed().as_secs_f64();
            serde_json::json!({
                "bench": "oci_bump",
                "rebuild_cost": family.name(),
                "recipe": recipe.encoder.to_string(),
                "tar_bytes": tar.len(),
                "compressed_bytes": blob.len(),
                "packed_bytes": packed_bytes,
                "analyse_s": analyse_s,
                "rebuild_s": rebuild_s,
                "pull_10mbit_s": pull_s,
                "rebuild_vs_pull": rebuild_s / pull_s,
                "bit_exact": same,
            })
        }
        ferry_recipe::Outcome::AsIs(reason) => serde_json::json!({
            "bench": "oci_bump",
            "rebuild_cost": family.name(),
            "recipe": format!("as is: {}", reason.lines().next().unwrap_or_default()),
            "tar_bytes": tar.len(),
            "compressed_bytes": blob.len(),
            "analyse_s": analyse_s,
            "rebuild_s": null,
            "pull_10mbit_s": pull_s,
        }),
    };
    println!("{line}");
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
