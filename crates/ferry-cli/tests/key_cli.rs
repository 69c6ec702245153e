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
