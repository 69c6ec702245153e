//! `[trust]`: the publisher key this node signs its releases with, and the
//! policy it checks releases against before applying or serving them.
//!
//! ```toml
//! [trust]
//! publisher_key = "publisher.pem"   # sign what this node publishes
//!
//! [[trust.publisher]]               # trust this key, for these names
//! key = "ed25519:…"
//! git = ["fleet/**"]
//! oci = ["team/*"]
//! to = ["group:bush-*"]             # default: any destination
//!
//! anchors = ["anchor.crt"]          # admit QUIC peers these certified
//!
//! [[trust.seal]]                    # seal what this node sends to a group
//! group = "bush-east"
//! key = "groups/bush-east.key"      # default groups/<group>.key; made if absent
//! members = ["ed25519:…"]           # node public keys that may open it
//! ```
//!
//! With no `[[trust.publisher]]`, releases are applied unsigned (the daemon
//! warns at start); with any, every release needs a signature the policy
//! admits.
//!
//! A release sent to a group with a `[[trust.seal]]` (or to one of its
//! members alone) travels sealed:
//! relays and media carry ciphertext, and only the listed members (by their
//! node public key, as `ferryd` logs it at start) can open it. Members need
//! no configuration for it: their node key opens their copy of the group
//! key, which travels with each release.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The section as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TrustSection {
    publisher_key: Option<PathBuf>,
    #[serde(default)]
    publisher: Vec<ferry_trust::PublisherRule>,
    #[serde(default)]
    seal: Vec<SealSection>,
    #[serde(default)]
    anchors: Vec<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SealSection {
    group: String,
    key: Option<PathBuf>,
    members: Vec<String>,
}

/// One `[[trust.seal]]`: what goes to `group` is sealed for `members`.
#[derive(Clone, Debug)]
pub struct SealConfig {
    pub group: String,
    /// The group key's file (made with a fresh key if absent).
    pub key: PathBuf,
    pub members: Vec<ferry_trust::envelope::Member>,
}

/// `[trust]`, validated.
#[derive(Clone, Debug, Default)]
pub struct TrustConfig {
    /// The private key this node signs its releases with, if it publishes.
    pub publisher_key: Option<PathBuf>,
    pub policy: ferry_trust::Policy,
    pub seal: Vec<SealConfig>,
    /// Trust anchors' CA certificates (DER, read at load): QUIC peers whose
    /// certificate one of them issued are admitted like pinned ones.
    pub anchors: Vec<Vec<u8>>,
}

impl TrustConfig {
    /// Whether releases must carry a signature the policy admits.
    pub fn enforced(&self) -> bool {
        !self.policy.publisher.is_empty()
    }
}

impl TrustSection {
    pub(super) fn build(
        &self,
        relative: impl Fn(&Path) -> PathBuf,
    ) -> Result<TrustConfig, (String, String)> {
        let policy = ferry_trust::Policy {
            publisher: self.publisher.clone(),
        };
        policy
            .validate()
            .map_err(|reason| ("publisher".to_owned(), reason))?;
        let mut seal: Vec<SealConfig> = Vec::new();
        for (i, section) in self.seal.iter().enumerate() {
            let at = |field: &str| format!("seal[{i}].{field}");
            let name_ok = !section.group.is_empty()
                && section.group.len() <= ferry_proto::MAX_GROUP_NAME_LEN
                && !section.group.starts_with('.')
                && section
                    .group
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if !name_ok {
                return Err((
                    at("group"),
                    format!(
                        "{:?}: a sealed group's name is letters, digits, '.', '_' and '-'",
                        section.group
                    ),
                ));
            }
            if seal.iter().any(|s| s.group == section.group) {
                return Err((
                    at("group"),
                    format!("group {:?} is sealed twice", section.group),
                ));
            }
            let max = ferry_trust::envelope::MAX_MEMBERS;
            if section.members.is_empty() || section.members.len() > max {
                return Err((at("members"), format!("1 to {max} node public keys")));
            }
            let members = section
                .members
                .iter()
                .map(|text| {
                    let key: ferry_trust::PublicKey = text
                        .parse()
                        .map_err(|e| (at("members"), format!("{text:?}: {e}")))?;
                    ferry_trust::envelope::Member::from_node_public_key(&key.0).ok_or_else(|| {
                        (
                            at("members"),
                            format!("{text:?} is not an Ed25519 public key"),
                        )
                    })
                })
                .collect::<Result<_, _>>()?;
            let key = section
                .key
                .clone()
                .unwrap_or_else(|| PathBuf::from("groups").join(format!("{}.key", section.group)));
            seal.push(SealConfig {
                group: section.group.clone(),
                key: relative(&key),
                members,
            });
        }
        let anchors = self
            .anchors
            .iter()
            .enumerate()
            .map(|(i, path)| {
                let path = relative(path);
                let der = std::fs::read(&path)
                    .map_err(|e| (format!("anchors[{i}]"), format!("{}: {e}", path.display())))?;
                ferry_link::quic::anchor::check_anchor(&der)
                    .map_err(|e| (format!("anchors[{i}]"), format!("{}: {e}", path.display())))?;
                Ok(der)
            })
            .collect::<Result<_, (String, String)>>()?;
        Ok(TrustConfig {
            publisher_key: self.publisher_key.as_deref().map(relative),
            policy,
            seal,
            anchors,
        })
    }
}
