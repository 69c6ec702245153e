//! Garbage collection: frees chunks that no live manifest references.

use std::collections::HashSet;

use ferry_chunk::{ChunkId, Manifest, ManifestId};
use rocksdb::{BottommostLevelCompaction, CompactOptions, IteratorMode, WriteBatch};

use ferry_core::Cf;

use crate::error::db;
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
    /// then compacts so their blob files are reclaimed. Takes `&mut self`: no
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

        let chunks = self.cf(Cf::Chunks);
        let mut doomed = WriteBatch::default();
        for item in self.db.iterator_cf(chunks, IteratorMode::Start) {
            let (key, _) = item.map_err(db("chunk scan"))?;
            match ChunkId::from_slice(&key) {
                Some(id) if live.contains(&id) => report.chunks_kept += 1,
                _ => {
                    doomed.delete_cf(chunks, &key);
                    report.chunks_freed += 1;
                }
            }
        }
        if report.chunks_freed > 0 {
            self.db.write(doomed).map_err(db("chunk delete"))?;
            self.sync()?;
            self.reclaim_blob_files()?;
        }
        report.bytes_after = self.remeasure()?;
        tracing::info!(?report, "garbage collection done");
        Ok(report)
    }

    /// Compacts the chunk column family with blob GC switched on for this
    /// compaction only, so live blobs are relocated once and dead files deleted.
    /// In normal operation blob GC stays off: chunk bodies are written once.
    fn reclaim_blob_files(&self) -> Result<(), StoreError> {
        let chunks = self.cf(Cf::Chunks);
        let set = |on: &str, cutoff: &str| {
            self.db
                .set_options_cf(
                    chunks,
                    &[
                        ("enable_blob_garbage_collection", on),
                        ("blob_garbage_collection_age_cutoff", cutoff),
                    ],
                )
                .map_err(db("blob GC options"))
        };
        set("true", "1.0")?;
        let mut opts = CompactOptions::default();
        opts.set_bottommost_level_compaction(BottommostLevelCompaction::Force);
        self.db
            .compact_range_cf_opt(chunks, None::<&[u8]>, None::<&[u8]>, &opts);
        set("false", "0.25")
    }
}
