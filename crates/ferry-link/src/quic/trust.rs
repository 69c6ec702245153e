//! Who may connect: [`TrustPolicy`], and the rustls certificate verifiers
//! that enforce it on both sides of a handshake.
//!
//! Certificates are self-signed carriers of an Ed25519 key; there are no
//! certificate authorities. A verifier extracts the end-entity certificate's
//! SubjectPublicKeyInfo, requires it to be Ed25519, hashes the key into a
//! node id and asks the policy. Names, issuers, validity dates and any
//! intermediates are ignored. The handshake signature (TLS 1.3 only, Ed25519
//! only) is checked with ring through rustls's `verify_tls13_signature`, which
//! proves the peer holds the private key.

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use ed25519_dalek::VerifyingKey;
use ed25519_dalek::pkcs8::{DecodePublicKey, PublicKeyBytes};
use ferry_core::NodeId;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    DigitallySignedStruct, DistinguishedName, OtherError, PeerIncompatible, SignatureScheme,
};

use crate::identity::node_id_from_public_key;

/// Which peers a node talks to.
///
/// A peer is admitted if its node id is pinned, if its certificate chains
/// to one of `anchors` ([`super::anchor`]), or if `allow_any` is set.
/// `allow_any` exists for tests and bootstrapping only; it is off by default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustPolicy {
    /// Node ids admitted.
    pub pinned: BTreeSet<NodeId>,
    /// Admit every node that proves it holds its key (tests and bootstrap only).
    pub allow_any: bool,
    /// Trust anchors' CA certificates (DER): a node whose certificate one
    /// of them issued (and which is valid now) is admitted.
    pub anchors: Vec<Vec<u8>>,
}

impl TrustPolicy {
    /// A policy admitting exactly `ids`.
    pub fn pinned(ids: impl IntoIterator<Item = NodeId>) -> TrustPolicy {
        TrustPolicy {
            pinned: ids.into_iter().collect(),
            allow_any: false,
            anchors: Vec::new(),
        }
    }

    /// A policy admitting any node (tests and bootstrap only).
    pub fn allow_any() -> TrustPolicy {
        TrustPolicy {
            pinned: BTreeSet::new(),
            allow_any: true,
            anchors: Vec::new(),
        }
    }

    /// Whether `node` may connect or be connected to.
    pub fn admits(&self, node: &NodeId) -> bool {
        self.allow_any || self.pinned.contains(node)
    }
}

/// A [`TrustPolicy`] shared by an endpoint's verifiers and changeable while
/// the endpoint runs: a node pinned here is admitted from the next handshake
/// on, without restarting the endpoint. Clones share one policy.
#[derive(Clone, Debug, Default)]
pub struct SharedTrust(Arc<RwLock<TrustPolicy>>);

impl SharedTrust {
    pub fn new(policy: TrustPolicy) -> SharedTrust {
        SharedTrust(Arc::new(RwLock::new(policy)))
    }

    /// Admits `node` from now on. Returns whether it was new.
    pub fn pin(&self, node: NodeId) -> bool {
        self.write().pinned.insert(node)
    }

    /// Stops admitting `node` (unless the policy admits any). Connections
    /// already up are not closed. Returns whether it was pinned.
    pub fn unpin(&self, node: &NodeId) -> bool {
        self.write().pinned.remove(node)
    }

    /// Whether `node` may connect or be connected to now.
    pub fn admits(&self, node: &NodeId) -> bool {
        self.read().admits(node)
    }

    /// A copy of the policy as it is now.
    pub fn snapshot(&self) -> TrustPolicy {
        self.read().clone()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, TrustPolicy> {
        // A writer cannot panic half-way through a set insert: the policy is
        // whole even if a lock holder panicked.
        self.0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, TrustPolicy> {
        self.0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl From<TrustPolicy> for SharedTrust {
    fn from(policy: TrustPolicy) -> SharedTrust {
        SharedTrust::new(policy)
    }
}

/// The node id of the Ed25519 key in a certificate, or why there is none.
pub fn node_id_of_certificate(cert: &CertificateDer<'_>) -> Result<NodeId, String> {
    let parsed = ParsedCertificate::try_from(cert)
        .map_err(|e| format!("peer certificate does not parse: {e}"))?;
    let spki = parsed.subject_public_key_info();
    let key = PublicKeyBytes::from_public_key_der(spki.as_ref())
        .map_err(|e| format!("peer certificate holds no Ed25519 public key: {e}"))?;
    // Refuse bytes that are not a point on the curve: no signature could
    // ever verify under them.
    VerifyingKey::from_bytes(&key.0)
        .map_err(|_| "peer certificate's Ed25519 public key is not a valid point".to_owned())?;
    Ok(node_id_from_public_key(&key.0))
}

/// Handshakes refused in this process, for metrics.
static REFUSED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many QUIC handshakes this process has refused (every endpoint).
pub fn handshakes_refused() -> u64 {
    REFUSED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Why a peer was refused; the text a refused peer and our logs see.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error("peer {0}: node id not pinned")]
    NotPinned(NodeId),
    #[error("peer {node}: node id not pinned, and {reason}")]
    NotAnchored { node: NodeId, reason: String },
    #[error("peer {got}: expected node {expected}")]
    NotExpected { got: NodeId, expected: NodeId },
    #[error("{0}")]
    BadCertificate(String),
}

/// One side's certificate verifier: the policy, the node the client asked for
/// (if any) and the remote address (for logs).
pub(crate) struct PeerVerifier {
    policy: SharedTrust,
    expected: Option<NodeId>,
    remote: Option<SocketAddr>,
    provider: Arc<CryptoProvider>,
}

impl PeerVerifier {
    /// A verifier for one handshake. `expected` is set on the connecting side.
    pub(crate) fn new(
        policy: SharedTrust,
        expected: Option<NodeId>,
        remote: Option<SocketAddr>,
        provider: Arc<CryptoProvider>,
    ) -> PeerVerifier {
        PeerVerifier {
            policy,
            expected,
            remote,
            provider,
        }
    }

    /// Admits the certificate's node or returns (and logs) the refusal.
    /// `server`: the certificate is the server's (this side connected).
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        server: bool,
    ) -> Result<NodeId, rustls::Error> {
        let remote = RemoteDisplay(self.remote);
        let refusal = match node_id_of_certificate(end_entity) {
            Err(reason) => {
                tracing::warn!(%remote, "refused QUIC peer: {reason}");
                Refusal::BadCertificate(reason)
            }
            Ok(got) => {
                let policy = self.policy.snapshot();
                let refusal = match self.expected {
                    Some(expected) if got != expected => Refusal::NotExpected { got, expected },
                    _ if policy.admits(&got) => return Ok(got),
                    _ if policy.anchors.is_empty() => Refusal::NotPinned(got),
                    _ => match super::anchor::chains_to(
                        &policy.anchors,
                        end_entity,
                        intermediates,
                        now,
                        server,
                    ) {
                        Ok(()) => {
                            tracing::info!(peer = %got, %remote, "QUIC peer admitted by a trust anchor");
                            return Ok(got);
                        }
                        Err(reason) => Refusal::NotAnchored { node: got, reason },
                    },
                };
                tracing::warn!(peer = %got, %remote, "refused QUIC peer: {refusal}");
                refusal
            }
        };
        REFUSED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // `Error::Other` because its text is the refusal's own (a
        // `CertificateError::Other` would print as a debug dump).
        Err(rustls::Error::Other(OtherError(Arc::new(refusal))))
    }

    fn verify_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if dss.scheme != SignatureScheme::ED25519 {
            return Err(rustls::Error::PeerIncompatible(
                PeerIncompatible::NoSignatureSchemesInCommon,
            ));
        }
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
}

impl fmt::Debug for PeerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerVerifier")
            .field("policy", &self.policy)
            .field("expected", &self.expected)
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity, intermediates, now, true)
            .map(|_| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            PeerIncompatible::Tls13RequiredForQuic,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

impl ClientCertVerifier for PeerVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity, intermediates, now, false)
            .map(|_| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            PeerIncompatible::Tls13RequiredForQuic,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// A remote address for logs, `unknown` if not known.
struct RemoteDisplay(Option<SocketAddr>);

impl fmt::Display for RemoteDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(addr) => write!(f, "{addr}"),
            None => f.write_str("unknown"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::NodeKey;

    #[test]
    fn policy_admits_pinned_or_any() {
        let a = NodeKey::from_seed([1; 32]).node_id();
        let b = NodeKey::from_seed([2; 32]).node_id();
        let pinned = TrustPolicy::pinned([a]);
        assert!(pinned.admits(&a));
        assert!(!pinned.admits(&b));
        assert!(TrustPolicy::allow_any().admits(&b));
        assert!(!TrustPolicy::default().admits(&a));
    }

    #[test]
    fn refusals_name_the_node() {
        let a = NodeKey::from_seed([1; 32]);
        let b = NodeKey::from_seed([2; 32]);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cert = a.self_signed_cert().unwrap();

        let v = PeerVerifier::new(
            TrustPolicy::pinned([b.node_id()]).into(),
            None,
            None,
            provider.clone(),
        );
        let err = v
            .check(&cert, &[], UnixTime::now(), false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("peer {}: node id not pinned", a.node_id())),
            "{err}"
        );

        let v = PeerVerifier::new(
            TrustPolicy::allow_any().into(),
            Some(b.node_id()),
            None,
            provider.clone(),
        );
        let err = v
            .check(&cert, &[], UnixTime::now(), false)
            .unwrap_err()
            .to_string();
        assert!(err.contains(&a.node_id().to_string()), "{err}");
        assert!(err.contains(&b.node_id().to_string()), "{err}");

        let v = PeerVerifier::new(
            TrustPolicy::pinned([a.node_id()]).into(),
            Some(a.node_id()),
            None,
            provider,
        );
        assert!(v.check(&cert, &[], UnixTime::now(), false).is_ok());
    }

    #[test]
    fn a_node_pinned_later_is_admitted_by_a_verifier_made_before() {
        let a = NodeKey::from_seed([1; 32]);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cert = a.self_signed_cert().unwrap();
        let trust = SharedTrust::new(TrustPolicy::default());
        let v = PeerVerifier::new(trust.clone(), None, None, provider);
        assert!(v.check(&cert, &[], UnixTime::now(), false).is_err());
        assert!(trust.pin(a.node_id()));
        assert!(!trust.pin(a.node_id()));
        assert_eq!(
            v.check(&cert, &[], UnixTime::now(), false).unwrap(),
            a.node_id()
        );
        assert!(trust.unpin(&a.node_id()));
        assert!(v.check(&cert, &[], UnixTime::now(), false).is_err());
        assert!(trust.snapshot().pinned.is_empty());
    }

    #[test]
    fn garbage_certificate_is_refused() {
        let err =
            node_id_of_certificate(&CertificateDer::from(vec![0x30, 0x03, 1, 2, 3])).unwrap_err();
        assert!(err.contains("does not parse"), "{err}");
    }
}
