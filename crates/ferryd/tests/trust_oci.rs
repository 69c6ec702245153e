//! Two real ferryd processes with a trust policy at the leaf for images: a
//! signed image release in policy is applied and served; one for a
//! repository outside the key's rights is refused with its reason and
//! never served; once the key is revoked, what it signed is no longer
//! served either.

mod support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use ferry_trust::{PublisherKey, Signed, Statement};
use ferryd::admin::Request;
use support::{configure, free_port, init, peer, runtime};

/// The status code of `GET path` on the leaf's registry.
fn get_status(port: u16, path: &str) -> Option<u16> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept: application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn the_leaf_serves_only_images_its_policy_trusts() {
    let root = tempfile::tempdir().unwrap();
    let upstream = root.path().join("upstream");
    ferry_oci::fixture::test_layout(&upstream, 256, 64).unwrap();
    let mut base = init(root.path(), "base", "base");
    let mut leaf = init(root.path(), "leaf", "leaf");
    let key = PublisherKey::from_seed([51; 32]);
    key.save(base.dir.join("publisher.pem")).unwrap();
    let (leaf_port, registry) = (free_port(), free_port());
    configure(
        &base,
        "base",
        free_port(),
        &format!(
            "{}[trust]\npublisher_key = \"publisher.pem\"\n",
            peer("leaf", &leaf, Some(leaf_port), "lte-bush")
        ),
    );
    configure(
        &leaf,
        "leaf",
        leaf_port,
        &format!(
            "{}[oci]\nlisten = \"127.0.0.1:{registry}\"\n[[trust.publisher]]\nkey = \"{}\"\noci = [\"team/*\"]\n",
            peer("base", &base, None, "lte-bush"),
            key.public()
        ),
    );
    leaf.start();
    base.start();
    let rt = runtime();
    base.wait_for(&rt, "the admin API", Duration::from_secs(60), |_| true);
    let publish = |repository: &str| {
        base.ask(
            &rt,
            &Request::OciPublish {
                source: format!("oci:{}:v1", upstream.display()),
                credentials: None,
                repository: Some(repository.into()),
                tags: Vec::new(),
                to: "leaf".into(),
                lifetime_s: None,
            },
        )
        .unwrap_or_else(|e| panic!("publish failed: {e}{}", base.logs()))
    };

    publish("team/app");
    let deadline = Instant::now() + Duration::from_secs(60);
    while get_status(registry, "/v2/team/app/manifests/v1") != Some(200) {
        assert!(Instant::now() < deadline, "v1 never served;{}", leaf.logs());
        std::thread::sleep(Duration::from_millis(200));
    }

    publish("other/app");
    let line = leaf.wait_for_log(
        "the out-of-policy refusal",
        &["release refused", "may not publish oci \"other/app\""],
    );
    assert!(line.contains(&key.public().to_string()), "{line}");
    base.wait_for_log(
        "the refusal reported to the base",
        &["deletion reported", "may not publish oci"],
    );
    assert_eq!(
        get_status(registry, "/v2/other/app/manifests/v1"),
        Some(404)
    );

    // The key is revoked: what it signed is no longer served.
    let revocation = Signed::sign(
        &key,
        &Statement::Revocation {
            revoked: key.public(),
            reason: "rotated out after an audit".into(),
        },
        0,
    );
    base.publish_statement(&rt, "revocation.stmt", &revocation, "leaf");
    leaf.wait_for_log(
        "the revocation taken",
        &["key statement accepted", "Revoked"],
    );
    assert_eq!(get_status(registry, "/v2/team/app/manifests/v1"), Some(403));
    leaf.wait_for_log(
        "the request refused",
        &["request refused", "team/app", "rotated out after an audit"],
    );
}
