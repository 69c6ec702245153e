//! `[oci]`: the leaf's registry (where it listens, where it keeps images,
//! the largest blob ingested) and `[[oci.watch]]`, sources whose tags a
//! base publishes again whenever they change.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::units::parse_size;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OciSection {
    listen: Option<String>,
    root: Option<PathBuf>,
    max_blob: Option<String>,
    #[serde(default)]
    watch: Vec<WatchSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WatchSection {
    source: String,
    repository: String,
    #[serde(default)]
    tags: Vec<String>,
    to: String,
    interval: Option<String>,
}

/// `[oci]`, validated.
#[derive(Clone, Debug)]
pub struct OciConfig {
    /// Where the read-only registry listens, if anywhere.
    pub listen: Option<SocketAddr>,
    /// The image store (verified blobs and tags); default `oci` beside the
    /// configuration file.
    pub root: PathBuf,
    /// The largest blob ingested (default 8 GiB).
    pub max_blob: u64,
    pub watch: Vec<OciWatch>,
}

/// One `[[oci.watch]]`: publish `tags` of `source` as `repository` to `to`
/// whenever what they name changes, checking every `interval`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OciWatch {
    pub source: String,
    pub repository: String,
    pub tags: Vec<String>,
    pub to: String,
    pub interval: Duration,
}

impl OciSection {
    /// Errors are (key below `oci.`, reason).
    pub(super) fn build(
        &self,
        relative: impl Fn(&Path) -> PathBuf,
    ) -> Result<OciConfig, (String, String)> {
        let listen = self
            .listen
            .as_deref()
            .map(|text| {
                text.parse::<SocketAddr>()
                    .map_err(|e| ("listen".to_string(), format!("{text:?}: {e}")))
            })
            .transpose()?;
        let max_blob = self
            .max_blob
            .as_deref()
            .map(parse_size)
            .transpose()
            .map_err(|e| ("max_blob".to_string(), e))?
            .unwrap_or(8 << 30);
        let mut watch = Vec::new();
        for (i, w) in self.watch.iter().enumerate() {
            let key = |field: &str| format!("watch[{i}].{field}");
            ferry_oci::digest::check_repository(&w.repository)
                .map_err(|e| (key("repository"), e))?;
            for tag in &w.tags {
                ferry_oci::digest::check_tag(tag).map_err(|e| (key("tags"), e))?;
            }
            if !w.source.starts_with("oci:") {
                return Err((
                    key("source"),
                    format!("{:?}: only oci:DIR sources can be watched", w.source),
                ));
            }
            let interval = match &w.interval {
                Some(text) => humantime::parse_duration(text)
                    .map_err(|e| (key("interval"), format!("{text:?}: {e}")))?,
                None => Duration::from_secs(60),
            };
            if interval < Duration::from_secs(1) {
                return Err((key("interval"), "at least 1s".into()));
            }
            watch.push(OciWatch {
                source: w.source.clone(),
                repository: w.repository.clone(),
                tags: w.tags.clone(),
                to: w.to.clone(),
                interval,
            });
        }
        Ok(OciConfig {
            listen,
            root: relative(self.root.as_deref().unwrap_or(Path::new("oci"))),
            max_blob,
            watch,
        })
    }
}
