//! `Digest`: an OCI content digest. Only `sha256:` is accepted, and its
//! text form is checked so that a digest can name a file
//! (`blobs/sha256/<hex>`) without escaping a directory.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

/// A SHA-256 content digest, written `sha256:<64 lowercase hex digits>`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest(pub [u8; 32]);

/// Text that is not a `sha256:<64 hex>` digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a digest: {reason}")]
pub struct BadDigest {
    pub text: String,
    pub reason: &'static str,
}

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Digest(Sha256::digest(bytes).into())
    }

    /// The 64 hex digits, as the blob's file name.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// From the 32 raw bytes of a wire message.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Digest)
    }
}

impl FromStr for Digest {
    type Err = BadDigest;

    fn from_str(text: &str) -> Result<Self, BadDigest> {
        let bad = |reason| BadDigest {
            text: text.chars().take(100).collect(),
            reason,
        };
        let Some((algorithm, hex_digits)) = text.split_once(':') else {
            return Err(bad("no algorithm prefix (expected sha256:...)"));
        };
        if algorithm != "sha256" {
            return Err(bad("only sha256 digests are supported"));
        }
        if hex_digits.len() != 64
            || !hex_digits
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(bad("expected 64 lowercase hex digits"));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_digits, &mut out).map_err(|_| bad("invalid hex"))?;
        Ok(Digest(out))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Checks a repository name against the distribution spec's grammar:
/// slash-separated components of `[a-z0-9]` runs joined by `.`, `_`, `__`
/// or `-`s. Such a name has no `..`, no empty component and no leading
/// slash, so it is safe as a relative path.
pub fn check_repository(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 255 {
        return Err(format!(
            "repository name {name:?} must have 1 to 255 characters"
        ));
    }
    for component in name.split('/') {
        let bytes = component.as_bytes();
        let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        let ok = !bytes.is_empty()
            && alnum(bytes[0])
            && alnum(bytes[bytes.len() - 1])
            && bytes.windows(2).all(|w| {
                // Separators: '.', '_', '__', or runs of '-'; never '.'/'_' next to another separator except "__" and "--".
                let sep = |b: u8| b == b'.' || b == b'_' || b == b'-';
                !(sep(w[0]) && sep(w[1]))
                    || (w[0] == b'-' && w[1] == b'-')
                    || (w[0] == b'_' && w[1] == b'_')
            })
            && !component.contains("___")
            && bytes
                .iter()
                .all(|&b| alnum(b) || b == b'.' || b == b'_' || b == b'-');
        if !ok {
            return Err(format!(
                "repository name {name:?}: component {component:?} is not lowercase letters and digits joined by '.', '_', '__' or '-'"
            ));
        }
    }
    Ok(())
}

/// Checks a tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub fn check_tag(tag: &str) -> Result<(), String> {
    let bytes = tag.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= 128
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "tag {tag:?} is not 1 to 128 of [A-Za-z0-9_.-] starting with a letter, digit or '_'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_round_trips_and_rejects_path_tricks() {
        let d = Digest::of(b"hello");
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
        for bad in [
            "sha256:../../etc/passwd",
            "sha512:00",
            "sha256:ABCDEF",
            &format!("sha256:{}", "A".repeat(64)),
            "nocolon",
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad}");
        }
    }

    #[test]
    fn repository_names_follow_the_spec_grammar() {
        for ok in [
            "library/debian",
            "a",
            "my-org/sub.team/app_x",
            "a__b",
            "a--b",
        ] {
            check_repository(ok).unwrap();
        }
        for bad in [
            "", "../x", "a//b", "/a", "a/", "A", "a..b", "a/./b", "a/../b", "a___b", "a-",
        ] {
            assert!(check_repository(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tags_follow_the_spec_grammar() {
        check_tag("v1.2.3-rc_1").unwrap();
        for bad in ["", ".x", "-x", "a/b", "..", &"x".repeat(129)] {
            assert!(check_tag(bad).is_err(), "{bad}");
        }
    }
}
