//! Behaviour of the RocksDB store: chunks, manifests, records, quota, corruption and GC.

use ferry_chunk::{ChunkId, Chunker, ChunkerConfig, ManifestBuilder};
use ferry_core::Store as _;
use ferry_store::{Batch, Cf, PutOutcome, RocksStore, StoreConfig, StoreError};
use rand::{RngCore, SeedableRng};

fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    rand_chacha::ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut bytes);
    bytes
}

fn open(dir: &std::path::Path) -> RocksStore {
    RocksStore::open(dir, StoreConfig::default()).unwrap()
}

/// Stores `data` as chunks plus a manifest; returns the manifest id.
fn store_object(store: &RocksStore, data: &[u8]) -> ferry_chunk::ManifestId {
    let chunker = Chunker::new(ChunkerConfig::default()).unwrap();
    let mut builder = ManifestBuilder::new();
    for span in chunker.chunk_slice(data) {
        let bytes = &data[span.offset as usize..][..span.len as usize];
        store.put_chunk(span.id, bytes).unwrap();
        builder.push(span, bytes).unwrap();
    }
    store.put_manifest(&builder.finish()).unwrap()
}

#[test]
fn chunk_round_trips_and_second_put_is_deduplicated() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let data = random_bytes(1, 20_000);
    let id = ChunkId::of(&data);
    assert!(!store.has_chunk(id).unwrap());
    assert_eq!(store.put_chunk(id, &data).unwrap(), PutOutcome::Stored);
    assert_eq!(
        store.put_chunk(id, &data).unwrap(),
        PutOutcome::AlreadyPresent
    );
    assert!(store.has_chunk(id).unwrap());
    assert_eq!(store.get_chunk(id).unwrap().unwrap(), data);
}

#[test]
fn synced_chunks_and_records_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let data = random_bytes(2, 300_000);
    let manifest = {
        let store = open(dir.path());
        let id = store_object(&store, &data);
        let mut batch = Batch::new();
        batch.put(Cf::Bundles, b"bundle-1".to_vec(), id.as_bytes().to_vec());
        store.write_synced(&batch).unwrap();
        id
    };
    let store = open(dir.path());
    assert_eq!(
        store.get(Cf::Bundles, b"bundle-1").unwrap().unwrap(),
        manifest.as_bytes()
    );
    let manifest = store.get_manifest(manifest).unwrap().unwrap();
    let mut rebuilt = Vec::new();
    for id in manifest.entries().iter().map(|entry| entry.id) {
        rebuilt.extend(store.get_chunk(id).unwrap().unwrap());
    }
    assert_eq!(rebuilt, data);
}

/// Writes never synced are not promised to survive a crash, but a store
/// closed in good order keeps them (its WAL buffer is written at close).
#[test]
fn unsynced_writes_survive_a_clean_close() {
    let dir = tempfile::tempdir().unwrap();
    let data = random_bytes(4, 5000);
    let id = ChunkId::of(&data);
    {
        let store = open(dir.path());
        store.put_chunk(id, &data).unwrap();
        let mut batch = Batch::new();
        batch.put(Cf::Bundles, b"unsynced".to_vec(), b"kept".to_vec());
        store.write(&batch).unwrap();
    }
    let store = open(dir.path());
    assert_eq!(
        store.get(Cf::Bundles, b"unsynced").unwrap().unwrap(),
        b"kept"
    );
    assert_eq!(store.get_chunk(id).unwrap().unwrap(), data);
}

#[test]
fn checked_put_refuses_bytes_that_do_not_match_their_id() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    let claimed = ChunkId::of(b"what the peer promised");
    let err = store
        .put_chunk_checked(claimed, b"what the peer sent")
        .unwrap_err();
    assert!(
        matches!(err, StoreError::ChunkMismatch { expected, .. } if expected == claimed),
        "{err}"
    );
    assert!(!store.has_chunk(claimed).unwrap());
}

#[test]
fn chunk_corrupted_on_disk_is_reported_not_returned() {
    let dir = tempfile::tempdir().unwrap();
    // A recognisable body, so the test can find it in the blob file.
    let mut data = random_bytes(3, 8192);
    data[..16].copy_from_slice(b"FERRY-CORRUPT-ME");
    let id = ChunkId::of(&data);
    {
        let store = open(dir.path());
        store.put_chunk(id, &data).unwrap();
        store.sync().unwrap();
    }
    let mut flipped = 0;
    let packs = dir.path().join("packs");
    let files = std::fs::read_dir(dir.path())
        .unwrap()
        .chain(std::fs::read_dir(&packs).unwrap());
    for entry in files {
        let path = entry.unwrap().path();
        if path.is_dir() {
            continue;
        }
        let mut bytes = std::fs::read(&path).unwrap();
        if let Some(at) = bytes.windows(16).position(|w| w == b"FERRY-CORRUPT-ME") {
            bytes[at + 100] ^= 0x55;
            std::fs::write(&path, bytes).unwrap();
            flipped += 1;
        }
    }
    assert_eq!(flipped, 1, "the chunk body should be in exactly one file");
    let store = open(dir.path());
    // Read for sending, unverified: the bytes as they are (the peer checks
    // them); nothing is discarded yet.
    let sent = store.get_chunk_unverified(id).unwrap().unwrap();
    assert_eq!(sent.len(), data.len());
    assert_ne!(sent, data);
    assert!(store.has_chunk(id).unwrap());
    let err = store.get_chunk(id).unwrap_err();
    assert!(
        matches!(err, StoreError::CorruptChunk { id: bad, .. } if bad == id),
        "{err}"
    );
    // The corrupt copy is gone, so the chunk will be wanted again.
    assert!(!store.has_chunk(id).unwrap());
}

#[test]
fn quota_refuses_writes_with_full_and_keeps_what_fit() {
    let dir = tempfile::tempdir().unwrap();
    let base = open(dir.path()).usage().bytes;
    let quota = base + 200_000;
    let store = RocksStore::open(
        dir.path(),
        StoreConfig {
            quota_bytes: Some(quota),
            ..StoreConfig::default()
        },
    )
    .unwrap();
    let mut stored = Vec::new();
    let err = loop {
        let data = random_bytes(100 + stored.len() as u64, 16_384);
        let id = ChunkId::of(&data);
        match store.put_chunk(id, &data) {
            Ok(_) => stored.push((id, data)),
            Err(e) => break (e, id),
        }
        assert!(
            stored.len() < 100,
            "quota of {quota} bytes never refused a write"
        );
    };
    let (err, refused) = err;
    assert!(
        matches!(err, StoreError::Full { quota: q, .. } if q == quota),
        "{err}"
    );
    assert!(!stored.is_empty());
    assert!(store.usage().bytes <= quota);
    assert!(
        !store.has_chunk(refused).unwrap(),
        "a refused chunk must not be stored"
    );
    for (id, data) in &stored {
        assert_eq!(&store.get_chunk(*id).unwrap().unwrap(), data);
    }
}

#[test]
fn gc_frees_chunks_of_deleted_manifests_and_keeps_live_ones() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    let shared = random_bytes(10, 1 << 20);
    let mut old = shared.clone();
    old.extend(random_bytes(11, 4 << 20));
    let mut new = shared.clone();
    new.extend(random_bytes(12, 256 << 10));
    let old_id = store_object(&store, &old);
    let new_id = store_object(&store, &new);
    store.sync().unwrap();
    let new_manifest = store.get_manifest(new_id).unwrap().unwrap();

    store.delete_manifest(old_id).unwrap();
    let report = store.gc().unwrap();
    assert_eq!(report.live_manifests, 1);
    assert!(report.chunks_freed > 0);
    assert!(
        report.bytes_after + (3 << 20) < report.bytes_before,
        "GC should reclaim the ~4 MiB only the old object used: {report:?}"
    );
    for id in new_manifest.entries().iter().map(|entry| entry.id) {
        assert!(
            store.get_chunk(id).unwrap().is_some(),
            "live chunk {id} was collected"
        );
    }
    drop(store);
    let store = open(dir.path());
    for id in new_manifest.entries().iter().map(|entry| entry.id) {
        assert!(
            store.get_chunk(id).unwrap().is_some(),
            "live chunk {id} lost after GC and reopen"
        );
    }
}

#[test]
fn scan_prefix_returns_matching_records_in_key_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut batch = Batch::new();
    for key in ["timer/0003", "timer/0001", "peer/x", "timer/0002"] {
        batch.put(Cf::Timers, key.as_bytes().to_vec(), b"v".to_vec());
    }
    store.write(&batch).unwrap();
    let keys: Vec<_> = store
        .scan_prefix(Cf::Timers, b"timer/")
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, [&b"timer/0001"[..], b"timer/0002", b"timer/0003"]);
}

#[test]
fn store_under_a_file_fails_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let err = RocksStore::open(file.join("store"), StoreConfig::default()).unwrap_err();
    assert!(err.to_string().contains("not-a-dir"), "{err}");
}

/// The write-ahead log is preallocated at 1.1 times the largest memtable of
/// any column family. RocksDB's own `default` family is unused, and it must not
/// set that size: at RocksDB's 64 MiB default, the first write after every open
/// fallocated 64 MiB, which on tmpfs took tens of milliseconds and the memory besides.
#[test]
fn the_write_ahead_log_is_preallocated_for_the_chunk_index_not_more() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let data = random_bytes(9, 20_000);
    store.put_chunk(ChunkId::of(&data), &data).unwrap();
    store.sync().unwrap();
    let logs: Vec<(String, u64)> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.file_name().to_string_lossy().ends_with(".log"))
        .map(|entry| {
            let allocated = entry.metadata().unwrap().blocks() * 512;
            (entry.file_name().to_string_lossy().into_owned(), allocated)
        })
        .collect();
    assert!(!logs.is_empty(), "no write-ahead log in {:?}", dir.path());
    let limit = StoreConfig::default().chunk_write_buffer as u64 * 2;
    for (name, allocated) in logs {
        assert!(
            allocated <= limit,
            "{name} has {allocated} bytes allocated; the chunk index needs at most {limit}"
        );
    }
}
