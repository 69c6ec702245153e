//! [`Trust`]: a node's policy plus what it has learnt from signed statements
//! ([`TrustState`]: the newest version accepted per release line, key
//! rotations and revocations). Checking never changes anything; the caller
//! records an accepted release or key statement and persists the state.

use std::collections::BTreeMap;

use crate::key::PublicKey;
use crate::policy::{Policy, PublisherRule};
use crate::statement::{Kind, ReleaseClaim, Signed, Statement, StatementError};

/// Why a release or key statement is refused. Its `Display` is the reason a
/// deletion status report carries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("unsigned: no publisher signature")]
    Unsigned,
    #[error("signature unreadable: {0}")]
    Malformed(String),
    #[error("forged: the signature does not verify with key {0}")]
    BadSignature(PublicKey),
    #[error("key {0} is not in this node's trust policy")]
    UnknownKey(PublicKey),
    #[error("key {key} is revoked: {reason}")]
    Revoked { key: PublicKey, reason: String },
    #[error("key {key} was rotated to {successor}")]
    Retired {
        key: PublicKey,
        successor: PublicKey,
    },
    #[error("key {key} may not publish {kind} {name:?} to {destination}")]
    OutOfPolicy {
        key: PublicKey,
        kind: Kind,
        name: String,
        destination: String,
    },
    #[error(
        "replayed: version {version} of {kind} {name:?} for {destination} is not newer than version {newest}, already accepted"
    )]
    Replayed {
        kind: Kind,
        name: String,
        destination: String,
        version: u64,
        newest: u64,
    },
    #[error("the signed statement does not match what arrived: {0}")]
    Mismatch(String),
    #[error("not allowed: {0}")]
    NotAllowed(String),
    #[error("sealed, and cannot be opened here: {0}")]
    Sealed(String),
}

impl From<StatementError> for Refusal {
    fn from(e: StatementError) -> Self {
        match e {
            StatementError::Malformed(m) => Refusal::Malformed(m),
            StatementError::BadSignature(k) => Refusal::BadSignature(k),
        }
    }
}

/// A release as it arrived: what its signed claim must match.
#[derive(Debug, Clone, Copy)]
pub struct Arrived<'a> {
    pub kind: Kind,
    pub name: &'a str,
    pub destination: &'a str,
    /// The adapter's release bytes.
    pub release: &'a [u8],
    pub manifest_id: [u8; 32],
}

/// A release whose claim verified and passed the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub key: PublicKey,
    pub claim: ReleaseClaim,
}

/// What a node learnt from statements; persisted by its owner (serde).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TrustState {
    /// Newest accepted version per `kind name destination`, with the digest
    /// of that release (the same release may be checked again).
    pub versions: BTreeMap<String, (u64, String)>,
    /// Rotated-in key → the key that signed the rotation.
    pub rotated_from: BTreeMap<PublicKey, PublicKey>,
    /// Retired key → its successor.
    pub retired: BTreeMap<PublicKey, PublicKey>,
    /// Revoked key → the reason given.
    pub revoked: BTreeMap<PublicKey, String>,
    /// What is served here per `kind name`: the last applied release's
    /// signing key and claim, checked again before each request is served.
    #[serde(default)]
    pub serving: BTreeMap<String, Served>,
}

/// The release a node serves for one name, as [`Trust::check_serving`]
/// checks it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Served {
    pub key: PublicKey,
    pub destination: String,
    pub version: u64,
}

/// A key change [`Trust::check_key_statement`] approved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyChange {
    Rotated { from: PublicKey, to: PublicKey },
    Revoked { key: PublicKey, reason: String },
}

#[derive(Debug, Clone, Default)]
pub struct Trust {
    policy: Policy,
    state: TrustState,
}

fn line(kind: Kind, name: &str, destination: &str) -> String {
    format!("{kind} {name} {destination}")
}

impl Trust {
    pub fn new(policy: Policy, state: TrustState) -> Result<Self, String> {
        policy.validate()?;
        Ok(Trust { policy, state })
    }

    pub fn state(&self) -> &TrustState {
        &self.state
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The policy rule `key` publishes under (its own, or the rule of the
    /// key it was rotated from), if it is in good standing: neither it nor
    /// any key of its rotation chain revoked, and not itself retired.
    fn standing(&self, key: PublicKey) -> Result<&PublisherRule, Refusal> {
        if let Some(&successor) = self.state.retired.get(&key) {
            return Err(Refusal::Retired { key, successor });
        }
        self.chain_rule(key)
    }

    /// The policy rule `key` publishes under, walking back its rotation
    /// chain, unless it or a key before it in the chain is revoked.
    fn chain_rule(&self, key: PublicKey) -> Result<&PublisherRule, Refusal> {
        let mut current = key;
        // A chain longer than the number of rotations is a loop.
        for _ in 0..=self.state.rotated_from.len() {
            if let Some(reason) = self.state.revoked.get(&current) {
                return Err(Refusal::Revoked {
                    key: current,
                    reason: reason.clone(),
                });
            }
            if let Some(rule) = self.policy.rule(&current) {
                return Ok(rule);
            }
            match self.state.rotated_from.get(&current) {
                Some(&from) => current = from,
                None => break,
            }
        }
        Err(Refusal::UnknownKey(key))
    }

    /// Checks a release's signature (`None`: it came unsigned) against the
    /// policy, what arrived, and the versions already accepted. Changes
    /// nothing; [`record_release`](Self::record_release) remembers it.
    pub fn check_release(
        &self,
        signed: Option<&Signed>,
        arrived: &Arrived<'_>,
    ) -> Result<Accepted, Refusal> {
        let signed = signed.ok_or(Refusal::Unsigned)?;
        let Statement::Release(claim) = signed.verify()? else {
            return Err(Refusal::Mismatch(
                "a key statement where a release claim belongs".into(),
            ));
        };
        let key = signed.key();
        let rule = self.standing(key)?;
        let mismatch = |what: &str| Err(Refusal::Mismatch(what.to_owned()));
        if claim.kind != arrived.kind || claim.name != arrived.name {
            return mismatch("it names another release");
        }
        if claim.destination != arrived.destination {
            return mismatch("it is for another destination");
        }
        if claim.release_digest != ReleaseClaim::digest_of(arrived.release) {
            return mismatch("the release's contents differ from what was signed");
        }
        if claim.manifest_id != arrived.manifest_id {
            return mismatch("the payload differs from what was signed");
        }
        if !rule.allows(claim.kind, &claim.name, &claim.destination) {
            return Err(Refusal::OutOfPolicy {
                key,
                kind: claim.kind,
                name: claim.name,
                destination: claim.destination,
            });
        }
        let key_line = line(claim.kind, &claim.name, &claim.destination);
        if let Some((newest, digest)) = self.state.versions.get(&key_line) {
            let same = *newest == claim.version && *digest == hex::encode(claim.release_digest);
            if claim.version <= *newest && !same {
                return Err(Refusal::Replayed {
                    kind: claim.kind,
                    name: claim.name,
                    destination: claim.destination,
                    version: claim.version,
                    newest: *newest,
                });
            }
        }
        Ok(Accepted { key, claim })
    }

    /// Remembers an accepted release's version: older ones are refused from
    /// now on.
    pub fn record_release(&mut self, accepted: &Accepted) {
        let c = &accepted.claim;
        let entry = self
            .state
            .versions
            .entry(line(c.kind, &c.name, &c.destination))
            .or_insert((0, String::new()));
        if c.version >= entry.0 {
            *entry = (c.version, hex::encode(c.release_digest));
        }
        self.state.serving.insert(
            format!("{} {}", c.kind, c.name),
            Served {
                key: accepted.key,
                destination: c.destination.clone(),
                version: c.version,
            },
        );
    }

    /// Whether what is served for `kind name` may still be served: the
    /// release applied for it was signed by a key that is not revoked (nor
    /// any key it was rotated from) and that the policy, as it stands now,
    /// still allows that name and destination. A key retired by a rotation
    /// keeps what it signed before. Changes nothing.
    pub fn check_serving(&self, kind: Kind, name: &str) -> Result<(), Refusal> {
        let Some(served) = self.state.serving.get(&format!("{kind} {name}")) else {
            return Err(Refusal::NotAllowed(format!(
                "no signed release of {kind} {name:?} was applied here"
            )));
        };
        // A retired key keeps what it signed: no retirement check here.
        let rule = self.chain_rule(served.key)?;
        if !rule.allows(kind, name, &served.destination) {
            return Err(Refusal::OutOfPolicy {
                key: served.key,
                kind,
                name: name.to_owned(),
                destination: served.destination.clone(),
            });
        }
        Ok(())
    }

    /// Checks a rotation or revocation. Changes nothing;
    /// [`record_key_change`](Self::record_key_change) applies it.
    pub fn check_key_statement(&self, signed: &Signed) -> Result<KeyChange, Refusal> {
        let statement = signed.verify()?;
        let signer = signed.key();
        match statement {
            Statement::Release(_) => Err(Refusal::Mismatch(
                "a release claim where a key statement belongs".into(),
            )),
            Statement::Rotation { new_key } => {
                self.standing(signer)?;
                if new_key == signer
                    || self.policy.rule(&new_key).is_some()
                    || self.state.rotated_from.contains_key(&new_key)
                    || self.state.revoked.contains_key(&new_key)
                    || self.state.retired.contains_key(&new_key)
                {
                    return Err(Refusal::NotAllowed(format!(
                        "{new_key} is already known to this node"
                    )));
                }
                Ok(KeyChange::Rotated {
                    from: signer,
                    to: new_key,
                })
            }
            Statement::Revocation { revoked, reason } => {
                // A key may always revoke itself, even retired or revoked.
                if revoked != signer {
                    let rule = self.standing(signer)?;
                    if !rule.admin {
                        return Err(Refusal::NotAllowed(format!(
                            "{signer} may revoke only itself (it is not an admin key)"
                        )));
                    }
                }
                Ok(KeyChange::Revoked {
                    key: revoked,
                    reason,
                })
            }
        }
    }

    pub fn record_key_change(&mut self, change: &KeyChange) {
        match change {
            KeyChange::Rotated { from, to } => {
                self.state.rotated_from.insert(*to, *from);
                self.state.retired.insert(*from, *to);
            }
            KeyChange::Revoked { key, reason } => {
                self.state.revoked.insert(*key, reason.clone());
            }
        }
    }
}
