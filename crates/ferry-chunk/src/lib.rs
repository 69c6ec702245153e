//! Content-defined chunking (FastCDC v2020) with BLAKE3 chunk ids, manifests and verified reassembly; never does network or store I/O (it reads from a `Read` and writes to a `Write` given by the caller).
//!
//! - [`Chunker`] cuts a byte stream into chunks whose boundaries depend only on
//!   the content, so an edit disturbs only the chunks around it, and computes
//!   each chunk's [`ChunkId`] (BLAKE3 of its bytes) in the same pass. The work
//!   is spread over the available cores, yet the result is exactly the serial
//!   `fastcdc::v2020` chunking: deterministic, independent of thread timing.
//! - [`Manifest`] lists an object's chunks in order, with its total length, its
//!   [`NativeDigest`] (OCI sha256 or Git object id) and a media type. Its wire
//!   form is `ferry.v1.Manifest`; its [`ManifestId`] is the BLAKE3 of its
//!   canonical encoding. [`ManifestBuilder`] builds one while a stream is chunked.
//! - [`Reassembler`] and [`reassemble`] write an object back from its chunks,
//!   refusing any chunk whose length or id does not match the manifest before
//!   writing it, and checking the native digest at the end.
//!
//! ```
//! use ferry_chunk::{Chunker, ManifestBuilder, reassemble};
//!
//! let data: Vec<u8> = (0..200_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
//! let chunker = Chunker::default();
//! let mut builder = ManifestBuilder::new().computing_sha256();
//! let mut store = std::collections::HashMap::new();
//! chunker
//!     .chunk_reader(&data[..], |span, bytes| {
//!         store.insert(span.id, bytes.to_vec());
//!         builder.push(span, bytes)
//!     })
//!     .unwrap();
//! let manifest = builder.finish();
//!
//! let mut out = Vec::new();
//! reassemble(&manifest, |id| store.get(&id).cloned().ok_or("missing"), &mut out).unwrap();
//! assert_eq!(out, data);
//! ```

// The integration tests' data helpers, shared with the unit tests rather
// than copied; they name this crate as `ferry_chunk`.
#[cfg(test)]
extern crate self as ferry_chunk;
#[cfg(test)]
#[path = "../tests/common/mod.rs"]
mod test_common;

mod chunker;
mod config;
mod digest;
mod id;
mod manifest;
mod reassemble;

pub use chunker::{ChunkError, ChunkSpan, ChunkStats, Chunker};
pub use config::{ChunkerConfig, ConfigError};
pub use digest::{GitHash, GitObjectType, NativeDigest, UnknownGitObjectType};
pub use id::{ChunkId, ID_LEN, ManifestId};
pub use manifest::{Manifest, ManifestBuilder, ManifestEntry, ManifestError};
pub use reassemble::{Reassembler, ReassemblyError, reassemble};
