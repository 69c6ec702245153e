//! Two real ferryd processes: a base publishes container images to a leaf
//! (through the admin API, and by watching a layout's tag), the leaf applies
//! them and serves them read-only, and skopeo pulls them from the leaf with
//! upstream's digests — also after the leaf restarts.

mod support;

use std::time::Duration;

use ferryd::admin::Request;
use support::{base_and_leaf, free_port, runtime, skopeo_pull};

#[test]
fn a_base_publishes_images_and_skopeo_pulls_them_from_the_leaf() {
    let root = tempfile::tempdir().unwrap();
    let upstream = root.path().join("upstream");
    let images = ferry_oci::fixture::test_layout(&upstream, 512, 128).unwrap();
    let registry_port = free_port();
    let (mut base, mut leaf) = base_and_leaf(
        root.path(),
        &format!(
            "[[oci.watch]]\nsource = \"oci:{}\"\nrepository = \"team/app\"\ntags = [\"v2\"]\nto = \"leaf\"\ninterval = \"1s\"\n",
            upstream.display()
        ),
        &format!("[oci]\nlisten = \"127.0.0.1:{registry_port}\"\n"),
    );
    let rt = runtime();
    base.wait_for(&rt, "the admin API", Duration::from_secs(60), |_| true);
    let answer = base
        .ask(
            &rt,
            &Request::OciPublish {
                source: format!("oci:{}:v1", upstream.display()),
                credentials: None,
                repository: Some("team/app".into()),
                tags: Vec::new(),
                to: "leaf".into(),
                lifetime_s: None,
            },
        )
        .unwrap_or_else(|e| panic!("publish failed: {e}{}", base.logs()));
    assert_eq!(answer["tags"], serde_json::json!(["v1"]));

    // v1 through the admin API, v2 by the base's watch.
    leaf.wait_for_log_lines("both releases applied", &["OCI release applied"], 2);
    let addr = format!("127.0.0.1:{registry_port}");
    let pulled = skopeo_pull(&addr, "team/app:v1", &root.path().join("pulled-v1"));
    assert_eq!(pulled, images.v1.digest.to_string());
    let pulled = skopeo_pull(&addr, "team/app:v2", &root.path().join("pulled-v2"));
    assert_eq!(pulled, images.v2.digest.to_string());

    // A bad source is refused with the reason, and nothing is sent.
    let err = base
        .ask(
            &rt,
            &Request::OciPublish {
                source: format!("oci:{}:v9", upstream.display()),
                credentials: None,
                repository: Some("team/app".into()),
                tags: Vec::new(),
                to: "leaf".into(),
                lifetime_s: None,
            },
        )
        .unwrap_err();
    assert!(err.contains("no tag \"v9\""), "{err}");

    // The leaf serves what it applied after a restart.
    leaf.kill9();
    leaf.start();
    leaf.wait_for(&rt, "the leaf's admin API", Duration::from_secs(60), |_| {
        true
    });
    let pulled = skopeo_pull(&addr, "team/app:v2", &root.path().join("again-v2"));
    assert_eq!(pulled, images.v2.digest.to_string());
}
