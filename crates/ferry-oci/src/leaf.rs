//! The leaf's image store: a directory holding verified blobs as an OCI
//! layout does (`blobs/sha256/<hex>`) and, per repository,
//! `repositories/<name>/_index.json` (its tags, the blobs its releases
//! carried, and the referrers of its manifests).
//!
//! [`ImageStore::apply`] turns a delivered OCI bundle into servable images:
//! each blob is reassembled from the node's chunk store, checked chunk by
//! chunk and then against its sha256, written to a temporary file, synced
//! and renamed into place. A blob with a rebuild recipe is rebuilt first:
//! its packed chunks inflated (never past what the recipe allows, each a
//! whole DEFLATE stream), the recipe run, and the result checked against
//! the blob's sha256 and size the same way; a recipe that fails writes
//! nothing and is reported ([`ApplyError::Rebuild`]) with the others that
//! failed, and no tag moves; only when every blob a tag reaches is present do
//! the tags move, all of a release's at once, by one rename of the
//! repository's index. A blob file exists only once verified, so a tag can
//! never reach a partial or unverified blob. A directory (rather than the
//! RocksDB store) because serving a blob with Range is then a seek in a
//! file, export is a copy, and the layout is the one `skopeo`/`oras` read.
//!
//! Never serves anything itself ([`crate::serve`] does) and never writes
//! outside its root: every path comes from a validated name or digest.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use ferry_chunk::{Manifest, NativeDigest, Reassembler};
use ferry_core::Store;

use crate::layout::LayoutWriter;
use crate::media::{self, Descriptor};
use ferry_recipe::Recipe;

use crate::recipes::max_segment;
use crate::release::{BlobEntry, OciRelease, TagTarget};
use crate::{Digest, digest, pack};

/// The largest segment a leaf inflates to rebuild one blob (it is held in
/// memory with the rebuilt blob).
pub const MAX_REBUILD: usize = 8 << 30;

/// Orders releases of one repository: a tag never moves back to what an
/// older release (by creation time, then sequence) said.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Stamp {
    pub created_ms: u64,
    pub sequence: u64,
}

/// What a repository holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RepoIndex {
    pub tags: BTreeMap<String, TaggedAt>,
    /// Every blob its releases carried, with its media type.
    pub blobs: BTreeMap<Digest, String>,
    /// Manifests with a `subject`, by subject.
    pub referrers: BTreeMap<Digest, Vec<Descriptor>>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TaggedAt {
    #[serde(flatten)]
    pub target: TagTarget,
    pub stamp: Stamp,
}

/// What one apply did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Applied {
    pub repository: String,
    pub blobs_written: usize,
    /// Of those written, blobs rebuilt from a recipe, and the time it took.
    pub blobs_rebuilt: usize,
    pub rebuild_ms: f64,
    pub blobs_held: usize,
    pub tags_moved: Vec<String>,
    pub tags_kept: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("the bundle's payload is {payload} bytes, its OCI release describes {described}")]
    PayloadLength { payload: u64, described: u64 },
    #[error("blob {digest}: its segment does not fall on chunk boundaries of the payload")]
    Unaligned { digest: Digest },
    /// Blobs whose rebuild from their recipe failed (each with the
    /// reason); nothing of them was written. Fetching them as they are
    /// (see ferryd's fallback) is the cure.
    #[error("{}", rebuild_failures(.0))]
    Rebuild(Vec<RebuildFailure>),
    #[error("blob {digest}: chunk {chunk} is not held here")]
    MissingChunk { digest: Digest, chunk: String },
    #[error("blob {digest} failed verification: {reason}")]
    Corrupt { digest: Digest, reason: String },
    #[error("tag {tag} reaches {digest}, which is not held and verified here")]
    Unreachable { tag: String, digest: Digest },
    #[error(transparent)]
    Malformed(#[from] media::Malformed),
    #[error("store: {0}")]
    Store(#[from] ferry_core::StoreError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{0}")]
    Name(String),
}

/// One blob that could not be rebuilt from its recipe.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RebuildFailure {
    pub digest: Digest,
    pub reason: String,
}

fn rebuild_failures(failures: &[RebuildFailure]) -> String {
    let list: Vec<String> = failures
        .iter()
        .map(|f| {
            format!(
                "blob {} could not be rebuilt from its recipe: {}",
                f.digest, f.reason
            )
        })
        .collect();
    list.join("; ")
}

impl ApplyError {
    /// The blobs whose recipe failed, if that is what this error is.
    pub fn rebuild_failures(&self) -> &[RebuildFailure] {
        match self {
            ApplyError::Rebuild(failures) => failures,
            _ => &[],
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ApplyError + '_ {
    move |source| ApplyError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The leaf's image store (see the module docs).
pub struct ImageStore {
    root: PathBuf,
    /// One apply at a time: each rewrites a repository's index.
    applying: Mutex<()>,
    temp: AtomicU64,
}

impl ImageStore {
    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: &Path) -> io::Result<ImageStore> {
        fs::create_dir_all(root.join("blobs/sha256"))?;
        fs::create_dir_all(root.join("repositories"))?;
        fs::create_dir_all(root.join("tmp"))?;
        // Leftovers of an apply interrupted by a crash.
        for entry in fs::read_dir(root.join("tmp"))? {
            let _ = fs::remove_file(entry?.path());
        }
        Ok(ImageStore {
            root: root.to_owned(),
            applying: Mutex::new(()),
            temp: AtomicU64::new(0),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a verified blob lives (it may not exist).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    fn index_path(&self, repository: &str) -> PathBuf {
        self.root
            .join("repositories")
            .join(repository)
            .join("_index.json")
    }

    /// The repository's index, if it has one. `repository` must be valid.
    pub fn repository(&self, repository: &str) -> io::Result<Option<RepoIndex>> {
        if digest::check_repository(repository).is_err() {
            return Ok(None);
        }
        match fs::read(self.index_path(repository)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Applies a delivered OCI bundle: `manifest` is its root manifest,
    /// `release` its decoded release, `stamp` its creation order.
    #[tracing::instrument(skip_all, fields(repository = %release.repository))]
    pub fn apply<S: Store>(
        &self,
        store: &S,
        manifest: &Manifest,
        release: &OciRelease,
        stamp: Stamp,
    ) -> Result<Applied, ApplyError> {
        let _one = self.applying.lock().unwrap_or_else(|e| e.into_inner());
        if manifest.total_length() != release.payload_length() {
            return Err(ApplyError::PayloadLength {
                payload: manifest.total_length(),
                described: release.payload_length(),
            });
        }
        let mut applied = Applied {
            repository: release.repository.clone(),
            ..Applied::default()
        };
        let entries = manifest.entries();
        let mut next = 0usize;
        let mut failures = Vec::new();
        for blob in &release.blobs {
            // The blob's chunks: entries from `next` that add up to its segment.
            let start = next;
            let mut length = 0u64;
            while length < blob.segment_length && next < entries.len() {
                length += u64::from(entries[next].len);
                next += 1;
            }
            if length != blob.segment_length {
                return Err(ApplyError::Unaligned {
                    digest: blob.digest,
                });
            }
            let path = self.blob_path(&blob.digest);
            if fs::metadata(&path).is_ok_and(|m| m.len() == blob.size) {
                applied.blobs_held += 1;
                continue;
            }
            if !blob.recipe.is_empty() {
                match self.rebuild_blob(store, &entries[start..next], blob)? {
                    Ok(took) => {
                        applied.blobs_rebuilt += 1;
                        applied.rebuild_ms += took.as_secs_f64() * 1e3;
                        applied.blobs_written += 1;
                    }
                    Err(reason) => {
                        tracing::warn!(digest = %blob.digest, "rebuild failed: {reason}");
                        failures.push(RebuildFailure {
                            digest: blob.digest,
                            reason,
                        });
                    }
                }
                continue;
            }
            let sub = Manifest::new(entries[start..next].to_vec())
                .expect("entries of a valid manifest")
                .with_native_digest(NativeDigest::Sha256(blob.digest.0));
            self.write_blob(store, &sub, &blob.digest)?;
            applied.blobs_written += 1;
        }
        if !failures.is_empty() {
            return Err(ApplyError::Rebuild(failures));
        }
        self.move_tags(release, stamp, &mut applied)?;
        tracing::info!(
            written = applied.blobs_written,
            held = applied.blobs_held,
            moved = ?applied.tags_moved,
            "applied"
        );
        Ok(applied)
    }

    /// Rebuilds a blob from its packed segment (`entries`) and recipe,
    /// checks it, and writes it into place. The outer error is the node's
    /// (store, disk); the inner one says why this blob's recipe failed,
    /// and then nothing was written.
    fn rebuild_blob<S: Store>(
        &self,
        store: &S,
        entries: &[ferry_chunk::ManifestEntry],
        blob: &BlobEntry,
    ) -> Result<Result<std::time::Duration, String>, ApplyError> {
        let recipe = match Recipe::decode(&blob.recipe) {
            Ok(recipe) => recipe,
            Err(e) => return Ok(Err(e.to_string())),
        };
        let limit = max_segment(recipe.plain_length, blob.size);
        let Some(limit) = usize::try_from(limit).ok().filter(|&l| l <= MAX_REBUILD) else {
            return Ok(Err(format!(
                "a segment of up to {limit} bytes is over the {MAX_REBUILD} this node rebuilds"
            )));
        };
        let started = std::time::Instant::now();
        let mut segment = Vec::new();
        for entry in entries {
            let chunk = store
                .get_chunk(entry.id)?
                .ok_or_else(|| ApplyError::MissingChunk {
                    digest: blob.digest,
                    chunk: entry.id.to_string(),
                })?;
            if chunk.len() != entry.len as usize || !entry.id.matches(&chunk) {
                return Err(ApplyError::Corrupt {
                    digest: blob.digest,
                    reason: format!("chunk {} does not match its id", entry.id),
                });
            }
            if let Err(reason) = pack::unpack_one(&chunk, &mut segment, limit) {
                return Ok(Err(reason));
            }
        }
        if (segment.len() as u64) < recipe.plain_length {
            return Ok(Err(format!(
                "the segment holds {} bytes, the recipe {} of content",
                segment.len(),
                recipe.plain_length
            )));
        }
        let rebuilt = match recipe.rebuild(&segment) {
            Ok(rebuilt) => rebuilt,
            Err(e) => return Ok(Err(e.to_string())),
        };
        drop(segment);
        let found = Digest::of(&rebuilt);
        if found != blob.digest || rebuilt.len() as u64 != blob.size {
            return Ok(Err(format!(
                "the recipe ({}) rebuilt {} bytes hashing to {found}, not the blob's {} bytes",
                recipe.encoder,
                rebuilt.len(),
                blob.size
            )));
        }
        let took = started.elapsed();
        self.write_bytes(&blob.digest, &rebuilt)?;
        Ok(Ok(took))
    }

    /// Writes verified bytes into place: temporary file, sync, rename.
    fn write_bytes(&self, digest: &Digest, bytes: &[u8]) -> Result<(), ApplyError> {
        let n = self.temp.fetch_add(1, Ordering::Relaxed);
        let tmp =
            self.root
                .join("tmp")
                .join(format!("{}.{}.{n}", digest.hex(), std::process::id()));
        let result = (|| {
            let mut file = File::create(&tmp).map_err(io_err(&tmp))?;
            file.write_all(bytes).map_err(io_err(&tmp))?;
            file.sync_all().map_err(io_err(&tmp))?;
            let path = self.blob_path(digest);
            fs::rename(&tmp, &path).map_err(io_err(&path))?;
            sync_dir(&self.root.join("blobs/sha256"))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    fn write_blob<S: Store>(
        &self,
        store: &S,
        sub: &Manifest,
        digest: &Digest,
    ) -> Result<(), ApplyError> {
        let n = self.temp.fetch_add(1, Ordering::Relaxed);
        let tmp =
            self.root
                .join("tmp")
                .join(format!("{}.{}.{n}", digest.hex(), std::process::id()));
        let result = (|| {
            let file = File::create(&tmp).map_err(io_err(&tmp))?;
            let mut out = Reassembler::new(sub, io::BufWriter::with_capacity(1 << 20, file));
            for entry in sub.entries() {
                let chunk = store
                    .get_chunk(entry.id)?
                    .ok_or_else(|| ApplyError::MissingChunk {
                        digest: *digest,
                        chunk: entry.id.to_string(),
                    })?;
                out.push(&chunk).map_err(|e| ApplyError::Corrupt {
                    digest: *digest,
                    reason: e.to_string(),
                })?;
            }
            let file = out
                .finish()
                .map_err(|e| ApplyError::Corrupt {
                    digest: *digest,
                    reason: e.to_string(),
                })?
                .into_inner()
                .map_err(|e| ApplyError::Io {
                    path: tmp.clone(),
                    source: e.into_error(),
                })?;
            file.sync_all().map_err(io_err(&tmp))?;
            let path = self.blob_path(digest);
            fs::rename(&tmp, &path).map_err(io_err(&path))?;
            sync_dir(&self.root.join("blobs/sha256"))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Checks that everything each tag reaches is held, then moves the tags
    /// (one rename of the repository's index).
    fn move_tags(
        &self,
        release: &OciRelease,
        stamp: Stamp,
        applied: &mut Applied,
    ) -> Result<(), ApplyError> {
        let mut index = self
            .repository(&release.repository)
            .map_err(io_err(&self.index_path(&release.repository)))?
            .unwrap_or_default();
        for (tag, target) in &release.tags {
            self.check_reachable(tag, target)?;
        }
        for blob in &release.blobs {
            index.blobs.insert(blob.digest, blob.media_type.clone());
            if media::is_manifest(&blob.media_type) {
                let path = self.blob_path(&blob.digest);
                let bytes = fs::read(&path).map_err(io_err(&path))?;
                let parsed = media::parse(&blob.media_type, &bytes)?;
                if let Some(subject) = parsed.subject {
                    let mut desc = Descriptor::new(&blob.media_type, &bytes);
                    desc.artifact_type = parsed.artifact_type;
                    desc.annotations = parsed.annotations;
                    let list = index.referrers.entry(subject.digest).or_default();
                    if !list.iter().any(|d| d.digest == desc.digest) {
                        list.push(desc);
                    }
                }
            }
        }
        for (tag, target) in &release.tags {
            match index.tags.get(tag) {
                Some(old) if old.stamp > stamp => applied.tags_kept.push(tag.clone()),
                _ => {
                    index.tags.insert(
                        tag.clone(),
                        TaggedAt {
                            target: target.clone(),
                            stamp,
                        },
                    );
                    applied.tags_moved.push(tag.clone());
                }
            }
        }
        let path = self.index_path(&release.repository);
        let dir = path.parent().expect("an index has a directory");
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let n = self.temp.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .root
            .join("tmp")
            .join(format!("index.{}.{n}", std::process::id()));
        let bytes = serde_json::to_vec_pretty(&index).expect("an index serializes");
        let mut file = File::create(&tmp).map_err(io_err(&tmp))?;
        file.write_all(&bytes).map_err(io_err(&tmp))?;
        file.sync_all().map_err(io_err(&tmp))?;
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        sync_dir(dir)
    }

    /// Every blob `target` reaches is held (a held blob was verified).
    fn check_reachable(&self, tag: &str, target: &TagTarget) -> Result<(), ApplyError> {
        let mut stack = vec![(target.digest, target.media_type.clone())];
        let mut seen = BTreeSet::new();
        while let Some((digest, media_type)) = stack.pop() {
            if !seen.insert(digest) {
                continue;
            }
            let path = self.blob_path(&digest);
            if !path.exists() {
                return Err(ApplyError::Unreachable {
                    tag: tag.to_owned(),
                    digest,
                });
            }
            if media::is_manifest(&media_type) {
                let bytes = fs::read(&path).map_err(io_err(&path))?;
                for child in media::parse(&media_type, &bytes)?.children {
                    stack.push((child.digest, child.media_type));
                }
            }
        }
        Ok(())
    }

    /// Writes `repository`'s `tags` (all if empty) and what they reach to an
    /// OCI layout at `dest`, tagged as they are here.
    pub fn export(
        &self,
        repository: &str,
        tags: &[String],
        dest: &Path,
    ) -> Result<Vec<String>, ApplyError> {
        digest::check_repository(repository).map_err(ApplyError::Name)?;
        let index = self
            .repository(repository)
            .map_err(io_err(&self.index_path(repository)))?
            .ok_or_else(|| ApplyError::Name(format!("no repository {repository} here")))?;
        let tags: Vec<String> = if tags.is_empty() {
            index.tags.keys().cloned().collect()
        } else {
            tags.to_vec()
        };
        let mut writer = LayoutWriter::create(dest).map_err(io_err(dest))?;
        for tag in &tags {
            let tagged = index
                .tags
                .get(tag)
                .ok_or_else(|| ApplyError::Name(format!("{repository} has no tag {tag}")))?;
            let mut stack = vec![(tagged.target.digest, tagged.target.media_type.clone())];
            let mut seen = BTreeSet::new();
            while let Some((digest, media_type)) = stack.pop() {
                if !seen.insert(digest) {
                    continue;
                }
                let path = self.blob_path(&digest);
                writer.copy_blob(&digest, &path).map_err(io_err(&path))?;
                if media::is_manifest(&media_type) {
                    let bytes = fs::read(&path).map_err(io_err(&path))?;
                    for child in media::parse(&media_type, &bytes)?.children {
                        stack.push((child.digest, child.media_type));
                    }
                    // Referrers (signatures...) go along, listed untagged.
                    for referrer in index.referrers.get(&digest).into_iter().flatten() {
                        if self.blob_path(&referrer.digest).exists() {
                            writer.add_untagged(referrer);
                            stack.push((referrer.digest, referrer.media_type.clone()));
                        }
                    }
                }
            }
            let root = self.blob_path(&tagged.target.digest);
            let size = fs::metadata(&root).map_err(io_err(&root))?.len();
            let desc = Descriptor {
                media_type: tagged.target.media_type.clone(),
                digest: tagged.target.digest,
                size,
                artifact_type: None,
                annotations: None,
                platform: None,
            };
            writer.tag(tag, &desc);
        }
        writer.finish().map_err(io_err(dest))?;
        Ok(tags)
    }
}

fn sync_dir(dir: &Path) -> Result<(), ApplyError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}
