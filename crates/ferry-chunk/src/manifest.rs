//! Manifests: an object as an ordered list of chunks, with its native digest.

use ferry_proto::v1::{self, DigestAlgorithm};
use ferry_proto::{Validate, ValidationError};
use prost::Message;

use crate::chunker::ChunkSpan;
use crate::digest::{DigestState, GitHash, GitObjectType, NativeDigest};
use crate::id::{ChunkId, ID_LEN, ManifestId};

/// One chunk of an object, as a manifest lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ManifestEntry {
    pub id: ChunkId,
    /// Never 0.
    pub len: u32,
}

/// An object as an ordered list of content-defined chunks, with its total
/// length, optionally its native digest and a media type.
///
/// A `Manifest` is always consistent: no chunk is empty and `total_length`
/// is the sum of the chunk lengths. Its wire form is `ferry.v1.Manifest`;
/// its id is the BLAKE3 hash of that encoding ([`Manifest::id`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Manifest {
    entries: Vec<ManifestEntry>,
    total_length: u64,
    native_digest: Option<NativeDigest>,
    media_type: Option<String>,
}

/// A manifest that cannot be decoded or built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not valid protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("manifest is well-formed protobuf but invalid: {0}")]
    Invalid(#[from] ValidationError),
    /// Re-encoding the decoded manifest does not give back the same bytes
    /// (unknown fields, unpacked or out-of-order fields, explicit defaults...).
    /// Manifests are content-addressed, so only the canonical encoding is accepted.
    #[error("manifest encoding is not canonical")]
    NonCanonical,
    #[error("chunk {index} is empty")]
    EmptyChunk { index: usize },
    #[error("a chunk at offset {found} was pushed, but the previous chunks end at {expected}")]
    OutOfOrder { expected: u64, found: u64 },
    #[error("a span of {span_len} bytes was pushed with {data_len} bytes of data")]
    DataLength { span_len: u32, data_len: usize },
}

impl Manifest {
    /// A manifest listing `entries` in order, without native digest or media type.
    pub fn new(entries: Vec<ManifestEntry>) -> Result<Self, ManifestError> {
        if let Some(index) = entries.iter().position(|entry| entry.len == 0) {
            return Err(ManifestError::EmptyChunk { index });
        }
        let total_length = entries.iter().map(|entry| u64::from(entry.len)).sum();
        Ok(Self {
            entries,
            total_length,
            native_digest: None,
            media_type: None,
        })
    }

    /// Sets (or, with `None`, removes) the native digest.
    pub fn with_native_digest(mut self, digest: impl Into<Option<NativeDigest>>) -> Self {
        self.native_digest = digest.into();
        self
    }

    /// Sets the media type; an empty string removes it (the wire form cannot
    /// tell an empty media type from none).
    pub fn with_media_type(mut self, media_type: impl Into<String>) -> Self {
        let media_type = media_type.into();
        self.media_type = (!media_type.is_empty()).then_some(media_type);
        self
    }

    /// The chunks, in object order.
    pub fn entries(&self) -> &[ManifestEntry] {
        &self.entries
    }

    /// Number of chunks.
    pub fn chunk_count(&self) -> usize {
        self.entries.len()
    }

    /// Whether the object is empty (has no chunks).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The object's length in bytes: the sum of the chunk lengths.
    pub fn total_length(&self) -> u64 {
        self.total_length
    }

    pub fn native_digest(&self) -> Option<&NativeDigest> {
        self.native_digest.as_ref()
    }

    pub fn media_type(&self) -> Option<&str> {
        self.media_type.as_deref()
    }

    /// The chunks with their offsets in the object.
    pub fn spans(&self) -> impl ExactSizeIterator<Item = ChunkSpan> + '_ {
        let mut offset = 0u64;
        self.entries.iter().map(move |entry| {
            let span = ChunkSpan {
                offset,
                len: entry.len,
                id: entry.id,
            };
            offset += u64::from(entry.len);
            span
        })
    }

    /// The wire form.
    pub fn to_proto(&self) -> v1::Manifest {
        let mut chunk_ids = Vec::with_capacity(self.entries.len() * ID_LEN);
        for entry in &self.entries {
            chunk_ids.extend_from_slice(entry.id.as_bytes());
        }
        v1::Manifest {
            total_length: self.total_length,
            chunk_ids,
            chunk_lengths: self.entries.iter().map(|entry| entry.len).collect(),
            native_digest: self.native_digest.as_ref().map(digest_to_proto),
            media_type: self.media_type.clone().unwrap_or_default(),
        }
    }

    /// Converts and validates the wire form.
    pub fn from_proto(proto: v1::Manifest) -> Result<Self, ManifestError> {
        proto.validate()?;
        let entries = proto
            .chunk_ids
            .chunks_exact(ID_LEN)
            .zip(&proto.chunk_lengths)
            .map(|(id, &len)| ManifestEntry {
                id: ChunkId::from_slice(id).expect("validated width"),
                len,
            })
            .collect();
        let native_digest = proto
            .native_digest
            .as_ref()
            .map(digest_from_proto)
            .transpose()?;
        let media_type = (!proto.media_type.is_empty()).then_some(proto.media_type);
        // Validation checked that the lengths add up to total_length and that
        // none is zero.
        Ok(Self {
            entries,
            total_length: proto.total_length,
            native_digest,
            media_type,
        })
    }

    /// The canonical protobuf encoding of [`Manifest::to_proto`].
    pub fn encode(&self) -> Vec<u8> {
        self.to_proto().encode_to_vec()
    }

    /// Length of [`Manifest::encode`]'s output, without producing it.
    pub fn encoded_len(&self) -> usize {
        self.to_proto().encoded_len()
    }

    /// Decodes and validates an encoded manifest. Never panics; any byte
    /// string gives a manifest or an error. Only canonical encodings are
    /// accepted, so `Manifest::decode(b)?.id()` is always the BLAKE3 of `b`.
    pub fn decode(bytes: &[u8]) -> Result<Self, ManifestError> {
        let proto = v1::Manifest::decode(bytes)?;
        // prost encodes canonically (fields in order, packed, defaults omitted).
        if proto.encoded_len() != bytes.len() || proto.encode_to_vec() != bytes {
            return Err(ManifestError::NonCanonical);
        }
        Self::from_proto(proto)
    }

    /// The manifest's id: BLAKE3 of [`Manifest::encode`].
    pub fn id(&self) -> ManifestId {
        ManifestId::of_encoding(&self.encode())
    }
}

impl From<&Manifest> for v1::Manifest {
    fn from(manifest: &Manifest) -> Self {
        manifest.to_proto()
    }
}

impl TryFrom<v1::Manifest> for Manifest {
    type Error = ManifestError;

    fn try_from(proto: v1::Manifest) -> Result<Self, ManifestError> {
        Manifest::from_proto(proto)
    }
}

fn digest_to_proto(digest: &NativeDigest) -> v1::NativeDigest {
    let (algorithm, object_type) = match digest {
        NativeDigest::Sha256(_) => (DigestAlgorithm::Sha256, String::new()),
        NativeDigest::Git {
            algorithm: GitHash::Sha1(_),
            object_type,
        } => (DigestAlgorithm::GitSha1, object_type.as_str().to_owned()),
        NativeDigest::Git {
            algorithm: GitHash::Sha256(_),
            object_type,
        } => (DigestAlgorithm::GitSha256, object_type.as_str().to_owned()),
    };
    v1::NativeDigest {
        algorithm: algorithm as i32,
        value: digest.value().to_vec(),
        object_type,
    }
}

/// Converts a native digest that has passed `Validate`.
fn digest_from_proto(proto: &v1::NativeDigest) -> Result<NativeDigest, ManifestError> {
    let invalid = |field: &'static str, problem: String| {
        ManifestError::Invalid(ValidationError { field, problem })
    };
    let width = |value: &[u8]| {
        invalid(
            "native_digest.value",
            format!("has the wrong width ({} bytes)", value.len()),
        )
    };
    let algorithm = DigestAlgorithm::try_from(proto.algorithm).map_err(|_| {
        invalid(
            "native_digest.algorithm",
            format!("unknown algorithm {}", proto.algorithm),
        )
    })?;
    if algorithm == DigestAlgorithm::Sha256 {
        if !proto.object_type.is_empty() {
            return Err(invalid(
                "native_digest.object_type",
                "must be empty for SHA-256".to_owned(),
            ));
        }
        let value = proto
            .value
            .as_slice()
            .try_into()
            .map_err(|_| width(&proto.value))?;
        return Ok(NativeDigest::Sha256(value));
    }
    let object_type: GitObjectType =
        proto
            .object_type
            .parse()
            .map_err(|e: crate::digest::UnknownGitObjectType| {
                invalid("native_digest.object_type", e.to_string())
            })?;
    let algorithm = match algorithm {
        DigestAlgorithm::GitSha1 => GitHash::Sha1(
            proto
                .value
                .as_slice()
                .try_into()
                .map_err(|_| width(&proto.value))?,
        ),
        DigestAlgorithm::GitSha256 => GitHash::Sha256(
            proto
                .value
                .as_slice()
                .try_into()
                .map_err(|_| width(&proto.value))?,
        ),
        DigestAlgorithm::Sha256 | DigestAlgorithm::Unspecified => {
            return Err(invalid(
                "native_digest.algorithm",
                format!("unknown algorithm {}", proto.algorithm),
            ));
        }
    };
    Ok(NativeDigest::Git {
        algorithm,
        object_type,
    })
}

/// What a [`ManifestBuilder`] does about the native digest.
#[derive(Clone)]
enum DigestMode {
    None,
    Known(NativeDigest),
    Computing(DigestState),
}

/// Accumulates the spans of a stream as it is chunked into a [`Manifest`],
/// typically from the sink of [`Chunker::chunk_reader`](crate::Chunker::chunk_reader).
#[derive(Clone)]
pub struct ManifestBuilder {
    entries: Vec<ManifestEntry>,
    total_length: u64,
    digest: DigestMode,
    media_type: Option<String>,
}

impl Default for ManifestBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ManifestBuilder {
    pub fn new() -> Self {
        Self {
            entries: Vec::new(),
            total_length: 0,
            digest: DigestMode::None,
            media_type: None,
        }
    }

    /// Computes the SHA-256 of the object from the pushed data and records it
    /// as the native digest (OCI). This is a serial cost on the thread that
    /// calls [`ManifestBuilder::push`], about as much again as chunking on
    /// one core (SHA-256 is several times slower than BLAKE3, even with SHA
    /// instructions); leave it off when the digest is known in advance.
    pub fn computing_sha256(mut self) -> Self {
        self.digest = DigestMode::Computing(DigestState::sha256());
        self
    }

    /// Records a native digest known in advance (e.g. a Git object id, which
    /// needs the length before the bytes). Replaces [`ManifestBuilder::computing_sha256`].
    pub fn native_digest(mut self, digest: NativeDigest) -> Self {
        self.digest = DigestMode::Known(digest);
        self
    }

    /// Sets the media type (empty means none).
    pub fn media_type(mut self, media_type: impl Into<String>) -> Self {
        let media_type = media_type.into();
        self.media_type = (!media_type.is_empty()).then_some(media_type);
        self
    }

    /// Appends the next chunk of the stream. `data` is its bytes; they are only
    /// read when computing SHA-256 (the span's id is trusted, not rechecked).
    /// Spans must arrive in stream order, without gaps.
    pub fn push(&mut self, span: ChunkSpan, data: &[u8]) -> Result<(), ManifestError> {
        if span.offset != self.total_length {
            return Err(ManifestError::OutOfOrder {
                expected: self.total_length,
                found: span.offset,
            });
        }
        if data.len() != span.len as usize {
            return Err(ManifestError::DataLength {
                span_len: span.len,
                data_len: data.len(),
            });
        }
        if span.len == 0 {
            return Err(ManifestError::EmptyChunk {
                index: self.entries.len(),
            });
        }
        if let DigestMode::Computing(state) = &mut self.digest {
            state.update(data);
        }
        self.entries.push(ManifestEntry {
            id: span.id,
            len: span.len,
        });
        self.total_length += u64::from(span.len);
        Ok(())
    }

    /// Bytes pushed so far.
    pub fn total_length(&self) -> u64 {
        self.total_length
    }

    /// The manifest of everything pushed.
    pub fn finish(self) -> Manifest {
        let native_digest = match self.digest {
            DigestMode::None => None,
            DigestMode::Known(digest) => Some(digest),
            DigestMode::Computing(state) => Some(state.finish()),
        };
        Manifest {
            entries: self.entries,
            total_length: self.total_length,
            native_digest,
            media_type: self.media_type,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        let entries = (0..5u8)
            .map(|i| ManifestEntry {
                id: ChunkId([i; 32]),
                len: 100 + u32::from(i),
            })
            .collect();
        Manifest::new(entries).unwrap()
    }

    #[test]
    fn encoding_round_trips_with_every_digest_kind() {
        let digests = [
            None,
            Some(NativeDigest::sha256_of(b"x")),
            Some(NativeDigest::git_sha1_of(GitObjectType::Tree, b"x")),
            Some(NativeDigest::git_sha256_of(GitObjectType::Tag, b"x")),
        ];
        for digest in digests {
            for media_type in ["", "application/vnd.oci.image.layer.v1.tar+gzip"] {
                let manifest = sample()
                    .with_native_digest(digest)
                    .with_media_type(media_type);
                let bytes = manifest.encode();
                let decoded = Manifest::decode(&bytes).unwrap();
                assert_eq!(decoded, manifest);
                assert_eq!(decoded.id(), ManifestId::of_encoding(&bytes));
            }
        }
    }

    #[test]
    fn empty_manifest_round_trips() {
        let manifest = Manifest::new(Vec::new()).unwrap();
        assert_eq!(manifest.total_length(), 0);
        assert_eq!(Manifest::decode(&manifest.encode()).unwrap(), manifest);
    }

    #[test]
    fn inconsistent_wire_manifests_are_refused() {
        let mut proto = sample().to_proto();
        proto.total_length += 1;
        assert!(matches!(
            Manifest::decode(&proto.encode_to_vec()),
            Err(ManifestError::Invalid(_))
        ));

        let mut proto = sample().to_proto();
        proto.native_digest = Some(v1::NativeDigest {
            algorithm: DigestAlgorithm::Sha256 as i32,
            value: vec![0; 32],
            object_type: "blob".into(),
        });
        assert!(matches!(
            Manifest::from_proto(proto),
            Err(ManifestError::Invalid(_))
        ));

        let mut proto = sample().to_proto();
        proto.native_digest = Some(v1::NativeDigest {
            algorithm: DigestAlgorithm::GitSha1 as i32,
            value: vec![0; 32],
            object_type: "blob".into(),
        });
        assert!(matches!(
            Manifest::from_proto(proto),
            Err(ManifestError::Invalid(_))
        ));
    }

    #[test]
    fn non_canonical_encodings_are_refused() {
        let mut bytes = sample().encode();
        // An unknown field (number 15, varint 1) appended.
        bytes.extend_from_slice(&[15 << 3, 1]);
        assert_eq!(Manifest::decode(&bytes), Err(ManifestError::NonCanonical));
        // The total length field repeated: prost keeps the last value.
        let mut bytes = sample().encode();
        bytes.extend_from_slice(&[1 << 3, 0]);
        assert_eq!(Manifest::decode(&bytes), Err(ManifestError::NonCanonical));
    }

    #[test]
    fn builder_checks_order_and_computes_sha256() {
        let data = b"hello, world";
        let mut builder = ManifestBuilder::new()
            .computing_sha256()
            .media_type("text/plain");
        let first = ChunkSpan {
            offset: 0,
            len: 5,
            id: ChunkId::of(&data[..5]),
        };
        let second = ChunkSpan {
            offset: 5,
            len: 7,
            id: ChunkId::of(&data[5..]),
        };
        assert!(matches!(
            builder.push(second, &data[5..]),
            Err(ManifestError::OutOfOrder {
                expected: 0,
                found: 5
            })
        ));
        builder.push(first, &data[..5]).unwrap();
        assert!(matches!(
            builder.push(second, &data[5..11]),
            Err(ManifestError::DataLength { .. })
        ));
        builder.push(second, &data[5..]).unwrap();
        let manifest = builder.finish();
        assert_eq!(manifest.total_length(), 12);
        assert_eq!(
            manifest.native_digest(),
            Some(&NativeDigest::sha256_of(data))
        );
        assert_eq!(manifest.media_type(), Some("text/plain"));
        assert_eq!(manifest.spans().collect::<Vec<_>>(), vec![first, second]);
    }

    #[test]
    fn new_refuses_empty_chunks() {
        let entries = vec![
            ManifestEntry {
                id: ChunkId([0; 32]),
                len: 1,
            },
            ManifestEntry {
                id: ChunkId([0; 32]),
                len: 0,
            },
        ];
        assert_eq!(
            Manifest::new(entries),
            Err(ManifestError::EmptyChunk { index: 1 })
        );
    }
}
