//! `cargo bench --bench sneakernet`: a release carried to an air-gapped site
//! on removable media, then a bump of it.
//!
//! A release is a directory tree (deterministic files of 1 KiB to 4 MiB,
//! about 24 MiB in all) sent as `ferry send DIR` sends it: one bundle per
//! file. The base exports it for the site, the site imports the volume and
//! writes receipts, the base imports them. Then a few files change (an edit
//! in the middle of a large file, an append to another, a small file
//! rewritten) and the whole tree is sent again (every file a new bundle, as
//! `ferry send` does), and exported again. Prints one JSON line:
//! - bump_vs_new_chunks = bytes of the second export / bytes of the
//!   release's chunks that the first export did not carry (1.0 would be
//!   the new content alone, with no framing, headers or manifests);
//! - full_vs_new_chunks, the baseline run beside it = bytes of a `--full`
//!   export of the same bundles (what re-sending the whole package costs,
//!   as Zarf does) / the same denominator.
//!
//! Real engines (ferry-core) over in-memory stores; the volumes are bytes in
//! memory, exactly what ferryd writes to files. FERRY_BENCH_SEED picks the seed.

use std::time::{Duration, Instant as Clock};

use ferry_chunk::{ChunkId, Chunker, ChunkerConfig, ManifestBuilder, ManifestId};
use ferry_core::{
    Endpoint, Engine, EngineConfig, ExportOptions, Instant, MemStore, NodeId, PayloadKind,
    Priority, Store, Submission,
};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

const BASE: NodeId = NodeId([1; 32]);
const SITE: NodeId = NodeId([2; 32]);

/// The release: (path, bytes), sorted by path as `ferry send` walks a tree.
fn release(seed: u64) -> Vec<(String, Vec<u8>)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut files = Vec::new();
    for i in 0..48 {
        let len = match i % 4 {
            0 => rng.random_range(1_000..8_000),
            1 => rng.random_range(20_000..200_000),
            2 => rng.random_range(200_000..1_000_000),
            _ => rng.random_range(1_000_000..4_000_000),
        };
        let mut bytes = vec![0; len];
        rng.fill_bytes(&mut bytes);
        let dir = ["manifests", "charts", "images", "config"][i % 4];
        files.push((format!("{dir}/file-{i:02}.bin"), bytes));
    }
    files.sort();
    files
}

/// A few files changed: an edit in the middle of a large file, an append to
/// another, a small file rewritten. Returns how many files changed.
fn bump(files: &mut [(String, Vec<u8>)], seed: u64) -> usize {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xb0b);
    let large = files.iter().position(|(_, b)| b.len() > 1_000_000).unwrap();
    let bytes = &mut files[large].1;
    let at = bytes.len() / 2;
    let mut edit = vec![0; 300];
    rng.fill_bytes(&mut edit);
    bytes.splice(at..at + 100, edit);
    let medium = files
        .iter()
        .position(|(_, b)| (200_000..1_000_000).contains(&b.len()))
        .unwrap();
    let mut tail = vec![0; 30_000];
    rng.fill_bytes(&mut tail);
    files[medium].1.extend_from_slice(&tail);
    let small = files.iter().position(|(_, b)| b.len() < 8_000).unwrap();
    rng.fill_bytes(&mut files[small].1);
    3
}

/// Submits every file as a bundle for the site; returns each manifest.
fn send(
    engine: &mut Engine<MemStore>,
    files: &[(String, Vec<u8>)],
    now: Instant,
) -> Vec<ManifestId> {
    let chunker = Chunker::new(ChunkerConfig::default()).unwrap();
    let mut manifests = Vec::new();
    for (name, data) in files {
        let store = engine.store_mut();
        let mut builder = ManifestBuilder::new();
        for span in chunker.chunk_slice(data) {
            let chunk = &data[span.offset as usize..span.end() as usize];
            store.put_chunk(span.id, chunk).unwrap();
            builder.push(span, chunk).unwrap();
        }
        let manifest = store.put_manifest(&builder.finish()).unwrap();
        store.sync().unwrap();
        engine
            .submit(
                now,
                Submission {
                    destination: Endpoint::Node(SITE),
                    lifetime: Duration::from_secs(90 * 24 * 3600),
                    priority: Priority::Normal,
                    kind: PayloadKind::Blob,
                    manifest,
                    release: name.clone().into_bytes(),
                    signature: Vec::new(),
                },
            )
            .unwrap();
        manifests.push(manifest);
    }
    manifests
}

fn export(engine: &mut Engine<MemStore>, now: Instant, full: bool) -> Vec<u8> {
    let plan = engine
        .plan_export(
            now,
            Endpoint::Node(SITE),
            ExportOptions {
                full,
                max_volume_bytes: None,
            },
        )
        .unwrap();
    assert_eq!(plan.volume_count(), 1);
    let mut out = Vec::new();
    plan.write_volume(0, engine.store(), &mut out, |_| {})
        .unwrap();
    out
}

fn chunks_of(store: &MemStore, manifests: &[ManifestId]) -> Vec<(ChunkId, u32)> {
    manifests
        .iter()
        .flat_map(|m| {
            store
                .get_manifest(*m)
                .unwrap()
                .unwrap()
                .entries()
                .iter()
                .map(|e| (e.id, e.len))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn main() {
    let seed: u64 = std::env::var("FERRY_BENCH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let started = Clock::now();
    let mut base = Engine::new(EngineConfig::new(BASE, seed), MemStore::new()).unwrap();
    let mut site = Engine::new(EngineConfig::new(SITE, seed), MemStore::new()).unwrap();
    let day = Duration::from_secs(24 * 3600);
    let t0 = Instant(1_700_000_000_000_000);

    let mut files = release(seed);
    let release_bytes: u64 = files.iter().map(|(_, b)| b.len() as u64).sum();
    let first = send(&mut base, &files, t0);
    let volume = export(&mut base, t0, false);
    let report = site.import_volume(t0 + 2 * day, &volume[..]).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.accepted.len(), files.len());
    let mut receipts = Vec::new();
    site.export_receipts(t0 + 2 * day, &mut receipts).unwrap();
    let back = base.import_volume(t0 + 4 * day, &receipts[..]).unwrap();
    assert_eq!(back.released.len(), files.len());

    let changed = bump(&mut files, seed);
    let t1 = t0 + 7 * day;
    let second = send(&mut base, &files, t1);
    let carried: std::collections::BTreeSet<ChunkId> = chunks_of(base.store(), &first)
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let mut new_chunks = std::collections::BTreeMap::new();
    for (id, len) in chunks_of(base.store(), &second) {
        if !carried.contains(&id) {
            new_chunks.insert(id, len);
        }
    }
    let new_chunk_bytes: u64 = new_chunks.values().map(|&l| u64::from(l)).sum();
    let full = export(&mut base, t1, true);
    let diff = export(&mut base, t1, false);
    let report = site.import_volume(t1 + 2 * day, &diff[..]).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(
        report.accepted.len(),
        files.len(),
        "every bundle of the bump completes"
    );
    for manifest in &second {
        let m = site
            .store()
            .get_manifest(*manifest)
            .unwrap()
            .expect("manifest at the site");
        for entry in m.entries() {
            assert!(site.store().has_chunk(entry.id).unwrap());
        }
    }

    let ratio = diff.len() as f64 / new_chunk_bytes as f64;
    let baseline = full.len() as f64 / new_chunk_bytes as f64;
    println!(
        "{}",
        serde_json::json!({
            "bench": "sneakernet",
            "bump_vs_new_chunks": (ratio * 10_000.0).round() / 10_000.0,
            "full_vs_new_chunks": (baseline * 100.0).round() / 100.0,
            "second_export_bytes": diff.len(),
            "new_chunk_bytes": new_chunk_bytes,
            "new_chunks": new_chunks.len(),
            "full_export_bytes": full.len(),
            "first_export_bytes": volume.len(),
            "release_bytes": release_bytes,
            "files": files.len(),
            "changed_files": changed,
            "target": 1.05,
            "seed": seed,
            "elapsed_s": (started.elapsed().as_secs_f64() * 100.0).round() / 100.0,
        })
    );
}
