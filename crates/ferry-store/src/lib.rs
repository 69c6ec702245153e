//! ferry's durable store: chunks, manifests and the engine's records in RocksDB.
//!
//! [`RocksStore`] implements the engine's [`ferry_core::Store`] trait and
//! passes its conformance suite. It owns the on-disk layout (one column family
//! per [`Cf`]), the durability contract below, the storage quota and garbage
//! collection. It never interprets bundles or custody: those records are
//! opaque bytes written by the engine.
//!
//! Durability contract:
//! - Chunk bodies ([`RocksStore::put_chunk`]) bypass RocksDB: content is
//!   re-verifiable by its hash, so a body is appended once to a pack file and
//!   RocksDB keeps a 16-byte location for it. Bodies are durable after the
//!   next sync.
//! - Every other write goes through the WAL. [`RocksStore::write_synced`] and
//!   [`RocksStore::sync`] first make every chunk written so far durable
//!   (fdatasync of the pack), then fsync the WAL; concurrent callers share one
//!   sync (group commit).
//! - A record that refers to chunks must be written with `write_synced` (or
//!   after `sync`), so a crash can never leave it pointing at lost chunks.

mod error;
mod gc;
mod ingest;
mod options;
mod packs;
mod store;

pub use error::{OpenError, StoreError};
pub use ferry_core::{Batch, Cf, PutOutcome, Usage};
pub use gc::GcReport;
pub use ingest::{Ingest, IngestError, IngestStats, Source, sources};
pub use options::StoreConfig;
pub use store::{FetchError, RocksStore, SharedStore};
