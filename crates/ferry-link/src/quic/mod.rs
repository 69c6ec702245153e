//! The QUIC convergence layer: engine frames between two authenticated nodes.
//!
//! - [`QuicEndpoint`] binds one UDP socket that both accepts and makes
//!   connections, authenticating peers by node id ([`TrustPolicy`]).
//! - [`QuicLink`] is one authenticated connection carrying ferry's engine
//!   frames: opaque byte strings of up to [`MAX_FRAME_LEN`] bytes.
//! - [`TransportProfile`] tunes QUIC to a link's rate and round-trip time.
//!
//! # Authentication
//! Mutual TLS 1.3 with self-signed certificates that only carry each node's
//! Ed25519 key ([`crate::identity`]), or certificates a trust anchor issued
//! for that key ([`anchor`]). Each side derives the peer's node id
//! from its certificate's public key and refuses it unless the trust policy
//! admits it — pinned, or certified by a configured anchor; a connecting side also refuses any node but the one it asked
//! for. The handshake signature is checked with ring (Ed25519 only), which
//! proves the peer holds the key. Every refusal is logged at `warn` with the
//! node id and remote address, and the error names the node id.
//! The ALPN protocol is [`ALPN`].
//!
//! # Streams
//! - **Control**: one bidirectional stream, opened by the connecting side.
//!   Its opening doubles as a confirmation: [`QuicEndpoint::connect`] returns
//!   only after the accepting side has answered on it, so a connecting node
//!   whose certificate the other side refused learns it from `connect` (in
//!   TLS 1.3 the client finishes its handshake before the server has checked
//!   the client's certificate). This costs one round trip per connection.
//! - **Bulk**: one long-lived unidirectional stream per direction, opened by
//!   the sending side on its first bulk frame. One stream keeps bulk frames in
//!   order and costs no per-frame stream set-up; a stream separate from
//!   control means a lost bulk packet never delays a control frame (QUIC
//!   orders only within a stream). Parallel streams would buy nothing: the
//!   engine already sends pieces in the order it wants, and congestion control
//!   is per connection anyway.
//!
//! On every stream a frame is a big-endian `u32` length and then the bytes;
//! the length is checked against the limit before anything is allocated. A
//! frame over the limit, a truncated frame or a broken stream header closes
//! the connection with a reason the peer sees.
//!
//! # Flow control
//! [`QuicLink::send_control`] and [`QuicLink::send_bulk`] return once the
//! frame is in QUIC's send buffer, which is bounded by the peer's flow-control
//! windows, so a slow receiver slows the sender down. Received frames wait for
//! [`QuicLink::recv`] in a queue bounded in bytes; while it is full the link
//! stops reading and QUIC flow control pushes back on the peer.

pub mod anchor;
mod endpoint;
mod error;
mod framing;
mod link;
mod profile;
mod trust;

pub use endpoint::{Accepting, QuicEndpoint};
pub use error::LinkError;
pub use link::{PathStats, QuicLink};
pub use profile::{Congestion, TransportProfile};
pub use trust::{SharedTrust, TrustPolicy, handshakes_refused, node_id_of_certificate};

/// The largest frame a link carries by default: 16 MiB.
pub const MAX_FRAME_LEN: u32 = 16 * 1024 * 1024;

/// The TLS application protocol (ALPN) of ferry's QUIC links.
pub const ALPN: &[u8] = b"ferry/1";
