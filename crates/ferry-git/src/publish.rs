//! `Publisher`: a repository's refs → a [`GitRelease`] and a thin pack of
//! exactly what the destination lacks.
//!
//! The pack is written by `git pack-objects --thin --revs
//! --delta-base-offset` over the changed tips, excluding everything reachable
//! from the refs the destination has confirmed (custody taken downstream).
//! Its 12-byte header and 20-byte SHA-1 trailer do not travel: the object
//! count rides in the release and the leaf recomputes the trailer.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::release::check_ref_name;
use crate::{
    Git, GitError, GitRelease, Oid, PACK_HEADER_LEN, PACK_TRAILER_LEN, PackEncoding, RefUpdate,
};

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error("{repo}: {reason}")]
    Invalid { repo: PathBuf, reason: String },
}

/// What one destination has been sent and has confirmed, for one
/// repository. Kept by the publisher (the daemon persists it as JSON).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DestinationState {
    /// The newest release sent, 0 if none.
    pub sent_sequence: u64,
    /// The refs the destination shows once every sent release is applied.
    pub sent_refs: BTreeMap<String, Oid>,
    pub sent_head: Option<String>,
    /// The refs of the newest release taken into custody downstream: the
    /// next pack leaves out everything they reach.
    pub confirmed_refs: BTreeMap<String, Oid>,
    pub confirmed_sequence: u64,
    /// Sent and not yet confirmed: sequence → the refs after it.
    pub in_flight: BTreeMap<u64, BTreeMap<String, Oid>>,
    /// The newest whole release sent (one with no base): what came before
    /// it no longer matters to the destination. 0 if none is known.
    #[serde(default)]
    pub whole_sequence: u64,
}

/// What [`DestinationState::lost`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lost {
    /// The release no longer mattered: a whole release came after it, or it
    /// was already given up with an earlier one.
    Ignored,
    /// The next release builds on release `to` (sent before the lost one
    /// and still on its way, or confirmed).
    RolledBack { to: u64 },
    /// Nothing sent is known to reach the destination: the next release is
    /// a whole one.
    Reset,
}

impl DestinationState {
    /// Records that `publication` was handed to ferry for this destination.
    pub fn record_sent(&mut self, publication: &Publication) {
        self.sent_sequence = publication.release.sequence;
        self.sent_refs = publication.refs.clone();
        self.sent_head = publication.head.clone();
        self.in_flight
            .insert(publication.release.sequence, publication.refs.clone());
        if publication.release.base.is_none() {
            self.whole_sequence = publication.release.sequence;
        }
    }

    /// Release `sequence` was taken into custody by the next hop (or
    /// delivered): its refs, and everything before them, are confirmed.
    /// Whether it confirmed anything: a release not in flight (given up as
    /// lost, or confirmed already) does not.
    pub fn confirm(&mut self, sequence: u64) -> bool {
        if sequence <= self.confirmed_sequence {
            return false;
        }
        let Some(refs) = self.in_flight.get(&sequence) else {
            return false;
        };
        self.confirmed_refs = refs.clone();
        self.confirmed_sequence = sequence;
        self.in_flight = self.in_flight.split_off(&(sequence + 1));
        true
    }

    /// Release `sequence` will not reach the destination: its bundle's
    /// lifetime ended in some node's custody, or a node deleted it (the
    /// destination refusing it, say). `None`: which release is not known.
    ///
    /// Every release sent after it names it (or a later one) as its base, so
    /// the destination would keep them pending for ever. Each is given up:
    /// the next release builds on the newest one sent before the lost one
    /// that is still on its way, or else on the confirmed one — unless the
    /// lost release was itself confirmed (carried on by the next hop, then
    /// lost further on), when nothing sent is known to arrive and the next
    /// release is a whole one.
    pub fn lost(&mut self, sequence: Option<u64>) -> Lost {
        let Some(sequence) = sequence else {
            *self = Self::default();
            return Lost::Reset;
        };
        if sequence < self.whole_sequence {
            return Lost::Ignored;
        }
        if sequence <= self.confirmed_sequence {
            *self = Self::default();
            return Lost::Reset;
        }
        if !self.in_flight.contains_key(&sequence) {
            return Lost::Ignored;
        }
        self.in_flight.split_off(&sequence);
        let (to, refs) = match self.in_flight.last_key_value() {
            Some((&to, refs)) => (to, refs.clone()),
            None => (self.confirmed_sequence, self.confirmed_refs.clone()),
        };
        if to == 0 {
            *self = Self::default();
            return Lost::Reset;
        }
        self.sent_sequence = to;
        self.sent_refs = refs;
        // Not recorded per release: publishing again sets it.
        self.sent_head = None;
        Lost::RolledBack { to }
    }
}

/// A release and the pack body that travels with it.
#[derive(Clone, Debug)]
pub struct Publication {
    pub release: GitRelease,
    /// The pack without its header and trailer; never empty (a release
    /// without objects carries its own encoding, ignored by the leaf).
    pub payload: Vec<u8>,
    /// Every published ref after this release.
    pub refs: BTreeMap<String, Oid>,
    pub head: Option<String>,
}

/// Publishes one repository's refs under one name.
#[derive(Clone, Debug)]
pub struct Publisher {
    git: Git,
    repository: String,
    patterns: Vec<String>,
}

impl Publisher {
    /// `source` is a git directory (bare, or a work tree's `.git`);
    /// `patterns` select refs as `git for-each-ref` does (`main` means
    /// `refs/heads/main`; empty: every branch and tag).
    pub fn new(
        source: impl Into<PathBuf>,
        repository: &str,
        patterns: &[String],
    ) -> Result<Self, PublishError> {
        let git = Git::new(source);
        crate::validate_repo_name(repository).map_err(|e| PublishError::Invalid {
            repo: git.dir().to_owned(),
            reason: e.to_string(),
        })?;
        let patterns = if patterns.is_empty() {
            vec!["refs/heads/".into(), "refs/tags/".into()]
        } else {
            patterns
                .iter()
                .map(|p| {
                    if p.starts_with("refs/") {
                        p.clone()
                    } else {
                        format!("refs/heads/{p}")
                    }
                })
                .collect()
        };
        Ok(Self {
            git,
            repository: repository.to_owned(),
            patterns,
        })
    }

    pub fn git(&self) -> &Git {
        &self.git
    }

    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The refs this publisher would publish now.
    pub fn refs(&self) -> Result<BTreeMap<String, Oid>, PublishError> {
        let refs = self.git.refs(&self.patterns)?;
        for name in refs.keys() {
            check_ref_name(name).map_err(|reason| PublishError::Invalid {
                repo: self.git.dir().to_owned(),
                reason,
            })?;
        }
        Ok(refs)
    }

    /// The next release for a destination in `state`, or `None` when its
    /// refs already show what the repository has. `now_ms` (wall clock)
    /// keeps sequences increasing even if the state is lost.
    #[tracing::instrument(skip_all, fields(repository = %self.repository))]
    pub fn publish(
        &self,
        state: &DestinationState,
        now_ms: u64,
    ) -> Result<Option<Publication>, PublishError> {
        let refs = self.refs()?;
        let head = self
            .git
            .text(["symbolic-ref", "-q", "HEAD"])
            .ok()
            .filter(|h| refs.contains_key(h));
        if state.sent_sequence != 0 && refs == state.sent_refs && head == state.sent_head {
            return Ok(None);
        }
        let sequence = now_ms.max(state.sent_sequence + 1);
        let base = (state.sent_sequence != 0).then_some(state.sent_sequence);
        let mut updates: Vec<RefUpdate> = Vec::new();
        for (name, oid) in &refs {
            if base.is_none() || state.sent_refs.get(name) != Some(oid) {
                updates.push(RefUpdate {
                    name: name.clone(),
                    target: Some(*oid),
                });
            }
        }
        if base.is_some() {
            for name in state.sent_refs.keys().filter(|n| !refs.contains_key(*n)) {
                updates.push(RefUpdate {
                    name: name.clone(),
                    target: None,
                });
            }
        }
        let mut tips: Vec<Oid> = updates.iter().filter_map(|u| u.target).collect();
        tips.sort();
        tips.dedup();
        let mut confirmed: Vec<Oid> = state.confirmed_refs.values().copied().collect();
        confirmed.sort();
        confirmed.dedup();
        let held = self.git.present(&confirmed)?;
        let exclude: Vec<Oid> = confirmed
            .into_iter()
            .zip(held)
            .filter_map(|(o, h)| h.then_some(o))
            .collect();

        let (payload, encoding, objects, prerequisites) = if tips.is_empty() {
            (Vec::new(), PackEncoding::Raw, 0, Vec::new())
        } else {
            let mut revs = String::new();
            for t in &tips {
                revs.push_str(&format!("{t}\n"));
            }
            for e in &exclude {
                revs.push_str(&format!("^{e}\n"));
            }
            let pack = self.git.run(
                [
                    "pack-objects",
                    "--stdout",
                    "--thin",
                    "--revs",
                    "--delta-base-offset",
                    "-q",
                ],
                revs.as_bytes(),
            )?;
            let (objects, payload) = strip_pack(&pack).ok_or_else(|| PublishError::Invalid {
                repo: self.git.dir().to_owned(),
                reason: "git pack-objects wrote something that is not a pack".into(),
            })?;
            let prerequisites = if exclude.is_empty() {
                Vec::new()
            } else {
                let mut args = vec!["rev-list".to_owned(), "--boundary".into()];
                args.extend(tips.iter().map(Oid::to_hex));
                args.push("--not".into());
                args.extend(exclude.iter().map(Oid::to_hex));
                self.git
                    .text(&args)?
                    .lines()
                    .filter_map(|l| l.strip_prefix('-').and_then(Oid::from_hex))
                    .collect()
            };
            // The smaller of git's own body and the re-coded one.
            // Commits the leaf holds, as delta bases for the new commits.
            let bases: Vec<(Oid, Vec<u8>)> = prerequisites
                .iter()
                .take(4)
                .filter_map(|o| {
                    let raw = self
                        .git
                        .run(["cat-file", "commit", &o.to_hex()], b"")
                        .ok()?;
                    Some((*o, raw))
                })
                .collect();
            let (payload, encoding) = match crate::packcode::encode(payload, objects, &bases) {
                Ok(coded) if coded.len() < payload.len() => (coded, PackEncoding::Deflated),
                Ok(_) => (payload.to_vec(), PackEncoding::Raw),
                Err(e) => {
                    tracing::warn!("pack not re-coded, sent as git wrote it: {e}");
                    (payload.to_vec(), PackEncoding::Raw)
                }
            };
            (payload, encoding, objects, prerequisites)
        };
        // Tips of the state the release builds on are implied: the leaf's
        // refs show them, so they are present.
        let prerequisites: Vec<Oid> = if base.is_some() {
            let tips: std::collections::BTreeSet<&Oid> = state.sent_refs.values().collect();
            prerequisites
                .into_iter()
                .filter(|o| !tips.contains(o))
                .collect()
        } else {
            prerequisites
        };
        let release = GitRelease {
            repository: self.repository.clone(),
            sequence,
            base,
            refs: updates,
            prerequisites,
            objects,
            encoding,
            head: if base.is_none() || head != state.sent_head {
                head.clone()
            } else {
                None
            },
        };
        // A release without objects (a deletion, a tag on a commit the leaf
        // holds) has an empty payload: its bundle travels as its offer alone.
        tracing::debug!(
            sequence,
            refs = release.refs.len(),
            objects,
            bytes = payload.len(),
            "git release"
        );
        Ok(Some(Publication {
            release,
            payload,
            refs,
            head,
        }))
    }
}

/// Splits a pack into its object count and its body (no header, no trailer).
pub fn strip_pack(pack: &[u8]) -> Option<(u32, &[u8])> {
    if pack.len() < PACK_HEADER_LEN + PACK_TRAILER_LEN || &pack[..4] != b"PACK" {
        return None;
    }
    let count = u32::from_be_bytes(pack[8..12].try_into().ok()?);
    Some((count, &pack[PACK_HEADER_LEN..pack.len() - PACK_TRAILER_LEN]))
}

/// Rebuilds a complete pack from its body and object count: the version-2
/// header and the SHA-1 trailer.
pub fn restore_pack(objects: u32, body: &[u8]) -> Vec<u8> {
    use sha1::Digest;
    let mut pack = Vec::with_capacity(body.len() + PACK_HEADER_LEN + PACK_TRAILER_LEN);
    pack.extend_from_slice(b"PACK");
    pack.extend_from_slice(&2u32.to_be_bytes());
    pack.extend_from_slice(&objects.to_be_bytes());
    pack.extend_from_slice(body);
    let sum = sha1::Sha1::digest(&pack);
    pack.extend_from_slice(&sum);
    pack
}
