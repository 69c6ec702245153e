//! Streams bytes through the chunker into the store: the path every local
//! source (a file, a tree, stdin, later a Git pack or an OCI blob) takes in.

use std::collections::HashSet;
use std::io::Read;

use ferry_chunk::{ChunkError, ChunkId, Chunker, ManifestBuilder, ManifestError, ManifestId};

use ferry_core::PutOutcome;

use crate::{RocksStore, StoreError};

/// A regular file to ingest and its length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub path: std::path::PathBuf,
    pub len: u64,
}

/// The regular files `path` names: itself if it is a file, every file below
/// it (sorted) if it is a directory. A directory holding anything else (a
/// symlink, a socket, a device) is refused, naming those entries: ferry
/// carries files, and leaving part of a tree out unseen would lose it.
/// Errors name the path that could not be read.
pub fn sources(path: &std::path::Path) -> Result<Vec<Source>, String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if meta.is_file() {
        return Ok(vec![Source {
            path: path.to_path_buf(),
            len: meta.len(),
        }]);
    }
    if !meta.is_dir() {
        return Err(format!(
            "{} is neither a regular file nor a directory",
            path.display()
        ));
    }
    let mut out = Vec::new();
    let mut not_files = Vec::new();
    for entry in walkdir::WalkDir::new(path).sort_by_file_name() {
        let entry = entry.map_err(|e| format!("cannot walk {}: {e}", path.display()))?;
        let kind = entry.file_type();
        if kind.is_dir() {
            continue;
        }
        if !kind.is_file() {
            not_files.push(entry.path().display().to_string());
            continue;
        }
        let len = entry
            .metadata()
            .map_err(|e| format!("cannot read {}: {e}", entry.path().display()))?
            .len();
        out.push(Source {
            path: entry.into_path(),
            len,
        });
    }
    if !not_files.is_empty() {
        return Err(format!(
            "{} holds what is not a regular file (symlinks are not followed; \
             copy what they point to, e.g. with cp -rL): {}",
            path.display(),
            not_files.join(", ")
        ));
    }
    Ok(out)
}

/// Totals over one ingest session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestStats {
    /// Bytes read from all sources.
    pub bytes: u64,
    /// Chunks cut, counting repeats.
    pub chunks: u64,
    /// Distinct chunks among them.
    pub unique_chunks: u64,
    /// Chunks, and their bytes, that the store did not hold before.
    pub new_chunks: u64,
    pub new_bytes: u64,
    /// Manifests recorded (one per source).
    pub manifests: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("cannot read {source_name}: {error}")]
    Read {
        source_name: String,
        error: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot build the manifest of {source_name}: {error}")]
    Manifest {
        source_name: String,
        error: ManifestError,
    },
}

/// What stopped the chunk sink.
enum SinkError {
    Store(StoreError),
    Manifest(ManifestError),
}

/// One ingest session: any number of sources, then one sync at [`Ingest::finish`].
pub struct Ingest<'s> {
    store: &'s RocksStore,
    chunker: Chunker,
    seen: HashSet<ChunkId>,
    stats: IngestStats,
}

impl<'s> Ingest<'s> {
    pub fn new(store: &'s RocksStore, chunker: Chunker) -> Self {
        Self {
            store,
            chunker,
            seen: HashSet::new(),
            stats: IngestStats::default(),
        }
    }

    /// Chunks `reader` into the store and records its manifest. `progress` is
    /// called with the bytes of each chunk as it is stored.
    pub fn add(
        &mut self,
        source_name: &str,
        reader: impl Read,
        mut progress: impl FnMut(u64),
    ) -> Result<ManifestId, IngestError> {
        let mut builder = ManifestBuilder::new();
        let store = self.store;
        let seen = &mut self.seen;
        let stats = &mut self.stats;
        let result = self.chunker.chunk_reader(reader, |span, bytes| {
            stats.bytes += bytes.len() as u64;
            stats.chunks += 1;
            // A chunk seen earlier in this session is already stored.
            if seen.insert(span.id) {
                stats.unique_chunks += 1;
                if store.put_chunk(span.id, bytes).map_err(SinkError::Store)? == PutOutcome::Stored
                {
                    stats.new_chunks += 1;
                    stats.new_bytes += bytes.len() as u64;
                }
            }
            builder.push(span, bytes).map_err(SinkError::Manifest)?;
            progress(bytes.len() as u64);
            Ok(())
        });
        match result {
            Ok(_) => {}
            Err(ChunkError::Read(error)) => {
                return Err(IngestError::Read {
                    source_name: source_name.to_string(),
                    error,
                });
            }
            Err(ChunkError::Sink(SinkError::Store(e))) => return Err(e.into()),
            Err(ChunkError::Sink(SinkError::Manifest(error))) => {
                return Err(IngestError::Manifest {
                    source_name: source_name.to_string(),
                    error,
                });
            }
        }
        let id = self.store.put_manifest(&builder.finish())?;
        self.stats.manifests += 1;
        Ok(id)
    }

    /// Totals so far.
    pub fn stats(&self) -> IngestStats {
        self.stats
    }

    /// Makes everything ingested durable and returns the totals.
    pub fn finish(self) -> Result<IngestStats, StoreError> {
        self.store.sync()?;
        Ok(self.stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn a_tree_with_a_symlink_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("sub")).unwrap();
        std::fs::write(tree.join("a.yaml"), b"a").unwrap();
        std::fs::write(tree.join("sub/b.yaml"), b"b").unwrap();
        let found = sources(&tree).unwrap();
        let names: Vec<_> = found
            .iter()
            .map(|s| s.path.strip_prefix(&tree).unwrap())
            .collect();
        assert_eq!(names, [Path::new("a.yaml"), Path::new("sub/b.yaml")]);

        std::os::unix::fs::symlink("../a.yaml", tree.join("sub/link.yaml")).unwrap();
        let refused = sources(&tree).unwrap_err();
        assert!(refused.contains("not a regular file"), "{refused}");
        assert!(refused.contains("sub/link.yaml"), "{refused}");
        // A file named directly is read through its links, as ever.
        assert_eq!(sources(&tree.join("sub/link.yaml")).unwrap().len(), 1);
    }
}
