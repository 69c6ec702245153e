//! Sealed bundles over a real chunk store: a member opens them to exactly
//! what was sealed; a stranger, a tampered chunk or a tampered release is
//! refused; a version bump seals to about its new plaintext.

use std::collections::HashSet;

use ferry_chunk::{Chunker, ChunkerConfig, Manifest, ManifestBuilder};
use ferry_core::{MemStore, Store};
use ferry_trust::envelope::{self, EnvelopeError, Member};
use ferry_trust::seal::{GroupKey, MemberSecret, SEAL_OVERHEAD};

fn text(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn put(store: &mut MemStore, data: &[u8]) -> Manifest {
    let chunker = Chunker::new(ChunkerConfig::default()).unwrap();
    let mut builder = ManifestBuilder::new().computing_sha256();
    for span in chunker.chunk_slice(data) {
        let bytes = &data[span.offset as usize..span.end() as usize];
        store.put_chunk(span.id, bytes).unwrap();
        builder.push(span, bytes).unwrap();
    }
    let manifest = builder.finish().with_media_type("application/x-test");
    store.put_manifest(&manifest).unwrap();
    manifest
}

struct Node {
    seed: [u8; 32],
}

impl Node {
    fn public(&self) -> [u8; 32] {
        ed25519_dalek::SigningKey::from_bytes(&self.seed)
            .verifying_key()
            .to_bytes()
    }
    fn member(&self) -> Member {
        Member::from_node_public_key(&self.public()).unwrap()
    }
    fn secret(&self) -> MemberSecret {
        MemberSecret::from_node_seed(&self.seed)
    }
    fn open(
        &self,
        store: &MemStore,
        sealed: &envelope::Sealed,
    ) -> Result<envelope::Opened, EnvelopeError> {
        envelope::open(
            store,
            &self.member().node,
            &self.secret(),
            &sealed.release,
            sealed.manifest,
        )
    }
}

fn read(store: &impl Store, manifest: &Manifest) -> Vec<u8> {
    let mut out = Vec::new();
    ferry_chunk::reassemble(
        manifest,
        |id| store.get_chunk(id).unwrap().ok_or("missing"),
        &mut out,
    )
    .unwrap();
    out
}

#[test]
fn a_member_opens_exactly_what_was_sealed() {
    let (leaf, other, stranger) = (
        Node { seed: [1; 32] },
        Node { seed: [2; 32] },
        Node { seed: [3; 32] },
    );
    let group = GroupKey::from_bytes([9; 32]);
    let mut store = MemStore::new();
    let data = text(300_000, 1);
    let manifest = put(&mut store, &data);
    let release = b"the adapter's release".to_vec();
    let sealed = envelope::seal(
        &mut store,
        &group,
        &[leaf.member(), other.member()],
        &release,
        &manifest,
    )
    .unwrap();
    assert!(envelope::is_sealed(&sealed.release));
    assert_eq!(
        sealed.sealed_bytes,
        data.len() as u64 + (manifest.chunk_count() * SEAL_OVERHEAD) as u64
    );
    // Neither the release nor any 32-byte run of the payload is visible.
    let sealed_manifest = store.get_manifest(sealed.manifest).unwrap().unwrap();
    assert!(!sealed.release.windows(release.len()).any(|w| w == release));
    let runs: HashSet<&[u8]> = data.windows(32).collect();
    for entry in sealed_manifest.entries() {
        let bytes = store.get_chunk(entry.id).unwrap().unwrap();
        assert!(!bytes.windows(32).any(|w| runs.contains(w)));
    }

    for member in [&leaf, &other] {
        let opened = member.open(&store, &sealed).unwrap();
        assert_eq!(opened.release(), release);
        assert_eq!(opened.manifest(), &manifest);
        let view = opened.view(&store);
        assert_eq!(read(&view, opened.manifest()), data);
        assert_eq!(
            view.get_manifest(manifest.id()).unwrap().as_ref(),
            Some(&manifest)
        );
    }
    let refused = stranger.open(&store, &sealed).unwrap_err();
    assert!(
        matches!(refused, EnvelopeError::NotAMember { .. }),
        "{refused}"
    );
    // A stranger that copies a member's node id still lacks its secret.
    let impostor = envelope::open(
        &store,
        &leaf.member().node,
        &stranger.secret(),
        &sealed.release,
        sealed.manifest,
    )
    .unwrap_err();
    assert!(matches!(impostor, EnvelopeError::Key { .. }), "{impostor}");
}

#[test]
fn tampering_is_refused() {
    let leaf = Node { seed: [4; 32] };
    let group = GroupKey::from_bytes([5; 32]);
    let mut store = MemStore::new();
    let manifest = put(&mut store, &text(200_000, 2));
    let sealed =
        envelope::seal(&mut store, &group, &[leaf.member()], b"release", &manifest).unwrap();

    // Every byte of the release, flipped, is refused (or names no member).
    for i in envelope::SEALED_MAGIC.len()..sealed.release.len() {
        let mut bad = sealed.clone();
        bad.release[i] ^= 0x04;
        assert!(leaf.open(&store, &bad).is_err(), "release byte {i}");
    }

    // A sealed chunk swapped for another group's sealing of the same text.
    let sealed_manifest = store.get_manifest(sealed.manifest).unwrap().unwrap();
    let mut forged = store.clone();
    let entry = sealed_manifest.entries()[1];
    let plain = group
        .open_chunk(&store.get_chunk(entry.id).unwrap().unwrap())
        .unwrap();
    let other = GroupKey::from_bytes([6; 32]).seal_chunk(&plain);
    let mut entries = sealed_manifest.entries().to_vec();
    entries[1].id = ferry_chunk::ChunkId::of(&other);
    forged.put_chunk(entries[1].id, &other).unwrap();
    let forged_manifest = Manifest::new(entries).unwrap();
    let forged_id = forged.put_manifest(&forged_manifest).unwrap();
    let refused = envelope::open(
        &forged,
        &leaf.member().node,
        &leaf.secret(),
        &sealed.release,
        forged_id,
    )
    .unwrap_err();
    assert!(
        matches!(refused, EnvelopeError::Chunk { index: 1 }),
        "{refused}"
    );

    // Chunks reordered: each opens, but they are not what was sealed.
    let mut entries = sealed_manifest.entries().to_vec();
    entries.swap(0, 2);
    let swapped = forged
        .put_manifest(&Manifest::new(entries).unwrap())
        .unwrap();
    let refused = envelope::open(
        &forged,
        &leaf.member().node,
        &leaf.secret(),
        &sealed.release,
        swapped,
    )
    .unwrap_err();
    assert!(matches!(refused, EnvelopeError::Mismatch(_)), "{refused}");
}

/// Sealed for the same group, v2 shares every sealed chunk v1 and v2 share
/// in plaintext: the new sealed bytes are the new plaintext bytes plus
/// [`SEAL_OVERHEAD`] per new chunk.
#[test]
fn a_bump_moves_only_its_new_chunks_sealed() {
    let leaf = Node { seed: [7; 32] };
    let group = GroupKey::from_bytes([8; 32]);
    let mut store = MemStore::new();
    let v1 = text(4 << 20, 3);
    let mut v2 = v1.clone();
    for at in [300_000usize, 2_000_000, 3_900_000] {
        v2[at..at + 500].copy_from_slice(&text(500, at as u64));
    }
    let (m1, m2) = (put(&mut store, &v1), put(&mut store, &v2));
    let s1 = envelope::seal(&mut store, &group, &[leaf.member()], b"v1", &m1).unwrap();
    let s2 = envelope::seal(&mut store, &group, &[leaf.member()], b"v2", &m2).unwrap();
    let new_bytes = |old: &Manifest, new: &Manifest| -> (u64, usize) {
        let held: HashSet<_> = old.entries().iter().map(|e| e.id).collect();
        let fresh: Vec<_> = new
            .entries()
            .iter()
            .filter(|e| !held.contains(&e.id))
            .collect();
        (fresh.iter().map(|e| u64::from(e.len)).sum(), fresh.len())
    };
    let (plain_new, chunks) = new_bytes(&m1, &m2);
    let sm = |id| store.get_manifest(id).unwrap().unwrap();
    let (sealed_new, sealed_chunks) = new_bytes(&sm(s1.manifest), &sm(s2.manifest));
    assert!(plain_new > 0 && plain_new < v1.len() as u64 / 10);
    assert_eq!(sealed_chunks, chunks);
    assert_eq!(sealed_new, plain_new + (chunks * SEAL_OVERHEAD) as u64);
    let opened = leaf.open(&store, &s2).unwrap();
    assert_eq!(read(&opened.view(&store), opened.manifest()), v2);
}
