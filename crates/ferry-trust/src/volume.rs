//! Signatures of removable-media files (volumes and receipts): the node
//! that wrote a file signs its BLAKE3 and length with its node key, in a
//! detached `FILE.sig` beside it. An importing node checks the signature,
//! that the signer is a node it admits, and that the file names the signer
//! as its writer, before it takes custody of anything in it.
//!
//! The text form is one line: `ferry-volume-signature-v1 <node public key
//! hex> <signature hex>`.

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

/// Domain separation: a volume signature is never mistaken for another
/// signature by the same node key (TLS, statements).
const CONTEXT: &[u8] = b"ferry volume v1\0";
const TAG: &str = "ferry-volume-signature-v1";

/// A node's signature of one media file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VolumeSignature {
    /// The signer's Ed25519 node public key.
    pub node_key: [u8; 32],
    pub signature: [u8; 64],
}

fn message(digest: &[u8; 32], len: u64) -> Vec<u8> {
    let mut m = CONTEXT.to_vec();
    m.extend_from_slice(digest);
    m.extend_from_slice(&len.to_le_bytes());
    m
}

impl VolumeSignature {
    /// Signs a file whose BLAKE3 is `digest` and length `len`.
    pub fn sign(key: &SigningKey, digest: &[u8; 32], len: u64) -> Self {
        VolumeSignature {
            node_key: key.verifying_key().to_bytes(),
            signature: key.sign(&message(digest, len)).to_bytes(),
        }
    }

    /// Whether this signs the file whose BLAKE3 is `digest` and length
    /// `len` (strict verification).
    pub fn verifies(&self, digest: &[u8; 32], len: u64) -> bool {
        let Ok(key) = VerifyingKey::from_bytes(&self.node_key) else {
            return false;
        };
        let signature = ed25519_dalek::Signature::from_bytes(&self.signature);
        key.verify_strict(&message(digest, len), &signature).is_ok()
    }

    /// The signer's node id (BLAKE3 of its public key).
    pub fn node_id(&self) -> [u8; 32] {
        *blake3::hash(&self.node_key).as_bytes()
    }

    pub fn to_text(&self) -> String {
        format!(
            "{TAG} {} {}\n",
            hex::encode(self.node_key),
            hex::encode(self.signature)
        )
    }

    pub fn from_text(text: &str) -> Result<Self, String> {
        let bad =
            || format!("a volume signature is one line: {TAG} <64 hex digits> <128 hex digits>");
        let mut words = text.split_ascii_whitespace();
        if words.next() != Some(TAG) {
            return Err(bad());
        }
        let (Some(key), Some(signature), None) = (words.next(), words.next(), words.next()) else {
            return Err(bad());
        };
        let mut out = VolumeSignature {
            node_key: [0; 32],
            signature: [0; 64],
        };
        hex::decode_to_slice(key, &mut out.node_key).map_err(|_| bad())?;
        hex::decode_to_slice(signature, &mut out.signature).map_err(|_| bad())?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_covers_the_digest_and_length_and_reads_back() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let digest = *blake3::hash(b"volume").as_bytes();
        let s = VolumeSignature::sign(&key, &digest, 6);
        assert!(s.verifies(&digest, 6));
        assert!(!s.verifies(&digest, 7));
        assert!(!s.verifies(blake3::hash(b"volumE").as_bytes(), 6));
        let back = VolumeSignature::from_text(&s.to_text()).unwrap();
        assert_eq!(back, s);
        let mut forged = s;
        forged.node_key = SigningKey::from_bytes(&[4; 32]).verifying_key().to_bytes();
        assert!(!forged.verifies(&digest, 6));
        for bad in [
            "",
            "ferry-volume-signature-v1 00 11",
            &s.to_text().replace("v1", "v2"),
        ] {
            assert!(VolumeSignature::from_text(bad).is_err(), "{bad:?}");
        }
    }
}
