//! Rebuild recipes for compressed layers.
//!
//! A gzip layer hides the sameness of two image versions: a few changed
//! files change every compressed byte after them. The base inflates the
//! layer, finds an encoder that makes the same bytes again from the plain
//! tar, and ships the tar (chunked by content) plus a few bytes of recipe;
//! the leaf re-encodes and checks the digest before serving.
//!
//! Encoders replayed bit for bit:
//! - [`goflate`]: Go's `compress/flate` as `compress/gzip` drives it
//!   (Docker, BuildKit, containerd).
//! - [`pgzip`]: klauspost/pgzip over klauspost/compress's flate
//!   (containers/image: skopeo, podman, buildah; umoci).
//!
//! [`gozip`] runs the real Go encoders, for tests and benchmarks.

pub mod goflate;
pub mod gozip;
pub mod pgzip;
