//! The smallest network with a relay: base → relay → leaf on two wires of
//! one model, which benches and cross-crate tests build again and again.

use ferry_core::{EngineConfig, MemStore, NodeId, Routes};

use crate::{LinkModel, Net, NodeIndex, WireId};

/// A base, a relay and a leaf (node ids `[1; 32]`, `[2; 32]`, `[3; 32]`),
/// routed towards the leaf, both wires up.
pub struct Chain {
    pub net: Net,
    pub base: NodeIndex,
    pub relay: NodeIndex,
    pub leaf: NodeIndex,
    /// base ↔ relay.
    pub first_hop: WireId,
    /// relay ↔ leaf.
    pub last_hop: WireId,
}

impl Chain {
    pub const BASE: NodeId = NodeId([1; 32]);
    pub const RELAY: NodeId = NodeId([2; 32]);
    pub const LEAF: NodeId = NodeId([3; 32]);

    /// Each engine's own seed is derived from `seed` (the base's is `seed`).
    pub fn new(seed: u64, model: LinkModel) -> Self {
        let mut net = Net::new(seed);
        let routed = |node, seed, next| {
            let mut config = EngineConfig::new(node, seed);
            config.routes = Routes {
                next_hop: [(Self::LEAF, next)].into(),
                ..Routes::default()
            };
            config
        };
        let base = net.add_node(routed(Self::BASE, seed, Self::RELAY), MemStore::new());
        let relay = net.add_node(routed(Self::RELAY, seed + 1, Self::LEAF), MemStore::new());
        let leaf = net.add_node(EngineConfig::new(Self::LEAF, seed + 2), MemStore::new());
        let first_hop = net.add_wire(base, relay, model.clone());
        let last_hop = net.add_wire(relay, leaf, model);
        net.set_up(first_hop, true);
        net.set_up(last_hop, true);
        Self {
            net,
            base,
            relay,
            leaf,
            first_hop,
            last_hop,
        }
    }
}
