//! Every refusal a node can give a release or key statement, and the
//! statements it accepts.

use ferry_trust::{
    Arrived, KeyChange, Kind, Policy, PublicKey, PublisherKey, Refusal, ReleaseClaim, Signed,
    Statement, Trust, TrustState,
};
use proptest::prelude::*;

const RELEASE: &[u8] = b"the adapter's release bytes";
const MANIFEST: [u8; 32] = [7; 32];
const LEAVES: &str = "group:bush-north";

fn key(n: u8) -> PublisherKey {
    PublisherKey::from_seed([n; 32])
}

fn policy(extra: &str) -> Policy {
    let text = format!(
        r#"
[[publisher]]
key = "{}"
git = ["fleet/**"]
oci = ["team/*"]
to = ["group:bush-*"]

[[publisher]]
key = "{}"
oci = ["**"]
admin = true
{extra}"#,
        key(1).public(),
        key(2).public()
    );
    toml::from_str(&text).unwrap()
}

fn trust() -> Trust {
    Trust::new(policy(""), TrustState::default()).unwrap()
}

fn claim(kind: Kind, name: &str, version: u64) -> ReleaseClaim {
    ReleaseClaim {
        kind,
        name: name.into(),
        destination: LEAVES.into(),
        version,
        release_digest: ReleaseClaim::digest_of(RELEASE),
        manifest_id: MANIFEST,
    }
}

fn signed(by: u8, claim: ReleaseClaim) -> Signed {
    Signed::sign(&key(by), &Statement::Release(claim), 1_700_000_000_000)
}

fn arrived(kind: Kind, name: &str) -> Arrived<'_> {
    Arrived {
        kind,
        name,
        destination: LEAVES,
        release: RELEASE,
        manifest_id: MANIFEST,
    }
}

#[test]
fn a_signed_release_in_policy_is_accepted_and_travels() {
    let trust = trust();
    let s = signed(1, claim(Kind::Git, "fleet/apps", 1));
    let wire = Signed::decode(&s.encode()).unwrap();
    let accepted = trust
        .check_release(Some(&wire), &arrived(Kind::Git, "fleet/apps"))
        .unwrap();
    assert_eq!(accepted.key, key(1).public());
    assert_eq!(accepted.claim.version, 1);
}

#[test]
fn each_refusal_names_its_reason() {
    let trust = trust();
    let git = arrived(Kind::Git, "fleet/apps");
    type Case<'a> = (&'a str, Option<Signed>, Arrived<'a>, fn(&Refusal) -> bool);
    let cases: Vec<Case<'_>> = vec![
        ("unsigned", None, git, |r| matches!(r, Refusal::Unsigned)),
        (
            "unknown key",
            Some(signed(9, claim(Kind::Git, "fleet/apps", 1))),
            git,
            |r| matches!(r, Refusal::UnknownKey(_)),
        ),
        (
            "out of policy name",
            Some(signed(1, claim(Kind::Git, "other/repo", 1))),
            arrived(Kind::Git, "other/repo"),
            |r| matches!(r, Refusal::OutOfPolicy { .. }),
        ),
        (
            "out of policy kind",
            Some(signed(1, claim(Kind::Oci, "fleet/apps", 1))),
            arrived(Kind::Oci, "fleet/apps"),
            |r| matches!(r, Refusal::OutOfPolicy { .. }),
        ),
        (
            "claim for another name",
            Some(signed(1, claim(Kind::Git, "fleet/other", 1))),
            git,
            |r| matches!(r, Refusal::Mismatch(_)),
        ),
        (
            "tampered release",
            Some(signed(1, claim(Kind::Git, "fleet/apps", 1))),
            Arrived {
                release: b"the adapter's release bytes, edited",
                ..git
            },
            |r| matches!(r, Refusal::Mismatch(_)),
        ),
        (
            "tampered payload",
            Some(signed(1, claim(Kind::Git, "fleet/apps", 1))),
            Arrived {
                manifest_id: [8; 32],
                ..git
            },
            |r| matches!(r, Refusal::Mismatch(_)),
        ),
        (
            "other destination",
            Some(signed(1, claim(Kind::Git, "fleet/apps", 1))),
            Arrived {
                destination: "group:base",
                ..git
            },
            |r| matches!(r, Refusal::Mismatch(_)),
        ),
    ];
    for (what, signed, arrived, expected) in cases {
        let refusal = trust.check_release(signed.as_ref(), &arrived).unwrap_err();
        assert!(expected(&refusal), "{what}: {refusal}");
        assert!(!refusal.to_string().is_empty());
    }
    // A destination outside the rule's `to`, claimed and arrived alike.
    let mut far = claim(Kind::Git, "fleet/apps", 1);
    far.destination = "group:base".into();
    let refusal = trust
        .check_release(
            Some(&signed(1, far)),
            &Arrived {
                destination: "group:base",
                ..git
            },
        )
        .unwrap_err();
    assert!(matches!(refusal, Refusal::OutOfPolicy { .. }), "{refusal}");
}

#[test]
fn a_forged_signature_is_refused() {
    let trust = trust();
    let good = signed(1, claim(Kind::Git, "fleet/apps", 1)).encode();
    // The signature is the last field: flip a bit in it.
    let mut forged = good.clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let forged = Signed::decode(&forged).unwrap();
    assert!(matches!(
        trust.check_release(Some(&forged), &arrived(Kind::Git, "fleet/apps")),
        Err(Refusal::BadSignature(_))
    ));
    // Key 9 signs but claims to be key 1: re-wrap its statement under key 1.
    let by_nine = signed(9, claim(Kind::Git, "fleet/apps", 1)).encode();
    let mut wire: ferry_proto::v1::SignedStatement = prost::Message::decode(&by_nine[..]).unwrap();
    wire.public_key = key(1).public().0.to_vec();
    let impostor = Signed::decode(&prost::Message::encode_to_vec(&wire)).unwrap();
    assert!(matches!(
        trust.check_release(Some(&impostor), &arrived(Kind::Git, "fleet/apps")),
        Err(Refusal::BadSignature(_))
    ));
}

#[test]
fn an_older_release_cannot_replay_over_a_newer_one() {
    let mut trust = trust();
    let at = arrived(Kind::Oci, "team/app");
    let v5 = signed(1, claim(Kind::Oci, "team/app", 5));
    let accepted = trust.check_release(Some(&v5), &at).unwrap();
    trust.record_release(&accepted);
    // The same release checked again (before serving) still passes.
    trust.check_release(Some(&v5), &at).unwrap();
    for version in [1, 4] {
        let old = signed(1, claim(Kind::Oci, "team/app", version));
        let refusal = trust.check_release(Some(&old), &at).unwrap_err();
        assert!(
            matches!(refusal, Refusal::Replayed { newest: 5, .. }),
            "{refusal}"
        );
    }
    // Version 5 again but with other contents is a replay too.
    let mut other = claim(Kind::Oci, "team/app", 5);
    other.release_digest = ReleaseClaim::digest_of(b"other");
    let refusal = trust
        .check_release(
            Some(&signed(1, other)),
            &Arrived {
                release: b"other",
                ..at
            },
        )
        .unwrap_err();
    assert!(matches!(refusal, Refusal::Replayed { .. }), "{refusal}");
    trust
        .check_release(Some(&signed(1, claim(Kind::Oci, "team/app", 6))), &at)
        .unwrap();
    // The state survives a restart through serde.
    let saved = serde_json::to_string(trust.state()).unwrap();
    let restored = Trust::new(policy(""), serde_json::from_str(&saved).unwrap()).unwrap();
    assert!(
        restored
            .check_release(Some(&signed(1, claim(Kind::Oci, "team/app", 4))), &at)
            .is_err()
    );
}

#[test]
fn rotation_hands_the_scope_to_the_new_key_and_retires_the_old() {
    let mut trust = trust();
    let rotation = Signed::sign(
        &key(1),
        &Statement::Rotation {
            new_key: key(3).public(),
        },
        0,
    );
    let change = trust
        .check_key_statement(&Signed::decode(&rotation.encode()).unwrap())
        .unwrap();
    assert_eq!(
        change,
        KeyChange::Rotated {
            from: key(1).public(),
            to: key(3).public()
        }
    );
    trust.record_key_change(&change);
    let at = arrived(Kind::Git, "fleet/apps");
    trust
        .check_release(Some(&signed(3, claim(Kind::Git, "fleet/apps", 1))), &at)
        .unwrap();
    assert!(matches!(
        trust.check_release(Some(&signed(1, claim(Kind::Git, "fleet/apps", 1))), &at),
        Err(Refusal::Retired { .. })
    ));
    // The new key's scope is the old key's: not beyond it.
    assert!(matches!(
        trust.check_release(
            Some(&signed(3, claim(Kind::Oci, "other/x", 1))),
            &arrived(Kind::Oci, "other/x")
        ),
        Err(Refusal::OutOfPolicy { .. })
    ));
    // A retired key cannot rotate again; an unknown key cannot rotate in.
    for (by, to) in [(1, 4), (9, 4)] {
        let again = Signed::sign(
            &key(by),
            &Statement::Rotation {
                new_key: key(to).public(),
            },
            0,
        );
        assert!(trust.check_key_statement(&again).is_err(), "{by} → {to}");
    }
}

#[test]
fn revocation_by_the_key_itself_or_an_admin_key() {
    let mut trust = trust();
    let at = arrived(Kind::Oci, "team/app");
    // Key 1 (not admin) cannot revoke key 2.
    let by_one = Signed::sign(
        &key(1),
        &Statement::Revocation {
            revoked: key(2).public(),
            reason: "no".into(),
        },
        0,
    );
    assert!(matches!(
        trust.check_key_statement(&by_one),
        Err(Refusal::NotAllowed(_))
    ));
    // Key 2 (admin) revokes key 1: key 1's releases are refused after.
    let by_admin = Signed::sign(
        &key(2),
        &Statement::Revocation {
            revoked: key(1).public(),
            reason: "laptop stolen".into(),
        },
        0,
    );
    let change = trust.check_key_statement(&by_admin).unwrap();
    trust.record_key_change(&change);
    let refusal = trust
        .check_release(Some(&signed(1, claim(Kind::Oci, "team/app", 1))), &at)
        .unwrap_err();
    assert!(refusal.to_string().contains("laptop stolen"), "{refusal}");
    // A key rotated from a revoked key falls with it.
    let mut trust2 = self::trust();
    let rot = Signed::sign(
        &key(1),
        &Statement::Rotation {
            new_key: key(3).public(),
        },
        0,
    );
    let change = trust2.check_key_statement(&rot).unwrap();
    trust2.record_key_change(&change);
    let change = trust2.check_key_statement(&by_admin).unwrap();
    trust2.record_key_change(&change);
    assert!(matches!(
        trust2.check_release(Some(&signed(3, claim(Kind::Oci, "team/app", 1))), &at),
        Err(Refusal::Revoked { .. })
    ));
    // A key may revoke itself.
    let own = Signed::sign(
        &key(2),
        &Statement::Revocation {
            revoked: key(2).public(),
            reason: "retired".into(),
        },
        0,
    );
    assert!(trust.check_key_statement(&own).is_ok());
}

/// What a node serves is checked again at each request: a rotation keeps
/// what the old key signed served; a revocation (of the key or of a key it
/// was rotated from) or a policy that no longer allows the name stops it.
#[test]
fn what_is_served_is_checked_again_against_the_keys_standing_now() {
    let mut trust = trust();
    assert!(matches!(
        trust.check_serving(Kind::Git, "fleet/apps"),
        Err(Refusal::NotAllowed(_))
    ));
    let at = arrived(Kind::Git, "fleet/apps");
    let accepted = trust
        .check_release(Some(&signed(1, claim(Kind::Git, "fleet/apps", 1))), &at)
        .unwrap();
    trust.record_release(&accepted);
    trust.check_serving(Kind::Git, "fleet/apps").unwrap();
    assert!(trust.check_serving(Kind::Oci, "fleet/apps").is_err());

    // Key 1 rotates to key 3: what key 1 signed is still served.
    let rotation = Signed::sign(
        &key(1),
        &Statement::Rotation {
            new_key: key(3).public(),
        },
        0,
    );
    let change = trust.check_key_statement(&rotation).unwrap();
    trust.record_key_change(&change);
    trust.check_serving(Kind::Git, "fleet/apps").unwrap();
    let accepted = trust
        .check_release(Some(&signed(3, claim(Kind::Git, "fleet/apps", 2))), &at)
        .unwrap();
    trust.record_release(&accepted);
    trust.check_serving(Kind::Git, "fleet/apps").unwrap();

    // The admin key revokes key 1: key 3, rotated from it, falls too.
    let by_admin = Signed::sign(
        &key(2),
        &Statement::Revocation {
            revoked: key(1).public(),
            reason: "laptop stolen".into(),
        },
        0,
    );
    let state = trust.state().clone();
    let change = trust.check_key_statement(&by_admin).unwrap();
    trust.record_key_change(&change);
    let refusal = trust.check_serving(Kind::Git, "fleet/apps").unwrap_err();
    assert!(matches!(refusal, Refusal::Revoked { .. }), "{refusal}");

    // Without the revocation, but with key 1 gone from the policy.
    let narrower = Trust::new(
        toml::from_str(&format!(
            "[[publisher]]\nkey = \"{}\"\noci = [\"**\"]\n",
            key(2).public()
        ))
        .unwrap(),
        state,
    )
    .unwrap();
    assert!(matches!(
        narrower.check_serving(Kind::Git, "fleet/apps"),
        Err(Refusal::UnknownKey(_))
    ));
}

#[test]
fn policies_with_two_rules_for_a_key_or_bad_patterns_are_refused() {
    let dup = format!(
        "[[publisher]]\nkey = \"{}\"\noci = [\"x\"]\n",
        key(1).public()
    );
    assert!(Trust::new(policy(&dup), TrustState::default()).is_err());
    let bad = format!(
        "[[publisher]]\nkey = \"{}\"\noci = [\"a//b\"]\n",
        key(5).public()
    );
    assert!(toml::from_str::<Policy>(&bad).is_err());
    assert!(toml::from_str::<Policy>("[[publisher]]\nkey = \"ed25519:zz\"\n").is_err());
    assert!(
        toml::from_str::<Policy>("[[publisher]]\nkey = \"ed25519:00\"\nsurprise = 1\n").is_err()
    );
}

#[test]
fn keys_round_trip_through_files_and_text() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("publisher.pem");
    let k = PublisherKey::generate().unwrap();
    k.save(&path).unwrap();
    let back = PublisherKey::load(&path).unwrap();
    assert_eq!(back.public(), k.public());
    let text = k.public().to_string();
    assert_eq!(text.parse::<PublicKey>().unwrap(), k.public());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    /// Any damage to a signed release either fails to decode, fails to
    /// verify, or is refused: never accepted as something else.
    #[test]
    fn damage_never_yields_an_accepted_other_release(at in 0usize..200, bit in 0u8..8) {
        let trust = trust();
        let good = signed(1, claim(Kind::Git, "fleet/apps", 3)).encode();
        let mut damaged = good.clone();
        let at = at % damaged.len();
        damaged[at] ^= 1 << bit;
        if let Ok(s) = Signed::decode(&damaged) {
            let outcome = trust.check_release(Some(&s), &arrived(Kind::Git, "fleet/apps"));
            prop_assert!(outcome.is_err() || s.encode() == good, "accepted damaged bytes at {}", at);
        }
    }
}
