//! ferry-sim: runs real `ferry-core` engines on a virtual clock, joined by
//! simulated links with bandwidth, latency, loss, duplication, reordering and
//! contact windows, and lets any node crash and restart.
//!
//! It is not a model of the protocol: each node is an `Engine<MemStore>`, the
//! same engine the daemon drives. Everything random comes from one seed, with
//! a separate ChaCha stream per link, so a run is reproducible.

mod net;
mod payload;

pub use net::{LinkModel, Net, NodeIndex, Transmission, WireId, WireStats};
pub use payload::put_object;
