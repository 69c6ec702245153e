//! The store itself: opening, chunk and manifest access, batches, sync and quota.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use ferry_chunk::{ChunkId, Manifest, ManifestId, ReassemblyError};
use rocksdb::{Cache, ColumnFamily, ColumnFamilyDescriptor, DB, WriteBatch};

use ferry_core::{Batch, BatchOp, Cf, PutOutcome, Records, Usage};

use crate::error::{db, io};
use crate::packs::{Location, Packs};
use crate::{OpenError, StoreConfig, StoreError};

/// Why a chunk of an object could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("missing from the store")]
    Missing,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Bytes a stored chunk costs beyond its body: its index entry in the LSM.
/// Used for quota accounting between measurements.
const CHUNK_OVERHEAD: u64 = 64;

/// A ferry store on disk. Cheap to share between threads (`&Store` is enough
/// for every operation but garbage collection).
pub struct RocksStore {
    pub(crate) db: DB,
    pub(crate) packs: Packs,
    path: PathBuf,
    config: StoreConfig,
    /// Estimated bytes on disk: measured at open and after GC, counted up in between.
    used: AtomicU64,
    /// Bumped after every write that a later sync must cover.
    written: AtomicU64,
    /// Highest `written` value known durable; the lock serialises syncs.
    durable: Mutex<u64>,
    _cache: Cache,
}

impl std::fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStore")
            .field("path", &self.path)
            .field("usage", &self.usage())
            .finish()
    }
}

impl RocksStore {
    /// Opens the store at `path`, creating it if needed. After a crash, this
    /// recovers every write that a sync covered.
    pub fn open(path: impl AsRef<Path>, config: StoreConfig) -> Result<Self, OpenError> {
        let path = path.as_ref().to_path_buf();
        std::fs::create_dir_all(&path).map_err(|source| OpenError::CreateDir {
            path: path.clone(),
            source,
        })?;
        let cache = Cache::new_lru_cache(config.block_cache);
        let families = Cf::ALL
            .map(|cf| ColumnFamilyDescriptor::new(cf.name(), config.cf_options(cf, &cache)))
            .into_iter()
            .chain([ColumnFamilyDescriptor::new(
                rocksdb::DEFAULT_COLUMN_FAMILY_NAME,
                config.unused_cf_options(),
            )]);
        let db =
            DB::open_cf_descriptors(&config.db_options(), &path, families).map_err(|source| {
                OpenError::Open {
                    path: path.clone(),
                    source,
                }
            })?;
        let packs = Packs::open(&path.join("packs")).map_err(|source| OpenError::CreateDir {
            path: path.join("packs"),
            source,
        })?;
        let used = dir_size(&path).map_err(|source| OpenError::Usage {
            path: path.clone(),
            source,
        })?;
        tracing::debug!(path = %path.display(), used, "store opened");
        Ok(Self {
            db,
            packs,
            path,
            config,
            used: AtomicU64::new(used),
            written: AtomicU64::new(0),
            durable: Mutex::new(0),
            _cache: cache,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn cf(&self, cf: Cf) -> &ColumnFamily {
        self.db
            .cf_handle(cf.name())
            .expect("every column family is created at open")
    }

    /// Stores a chunk whose id the caller computed from `data` (as the chunker
    /// does). Bytes from outside this process go through
    /// [`ferry_core::Store::put_chunk_checked`].
    /// Durable after the next [`Self::sync`].
    pub fn put_chunk(&self, id: ChunkId, data: &[u8]) -> Result<PutOutcome, StoreError> {
        debug_assert_eq!(ChunkId::of(data), id, "put_chunk called with a wrong id");
        if self.has_chunk(id)? {
            return Ok(PutOutcome::AlreadyPresent);
        }
        self.reserve(data.len() as u64 + CHUNK_OVERHEAD)?;
        let location = self.packs.append(data).map_err(io("chunk append"))?;
        self.db
            .put_cf(self.cf(Cf::Chunks), id.as_bytes(), location.encode())
            .map_err(db("chunk index put"))?;
        self.written.fetch_add(1, Ordering::SeqCst);
        Ok(PutOutcome::Stored)
    }

    fn location(&self, id: ChunkId) -> Result<Option<Location>, StoreError> {
        let cf = self.cf(Cf::Chunks);
        let Some(value) = self
            .db
            .get_pinned_cf(cf, id.as_bytes())
            .map_err(db("chunk lookup"))?
        else {
            return Ok(None);
        };
        match Location::decode(&value) {
            Some(location) => Ok(Some(location)),
            None => {
                self.discard_corrupt(id, format!("index entry of {} bytes", value.len()))?;
                Ok(None)
            }
        }
    }

    pub fn has_chunk(&self, id: ChunkId) -> Result<bool, StoreError> {
        Ok(self.location(id)?.is_some())
    }

    /// The length of chunk `id`, if held, from its index entry (the chunk
    /// is not read).
    pub fn chunk_len(&self, id: ChunkId) -> Result<Option<u32>, StoreError> {
        Ok(self.location(id)?.map(|location| location.len))
    }

    /// Writes the object `manifest` describes to `out`, every chunk and the
    /// native digest verified; nothing unverified is ever returned as whole.
    pub fn read_object<W: std::io::Write>(
        &self,
        manifest: &Manifest,
        out: W,
    ) -> Result<(), ReassemblyError<FetchError>> {
        ferry_chunk::reassemble(
            manifest,
            |id| self.get_chunk(id)?.ok_or(FetchError::Missing),
            out,
        )
    }

    /// Reads a chunk and verifies its hash. A corrupt chunk is removed (so it
    /// will be fetched again) and reported as [`StoreError::CorruptChunk`].
    pub fn get_chunk(&self, id: ChunkId) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(location) = self.location(id)? else {
            return Ok(None);
        };
        let detail = match self.packs.read(location) {
            Ok(bytes) => {
                let found = ChunkId::of(&bytes);
                if found == id {
                    return Ok(Some(bytes));
                }
                format!("its bytes hash to {found}")
            }
            // Short or missing pack: the body is gone, which is corruption too.
            Err(e) => format!(
                "pack {} unreadable at {}: {e}",
                location.pack, location.offset
            ),
        };
        self.discard_corrupt(id, detail.clone())?;
        Err(StoreError::CorruptChunk { id, detail })
    }

    /// Reads a chunk without verifying its hash: for sending it to a peer,
    /// which verifies it itself. A missing or short pack is still an error.
    pub fn get_chunk_unverified(&self, id: ChunkId) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(location) = self.location(id)? else {
            return Ok(None);
        };
        match self.packs.read(location) {
            Ok(bytes) => Ok(Some(bytes)),
            // Verified reading reports (and discards) what is unreadable.
            Err(_) => self.get_chunk(id),
        }
    }

    fn discard_corrupt(&self, id: ChunkId, detail: String) -> Result<(), StoreError> {
        tracing::warn!(chunk = %id, %detail, "corrupt chunk removed from the store");
        self.db
            .delete_cf(self.cf(Cf::Chunks), id.as_bytes())
            .map_err(db("corrupt chunk removal"))
    }

    /// Records a manifest (which keeps its chunks alive through GC). Logged,
    /// durable after the next sync; see the crate docs for ordering.
    pub fn put_manifest(&self, manifest: &Manifest) -> Result<ManifestId, StoreError> {
        let bytes = manifest.encode();
        let id = ManifestId::of_encoding(&bytes);
        let cf = self.cf(Cf::Manifests);
        if self
            .db
            .get_pinned_cf(cf, id.as_bytes())
            .map_err(db("manifest lookup"))?
            .is_none()
        {
            self.reserve(bytes.len() as u64 + 64)?;
            self.db
                .put_cf(cf, id.as_bytes(), &bytes)
                .map_err(db("manifest put"))?;
            self.written.fetch_add(1, Ordering::SeqCst);
        }
        Ok(id)
    }

    /// Reads a manifest, checking that its bytes still hash to its id.
    pub fn get_manifest(&self, id: ManifestId) -> Result<Option<Manifest>, StoreError> {
        let Some(bytes) = self
            .db
            .get_pinned_cf(self.cf(Cf::Manifests), id.as_bytes())
            .map_err(db("manifest read"))?
        else {
            return Ok(None);
        };
        let corrupt = |detail: String| StoreError::CorruptManifest { id, detail };
        let found = ManifestId::of_encoding(&bytes);
        if found != id {
            return Err(corrupt(format!("its bytes hash to {found}")));
        }
        Manifest::decode(&bytes)
            .map(Some)
            .map_err(|e| corrupt(e.to_string()))
    }

    /// Forgets a manifest; its chunks become garbage unless another manifest uses them.
    pub fn delete_manifest(&self, id: ManifestId) -> Result<(), StoreError> {
        self.db
            .delete_cf(self.cf(Cf::Manifests), id.as_bytes())
            .map_err(db("manifest delete"))?;
        self.written.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Reads one record.
    pub fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.db.get_cf(self.cf(cf), key).map_err(db("record read"))
    }

    /// Every record of `cf` whose key starts with `prefix`, in key order.
    pub fn scan_prefix(&self, cf: Cf, prefix: &[u8]) -> Result<Records, StoreError> {
        let mut out = Vec::new();
        let iter = self.db.iterator_cf(
            self.cf(cf),
            rocksdb::IteratorMode::From(prefix, rocksdb::Direction::Forward),
        );
        for item in iter {
            let (key, value) = item.map_err(db("record scan"))?;
            if !key.starts_with(prefix) {
                break;
            }
            out.push((key.into_vec(), value.into_vec()));
        }
        Ok(out)
    }

    /// Applies a batch atomically through the WAL, without waiting for disk.
    pub fn write(&self, batch: &Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut wb = WriteBatch::default();
        for op in batch.ops() {
            match op {
                BatchOp::Put(cf, k, v) => wb.put_cf(self.cf(*cf), k, v),
                BatchOp::Delete(cf, k) => wb.delete_cf(self.cf(*cf), k),
            }
        }
        self.db.write(wb).map_err(db("batch write"))?;
        self.used
            .fetch_add(batch.payload_bytes(), Ordering::Relaxed);
        self.written.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Makes every chunk written so far durable, then applies `batch` and
    /// syncs it. When this returns, the batch survives any crash.
    pub fn write_synced(&self, batch: &Batch) -> Result<(), StoreError> {
        self.flush_chunks()?;
        self.write(batch)?;
        self.sync()
    }

    /// Makes every write that returned before this call durable. Concurrent
    /// callers share one flush and one fsync.
    pub fn sync(&self) -> Result<(), StoreError> {
        let wanted = self.written.load(Ordering::SeqCst);
        let mut durable = self
            .durable
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if *durable >= wanted {
            return Ok(());
        }
        let covered = self.written.load(Ordering::SeqCst);
        self.flush_chunks()?;
        self.db.flush_wal(true).map_err(db("WAL sync"))?;
        *durable = covered;
        Ok(())
    }

    /// Makes every chunk body appended so far durable (one fdatasync).
    fn flush_chunks(&self) -> Result<(), StoreError> {
        self.packs.sync().map_err(io("pack sync"))
    }

    pub fn usage(&self) -> Usage {
        Usage {
            bytes: self.used.load(Ordering::Relaxed),
            quota: self.config.quota_bytes,
        }
    }

    /// Re-measures the store's size on disk.
    pub(crate) fn remeasure(&self) -> Result<u64, StoreError> {
        let bytes = dir_size(&self.path).map_err(|e| StoreError::Backend {
            op: "size measurement",
            source: Box::new(e),
        })?;
        self.used.store(bytes, Ordering::Relaxed);
        Ok(bytes)
    }

    /// Takes `bytes` from the quota, or fails with [`StoreError::Full`].
    fn reserve(&self, bytes: u64) -> Result<(), StoreError> {
        let Some(quota) = self.config.quota_bytes else {
            self.used.fetch_add(bytes, Ordering::Relaxed);
            return Ok(());
        };
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(bytes).filter(|&total| total <= quota)
            })
            .map(drop)
            .map_err(|used| StoreError::Full {
                needed: bytes,
                used,
                quota,
            })
    }
}

/// Bytes of every file under `path` (the store does not nest directories deeply).
/// Bytes under `path`. RocksDB deletes obsolete files (old WALs, compacted
/// tables, a previous OPTIONS file) in the background, so an entry that
/// vanishes between the listing and its `stat` counts as zero.
fn dir_size(path: &Path) -> std::io::Result<u64> {
    let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
    let mut total = 0;
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let meta = match entry.metadata() {
            Ok(meta) => meta,
            Err(e) if gone(&e) => continue,
            Err(e) => return Err(e),
        };
        total += if meta.is_dir() {
            match dir_size(&entry.path()) {
                Ok(size) => size,
                Err(e) if gone(&e) => 0,
                Err(e) => return Err(e),
            }
        } else {
            meta.len()
        };
    }
    Ok(total)
}

/// A `RocksStore` shared between threads: the engine owns one handle while
/// ingest and serving read and write through others (every `RocksStore`
/// method takes `&self`).
#[derive(Clone)]
pub struct SharedStore(pub std::sync::Arc<RocksStore>);

/// `ferry_core::Store` for a type whose `$inner` (given `$s: &Self`) is a
/// `&RocksStore`.
macro_rules! impl_store {
    ($ty:ty, $s:ident => $inner:expr) => {
        impl ferry_core::Store for $ty {
            fn has_chunk(&self, id: ChunkId) -> Result<bool, StoreError> {
                let $s = self;
                RocksStore::has_chunk($inner, id)
            }
            fn chunk_len(&self, id: ChunkId) -> Result<Option<u32>, StoreError> {
                let $s = self;
                RocksStore::chunk_len($inner, id)
            }
            fn get_chunk(&self, id: ChunkId) -> Result<Option<Vec<u8>>, StoreError> {
                let $s = self;
                RocksStore::get_chunk($inner, id)
            }
            fn get_chunk_unverified(&self, id: ChunkId) -> Result<Option<Vec<u8>>, StoreError> {
                let $s = self;
                RocksStore::get_chunk_unverified($inner, id)
            }
            fn put_chunk(&mut self, id: ChunkId, data: &[u8]) -> Result<PutOutcome, StoreError> {
                let $s = &*self;
                RocksStore::put_chunk($inner, id, data)
            }
            fn put_manifest(&mut self, manifest: &Manifest) -> Result<ManifestId, StoreError> {
                let $s = &*self;
                RocksStore::put_manifest($inner, manifest)
            }
            fn get_manifest(&self, id: ManifestId) -> Result<Option<Manifest>, StoreError> {
                let $s = self;
                RocksStore::get_manifest($inner, id)
            }
            fn delete_manifest(&mut self, id: ManifestId) -> Result<(), StoreError> {
                let $s = &*self;
                RocksStore::delete_manifest($inner, id)
            }
            fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
                let $s = self;
                RocksStore::get($inner, cf, key)
            }
            fn scan_prefix(&self, cf: Cf, prefix: &[u8]) -> Result<Records, StoreError> {
                let $s = self;
                RocksStore::scan_prefix($inner, cf, prefix)
            }
            fn write(&mut self, batch: &Batch) -> Result<(), StoreError> {
                let $s = &*self;
                RocksStore::write($inner, batch)
            }
            fn write_synced(&mut self, batch: &Batch) -> Result<(), StoreError> {
                let $s = &*self;
                RocksStore::write_synced($inner, batch)
            }
            fn sync(&mut self) -> Result<(), StoreError> {
                let $s = &*self;
                RocksStore::sync($inner)
            }
            fn usage(&self) -> Usage {
                let $s = self;
                RocksStore::usage($inner)
            }
        }
    };
}

impl_store!(RocksStore, s => s);
impl_store!(SharedStore, s => &s.0);
