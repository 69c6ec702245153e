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
//! ```
//!
//! With no `[[trust.publisher]]`, releases are applied unsigned (the daemon
//! warns at start); with any, every release needs a signature the policy
//! admits.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The section as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TrustSection {
    publisher_key: Option<PathBuf>,
    #[serde(default)]
    publisher: Vec<ferry_trust::PublisherRule>,
}

/// `[trust]`, validated.
#[derive(Clone, Debug, Default)]
pub struct TrustConfig {
    /// The private key this node signs its releases with, if it publishes.
    pub publisher_key: Option<PathBuf>,
    pub policy: ferry_trust::Policy,
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
        Ok(TrustConfig {
            publisher_key: self.publisher_key.as_deref().map(relative),
            policy,
        })
    }
}
