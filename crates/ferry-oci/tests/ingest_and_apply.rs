//! Ingest refuses bad images with a clear error; the leaf refuses releases
//! it cannot verify and then moves no tag.

use std::fs;
use std::path::Path;

use ferry_core::{MemStore, Store};
use ferry_oci::{
    ApplyError, Digest, ImageStore, IngestError, Layout, LayoutWriter, Limits, Stamp, fixture,
    media,
};

const REPO: &str = "team/app";

fn layout(dir: &Path) -> fixture::TestImages {
    fixture::test_layout(dir, 128, 32).unwrap()
}

fn stage(
    dir: &Path,
    tags: &[&str],
    limits: Limits,
) -> Result<(MemStore, ferry_oci::Staged), IngestError> {
    let source = Layout::open(dir)?;
    let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
    let plan = ferry_oci::plan(&source, REPO, &tags, limits)?;
    let mut store = MemStore::new();
    let staged = ferry_oci::stage(
        &mut store,
        &ferry_oci::ingest::Chunking::default(),
        &ferry_oci::Recipes::default(),
        &source,
        &plan,
    )?;
    Ok((store, staged))
}

#[test]
fn a_release_carries_every_blob_its_tags_reach_and_their_referrers() {
    let dir = tempfile::tempdir().unwrap();
    let images = layout(dir.path());
    let (_, staged) = stage(dir.path(), &["v1"], Limits::default()).unwrap();
    let digests: Vec<Digest> = staged.release.blobs.iter().map(|b| b.digest).collect();
    // v1's manifest, config, two layers; the signature, its empty config and its layer.
    assert_eq!(digests.len(), 7);
    assert_eq!(digests[0], images.v1.digest);
    assert!(digests.contains(&images.signature.digest));
    let (_, staged) = stage(dir.path(), &["multi"], Limits::default()).unwrap();
    // The index, two manifests, two configs, the shared base and two app layers.
    assert_eq!(staged.release.blobs.len(), 8);
}

#[test]
fn a_blob_that_does_not_match_its_digest_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let images = layout(dir.path());
    let manifest: serde_json::Value = serde_json::from_slice(
        &fs::read(dir.path().join("blobs/sha256").join(images.v1.digest.hex())).unwrap(),
    )
    .unwrap();
    let layer = manifest["layers"][1]["digest"].as_str().unwrap();
    let path = dir.path().join("blobs/sha256").join(&layer[7..]);
    let mut bytes = fs::read(&path).unwrap();
    bytes[100] ^= 1;
    fs::write(&path, bytes).unwrap();
    let err = stage(dir.path(), &["v1"], Limits::default()).unwrap_err();
    assert!(matches!(err, IngestError::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains(layer), "{err}");
}

#[test]
fn a_malformed_manifest_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    layout(dir.path());
    let mut out = LayoutWriter::create(dir.path()).unwrap();
    let bad = out
        .put(media::OCI_MANIFEST, br#"{"schemaVersion":2,"layers":[]}"#)
        .unwrap();
    out.tag("broken", &bad);
    out.finish().unwrap();
    let err = stage(dir.path(), &["broken"], Limits::default()).unwrap_err();
    assert!(matches!(err, IngestError::Malformed(_)), "{err}");
    assert!(err.to_string().contains("without config"), "{err}");
}

#[test]
fn a_blob_over_the_size_limit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    layout(dir.path());
    let err = stage(dir.path(), &["v1"], Limits { max_blob: 20_000 }).unwrap_err();
    assert!(matches!(err, IngestError::TooLarge { .. }), "{err}");
    assert!(err.to_string().contains("over the limit of 20000"), "{err}");
}

#[test]
fn unknown_tags_and_bad_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    layout(dir.path());
    let err = stage(dir.path(), &["v7"], Limits::default()).unwrap_err();
    assert!(err.to_string().contains("no tag \"v7\""), "{err}");
    let source = Layout::open(dir.path()).unwrap();
    let err = ferry_oci::plan(&source, "../up", &[], Limits::default()).unwrap_err();
    assert!(matches!(err, IngestError::Name(_)), "{err}");
}

#[test]
fn the_leaf_moves_no_tag_when_a_chunk_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    layout(&dir.path().join("up"));
    let (store, staged) = stage(&dir.path().join("up"), &["v1"], Limits::default()).unwrap();
    let root = store.get_manifest(staged.manifest).unwrap().unwrap();
    // A leaf store with every chunk but the last.
    let mut leaf = MemStore::new();
    let entries = root.entries();
    for entry in &entries[..entries.len() - 1] {
        leaf.put_chunk(entry.id, &store.get_chunk(entry.id).unwrap().unwrap())
            .unwrap();
    }
    let images = ImageStore::open(&dir.path().join("leaf")).unwrap();
    let err = images
        .apply(&leaf, &root, &staged.release, Stamp::default())
        .unwrap_err();
    assert!(matches!(err, ApplyError::MissingChunk { .. }), "{err}");
    assert_eq!(images.repository(REPO).unwrap(), None);
}

#[test]
fn the_leaf_refuses_a_blob_whose_bytes_do_not_have_its_digest() {
    let dir = tempfile::tempdir().unwrap();
    layout(&dir.path().join("up"));
    let (store, staged) = stage(&dir.path().join("up"), &["v1"], Limits::default()).unwrap();
    let root = store.get_manifest(staged.manifest).unwrap().unwrap();
    let mut release = staged.release.clone();
    let last = release.blobs.len() - 1;
    let wrong = Digest::of(b"something else");
    release.blobs[last].digest = wrong;
    let images = ImageStore::open(&dir.path().join("leaf")).unwrap();
    let err = images
        .apply(&store, &root, &release, Stamp::default())
        .unwrap_err();
    assert!(matches!(err, ApplyError::Corrupt { .. }), "{err}");
    assert!(!images.blob_path(&wrong).exists());
    assert_eq!(images.repository(REPO).unwrap(), None);
}

#[test]
fn an_older_release_does_not_move_a_tag_back() {
    let dir = tempfile::tempdir().unwrap();
    layout(&dir.path().join("up"));
    let (store, staged) = stage(&dir.path().join("up"), &["v1"], Limits::default()).unwrap();
    let root = store.get_manifest(staged.manifest).unwrap().unwrap();
    let images = ImageStore::open(&dir.path().join("leaf")).unwrap();
    let newer = Stamp {
        created_ms: 2,
        sequence: 0,
    };
    let older = Stamp {
        created_ms: 1,
        sequence: 5,
    };
    let applied = images.apply(&store, &root, &staged.release, newer).unwrap();
    assert_eq!(applied.tags_moved, ["v1"]);
    let applied = images.apply(&store, &root, &staged.release, older).unwrap();
    assert_eq!(applied.tags_kept, ["v1"]);
    assert_eq!(applied.blobs_held, staged.release.blobs.len());
}
