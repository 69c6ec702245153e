//! Admission by a trust anchor: a certificate chain instead of a pin.
//!
//! An anchor is an Ed25519 key (kept like a node key, [`NodeKey`]) with a
//! self-signed CA certificate ([`anchor_certificate`]). The anchor admits a
//! node by issuing it a certificate for its node public key
//! ([`admit`]); the node presents that certificate instead of its
//! self-signed one ([`NodeKey::with_certificate`]). A peer that lists the
//! anchor's certificate in its trust policy ([`TrustPolicy::anchors`])
//! admits any node whose certificate chains to it (checked by webpki:
//! signature, validity dates, CA constraints and the client/server usage),
//! as well as the nodes it pins. The TLS handshake still proves that the
//! node holds the key the certificate names.
//!
//! The anchor's distinguished name is derived from its public key, so
//! issuing needs only the anchor's key, not its certificate file.
//!
//! [`TrustPolicy::anchors`]: super::TrustPolicy::anchors

use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData, SignatureAlgorithm,
};
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer, UnixTime};

use crate::identity::{IdentityError, NodeKey};

/// An Ed25519 public key as rcgen signs certificates for it.
struct Ed25519Public([u8; 32]);

impl PublicKeyData for Ed25519Public {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &rcgen::PKCS_ED25519
    }
}

fn fail(node: ferry_core::NodeId) -> impl Fn(rcgen::Error) -> IdentityError {
    move |e| IdentityError::Certificate {
        node,
        reason: e.to_string(),
    }
}

fn key_pair(key: &NodeKey) -> Result<KeyPair, IdentityError> {
    let der = key.pkcs8_der()?;
    KeyPair::from_pkcs8_der_and_sign_algo(
        &PrivatePkcs8KeyDer::from(der.as_slice()),
        &rcgen::PKCS_ED25519,
    )
    .map_err(fail(key.node_id()))
}

/// The anchor's CA parameters: its name comes from its key.
fn anchor_params(anchor: &NodeKey) -> Result<CertificateParams, IdentityError> {
    let mut params =
        CertificateParams::new(Vec::<String>::new()).map_err(fail(anchor.node_id()))?;
    params.distinguished_name.push(
        DnType::CommonName,
        format!("ferry trust anchor {}", hex_key(&anchor.public_key())),
    );
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(params)
}

fn hex_key(key: &[u8; 32]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

/// `now + days`, and `now` less a day (clocks at remote sites drift).
fn validity(days: u32) -> (time::OffsetDateTime, time::OffsetDateTime) {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs() as i64;
    let at = |secs: i64| {
        time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
    };
    (at(now - 86_400), at(now + i64::from(days) * 86_400))
}

/// The anchor's self-signed CA certificate (DER), valid for `days`: what
/// peers list to admit the nodes it admits.
pub fn anchor_certificate(
    anchor: &NodeKey,
    days: u32,
) -> Result<CertificateDer<'static>, IdentityError> {
    let mut params = anchor_params(anchor)?;
    (params.not_before, params.not_after) = validity(days);
    let cert = params
        .self_signed(&key_pair(anchor)?)
        .map_err(fail(anchor.node_id()))?;
    Ok(cert.der().clone())
}

/// A certificate (DER) for the node whose Ed25519 public key is
/// `node_public_key`, issued by `anchor` and valid for `days`; the node
/// presents it (with its own key) to be admitted where the anchor is.
pub fn admit(
    anchor: &NodeKey,
    node_public_key: &[u8; 32],
    days: u32,
) -> Result<CertificateDer<'static>, IdentityError> {
    let node = crate::identity::node_id_from_public_key(node_public_key);
    let name = format!("ferry-{node}");
    let mut params = CertificateParams::new(vec![name.clone()]).map_err(fail(node))?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    (params.not_before, params.not_after) = validity(days);
    let issuer = Issuer::new(anchor_params(anchor)?, key_pair(anchor)?);
    let cert = params
        .signed_by(&Ed25519Public(*node_public_key), &issuer)
        .map_err(fail(node))?;
    Ok(cert.der().clone())
}

/// Checks that `der` is a certificate webpki can use as a trust anchor.
pub fn check_anchor(der: &[u8]) -> Result<(), String> {
    webpki::anchor_from_trusted_cert(&CertificateDer::from(der))
        .map(|_| ())
        .map_err(|e| format!("not a trust anchor certificate (DER): {e}"))
}

/// Whether `end_entity` (with `intermediates`) chains to one of `anchors`
/// (certificate DERs) at `now`, for a server (`server`) or a client. The
/// reason if not.
pub(crate) fn chains_to(
    anchors: &[Vec<u8>],
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
    server: bool,
) -> Result<(), String> {
    let anchor_ders: Vec<CertificateDer<'_>> = anchors
        .iter()
        .map(|der| CertificateDer::from(der.as_slice()))
        .collect();
    let anchors = anchor_ders
        .iter()
        .map(webpki::anchor_from_trusted_cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("a configured trust anchor does not parse: {e}"))?;
    let cert = webpki::EndEntityCert::try_from(end_entity)
        .map_err(|e| format!("certificate does not parse: {e}"))?;
    let usage = match server {
        true => webpki::KeyUsage::server_auth(),
        false => webpki::KeyUsage::client_auth(),
    };
    cert.verify_for_usage(
        &[webpki::ring::ED25519],
        &anchors,
        intermediates,
        now,
        usage,
        None,
        None,
    )
    .map(|_| ())
    .map_err(|e| format!("certificate does not chain to a trust anchor: {e}"))
}
