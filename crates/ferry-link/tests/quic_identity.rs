//! Node keys on disk: round trips, file mode, atomic replacement, other
//! tools' files, and clear errors for missing, unreadable and corrupt files.
#![cfg(feature = "quic")]

use std::fs;

use ferry_link::identity::{IdentityError, NodeKey, node_id_from_public_key};

#[test]
fn key_round_trips_through_save_and_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.key");
    let key = NodeKey::generate().unwrap();
    key.save(&path).unwrap();

    let text = fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{text}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    let loaded = NodeKey::load(&path).unwrap();
    assert_eq!(loaded.public_key(), key.public_key());
    assert_eq!(loaded.node_id(), key.node_id());
    assert_eq!(key.node_id(), node_id_from_public_key(&key.public_key()));
}

#[test]
fn save_replaces_atomically_and_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.key");
    NodeKey::generate().unwrap().save(&path).unwrap();
    let second = NodeKey::generate().unwrap();
    second.save(&path).unwrap();
    assert_eq!(NodeKey::load(&path).unwrap().node_id(), second.node_id());
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["node.key"]);
}

#[test]
fn loads_the_rfc_8410_example_key() {
    // RFC 8410 §10.3 (as `openssl genpkey -algorithm ed25519` writes keys);
    // its public key is the one in §10.1.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rfc.key");
    fs::write(
        &path,
        "-----BEGIN PRIVATE KEY-----\n\
         MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n\
         -----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let key = NodeKey::load(&path).unwrap();
    let public = [
        0x19, 0xbf, 0x44, 0x09, 0x69, 0x84, 0xcd, 0xfe, 0x85, 0x41, 0xba, 0xc1, 0x67, 0xdc, 0x3b,
        0x96, 0xc8, 0x50, 0x86, 0xaa, 0x30, 0xb6, 0xb6, 0xcb, 0x0c, 0x5c, 0x38, 0xad, 0x70, 0x31,
        0x66, 0xe1,
    ];
    assert_eq!(key.public_key(), public);
}

#[test]
fn loads_raw_der_with_a_public_key() {
    // ring writes PKCS#8 v2 (with the public key) as DER.
    use ring::signature::KeyPair;
    let rng = ring::rand::SystemRandom::new();
    let der = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8(der.as_ref()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ring.der");
    fs::write(&path, der.as_ref()).unwrap();
    let key = NodeKey::load(&path).unwrap();
    assert_eq!(key.public_key().as_slice(), pair.public_key().as_ref());
}

#[test]
fn missing_key_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.key");
    let err = NodeKey::load(&path).unwrap_err();
    assert!(matches!(err, IdentityError::Missing { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!("node key {}: no such file", path.display())
    );
}

#[test]
fn unreadable_key_is_a_clear_error() {
    // A directory stands in for an unreadable file (tests may run as root).
    let dir = tempfile::tempdir().unwrap();
    let err = NodeKey::load(dir.path()).unwrap_err();
    assert!(matches!(err, IdentityError::Read { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with(&format!("node key {}: cannot read: ", dir.path().display())),
        "{err}"
    );
}

#[test]
fn corrupt_key_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.key");
    NodeKey::generate().unwrap().save(&good).unwrap();
    let pem = fs::read_to_string(&good).unwrap();
    // One base64 character changed inside the key's algorithm identifier.
    let flipped = pem.replacen("MC4CAQAwBQYDK2Vw", "MC4CAQAwBQYDK2Vx", 1);
    assert_ne!(flipped, pem);

    let cases: [(&str, Vec<u8>); 5] = [
        ("empty", Vec::new()),
        ("garbage", b"not a key at all".to_vec()),
        ("truncated", pem.as_bytes()[..pem.len() / 2].to_vec()),
        ("flipped", flipped.into_bytes()),
        (
            "bad base64",
            b"-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n".to_vec(),
        ),
    ];
    for (name, bytes) in cases {
        let path = dir.path().join(format!("{name}.key"));
        fs::write(&path, bytes).unwrap();
        let err = NodeKey::load(&path).unwrap_err();
        assert!(
            matches!(err, IdentityError::Malformed { .. }),
            "{name}: {err}"
        );
        let prefix = format!(
            "node key {}: not an Ed25519 PKCS#8 private key: ",
            path.display()
        );
        assert!(err.to_string().starts_with(&prefix), "{name}: {err}");
    }
}

#[test]
fn certificate_is_made_for_the_key() {
    let key = NodeKey::from_seed([5; 32]);
    let cert = key.self_signed_cert().unwrap();
    assert_eq!(
        ferry_link::quic::node_id_of_certificate(&cert).unwrap(),
        key.node_id()
    );
}
