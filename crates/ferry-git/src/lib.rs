//! Git adapter for ferry: publish refs as thin packs, apply them at a leaf,
//! resolve the repositories a leaf serves.
//!
//! The library is store-agnostic: a [`Publisher`] turns a repository's refs
//! into a [`GitRelease`] and a pack body (the payload a ferry bundle
//! carries), an [`Applier`] takes a release and its payload into a bare
//! repository under a served root. Both drive the real `git` binary as a
//! subprocess (`pack-objects`, `index-pack`, `update-ref`): it writes
//! deltified thin packs, which gix does not. This crate never touches a
//! ferry store, a socket or the engine.

mod apply;
pub mod fixture;
mod git;
mod oid;
pub mod packcode;
mod publish;
mod release;
mod serve;

pub use apply::{Applier, ApplyError, ApplyOutcome};
pub use git::{Git, GitError};
pub use oid::Oid;
pub use packcode::PackEncoding;
pub use publish::{
    DestinationState, Lost, Publication, PublishError, Publisher, restore_pack, strip_pack,
};
pub use release::{GitRelease, RefUpdate, ReleaseError};
pub use serve::{
    PUSH_REFUSED, Refusal, ServeError, ServedRoot, SmartRequest, is_safe_protocol, route_request,
    validate_repo_name, wants_protocol_v2,
};

/// The pack format's fixed header: `PACK`, version 2, a 4-byte object count.
pub const PACK_HEADER_LEN: usize = 12;
/// The pack format's SHA-1 trailer.
pub const PACK_TRAILER_LEN: usize = 20;
