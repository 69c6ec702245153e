//! Sealed bundles: a release and its payload encrypted end to end for a
//! group, so relays and media carry ciphertext they cannot read.
//!
//! [`seal`] turns a payload held in a store (its plaintext manifest and
//! chunks) and the adapter's release into
//! - a *sealed manifest*: one sealed chunk per plaintext chunk
//!   ([`GroupKey::seal_chunk`], convergent within the group, so a version
//!   bump moves only the chunks that changed, each [`SEAL_OVERHEAD`] bytes
//!   longer), written to the store;
//! - a *sealed release* ([`SEALED_MAGIC`], then `ferry.v1.SealedRelease`):
//!   the group key wrapped for each member node, and the release with the
//!   plaintext manifest's id and metadata, sealed under the group key.
//!
//! The engine carries both like any other bundle. A member [`open`]s it with
//! its node key: it unwraps the group key, opens the release, opens every
//! chunk and checks that they make exactly the manifest that was sealed
//! (the id the publisher signed). [`Opened::view`] then reads the
//! plaintext payload through a read-only [`Store`] that opens chunks as
//! they are read, so no plaintext is written to the node's chunk store.
//!
//! What stays visible, by design: the bundle's kind, destination, sizes and
//! timing, and — within the group — which chunks two versions share.

use std::collections::HashMap;

use ferry_chunk::{ChunkId, Manifest, ManifestEntry, ManifestError, ManifestId};
use ferry_core::{Batch, Cf, PutOutcome, Records, Store, StoreError, Usage};
use ferry_proto::v1;
use prost::Message;

use crate::seal::{GroupKey, MemberPublic, MemberSecret, SealError};

/// The first bytes of a sealed bundle's `release`.
pub const SEALED_MAGIC: &[u8; 16] = b"ferry.sealed.v1\n";
/// The media type of a sealed manifest.
pub const SEALED_MEDIA_TYPE: &str = "application/vnd.ferry.sealed.v1";
/// The most members one sealed release wraps its key for (each costs 112
/// bytes of the release, which is at most 64 KiB).
pub const MAX_MEMBERS: usize = 256;

/// Whether `release` is a sealed release (as [`seal`] writes them).
pub fn is_sealed(release: &[u8]) -> bool {
    release.starts_with(SEALED_MAGIC)
}

#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("the sealed release is unreadable: {0}")]
    Malformed(String),
    #[error("sealed for group key {group}, which is not wrapped for this node")]
    NotAMember { group: String },
    #[error("sealed for group key {group}: {reason}")]
    Key { group: String, reason: SealError },
    #[error(
        "chunk {index} of the sealed payload does not open: tampered, or sealed under another key"
    )]
    Chunk { index: usize },
    #[error("chunk {index} ({id}) of the payload is not held")]
    Missing { index: usize, id: ChunkId },
    #[error("the sealed manifest {0} is not held")]
    MissingManifest(ManifestId),
    #[error("the opened payload is not what was sealed: {0}")]
    Mismatch(String),
    #[error("{0} members; a sealed release wraps its key for 1 to {MAX_MEMBERS}")]
    Members(usize),
    #[error("the sealed release is {0} bytes, more than a bundle's release may be")]
    TooLarge(usize),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Seal(#[from] SealError),
}

/// A node a group's releases are sealed for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    /// Its node id (BLAKE3 of its Ed25519 node public key).
    pub node: [u8; 32],
    pub key: MemberPublic,
}

impl Member {
    /// The member whose Ed25519 node public key is `public_key`.
    pub fn from_node_public_key(public_key: &[u8; 32]) -> Option<Member> {
        Some(Member {
            node: *blake3::hash(public_key).as_bytes(),
            key: MemberPublic::from_node_public_key(public_key)?,
        })
    }
}

/// What [`seal`] made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The bundle's `release`.
    pub release: Vec<u8>,
    /// The bundle's manifest: the sealed chunks, in the store.
    pub manifest: ManifestId,
    /// The sealed chunks' total length.
    pub sealed_bytes: u64,
}

/// Seals the payload `manifest` (whose chunks `store` holds) and `release`
/// for `members` under `group`: writes the sealed chunks and manifest to
/// `store` and syncs it, so the result can be submitted at once.
pub fn seal<S: Store>(
    store: &mut S,
    group: &GroupKey,
    members: &[Member],
    release: &[u8],
    manifest: &Manifest,
) -> Result<Sealed, EnvelopeError> {
    if members.is_empty() || members.len() > MAX_MEMBERS {
        return Err(EnvelopeError::Members(members.len()));
    }
    let mut entries = Vec::with_capacity(manifest.chunk_count());
    for (index, entry) in manifest.entries().iter().enumerate() {
        let plain = store.get_chunk(entry.id)?.ok_or(EnvelopeError::Missing {
            index,
            id: entry.id,
        })?;
        let sealed = group.seal_chunk(&plain);
        let id = ChunkId::of(&sealed);
        // A chunk already held is deduplicated by the store.
        store.put_chunk(id, &sealed)?;
        entries.push(ManifestEntry {
            id,
            len: sealed.len() as u32,
        });
    }
    let sealed_manifest = Manifest::new(entries)?.with_media_type(SEALED_MEDIA_TYPE);
    let mut meta = manifest.to_proto();
    meta.chunk_ids.clear();
    meta.chunk_lengths.clear();
    let content = v1::SealedContent {
        release: release.to_vec(),
        manifest_id: manifest.id().as_bytes().to_vec(),
        manifest: Some(meta),
    };
    let keys = members
        .iter()
        .map(|m| {
            Ok(v1::WrappedGroupKey {
                member: m.node.to_vec(),
                wrapped: group.wrap_for(&m.key)?,
            })
        })
        .collect::<Result<_, SealError>>()?;
    let envelope = v1::SealedRelease {
        group_key_id: group.id().to_vec(),
        keys,
        content: group.seal_record(&content.encode_to_vec()),
    };
    let mut out = SEALED_MAGIC.to_vec();
    envelope.encode(&mut out).expect("a Vec grows");
    if out.len() > ferry_proto::MAX_RELEASE_LEN {
        return Err(EnvelopeError::TooLarge(out.len()));
    }
    let id = store.put_manifest(&sealed_manifest)?;
    store.sync()?;
    Ok(Sealed {
        release: out,
        manifest: id,
        sealed_bytes: sealed_manifest.total_length(),
    })
}

/// The group key id a sealed release names, as hex (for logs), if it reads.
pub fn group_key_id(release: &[u8]) -> Option<String> {
    decode(release).ok().map(|e| hex::encode(e.group_key_id))
}

fn decode(release: &[u8]) -> Result<v1::SealedRelease, EnvelopeError> {
    let body = release
        .strip_prefix(SEALED_MAGIC.as_slice())
        .ok_or_else(|| EnvelopeError::Malformed("not a sealed release".into()))?;
    v1::SealedRelease::decode(body).map_err(|e| EnvelopeError::Malformed(e.to_string()))
}

/// A sealed bundle opened by a member.
pub struct Opened {
    release: Vec<u8>,
    manifest: Manifest,
    group: GroupKey,
    /// Plaintext chunk id → the sealed chunk that holds it.
    sealed: HashMap<ChunkId, ChunkId>,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("group", &self.group)
            .field("manifest", &self.manifest.id())
            .field("release_len", &self.release.len())
            .finish()
    }
}

/// Opens the sealed bundle (`release`, `sealed_manifest`) held in `store`,
/// as the member node `me` holding `secret`. Every chunk is opened and
/// the whole checked against the manifest id that was sealed; nothing is
/// written.
pub fn open<S: Store>(
    store: &S,
    me: &[u8; 32],
    secret: &MemberSecret,
    release: &[u8],
    sealed_manifest: ManifestId,
) -> Result<Opened, EnvelopeError> {
    let envelope = decode(release)?;
    let group_name = hex::encode(&envelope.group_key_id);
    let wrapped = envelope
        .keys
        .iter()
        .find(|k| k.member == me)
        .ok_or_else(|| EnvelopeError::NotAMember {
            group: group_name.clone(),
        })?;
    let key_error = |reason| EnvelopeError::Key {
        group: group_name.clone(),
        reason,
    };
    let group = secret.unwrap(&wrapped.wrapped).map_err(key_error)?;
    if group.id().as_slice() != envelope.group_key_id {
        return Err(key_error(SealError::Open));
    }
    let content = group.open_record(&envelope.content).map_err(key_error)?;
    let content = v1::SealedContent::decode(content.as_slice())
        .map_err(|e| EnvelopeError::Malformed(format!("sealed content: {e}")))?;
    let sealed = store
        .get_manifest(sealed_manifest)?
        .ok_or(EnvelopeError::MissingManifest(sealed_manifest))?;
    let mut meta = content
        .manifest
        .ok_or_else(|| EnvelopeError::Malformed("no manifest in the sealed content".into()))?;
    let mut map = HashMap::with_capacity(sealed.chunk_count());
    meta.chunk_ids.clear();
    meta.chunk_lengths.clear();
    for (index, entry) in sealed.entries().iter().enumerate() {
        let bytes = store.get_chunk(entry.id)?.ok_or(EnvelopeError::Missing {
            index,
            id: entry.id,
        })?;
        let plain = group
            .open_chunk(&bytes)
            .map_err(|_| EnvelopeError::Chunk { index })?;
        let id = ChunkId::of(&plain);
        meta.chunk_ids.extend_from_slice(id.as_bytes());
        meta.chunk_lengths.push(plain.len() as u32);
        map.insert(id, entry.id);
    }
    let manifest = Manifest::from_proto(meta)
        .map_err(|e| EnvelopeError::Mismatch(format!("the opened chunks make no manifest: {e}")))?;
    if manifest.id().as_bytes().as_slice() != content.manifest_id {
        return Err(EnvelopeError::Mismatch(format!(
            "the chunks make manifest {}, but {} was sealed",
            manifest.id(),
            hex::encode(&content.manifest_id)
        )));
    }
    Ok(Opened {
        release: content.release,
        manifest,
        group,
        sealed: map,
    })
}

impl Opened {
    /// The adapter's release.
    pub fn release(&self) -> &[u8] {
        &self.release
    }

    /// The plaintext payload's manifest (its id is the one signed).
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The payload's chunks as a read-only store over `store`: a plaintext
    /// chunk is read by opening its sealed chunk; the plaintext manifest is
    /// there; nothing else is.
    pub fn view<'a, S: Store>(&'a self, store: &'a S) -> OpenedStore<'a, S> {
        OpenedStore {
            opened: self,
            inner: store,
        }
    }
}

/// What [`Opened::view`] returns.
pub struct OpenedStore<'a, S> {
    opened: &'a Opened,
    inner: &'a S,
}

fn read_only() -> StoreError {
    StoreError::Backend {
        op: "write",
        source: "an opened sealed payload is read-only".into(),
    }
}

impl<S: Store> Store for OpenedStore<'_, S> {
    fn has_chunk(&self, id: ChunkId) -> Result<bool, StoreError> {
        match self.opened.sealed.get(&id) {
            Some(sealed) => self.inner.has_chunk(*sealed),
            None => Ok(false),
        }
    }

    fn get_chunk(&self, id: ChunkId) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(sealed) = self.opened.sealed.get(&id) else {
            return Ok(None);
        };
        let Some(bytes) = self.inner.get_chunk(*sealed)? else {
            return Ok(None);
        };
        // The inner store verified the sealed bytes against their id, and
        // `open` hashed what they open to into `id`: no second hash needed.
        let plain = self
            .opened
            .group
            .open_chunk(&bytes)
            .map_err(|e| StoreError::CorruptChunk {
                id,
                detail: format!("sealed chunk {sealed}: {e}"),
            })?;
        Ok(Some(plain))
    }

    fn put_chunk(&mut self, _: ChunkId, _: &[u8]) -> Result<PutOutcome, StoreError> {
        Err(read_only())
    }

    fn put_manifest(&mut self, _: &Manifest) -> Result<ManifestId, StoreError> {
        Err(read_only())
    }

    fn get_manifest(&self, id: ManifestId) -> Result<Option<Manifest>, StoreError> {
        Ok((id == self.opened.manifest.id()).then(|| self.opened.manifest.clone()))
    }

    fn delete_manifest(&mut self, _: ManifestId) -> Result<(), StoreError> {
        Err(read_only())
    }

    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(cf, key)
    }

    fn scan_prefix(&self, cf: Cf, prefix: &[u8]) -> Result<Records, StoreError> {
        self.inner.scan_prefix(cf, prefix)
    }

    fn write(&mut self, _: &Batch) -> Result<(), StoreError> {
        Err(read_only())
    }

    fn write_synced(&mut self, _: &Batch) -> Result<(), StoreError> {
        Err(read_only())
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    fn usage(&self) -> Usage {
        self.inner.usage()
    }
}
