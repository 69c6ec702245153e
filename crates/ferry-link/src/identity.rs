//! Node identity: an Ed25519 key pair, the node id derived from it, and the
//! self-signed certificate that carries it through TLS.
//!
//! A node id is the BLAKE3 hash of the node's 32-byte Ed25519 public key
//! ([`node_id_from_public_key`]). QUIC peers authenticate each other with
//! mutual TLS: each presents a self-signed X.509 certificate for its node key
//! ([`NodeKey::self_signed_cert`]), and the other side derives the node id
//! from the certificate's public key and checks it against its trust policy
//! (see [`crate::quic::TrustPolicy`]). Nothing else in the certificate is
//! trusted: names, issuers and validity dates are ignored, so a node with a
//! wrong clock (common off-grid) still connects.
//!
//! On disk a key is a PKCS#8 (RFC 8410) private key, PEM-encoded
//! (`-----BEGIN PRIVATE KEY-----`, as `openssl genpkey -algorithm ed25519`
//! writes it); [`NodeKey::load`] also accepts the raw DER. [`NodeKey::save`]
//! writes mode 0600 via a temporary file and a rename, so a crash leaves
//! either the old key or the new one, never half of one.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{EncodePrivateKey, KeypairBytes};
use ferry_core::NodeId;
use ferry_trust::keyfile::{self, KeyFileError};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Why a node key could not be made, read, written or certified.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The key file does not exist.
    #[error("node key {}: no such file", path.display())]
    Missing {
        /// The file that was asked for.
        path: PathBuf,
    },
    /// The key file exists but could not be read.
    #[error("node key {}: cannot read: {source}", path.display())]
    Read {
        /// The file that was read.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// The file holds no valid Ed25519 PKCS#8 key.
    #[error("node key {}: not an Ed25519 PKCS#8 private key: {reason}", path.display())]
    Malformed {
        /// The file that was read.
        path: PathBuf,
        /// What was wrong with its contents.
        reason: String,
    },
    /// Writing the key file (or its temporary file) failed.
    #[error("node key {}: cannot write: {source}", path.display())]
    Write {
        /// The file being written.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// Encoding the key as PKCS#8 failed.
    #[error("node key: cannot encode as PKCS#8: {0}")]
    Encode(String),
    /// The system's random number generator failed.
    #[error("node key: the system random number generator failed")]
    Random,
    /// Making the self-signed certificate failed.
    #[error("node {node}: cannot make a certificate: {reason}")]
    Certificate {
        /// The node whose certificate it is.
        node: NodeId,
        /// What rcgen said.
        reason: String,
    },
}

/// A node's Ed25519 key pair: its identity on every link.
///
/// The secret is wiped from memory when the key is dropped. `Debug` shows only
/// the node id.
#[derive(Clone)]
pub struct NodeKey {
    signing: SigningKey,
    /// A certificate for this key issued by a trust anchor, presented
    /// instead of the self-signed one ([`NodeKey::with_certificate`]).
    certificate: Option<Vec<u8>>,
}

impl NodeKey {
    /// Makes a new key from the operating system's random number generator.
    pub fn generate() -> Result<NodeKey, IdentityError> {
        Ok(NodeKey {
            signing: keyfile::generate()?,
            certificate: None,
        })
    }

    /// Makes the key whose secret is `seed` (for tests and deterministic set-ups).
    pub fn from_seed(seed: [u8; 32]) -> NodeKey {
        NodeKey {
            signing: SigningKey::from_bytes(&seed),
            certificate: None,
        }
    }

    /// Reads a key from a PEM (`PRIVATE KEY`) or DER PKCS#8 file.
    ///
    /// Warns (but loads) if the file is readable by group or others.
    pub fn load(path: impl AsRef<Path>) -> Result<NodeKey, IdentityError> {
        Ok(NodeKey {
            signing: keyfile::load(path.as_ref())?,
            certificate: None,
        })
    }

    /// Writes the key as a PEM PKCS#8 file with mode 0600, atomically: into a
    /// temporary file beside `path`, synced, then renamed over `path` (which
    /// is replaced if it exists), and the directory synced.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), IdentityError> {
        Ok(keyfile::save(&self.signing, path.as_ref())?)
    }

    /// The X25519 form of this key, which opens group keys wrapped for this
    /// node (sealed bundles, `ferry_trust::envelope`).
    pub fn member_secret(&self) -> ferry_trust::seal::MemberSecret {
        ferry_trust::seal::MemberSecret::from_node_seed(&self.signing.to_bytes())
    }

    /// This node's signature of a media file whose BLAKE3 is `digest` and
    /// length `len`.
    pub fn sign_volume(&self, digest: &[u8; 32], len: u64) -> ferry_trust::volume::VolumeSignature {
        ferry_trust::volume::VolumeSignature::sign(&self.signing, digest, len)
    }

    /// The key this node and the node whose Ed25519 public key is
    /// `peer_public_key` authenticate their serial frames with (each
    /// computes it from its own secret and the other's public key); None if
    /// that is not a valid key.
    pub fn serial_link_key(&self, peer_public_key: &[u8; 32]) -> Option<crate::serial::LinkKey> {
        let peer = ferry_trust::seal::MemberPublic::from_node_public_key(peer_public_key)?;
        Some(crate::serial::LinkKey(
            self.member_secret()
                .agree(&peer, "ferry serial link key v1"),
        ))
    }

    /// The 32-byte Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    /// This node's id: BLAKE3 of [`public_key`](Self::public_key).
    pub fn node_id(&self) -> NodeId {
        node_id_from_public_key(&self.public_key())
    }

    /// A self-signed X.509 certificate for this key, made with rcgen: only a
    /// carrier for the public key in TLS. Its subject and DNS name are
    /// `ferry-<first 16 hex digits of the node id>`, for people reading logs;
    /// peers never check them.
    pub fn self_signed_cert(&self) -> Result<CertificateDer<'static>, IdentityError> {
        let node = self.node_id();
        let fail = |e: rcgen::Error| IdentityError::Certificate {
            node,
            reason: e.to_string(),
        };
        let name = format!("ferry-{node}");
        let key_der = self.pkcs8_der()?;
        let key_pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
            &PrivatePkcs8KeyDer::from(key_der.as_slice()),
            &rcgen::PKCS_ED25519,
        )
        .map_err(fail)?;
        let mut params = rcgen::CertificateParams::new(vec![name.clone()]).map_err(fail)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params.self_signed(&key_pair).map_err(fail)?;
        Ok(cert.der().clone())
    }

    /// This key presenting `der`, a certificate a trust anchor issued for
    /// it ([`crate::quic::anchor::admit`]), instead of a self-signed one.
    /// Refused if the certificate is for another key.
    pub fn with_certificate(mut self, der: Vec<u8>) -> Result<NodeKey, IdentityError> {
        let node = self.node_id();
        let named = crate::quic::node_id_of_certificate(&CertificateDer::from(der.as_slice()))
            .map_err(|reason| IdentityError::Certificate { node, reason })?;
        if named != node {
            return Err(IdentityError::Certificate {
                node,
                reason: format!("the certificate is for node {named}, not this node's key"),
            });
        }
        self.certificate = Some(der);
        Ok(self)
    }

    /// The certificate this node presents: the one an anchor issued, if
    /// it has one, else a self-signed one.
    pub fn certificate(&self) -> Result<CertificateDer<'static>, IdentityError> {
        match &self.certificate {
            Some(der) => Ok(CertificateDer::from(der.clone())),
            None => self.self_signed_cert(),
        }
    }

    /// The private key as rustls wants it (PKCS#8 DER).
    pub(crate) fn private_key_der(&self) -> Result<PrivateKeyDer<'static>, IdentityError> {
        Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            self.pkcs8_der()?,
        )))
    }

    /// The keys behind this node's QUIC connection ids and stateless
    /// resets, derived from its secret. They stay the same across restarts:
    /// a packet for a connection of the node's previous run is recognised
    /// as one of its own ids and answered with a reset the peer believes, so
    /// the peer drops that connection at once and dials again, instead of
    /// waiting out its idle timeout.
    pub(crate) fn restart_keys(&self) -> RestartKeys {
        let derive = |context| blake3::derive_key(context, &self.signing.to_bytes());
        let id = derive("ferry 2026-11-29 QUIC connection id key");
        RestartKeys {
            stateless_reset: derive("ferry 2026-11-29 QUIC stateless reset key"),
            connection_id: u64::from_le_bytes(id[..8].try_into().expect("8 bytes")),
        }
    }

    /// PKCS#8 v1 DER (no public key field): the form ring, rustls, rcgen and
    /// OpenSSL all read.
    pub(crate) fn pkcs8_der(&self) -> Result<Vec<u8>, IdentityError> {
        let doc = KeypairBytes {
            secret_key: self.signing.to_bytes(),
            public_key: None,
        }
        .to_pkcs8_der()
        .map_err(|e| IdentityError::Encode(e.to_string()))?;
        Ok(doc.as_bytes().to_vec())
    }
}

/// See [`NodeKey::restart_keys`].
pub(crate) struct RestartKeys {
    pub stateless_reset: [u8; 32],
    pub connection_id: u64,
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeKey({})", self.node_id())
    }
}

/// The node id of an Ed25519 public key: its BLAKE3 hash.
pub fn node_id_from_public_key(public_key: &[u8; 32]) -> NodeId {
    NodeId(*blake3::hash(public_key).as_bytes())
}

impl From<KeyFileError> for IdentityError {
    fn from(e: KeyFileError) -> Self {
        match e {
            KeyFileError::Missing { path } => IdentityError::Missing { path },
            KeyFileError::Read { path, source } => IdentityError::Read { path, source },
            KeyFileError::Malformed { path, reason } => IdentityError::Malformed { path, reason },
            KeyFileError::Write { path, source } => IdentityError::Write { path, source },
            KeyFileError::Encode(reason) => IdentityError::Encode(reason),
            KeyFileError::Random => IdentityError::Random,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_is_blake3_of_public_key() {
        let key = NodeKey::from_seed([7; 32]);
        let expected = blake3::hash(&key.public_key());
        assert_eq!(key.node_id().0, *expected.as_bytes());
    }

    #[test]
    fn generated_keys_differ() {
        let a = NodeKey::generate().unwrap();
        let b = NodeKey::generate().unwrap();
        assert_ne!(a.public_key(), b.public_key());
    }

    #[test]
    fn certificate_carries_the_key() {
        let key = NodeKey::from_seed([9; 32]);
        let cert = key.self_signed_cert().unwrap();
        let id = crate::quic::node_id_of_certificate(&cert).unwrap();
        assert_eq!(id, key.node_id());
    }

    #[test]
    fn debug_shows_no_secret() {
        let key = NodeKey::from_seed([1; 32]);
        assert_eq!(format!("{key:?}"), format!("NodeKey({})", key.node_id()));
    }
}
