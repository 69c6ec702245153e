//! Ingest from docker-archive tars written by skopeo: the legacy form has
//! no manifest, so one is made whose config is the archive's own and whose
//! layers are its uncompressed tars (digests = the config's diff_ids), and
//! the leaf serves that image to skopeo.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use ferry_core::{MemStore, Store};
use ferry_oci::{Digest, DockerArchive, ImageStore, Limits, Stamp, fixture, media};

fn skopeo(args: &[&str]) {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("skopeo is installed");
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn a_docker_archive_is_served_with_its_config_and_diff_ids() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("upstream");
    let images = fixture::test_layout(&layout, 256, 64).unwrap();
    let archive = dir.path().join("app.tar");
    skopeo(&[
        "copy",
        &format!("oci:{}:v1", layout.display()),
        &format!("docker-archive:{}:team/app:v1", archive.display()),
    ]);

    let source = DockerArchive::open(&archive).unwrap();
    let plan = ferry_oci::plan(&source, "team/app", &["v1".into()], Limits::default()).unwrap();
    let mut store = MemStore::new();
    let staged = ferry_oci::stage(
        &mut store,
        &ferry_oci::Chunking::default(),
        &ferry_oci::Recipes::default(),
        &source,
        &plan,
    )
    .unwrap();

    let upstream_manifest = json(&layout.join("blobs/sha256").join(images.v1.digest.hex()));
    let config_digest: Digest = upstream_manifest["config"]["digest"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let config = json(&layout.join("blobs/sha256").join(config_digest.hex()));
    let diff_ids: Vec<Digest> = config["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().parse().unwrap())
        .collect();
    let blobs: Vec<(Digest, &str)> = staged
        .release
        .blobs
        .iter()
        .map(|b| (b.digest, b.media_type.as_str()))
        .collect();
    assert_eq!(blobs[0].1, media::DOCKER_MANIFEST);
    assert_eq!(blobs[1], (config_digest, media::DOCKER_CONFIG));
    assert_eq!(blobs[2..].iter().map(|b| b.0).collect::<Vec<_>>(), diff_ids);

    let leaf = Arc::new(ImageStore::open(&dir.path().join("leaf")).unwrap());
    let manifest = store.get_manifest(staged.manifest).unwrap().unwrap();
    leaf.apply(&store, &manifest, &staged.release, Stamp::default())
        .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(ferry_oci::serve::serve(listener, leaf));
    let pulled = dir.path().join("pulled");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{addr}/team/app:v1"),
        &format!("dir:{}", pulled.display()),
    ]);
    // skopeo's dir: transport keeps the manifest as served and names blobs by digest.
    let served = std::fs::read(pulled.join("manifest.json")).unwrap();
    assert_eq!(Digest::of(&served), blobs[0].0);
    for digest in std::iter::once(config_digest).chain(diff_ids) {
        assert!(pulled.join(digest.hex()).exists(), "{digest}");
    }
}

#[test]
fn a_file_that_is_not_an_archive_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk.tar");
    std::fs::write(&path, b"not a tar at all, not even close").unwrap();
    let err = DockerArchive::open(&path).err().expect("refused");
    assert!(err.to_string().contains("docker-archive:"), "{err}");
}
