//! `ferry key`: keys made, shown, rotated and revoked with the real binary;
//! the statements it writes are what a node's trust policy accepts.

mod support;

use ferry_trust::{KeyChange, Policy, PublicKey, Signed, Trust, TrustState};
use support::{ferry, ok};

#[test]
fn keys_are_made_rotated_and_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();

    let first: PublicKey = ok(&ferry(&["key", "new", "--out", &path("a.pem")]))
        .trim()
        .parse()
        .unwrap();
    let shown = ok(&ferry(&["key", "show", &path("a.pem")]));
    assert_eq!(shown.trim(), first.to_string());
    // Never overwritten without --force.
    let again = ferry(&["key", "new", "--out", &path("a.pem")]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));

    let second: PublicKey = ok(&ferry(&[
        "key",
        "rotate",
        "--key",
        &path("a.pem"),
        "--out",
        &path("b.pem"),
        "--statement",
        &path("rotate.stmt"),
    ]))
    .trim()
    .parse()
    .unwrap();
    assert_ne!(first, second);

    let policy: Policy = toml::from_str(&format!(
        "[[publisher]]\nkey = \"{first}\"\ngit = [\"fleet/*\"]\n"
    ))
    .unwrap();
    let mut trust = Trust::new(policy, TrustState::default()).unwrap();
    let rotation = Signed::decode(&std::fs::read(path("rotate.stmt")).unwrap()).unwrap();
    let change = trust.check_key_statement(&rotation).unwrap();
    assert_eq!(
        change,
        KeyChange::Rotated {
            from: first,
            to: second
        }
    );
    trust.record_key_change(&change);

    ok(&ferry(&[
        "key",
        "revoke",
        "--key",
        &path("b.pem"),
        "--reason",
        "test over",
        "--statement",
        &path("revoke.stmt"),
    ]));
    let revocation = Signed::decode(&std::fs::read(path("revoke.stmt")).unwrap()).unwrap();
    assert_eq!(
        trust.check_key_statement(&revocation).unwrap(),
        KeyChange::Revoked {
            key: second,
            reason: "test over".into()
        }
    );
}

/// `ferry key anchor` makes an anchor key and its CA certificate; `ferry
/// key admit` issues a node a certificate from it, which that node's key
/// (and no other) can present.
#[test]
fn an_anchor_is_made_and_certifies_a_node() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let made = ok(&ferry(&[
        "key",
        "anchor",
        "--key",
        &path("anchor.pem"),
        "--out",
        &path("anchor.crt"),
    ]));
    assert!(
        made.contains("list") && made.contains("anchor.crt"),
        "{made}"
    );
    let der = std::fs::read(path("anchor.crt")).unwrap();
    ferry_link::quic::anchor::check_anchor(&der).unwrap();

    let node = ferry_link::identity::NodeKey::from_seed([5; 32]);
    let public = PublicKey(node.public_key()).to_string();
    let issued = ok(&ferry(&[
        "key",
        "admit",
        "--anchor",
        &path("anchor.pem"),
        "--node",
        &public,
        "--out",
        &path("node.crt"),
        "--days",
        "30",
    ]));
    assert!(issued.contains(&node.node_id().to_string()), "{issued}");
    let cert = std::fs::read(path("node.crt")).unwrap();
    assert!(node.clone().with_certificate(cert.clone()).is_ok());
    assert!(
        ferry_link::identity::NodeKey::from_seed([6; 32])
            .with_certificate(cert)
            .is_err()
    );
    // A missing anchor key is a clear error.
    let bad = ferry(&[
        "key",
        "admit",
        "--anchor",
        &path("missing.pem"),
        "--node",
        &public,
        "--out",
        &path("x.crt"),
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("missing.pem"));
}
