//! `GitRelease`: what a publisher wants a leaf's repository to show, and its
//! compact encoding (the `release` bytes of a `PAYLOAD_KIND_GIT` bundle).
//!
//! A release is either a full snapshot of the published refs (`base` is
//! `None`) or the changes since release `base` of the same repository and
//! destination: refs that appeared or moved, and refs deleted. Releases of a
//! repository form a chain by `sequence`; a leaf applies them in order.

use prost::Message;

use crate::Oid;
use crate::packcode::PackEncoding;
use crate::serve::validate_repo_name;

/// One ref of a release: its new commit (or tag), or `None` when deleted.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RefUpdate {
    /// Full ref name, `refs/...`.
    pub name: String,
    pub target: Option<Oid>,
}

/// A set of refs and commits for one repository, plus what the thin pack
/// that travels with it assumes the receiver already holds.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct GitRelease {
    /// The repository's name at the leaf (a path of `[A-Za-z0-9._-]` segments).
    pub repository: String,
    /// Increases with every release of this repository to a destination.
    pub sequence: u64,
    /// `None`: a full snapshot (every published ref; refs not listed are
    /// deleted). `Some(n)`: the refs changed since release `n`.
    pub base: Option<u64>,
    pub refs: Vec<RefUpdate>,
    /// Commits the thin pack's deltas and history assume present.
    pub prerequisites: Vec<Oid>,
    /// Objects in the pack (its header, which does not travel).
    pub objects: u32,
    /// Where the repository's HEAD points, when it changed (or in a snapshot).
    pub head: Option<String>,
    /// How the payload encodes the pack.
    pub encoding: PackEncoding,
}

#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("release bytes are not a Git release: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("release of {repository:?}: {reason}")]
    Invalid { repository: String, reason: String },
}

#[derive(Clone, PartialEq, prost::Message)]
struct WireRelease {
    #[prost(string, tag = "1")]
    repository: String,
    #[prost(uint64, tag = "2")]
    sequence: u64,
    /// `sequence - base`; 0 for a full snapshot.
    #[prost(uint64, tag = "3")]
    base_distance: u64,
    #[prost(message, repeated, tag = "4")]
    refs: Vec<WireRef>,
    /// Concatenated 20-byte object ids.
    #[prost(bytes = "vec", tag = "5")]
    prerequisites: Vec<u8>,
    #[prost(uint32, tag = "6")]
    objects: u32,
    /// Without the `refs/` prefix; empty: unchanged.
    #[prost(string, tag = "7")]
    head: String,
    /// 0: raw pack body; 1: re-coded (see `packcode`).
    #[prost(uint32, tag = "8")]
    encoding: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct WireRef {
    /// Without the `refs/` prefix.
    #[prost(string, tag = "1")]
    name: String,
    /// 20 bytes; empty: deleted.
    #[prost(bytes = "vec", tag = "2")]
    target: Vec<u8>,
}

const REFS: &str = "refs/";

impl GitRelease {
    /// The compact binary form carried in a bundle header.
    pub fn encode(&self) -> Vec<u8> {
        let strip = |name: &str| name.strip_prefix(REFS).unwrap_or(name).to_owned();
        WireRelease {
            repository: self.repository.clone(),
            sequence: self.sequence,
            base_distance: self.base.map_or(0, |b| self.sequence - b),
            refs: self
                .refs
                .iter()
                .map(|r| WireRef {
                    name: strip(&r.name),
                    target: r.target.map(|o| o.0.to_vec()).unwrap_or_default(),
                })
                .collect(),
            prerequisites: self.prerequisites.iter().flat_map(|o| o.0).collect(),
            objects: self.objects,
            head: self.head.as_deref().map(strip).unwrap_or_default(),
            encoding: self.encoding as u32,
        }
        .encode_to_vec()
    }

    /// Decodes and validates release bytes from the wire.
    pub fn decode(bytes: &[u8]) -> Result<Self, ReleaseError> {
        let wire = WireRelease::decode(bytes)?;
        let invalid = |reason: String| ReleaseError::Invalid {
            repository: wire.repository.clone(),
            reason,
        };
        if wire.base_distance > wire.sequence {
            return Err(invalid(format!(
                "base is {} releases before sequence {}",
                wire.base_distance, wire.sequence
            )));
        }
        if wire.prerequisites.len() % 20 != 0 {
            return Err(invalid("prerequisites are not whole 20-byte ids".into()));
        }
        let mut refs = Vec::with_capacity(wire.refs.len());
        for r in &wire.refs {
            let target = match r.target.len() {
                0 => None,
                _ => Some(Oid::from_slice(&r.target).ok_or_else(|| {
                    invalid(format!("ref {:?} has a {}-byte id", r.name, r.target.len()))
                })?),
            };
            refs.push(RefUpdate {
                name: format!("{REFS}{}", r.name),
                target,
            });
        }
        let encoding = match wire.encoding {
            0 => PackEncoding::Raw,
            1 => PackEncoding::Deflated,
            other => return Err(invalid(format!("unknown pack encoding {other}"))),
        };
        let release = GitRelease {
            encoding,
            sequence: wire.sequence,
            base: (wire.base_distance != 0).then(|| wire.sequence - wire.base_distance),
            refs,
            prerequisites: wire
                .prerequisites
                .chunks_exact(20)
                .filter_map(Oid::from_slice)
                .collect(),
            objects: wire.objects,
            head: (!wire.head.is_empty()).then(|| format!("{REFS}{}", wire.head)),
            repository: wire.repository,
        };
        release.validate()?;
        Ok(release)
    }

    /// Checks names and structure: a repository name a leaf may serve, ref
    /// names git accepts, each ref once, a positive sequence.
    pub fn validate(&self) -> Result<(), ReleaseError> {
        let invalid = |reason: String| ReleaseError::Invalid {
            repository: self.repository.clone(),
            reason,
        };
        validate_repo_name(&self.repository).map_err(|e| invalid(e.to_string()))?;
        if self.sequence == 0 {
            return Err(invalid("sequence 0".into()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for r in &self.refs {
            check_ref_name(&r.name).map_err(&invalid)?;
            if !seen.insert(r.name.as_str()) {
                return Err(invalid(format!("ref {:?} listed twice", r.name)));
            }
            if self.base.is_none() && r.target.is_none() {
                return Err(invalid(format!("snapshot deletes ref {:?}", r.name)));
            }
        }
        if let Some(head) = &self.head {
            check_ref_name(head).map_err(&invalid)?;
        }
        Ok(())
    }
}

/// The subset of `git check-ref-format` that keeps a name safe to hand to
/// `git update-ref --stdin` and to use under `refs/`.
pub(crate) fn check_ref_name(name: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("ref name {name:?} {why}"));
    let Some(rest) = name.strip_prefix(REFS) else {
        return bad("is not under refs/");
    };
    if rest.is_empty() || name.len() > 1024 {
        return bad("is empty or longer than 1024 bytes");
    }
    if name.ends_with('/') || name.ends_with('.') || name.ends_with(".lock") {
        return bad("ends with '/', '.' or '.lock'");
    }
    if name.contains("..") || name.contains("//") || name.contains("@{") || name == "@" {
        return bad("contains '..', '//' or '@{'");
    }
    if name
        .bytes()
        .any(|b| b < 0x20 || b == 0x7f || b" ~^:?*[\\".contains(&b))
    {
        return bad("contains a control character, space or one of ~^:?*[\\");
    }
    if name.split('/').any(|c| c.starts_with('.') || c.is_empty()) {
        return bad("has a component that is empty or starts with '.'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> GitRelease {
        GitRelease {
            repository: "fleet/apps".into(),
            sequence: 1_700_000_000_123,
            base: Some(1_700_000_000_100),
            refs: vec![
                RefUpdate {
                    name: "refs/heads/main".into(),
                    target: Some(Oid([7; 20])),
                },
                RefUpdate {
                    name: "refs/tags/v1".into(),
                    target: None,
                },
            ],
            prerequisites: vec![Oid([1; 20]), Oid([2; 20])],
            objects: 3,
            head: Some("refs/heads/main".into()),
            encoding: PackEncoding::Deflated,
        }
    }

    #[test]
    fn a_release_survives_its_encoding() {
        let r = sample();
        assert_eq!(GitRelease::decode(&r.encode()).unwrap(), r);
    }

    #[test]
    fn ids_travel_as_binary() {
        let r = sample();
        // Three 20-byte ids, names without `refs/`, small varints: hex ids
        // alone would take 120 bytes.
        let len = r.encode().len();
        assert!(len <= 127, "{len} bytes");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [&b"\xff\xff\xff"[..], b"\x0a\x02..", b"\x22\x03\x12\x01x"] {
            assert!(GitRelease::decode(bytes).is_err(), "{bytes:?}");
        }
    }

    #[test]
    fn hostile_names_are_refused() {
        for repo in ["../etc", "/abs", "a/../b", ".hidden", "", "a//b", "a\0b"] {
            let mut r = sample();
            r.repository = repo.into();
            assert!(GitRelease::decode(&r.encode()).is_err(), "{repo:?}");
        }
        for name in [
            "refs/heads/../x",
            "refs/heads/a b",
            "refs/heads/x.lock",
            "refs/heads/.x",
            "refs/heads/x\n",
        ] {
            let mut r = sample();
            r.refs[0].name = name.into();
            assert!(GitRelease::decode(&r.encode()).is_err(), "{name:?}");
        }
    }
}
