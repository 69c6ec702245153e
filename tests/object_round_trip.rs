//! An object chunked into a RocksDB store comes back out bit for bit, verified
//! against its native digest, across a reopen of the store.

use ferry_chunk::{Chunker, ChunkerConfig, ManifestBuilder, NativeDigest, Reassembler};
use ferry_store::{RocksStore, StoreConfig};
use rand::{RngCore, SeedableRng};

#[test]
fn object_survives_store_reopen_and_verifies_its_sha256() {
    let mut data = vec![0u8; 3 << 20];
    rand_chacha::ChaCha8Rng::seed_from_u64(7).fill_bytes(&mut data);
    let dir = tempfile::tempdir().unwrap();
    let chunker = Chunker::new(ChunkerConfig::default()).unwrap();

    let manifest_id = {
        let store = RocksStore::open(dir.path(), StoreConfig::default()).unwrap();
        let mut builder = ManifestBuilder::new();
        for span in chunker.chunk_slice(&data) {
            let bytes = &data[span.offset as usize..span.end() as usize];
            store.put_chunk(span.id, bytes).unwrap();
            builder.push(span, bytes).unwrap();
        }
        let manifest = builder
            .finish()
            .with_native_digest(NativeDigest::sha256_of(&data));
        let id = store.put_manifest(&manifest).unwrap();
        store.sync().unwrap();
        id
    };

    let store = RocksStore::open(dir.path(), StoreConfig::default()).unwrap();
    let manifest = store
        .get_manifest(manifest_id)
        .unwrap()
        .expect("manifest survives reopen");
    let mut out = Reassembler::new(&manifest, Vec::new());
    for id in manifest.entries().iter().map(|entry| entry.id) {
        out.push(&store.get_chunk(id).unwrap().expect("chunk survives reopen"))
            .unwrap();
    }
    assert!(out.finish().unwrap() == data);
}

#[test]
fn reassembly_refuses_an_object_whose_digest_does_not_match() {
    let data = b"the object the publisher meant".repeat(1000);
    let chunker = Chunker::new(ChunkerConfig::default()).unwrap();
    let mut builder = ManifestBuilder::new();
    let spans = chunker.chunk_slice(&data);
    for span in &spans {
        builder
            .push(*span, &data[span.offset as usize..span.end() as usize])
            .unwrap();
    }
    let manifest = builder
        .finish()
        .with_native_digest(NativeDigest::sha256_of(b"another object"));
    let mut out = Reassembler::new(&manifest, Vec::new());
    for span in &spans {
        out.push(&data[span.offset as usize..span.end() as usize])
            .unwrap();
    }
    assert!(
        out.finish().is_err(),
        "a digest mismatch must fail reassembly"
    );
}
