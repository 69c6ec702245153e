//! OCI adapter for ferry: container images as GitOps releases. Ingest at
//! the base, apply at the leaf, serve a read-only registry there. Does no
//! networking of its own except the leaf's HTTP server ([`serve`]); bundles
//! travel through ferry-core like any other payload.
//!
//! - [`ingest`]: walk what tags reach in a [`ingest::Source`] ([`Layout`],
//!   [`DockerArchive`], [`Registry`]), verify every blob, and stage the release into a node's store:
//!   each blob chunked on its own, so a blob the next hop holds costs only
//!   its manifest entries.
//! - [`release`]: [`OciRelease`], the bundle's `release` (repository, tags,
//!   the payload's blob table with per-layer rebuild recipes).
//! - [`recipes`], [`pack`]: gzip layers sent as their content, cut by
//!   content and packed chunk by chunk, plus a `ferry_recipe` recipe that
//!   rebuilds the exact blob at the leaf; [`Recipes`] remembers what was
//!   found per blob and which blobs must travel as they are.
//! - [`leaf`]: [`ImageStore`], verified blobs on disk and tags moved
//!   atomically once everything they reach is held.
//! - [`serve`]: the OCI Distribution API (read-only) over an [`ImageStore`].
//! - [`registry`]: an upstream registry as a source (distribution pull,
//!   Bearer/Basic auth).
//! - [`media`], [`digest`]: the JSON documents and names, validated.
//! - [`fixture`]: test images built from files, for tests and benchmarks.

pub mod archive;
pub mod digest;
pub mod fixture;
pub mod ingest;
pub mod layout;
pub mod leaf;
pub mod media;
pub mod pack;
pub mod recipes;
pub mod registry;
pub mod release;
pub mod serve;

pub use archive::DockerArchive;
pub use digest::Digest;
pub use ingest::{Chunking, IngestError, Limits, Plan, Source, Staged, plan, stage};
pub use layout::{Layout, LayoutWriter};
pub use leaf::{Applied, ApplyError, ImageStore, Stamp};
pub use recipes::{LayerReport, Recipes};
pub use registry::{Registry, RegistryRef};
pub use release::{OciRelease, ReleaseError};
