//! Garbage collection: frees chunks that no live manifest references.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use ferry_chunk::{ChunkId, Manifest, ManifestId};
use rocksdb::{IteratorMode, WriteBatch};

use ferry_core::Cf;

use crate::error::{db, io};
use crate::packs::Location;
use crate::{RocksStore, StoreError};

/// What a collection found and freed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    pub live_manifests: u64,
    pub chunks_kept: u64,
    pub chunks_freed: u64,
    /// Store size on disk before and after.
    pub bytes_before: u64,
    pub bytes_after: u64,
}

impl RocksStore {
    /// Deletes every chunk that no manifest in [`Cf::Manifests`] references,
    /// then reclaims the space of packs that are mostly garbage. Takes `&mut self`: no
    /// ingest may run meanwhile, since its chunks have no manifest yet.
    ///
    /// A manifest that cannot be decoded stops the collection with an error:
    /// without it, we cannot know which chunks are live.
    pub fn gc(&mut self) -> Result<GcReport, StoreError> {
        let mut report = GcReport {
            bytes_before: self.remeasure()?,
            ..GcReport::default()
        };
        let mut live: HashSet<ChunkId> = HashSet::new();
        for item in self
            .db
            .iterator_cf(self.cf(Cf::Manifests), IteratorMode::Start)
        {
            let (key, value) = item.map_err(db("manifest scan"))?;
            let id = ManifestId::from_slice(&key).ok_or_else(|| StoreError::CorruptRecord {
                cf: Cf::Manifests.name(),
                detail: format!("key of {} bytes is not a manifest id", key.len()),
            })?;
            let manifest = Manifest::decode(&value).map_err(|e| StoreError::CorruptManifest {
                id,
                detail: e.to_string(),
            })?;
            live.extend(manifest.entries().iter().map(|entry| entry.id));
            report.live_manifests += 1;
        }

        // Sweep the chunk index, counting the live bytes of each pack.
        let chunks = self.cf(Cf::Chunks);
        let mut doomed = WriteBatch::default();
        let mut live_bytes: BTreeMap<u32, u64> = BTreeMap::new();
        for item in self.db.iterator_cf(chunks, IteratorMode::Start) {
            let (key, value) = item.map_err(db("chunk scan"))?;
            match (ChunkId::from_slice(&key), Location::decode(&value)) {
                (Some(id), Some(location)) if live.contains(&id) => {
                    report.chunks_kept += 1;
                    *live_bytes.entry(location.pack).or_default() += u64::from(location.len);
                }
                _ => {
                    doomed.delete_cf(chunks, &key);
                    report.chunks_freed += 1;
                }
            }
        }
        if report.chunks_freed > 0 {
            self.db.write(doomed).map_err(db("chunk delete"))?;
            self.db.flush_wal(true).map_err(db("WAL sync"))?;
        }
        self.compact_packs(&live_bytes)?;
        report.bytes_after = self.remeasure()?;
        tracing::info!(?report, "garbage collection done");
        Ok(report)
    }

    /// Deletes packs with no live chunk, and rewrites packs that are mostly
    /// garbage: their live chunks are copied (verified) into the current pack,
    /// the index is pointed at the copies durably, then the old file goes.
    fn compact_packs(&self, live_bytes: &BTreeMap<u32, u64>) -> Result<(), StoreError> {
        // Seal the pack being written, so garbage in it can be reclaimed too.
        self.packs.roll().map_err(io("pack roll"))?;
        let current = self.packs.current();
        let sizes = self.packs.list().map_err(io("pack listing"))?;
        let mut rewrite = BTreeSet::new();
        for (&pack, &size) in &sizes {
            let live = live_bytes.get(&pack).copied().unwrap_or(0);
            if pack != current && (live == 0 || live * 2 < size) {
                rewrite.insert(pack);
            }
        }
        if rewrite.is_empty() {
            return Ok(());
        }
        let chunks = self.cf(Cf::Chunks);
        let mut moved = WriteBatch::default();
        for item in self.db.iterator_cf(chunks, IteratorMode::Start) {
            let (key, value) = item.map_err(db("chunk scan"))?;
            let Some(location) = Location::decode(&value) else {
                continue;
            };
            if !rewrite.contains(&location.pack) {
                continue;
            }
            let bytes = self.packs.read(location).map_err(io("pack read"))?;
            if ChunkId::from_slice(&key).is_some_and(|id| id.matches(&bytes)) {
                let copy = self.packs.append(&bytes).map_err(io("pack append"))?;
                moved.put_cf(chunks, &key, copy.encode());
            } else {
                // Corrupt: drop it, it will be fetched again when wanted.
                moved.delete_cf(chunks, &key);
            }
        }
        self.packs.sync().map_err(io("pack sync"))?;
        self.db.write(moved).map_err(db("chunk relocation"))?;
        self.db.flush_wal(true).map_err(db("WAL sync"))?;
        for pack in rewrite {
            self.packs.remove(pack).map_err(io("pack removal"))?;
        }
        Ok(())
    }
}
