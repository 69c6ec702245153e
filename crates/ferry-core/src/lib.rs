//! The sans-IO bundle engine: bundles, custody transfer, routing, contact
//! plans and inventory exchange.
//!
//! Architecture invariant: this crate never touches a socket, a file, the
//! clock or an unseeded random number generator. Inputs carry `now`
//! ([`Engine::handle_contact`], [`Engine::handle_frame`],
//! [`Engine::handle_timeout`], [`Engine::submit`]); outputs are pulled
//! ([`Engine::poll_transmit`], [`Engine::poll_timeout`],
//! [`Engine::poll_event`]). Storage is the synchronous [`Store`] trait;
//! [`MemStore`] implements it in memory with exact crash semantics,
//! `ferry-store` over RocksDB. Maps the engine iterates are ordered.

pub mod bundle;
pub mod config;
pub mod contact_plan;
pub mod engine;
pub mod event;
mod in_flight;
pub mod mem_store;
pub mod mtu;
mod peer_holds;
pub mod pieces;
pub mod store;
pub mod types;

pub use bundle::{BundleHeader, BundleRecord, PayloadKind};
pub use config::{EngineConfig, Routes};
pub use contact_plan::{ContactPlan, PlannedContact};
pub use engine::medium::{
    self, ExportOptions, ExportPlan, ExportSummary, ImportReport, MediumError, Problem, ReadVolume,
    ReceiptsSummary, VolumeInfo,
};
pub use engine::{
    Contact, Engine, EngineStats, LinkProperties, OpenError, Submission, SubmitError, Transmit,
};
pub use event::{Event, Reason};
pub use mem_store::MemStore;
pub use store::{Batch, BatchOp, Cf, PutOutcome, Records, Store, StoreError, Usage};
pub use types::{BundleId, Endpoint, Instant, LinkId, NodeId, Priority, transmission_time};
