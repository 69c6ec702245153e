//! `MemStore`: the in-memory [`Store`] with exact crash semantics, for the
//! simulator and the engine's tests.
//!
//! Every write lands in the live state at once and is queued as pending;
//! `sync` applies the pending queue to the durable state. [`MemStore::crash`]
//! throws the live state away and restarts from the durable one, which is
//! exactly what survives a power cut under the store contract.
//! [`MemStore::crash_partially`] models a kinder crash in which some unsynced
//! writes reached the disk anyway: a prefix of the logged writes, and any
//! subset of chunks. The engine must be correct under both.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use ferry_chunk::{ChunkId, Manifest, ManifestId};

use crate::store::{Batch, BatchOp, Cf, PutOutcome, Records, Store, StoreError, Usage};

#[derive(Debug, Clone, Default)]
struct State {
    chunks: BTreeMap<ChunkId, Arc<[u8]>>,
    manifests: BTreeMap<ManifestId, Arc<[u8]>>,
    records: BTreeMap<(Cf, Vec<u8>), Vec<u8>>,
    bytes: u64,
    /// Chunks whose stored bytes no longer match their id (see
    /// `corrupt_chunk`), so `has_chunk` need not hash every chunk it checks.
    corrupt: BTreeSet<ChunkId>,
}

#[derive(Debug, Clone)]
enum Pending {
    Chunk(ChunkId, Arc<[u8]>),
    /// A logged write: applied in order, so a crash keeps a prefix of these.
    Logged(Logged),
}

#[derive(Debug, Clone)]
enum Logged {
    PutManifest(ManifestId, Arc<[u8]>),
    DeleteManifest(ManifestId),
    Batch(Vec<BatchOp>),
}

impl State {
    fn apply(&mut self, pending: &Pending) {
        match pending {
            Pending::Chunk(id, bytes) => {
                self.corrupt.remove(id);
                match self.chunks.insert(*id, bytes.clone()) {
                    None => self.bytes += bytes.len() as u64,
                    Some(old) => self.bytes = self.bytes - old.len() as u64 + bytes.len() as u64,
                }
            }
            Pending::Logged(Logged::PutManifest(id, bytes)) => {
                if self.manifests.insert(*id, bytes.clone()).is_none() {
                    self.bytes += bytes.len() as u64;
                }
            }
            Pending::Logged(Logged::DeleteManifest(id)) => {
                if let Some(old) = self.manifests.remove(id) {
                    self.bytes -= old.len() as u64;
                }
            }
            Pending::Logged(Logged::Batch(ops)) => {
                for op in ops {
                    match op {
                        BatchOp::Put(cf, k, v) => {
                            self.bytes += (k.len() + v.len()) as u64;
                            if let Some(old) = self.records.insert((*cf, k.clone()), v.clone()) {
                                self.bytes -= (k.len() + old.len()) as u64;
                            }
                        }
                        BatchOp::Delete(cf, k) => {
                            if let Some(old) = self.records.remove(&(*cf, k.clone())) {
                                self.bytes -= (k.len() + old.len()) as u64;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Chunk bodies shared by many stores in one process: a simulation of a
/// thousand nodes holding the same release keeps its bytes once. Only
/// memory is shared; each store keeps its own index, quota and crash state.
#[derive(Debug, Clone, Default)]
pub struct ChunkPool(Arc<Mutex<BTreeMap<ChunkId, Arc<[u8]>>>>);

impl ChunkPool {
    pub fn new() -> Self {
        Self::default()
    }

    /// The shared copy of chunk `id`, made from `data` if there is none.
    fn intern(&self, id: ChunkId, data: &[u8]) -> Arc<[u8]> {
        let mut chunks = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        chunks.entry(id).or_insert_with(|| data.into()).clone()
    }

    /// Distinct chunks held.
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A count kept behind `&self` (a clone starts from the same number).
#[derive(Debug, Default)]
struct Counter(AtomicU64);

impl Clone for Counter {
    fn clone(&self) -> Self {
        Counter(AtomicU64::new(self.0.load(Ordering::Relaxed)))
    }
}

/// In-memory store; see the module docs for its crash semantics.
#[derive(Debug, Clone, Default)]
pub struct MemStore {
    live: State,
    durable: State,
    pending: Vec<Pending>,
    quota: Option<u64>,
    syncs: u64,
    /// Manifests read and decoded, for tests of what the engine reads.
    manifest_reads: Counter,
    pool: Option<ChunkPool>,
}

impl MemStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_quota(quota: u64) -> Self {
        Self {
            quota: Some(quota),
            ..Self::default()
        }
    }

    /// Keeps chunk bodies in `pool`, shared with the other stores using it.
    pub fn with_pool(mut self, pool: ChunkPool) -> Self {
        self.pool = Some(pool);
        self
    }

    /// A power cut: everything not synced is lost.
    pub fn crash(&mut self) {
        self.live = self.durable.clone();
        self.pending.clear();
    }

    /// A crash in which some unsynced writes survived: logged writes survive
    /// as a prefix (the log is ordered), chunks independently. `keep` is asked
    /// once per pending write, in order; after the first logged write it
    /// refuses, no later logged write survives.
    pub fn crash_partially(&mut self, mut keep: impl FnMut() -> bool) {
        let mut log_intact = true;
        for pending in std::mem::take(&mut self.pending) {
            let survives = match &pending {
                Pending::Chunk(..) => keep(),
                Pending::Logged(_) => {
                    log_intact = log_intact && keep();
                    log_intact
                }
            };
            if survives {
                self.durable.apply(&pending);
            }
        }
        self.live = self.durable.clone();
    }

    /// Writes that a crash would lose right now.
    pub fn unsynced_writes(&self) -> usize {
        self.pending.len()
    }

    /// How many times a manifest was read (and decoded) from this store.
    pub fn manifest_reads(&self) -> u64 {
        self.manifest_reads.0.load(Ordering::Relaxed)
    }

    /// How many syncs reached the "disk" (each is an fsync in a real store).
    pub fn sync_count(&self) -> u64 {
        self.syncs
    }

    /// Flips a byte of a stored chunk, live and durable, as disk corruption would.
    pub fn corrupt_chunk(&mut self, id: ChunkId) -> bool {
        let mut done = false;
        for state in [&mut self.live, &mut self.durable] {
            if let Some(bytes) = state.chunks.get_mut(&id) {
                let mut copy = bytes.to_vec();
                copy[0] ^= 0xff;
                *bytes = copy.into();
                state.corrupt.insert(id);
                done = true;
            }
        }
        done
    }

    fn reserve(&self, bytes: u64) -> Result<(), StoreError> {
        match self.quota {
            Some(quota) if self.live.bytes + bytes > quota => Err(StoreError::Full {
                needed: bytes,
                used: self.live.bytes,
                quota,
            }),
            _ => Ok(()),
        }
    }

    fn push(&mut self, pending: Pending) {
        self.live.apply(&pending);
        self.pending.push(pending);
    }
}

impl Store for MemStore {
    fn has_chunk(&self, id: ChunkId) -> Result<bool, StoreError> {
        // A corrupt copy counts as missing, so it is fetched again.
        Ok(self.live.chunks.contains_key(&id) && !self.live.corrupt.contains(&id))
    }

    fn chunk_len(&self, id: ChunkId) -> Result<Option<u32>, StoreError> {
        Ok(match self.has_chunk(id)? {
            true => self.live.chunks.get(&id).map(|bytes| bytes.len() as u32),
            false => None,
        })
    }

    fn get_chunk(&self, id: ChunkId) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(bytes) = self.live.chunks.get(&id) else {
            return Ok(None);
        };
        // Stored bytes match their id unless `corrupt_chunk` changed them
        // (put_chunk takes ids its caller computed), so only those are
        // hashed again: a simulated relay reads each chunk once per
        // neighbour it serves.
        if !self.live.corrupt.contains(&id) {
            return Ok(Some(bytes.to_vec()));
        }
        Err(StoreError::CorruptChunk {
            id,
            detail: format!("its bytes hash to {}", ChunkId::of(bytes)),
        })
    }

    /// What is held, corrupt or not (as a disk read would return it).
    fn get_chunk_unverified(&self, id: ChunkId) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.live.chunks.get(&id).map(|bytes| bytes.to_vec()))
    }

    fn put_chunk(&mut self, id: ChunkId, data: &[u8]) -> Result<PutOutcome, StoreError> {
        debug_assert_eq!(ChunkId::of(data), id, "put_chunk called with a wrong id");
        if self.has_chunk(id)? {
            return Ok(PutOutcome::AlreadyPresent);
        }
        // A corrupt copy, if any, is replaced: account only for new bytes.
        if !self.live.chunks.contains_key(&id) {
            self.reserve(data.len() as u64)?;
        }
        let bytes = match &self.pool {
            // The pool's copy of an id has that id's bytes (it was checked
            // when first put), so sharing it changes nothing a reader sees.
            Some(pool) => pool.intern(id, data),
            None => data.into(),
        };
        self.push(Pending::Chunk(id, bytes));
        Ok(PutOutcome::Stored)
    }

    fn put_manifest(&mut self, manifest: &Manifest) -> Result<ManifestId, StoreError> {
        let bytes = manifest.encode();
        let id = ManifestId::of_encoding(&bytes);
        if !self.live.manifests.contains_key(&id) {
            self.reserve(bytes.len() as u64)?;
            self.push(Pending::Logged(Logged::PutManifest(id, bytes.into())));
        }
        Ok(id)
    }

    fn get_manifest(&self, id: ManifestId) -> Result<Option<Manifest>, StoreError> {
        self.manifest_reads.0.fetch_add(1, Ordering::Relaxed);
        let Some(bytes) = self.live.manifests.get(&id) else {
            return Ok(None);
        };
        Manifest::decode(bytes)
            .map(Some)
            .map_err(|e| StoreError::CorruptManifest {
                id,
                detail: e.to_string(),
            })
    }

    fn delete_manifest(&mut self, id: ManifestId) -> Result<(), StoreError> {
        self.push(Pending::Logged(Logged::DeleteManifest(id)));
        Ok(())
    }

    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.live.records.get(&(cf, key.to_vec())).cloned())
    }

    fn scan_prefix(&self, cf: Cf, prefix: &[u8]) -> Result<Records, StoreError> {
        Ok(self
            .live
            .records
            .range((cf, prefix.to_vec())..)
            .take_while(|((c, k), _)| *c == cf && k.starts_with(prefix))
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect())
    }

    fn write(&mut self, batch: &Batch) -> Result<(), StoreError> {
        if !batch.is_empty() {
            self.push(Pending::Logged(Logged::Batch(batch.ops().to_vec())));
        }
        Ok(())
    }

    fn write_synced(&mut self, batch: &Batch) -> Result<(), StoreError> {
        self.write(batch)?;
        self.sync()
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        for pending in std::mem::take(&mut self.pending) {
            self.durable.apply(&pending);
        }
        self.syncs += 1;
        Ok(())
    }

    fn usage(&self) -> Usage {
        Usage {
            bytes: self.live.bytes,
            quota: self.quota,
        }
    }
}
