//! Bundles: the unit of custody. The header as the engine sees it, and the
//! record a custodian keeps of each bundle it holds.

use std::collections::BTreeSet;
use std::time::Duration;

use ferry_chunk::ManifestId;
use ferry_proto::v1;
use prost::Message;

use crate::types::{BundleId, Endpoint, Instant, NodeId, Priority};

/// What a bundle carries, so the far side knows which adapter applies it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum PayloadKind {
    Blob,
    Git,
    Oci,
    Admin,
}

impl PayloadKind {
    fn to_proto(self) -> v1::PayloadKind {
        match self {
            PayloadKind::Blob => v1::PayloadKind::Blob,
            PayloadKind::Git => v1::PayloadKind::Git,
            PayloadKind::Oci => v1::PayloadKind::Oci,
            PayloadKind::Admin => v1::PayloadKind::Admin,
        }
    }

    fn from_proto(value: i32) -> Self {
        match v1::PayloadKind::try_from(value) {
            Ok(v1::PayloadKind::Git) => PayloadKind::Git,
            Ok(v1::PayloadKind::Oci) => PayloadKind::Oci,
            Ok(v1::PayloadKind::Admin) => PayloadKind::Admin,
            _ => PayloadKind::Blob,
        }
    }
}

/// Everything a node needs to decide on custody, routing and expiry.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct BundleHeader {
    pub id: BundleId,
    pub destination: Endpoint,
    pub lifetime: Duration,
    pub priority: Priority,
    pub kind: PayloadKind,
    pub manifest: ManifestId,
    /// Encoded length of the root manifest.
    pub manifest_len: u32,
    /// Payload bytes the manifest describes.
    pub payload_len: u64,
    pub report_to: Option<Endpoint>,
    /// Adapter-specific release description.
    pub release: Vec<u8>,
    /// The publisher's signature of `release`, or empty; carried unread.
    pub signature: Vec<u8>,
    pub hop_count: u32,
}

impl BundleHeader {
    /// When the bundle expires everywhere.
    pub fn expires_at(&self) -> Instant {
        Instant::from_millis(self.id.created_ms) + self.lifetime
    }

    pub fn to_proto(&self) -> v1::BundleHeader {
        v1::BundleHeader {
            id: Some(self.id.to_proto()),
            destination: Some(self.destination.to_proto()),
            lifetime_ms: self.lifetime.as_millis().min(u128::from(u64::MAX)) as u64,
            priority: self.priority.to_proto() as i32,
            kind: self.kind.to_proto() as i32,
            manifest_id: self.manifest.as_bytes().to_vec(),
            manifest_length: self.manifest_len,
            payload_length: self.payload_len,
            report_to: self.report_to.as_ref().map(Endpoint::to_proto),
            release: self.release.clone(),
            hop_count: self.hop_count,
            signature: self.signature.clone(),
        }
    }

    /// From a header that passed `ferry_proto::Validate`; `None` if it did not.
    pub fn from_proto(proto: &v1::BundleHeader) -> Option<Self> {
        Some(BundleHeader {
            id: BundleId::from_proto(proto.id.as_ref()?)?,
            destination: Endpoint::from_proto(proto.destination.as_ref()?)?,
            lifetime: Duration::from_millis(proto.lifetime_ms),
            priority: Priority::from_proto(proto.priority),
            kind: PayloadKind::from_proto(proto.kind),
            manifest: ManifestId::from_slice(&proto.manifest_id)?,
            manifest_len: proto.manifest_length,
            payload_len: proto.payload_length,
            report_to: match &proto.report_to {
                Some(endpoint) => Some(Endpoint::from_proto(endpoint)?),
                None => None,
            },
            release: proto.release.clone(),
            signature: proto.signature.clone(),
            hop_count: proto.hop_count,
        })
    }
}

/// The durable record of a bundle this node holds. Written with
/// `write_synced` when custody is taken; custody is a promise.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct BundleRecord {
    pub header: BundleHeader,
    /// The previous custodian, to be told when we took custody (None: we made it).
    pub custody_from: Option<NodeId>,
    /// Next hops that have not yet taken custody; custody is released when empty.
    pub pending_hops: BTreeSet<NodeId>,
    /// Delivered to this node's application.
    pub delivered: bool,
}

/// On-disk form of [`BundleRecord`].
#[derive(Clone, PartialEq, prost::Message)]
struct RecordProto {
    #[prost(message, optional, tag = "1")]
    header: Option<v1::BundleHeader>,
    #[prost(bytes = "vec", optional, tag = "2")]
    custody_from: Option<Vec<u8>>,
    #[prost(bytes = "vec", repeated, tag = "3")]
    pending_hops: Vec<Vec<u8>>,
    #[prost(bool, tag = "4")]
    delivered: bool,
}

impl BundleRecord {
    pub fn encode(&self) -> Vec<u8> {
        RecordProto {
            header: Some(self.header.to_proto()),
            custody_from: self.custody_from.map(|n| n.0.to_vec()),
            pending_hops: self.pending_hops.iter().map(|n| n.0.to_vec()).collect(),
            delivered: self.delivered,
        }
        .encode_to_vec()
    }

    /// `None` if the bytes are not a record this build wrote.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        use ferry_proto::Validate;
        let proto = RecordProto::decode(bytes).ok()?;
        let header = proto.header?;
        header.validate().ok()?;
        Some(BundleRecord {
            header: BundleHeader::from_proto(&header)?,
            custody_from: match proto.custody_from {
                Some(bytes) => Some(NodeId::from_slice(&bytes)?),
                None => None,
            },
            pending_hops: proto
                .pending_hops
                .iter()
                .map(|b| NodeId::from_slice(b))
                .collect::<Option<_>>()?,
            delivered: proto.delivered,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips() {
        let record = BundleRecord {
            header: BundleHeader {
                id: BundleId {
                    source: NodeId([1; 32]),
                    created_ms: 5,
                    sequence: 9,
                },
                destination: Endpoint::Group("leaves".into()),
                lifetime: Duration::from_secs(3600),
                priority: Priority::Expedited,
                kind: PayloadKind::Git,
                manifest: ManifestId::of_encoding(b"m"),
                manifest_len: 100,
                payload_len: 1 << 20,
                report_to: Some(Endpoint::Node(NodeId([2; 32]))),
                release: b"refs/heads/main".to_vec(),
                signature: vec![7; 100],
                hop_count: 1,
            },
            custody_from: Some(NodeId([3; 32])),
            pending_hops: [NodeId([4; 32]), NodeId([5; 32])].into(),
            delivered: true,
        };
        assert_eq!(BundleRecord::decode(&record.encode()), Some(record));
        assert_eq!(BundleRecord::decode(b"\xff\xff"), None);
    }
}
