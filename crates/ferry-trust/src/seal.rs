//! End-to-end sealing for a group: the building blocks.
//!
//! - A [`GroupKey`] (32 random bytes) is shared by a group's members. It
//!   travels wrapped for each member ([`GroupKey::wrap_for`]): X25519 with
//!   a fresh ephemeral key against the member's key — derived from its
//!   Ed25519 node key ([`MemberPublic::from_node_public_key`],
//!   [`MemberSecret::from_node_seed`]), so no second key pair is managed —
//!   then ChaCha20-Poly1305 under a key derived from the shared secret.
//! - A chunk is sealed *convergently within the group*
//!   ([`GroupKey::seal_chunk`]): ChaCha20-Poly1305 under a chunk key derived
//!   from the group key, with a synthetic nonce — a keyed hash of the
//!   plaintext, as in SIV — written before the ciphertext. The same
//!   plaintext gives the same sealed bytes within one group, so
//!   content-defined dedupe keeps working between versions; another group,
//!   a relay or a medium sees unrelated ciphertext. A member opens any chunk
//!   with the group key alone ([`GroupKey::open_chunk`]): no per-chunk index
//!   travels. Each chunk grows by [`SEAL_OVERHEAD`] bytes.
//! - Small records (the sealed release) are sealed the same way under
//!   their own derived keys ([`GroupKey::seal_record`]).
//!
//! The trade-off, by design: within a group, two equal chunks are visibly
//! equal (that is what lets dedupe work); their contents are not revealed.

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

const CHUNK_CONTEXT: &str = "ferry seal chunk key v2";
const CHUNK_NONCE_CONTEXT: &str = "ferry seal chunk nonce v2";
const RECORD_CONTEXT: &str = "ferry seal record key v1";
const RECORD_NONCE_CONTEXT: &str = "ferry seal record nonce v1";
const WRAP_CONTEXT: &str = "ferry seal wrap v1";
const ID_CONTEXT: &str = "ferry seal group id v1";

/// The AEAD tag each sealed chunk or record adds.
pub const TAG_LEN: usize = 16;
/// What sealing adds to a chunk or record: the synthetic nonce and the tag.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("sealed data does not open with this key (tampered, or another group's)")]
    Open,
    #[error("sealed data is too short")]
    Short,
    #[error("the system random number generator failed")]
    Random,
}

fn aead(key: &[u8; 32]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, key).expect("a 32-byte key"))
}

fn seal_with(key: &[u8; 32], nonce: [u8; NONCE_LEN], aad: &[u8], plain: &[u8]) -> Vec<u8> {
    let mut data = Vec::with_capacity(plain.len() + TAG_LEN);
    data.extend_from_slice(plain);
    aead(key)
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut data,
        )
        .expect("ChaCha20-Poly1305 seals any length a Vec holds");
    data
}

fn open_with(
    key: &[u8; 32],
    nonce: [u8; NONCE_LEN],
    aad: &[u8],
    sealed: &[u8],
) -> Result<Vec<u8>, SealError> {
    if sealed.len() < TAG_LEN {
        return Err(SealError::Short);
    }
    let mut data = sealed.to_vec();
    let plain_len = aead(key)
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut data,
        )
        .map_err(|_| SealError::Open)?
        .len();
    data.truncate(plain_len);
    Ok(data)
}

/// A group's secret key.
#[derive(Clone, PartialEq, Eq)]
pub struct GroupKey([u8; 32]);

impl Drop for GroupKey {
    fn drop(&mut self) {
        self.0 = [0; 32];
    }
}

impl std::fmt::Debug for GroupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GroupKey({})", hex::encode(self.id()))
    }
}

impl GroupKey {
    pub fn generate() -> Result<Self, SealError> {
        let mut key = [0u8; 32];
        SystemRandom::new()
            .fill(&mut key)
            .map_err(|_| SealError::Random)?;
        Ok(GroupKey(key))
    }

    pub fn from_bytes(key: [u8; 32]) -> Self {
        GroupKey(key)
    }

    /// The secret itself, for writing it to its key file.
    pub(crate) fn secret_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A public name for the key (not secret, not reversible).
    pub fn id(&self) -> [u8; 16] {
        let full = blake3::derive_key(ID_CONTEXT, &self.0);
        full[..16].try_into().expect("16 of 32 bytes")
    }

    /// Seals one chunk convergently: the same plaintext gives the same
    /// bytes within this group (nonce, then ciphertext and tag).
    pub fn seal_chunk(&self, plain: &[u8]) -> Vec<u8> {
        self.seal_siv(CHUNK_CONTEXT, CHUNK_NONCE_CONTEXT, plain)
    }

    /// The chunk `sealed` holds, if this group sealed it.
    pub fn open_chunk(&self, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        self.open_siv(CHUNK_CONTEXT, sealed)
    }

    /// Seals a small record deterministically, as chunks are but under
    /// keys of its own.
    pub fn seal_record(&self, plain: &[u8]) -> Vec<u8> {
        self.seal_siv(RECORD_CONTEXT, RECORD_NONCE_CONTEXT, plain)
    }

    /// The record `sealed` holds, if this group sealed it.
    pub fn open_record(&self, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        self.open_siv(RECORD_CONTEXT, sealed)
    }

    /// Nonce (a keyed hash of `plain`), then ciphertext and tag. Two
    /// plaintexts share a nonce only if 96 bits of their keyed hashes
    /// collide (about 2^-32 after 2^32 chunks under one group key).
    fn seal_siv(&self, key_context: &str, nonce_context: &str, plain: &[u8]) -> Vec<u8> {
        let key = blake3::derive_key(key_context, &self.0);
        let nonce_key = blake3::derive_key(nonce_context, &self.0);
        let nonce: [u8; NONCE_LEN] = blake3::keyed_hash(&nonce_key, plain).as_bytes()[..NONCE_LEN]
            .try_into()
            .expect("12 of 32 bytes");
        let mut out = Vec::with_capacity(SEAL_OVERHEAD + plain.len());
        out.extend_from_slice(&nonce);
        out.extend(seal_with(&key, nonce, b"", plain));
        out
    }

    fn open_siv(&self, key_context: &str, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        if sealed.len() < SEAL_OVERHEAD {
            return Err(SealError::Short);
        }
        let key = blake3::derive_key(key_context, &self.0);
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        open_with(&key, nonce.try_into().expect("12 bytes"), b"", rest)
    }

    /// This key wrapped for one member: 32 bytes of ephemeral public key,
    /// then the sealed key (48 bytes).
    pub fn wrap_for(&self, member: &MemberPublic) -> Result<Vec<u8>, SealError> {
        let mut seed = [0u8; 32];
        SystemRandom::new()
            .fill(&mut seed)
            .map_err(|_| SealError::Random)?;
        let ephemeral = x25519_dalek::StaticSecret::from(seed);
        let ephemeral_public = x25519_dalek::PublicKey::from(&ephemeral);
        let shared = ephemeral.diffie_hellman(&x25519_dalek::PublicKey::from(member.0));
        let key = wrap_key(shared.as_bytes(), ephemeral_public.as_bytes(), &member.0);
        let mut out = ephemeral_public.as_bytes().to_vec();
        out.extend(seal_with(&key, [0; NONCE_LEN], &member.0, &self.0));
        Ok(out)
    }
}

fn wrap_key(shared: &[u8; 32], ephemeral: &[u8; 32], member: &[u8; 32]) -> [u8; 32] {
    let mut material = Vec::with_capacity(96);
    material.extend_from_slice(shared);
    material.extend_from_slice(ephemeral);
    material.extend_from_slice(member);
    blake3::derive_key(WRAP_CONTEXT, &material)
}

/// A member's X25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct MemberPublic(pub [u8; 32]);

impl MemberPublic {
    /// The X25519 form of a node's Ed25519 public key (its birational map).
    pub fn from_node_public_key(ed25519: &[u8; 32]) -> Option<Self> {
        let key = ed25519_dalek::VerifyingKey::from_bytes(ed25519).ok()?;
        Some(MemberPublic(key.to_montgomery().to_bytes()))
    }
}

/// A member's X25519 secret, derived from its Ed25519 node key's seed.
pub struct MemberSecret(x25519_dalek::StaticSecret);

impl MemberSecret {
    pub fn from_node_seed(seed: &[u8; 32]) -> Self {
        let signing = ed25519_dalek::SigningKey::from_bytes(seed);
        MemberSecret(x25519_dalek::StaticSecret::from(signing.to_scalar_bytes()))
    }

    pub fn public(&self) -> MemberPublic {
        MemberPublic(x25519_dalek::PublicKey::from(&self.0).to_bytes())
    }

    /// A key only this member and `peer` can compute (X25519 between their
    /// node keys, then BLAKE3 in `context` over the shared secret and both
    /// public keys in a fixed order): for keying a link between two nodes.
    pub fn agree(&self, peer: &MemberPublic, context: &str) -> [u8; 32] {
        let shared = self
            .0
            .diffie_hellman(&x25519_dalek::PublicKey::from(peer.0));
        let (me, them) = (self.public().0, peer.0);
        let (low, high) = if me <= them { (me, them) } else { (them, me) };
        let mut material = shared.as_bytes().to_vec();
        material.extend_from_slice(&low);
        material.extend_from_slice(&high);
        blake3::derive_key(context, &material)
    }

    /// The group key `wrapped` holds, if it was wrapped for this member.
    pub fn unwrap(&self, wrapped: &[u8]) -> Result<GroupKey, SealError> {
        if wrapped.len() != 32 + 32 + TAG_LEN {
            return Err(SealError::Short);
        }
        let (ephemeral, sealed) = wrapped.split_at(32);
        let ephemeral: [u8; 32] = ephemeral.try_into().expect("32 bytes");
        let shared = self
            .0
            .diffie_hellman(&x25519_dalek::PublicKey::from(ephemeral));
        let me = self.public().0;
        let key = wrap_key(shared.as_bytes(), &ephemeral, &me);
        let plain = open_with(&key, [0; NONCE_LEN], &me, sealed)?;
        Ok(GroupKey(plain.try_into().map_err(|_| SealError::Open)?))
    }
}
