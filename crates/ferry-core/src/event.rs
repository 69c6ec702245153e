//! What the engine tells its driver, pulled with `Engine::poll_event`.

use ferry_chunk::ManifestId;

use crate::types::{BundleId, LinkId, NodeId};

/// Why a bundle was refused or deleted.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Reason {
    DepletedStorage,
    Redundant,
    Expired,
    Unauthorised,
    NoRoute,
    HopLimit,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Event {
    /// A bundle for this node is complete, verified and durable.
    Delivered {
        bundle: BundleId,
        manifest: ManifestId,
    },
    /// This node took custody (after syncing the bundle).
    CustodyAccepted {
        bundle: BundleId,
        from: Option<NodeId>,
    },
    /// Every next hop took custody; this node no longer holds the bundle
    /// for forwarding.
    CustodyReleased { bundle: BundleId },
    /// This node refused custody of an offered bundle.
    CustodyRefused { bundle: BundleId, reason: Reason },
    /// The bundle's lifetime ended here; it was deleted.
    Expired { bundle: BundleId },
    /// A node reported that it deleted a bundle this node sourced (or is the
    /// report-to endpoint of) while it still held custody of it.
    DeletionReported {
        bundle: BundleId,
        reporter: NodeId,
        reason: Reason,
        /// The reporter's words, when it gave any.
        detail: String,
    },
    /// Bytes of a bundle received so far from a neighbour.
    Progress {
        bundle: BundleId,
        received: u64,
        total: u64,
    },
    /// A session ended because of the peer's bad input.
    SessionClosed { link: LinkId, reason: String },
    /// The store failed; the engine made no promise based on the failed write.
    StoreFailed { detail: String },
}
