//! [`QuicEndpoint`]: one UDP socket that accepts and makes authenticated
//! links.
//!
//! Each handshake gets its own rustls configuration, built from the node's
//! certificate and the trust policy, so that the certificate verifier knows
//! the remote address (for its logs) and, when connecting, the node id asked
//! for. TLS session resumption is off on both sides: a resumed session would
//! skip the certificate check, and with it the trust policy.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ferry_core::NodeId;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{Connection, TransportConfig, VarInt};
use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::NoServerSessionStorage;

use super::framing::{self, CONTROL_ACCEPT, CONTROL_OPEN, HeaderError};
use super::link::{CODE_CLOSED, CODE_PROTOCOL};
use super::trust::{PeerVerifier, SharedTrust};
use super::{ALPN, LinkError, QuicLink, TransportProfile, node_id_of_certificate};
use crate::identity::NodeKey;

/// A QUIC endpoint on one UDP socket, acting as both server and client, that
/// only talks to nodes its [`TrustPolicy`](super::TrustPolicy) admits.
///
/// Must be created and used inside a tokio runtime.
pub struct QuicEndpoint {
    endpoint: quinn::Endpoint,
    node: NodeId,
    profile: TransportProfile,
    tls: Tls,
}

/// What each handshake's configuration is built from.
struct Tls {
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    policy: SharedTrust,
    provider: Arc<CryptoProvider>,
    transport: Arc<TransportConfig>,
}

/// The UDP socket buffers asked for, each way. A datagram that arrives while
/// the receive buffer is full is dropped by the kernel, and QUIC takes the
/// loss for congestion: at loopback or LAN rates the default buffer (about
/// 200 KiB) overflows in well under a millisecond whenever the receiving
/// task is late. The kernel grants at most `net.core.rmem_max` /
/// `net.core.wmem_max` (see docs/OPERATIONS.md).
const SOCKET_BUFFER: usize = 16 << 20;

/// Binds a UDP socket at `addr` with [`SOCKET_BUFFER`]-sized buffers (or
/// as much of them as the kernel allows).
fn bind_udp(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Larger than allowed is capped, not refused; a failure here leaves the
    // default size, which works, only slower.
    for (what, set) in [
        (
            "receive",
            Socket::set_recv_buffer_size as fn(&Socket, usize) -> _,
        ),
        ("send", Socket::set_send_buffer_size),
    ] {
        if let Err(e) = set(&socket, SOCKET_BUFFER) {
            tracing::debug!(%addr, "UDP {what} buffer left at its default: {e}");
        }
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

impl QuicEndpoint {
    /// Binds `addr` (port 0 picks a free port) for node `key`, admitting the
    /// peers `policy` admits, with QUIC tuned by `profile`. A [`SharedTrust`]
    /// may be changed while the endpoint runs (see [`Self::trust`]).
    pub fn bind(
        addr: SocketAddr,
        key: &NodeKey,
        policy: impl Into<SharedTrust>,
        profile: TransportProfile,
    ) -> Result<QuicEndpoint, LinkError> {
        let tls = Tls {
            cert: key.certificate()?,
            key: key.private_key_der()?,
            policy: policy.into(),
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            transport: Arc::new(profile.transport_config()?),
        };
        // Incoming connections are accepted with per-handshake configurations
        // (`accept_with`); quinn needs a default one to accept at all.
        let socket = bind_udp(addr).map_err(|source| LinkError::Bind { addr, source })?;
        let runtime = quinn::default_runtime()
            .ok_or_else(|| LinkError::Config("a QUIC endpoint needs a tokio runtime".into()))?;
        let keys = key.restart_keys();
        let reset = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &keys.stateless_reset);
        let mut config = quinn::EndpointConfig::new(Arc::new(reset));
        config.cid_generator(move || {
            Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(
                keys.connection_id,
            ))
        });
        let endpoint =
            quinn::Endpoint::new(config, Some(tls.server_config(None)?), socket, runtime)
                .map_err(|source| LinkError::Bind { addr, source })?;
        let node = key.node_id();
        tracing::debug!(node = %node, %addr, "QUIC endpoint bound");
        Ok(QuicEndpoint {
            endpoint,
            node,
            profile,
            tls,
        })
    }

    /// The trust policy every later handshake is checked against; pinning
    /// a node there admits it without restarting the endpoint.
    pub fn trust(&self) -> SharedTrust {
        self.tls.policy.clone()
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.node
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> Result<SocketAddr, LinkError> {
        self.endpoint.local_addr().map_err(LinkError::LocalAddr)
    }

    /// Connects to the node `expected` at `addr`.
    ///
    /// Fails if the peer's certificate is not `expected`'s or not admitted by
    /// the policy, or if the peer refuses ours. Returns once the peer has
    /// answered on the control stream (one round trip after the handshake),
    /// so a refusal by the peer is reported here and not on first use. Takes
    /// at most the profile's idle timeout after the handshake.
    pub async fn connect(&self, addr: SocketAddr, expected: NodeId) -> Result<QuicLink, LinkError> {
        let config = self.tls.client_config(addr, expected)?;
        // Only for the peer's logs: our verifier checks the key, not names.
        let server_name = format!("ferry-{expected}");
        let conn = self
            .endpoint
            .connect_with(config, addr, &server_name)
            .map_err(|source| LinkError::Connect { addr, source })?
            .await
            .map_err(|source| LinkError::Handshake { addr, source })?;
        // The verifier admitted only `expected`, and resumption is off.
        let peer = expected;

        let after = self.profile.max_idle_timeout;
        let setup = async {
            let (mut send, mut recv) = conn
                .open_bi()
                .await
                .map_err(|source| LinkError::Handshake { addr, source })?;
            send.write_all(&CONTROL_OPEN)
                .await
                .map_err(|e| setup_error(&conn, addr, format!("control stream: {e}")))?;
            framing::read_header(&mut recv, CONTROL_ACCEPT)
                .await
                .map_err(|e| header_error(&conn, addr, e))?;
            Ok::<_, LinkError>((send, recv))
        };
        let (send, recv) = match tokio::time::timeout(after, setup).await {
            Ok(result) => result?,
            Err(_) => return Err(setup_timeout(&conn, addr, after)),
        };
        Ok(QuicLink::start(
            conn,
            peer,
            send,
            recv,
            self.profile.max_frame_len,
        ))
    }

    /// Waits for the next incoming connection and sets it up.
    ///
    /// `None` once the endpoint is closed. `Some(Err(_))` for a connection
    /// that failed (a refused peer, a failed handshake): that one is gone, but
    /// the endpoint goes on, so call `accept` again. This sets up one
    /// connection before looking at the next; a server that must not let a
    /// slow or silent peer hold up the others takes [`incoming`](Self::incoming)
    /// and runs each [`Accepting::establish`] in its own task.
    pub async fn accept(&self) -> Option<Result<QuicLink, LinkError>> {
        Some(self.incoming().await?.establish().await)
    }

    /// Waits for the next incoming connection attempt, without handshaking.
    /// `None` once the endpoint is closed.
    pub async fn incoming(&self) -> Option<Accepting> {
        let incoming = self.endpoint.accept().await?;
        let addr = incoming.remote_address();
        Some(Accepting {
            config: self.tls.server_config(Some(addr)),
            incoming,
            addr,
            setup_timeout: self.profile.max_idle_timeout,
            max_frame: self.profile.max_frame_len,
        })
    }

    /// Closes every connection at once and stops accepting: pending and
    /// later [`accept`](Self::accept) calls return `None`.
    pub fn close(&self) {
        self.endpoint
            .close(VarInt::from_u32(CODE_CLOSED), b"endpoint closed");
    }
}

/// An incoming connection attempt from [`QuicEndpoint::incoming`], not yet
/// handshaken.
pub struct Accepting {
    incoming: quinn::Incoming,
    config: Result<quinn::ServerConfig, LinkError>,
    addr: SocketAddr,
    setup_timeout: Duration,
    max_frame: u32,
}

impl Accepting {
    /// Where the attempt comes from.
    pub fn remote_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Runs the handshake (the trust policy decides on the peer's
    /// certificate) and the control stream's set-up, for at most the
    /// profile's idle timeout after the handshake.
    pub async fn establish(self) -> Result<QuicLink, LinkError> {
        let Accepting {
            incoming,
            config,
            addr,
            setup_timeout: after,
            max_frame,
        } = self;
        let conn = incoming
            .accept_with(Arc::new(config?))
            .map_err(|source| LinkError::Handshake { addr, source })?
            .await
            .map_err(|source| LinkError::Handshake { addr, source })?;
        let peer = peer_node_id(&conn, addr)?;

        let setup = async {
            let (mut send, mut recv) = conn
                .accept_bi()
                .await
                .map_err(|source| LinkError::Handshake { addr, source })?;
            framing::read_header(&mut recv, CONTROL_OPEN)
                .await
                .map_err(|e| header_error(&conn, addr, e))?;
            send.write_all(&CONTROL_ACCEPT)
                .await
                .map_err(|e| setup_error(&conn, addr, format!("control stream: {e}")))?;
            Ok::<_, LinkError>((send, recv))
        };
        let (send, recv) = match tokio::time::timeout(after, setup).await {
            Ok(result) => result?,
            Err(_) => return Err(setup_timeout(&conn, addr, after)),
        };
        Ok(QuicLink::start(conn, peer, send, recv, max_frame))
    }
}

impl Tls {
    /// The server side's configuration for a handshake with `remote`.
    fn server_config(&self, remote: Option<SocketAddr>) -> Result<quinn::ServerConfig, LinkError> {
        let verifier = PeerVerifier::new(self.policy.clone(), None, remote, self.provider.clone());
        let mut tls = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(Arc::new(verifier))
            .with_single_cert(vec![self.cert.clone()], self.key.clone_key())?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        tls.session_storage = Arc::new(NoServerSessionStorage {});
        tls.send_tls13_tickets = 0;
        let crypto =
            QuicServerConfig::try_from(tls).map_err(|e| LinkError::Config(e.to_string()))?;
        let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        config.transport_config(self.transport.clone());
        Ok(config)
    }

    /// The client side's configuration for a handshake with `expected` at `remote`.
    fn client_config(
        &self,
        remote: SocketAddr,
        expected: NodeId,
    ) -> Result<quinn::ClientConfig, LinkError> {
        let verifier = PeerVerifier::new(
            self.policy.clone(),
            Some(expected),
            Some(remote),
            self.provider.clone(),
        );
        let mut tls = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_auth_cert(vec![self.cert.clone()], self.key.clone_key())?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        tls.resumption = Resumption::disabled();
        let crypto =
            QuicClientConfig::try_from(tls).map_err(|e| LinkError::Config(e.to_string()))?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        config.transport_config(self.transport.clone());
        Ok(config)
    }
}

impl fmt::Debug for QuicEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuicEndpoint")
            .field("node", &self.node)
            .field("local_addr", &self.endpoint.local_addr().ok())
            .field("policy", &self.tls.policy)
            .finish_non_exhaustive()
    }
}

/// The node id the peer proved in the handshake.
fn peer_node_id(conn: &Connection, addr: SocketAddr) -> Result<NodeId, LinkError> {
    let certs = conn
        .peer_identity()
        .and_then(|identity| identity.downcast::<Vec<CertificateDer<'static>>>().ok());
    let id = match certs.as_deref().and_then(|certs| certs.first()) {
        Some(cert) => node_id_of_certificate(cert),
        None => Err("peer presented no certificate".to_owned()),
    };
    id.map_err(|reason| setup_error(conn, addr, reason))
}

/// The error for a failed link set-up: the connection's end if it ended
/// (a refusal by the peer shows up here), else `reason`, after closing the
/// connection with it.
fn setup_error(conn: &Connection, addr: SocketAddr, reason: String) -> LinkError {
    match conn.close_reason() {
        Some(source) => LinkError::Handshake { addr, source },
        None => {
            conn.close(VarInt::from_u32(CODE_PROTOCOL), reason.as_bytes());
            LinkError::Setup { addr, reason }
        }
    }
}

fn header_error(conn: &Connection, addr: SocketAddr, error: HeaderError) -> LinkError {
    setup_error(conn, addr, format!("control stream: {error}"))
}

fn setup_timeout(conn: &Connection, addr: SocketAddr, after: Duration) -> LinkError {
    conn.close(VarInt::from_u32(CODE_PROTOCOL), b"link set-up timed out");
    LinkError::SetupTimeout { addr, after }
}
