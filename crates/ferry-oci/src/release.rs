//! `OciRelease`: the `release` of an OCI bundle — one repository, the tags
//! it moves, and the blob table of its payload (wire form
//! `ferry.v1.OciRelease`). Decoding validates everything a leaf relies on:
//! names, digests, and that the segments add up to the payload.

use std::collections::BTreeMap;

use ferry_proto::v1;
use prost::Message;

use crate::digest::{check_repository, check_tag};
use crate::recipes::{is_gzip_layer, max_segment};
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
    /// Empty: the segment is the blob. Otherwise the blob's rebuild recipe
    /// (wire form `ferry.v1.GzipRecipe`): the segment is its content
    /// packed chunk by chunk ([`crate::pack`]), and the leaf rebuilds the
    /// gzip blob from it.
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
        let mut payload = 0u64;
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
            if !blob.recipe.is_empty() {
                check_recipe(&digest, &blob).map_err(invalid)?;
            }
            payload = payload.checked_add(blob.segment_length).ok_or_else(|| {
                invalid("the segments add up to more than a payload can hold".into())
            })?;
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

    /// The blobs that travel with a rebuild recipe.
    pub fn rebuilt(&self) -> impl Iterator<Item = &BlobEntry> {
        self.blobs.iter().filter(|b| !b.recipe.is_empty())
    }

    /// The payload length the blob table describes.
    pub fn payload_length(&self) -> u64 {
        self.blobs.iter().map(|b| b.segment_length).sum()
    }
}

/// The longest recipe a blob entry may carry (a recipe holds the gzip
/// header, at most 4 KiB, and a few numbers).
pub const MAX_RECIPE_LEN: usize = ferry_recipe::recipe::MAX_HEADER + 64;

/// Whether a blob entry with a recipe makes sense: a gzip layer, a recipe
/// that decodes (one naming an encoder this node does not know is left for
/// apply to report), and a segment no longer than its content packed can be.
fn check_recipe(digest: &Digest, blob: &v1::OciBlob) -> Result<(), String> {
    if blob.recipe.len() > MAX_RECIPE_LEN {
        return Err(format!(
            "blob {digest}: a {}-byte recipe (at most {MAX_RECIPE_LEN})",
            blob.recipe.len()
        ));
    }
    if !is_gzip_layer(&blob.media_type) {
        return Err(format!(
            "blob {digest}: a rebuild recipe for a {} blob",
            blob.media_type
        ));
    }
    let recipe = match ferry_recipe::Recipe::decode(&blob.recipe) {
        Ok(recipe) => recipe,
        Err(ferry_recipe::RecipeError::Unsupported(_)) => return Ok(()),
        Err(e) => return Err(format!("blob {digest}: {e}")),
    };
    if recipe.plain_length == 0 {
        return Err(format!("blob {digest}: a recipe for empty content"));
    }
    // Packing adds a few bytes per chunk (stored blocks, stream ends) at most.
    let most = max_segment(recipe.plain_length, blob.size);
    let most = most.saturating_add(most / 64).saturating_add(4096);
    if blob.segment_length == 0 || blob.segment_length > most {
        return Err(format!(
            "blob {digest}: a {}-byte packed segment for {} bytes of content",
            blob.segment_length, recipe.plain_length
        ));
    }
    Ok(())
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

    /// Found by fuzzing: segment lengths whose sum overflows are refused
    /// at decode, before anything adds them up.
    #[test]
    fn segments_adding_up_past_u64_are_refused() {
        let mut release = sample();
        for (i, len) in [u64::MAX, 2].into_iter().enumerate() {
            release.blobs.push(BlobEntry {
                digest: Digest::of(&[i as u8]),
                media_type: "application/octet-stream".into(),
                size: len,
                segment_length: len,
                recipe: Vec::new(),
            });
        }
        let refused = OciRelease::decode(&release.encode()).unwrap_err();
        assert!(refused.to_string().contains("add up"), "{refused}");
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

    fn with_layer(media_type: &str, recipe: Vec<u8>, segment_length: u64) -> OciRelease {
        let mut release = sample();
        release.blobs.push(BlobEntry {
            digest: Digest::of(b"layer"),
            media_type: media_type.into(),
            size: 1000,
            segment_length,
            recipe,
        });
        release
    }

    fn recipe(plain_length: u64) -> Vec<u8> {
        ferry_recipe::Recipe {
            encoder: ferry_recipe::Encoder::Preflate,
            header: vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3],
            plain_length,
        }
        .encode()
    }

    #[test]
    fn recipes_are_accepted_for_gzip_layers_and_nonsense_is_refused() {
        let good = with_layer(media::OCI_LAYER_GZIP, recipe(5000), 1200);
        assert_eq!(OciRelease::decode(&good.encode()).unwrap(), good);
        let docker = with_layer(media::DOCKER_LAYER_GZIP, recipe(5000), 1200);
        assert!(OciRelease::decode(&docker.encode()).is_ok());
        let refused = |release: OciRelease, what: &str| {
            let err = OciRelease::decode(&release.encode()).unwrap_err();
            assert!(err.to_string().contains(what), "{what}: {err}");
        };
        refused(
            with_layer(media::OCI_LAYER_TAR, recipe(5000), 1200),
            "recipe for a",
        );
        refused(
            with_layer(media::OCI_LAYER_GZIP, vec![0xff, 0xff, 0xff], 1200),
            "not valid",
        );
        refused(
            with_layer(media::OCI_LAYER_GZIP, vec![7; MAX_RECIPE_LEN + 1], 1200),
            "recipe (at most",
        );
        refused(
            with_layer(media::OCI_LAYER_GZIP, recipe(5000), 1 << 30),
            "packed segment",
        );
        refused(
            with_layer(media::OCI_LAYER_GZIP, recipe(5000), 0),
            "packed segment",
        );
        refused(
            with_layer(media::OCI_LAYER_GZIP, recipe(0), 10),
            "empty content",
        );
        let mut bad_header = ferry_recipe::Recipe::decode(&recipe(5000)).unwrap();
        bad_header.header = vec![1, 2, 3];
        refused(
            with_layer(media::OCI_LAYER_GZIP, bad_header.encode(), 1200),
            "header",
        );
    }
}
