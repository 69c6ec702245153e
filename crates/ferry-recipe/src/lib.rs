//! Rebuild recipes for compressed layers.
//!
//! A gzip layer hides the sameness of two image versions: a few changed
//! files change every compressed byte after them. The base inflates the
//! layer, finds an encoder that makes the same bytes again from the plain
//! tar ([`analyse()`]), and ships the tar (chunked by content) plus a
//! [`Recipe`] of a few dozen bytes; the leaf runs [`Recipe::rebuild`] and
//! checks the digest before serving.
//!
//! In order of preference:
//! - [`goflate`]: Go's `compress/flate` as `compress/gzip` drives it
//!   (Docker, BuildKit, containerd), replayed bit for bit.
//! - [`pgzip`]: klauspost/pgzip over klauspost/compress's flate
//!   (containers/image: skopeo, podman, buildah; umoci), replayed bit for bit.
//! - preflate (the `preflate-rs` crate): any other DEFLATE stream (GNU gzip,
//!   zlib), rebuilt from the content plus a small correction stream.
//!
//! [`gozip`] runs the real Go encoders, for tests and benchmarks.

pub mod analyse;
pub mod goflate;
pub mod gozip;
pub mod gzip;
pub mod pgzip;
pub mod recipe;

pub use analyse::{Analysis, Limits, Outcome, analyse};
pub use recipe::{Encoder, Recipe};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecipeError {
    #[error("rebuild recipe is not valid: {0}")]
    Invalid(String),
    #[error("rebuild recipe uses an encoder this node cannot replay: {0}")]
    Unsupported(String),
    #[error("rebuild failed: {0}")]
    Rebuild(String),
}
