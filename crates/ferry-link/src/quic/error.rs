//! [`LinkError`]: every way a QUIC endpoint or link fails.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use ferry_core::NodeId;

use crate::identity::IdentityError;

/// Why a QUIC endpoint or link failed.
///
/// A peer refused by the trust policy shows up as [`LinkError::Handshake`]
/// on both sides, and its text names the refused node id (for example
/// `handshake with 127.0.0.1:4433 failed: the cryptographic handshake
/// failed: error 40: other error: peer 3f2a9c0e5d7b1a44: node id not
/// pinned`).
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The node key could not be used.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// rustls refused the TLS configuration.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// quinn refused the QUIC configuration (e.g. a window or timeout out of range).
    #[error("QUIC configuration: {0}")]
    Config(String),
    /// The UDP socket could not be bound.
    #[error("cannot bind a QUIC endpoint on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        source: io::Error,
    },
    /// The endpoint's socket address could not be read.
    #[error("cannot read the endpoint's local address: {0}")]
    LocalAddr(io::Error),
    /// quinn would not start a connection (e.g. the endpoint is closed).
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address connected to.
        addr: SocketAddr,
        /// What quinn said.
        source: quinn::ConnectError,
    },
    /// The handshake failed or the peer refused us while setting the link
    /// up. A trust refusal's text names the refused node id.
    #[error("handshake with {addr} failed: {source}")]
    Handshake {
        /// The remote address.
        addr: SocketAddr,
        /// What ended the connection.
        source: quinn::ConnectionError,
    },
    /// The handshake succeeded but the link's control stream could not be
    /// set up (the peer does not speak ferry's stream protocol).
    #[error("link set-up with {addr} failed: {reason}")]
    Setup {
        /// The remote address.
        addr: SocketAddr,
        /// What went wrong.
        reason: String,
    },
    /// The link was not set up within the profile's idle timeout.
    #[error("link set-up with {addr} timed out after {after:?}")]
    SetupTimeout {
        /// The remote address.
        addr: SocketAddr,
        /// How long we waited.
        after: Duration,
    },
    /// A frame given to `send_*` is over the link's frame limit; nothing was sent.
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    FrameTooLarge {
        /// The frame's length.
        len: usize,
        /// The limit.
        max: u32,
    },
    /// The peer broke the stream protocol (a frame over the limit, a
    /// truncated frame, a bad stream header, a reset stream); the connection
    /// has been closed with this reason.
    #[error("link to {peer}: protocol violation: {reason}")]
    Protocol {
        /// The peer's node id.
        peer: NodeId,
        /// What the peer did.
        reason: String,
    },
    /// The connection ended abnormally: timed out, reset, or closed by the
    /// peer with an error.
    #[error("link to {peer} lost: {source}")]
    ConnectionLost {
        /// The peer's node id.
        peer: NodeId,
        /// What ended it.
        source: quinn::ConnectionError,
    },
    /// The link was closed cleanly (by either side) before this operation.
    #[error("link to {peer} is closed")]
    Closed {
        /// The peer's node id.
        peer: NodeId,
    },
}
