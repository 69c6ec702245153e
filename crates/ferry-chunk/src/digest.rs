//! Native digests: the id an object has in its own ecosystem (OCI sha256, Git
//! object id), which is checked before the object is served.

use std::fmt;
use std::str::FromStr;

use sha1::Sha1;
use sha2::{Digest, Sha256};

/// An object's digest in its own ecosystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NativeDigest {
    /// SHA-256 of the bytes, as in OCI descriptors.
    Sha256([u8; 32]),
    /// A Git object id: the hash of `"<type> <length>\0"` followed by the bytes.
    Git {
        algorithm: GitHash,
        object_type: GitObjectType,
    },
}

/// A Git object id, in a SHA-1 or a SHA-256 repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GitHash {
    Sha1([u8; 20]),
    Sha256([u8; 32]),
}

impl GitHash {
    /// The raw id bytes (20 or 32).
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            GitHash::Sha1(bytes) => bytes,
            GitHash::Sha256(bytes) => bytes,
        }
    }
}

/// The four Git object types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GitObjectType {
    Blob,
    Tree,
    Commit,
    Tag,
}

impl GitObjectType {
    /// The name Git uses in object headers: `blob`, `tree`, `commit` or `tag`.
    pub fn as_str(&self) -> &'static str {
        match self {
            GitObjectType::Blob => "blob",
            GitObjectType::Tree => "tree",
            GitObjectType::Commit => "commit",
            GitObjectType::Tag => "tag",
        }
    }
}

impl fmt::Display for GitObjectType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not one of Git's four object type names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a Git object type (blob, tree, commit or tag)")]
pub struct UnknownGitObjectType(pub String);

impl FromStr for GitObjectType {
    type Err = UnknownGitObjectType;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "blob" => Ok(GitObjectType::Blob),
            "tree" => Ok(GitObjectType::Tree),
            "commit" => Ok(GitObjectType::Commit),
            "tag" => Ok(GitObjectType::Tag),
            other => Err(UnknownGitObjectType(other.to_owned())),
        }
    }
}

impl NativeDigest {
    /// The SHA-256 digest of `bytes` (OCI).
    pub fn sha256_of(bytes: &[u8]) -> Self {
        NativeDigest::Sha256(Sha256::digest(bytes).into())
    }

    /// The Git object id of `bytes` as a `object_type` object in a SHA-1 repository.
    pub fn git_sha1_of(object_type: GitObjectType, bytes: &[u8]) -> Self {
        let mut state = DigestState::git_sha1(object_type, bytes.len() as u64);
        state.update(bytes);
        state.finish()
    }

    /// The Git object id of `bytes` as a `object_type` object in a SHA-256 repository.
    pub fn git_sha256_of(object_type: GitObjectType, bytes: &[u8]) -> Self {
        let mut state = DigestState::git_sha256(object_type, bytes.len() as u64);
        state.update(bytes);
        state.finish()
    }

    /// The digest value's bytes (32 for SHA-256, 20 or 32 for Git).
    pub fn value(&self) -> &[u8] {
        match self {
            NativeDigest::Sha256(bytes) => bytes,
            NativeDigest::Git { algorithm, .. } => algorithm.as_bytes(),
        }
    }
}

/// `sha256:<hex>` (the OCI form), or `git-sha1 <type> <hex>` / `git-sha256 <type> <hex>`.
impl fmt::Display for NativeDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NativeDigest::Sha256(bytes) => write!(f, "sha256:{}", hex::encode(bytes)),
            NativeDigest::Git {
                algorithm: GitHash::Sha1(bytes),
                object_type,
            } => {
                write!(f, "git-sha1 {object_type} {}", hex::encode(bytes))
            }
            NativeDigest::Git {
                algorithm: GitHash::Sha256(bytes),
                object_type,
            } => {
                write!(f, "git-sha256 {object_type} {}", hex::encode(bytes))
            }
        }
    }
}

/// Computes a native digest incrementally, one chunk at a time.
#[derive(Clone)]
pub(crate) enum DigestState {
    Sha256(Sha256),
    GitSha1(Sha1, GitObjectType),
    GitSha256(Sha256, GitObjectType),
}

impl DigestState {
    pub(crate) fn sha256() -> Self {
        DigestState::Sha256(Sha256::new())
    }

    fn git_sha1(object_type: GitObjectType, length: u64) -> Self {
        let mut hasher = Sha1::new();
        hasher.update(git_header(object_type, length));
        DigestState::GitSha1(hasher, object_type)
    }

    fn git_sha256(object_type: GitObjectType, length: u64) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(git_header(object_type, length));
        DigestState::GitSha256(hasher, object_type)
    }

    /// A state that computes a digest of the same kind as `expected` over an
    /// object of `length` bytes (Git hashes the length first).
    pub(crate) fn like(expected: &NativeDigest, length: u64) -> Self {
        match expected {
            NativeDigest::Sha256(_) => Self::sha256(),
            NativeDigest::Git {
                algorithm: GitHash::Sha1(_),
                object_type,
            } => Self::git_sha1(*object_type, length),
            NativeDigest::Git {
                algorithm: GitHash::Sha256(_),
                object_type,
            } => Self::git_sha256(*object_type, length),
        }
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        match self {
            DigestState::Sha256(hasher) | DigestState::GitSha256(hasher, _) => hasher.update(bytes),
            DigestState::GitSha1(hasher, _) => hasher.update(bytes),
        }
    }

    pub(crate) fn finish(self) -> NativeDigest {
        match self {
            DigestState::Sha256(hasher) => NativeDigest::Sha256(hasher.finalize().into()),
            DigestState::GitSha1(hasher, object_type) => NativeDigest::Git {
                algorithm: GitHash::Sha1(hasher.finalize().into()),
                object_type,
            },
            DigestState::GitSha256(hasher, object_type) => NativeDigest::Git {
                algorithm: GitHash::Sha256(hasher.finalize().into()),
                object_type,
            },
        }
    }
}

fn git_header(object_type: GitObjectType, length: u64) -> String {
    format!("{object_type} {length}\0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_ids_match_git() {
        // `printf 'hello\n' | git hash-object --stdin`
        let id = NativeDigest::git_sha1_of(GitObjectType::Blob, b"hello\n");
        assert_eq!(
            id.to_string(),
            "git-sha1 blob ce013625030ba8dba906f756967f9e9ca394464a"
        );
        // The empty tree, in SHA-1 and SHA-256 repositories.
        let empty_tree = NativeDigest::git_sha1_of(GitObjectType::Tree, b"");
        assert_eq!(
            hex::encode(empty_tree.value()),
            "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
        );
        let empty_tree = NativeDigest::git_sha256_of(GitObjectType::Tree, b"");
        assert_eq!(
            hex::encode(empty_tree.value()),
            "6ef19b41225c5369f1c104d45d8d85efa9b057b53b14b4b9b939dd74decc5321"
        );
    }

    #[test]
    fn sha256_matches_the_standard_vector() {
        let digest = NativeDigest::sha256_of(b"abc");
        assert_eq!(
            digest.to_string(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn incremental_equals_one_shot() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for expected in [
            NativeDigest::sha256_of(&data),
            NativeDigest::git_sha1_of(GitObjectType::Commit, &data),
            NativeDigest::git_sha256_of(GitObjectType::Tag, &data),
        ] {
            let mut state = DigestState::like(&expected, data.len() as u64);
            for piece in data.chunks(777) {
                state.update(piece);
            }
            assert_eq!(state.finish(), expected);
        }
    }

    #[test]
    fn object_types_round_trip() {
        for t in [
            GitObjectType::Blob,
            GitObjectType::Tree,
            GitObjectType::Commit,
            GitObjectType::Tag,
        ] {
            assert_eq!(t.as_str().parse::<GitObjectType>(), Ok(t));
        }
        assert!("Blob".parse::<GitObjectType>().is_err());
    }
}
