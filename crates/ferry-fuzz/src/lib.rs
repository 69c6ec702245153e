//! Fuzz targets for every decoder that takes bytes from the network or from
//! media. One `pub fn NAME(data: &[u8])` per target: it feeds the bytes to
//! the real decoder and checks a property (never a panic; decode → encode →
//! decode is stable; size limits hold). `fuzz/` runs them under libFuzzer;
//! `tests/corpus.rs` runs every corpus and regression file as a test.
//!
//! Only the harnesses live here: a bug a target finds is fixed in the crate
//! that owns the decoder, with a unit test there.

mod engine;
mod frame;
mod git;
pub mod input;
mod manifest;
mod oci;
mod paths;
mod sealed;
pub mod seeds;
mod serial;
mod volume;

pub use engine::engine_target as engine;
pub use frame::frame;
pub use git::git;
pub use manifest::manifest;
pub use oci::oci;
pub use paths::paths;
pub use sealed::sealed;
pub use serial::serial;
pub use volume::volume;

/// A target: bytes in, a panic if a property fails.
pub type Target = fn(&[u8]);

/// Every target by name, as `fuzz/corpus/NAME/` names them.
pub const TARGETS: &[(&str, Target)] = &[
    ("frame", frame),
    ("engine", engine),
    ("serial", serial),
    ("manifest", manifest),
    ("volume", volume),
    ("oci", oci),
    ("git", git),
    ("paths", paths),
    ("sealed", sealed),
];
