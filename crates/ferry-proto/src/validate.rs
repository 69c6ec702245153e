//! Structural validation of decoded messages: field widths, ranges and
//! internal consistency that protobuf itself cannot express.
//!
//! Semantic checks (is this bundle known, is this peer trusted) belong to the
//! engine; this module only guarantees that a frame is well-formed.

use crate::v1::{
    self, BundleHeader, BundleId, ChunkData, CustodySignal, Endpoint, Fragment, Hello, Manifest,
    NativeDigest, Offer, StatusReport, WantList, frame::Body,
};

/// Width of node ids, chunk ids and manifest ids.
pub const ID_LEN: usize = 32;
/// Chunk index that names a bundle's root manifest in WantList/ChunkData.
pub const MANIFEST_INDEX: u32 = u32::MAX;

/// A well-formed protobuf message that breaks a rule of the schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct ValidationError {
    /// Dotted path of the offending field, e.g. `offer.bundles.header.id.source`.
    pub field: &'static str,
    pub problem: String,
}

fn fail<T>(field: &'static str, problem: impl Into<String>) -> Result<T, ValidationError> {
    Err(ValidationError {
        field,
        problem: problem.into(),
    })
}

fn id(field: &'static str, bytes: &[u8]) -> Result<(), ValidationError> {
    if bytes.len() != ID_LEN {
        return fail(
            field,
            format!("must be {ID_LEN} bytes, found {}", bytes.len()),
        );
    }
    Ok(())
}

fn required<'a, T>(field: &'static str, value: &'a Option<T>) -> Result<&'a T, ValidationError> {
    match value {
        Some(v) => Ok(v),
        None => fail(field, "is required"),
    }
}

/// Checks a decoded message against the schema's rules.
pub trait Validate {
    fn validate(&self) -> Result<(), ValidationError>;
}

impl Validate for v1::Frame {
    fn validate(&self) -> Result<(), ValidationError> {
        match required("frame.body", &self.body)? {
            Body::Hello(m) => m.validate(),
            Body::Offer(m) => m.validate(),
            Body::Want(m) => m.validate(),
            Body::Chunk(m) => m.validate(),
            Body::Custody(m) => m.validate(),
            Body::Status(m) => m.validate(),
            Body::Fragment(m) => m.validate(),
            Body::Keepalive(_) | Body::Close(_) => Ok(()),
        }
    }
}

impl Validate for Hello {
    fn validate(&self) -> Result<(), ValidationError> {
        id("hello.node_id", &self.node_id)?;
        if self.min_version == 0 || self.min_version > self.max_version {
            return fail(
                "hello.min_version",
                format!(
                    "version range {}..={} is empty",
                    self.min_version, self.max_version
                ),
            );
        }
        if self.max_frame_size < 32 {
            return fail(
                "hello.max_frame_size",
                format!("{} is below the 32-byte minimum", self.max_frame_size),
            );
        }
        Ok(())
    }
}

impl Validate for BundleId {
    fn validate(&self) -> Result<(), ValidationError> {
        id("bundle_id.source", &self.source)
    }
}

impl Validate for Endpoint {
    fn validate(&self) -> Result<(), ValidationError> {
        match required("endpoint.kind", &self.kind)? {
            v1::endpoint::Kind::Node(node) => id("endpoint.node", node),
            v1::endpoint::Kind::Group(name) if name.is_empty() => {
                fail("endpoint.group", "must not be empty")
            }
            v1::endpoint::Kind::Group(name) if name.len() > MAX_GROUP_NAME_LEN => fail(
                "endpoint.group",
                format!("{} bytes exceeds {MAX_GROUP_NAME_LEN}", name.len()),
            ),
            v1::endpoint::Kind::Group(_) => Ok(()),
        }
    }
}

/// Longest group name an endpoint may carry.
pub const MAX_GROUP_NAME_LEN: usize = 255;
/// Largest release description a bundle header may carry. It bounds every
/// offer, so any control frame fits `MAX_FRAGMENTED_FRAME` when it must be
/// sent in fragments.
pub const MAX_RELEASE_LEN: usize = 64 << 10;
/// Longest publisher signature a bundle header may carry.
pub const MAX_SIGNATURE_LEN: usize = 4 << 10;
/// Longest `detail` of a status report.
pub const MAX_REPORT_DETAIL_LEN: usize = 512;

impl Validate for BundleHeader {
    fn validate(&self) -> Result<(), ValidationError> {
        if self.release.len() > MAX_RELEASE_LEN {
            return fail(
                "bundle_header.release",
                format!("{} bytes exceeds {MAX_RELEASE_LEN}", self.release.len()),
            );
        }
        if self.signature.len() > MAX_SIGNATURE_LEN {
            return fail(
                "bundle_header.signature",
                format!("{} bytes exceeds {MAX_SIGNATURE_LEN}", self.signature.len()),
            );
        }
        required("bundle_header.id", &self.id)?.validate()?;
        required("bundle_header.destination", &self.destination)?.validate()?;
        if let Some(report_to) = &self.report_to {
            report_to.validate()?;
        }
        id("bundle_header.manifest_id", &self.manifest_id)?;
        if self.lifetime_ms == 0 {
            return fail("bundle_header.lifetime_ms", "must be positive");
        }
        Ok(())
    }
}

impl Validate for NativeDigest {
    fn validate(&self) -> Result<(), ValidationError> {
        use v1::DigestAlgorithm as A;
        let (width, git) = match A::try_from(self.algorithm) {
            Ok(A::Sha256) => (32, false),
            Ok(A::GitSha1) => (20, true),
            Ok(A::GitSha256) => (32, true),
            Ok(A::Unspecified) | Err(_) => {
                return fail(
                    "native_digest.algorithm",
                    format!("unknown algorithm {}", self.algorithm),
                );
            }
        };
        if self.value.len() != width {
            return fail(
                "native_digest.value",
                format!("must be {width} bytes, found {}", self.value.len()),
            );
        }
        if git
            && !matches!(
                self.object_type.as_str(),
                "blob" | "tree" | "commit" | "tag"
            )
        {
            return fail(
                "native_digest.object_type",
                format!("{:?} is not a Git object type", self.object_type),
            );
        }
        Ok(())
    }
}

impl Validate for Manifest {
    fn validate(&self) -> Result<(), ValidationError> {
        if !self.chunk_ids.len().is_multiple_of(ID_LEN) {
            return fail(
                "manifest.chunk_ids",
                format!(
                    "length {} is not a multiple of {ID_LEN}",
                    self.chunk_ids.len()
                ),
            );
        }
        let count = self.chunk_ids.len() / ID_LEN;
        if count != self.chunk_lengths.len() {
            return fail(
                "manifest.chunk_lengths",
                format!("{} lengths for {count} chunk ids", self.chunk_lengths.len()),
            );
        }
        if self.chunk_lengths.contains(&0) {
            return fail("manifest.chunk_lengths", "a chunk is empty");
        }
        let sum: u64 = self.chunk_lengths.iter().map(|&l| u64::from(l)).sum();
        if sum != self.total_length {
            return fail(
                "manifest.total_length",
                format!("is {} but the chunks add up to {sum}", self.total_length),
            );
        }
        if let Some(digest) = &self.native_digest {
            digest.validate()?;
        }
        Ok(())
    }
}

impl Validate for Offer {
    fn validate(&self) -> Result<(), ValidationError> {
        for bundle in &self.bundles {
            let header = required("offer.bundles.header", &bundle.header)?;
            if header.manifest_id.is_empty() {
                // Allowed only with the manifest inline, whose hash is the id.
                if bundle.manifest.is_empty() {
                    return fail(
                        "offer.bundles.header.manifest_id",
                        "empty without an inline manifest",
                    );
                }
                let mut named = header.clone();
                named.manifest_id = vec![0; ID_LEN];
                named.validate()?;
            } else {
                header.validate()?;
            }
        }
        Ok(())
    }
}

impl Validate for WantList {
    fn validate(&self) -> Result<(), ValidationError> {
        for range in &self.ranges {
            if range.start >= range.end {
                return fail(
                    "want.ranges",
                    format!("range {}..{} is empty", range.start, range.end),
                );
            }
        }
        for piece in &self.pieces {
            for range in &piece.ranges {
                if range.length == 0 || range.offset.checked_add(range.length).is_none() {
                    return fail(
                        "want.pieces.ranges",
                        format!("byte range {}+{} is invalid", range.offset, range.length),
                    );
                }
            }
        }
        Ok(())
    }
}

impl Validate for ChunkData {
    fn validate(&self) -> Result<(), ValidationError> {
        if !self.chunk_id.is_empty() {
            id("chunk.chunk_id", &self.chunk_id)?;
        }
        if self.data.is_empty() {
            return fail("chunk.data", "must not be empty");
        }
        let end = u64::from(self.offset) + self.data.len() as u64;
        if end > u64::from(self.chunk_length) {
            return fail(
                "chunk.data",
                format!(
                    "piece {}+{} runs past the chunk length {}",
                    self.offset,
                    self.data.len(),
                    self.chunk_length
                ),
            );
        }
        Ok(())
    }
}

/// Largest frame that may be sent in fragments: control frames only, which
/// stay far below this.
pub const MAX_FRAGMENTED_FRAME: u32 = 1 << 20;

impl Validate for Fragment {
    fn validate(&self) -> Result<(), ValidationError> {
        if self.data.is_empty() {
            return fail("fragment.data", "must not be empty");
        }
        if self.total > MAX_FRAGMENTED_FRAME {
            return fail(
                "fragment.total",
                format!("{} bytes exceeds {MAX_FRAGMENTED_FRAME}", self.total),
            );
        }
        let end = u64::from(self.offset) + self.data.len() as u64;
        if end > u64::from(self.total) {
            return fail(
                "fragment.data",
                format!(
                    "part {}+{} runs past the frame length {}",
                    self.offset,
                    self.data.len(),
                    self.total
                ),
            );
        }
        Ok(())
    }
}

impl Validate for CustodySignal {
    fn validate(&self) -> Result<(), ValidationError> {
        if self.ranges.is_empty() {
            return fail("custody.ranges", "must name at least one bundle");
        }
        for range in &self.ranges {
            if !range.source.is_empty() {
                id("custody.ranges.source", &range.source)?;
            }
            if range.first > range.last {
                return fail(
                    "custody.ranges",
                    format!("range {}..={} is empty", range.first, range.last),
                );
            }
        }
        if !self.accepted && self.reason == v1::RefusalReason::Unspecified as i32 {
            return fail("custody.reason", "a refusal must give a reason");
        }
        Ok(())
    }
}

impl Validate for StatusReport {
    fn validate(&self) -> Result<(), ValidationError> {
        required("status.bundle", &self.bundle)?.validate()?;
        id("status.reporter", &self.reporter)?;
        if self.detail.len() > MAX_REPORT_DETAIL_LEN {
            return fail(
                "status.detail",
                format!(
                    "{} bytes exceeds {MAX_REPORT_DETAIL_LEN}",
                    self.detail.len()
                ),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(lengths: Vec<u32>) -> Manifest {
        Manifest {
            total_length: lengths.iter().map(|&l| u64::from(l)).sum(),
            chunk_ids: vec![7; lengths.len() * ID_LEN],
            chunk_lengths: lengths,
            native_digest: None,
            media_type: String::new(),
        }
    }

    #[test]
    fn consistent_manifest_is_valid() {
        manifest(vec![4096, 10]).validate().unwrap();
    }

    #[test]
    fn manifest_with_wrong_total_is_invalid() {
        let mut m = manifest(vec![4096, 10]);
        m.total_length += 1;
        assert_eq!(m.validate().unwrap_err().field, "manifest.total_length");
    }

    #[test]
    fn manifest_with_ragged_ids_is_invalid() {
        let mut m = manifest(vec![4096]);
        m.chunk_ids.pop();
        assert_eq!(m.validate().unwrap_err().field, "manifest.chunk_ids");
    }

    #[test]
    fn chunk_piece_past_its_chunk_is_invalid() {
        let piece = ChunkData {
            chunk_length: 4,
            offset: 2,
            data: vec![0; 3].into(),
            ..Default::default()
        };
        assert_eq!(piece.validate().unwrap_err().field, "chunk.data");
    }

    #[test]
    fn oversized_release_and_group_name_are_invalid() {
        let header = BundleHeader {
            id: Some(BundleId {
                source: vec![1; ID_LEN],
                created_ms: 1,
                sequence: 1,
            }),
            destination: Some(Endpoint {
                kind: Some(v1::endpoint::Kind::Group("leaves".into())),
            }),
            lifetime_ms: 1,
            manifest_id: vec![2; ID_LEN],
            ..Default::default()
        };
        header.validate().unwrap();
        let mut big = header.clone();
        big.release = vec![0; MAX_RELEASE_LEN + 1];
        assert_eq!(big.validate().unwrap_err().field, "bundle_header.release");
        let mut signed = header.clone();
        signed.signature = vec![0; MAX_SIGNATURE_LEN];
        signed.validate().unwrap();
        signed.signature.push(0);
        assert_eq!(
            signed.validate().unwrap_err().field,
            "bundle_header.signature"
        );
        let mut long = header;
        long.destination = Some(Endpoint {
            kind: Some(v1::endpoint::Kind::Group(
                "g".repeat(MAX_GROUP_NAME_LEN + 1),
            )),
        });
        assert_eq!(long.validate().unwrap_err().field, "endpoint.group");
    }

    #[test]
    fn refusal_without_reason_is_invalid() {
        let signal = CustodySignal {
            accepted: false,
            reason: 0,
            ranges: vec![v1::SequenceRange {
                source: vec![1; 32],
                first: 1,
                last: 2,
            }],
        };
        assert_eq!(signal.validate().unwrap_err().field, "custody.reason");
    }

    #[test]
    fn an_offer_leaves_its_manifest_id_out_only_with_the_manifest_inline() {
        let header = BundleHeader {
            id: Some(BundleId {
                source: vec![1; 32],
                created_ms: 1,
                sequence: 1,
            }),
            destination: Some(Endpoint {
                kind: Some(v1::endpoint::Kind::Node(vec![3; 32])),
            }),
            lifetime_ms: 1000,
            manifest_id: Vec::new(),
            ..Default::default()
        };
        let mut offer = Offer {
            bundles: vec![v1::OfferedBundle {
                handle: 1,
                header: Some(header),
                manifest: Vec::new(),
            }],
        };
        assert_eq!(
            offer.validate().unwrap_err().field,
            "offer.bundles.header.manifest_id"
        );
        offer.bundles[0].manifest = vec![1, 2, 3];
        assert!(offer.validate().is_ok());
        offer.bundles[0].header.as_mut().unwrap().manifest_id = vec![9; 3];
        assert!(offer.validate().is_err());
    }

    #[test]
    fn custody_for_the_receivers_own_bundles_may_leave_the_source_out() {
        let mut signal = CustodySignal {
            accepted: true,
            reason: 0,
            ranges: vec![v1::SequenceRange {
                source: Vec::new(),
                first: 1,
                last: 2,
            }],
        };
        assert!(signal.validate().is_ok());
        signal.ranges[0].source = vec![1; 5];
        assert_eq!(
            signal.validate().unwrap_err().field,
            "custody.ranges.source"
        );
    }
}
