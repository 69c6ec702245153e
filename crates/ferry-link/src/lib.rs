//! Convergence layers for ferry: how engine frames cross a real link.
//!
//! The engine ([`ferry_core`]) emits whole frames of at most an MTU it is
//! told, and must get back exactly the frames that arrived intact; it repairs
//! lost ones itself. A convergence layer adapts that to a link:
//!
//! - [`serial`]: byte-stream modems (acoustic modems, Iridium SBD) — COBS
//!   framing with a CRC, pacing to the line rate, and half-duplex turn-taking.
//!   Sans-IO: a driver owns the port and the clock.
//! - `quic` (cargo feature `quic`, on by default): QUIC links between nodes
//!   authenticated by their Ed25519 keys (`identity`), on tokio and quinn.
//! - `proxy` (cargo feature `proxy`, on by default): a UDP impairment proxy
//!   that puts a link profile (rate, delay, loss bursts, contact windows)
//!   between two endpoints, for real-process tests.

pub mod profile;
pub mod serial;

#[cfg(feature = "quic")]
pub mod identity;
#[cfg(feature = "proxy")]
pub mod proxy;
#[cfg(feature = "quic")]
pub mod quic;
