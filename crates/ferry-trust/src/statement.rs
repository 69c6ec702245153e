//! Statements a publisher signs ([`Statement`]) and their signed wire form
//! ([`Signed`], `ferry.v1.SignedStatement`).

use ferry_proto::v1::{self, statement::Body};
use prost::Message;

use crate::key::{PublicKey, PublisherKey};

/// Which adapter a release belongs to.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Git,
    Oci,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Git => "git",
            Kind::Oci => "oci",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// "This release of `name`, for `destination`, is `version`."
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseClaim {
    pub kind: Kind,
    pub name: String,
    /// `group:NAME` or `node:HEX`: the bundle's destination.
    pub destination: String,
    /// Monotonic per (kind, name, destination).
    pub version: u64,
    /// BLAKE3 of the adapter's release bytes.
    pub release_digest: [u8; 32],
    /// The payload's manifest id.
    pub manifest_id: [u8; 32],
}

impl ReleaseClaim {
    /// The digest a claim carries for `release` (the adapter's release bytes).
    pub fn digest_of(release: &[u8]) -> [u8; 32] {
        *blake3::hash(release).as_bytes()
    }
}

/// What a publisher key can say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Statement {
    Release(ReleaseClaim),
    /// From now on `new_key` publishes what the signer did; the signer's key
    /// is retired.
    Rotation {
        new_key: PublicKey,
    },
    /// `revoked` may no longer sign anything.
    Revocation {
        revoked: PublicKey,
        reason: String,
    },
}

/// Why bytes are not a signed statement this node can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatementError {
    #[error("not a signed statement: {0}")]
    Malformed(String),
    #[error("the signature does not verify with key {0}")]
    BadSignature(PublicKey),
}

/// A statement with its signer's key and signature, as it travels. Only
/// [`Signed::verify`] yields the statement: nothing reads an unverified one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    statement: Vec<u8>,
    key: PublicKey,
    signature: [u8; 64],
}

/// Largest signed statement accepted from the wire.
pub const MAX_SIGNED_LEN: usize = 4096;

impl Signed {
    /// Signs `statement` (issued at `issued_ms`, the signer's clock) with `key`.
    pub fn sign(key: &PublisherKey, statement: &Statement, issued_ms: u64) -> Signed {
        let body = match statement {
            Statement::Release(c) => Body::Release(v1::ReleaseClaim {
                kind: c.kind.as_str().to_owned(),
                name: c.name.clone(),
                destination: c.destination.clone(),
                version: c.version,
                release_digest: c.release_digest.to_vec(),
                manifest_id: c.manifest_id.to_vec(),
            }),
            Statement::Rotation { new_key } => Body::Rotation(v1::KeyRotation {
                new_key: new_key.0.to_vec(),
            }),
            Statement::Revocation { revoked, reason } => Body::Revocation(v1::KeyRevocation {
                revoked_key: revoked.0.to_vec(),
                reason: reason.clone(),
            }),
        };
        let bytes = v1::Statement {
            body: Some(body),
            issued_ms,
        }
        .encode_to_vec();
        Signed {
            signature: key.sign(&bytes),
            statement: bytes,
            key: key.public(),
        }
    }

    /// The signer's key (as claimed; [`verify`](Self::verify) proves it).
    pub fn key(&self) -> PublicKey {
        self.key
    }

    /// The statement, if the signature verifies.
    pub fn verify(&self) -> Result<Statement, StatementError> {
        if !self.key.verifies(&self.statement, &self.signature) {
            return Err(StatementError::BadSignature(self.key));
        }
        decode_statement(&self.statement)
    }

    pub fn encode(&self) -> Vec<u8> {
        v1::SignedStatement {
            statement: self.statement.clone(),
            public_key: self.key.0.to_vec(),
            signature: self.signature.to_vec(),
        }
        .encode_to_vec()
    }

    pub fn decode(bytes: &[u8]) -> Result<Signed, StatementError> {
        let malformed = |what: &str| StatementError::Malformed(what.to_owned());
        if bytes.len() > MAX_SIGNED_LEN {
            return Err(malformed("longer than 4 KiB"));
        }
        let wire = v1::SignedStatement::decode(bytes)
            .map_err(|e| StatementError::Malformed(e.to_string()))?;
        Ok(Signed {
            key: PublicKey(
                wire.public_key
                    .try_into()
                    .map_err(|_| malformed("public key is not 32 bytes"))?,
            ),
            signature: wire
                .signature
                .try_into()
                .map_err(|_| malformed("signature is not 64 bytes"))?,
            statement: wire.statement,
        })
    }
}

fn decode_statement(bytes: &[u8]) -> Result<Statement, StatementError> {
    let malformed = |what: String| StatementError::Malformed(what);
    let wire = v1::Statement::decode(bytes).map_err(|e| malformed(e.to_string()))?;
    let key = |bytes: Vec<u8>, what: &str| {
        bytes
            .try_into()
            .map(PublicKey)
            .map_err(|_| malformed(format!("{what} is not 32 bytes")))
    };
    let digest = |bytes: Vec<u8>, what: &str| -> Result<[u8; 32], StatementError> {
        bytes
            .try_into()
            .map_err(|_| malformed(format!("{what} is not 32 bytes")))
    };
    match wire
        .body
        .ok_or_else(|| malformed("statement without a body".into()))?
    {
        Body::Release(c) => Ok(Statement::Release(ReleaseClaim {
            kind: match c.kind.as_str() {
                "git" => Kind::Git,
                "oci" => Kind::Oci,
                other => return Err(malformed(format!("release kind {other:?}"))),
            },
            name: c.name,
            destination: c.destination,
            version: c.version,
            release_digest: digest(c.release_digest, "release digest")?,
            manifest_id: digest(c.manifest_id, "manifest id")?,
        })),
        Body::Rotation(r) => Ok(Statement::Rotation {
            new_key: key(r.new_key, "new key")?,
        }),
        Body::Revocation(r) => Ok(Statement::Revocation {
            revoked: key(r.revoked_key, "revoked key")?,
            reason: r.reason,
        }),
    }
}
