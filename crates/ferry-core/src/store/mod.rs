//! The engine's storage contract: a synchronous trait, its vocabulary
//! (column families, batches, errors) and the durability rules every
//! implementation must keep.
//!
//! Durability contract (checked by [`conformance`]):
//! - `put_chunk`, `put_manifest`, `delete_manifest` and `write` are durable
//!   only after the next `sync` or `write_synced`; a crash may drop them.
//! - `sync` makes every earlier write durable. `write_synced` makes every
//!   earlier write durable and then applies its batch durably.
//! - Reads return only verified data: a chunk whose bytes do not hash to its
//!   id is reported as [`StoreError::CorruptChunk`], and from then on
//!   `has_chunk` reports it missing, so it is fetched again and `put_chunk`
//!   replaces it.
//! - A write that would exceed the quota fails with [`StoreError::Full`] and
//!   changes nothing.

use ferry_chunk::{ChunkId, Manifest, ManifestId};

pub mod conformance;

/// One keyspace per concern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Cf {
    /// Chunk id → chunk bytes (written with `put_chunk`, never in a batch).
    Chunks,
    /// Manifest id → encoded manifest. A stored manifest keeps its chunks alive.
    Manifests,
    /// Bundle id → bundle header and state.
    Bundles,
    /// Custody records: what this node holds custody of, and for whom.
    Custody,
    /// Retransmission and expiry timers, keyed by deadline.
    Timers,
    /// Per-peer knowledge: what each neighbour is known to hold.
    Peers,
    /// Node metadata: identity, sequence counters, schema version.
    Meta,
}

impl Cf {
    pub const ALL: [Cf; 7] = [
        Cf::Chunks,
        Cf::Manifests,
        Cf::Bundles,
        Cf::Custody,
        Cf::Timers,
        Cf::Peers,
        Cf::Meta,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Cf::Chunks => "chunks",
            Cf::Manifests => "manifests",
            Cf::Bundles => "bundles",
            Cf::Custody => "custody",
            Cf::Timers => "timers",
            Cf::Peers => "peers",
            Cf::Meta => "meta",
        }
    }
}

/// One operation of a [`Batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOp {
    Put(Cf, Vec<u8>, Vec<u8>),
    Delete(Cf, Vec<u8>),
}

/// Record puts and deletes applied atomically. Chunks are not written in batches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    ops: Vec<BatchOp>,
}

impl Batch {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `key → value` in `cf`.
    ///
    /// # Panics
    /// If `cf` is [`Cf::Chunks`]: chunks have their own, verified, write path.
    pub fn put(&mut self, cf: Cf, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> &mut Self {
        assert!(
            cf != Cf::Chunks,
            "chunks are written with Store::put_chunk, not in a batch"
        );
        self.ops.push(BatchOp::Put(cf, key.into(), value.into()));
        self
    }

    /// # Panics
    /// If `cf` is [`Cf::Chunks`]: chunks are removed by garbage collection.
    pub fn delete(&mut self, cf: Cf, key: impl Into<Vec<u8>>) -> &mut Self {
        assert!(
            cf != Cf::Chunks,
            "chunks are removed by garbage collection, not in a batch"
        );
        self.ops.push(BatchOp::Delete(cf, key.into()));
        self
    }

    pub fn ops(&self) -> &[BatchOp] {
        &self.ops
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Bytes of keys and values, for quota accounting.
    pub fn payload_bytes(&self) -> u64 {
        self.ops
            .iter()
            .map(|op| match op {
                BatchOp::Put(_, k, v) => (k.len() + v.len()) as u64,
                BatchOp::Delete(_, k) => k.len() as u64,
            })
            .sum()
    }
}

/// Whether a put added anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    Stored,
    AlreadyPresent,
}

/// Space a store takes, and its quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub bytes: u64,
    pub quota: Option<u64>,
}

/// What a store operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error(
        "store is full: writing {needed} bytes would exceed the quota of {quota} bytes ({used} used); \
         raise the quota or free space with garbage collection"
    )]
    Full { needed: u64, used: u64, quota: u64 },
    #[error("chunk {id} is corrupt on disk ({detail}); it was removed and must be fetched again")]
    CorruptChunk { id: ChunkId, detail: String },
    #[error("manifest {id} is corrupt on disk: {detail}")]
    CorruptManifest { id: ManifestId, detail: String },
    #[error("a record in column family {cf} is corrupt: {detail}")]
    CorruptRecord { cf: &'static str, detail: String },
    #[error("chunk bytes do not match their id: expected {expected}, found {found}")]
    ChunkMismatch { expected: ChunkId, found: ChunkId },
    #[error("store {op} failed: {source}")]
    Backend {
        op: &'static str,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Key-value records, as [`Store::scan_prefix`] returns them.
pub type Records = Vec<(Vec<u8>, Vec<u8>)>;

/// Synchronous storage for the engine. Reads take `&self`; writes take
/// `&mut self`, since the engine owns its store.
pub trait Store {
    fn has_chunk(&self, id: ChunkId) -> Result<bool, StoreError>;
    /// The length of chunk `id`, if held. Stores that index lengths
    /// answer without reading the chunk.
    fn chunk_len(&self, id: ChunkId) -> Result<Option<u32>, StoreError> {
        Ok(self.get_chunk(id)?.map(|bytes| bytes.len() as u32))
    }
    /// The chunk's bytes, verified against `id`.
    fn get_chunk(&self, id: ChunkId) -> Result<Option<Vec<u8>>, StoreError>;
    /// The chunk's bytes as stored, possibly not verified: for sending to a
    /// peer, which checks every chunk against its id itself. A store whose
    /// reads are cheap to check may verify anyway (the default).
    fn get_chunk_unverified(&self, id: ChunkId) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_chunk(id)
    }
    /// Stores bytes the caller has verified (or computed) to hash to `id`.
    fn put_chunk(&mut self, id: ChunkId, data: &[u8]) -> Result<PutOutcome, StoreError>;
    /// Verifies `data` against `id` first; a mismatch stores nothing.
    fn put_chunk_checked(&mut self, id: ChunkId, data: &[u8]) -> Result<PutOutcome, StoreError> {
        let found = ChunkId::of(data);
        if found != id {
            return Err(StoreError::ChunkMismatch {
                expected: id,
                found,
            });
        }
        self.put_chunk(id, data)
    }
    fn put_manifest(&mut self, manifest: &Manifest) -> Result<ManifestId, StoreError>;
    fn get_manifest(&self, id: ManifestId) -> Result<Option<Manifest>, StoreError>;
    fn delete_manifest(&mut self, id: ManifestId) -> Result<(), StoreError>;
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Records of `cf` whose key starts with `prefix`, in key order.
    fn scan_prefix(&self, cf: Cf, prefix: &[u8]) -> Result<Records, StoreError>;
    /// Applies `batch` atomically; durable after the next sync.
    fn write(&mut self, batch: &Batch) -> Result<(), StoreError>;
    /// Makes every earlier write durable, then applies `batch` durably.
    fn write_synced(&mut self, batch: &Batch) -> Result<(), StoreError>;
    /// Makes every earlier write durable.
    fn sync(&mut self) -> Result<(), StoreError>;
    fn usage(&self) -> Usage;
}
