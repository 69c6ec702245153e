//! Manifests each peer is known to hold: it took custody of a bundle
//! carrying one, or said it had it already.
//!
//! A hint for offers, never a promise. A release sent again (a directory of
//! which most files did not change, a Git or OCI release re-published) is
//! mostly bundles of manifests the next hop already holds. Such a bundle is
//! offered without its manifest inline and without chunks sent ahead of the
//! answer: the peer most likely needs nothing, and if it has since dropped
//! what it held, its want-list asks for it in the usual way, one round trip
//! later. The set is bounded (the oldest entry goes first) and not kept
//! across a restart.

use std::collections::{BTreeSet, VecDeque};

use ferry_chunk::ManifestId;

use crate::types::NodeId;

/// (peer, manifest) pairs, the latest [`PeerHolds::CAPACITY`] of them.
#[derive(Debug, Default)]
pub(crate) struct PeerHolds {
    /// Ordered, like every set in the engine: a hashed one would draw its
    /// keys from the OS's randomness.
    held: BTreeSet<(NodeId, ManifestId)>,
    order: VecDeque<(NodeId, ManifestId)>,
}

impl PeerHolds {
    /// At 64 bytes a pair, kept twice (set and order), about 9 MB at most
    /// whatever the fleet.
    pub const CAPACITY: usize = 1 << 16;

    /// `peer` holds `manifest` and every chunk it names.
    pub fn insert(&mut self, peer: NodeId, manifest: ManifestId) {
        if !self.held.insert((peer, manifest)) {
            return;
        }
        self.order.push_back((peer, manifest));
        if self.order.len() > Self::CAPACITY {
            let oldest = self.order.pop_front().expect("over capacity");
            self.held.remove(&oldest);
        }
    }

    pub fn contains(&self, peer: NodeId, manifest: ManifestId) -> bool {
        self.held.contains(&(peer, manifest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_pair_is_forgotten_first() {
        let mut holds = PeerHolds::default();
        let peer = NodeId([1; 32]);
        let manifest = |i: u32| ManifestId::of_encoding(&i.to_be_bytes());
        for i in 0..=PeerHolds::CAPACITY as u32 {
            holds.insert(peer, manifest(i));
        }
        // A repeat does not count twice.
        holds.insert(peer, manifest(5));
        assert!(!holds.contains(peer, manifest(0)));
        assert!(holds.contains(peer, manifest(1)));
        assert!(holds.contains(peer, manifest(PeerHolds::CAPACITY as u32)));
        assert!(!holds.contains(NodeId([2; 32]), manifest(1)));
        assert_eq!(holds.order.len(), PeerHolds::CAPACITY);
    }
}
