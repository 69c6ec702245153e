//! Publisher keys: [`PublisherKey`] signs, [`PublicKey`] names and verifies.
//! A publisher key is separate from every node key: a stolen leaf leaks its
//! node key, never the right to publish.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

use crate::keyfile::{self, KeyFileError};

/// Domain separation: what a publisher signs is never mistaken for anything
/// else its key might sign.
pub(crate) const CONTEXT: &[u8] = b"ferry statement v1\0";

/// An Ed25519 public key, written `ed25519:<64 hex digits>`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// Whether `signature` is this key's signature of `statement` (with the
    /// statement context prefixed). Strict verification: no malleable or
    /// small-order forms.
    pub fn verifies(&self, statement: &[u8], signature: &[u8]) -> bool {
        let Ok(key) = VerifyingKey::from_bytes(&self.0) else {
            return false;
        };
        let Ok(signature) = ed25519_dalek::Signature::from_slice(signature) else {
            return false;
        };
        let message = [CONTEXT, statement].concat();
        key.verify_strict(&message, &signature).is_ok()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ed25519:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for PublicKey {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex_part = s
            .strip_prefix("ed25519:")
            .ok_or_else(|| format!("{s:?}: a publisher key is written ed25519:<64 hex digits>"))?;
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut bytes)
            .map_err(|e| format!("{s:?}: not 32 bytes of hex: {e}"))?;
        VerifyingKey::from_bytes(&bytes).map_err(|_| format!("{s:?}: not an Ed25519 point"))?;
        Ok(PublicKey(bytes))
    }
}

impl serde::Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A publisher's signing key. The secret is wiped when dropped; `Debug`
/// shows only the public key.
#[derive(Clone)]
pub struct PublisherKey {
    signing: SigningKey,
}

impl PublisherKey {
    /// A new key from the operating system's random number generator.
    pub fn generate() -> Result<Self, KeyFileError> {
        Ok(PublisherKey {
            signing: keyfile::generate()?,
        })
    }

    /// The key whose secret is `seed` (tests and deterministic set-ups).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        PublisherKey {
            signing: SigningKey::from_bytes(&seed),
        }
    }

    pub fn load(path: impl AsRef<Path>) -> Result<Self, KeyFileError> {
        Ok(PublisherKey {
            signing: keyfile::load(path.as_ref())?,
        })
    }

    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), KeyFileError> {
        keyfile::save(&self.signing, path.as_ref())
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key().to_bytes())
    }

    /// The signature of `statement`, with the statement context prefixed.
    pub(crate) fn sign(&self, statement: &[u8]) -> [u8; 64] {
        self.signing.sign(&[CONTEXT, statement].concat()).to_bytes()
    }
}

impl fmt::Debug for PublisherKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublisherKey({})", self.public())
    }
}
