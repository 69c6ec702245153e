//! The engine's vocabulary: node and bundle identities, endpoints, priority
//! and time. Every value the engine reasons about has its own type.

use std::fmt;
use std::time::Duration;

use ferry_proto::v1;

/// A node: the BLAKE3 hash of its Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub [u8; 32]);

impl NodeId {
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// All 64 hex digits (`Display` shows the first 16, for logs).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in &self.0[..8] {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

/// A point in time: microseconds since the Unix epoch. The engine never reads
/// a clock; every input carries `now` as one of these.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(pub u64);

impl Instant {
    pub const ZERO: Instant = Instant(0);

    pub fn from_millis(ms: u64) -> Self {
        Instant(ms.saturating_mul(1000))
    }

    pub fn as_millis(self) -> u64 {
        self.0 / 1000
    }

    pub fn saturating_add(self, d: Duration) -> Instant {
        Instant(
            self.0
                .saturating_add(d.as_micros().min(u128::from(u64::MAX)) as u64),
        )
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

impl std::ops::Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        self.saturating_add(d)
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:06}s", self.0 / 1_000_000, self.0 % 1_000_000)
    }
}

/// Unique across all nodes: the source, its creation time (ms) and a
/// per-source sequence number that only grows.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BundleId {
    pub source: NodeId,
    pub created_ms: u64,
    pub sequence: u64,
}

impl BundleId {
    /// Width of [`BundleId::to_key`].
    pub const KEY_LEN: usize = 48;

    /// Order-preserving key: source, then sequence, then creation time, big-endian.
    pub fn to_key(&self) -> [u8; Self::KEY_LEN] {
        let mut key = [0; Self::KEY_LEN];
        key[..32].copy_from_slice(&self.source.0);
        key[32..40].copy_from_slice(&self.sequence.to_be_bytes());
        key[40..].copy_from_slice(&self.created_ms.to_be_bytes());
        key
    }

    pub fn from_key(key: &[u8]) -> Option<Self> {
        if key.len() != Self::KEY_LEN {
            return None;
        }
        Some(BundleId {
            source: NodeId::from_slice(&key[..32])?,
            sequence: u64::from_be_bytes(key[32..40].try_into().ok()?),
            created_ms: u64::from_be_bytes(key[40..].try_into().ok()?),
        })
    }

    pub fn to_proto(&self) -> v1::BundleId {
        v1::BundleId {
            source: self.source.0.to_vec(),
            created_ms: self.created_ms,
            sequence: self.sequence,
        }
    }

    /// From a validated proto (see `ferry_proto::Validate`).
    pub fn from_proto(proto: &v1::BundleId) -> Option<Self> {
        Some(BundleId {
            source: NodeId::from_slice(&proto.source)?,
            created_ms: proto.created_ms,
            sequence: proto.sequence,
        })
    }
}

/// How long `bytes` take to leave at `rate_bps`; `None` when the rate is
/// unknown (zero). Saturates instead of overflowing.
pub fn transmission_time(bytes: u64, rate_bps: u64) -> Option<Duration> {
    let nanos = (u128::from(bytes) * 8 * 1_000_000_000).checked_div(u128::from(rate_bps))?;
    Some(Duration::from_nanos(
        u64::try_from(nanos).unwrap_or(u64::MAX),
    ))
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Node(node) => write!(f, "{node}"),
            Endpoint::Group(name) => write!(f, "group:{name}"),
        }
    }
}

impl fmt::Display for BundleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}@{}", self.source, self.sequence, self.created_ms)
    }
}

impl fmt::Debug for BundleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BundleId({self})")
    }
}

/// Where a bundle goes: one node, or every member of a group.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Endpoint {
    Node(NodeId),
    Group(String),
}

impl Endpoint {
    pub fn to_proto(&self) -> v1::Endpoint {
        v1::Endpoint {
            kind: Some(match self {
                Endpoint::Node(node) => v1::endpoint::Kind::Node(node.0.to_vec()),
                Endpoint::Group(name) => v1::endpoint::Kind::Group(name.clone()),
            }),
        }
    }

    pub fn from_proto(proto: &v1::Endpoint) -> Option<Self> {
        match proto.kind.as_ref()? {
            v1::endpoint::Kind::Node(bytes) => NodeId::from_slice(bytes).map(Endpoint::Node),
            v1::endpoint::Kind::Group(name) if !name.is_empty() => {
                Some(Endpoint::Group(name.clone()))
            }
            v1::endpoint::Kind::Group(_) => None,
        }
    }
}

/// Which bundles fill a contact first.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub enum Priority {
    Bulk,
    #[default]
    Normal,
    Expedited,
}

impl Priority {
    pub fn to_proto(self) -> v1::Priority {
        match self {
            Priority::Bulk => v1::Priority::Bulk,
            Priority::Normal => v1::Priority::Normal,
            Priority::Expedited => v1::Priority::Expedited,
        }
    }

    /// Unknown or unspecified values are treated as normal.
    pub fn from_proto(value: i32) -> Self {
        match v1::Priority::try_from(value) {
            Ok(v1::Priority::Bulk) => Priority::Bulk,
            Ok(v1::Priority::Expedited) => Priority::Expedited,
            _ => Priority::Normal,
        }
    }
}

/// Identifies one link of this node to the driver (daemon or simulator).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct LinkId(pub u32);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_key_round_trips_and_orders_by_source_then_sequence() {
        let a = BundleId {
            source: NodeId([1; 32]),
            created_ms: 900,
            sequence: 1,
        };
        let b = BundleId {
            source: NodeId([1; 32]),
            created_ms: 100,
            sequence: 2,
        };
        assert_eq!(BundleId::from_key(&a.to_key()), Some(a));
        assert!(a.to_key() < b.to_key());
    }

    #[test]
    fn unknown_priority_is_normal() {
        assert_eq!(Priority::from_proto(42), Priority::Normal);
        assert_eq!(
            Priority::from_proto(v1::Priority::Expedited as i32),
            Priority::Expedited
        );
    }
}
