//! Engine configuration: who this node is, where bundles go, and timing.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::contact_plan::ContactPlan;
use crate::types::{Endpoint, Instant, NodeId};

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
        self.members(me, destination)
            .filter_map(|member| self.next_hop_of(member))
            .collect()
    }

    /// The nodes `destination` names, other than `me`.
    fn members(&self, me: NodeId, destination: &Endpoint) -> impl Iterator<Item = NodeId> {
        let members: BTreeSet<NodeId> = match destination {
            Endpoint::Node(node) => [*node].into(),
            Endpoint::Group(name) => self.groups.get(name).cloned().unwrap_or_default(),
        };
        members.into_iter().filter(move |member| *member != me)
    }

    fn next_hop_of(&self, member: NodeId) -> Option<NodeId> {
        self.next_hop
            .get(&member)
            .or(self.default_hop.as_ref())
            .copied()
    }
}

/// How an engine behaves. `seed` feeds its only random stream.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub node: NodeId,
    pub seed: u64,
    pub routes: Routes,
    /// Expected contacts; where it reaches a destination, it overrides
    /// `routes` (see [`ContactPlan::route`]).
    pub contact_plan: ContactPlan,
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
            contact_plan: ContactPlan::default(),
            member_of: BTreeSet::new(),
            custody_signal_delay: Duration::from_millis(50),
            retransmit_rtts: 3,
            retransmit_slack: Duration::from_millis(200),
            retransmit_max: Duration::from_secs(600),
            max_hops: 32,
            agent: format!("ferry-core {}", env!("CARGO_PKG_VERSION")),
        }
    }

    /// Where `bytes` for `destination` go from here at `now`, and whether
    /// this node is itself a destination. Each member is routed over the
    /// contact plan when it reaches the member by `deadline`, else by the
    /// static routes; each neighbour appears once.
    pub fn plan(
        &self,
        destination: &Endpoint,
        now: Instant,
        bytes: u64,
        deadline: Instant,
    ) -> (BTreeSet<NodeId>, bool) {
        let local = match destination {
            Endpoint::Node(node) => *node == self.node,
            Endpoint::Group(name) => self.member_of.contains(name),
        };
        if self.contact_plan.is_empty() {
            return (self.routes.next_hops(self.node, destination), local);
        }
        let hops = self
            .routes
            .members(self.node, destination)
            .filter_map(|member| {
                self.contact_plan
                    .route(self.node, member, now, bytes, deadline)
                    .map(|(hop, _)| hop)
                    .or_else(|| self.routes.next_hop_of(member))
            })
            .collect();
        (hops, local)
    }
}
