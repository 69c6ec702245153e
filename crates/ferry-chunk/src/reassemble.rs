//! Verified reassembly: chunks are checked against the manifest before a byte
//! of them is written, and the whole object against its native digest.

use std::convert::Infallible;
use std::io::{self, Write};

use crate::digest::{DigestState, NativeDigest};
use crate::id::ChunkId;
use crate::manifest::{Manifest, ManifestEntry};

/// Why reassembly failed. `E` is the error of the fetch function given to
/// [`reassemble`]; [`Reassembler`] itself never fetches, so its errors use
/// the default `Infallible`.
#[derive(Debug, thiserror::Error)]
pub enum ReassemblyError<E = Infallible> {
    /// A chunk has the wrong length; it was not written.
    #[error("chunk {index} is {found} bytes long, the manifest says {expected}")]
    LengthMismatch {
        index: usize,
        expected: u32,
        found: usize,
    },
    /// A chunk does not hash to its id; it was not written.
    #[error("chunk {index} hashes to {found}, the manifest says {expected}")]
    IdMismatch {
        index: usize,
        expected: ChunkId,
        found: ChunkId,
    },
    /// More chunks were pushed than the manifest lists.
    #[error("a chunk was pushed after all {count} chunks of the manifest")]
    TooManyChunks { count: usize },
    /// `finish` was called before every chunk was pushed.
    #[error("reassembly finished after {pushed} of {count} chunks")]
    MissingChunks { pushed: usize, count: usize },
    /// The bytes written do not add up to the manifest's total length.
    #[error("{found} bytes were reassembled, the manifest says {expected}")]
    TotalLengthMismatch { expected: u64, found: u64 },
    /// Every chunk matched, but the object does not have its native digest:
    /// the manifest itself is wrong. The output holds the unverified object.
    #[error("the object's digest is {found}, the manifest says {expected}")]
    DigestMismatch {
        expected: NativeDigest,
        found: NativeDigest,
    },
    /// Writing to the output failed.
    #[error("writing the reassembled object failed: {0}")]
    Write(#[source] io::Error),
    /// An earlier write failed, so how much of the output was written is unknown.
    #[error("an earlier write failed; the output is in an unknown state")]
    Poisoned,
    /// The fetch function failed for this chunk.
    #[error("fetching chunk {index} ({id}) failed: {source}")]
    Fetch {
        index: usize,
        id: ChunkId,
        #[source]
        source: E,
    },
}

impl<E> ReassemblyError<E> {
    /// The index of the chunk at fault, for errors about one chunk (a chunk
    /// that fails its check should be discarded and fetched again).
    pub fn chunk_index(&self) -> Option<usize> {
        match self {
            ReassemblyError::LengthMismatch { index, .. }
            | ReassemblyError::IdMismatch { index, .. }
            | ReassemblyError::Fetch { index, .. } => Some(*index),
            _ => None,
        }
    }
}

impl ReassemblyError {
    /// The same error, typed for a reassembly that also fetches with error `E`.
    pub fn with_fetch_error<E>(self) -> ReassemblyError<E> {
        match self {
            ReassemblyError::LengthMismatch {
                index,
                expected,
                found,
            } => ReassemblyError::LengthMismatch {
                index,
                expected,
                found,
            },
            ReassemblyError::IdMismatch {
                index,
                expected,
                found,
            } => ReassemblyError::IdMismatch {
                index,
                expected,
                found,
            },
            ReassemblyError::TooManyChunks { count } => ReassemblyError::TooManyChunks { count },
            ReassemblyError::MissingChunks { pushed, count } => {
                ReassemblyError::MissingChunks { pushed, count }
            }
            ReassemblyError::TotalLengthMismatch { expected, found } => {
                ReassemblyError::TotalLengthMismatch { expected, found }
            }
            ReassemblyError::DigestMismatch { expected, found } => {
                ReassemblyError::DigestMismatch { expected, found }
            }
            ReassemblyError::Write(error) => ReassemblyError::Write(error),
            ReassemblyError::Poisoned => ReassemblyError::Poisoned,
            ReassemblyError::Fetch { source, .. } => match source {},
        }
    }
}

/// Writes an object chunk by chunk, in manifest order, checking each chunk's
/// length and BLAKE3 id before writing it, and at the end the total length
/// and the native digest (computed incrementally). Holds no chunk: memory
/// use is independent of the object's size.
pub struct Reassembler<'m, W: Write> {
    manifest: &'m Manifest,
    out: W,
    next: usize,
    written: u64,
    digest: Option<DigestState>,
    poisoned: bool,
}

impl<'m, W: Write> Reassembler<'m, W> {
    pub fn new(manifest: &'m Manifest, out: W) -> Self {
        let digest = manifest
            .native_digest()
            .map(|expected| DigestState::like(expected, manifest.total_length()));
        Self {
            manifest,
            out,
            next: 0,
            written: 0,
            digest,
            poisoned: false,
        }
    }

    /// Index of the chunk [`Reassembler::push`] expects next.
    pub fn next_index(&self) -> usize {
        self.next
    }

    /// The chunk [`Reassembler::push`] expects next, if any is left.
    pub fn next_entry(&self) -> Option<&ManifestEntry> {
        self.manifest.entries().get(self.next)
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    /// Checks `chunk` against the next entry of the manifest and, if it
    /// matches, writes it. A chunk that fails its check is not written and
    /// does not advance the reassembly, so the right chunk can be pushed next.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), ReassemblyError> {
        if self.poisoned {
            return Err(ReassemblyError::Poisoned);
        }
        let index = self.next;
        let Some(entry) = self.manifest.entries().get(index) else {
            return Err(ReassemblyError::TooManyChunks {
                count: self.manifest.chunk_count(),
            });
        };
        if chunk.len() != entry.len as usize {
            return Err(ReassemblyError::LengthMismatch {
                index,
                expected: entry.len,
                found: chunk.len(),
            });
        }
        let found = ChunkId::of(chunk);
        if found != entry.id {
            return Err(ReassemblyError::IdMismatch {
                index,
                expected: entry.id,
                found,
            });
        }
        if let Err(error) = self.out.write_all(chunk) {
            self.poisoned = true;
            return Err(ReassemblyError::Write(error));
        }
        if let Some(digest) = &mut self.digest {
            digest.update(chunk);
        }
        self.next += 1;
        self.written += chunk.len() as u64;
        Ok(())
    }

    /// Checks that every chunk was pushed and that the object has the
    /// manifest's native digest, flushes the output and returns it.
    pub fn finish(mut self) -> Result<W, ReassemblyError> {
        if self.poisoned {
            return Err(ReassemblyError::Poisoned);
        }
        let count = self.manifest.chunk_count();
        if self.next != count {
            return Err(ReassemblyError::MissingChunks {
                pushed: self.next,
                count,
            });
        }
        if self.written != self.manifest.total_length() {
            return Err(ReassemblyError::TotalLengthMismatch {
                expected: self.manifest.total_length(),
                found: self.written,
            });
        }
        if let (Some(expected), Some(digest)) = (self.manifest.native_digest(), self.digest.take())
        {
            let found = digest.finish();
            if found != *expected {
                return Err(ReassemblyError::DigestMismatch {
                    expected: *expected,
                    found,
                });
            }
        }
        self.out.flush().map_err(ReassemblyError::Write)?;
        Ok(self.out)
    }
}

/// Reassembles `manifest` into `out`, fetching each chunk by id in order and
/// verifying it as [`Reassembler`] does. Holds one chunk at a time.
pub fn reassemble<W: Write, E>(
    manifest: &Manifest,
    mut fetch: impl FnMut(ChunkId) -> Result<Vec<u8>, E>,
    out: W,
) -> Result<(), ReassemblyError<E>> {
    let mut reassembler = Reassembler::new(manifest, out);
    for (index, entry) in manifest.entries().iter().enumerate() {
        let chunk = fetch(entry.id).map_err(|source| ReassemblyError::Fetch {
            index,
            id: entry.id,
            source,
        })?;
        reassembler
            .push(&chunk)
            .map_err(ReassemblyError::with_fetch_error)?;
    }
    reassembler
        .finish()
        .map_err(ReassemblyError::with_fetch_error)?;
    Ok(())
}
