//! Admission by a trust anchor, with real ferryd processes: a base that
//! lists an anchor's certificate (and lets anchored nodes enrol) admits a
//! leaf whose certificate the anchor issued, though it pins no id for it,
//! and a file crosses; a leaf with only its self-signed certificate, and
//! one certified by another anchor, are refused at the handshake with the
//! reason in the base's log.

mod support;

use std::time::Duration;

use ferry_link::identity::NodeKey;
use ferry_link::quic::anchor;
use support::{Node, configure, configure_node, free_port, init, peer, runtime};

/// Writes `leaf`'s certificate from `authority` to `leaf.crt` in its
/// directory.
fn certify(leaf: &Node, authority: &NodeKey) {
    let key = NodeKey::load(leaf.dir.join("node.key")).unwrap();
    let cert = anchor::admit(authority, &key.public_key(), 30).unwrap();
    std::fs::write(leaf.dir.join("leaf.crt"), cert.as_ref()).unwrap();
}

#[test]
fn the_base_admits_a_leaf_its_anchor_certified_and_refuses_others() {
    let root = tempfile::tempdir().unwrap();
    let (authority, rogue) = (NodeKey::from_seed([21; 32]), NodeKey::from_seed([22; 32]));
    let mut base = init(root.path(), "base", "base");
    std::fs::write(
        base.dir.join("anchor.crt"),
        anchor::anchor_certificate(&authority, 365)
            .unwrap()
            .as_ref(),
    )
    .unwrap();
    let base_port = free_port();
    configure(
        &base,
        "base",
        base_port,
        "[trust]\nanchors = [\"anchor.crt\"]\n[discovery]\nenrol = \"anchored\"\n",
    );
    base.start();
    let rt = runtime();
    base.wait_for(&rt, "the admin API", Duration::from_secs(60), |_| true);

    // Certified by the anchor: admitted, enrolled, and a file crosses.
    let mut leaf = init(root.path(), "leaf", "leaf");
    certify(&leaf, &authority);
    configure_node(
        &leaf,
        "leaf",
        "certificate = \"leaf.crt\"\n",
        free_port(),
        &peer("base", &base, Some(base_port), "lte-bush"),
    );
    leaf.start();
    base.wait_for_log(
        "the leaf admitted by the anchor",
        &["admitted by a trust anchor", &leaf.id[..16]],
    );
    let file = root.path().join("hello.txt");
    std::fs::write(&file, b"admitted by certificate, not by pin").unwrap();
    let sent = base.send(&rt, &file, &leaf.id);
    let manifest = sent[0]["manifest"].as_str().unwrap().to_owned();
    leaf.wait_for(&rt, "the file delivered", Duration::from_secs(60), |s| {
        s["delivered"]
            .as_array()
            .is_some_and(|d| d.iter().any(|d| d["manifest"] == manifest.as_str()))
    });

    // Self-signed, and certified by another anchor: refused with the reason.
    for (name, by) in [("stranger", None), ("rogue", Some(&rogue))] {
        let mut other = init(root.path(), name, "leaf");
        let node_extra = match by {
            Some(by) => {
                certify(&other, by);
                "certificate = \"leaf.crt\"\n"
            }
            None => "",
        };
        configure_node(
            &other,
            "leaf",
            node_extra,
            free_port(),
            &peer("base", &base, Some(base_port), "lte-bush"),
        );
        other.start();
        let line = base.wait_for_log(
            "the refusal at the handshake",
            &["refused QUIC peer", &other.id[..16]],
        );
        assert!(line.contains("does not chain to a trust anchor"), "{line}");
    }
}
