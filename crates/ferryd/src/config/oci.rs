//! `[oci]`: the leaf's registry (where it listens, where it keeps images,
//! the largest blob ingested), rebuild recipes for gzip layers (`recipes`,
//! `max_recipe_blob`) and `[[oci.watch]]`, sources whose tags a
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
    recipes: Option<bool>,
    max_recipe_blob: Option<String>,
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
    credentials: Option<PathBuf>,
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
    /// Send gzip layers as their content plus a rebuild recipe when one is
    /// found (default true).
    pub recipes: bool,
    /// The largest gzip layer searched for a recipe (held in memory with
    /// its content while staged; default 1 GiB).
    pub max_recipe_blob: u64,
    pub watch: Vec<OciWatch>,
}

/// One `[[oci.watch]]`: publish `tags` of `source` (`oci:DIR`,
/// `docker://HOST/REPO`, `docker+http://HOST/REPO`) as `repository` to `to`
/// whenever what they name changes, checking every `interval`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OciWatch {
    pub source: String,
    pub repository: String,
    pub tags: Vec<String>,
    pub to: String,
    pub interval: Duration,
    /// A file holding `user:password` for a registry source.
    pub credentials: Option<PathBuf>,
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
        let max_recipe_blob = self
            .max_recipe_blob
            .as_deref()
            .map(parse_size)
            .transpose()
            .map_err(|e| ("max_recipe_blob".to_string(), e))?
            .unwrap_or(1 << 30);
        let mut watch = Vec::new();
        for (i, w) in self.watch.iter().enumerate() {
            let key = |field: &str| format!("watch[{i}].{field}");
            ferry_oci::digest::check_repository(&w.repository)
                .map_err(|e| (key("repository"), e))?;
            for tag in &w.tags {
                ferry_oci::digest::check_tag(tag).map_err(|e| (key("tags"), e))?;
            }
            crate::oci::SourceSpec::parse(&w.source).map_err(|e| (key("source"), e))?;
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
                credentials: w.credentials.as_deref().map(&relative),
            });
        }
        Ok(OciConfig {
            listen,
            root: relative(self.root.as_deref().unwrap_or(Path::new("oci"))),
            max_blob,
            recipes: self.recipes.unwrap_or(true),
            max_recipe_blob,
            watch,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(text: &str) -> Result<OciConfig, (String, String)> {
        let section: OciSection =
            toml::from_str(text).map_err(|e| ("parse".into(), e.to_string()))?;
        section.build(|p: &Path| Path::new("/etc/ferry").join(p))
    }

    #[test]
    fn the_registry_and_watches_are_read_with_defaults() {
        let c = build("listen = \"127.0.0.1:5050\"\n[[watch]]\nsource = \"docker://r.example/team/app\"\nrepository = \"team/app\"\ntags = [\"stable\"]\nto = \"group:leaves\"\n").unwrap();
        assert_eq!(c.listen, Some("127.0.0.1:5050".parse().unwrap()));
        assert_eq!(c.root, Path::new("/etc/ferry/oci"));
        assert_eq!(c.max_blob, 8 << 30);
        assert!(c.recipes);
        assert_eq!(c.max_recipe_blob, 1 << 30);
        assert_eq!(c.watch[0].interval, Duration::from_secs(60));
    }

    #[test]
    fn bad_values_name_their_key() {
        assert_eq!(build("listen = \"nowhere\"").unwrap_err().0, "listen");
        assert_eq!(build("max_blob = \"lots\"").unwrap_err().0, "max_blob");
        assert_eq!(
            build("max_recipe_blob = \"lots\"").unwrap_err().0,
            "max_recipe_blob"
        );
        assert!(!build("recipes = false").unwrap().recipes);
        let watch = |extra: &str| {
            format!("[[watch]]\nsource = \"oci:/x\"\nrepository = \"a\"\nto = \"b\"\n{extra}")
        };
        assert_eq!(
            build(&watch("interval = \"0s\"")).unwrap_err().0,
            "watch[0].interval"
        );
        assert_eq!(
            build(&watch("tags = [\"../x\"]")).unwrap_err().0,
            "watch[0].tags"
        );
        let err =
            build("[[watch]]\nsource = \"ftp://x\"\nrepository = \"a\"\nto = \"b\"\n").unwrap_err();
        assert_eq!(err.0, "watch[0].source");
        assert!(build("colour = \"red\"").unwrap_err().1.contains("colour"));
    }
}
