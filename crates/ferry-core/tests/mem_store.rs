//! MemStore passes the store conformance suite and keeps exactly what was synced.

use ferry_chunk::ChunkId;
use ferry_core::mem_store::ChunkPool;
use ferry_core::store::conformance::{self, Harness};
use ferry_core::{Batch, Cf, MemStore, Store};

struct Mem;

impl Harness for Mem {
    type S = MemStore;
    fn create(&mut self, quota: Option<u64>) -> MemStore {
        quota.map_or_else(MemStore::new, MemStore::with_quota)
    }
    fn crash(&mut self, mut store: MemStore) -> MemStore {
        store.crash();
        store
    }
}

#[test]
fn mem_store_passes_the_conformance_suite() {
    conformance::run_all(&mut Mem);
}

/// Stores sharing a chunk pool behave as separate stores in every respect.
struct Pooled(ChunkPool);

impl Harness for Pooled {
    type S = MemStore;
    fn create(&mut self, quota: Option<u64>) -> MemStore {
        quota
            .map_or_else(MemStore::new, MemStore::with_quota)
            .with_pool(self.0.clone())
    }
    fn crash(&mut self, mut store: MemStore) -> MemStore {
        store.crash();
        store
    }
}

#[test]
fn pooled_mem_store_passes_the_conformance_suite() {
    conformance::run_all(&mut Pooled(ChunkPool::new()));
}

#[test]
fn stores_sharing_a_pool_keep_one_copy_but_their_own_crash_state_and_corruption() {
    let pool = ChunkPool::new();
    let mut a = MemStore::new().with_pool(pool.clone());
    let mut b = MemStore::new().with_pool(pool.clone());
    let id = ChunkId::of(b"shared chunk");
    a.put_chunk(id, b"shared chunk").unwrap();
    a.sync().unwrap();
    b.put_chunk(id, b"shared chunk").unwrap();
    assert_eq!(pool.len(), 1, "one copy of the bytes");
    b.crash();
    assert!(!b.has_chunk(id).unwrap(), "b never synced it");
    assert!(a.has_chunk(id).unwrap());
    a.corrupt_chunk(id);
    b.put_chunk(id, b"shared chunk").unwrap();
    assert_eq!(b.get_chunk(id).unwrap().unwrap(), b"shared chunk");
    assert!(a.get_chunk(id).is_err(), "corruption stays in a");
}

#[test]
fn a_corrupted_chunk_stays_reported_across_a_crash() {
    // get_chunk re-hashes only chunks known to be corrupt: that knowledge
    // must survive a crash with the durable bytes it describes.
    let mut store = MemStore::new();
    let id = ChunkId::of(b"durable chunk");
    store.put_chunk(id, b"durable chunk").unwrap();
    store.sync().unwrap();
    assert!(store.corrupt_chunk(id));
    store.crash();
    assert!(store.get_chunk(id).is_err());
    assert!(!store.has_chunk(id).unwrap());
}

#[test]
fn crash_loses_exactly_the_unsynced_writes() {
    let mut store = MemStore::new();
    let kept = ChunkId::of(b"synced");
    store.put_chunk(kept, b"synced").unwrap();
    store.sync().unwrap();
    let lost = ChunkId::of(b"unsynced");
    store.put_chunk(lost, b"unsynced").unwrap();
    let mut batch = Batch::new();
    batch.put(Cf::Meta, "k", "v");
    store.write(&batch).unwrap();
    assert_eq!(store.unsynced_writes(), 2);
    store.crash();
    assert!(store.has_chunk(kept).unwrap());
    assert!(!store.has_chunk(lost).unwrap());
    assert_eq!(store.get(Cf::Meta, b"k").unwrap(), None);
}

#[test]
fn partial_crash_keeps_a_prefix_of_logged_writes() {
    let mut store = MemStore::new();
    for key in ["a", "b", "c"] {
        let mut batch = Batch::new();
        batch.put(Cf::Meta, key, "v");
        store.write(&batch).unwrap();
    }
    let mut answers = [true, false, true].into_iter();
    store.crash_partially(|| answers.next().unwrap());
    assert!(store.get(Cf::Meta, b"a").unwrap().is_some());
    assert!(store.get(Cf::Meta, b"b").unwrap().is_none());
    assert!(
        store.get(Cf::Meta, b"c").unwrap().is_none(),
        "a logged write after a lost one cannot survive"
    );
}

#[test]
fn corrupt_chunk_is_reported_then_counts_as_missing_and_is_replaced() {
    let mut store = MemStore::new();
    let id = ChunkId::of(b"payload");
    store.put_chunk(id, b"payload").unwrap();
    assert!(store.corrupt_chunk(id));
    assert!(store.get_chunk(id).is_err());
    assert!(!store.has_chunk(id).unwrap());
    store.put_chunk(id, b"payload").unwrap();
    assert_eq!(
        store.get_chunk(id).unwrap().as_deref(),
        Some(&b"payload"[..])
    );
}
