//! The sans-IO bundle engine: bundles, custody transfer, routing, contact
//! plans and inventory exchange.
//!
//! Architecture invariant: this crate never touches a socket, a file, the
//! clock or an unseeded random number generator. Storage is the synchronous
//! [`Store`] trait; [`MemStore`] implements it in memory with exact crash
//! semantics, `ferry-store` over RocksDB.

pub mod mem_store;
pub mod store;

pub use mem_store::MemStore;
pub use store::{Batch, BatchOp, Cf, PutOutcome, Records, Store, StoreError, Usage};
