//! `OciRelease`: the `release` of an OCI bundle — one repository, the tags
//! it moves, and the blob table of its payload (wire form
//! `ferry.v1.OciRelease`). Decoding validates everything a leaf relies on:
//! names, digests, and that the segments add up to the payload.

use std::collections::BTreeMap;

use ferry_proto::v1;
use prost::Message;

use crate::digest::{check_repository, check_tag};
use crate::{Digest, media};

/// What a tag points at: an index or a manifest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TagTarget {
    pub digest: Digest,
    pub media_type: String,
}

/// One blob of the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobEntry {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    /// Its segment of the payload: starts where the previous one ends.
    pub segment_length: u64,
    /// Empty: the segment is the blob. Otherwise a rebuild recipe (not yet
    /// understood by this version, which refuses such releases).
    pub recipe: Vec<u8>,
}

/// A release: tags of one repository and the blobs they reach, in payload order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciRelease {
    pub repository: String,
    pub tags: BTreeMap<String, TagTarget>,
    pub blobs: Vec<BlobEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReleaseError {
    #[error("OCI release is not valid protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("OCI release: {0}")]
    Invalid(String),
}

impl OciRelease {
    /// The wire form.
    pub fn encode(&self) -> Vec<u8> {
        v1::OciRelease {
            repository: self.repository.clone(),
            tags: self
                .tags
                .iter()
                .map(|(name, target)| v1::OciTag {
                    name: name.clone(),
                    digest: target.digest.0.to_vec(),
                    media_type: target.media_type.clone(),
                })
                .collect(),
            blobs: self
                .blobs
                .iter()
                .map(|b| v1::OciBlob {
                    digest: b.digest.0.to_vec(),
                    media_type: b.media_type.clone(),
                    size: b.size,
                    segment_length: b.segment_length,
                    recipe: b.recipe.clone(),
                })
                .collect(),
        }
        .encode_to_vec()
    }

    /// Decodes and validates a release read from the wire.
    pub fn decode(bytes: &[u8]) -> Result<Self, ReleaseError> {
        let proto = v1::OciRelease::decode(bytes)?;
        let invalid = |s: String| ReleaseError::Invalid(s);
        check_repository(&proto.repository).map_err(invalid)?;
        let mut tags = BTreeMap::new();
        for tag in proto.tags {
            check_tag(&tag.name).map_err(invalid)?;
            let digest = Digest::from_slice(&tag.digest)
                .ok_or_else(|| invalid(format!("tag {}: digest is not 32 bytes", tag.name)))?;
            if !media::is_manifest(&tag.media_type) {
                return Err(invalid(format!(
                    "tag {}: {} is not a manifest or index media type",
                    tag.name, tag.media_type
                )));
            }
            let target = TagTarget {
                digest,
                media_type: tag.media_type,
            };
            if tags.insert(tag.name.clone(), target).is_some() {
                return Err(invalid(format!("tag {} is listed twice", tag.name)));
            }
        }
        let mut blobs = Vec::with_capacity(proto.blobs.len());
        let mut seen = std::collections::BTreeSet::new();
        for blob in proto.blobs {
            let digest = Digest::from_slice(&blob.digest)
                .ok_or_else(|| invalid("a blob digest is not 32 bytes".into()))?;
            if !seen.insert(digest) {
                return Err(invalid(format!("blob {digest} is listed twice")));
            }
            if blob.recipe.is_empty() && blob.segment_length != blob.size {
                return Err(invalid(format!(
                    "blob {digest}: a {}-byte segment for a {}-byte blob without a recipe",
                    blob.segment_length, blob.size
                )));
            }
            if blob.media_type.len() > 255 {
                return Err(invalid(format!("blob {digest}: media type too long")));
            }
            blobs.push(BlobEntry {
                digest,
                media_type: blob.media_type,
                size: blob.size,
                segment_length: blob.segment_length,
                recipe: blob.recipe,
            });
        }
        for (name, target) in &tags {
            if !seen.contains(&target.digest) {
                return Err(invalid(format!(
                    "tag {name} points at {}, which the release does not carry",
                    target.digest
                )));
            }
        }
        Ok(OciRelease {
            repository: proto.repository,
            tags,
            blobs,
        })
    }

    /// The payload length the blob table describes.
    pub fn payload_length(&self) -> u64 {
        self.blobs.iter().map(|b| b.segment_length).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> OciRelease {
        let blob = BlobEntry {
            digest: Digest::of(b"m"),
            media_type: media::OCI_MANIFEST.into(),
            size: 1,
            segment_length: 1,
            recipe: Vec::new(),
        };
        OciRelease {
            repository: "team/app".into(),
            tags: [(
                "v1".to_owned(),
                TagTarget {
                    digest: blob.digest,
                    media_type: media::OCI_MANIFEST.into(),
                },
            )]
            .into(),
            blobs: vec![blob],
        }
    }

    #[test]
    fn a_release_round_trips() {
        let release = sample();
        assert_eq!(OciRelease::decode(&release.encode()).unwrap(), release);
    }

    #[test]
    fn hostile_names_and_dangling_tags_are_refused() {
        let mut bad = sample();
        bad.repository = "../etc".into();
        assert!(OciRelease::decode(&bad.encode()).is_err());
        let mut bad = sample();
        bad.tags.insert(
            "v2".into(),
            TagTarget {
                digest: Digest::of(b"other"),
                media_type: media::OCI_MANIFEST.into(),
            },
        );
        let err = OciRelease::decode(&bad.encode()).unwrap_err();
        assert!(err.to_string().contains("does not carry"), "{err}");
        assert!(OciRelease::decode(b"\xff\xff").is_err());
    }
}
