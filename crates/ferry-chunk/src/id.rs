//! 32-byte BLAKE3 identifiers for chunks and manifests.

use std::fmt;

/// Width in bytes of a [`ChunkId`] or [`ManifestId`].
pub use ferry_proto::ID_LEN;

macro_rules! blake3_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub [u8; ID_LEN]);

        impl $name {
            /// Wraps a 32-byte slice; `None` if it is not exactly 32 bytes long.
            pub fn from_slice(bytes: &[u8]) -> Option<Self> {
                <[u8; ID_LEN]>::try_from(bytes).ok().map(Self)
            }

            /// Parses 64 hex digits (either case); `None` on anything else.
            pub fn from_hex(text: &str) -> Option<Self> {
                let mut bytes = [0u8; ID_LEN];
                hex::decode_to_slice(text, &mut bytes).ok()?;
                Some(Self(bytes))
            }

            /// The raw 32 bytes.
            pub fn as_bytes(&self) -> &[u8; ID_LEN] {
                &self.0
            }
        }

        impl From<[u8; ID_LEN]> for $name {
            fn from(bytes: [u8; ID_LEN]) -> Self {
                Self(bytes)
            }
        }

        impl AsRef<[u8]> for $name {
            fn as_ref(&self) -> &[u8] {
                &self.0
            }
        }

        /// The full id as 64 lowercase hex digits.
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut buf = [0u8; 2 * ID_LEN];
                // Cannot fail: the buffer is exactly twice the input length.
                hex::encode_to_slice(self.0, &mut buf).map_err(|_| fmt::Error)?;
                // Hex digits are ASCII.
                f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
            }
        }

        /// A short form for logs: the first 8 bytes in hex followed by an ellipsis.
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({}…)", stringify!($name), hex::encode(&self.0[..8]))
            }
        }
    };
}

blake3_id!(
    /// A chunk's identity: the BLAKE3 hash of its plain bytes.
    ChunkId
);

blake3_id!(
    /// A manifest's identity: the BLAKE3 hash of its canonical protobuf encoding
    /// (see [`Manifest::id`](crate::Manifest::id)).
    ManifestId
);

impl ChunkId {
    /// The id of `bytes`: their BLAKE3 hash.
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    /// Whether `bytes` hash to this id.
    pub fn matches(&self, bytes: &[u8]) -> bool {
        // blake3::Hash compares in constant time; timing is irrelevant here but
        // this is also the cheapest correct comparison.
        blake3::hash(bytes) == blake3::Hash::from_bytes(self.0)
    }
}

impl ManifestId {
    /// The id of an encoded manifest: the BLAKE3 hash of its bytes.
    pub fn of_encoding(encoded: &[u8]) -> Self {
        Self(*blake3::hash(encoded).as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_lowercase_hex_and_debug_is_short() {
        let id = ChunkId::of(b"");
        // BLAKE3 of the empty input, from the reference test vectors.
        let hex = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";
        assert_eq!(id.to_string(), hex);
        assert_eq!(format!("{id:?}"), "ChunkId(af1349b9f5f9a1a6…)");
        assert_eq!(ChunkId::from_hex(hex), Some(id));
        assert_eq!(ChunkId::from_hex(&hex.to_uppercase()), Some(id));
        assert_eq!(ChunkId::from_hex(&hex[1..]), None);
    }

    #[test]
    fn from_slice_requires_32_bytes() {
        assert_eq!(ManifestId::from_slice(&[7; 32]), Some(ManifestId([7; 32])));
        assert_eq!(ManifestId::from_slice(&[7; 31]), None);
        assert_eq!(ManifestId::from_slice(&[7; 33]), None);
        assert_eq!(ManifestId([9; 32]).as_bytes(), &[9; 32]);
    }

    #[test]
    fn matches_checks_the_hash() {
        let id = ChunkId::of(b"hello");
        assert!(id.matches(b"hello"));
        assert!(!id.matches(b"hellO"));
    }
}
