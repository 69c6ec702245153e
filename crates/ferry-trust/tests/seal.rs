//! Sealing for a group: convergent within the group, unrelated across
//! groups, tamper-evident, and a version bump that seals to about the same
//! new bytes as it has new plaintext.

use ferry_trust::seal::{GroupKey, MemberPublic, MemberSecret, SEAL_OVERHEAD, SealError};
use proptest::prelude::*;

fn text(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b"abcdefgh ijklmnop\n"[(x % 18) as usize]
        })
        .collect()
}

/// Content-defined cut points, a simple gear hash, for the bump test.
fn chunks(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let (mut start, mut h) = (0usize, 0u32);
    for (i, &b) in data.iter().enumerate() {
        h = (h << 1).wrapping_add(u32::from(b).wrapping_mul(0x9e37_79b1));
        if i + 1 - start >= 2048 && h & 0x1fff == 0 {
            out.push(&data[start..=i]);
            start = i + 1;
        }
    }
    out.push(&data[start..]);
    out
}

#[test]
fn chunks_are_convergent_within_a_group_only() {
    let g = GroupKey::from_bytes([1; 32]);
    let h = GroupKey::from_bytes([2; 32]);
    let plain = text(10_000, 1);
    let s1 = g.seal_chunk(&plain);
    assert_eq!(s1, g.seal_chunk(&plain));
    assert_eq!(s1.len(), plain.len() + SEAL_OVERHEAD);
    assert_ne!(s1, g.seal_chunk(&text(10_000, 2)));
    let s3 = h.seal_chunk(&plain);
    assert_ne!(s1, s3);
    assert!(!s1.windows(16).any(|w| plain.windows(16).any(|p| p == w)));
    assert_eq!(g.open_chunk(&s1).unwrap(), plain);
    assert_eq!(h.open_chunk(&s1), Err(SealError::Open));
    // A chunk does not open as a record, nor a record as a chunk.
    assert_eq!(g.open_record(&s1), Err(SealError::Open));
    assert_eq!(g.open_chunk(&g.seal_record(&plain)), Err(SealError::Open));
    for i in [0, 5, 11, 12, s1.len() - 1] {
        let mut tampered = s1.clone();
        tampered[i] ^= 1;
        assert_eq!(g.open_chunk(&tampered), Err(SealError::Open), "byte {i}");
    }
    assert_eq!(
        g.open_chunk(&s1[..SEAL_OVERHEAD - 1]),
        Err(SealError::Short)
    );
}

#[test]
fn records_are_deterministic_and_tamper_evident() {
    let g = GroupKey::from_bytes([3; 32]);
    let root = b"chunk keys of the index pieces".to_vec();
    let sealed = g.seal_record(&root);
    assert_eq!(sealed, g.seal_record(&root));
    assert_ne!(sealed, g.seal_record(b"another root"));
    assert_eq!(g.open_record(&sealed).unwrap(), root);
    assert!(GroupKey::from_bytes([4; 32]).open_record(&sealed).is_err());
    for i in 0..sealed.len() {
        let mut bad = sealed.clone();
        bad[i] ^= 0x10;
        assert!(g.open_record(&bad).is_err(), "byte {i}");
    }
}

#[test]
fn the_group_key_reaches_only_its_members() {
    let group = GroupKey::generate().unwrap();
    let leaf_seed = [7u8; 32];
    let leaf = MemberSecret::from_node_seed(&leaf_seed);
    // What the base knows of the leaf: its Ed25519 node public key.
    let node_public = ed25519_dalek::SigningKey::from_bytes(&leaf_seed)
        .verifying_key()
        .to_bytes();
    let member = MemberPublic::from_node_public_key(&node_public).unwrap();
    assert_eq!(member, leaf.public());
    let wrapped = group.wrap_for(&member).unwrap();
    assert_ne!(
        wrapped,
        group.wrap_for(&member).unwrap(),
        "fresh ephemeral each time"
    );
    assert_eq!(leaf.unwrap(&wrapped).unwrap(), group);
    let stranger = MemberSecret::from_node_seed(&[8; 32]);
    assert!(stranger.unwrap(&wrapped).is_err());
    let mut bad = wrapped.clone();
    bad[40] ^= 1;
    assert!(leaf.unwrap(&bad).is_err());
}

/// A version bump: the sealed chunks v2 has and v1 lacks are about the
/// size of the plaintext chunks v2 has and v1 lacks, plus a nonce and a
/// tag each.
#[test]
fn a_bump_seals_to_about_its_new_plaintext() {
    let g = GroupKey::from_bytes([9; 32]);
    let v1 = text(2 << 20, 5);
    let mut v2 = v1.clone();
    for at in [100_000usize, 900_000, 1_700_000] {
        v2[at..at + 300].copy_from_slice(&text(300, at as u64));
    }
    let plain_new = |a: &[u8], b: &[u8]| -> usize {
        let old: std::collections::HashSet<&[u8]> = chunks(a).into_iter().collect();
        chunks(b)
            .into_iter()
            .filter(|c| !old.contains(c))
            .map(<[u8]>::len)
            .sum()
    };
    let sealed =
        |d: &[u8]| -> Vec<Vec<u8>> { chunks(d).into_iter().map(|c| g.seal_chunk(c)).collect() };
    let (s1, s2) = (sealed(&v1), sealed(&v2));
    let old: std::collections::HashSet<&Vec<u8>> = s1.iter().collect();
    let sealed_new: usize = s2.iter().filter(|c| !old.contains(c)).map(Vec::len).sum();
    let new = plain_new(&v1, &v2);
    assert!(new > 0 && new < v1.len() / 20, "{new}");
    assert!(
        sealed_new as f64 <= new as f64 * 1.01 + 3.0 * SEAL_OVERHEAD as f64,
        "sealed {sealed_new} for {new} new plaintext bytes"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn sealed_chunks_open_to_their_plaintext(plain in proptest::collection::vec(any::<u8>(), 0..4096), key in any::<[u8; 32]>()) {
        let g = GroupKey::from_bytes(key);
        let s = g.seal_chunk(&plain);
        prop_assert_eq!(g.open_chunk(&s).unwrap(), plain);
    }
}
