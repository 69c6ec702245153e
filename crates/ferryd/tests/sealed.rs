//! A sealed group release end to end: base → relay → leaf as three real
//! ferryd processes. The base seals what it sends to `group:sealed` for the
//! leaf's node key; the relay holds no key and carries ciphertext; the leaf
//! opens it, checks the publisher's signature on what it opened, and serves
//! the image to skopeo with upstream's digests. The same image bump also
//! goes to `group:plain`, unsealed, and the test prints (and bounds) what
//! the sealed bump costs on the leaf's link against the plain one:
//! `{"test":"sealed_bump","sealed_vs_plain":…}`.

mod support;

use std::time::{Duration, Instant};

use ferry_core::{BundleRecord, Cf};
use ferry_link::identity::NodeKey;
use ferry_oci::fixture::{Compressor, family_layout};
use ferry_trust::PublisherKey;
use ferry_trust::envelope::is_sealed;
use ferryd::admin::Request;
use support::{Node, configure_chain, free_port, init, runtime, skopeo_pull};

/// Frame bytes the node has received from all its peers.
fn bytes_in(node: &Node, rt: &tokio::runtime::Runtime) -> u64 {
    let peers = node.ask(rt, &Request::Peers).unwrap();
    peers["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["bytes_in"].as_u64().unwrap())
        .sum()
}

#[test]
fn a_sealed_release_crosses_a_keyless_relay_and_is_served_at_the_leaf() {
    let root = tempfile::tempdir().unwrap();
    let upstream = root.path().join("upstream");
    let images = family_layout(&upstream, Compressor::Go, 2048, 512).unwrap();
    let mut base = init(root.path(), "base", "base");
    let mut relay = init(root.path(), "relay", "relay");
    let mut leaf = init(root.path(), "leaf", "leaf");
    let leaf_key = NodeKey::load(leaf.dir.join("node.key")).unwrap();
    let leaf_public = ferry_trust::PublicKey(leaf_key.public_key());
    let publisher = PublisherKey::from_seed([61; 32]);
    publisher.save(base.dir.join("publisher.pem")).unwrap();
    let registry = free_port();
    let groups = format!("[groups]\nplain = [\"{0}\"]\nsealed = [\"{0}\"]\n", leaf.id);
    configure_chain(
        [&base, &relay, &leaf],
        &["plain", "sealed"],
        [
            &format!(
                "{groups}[trust]\npublisher_key = \"publisher.pem\"\n\
                 [[trust.seal]]\ngroup = \"sealed\"\nmembers = [\"{leaf_public}\"]\n"
            ),
            &groups,
            &format!(
                "[oci]\nlisten = \"127.0.0.1:{registry}\"\n\
                 [[trust.publisher]]\nkey = \"{}\"\noci = [\"team/*\"]\n",
                publisher.public()
            ),
        ],
    );
    leaf.start();
    relay.start();
    base.start();
    let rt = runtime();
    base.wait_for(&rt, "the admin API", Duration::from_secs(60), |_| true);
    leaf.wait_for(&rt, "the admin API", Duration::from_secs(60), |_| true);
    let addr = format!("127.0.0.1:{registry}");
    let pulled = root.path().join("pulled");
    std::fs::create_dir_all(&pulled).unwrap();

    // Publishes `tag` to `group` as `repository`; returns the frame bytes
    // the leaf received until skopeo could pull it, with upstream's digest.
    let bump = |to: &str, repository: &str, tag: &str, expected: &str| -> u64 {
        let before = bytes_in(&leaf, &rt);
        base.ask(
            &rt,
            &Request::OciPublish {
                source: format!("oci:{}:{tag}", upstream.display()),
                credentials: None,
                repository: Some(repository.into()),
                tags: Vec::new(),
                to: to.into(),
                lifetime_s: None,
            },
        )
        .unwrap_or_else(|e| panic!("publish failed: {e}{}", base.logs()));
        let deadline = Instant::now() + Duration::from_secs(240);
        loop {
            if std::process::Command::new("skopeo")
                .args([
                    "inspect",
                    "--raw",
                    "--tls-verify=false",
                    &format!("docker://{addr}/{repository}:{tag}"),
                ])
                .output()
                .is_ok_and(|o| o.status.success())
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{repository}:{tag} never served;{}",
                leaf.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let received = bytes_in(&leaf, &rt) - before;
        let out = pulled.join(format!("{}-{tag}", repository.replace('/', "-")));
        assert_eq!(
            skopeo_pull(&addr, &format!("{repository}:{tag}"), &out),
            expected
        );
        received
    };

    let (v1, v2) = (images.v1.digest.to_string(), images.v2.digest.to_string());
    let plain_first = bump("group:plain", "team/plain", "v1", &v1);
    let sealed_first = bump("group:sealed", "team/sealed", "v1", &v1);
    let plain_bump = bump("group:plain", "team/plain", "v2", &v2);
    let sealed_bump = bump("group:sealed", "team/sealed", "v2", &v2);
    // To a member of the sealed group alone: sealed as well.
    bump(&leaf.id, "team/direct", "v2", &v2);
    let ratio = sealed_bump as f64 / plain_bump as f64;
    println!(
        "{{\"test\":\"sealed_bump\",\"plain_first\":{plain_first},\"sealed_first\":{sealed_first},\
         \"plain_bump\":{plain_bump},\"sealed_bump\":{sealed_bump},\"sealed_vs_plain\":{ratio:.4}}}"
    );
    leaf.wait_for_log(
        "the sealed release opened and applied",
        &["OCI release applied", "repository=team/sealed"],
    );
    assert!(
        ratio <= 1.1,
        "a sealed bump moved {ratio:.4} × the plain one"
    );

    // What crossed the relay: the sealed bundles' releases are ciphertext
    // (no repository name, no tag), the plain ones are not.
    leaf.kill9();
    let store =
        ferry_store::RocksStore::open(leaf.dir.join("store"), ferry_store::StoreConfig::default())
            .unwrap();
    let (mut sealed, mut plain, mut direct) = (0, 0, 0);
    for (_, bytes) in store.scan_prefix(Cf::Bundles, b"").unwrap() {
        let Some(record) = BundleRecord::decode(&bytes) else {
            continue;
        };
        let names = |name: &[u8]| record.header.release.windows(name.len()).any(|w| w == name);
        match record.header.destination.to_string().as_str() {
            "group:sealed" => {
                assert!(is_sealed(&record.header.release));
                assert!(!names(b"team/sealed"));
                sealed += 1;
            }
            "group:plain" => {
                assert!(names(b"team/plain"));
                plain += 1;
            }
            node if node == &leaf.id[..16] => {
                assert!(is_sealed(&record.header.release));
                assert!(!names(b"team/direct"));
                direct += 1;
            }
            _ => {}
        }
    }
    assert_eq!((sealed, plain, direct), (2, 2, 1));
}
