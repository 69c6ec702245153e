//! Gzip layers sent as their content plus a rebuild recipe, through a lossy
//! two-hop chain, rebuilt bit for bit at the leaf and pulled with skopeo.
//!
//! Each family of encoders real images use makes a v1/v2 pair
//! (`ferry_oci::fixture::family_layout`: a ~4 MiB base layer of code-like
//! and text files and a ~1 MiB app layer; v2 changes a few files in each):
//! GNU gzip (`gzip -n -6`), Go's `compress/gzip` and klauspost/pgzip (the
//! real Go encoders, through `ferry_recipe::gozip`). The base stages each
//! release with recipes on; the leaf applies it into an `ImageStore` and
//! serves it, and skopeo pulls both tags with upstream's digests. Then the
//! ways a recipe can go wrong: damaged recipe bytes and damaged packed
//! chunks are errors at the leaf that write nothing and move no tag.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use ferry_chunk::{ChunkId, Manifest, ManifestEntry};
use ferry_core::{
    BundleId, Endpoint, Event, MemStore, NodeId, PayloadKind, Priority, Store, Submission,
};
use ferry_oci::fixture::{self, Compressor};
use ferry_oci::{ApplyError, ImageStore, Layout, Limits, OciRelease, Recipes, Staged, Stamp};
use ferry_sim::{Chain, LinkModel, Net};

const REPO: &str = "team/app";

fn node(n: u8) -> NodeId {
    NodeId([n; 32])
}

fn chain(seed: u64, loss: f64) -> Chain {
    let mut model = LinkModel::new(2_000_000, Duration::from_millis(80), 1400);
    model.loss = ferry_sim::Loss::Bernoulli(loss);
    Chain::new(seed, model)
}

fn stage<S: Store>(store: &mut S, recipes: &Recipes, layout: &Path, tags: &[&str]) -> Staged {
    let source = Layout::open(layout).unwrap();
    let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
    let plan = ferry_oci::plan(&source, REPO, &tags, Limits::default()).unwrap();
    ferry_oci::stage(
        store,
        &ferry_oci::Chunking::default(),
        recipes,
        &source,
        &plan,
    )
    .unwrap()
}

/// Stages `tags` at the base, submits them to the leaf and runs until the
/// leaf has them.
fn publish(
    chain: &mut Chain,
    recipes: &Recipes,
    layout: &Path,
    tags: &[&str],
) -> (BundleId, Staged) {
    let staged = stage(
        chain.net.engine_mut(chain.base).store_mut(),
        recipes,
        layout,
        tags,
    );
    let now = chain.net.now;
    let id = chain
        .net
        .engine_mut(chain.base)
        .submit(
            now,
            Submission {
                destination: Endpoint::Node(node(3)),
                lifetime: Duration::from_secs(24 * 3600),
                priority: Priority::Normal,
                kind: PayloadKind::Oci,
                manifest: staged.manifest,
                release: staged.release.encode(),
                signature: Vec::new(),
            },
        )
        .unwrap();
    let leaf = chain.leaf;
    let delivered = move |net: &Net| {
        net.events(leaf)
            .iter()
            .any(|(_, e)| matches!(e, Event::Delivered { bundle, .. } if *bundle == id))
    };
    let limit = chain.net.now + Duration::from_secs(6 * 3600);
    assert!(
        chain.net.run_while(limit, |net| !delivered(net)),
        "release {tags:?} never reached the leaf"
    );
    (id, staged)
}

/// What the leaf's daemon does with a delivered OCI bundle.
fn apply(chain: &Chain, images: &ImageStore, id: BundleId) -> ferry_oci::Applied {
    let engine = chain.net.engine(chain.leaf);
    let record = engine.bundle(&id).expect("the leaf holds the bundle");
    let release = OciRelease::decode(&record.header.release).unwrap();
    let manifest = engine
        .store()
        .get_manifest(record.header.manifest)
        .unwrap()
        .unwrap();
    let stamp = Stamp {
        created_ms: id.created_ms,
        sequence: id.sequence,
    };
    images
        .apply(engine.store(), &manifest, &release, stamp)
        .unwrap_or_else(|e| panic!("apply: {e}"))
}

fn serve(images: Arc<ImageStore>) -> (SocketAddr, tokio::runtime::Runtime) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(ferry_oci::serve::serve(listener, images));
    (addr, runtime)
}

fn skopeo(args: &[&str]) {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("skopeo is installed (scripts/setup installs it)");
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The digest `tag` names in the OCI layout at `dir`.
fn tagged(dir: &Path, tag: &str) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .map(|m| m["digest"].as_str().unwrap().to_owned())
        .unwrap_or_else(|| panic!("{} has no tag {tag}", dir.display()))
}

fn round_trip(compressor: Compressor, seed: u64) {
    let name = compressor.name();
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("upstream");
    let images = fixture::family_layout(&layout, compressor, 4096, 1024).unwrap();
    let store = Arc::new(ImageStore::open(&dir.path().join("leaf")).unwrap());
    let recipes = Recipes::default();
    let mut chain = chain(seed, 0.03);

    let (first, staged_v1) = publish(&mut chain, &recipes, &layout, &["v1"]);
    let applied = apply(&chain, &store, first);
    assert_eq!(applied.tags_moved, ["v1"]);
    let before = chain.net.stats(chain.last_hop).bytes[0];
    let (second, staged_v2) = publish(&mut chain, &recipes, &layout, &["v2"]);
    let bump = chain.net.stats(chain.last_hop).bytes[0] - before;
    let applied = apply(&chain, &store, second);
    assert_eq!(applied.tags_moved, ["v2"]);

    for (version, staged) in [("v1", &staged_v1), ("v2", &staged_v2)] {
        assert_eq!(staged.layers.len(), 2, "{name} {version}");
        for layer in &staged.layers {
            println!("{name} {version}: {layer}");
        }
    }
    let rebuilt = staged_v2.layers.iter().filter(|l| l.rebuilt).count();
    assert_eq!(applied.blobs_rebuilt, rebuilt, "{name}");
    if compressor == Compressor::Gnu {
        assert!(
            staged_v1
                .layers
                .iter()
                .chain(&staged_v2.layers)
                .all(|l| l.rebuilt),
            "GNU gzip layers travel with a recipe"
        );
    }
    let changed: u64 = images.layers[1].iter().map(|(_, size)| size).sum();
    println!(
        "{name}: the bump sent {bump} B on the last hop for {changed} B of changed layers; \
         v2 staged {} new B",
        staged_v2.new_bytes
    );
    if rebuilt == 2 {
        assert!(
            (bump as f64) < changed as f64 * 0.5,
            "{name}: with recipes the bump sends less than half the changed layers ({bump} of {changed} B)"
        );
    }

    let (addr, _runtime) = serve(store.clone());
    for (tag, want) in [("v1", &images.v1), ("v2", &images.v2)] {
        let out = dir.path().join(format!("pulled-{tag}"));
        skopeo(&[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{addr}/{REPO}:{tag}"),
            &format!("oci:{}:{tag}", out.display()),
        ]);
        assert_eq!(tagged(&out, tag), want.digest.to_string(), "{name} {tag}");
        for entry in std::fs::read_dir(out.join("blobs/sha256")).unwrap() {
            let entry = entry.unwrap();
            let upstream = layout.join("blobs/sha256").join(entry.file_name());
            assert!(
                std::fs::read(entry.path()).unwrap() == std::fs::read(upstream).unwrap(),
                "{name} {tag}: {:?} is upstream's, byte for byte",
                entry.file_name()
            );
        }
    }
    assert!(
        chain.net.stats(chain.last_hop).lost[0] > 0,
        "the chain did lose frames"
    );
}

#[test]
fn gnu_gzip_layers_are_rebuilt_bit_for_bit_at_the_leaf() {
    round_trip(Compressor::Gnu, 51);
}

#[test]
fn go_layers_arrive_bit_for_bit() {
    round_trip(Compressor::Go, 52);
}

#[test]
fn pgzip_layers_arrive_bit_for_bit() {
    round_trip(
        Compressor::Pgzip {
            block_size: 1 << 20,
        },
        53,
    );
}

/// A GNU gzip image staged into a store, with the index of a rebuilt layer.
fn staged_gnu(dir: &Path) -> (MemStore, Staged, usize) {
    let layout = dir.join("upstream");
    fixture::family_layout(&layout, Compressor::Gnu, 512, 128).unwrap();
    let mut store = MemStore::new();
    let staged = stage(&mut store, &Recipes::default(), &layout, &["v1"]);
    let at = staged
        .release
        .blobs
        .iter()
        .position(|b| !b.recipe.is_empty())
        .expect("a layer with a recipe");
    (store, staged, at)
}

fn nothing_served(images: &ImageStore, staged: &Staged, at: usize) {
    assert!(!images.blob_path(&staged.release.blobs[at].digest).exists());
    assert_eq!(images.repository(REPO).unwrap(), None, "no tag moved");
    assert_eq!(
        std::fs::read_dir(images.root().join("tmp"))
            .unwrap()
            .count(),
        0,
        "no temporary file is left"
    );
}

#[test]
fn a_damaged_recipe_is_an_error_at_the_leaf_and_nothing_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let (store, staged, at) = staged_gnu(dir.path());
    let manifest = store.get_manifest(staged.manifest).unwrap().unwrap();
    let digest = staged.release.blobs[at].digest;

    // A recipe that decodes but rebuilds other bytes (the header's mtime).
    let mut recipe = ferry_recipe::Recipe::decode(&staged.release.blobs[at].recipe).unwrap();
    recipe.header[4] ^= 0x5a;
    let mut release = staged.release.clone();
    release.blobs[at].recipe = recipe.encode();
    let release = OciRelease::decode(&release.encode()).expect("plausible on the wire");
    let images = ImageStore::open(&dir.path().join("leaf")).unwrap();
    let err = images
        .apply(&store, &manifest, &release, Stamp::default())
        .unwrap_err();
    assert_eq!(err.rebuild_failures().len(), 1, "{err}");
    assert_eq!(err.rebuild_failures()[0].digest, digest);
    assert!(err.to_string().contains(&digest.to_string()), "{err}");
    assert!(err.to_string().contains("hashing to"), "{err}");
    nothing_served(&images, &staged, at);

    // A recipe claiming more content than the segment holds.
    let mut recipe = ferry_recipe::Recipe::decode(&staged.release.blobs[at].recipe).unwrap();
    recipe.plain_length += 1 << 20;
    let mut release = staged.release.clone();
    release.blobs[at].recipe = recipe.encode();
    let err = images
        .apply(&store, &manifest, &release, Stamp::default())
        .unwrap_err();
    assert!(matches!(err, ApplyError::Rebuild(_)), "{err}");
    nothing_served(&images, &staged, at);

    // A recipe claiming less: the segment inflates past what it allows.
    let mut recipe = ferry_recipe::Recipe::decode(&staged.release.blobs[at].recipe).unwrap();
    recipe.plain_length /= 4;
    let mut release = staged.release.clone();
    release.blobs[at].recipe = recipe.encode();
    let err = images
        .apply(&store, &manifest, &release, Stamp::default())
        .unwrap_err();
    assert!(err.to_string().contains("inflates past"), "{err}");
    nothing_served(&images, &staged, at);

    // Bytes that are no recipe at all never get past the release's decoder.
    let mut release = staged.release.clone();
    release.blobs[at].recipe = vec![0xff; 40];
    assert!(OciRelease::decode(&release.encode()).is_err());

    // The intact release applies.
    images
        .apply(&store, &manifest, &staged.release, Stamp::default())
        .unwrap();
    assert!(images.blob_path(&digest).exists());
}

/// The chunk entries of blob `at` in `manifest`.
fn segment_of(manifest: &Manifest, release: &OciRelease, at: usize) -> std::ops::Range<usize> {
    let entries = manifest.entries();
    let mut next = 0;
    let mut range = 0..0;
    for (i, blob) in release.blobs.iter().enumerate() {
        let start = next;
        let mut length = 0;
        while length < blob.segment_length {
            length += u64::from(entries[next].len);
            next += 1;
        }
        if i == at {
            range = start..next;
        }
    }
    range
}

#[test]
fn a_damaged_packed_chunk_never_becomes_a_served_blob() {
    let dir = tempfile::tempdir().unwrap();
    let (store, staged, at) = staged_gnu(dir.path());
    let manifest = store.get_manifest(staged.manifest).unwrap().unwrap();
    let range = segment_of(&manifest, &staged.release, at);
    let victim = manifest.entries()[range.start + range.len() / 2];
    let good = store.get_chunk(victim.id).unwrap().unwrap();
    let mut bad = good.to_vec();
    let middle = bad.len() / 2;
    bad[middle] ^= 0x10;

    // Damaged in the leaf's store under its id (disk corruption): the
    // store's id check catches it.
    let mut leaf = MemStore::new();
    for entry in manifest.entries() {
        let bytes = store.get_chunk(entry.id).unwrap().unwrap();
        leaf.put_chunk(entry.id, &bytes).unwrap();
    }
    assert!(leaf.corrupt_chunk(victim.id));
    let images = ImageStore::open(&dir.path().join("leaf")).unwrap();
    let err = images
        .apply(&leaf, &manifest, &staged.release, Stamp::default())
        .unwrap_err();
    println!("damaged in the store: {err}");
    assert!(
        matches!(err, ApplyError::Corrupt { .. } | ApplyError::Store(_)),
        "{err}"
    );
    nothing_served(&images, &staged, at);

    // Damaged at the base, before its id was taken (the id matches, the
    // DEFLATE or the content does not): the rebuild or the digest fails.
    let mut store = store;
    let id = ChunkId::of(&bad);
    store.put_chunk(id, &bad).unwrap();
    let entries: Vec<ManifestEntry> = manifest
        .entries()
        .iter()
        .map(|e| {
            if e.id == victim.id {
                ManifestEntry { id, len: e.len }
            } else {
                *e
            }
        })
        .collect();
    let damaged = Manifest::new(entries).unwrap();
    let err = images
        .apply(&store, &damaged, &staged.release, Stamp::default())
        .unwrap_err();
    println!("damaged before packing: {err}");
    assert_eq!(
        err.rebuild_failures()[0].digest,
        staged.release.blobs[at].digest,
        "{err}"
    );
    nothing_served(&images, &staged, at);
}

#[test]
fn a_known_layer_is_not_searched_again_and_a_never_list_sends_it_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("upstream");
    fixture::family_layout(&layout, Compressor::Gnu, 512, 128).unwrap();
    let recipes = Recipes::persistent(&dir.path().join("recipes")).unwrap();
    let mut store = MemStore::new();
    let first = stage(&mut store, &recipes, &layout, &["v1"]);
    assert!(first.layers.iter().all(|l| l.rebuilt && !l.cached));
    let again = stage(&mut store, &recipes, &layout, &["v1"]);
    assert!(again.layers.iter().all(|l| l.rebuilt && l.cached));
    assert_eq!(again.manifest, first.manifest, "the same packed chunks");
    assert_eq!(again.new_bytes, 0);

    let never = first.layers[0].digest;
    assert!(recipes.never_again(&[never]).unwrap());
    drop(recipes);
    let recipes = Recipes::persistent(&dir.path().join("recipes")).unwrap();
    assert!(recipes.is_never(&never), "the never-list is durable");
    let third = stage(&mut store, &recipes, &layout, &["v1"]);
    assert!(!third.layers[0].rebuilt);
    assert!(
        third.layers[0].recipe.starts_with("as is"),
        "{}",
        third.layers[0].recipe
    );
    assert!(third.layers[1].rebuilt);
    let images = ImageStore::open(&dir.path().join("leaf")).unwrap();
    let manifest = store.get_manifest(third.manifest).unwrap().unwrap();
    images
        .apply(&store, &manifest, &third.release, Stamp::default())
        .unwrap();
}
