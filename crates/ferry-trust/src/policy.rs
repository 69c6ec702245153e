//! The trust policy: which publisher keys may publish what, to where.
//!
//! ```toml
//! [[publisher]]
//! key = "ed25519:…"          # the publisher's public key
//! git = ["fleet/**"]         # repositories it may publish
//! oci = ["team/*"]           # image repositories it may publish
//! to = ["group:bush-*"]      # destinations (default: anywhere)
//! admin = false              # may it revoke other keys?
//! ```

use crate::key::PublicKey;
use crate::pattern::Pattern;
use crate::statement::Kind;

/// One publisher key and what it may publish.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublisherRule {
    pub key: PublicKey,
    #[serde(default)]
    pub git: Vec<Pattern>,
    #[serde(default)]
    pub oci: Vec<Pattern>,
    /// Destinations (`group:NAME`, `node:HEX`); empty means any.
    #[serde(default)]
    pub to: Vec<Pattern>,
    /// May revoke other keys.
    #[serde(default)]
    pub admin: bool,
}

impl PublisherRule {
    /// Whether this rule lets its key publish `name` of `kind` to `destination`.
    pub fn allows(&self, kind: Kind, name: &str, destination: &str) -> bool {
        let names = match kind {
            Kind::Git => &self.git,
            Kind::Oci => &self.oci,
        };
        names.iter().any(|p| p.matches(name))
            && (self.to.is_empty() || self.to.iter().any(|p| p.matches(destination)))
    }
}

/// Every publisher rule of a node. Empty: nothing signed is accepted.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default)]
    pub publisher: Vec<PublisherRule>,
}

impl Policy {
    /// Checks that no key has two rules (which one would apply?).
    pub fn validate(&self) -> Result<(), String> {
        let mut seen = std::collections::BTreeSet::new();
        for rule in &self.publisher {
            if !seen.insert(rule.key) {
                return Err(format!("publisher {} has more than one rule", rule.key));
            }
        }
        Ok(())
    }

    pub fn rule(&self, key: &PublicKey) -> Option<&PublisherRule> {
        self.publisher.iter().find(|r| r.key == *key)
    }
}
