//! Engine configuration: who this node is, where bundles go, and timing.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::types::{Endpoint, NodeId};

/// Static routes and group membership.
#[derive(Clone, Debug, Default)]
pub struct Routes {
    /// Destination node → the neighbour to hand it to.
    pub next_hop: BTreeMap<NodeId, NodeId>,
    /// Neighbour for destinations without a route of their own.
    pub default_hop: Option<NodeId>,
    /// Group name → its member nodes.
    pub groups: BTreeMap<String, BTreeSet<NodeId>>,
}

impl Routes {
    /// The neighbours a bundle for `destination` goes to from `me`. Each
    /// neighbour appears once, so a group bundle crosses each link once and
    /// the next hop fans it out.
    pub fn next_hops(&self, me: NodeId, destination: &Endpoint) -> BTreeSet<NodeId> {
        let members: BTreeSet<NodeId> = match destination {
            Endpoint::Node(node) => [*node].into(),
            Endpoint::Group(name) => self.groups.get(name).cloned().unwrap_or_default(),
        };
        members
            .into_iter()
            .filter(|member| *member != me)
            .filter_map(|member| {
                self.next_hop
                    .get(&member)
                    .or(self.default_hop.as_ref())
                    .copied()
            })
            .collect()
    }
}

/// How an engine behaves. `seed` feeds its only random stream.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub node: NodeId,
    pub seed: u64,
    pub routes: Routes,
    /// Groups this node belongs to: bundles for them are delivered here.
    pub member_of: BTreeSet<String>,
    /// Custody signals wait this long so several can share one frame.
    pub custody_signal_delay: Duration,
    /// First re-offer after an unanswered offer or checkpoint, as a multiple
    /// of the link's round-trip time, plus `retransmit_slack`.
    pub retransmit_rtts: u32,
    pub retransmit_slack: Duration,
    /// Re-offers back off by doubling up to this.
    pub retransmit_max: Duration,
    /// Refuse bundles that have crossed this many hops (a loop guard).
    pub max_hops: u32,
    /// Free text sent in Hello.
    pub agent: String,
}

impl EngineConfig {
    pub fn new(node: NodeId, seed: u64) -> Self {
        Self {
            node,
            seed,
            routes: Routes::default(),
            member_of: BTreeSet::new(),
            custody_signal_delay: Duration::from_millis(50),
            retransmit_rtts: 3,
            retransmit_slack: Duration::from_millis(200),
            retransmit_max: Duration::from_secs(600),
            max_hops: 32,
            agent: format!("ferry-core {}", env!("CARGO_PKG_VERSION")),
        }
    }

    /// Where a bundle for `destination` goes from here, and whether this node
    /// is itself a destination.
    pub fn plan(&self, destination: &Endpoint) -> (BTreeSet<NodeId>, bool) {
        let local = match destination {
            Endpoint::Node(node) => *node == self.node,
            Endpoint::Group(name) => self.member_of.contains(name),
        };
        (self.routes.next_hops(self.node, destination), local)
    }
}
