//! The conformance suite every [`Store`] implementation must pass.
//!
//! An implementation's tests call [`run_all`] with a [`Harness`] that makes
//! fresh stores and "crashes" them (MemStore: drop unsynced writes; RocksDB:
//! close and reopen — real SIGKILL is tested separately in ferry-store).
//! Each check panics with a message naming the rule that broke.

use ferry_chunk::{ChunkId, ChunkSpan, Manifest, ManifestBuilder, ManifestId};

use super::{Batch, Cf, PutOutcome, Store, StoreError};

/// Makes stores for the suite.
pub trait Harness {
    type S: Store;
    /// A new, empty store, with an optional quota in bytes.
    fn create(&mut self, quota: Option<u64>) -> Self::S;
    /// The store as it is after a crash (or a close and reopen).
    fn crash(&mut self, store: Self::S) -> Self::S;
}

/// Runs every check.
pub fn run_all<H: Harness>(harness: &mut H) {
    chunks_round_trip(harness);
    checked_put_refuses_mismatched_bytes(harness);
    manifests_round_trip_and_delete(harness);
    batches_are_atomic_and_scans_ordered(harness);
    synced_writes_survive_a_crash(harness);
    quota_refuses_with_full_and_changes_nothing(harness);
}

fn bytes(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

fn manifest_of(chunks: &[Vec<u8>]) -> Manifest {
    let mut builder = ManifestBuilder::new();
    let mut offset = 0;
    for chunk in chunks {
        let span = ChunkSpan {
            offset,
            len: chunk.len() as u32,
            id: ChunkId::of(chunk),
        };
        builder
            .push(span, chunk)
            .expect("spans are pushed in order");
        offset += chunk.len() as u64;
    }
    builder.finish()
}

pub fn chunks_round_trip<H: Harness>(harness: &mut H) {
    let mut store = harness.create(None);
    let data = bytes(1, 5000);
    let id = ChunkId::of(&data);
    assert!(
        !store.has_chunk(id).unwrap(),
        "an empty store has no chunks"
    );
    assert_eq!(store.get_chunk(id).unwrap(), None);
    assert_eq!(store.put_chunk(id, &data).unwrap(), PutOutcome::Stored);
    assert_eq!(
        store.put_chunk(id, &data).unwrap(),
        PutOutcome::AlreadyPresent,
        "a second put is deduplicated"
    );
    assert!(
        store.has_chunk(id).unwrap(),
        "a put chunk is visible before sync"
    );
    assert_eq!(store.chunk_len(id).unwrap(), Some(5000));
    assert_eq!(store.chunk_len(ChunkId::of(b"absent")).unwrap(), None);
    assert_eq!(store.get_chunk(id).unwrap().as_deref(), Some(&data[..]));
}

pub fn checked_put_refuses_mismatched_bytes<H: Harness>(harness: &mut H) {
    let mut store = harness.create(None);
    let claimed = ChunkId::of(b"promised");
    let err = store.put_chunk_checked(claimed, b"delivered").unwrap_err();
    assert!(
        matches!(err, StoreError::ChunkMismatch { expected, .. } if expected == claimed),
        "{err}"
    );
    assert!(
        !store.has_chunk(claimed).unwrap(),
        "a mismatched chunk must not be stored"
    );
}

pub fn manifests_round_trip_and_delete<H: Harness>(harness: &mut H) {
    let mut store = harness.create(None);
    let manifest = manifest_of(&[bytes(2, 100), bytes(3, 200)]);
    let id = store.put_manifest(&manifest).unwrap();
    assert_eq!(
        id,
        ManifestId::of_encoding(&manifest.encode()),
        "a manifest is named by the hash of its encoding"
    );
    assert_eq!(store.get_manifest(id).unwrap().as_ref(), Some(&manifest));
    store.delete_manifest(id).unwrap();
    assert_eq!(
        store.get_manifest(id).unwrap(),
        None,
        "a deleted manifest is gone"
    );
}

pub fn batches_are_atomic_and_scans_ordered<H: Harness>(harness: &mut H) {
    let mut store = harness.create(None);
    let mut batch = Batch::new();
    for key in ["t/3", "t/1", "u/1", "t/2"] {
        batch.put(Cf::Timers, key, key.as_bytes().to_vec());
    }
    batch.put(Cf::Bundles, "t/9", "other family");
    store.write(&batch).unwrap();
    let keys: Vec<Vec<u8>> = store
        .scan_prefix(Cf::Timers, b"t/")
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        keys,
        [b"t/1".to_vec(), b"t/2".to_vec(), b"t/3".to_vec()],
        "scan is by prefix, in key order, one family"
    );
    let mut batch = Batch::new();
    batch
        .delete(Cf::Timers, "t/1")
        .put(Cf::Timers, "t/2", "new");
    store.write(&batch).unwrap();
    assert_eq!(store.get(Cf::Timers, b"t/1").unwrap(), None);
    assert_eq!(
        store.get(Cf::Timers, b"t/2").unwrap().as_deref(),
        Some(&b"new"[..])
    );
    assert_eq!(
        store.get(Cf::Bundles, b"t/9").unwrap().as_deref(),
        Some(&b"other family"[..])
    );
}

pub fn synced_writes_survive_a_crash<H: Harness>(harness: &mut H) {
    let mut store = harness.create(None);
    let chunks = [bytes(4, 3000), bytes(5, 7000)];
    for chunk in &chunks {
        store.put_chunk(ChunkId::of(chunk), chunk).unwrap();
    }
    let manifest = store.put_manifest(&manifest_of(&chunks)).unwrap();
    let mut batch = Batch::new();
    batch.put(Cf::Custody, "bundle", manifest.as_bytes().to_vec());
    store.write_synced(&batch).unwrap();
    let late = bytes(6, 100);
    store.put_chunk(ChunkId::of(&late), &late).unwrap();
    store.sync().unwrap();

    let store = harness.crash(store);
    for chunk in chunks.iter().chain([&late]) {
        assert_eq!(
            store.get_chunk(ChunkId::of(chunk)).unwrap().as_deref(),
            Some(&chunk[..]),
            "a chunk written before write_synced/sync must survive a crash"
        );
    }
    assert!(
        store.get_manifest(manifest).unwrap().is_some(),
        "a synced manifest must survive a crash"
    );
    assert_eq!(
        store.get(Cf::Custody, b"bundle").unwrap().as_deref(),
        Some(manifest.as_bytes().as_slice()),
        "a write_synced batch must survive a crash"
    );
}

pub fn quota_refuses_with_full_and_changes_nothing<H: Harness>(harness: &mut H) {
    let probe = harness.create(None);
    let base = probe.usage().bytes;
    drop(probe);
    let quota = base + 100_000;
    let mut store = harness.create(Some(quota));
    assert_eq!(store.usage().quota, Some(quota));
    let mut stored = Vec::new();
    let refused = loop {
        let data = bytes(stored.len() as u8, 16_000 + stored.len());
        let id = ChunkId::of(&data);
        match store.put_chunk(id, &data) {
            Ok(_) => stored.push((id, data)),
            Err(StoreError::Full { quota: q, .. }) => {
                assert_eq!(q, quota);
                break id;
            }
            Err(e) => panic!("expected StoreError::Full, got {e}"),
        }
        assert!(
            stored.len() < 50,
            "a quota of {quota} bytes never refused a write"
        );
    };
    assert!(!stored.is_empty(), "writes under the quota must succeed");
    assert!(
        !store.has_chunk(refused).unwrap(),
        "a refused chunk must not be stored"
    );
    assert!(
        store.usage().bytes <= quota,
        "usage must stay within the quota"
    );
    for (id, data) in &stored {
        assert_eq!(store.get_chunk(*id).unwrap().as_deref(), Some(&data[..]));
    }
}
