//! Convergence layers for ferry: how engine frames cross a real link.
//!
//! The engine ([`ferry_core`]) emits whole frames of at most an MTU it is
//! told, and must get back exactly the frames that arrived intact; it repairs
//! lost ones itself. A convergence layer adapts that to a link:
//!
//! - [`serial`]: byte-stream modems (acoustic modems, Iridium SBD) — COBS
//!   framing with a CRC, pacing to the line rate, and half-duplex turn-taking.
//!   Sans-IO: a driver owns the port and the clock.
//!
//! QUIC and the impairment proxy are not written yet.

pub mod serial;
