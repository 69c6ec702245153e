//! Ingest at the base: walk what the chosen tags of a [`Source`] reach
//! (indexes, manifests, configs, layers, and manifests that refer to them),
//! verify every blob against its digest and size, and stage the release —
//! every blob chunked on its own into the node's store, and the
//! [`OciRelease`] describing them. Nothing is submitted here: a bad blob
//! fails the whole ingest, and what was staged before is unreferenced
//! garbage for the store's collector, never a published release.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::time::{Duration, Instant};

use ferry_chunk::{ChunkError, Chunker, ChunkerConfig, Manifest, ManifestEntry, ManifestId};
use ferry_core::{Store, StoreError};
use sha2::{Digest as _, Sha256};

use ferry_recipe::Recipe;

use crate::media::{self, Descriptor};
use crate::recipes::{Known, LayerReport, Recipes, is_gzip_layer};
use crate::release::{BlobEntry, OciRelease, TagTarget};
use crate::{Digest, digest, pack};

/// The largest index or manifest read (the distribution spec suggests 4 MiB).
pub const MAX_DOCUMENT: u64 = 4 << 20;
/// The media type of an OCI bundle's root manifest.
pub const RELEASE_MEDIA_TYPE: &str = "application/vnd.ferry.oci.release.v1";

/// Where images come from: an OCI layout, a docker-archive, a registry.
pub trait Source {
    /// How the source is named in errors (`oci:/path`, ...).
    fn name(&self) -> String;
    /// The tags the source holds.
    fn tags(&self) -> Result<Vec<String>, IngestError>;
    /// The index or manifest `tag` names.
    fn resolve(&self, tag: &str) -> Result<Descriptor, IngestError>;
    /// The bytes of a blob, unverified (the caller checks them).
    fn open(&self, desc: &Descriptor) -> Result<Box<dyn Read + '_>, IngestError>;
    /// Manifests whose `subject` is `subject` (signatures, SBOMs...).
    fn referrers(&self, subject: &Digest) -> Result<Vec<Descriptor>, IngestError>;
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{source_name}: {reason}")]
    Source { source_name: String, reason: String },
    #[error("{source_name} has no tag {tag:?}")]
    UnknownTag { source_name: String, tag: String },
    #[error(
        "blob {digest} ({media_type}) is {size} bytes, over the limit of {limit}; raise max_blob if it is expected"
    )]
    TooLarge {
        digest: Digest,
        media_type: String,
        size: u64,
        limit: u64,
    },
    #[error(
        "blob {expected} is corrupt at the source: its bytes hash to {found} ({length} bytes read, {size} described)"
    )]
    DigestMismatch {
        expected: Digest,
        found: Digest,
        length: u64,
        size: u64,
    },
    #[error(transparent)]
    Malformed(#[from] media::Malformed),
    #[error("{0}")]
    Name(String),
    #[error("reading blob {digest}: {source}")]
    Read {
        digest: Digest,
        source: std::io::Error,
    },
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error(
        "the release's blob table is {bytes} bytes, over the {limit} a bundle header carries; publish fewer tags per release"
    )]
    ReleaseTooLarge { bytes: usize, limit: usize },
}

/// Limits applied while ingesting.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The largest blob accepted.
    pub max_blob: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_blob: 8 << 30 }
    }
}

/// What a release will carry: the tags and every blob they reach, in
/// payload order, with the indexes and manifests already read and verified.
#[derive(Debug, Clone)]
pub struct Plan {
    pub repository: String,
    pub tags: BTreeMap<String, TagTarget>,
    pub blobs: Vec<Descriptor>,
    documents: BTreeMap<Digest, Vec<u8>>,
}

impl Plan {
    /// Total bytes of the blobs.
    pub fn bytes(&self) -> u64 {
        self.blobs.iter().map(|b| b.size).sum()
    }
}

/// Walks `tags` of `source` (all of its tags if empty) for `repository`.
#[tracing::instrument(skip_all, fields(source = %source.name(), repository))]
pub fn plan(
    source: &dyn Source,
    repository: &str,
    tags: &[String],
    limits: Limits,
) -> Result<Plan, IngestError> {
    digest::check_repository(repository).map_err(IngestError::Name)?;
    let tags = if tags.is_empty() {
        source.tags()?
    } else {
        tags.to_vec()
    };
    if tags.is_empty() {
        return Err(IngestError::Source {
            source_name: source.name(),
            reason: "no tags to publish".into(),
        });
    }
    let mut plan = Plan {
        repository: repository.to_owned(),
        tags: BTreeMap::new(),
        blobs: Vec::new(),
        documents: BTreeMap::new(),
    };
    let mut seen = BTreeSet::new();
    let mut manifests = Vec::new();
    for tag in &tags {
        digest::check_tag(tag).map_err(IngestError::Name)?;
        let root = source.resolve(tag)?;
        if !media::is_manifest(&root.media_type) {
            return Err(IngestError::Source {
                source_name: source.name(),
                reason: format!(
                    "tag {tag} names a {}, not an image index or manifest",
                    root.media_type
                ),
            });
        }
        plan.tags.insert(
            tag.clone(),
            TagTarget {
                digest: root.digest,
                media_type: root.media_type.clone(),
            },
        );
        walk(source, root, limits, &mut plan, &mut seen, &mut manifests)?;
    }
    // Referrers of anything reached, and their referrers in turn.
    let mut next = 0;
    while next < manifests.len() {
        let subject = manifests[next];
        next += 1;
        for referrer in source.referrers(&subject)? {
            walk(
                source,
                referrer,
                limits,
                &mut plan,
                &mut seen,
                &mut manifests,
            )?;
        }
    }
    tracing::info!(blobs = plan.blobs.len(), bytes = plan.bytes(), "planned");
    Ok(plan)
}

fn walk(
    source: &dyn Source,
    root: Descriptor,
    limits: Limits,
    plan: &mut Plan,
    seen: &mut BTreeSet<Digest>,
    manifests: &mut Vec<Digest>,
) -> Result<(), IngestError> {
    let mut stack = vec![root];
    while let Some(desc) = stack.pop() {
        if !seen.insert(desc.digest) {
            continue;
        }
        let limit = if media::is_manifest(&desc.media_type) {
            limits.max_blob.min(MAX_DOCUMENT)
        } else {
            limits.max_blob
        };
        if desc.size > limit {
            return Err(IngestError::TooLarge {
                digest: desc.digest,
                media_type: desc.media_type.clone(),
                size: desc.size,
                limit,
            });
        }
        if media::is_manifest(&desc.media_type) {
            let mut bytes = Vec::new();
            source
                .open(&desc)?
                .take(desc.size + 1)
                .read_to_end(&mut bytes)
                .map_err(|source| IngestError::Read {
                    digest: desc.digest,
                    source,
                })?;
            let found = Digest::of(&bytes);
            if found != desc.digest || bytes.len() as u64 != desc.size {
                return Err(IngestError::DigestMismatch {
                    expected: desc.digest,
                    found,
                    length: bytes.len() as u64,
                    size: desc.size,
                });
            }
            let parsed = media::parse(&desc.media_type, &bytes)?;
            // Depth-first, children in document order.
            stack.extend(parsed.children.into_iter().rev());
            manifests.push(desc.digest);
            plan.documents.insert(desc.digest, bytes);
        }
        plan.blobs.push(desc);
    }
    Ok(())
}

/// How blobs are cut into chunks. Compressed layers (gzip, zstd) get
/// coarser chunks (16/64/256 KiB): compression hides any sameness below
/// the blob, so smaller chunks would only add manifest entries (36 bytes
/// each) to every release that carries the layer, held or not. Everything
/// else (indexes, manifests, configs, uncompressed tars) gets the default.
pub struct Chunking {
    pub default: Chunker,
    pub compressed: Chunker,
}

/// The chunker configuration for compressed layers.
pub const COMPRESSED_LAYER_CHUNKS: ChunkerConfig = ChunkerConfig {
    min_size: 16 << 10,
    avg_size: 64 << 10,
    max_size: 256 << 10,
};

impl Default for Chunking {
    fn default() -> Self {
        Chunking {
            default: Chunker::default(),
            compressed: Chunker::new(COMPRESSED_LAYER_CHUNKS)
                .expect("the compressed-layer chunk sizes are valid"),
        }
    }
}

impl Chunking {
    /// The chunker for a blob of `media_type`.
    pub fn for_media_type(&self, media_type: &str) -> &Chunker {
        let compressed = ["+gzip", "+zstd", ".gzip", ".zstd", "+zstd+encrypted"]
            .iter()
            .any(|suffix| media_type.ends_with(suffix));
        if compressed {
            &self.compressed
        } else {
            &self.default
        }
    }
}

/// A release staged in the store, ready to submit.
#[derive(Debug, Clone)]
pub struct Staged {
    /// The root manifest (already in the store, synced).
    pub manifest: ManifestId,
    pub release: OciRelease,
    /// Payload bytes; of them, bytes in chunks the store did not hold.
    pub bytes: u64,
    pub new_bytes: u64,
    /// How each layer was staged: its recipe or why none, and its bytes.
    pub layers: Vec<LayerReport>,
}

impl Staged {
    /// One line per layer, for people.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "{} bytes of payload, {} new; {} blobs",
            self.bytes,
            self.new_bytes,
            self.release.blobs.len()
        );
        for layer in &self.layers {
            out.push_str("\n  ");
            out.push_str(&layer.to_string());
        }
        out
    }
}

/// Reads, verifies and chunks every blob of `plan` into `store`, each blob
/// on its own, and records the root manifest, durably. Gzip layers for
/// which `recipes` finds (or knows) a rebuild recipe are staged as their
/// packed content ([`crate::pack`]) with the recipe in their blob entry;
/// every other blob as it is.
#[tracing::instrument(skip_all, fields(repository = %plan.repository))]
pub fn stage<S: Store>(
    store: &mut S,
    chunking: &Chunking,
    recipes: &Recipes,
    source: &dyn Source,
    plan: &Plan,
) -> Result<Staged, IngestError> {
    let mut entries = Vec::new();
    let mut blobs = Vec::with_capacity(plan.blobs.len());
    let mut layers = Vec::new();
    let mut new_bytes = 0;
    for desc in &plan.blobs {
        let layer = is_layer(&desc.media_type);
        let new_before = new_bytes;
        if recipes.enabled && is_gzip_layer(&desc.media_type) && desc.size <= recipes.max_blob {
            let blob = read_verified(source, desc)?;
            let form = recipe_form(recipes, desc, &blob);
            let (recipe, segment_length, report) = match form {
                Form::Recipe {
                    recipe,
                    encoder,
                    segment,
                    rebuild_time,
                    cached,
                } => {
                    let mut packed_len = 0u64;
                    for packed in pack::pack(&segment, &chunking.default) {
                        let len = packed.bytes.len() as u32;
                        if !store.has_chunk(packed.id)? {
                            store.put_chunk(packed.id, &packed.bytes)?;
                            new_bytes += u64::from(len);
                        }
                        packed_len += u64::from(len);
                        entries.push(ManifestEntry { id: packed.id, len });
                    }
                    let report = LayerReport {
                        digest: desc.digest,
                        media_type: desc.media_type.clone(),
                        recipe: encoder,
                        rebuilt: true,
                        blob_bytes: desc.size,
                        segment_bytes: packed_len,
                        new_bytes: new_bytes - new_before,
                        plain_bytes: segment.len() as u64,
                        rebuild_ms: rebuild_time.as_secs_f64() * 1e3,
                        cached,
                    };
                    (recipe, packed_len, report)
                }
                Form::AsIs { reason, cached } => {
                    for span in chunking.compressed.chunk_slice(&blob) {
                        let bytes = &blob[span.offset as usize..span.end() as usize];
                        if !store.has_chunk(span.id)? {
                            store.put_chunk(span.id, bytes)?;
                            new_bytes += u64::from(span.len);
                        }
                        entries.push(ManifestEntry {
                            id: span.id,
                            len: span.len,
                        });
                    }
                    let report = LayerReport {
                        digest: desc.digest,
                        media_type: desc.media_type.clone(),
                        recipe: format!("as is: {reason}"),
                        rebuilt: false,
                        blob_bytes: desc.size,
                        segment_bytes: desc.size,
                        new_bytes: new_bytes - new_before,
                        plain_bytes: 0,
                        rebuild_ms: 0.0,
                        cached,
                    };
                    (Vec::new(), desc.size, report)
                }
            };
            tracing::info!(layer = %report, "staged layer");
            layers.push(report);
            blobs.push(BlobEntry {
                digest: desc.digest,
                media_type: desc.media_type.clone(),
                size: desc.size,
                segment_length,
                recipe,
            });
            continue;
        }
        stream_blob(
            store,
            chunking,
            source,
            plan,
            desc,
            &mut entries,
            &mut new_bytes,
        )?;
        if layer {
            let reason = if !is_gzip_layer(&desc.media_type) {
                "not a gzip layer".to_owned()
            } else if !recipes.enabled {
                "recipes are off".to_owned()
            } else {
                format!("over the {} bytes analysed", recipes.max_blob)
            };
            layers.push(LayerReport {
                digest: desc.digest,
                media_type: desc.media_type.clone(),
                recipe: format!("as is: {reason}"),
                rebuilt: false,
                blob_bytes: desc.size,
                segment_bytes: desc.size,
                new_bytes: new_bytes - new_before,
                plain_bytes: 0,
                rebuild_ms: 0.0,
                cached: false,
            });
        }
        blobs.push(BlobEntry {
            digest: desc.digest,
            media_type: desc.media_type.clone(),
            size: desc.size,
            segment_length: desc.size,
            recipe: Vec::new(),
        });
    }
    let release = OciRelease {
        repository: plan.repository.clone(),
        tags: plan.tags.clone(),
        blobs,
    };
    let encoded = release.encode().len();
    if encoded > ferry_proto::MAX_RELEASE_LEN {
        return Err(IngestError::ReleaseTooLarge {
            bytes: encoded,
            limit: ferry_proto::MAX_RELEASE_LEN,
        });
    }
    let root = Manifest::new(entries)
        .expect("the chunker yields no empty chunk")
        .with_media_type(RELEASE_MEDIA_TYPE);
    let bytes = root.total_length();
    let manifest = store.put_manifest(&root)?;
    store.sync()?;
    tracing::info!(%manifest, bytes, new_bytes, blobs = release.blobs.len(), "staged");
    Ok(Staged {
        manifest,
        release,
        bytes,
        new_bytes,
        layers,
    })
}

/// Whether a blob of `media_type` is a layer (not an index, manifest or config).
pub fn is_layer(media_type: &str) -> bool {
    !media::is_manifest(media_type)
        && media_type != media::OCI_CONFIG
        && media_type != media::DOCKER_CONFIG
        && media_type != media::OCI_EMPTY
}

/// Streams one blob through the chunker into the store, checking its
/// sha256 and size.
fn stream_blob<S: Store>(
    store: &mut S,
    chunking: &Chunking,
    source: &dyn Source,
    plan: &Plan,
    desc: &Descriptor,
    entries: &mut Vec<ManifestEntry>,
    new_bytes: &mut u64,
) -> Result<(), IngestError> {
    let reader: Box<dyn Read + '_> = match plan.documents.get(&desc.digest) {
        Some(bytes) => Box::new(&bytes[..]),
        None => source.open(desc)?,
    };
    let mut hasher = Sha256::new();
    let mut length = 0u64;
    let chunker = chunking.for_media_type(&desc.media_type);
    let result = chunker.chunk_reader(reader.take(desc.size + 1), |span, bytes| {
        hasher.update(bytes);
        length += u64::from(span.len);
        if !store.has_chunk(span.id)? {
            store.put_chunk(span.id, bytes)?;
            *new_bytes += u64::from(span.len);
        }
        entries.push(ManifestEntry {
            id: span.id,
            len: span.len,
        });
        Ok::<(), StoreError>(())
    });
    match result {
        Ok(_) => {}
        Err(ChunkError::Read(source)) => {
            return Err(IngestError::Read {
                digest: desc.digest,
                source,
            });
        }
        Err(ChunkError::Sink(e)) => return Err(IngestError::Store(e)),
    }
    let found = Digest(hasher.finalize().into());
    if found != desc.digest || length != desc.size {
        return Err(IngestError::DigestMismatch {
            expected: desc.digest,
            found,
            length,
            size: desc.size,
        });
    }
    Ok(())
}

/// The whole blob, checked against its sha256 and size.
fn read_verified(source: &dyn Source, desc: &Descriptor) -> Result<Vec<u8>, IngestError> {
    let mut blob = Vec::with_capacity(desc.size as usize);
    source
        .open(desc)?
        .take(desc.size + 1)
        .read_to_end(&mut blob)
        .map_err(|source| IngestError::Read {
            digest: desc.digest,
            source,
        })?;
    let found = Digest::of(&blob);
    if found != desc.digest || blob.len() as u64 != desc.size {
        return Err(IngestError::DigestMismatch {
            expected: desc.digest,
            found,
            length: blob.len() as u64,
            size: desc.size,
        });
    }
    Ok(blob)
}

/// How a verified gzip blob travels.
enum Form {
    Recipe {
        recipe: Vec<u8>,
        encoder: String,
        segment: Vec<u8>,
        rebuild_time: Duration,
        cached: bool,
    },
    AsIs {
        reason: String,
        cached: bool,
    },
}

/// Finds (or recalls) the recipe of `blob`, whose digest was checked.
fn recipe_form(recipes: &Recipes, desc: &Descriptor, blob: &[u8]) -> Form {
    if recipes.is_never(&desc.digest) {
        return Form::AsIs {
            reason: "a leaf could not rebuild it before".into(),
            cached: true,
        };
    }
    match recipes.known(&desc.digest) {
        Some(Known::AsIs(reason)) => Form::AsIs {
            reason,
            cached: true,
        },
        Some(Known::Recipe {
            recipe,
            corrections,
            rebuild_time,
        }) => {
            let decoded = Recipe::decode(&recipe);
            match (
                decoded,
                ferry_recipe::gzip::parse(blob, recipes.limits.max_plain),
            ) {
                (Ok(decoded), Ok(member)) => {
                    let mut segment = member.plain;
                    segment.extend_from_slice(&corrections);
                    Form::Recipe {
                        recipe,
                        encoder: decoded.encoder.to_string(),
                        segment,
                        rebuild_time,
                        cached: true,
                    }
                }
                (Err(e), _) => Form::AsIs {
                    reason: e.to_string(),
                    cached: true,
                },
                (_, Err(reason)) => Form::AsIs {
                    reason,
                    cached: true,
                },
            }
        }
        None => {
            let started = Instant::now();
            let outcome = ferry_recipe::analyse(blob, &recipes.limits);
            tracing::debug!(digest = %desc.digest, took = ?started.elapsed(), "analysed");
            match outcome {
                ferry_recipe::Outcome::Found(analysis) if !analysis.segment.is_empty() => {
                    let recipe = analysis.recipe.encode();
                    let plain = analysis.recipe.plain_length as usize;
                    recipes.remember(
                        desc.digest,
                        Known::Recipe {
                            recipe: recipe.clone(),
                            corrections: analysis.segment[plain..].to_vec(),
                            rebuild_time: analysis.rebuild_time,
                        },
                    );
                    Form::Recipe {
                        recipe,
                        encoder: analysis.recipe.encoder.to_string(),
                        segment: analysis.segment,
                        rebuild_time: analysis.rebuild_time,
                        cached: false,
                    }
                }
                ferry_recipe::Outcome::Found(_) => {
                    let reason = "empty content".to_owned();
                    recipes.remember(desc.digest, Known::AsIs(reason.clone()));
                    Form::AsIs {
                        reason,
                        cached: false,
                    }
                }
                ferry_recipe::Outcome::AsIs(reason) => {
                    // One line: some reasons carry a trace after it.
                    let reason = reason.lines().next().unwrap_or_default().to_owned();
                    recipes.remember(desc.digest, Known::AsIs(reason.clone()));
                    Form::AsIs {
                        reason,
                        cached: false,
                    }
                }
            }
        }
    }
}
