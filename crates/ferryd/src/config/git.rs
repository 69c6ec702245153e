//! `[git]`: the leaf's served repositories and smart-HTTP listener, and
//! `[[git.watch]]` repositories a base publishes whenever they change.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The section as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GitSection {
    listen: Option<String>,
    root: Option<PathBuf>,
    #[serde(default)]
    watch: Vec<WatchSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WatchSection {
    name: String,
    path: Option<PathBuf>,
    url: Option<String>,
    #[serde(default)]
    refs: Vec<String>,
    to: String,
    interval: Option<String>,
}

/// `[git]`, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GitConfig {
    /// Read-only smart HTTP for the served repositories, if anywhere.
    pub listen: Option<SocketAddr>,
    /// One bare repository per published repository (`<root>/<name>.git`);
    /// the publisher's per-destination state and upstream mirrors live
    /// under hidden names here too.
    pub root: PathBuf,
    pub watch: Vec<GitWatch>,
}

/// Where a watched repository comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GitSource {
    /// A repository on this machine.
    Path(PathBuf),
    /// An upstream fetched into a mirror under the root at every poll.
    Url(String),
}

/// A repository published to `to` whenever its refs change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GitWatch {
    pub name: String,
    pub source: GitSource,
    pub refs: Vec<String>,
    pub to: String,
    pub interval: Duration,
}

pub(super) fn parse_git(
    section: &GitSection,
    relative: impl Fn(&Path) -> PathBuf,
) -> Result<GitConfig, (String, String)> {
    let listen = section
        .listen
        .as_deref()
        .map(|a| {
            a.parse::<SocketAddr>()
                .map_err(|e| ("listen".to_owned(), format!("{a:?}: {e}")))
        })
        .transpose()?;
    let root = relative(section.root.as_deref().unwrap_or(Path::new("git")));
    let mut watch = Vec::new();
    for (i, w) in section.watch.iter().enumerate() {
        let key = |k: &str| format!("watch[{i}].{k}");
        ferry_git::validate_repo_name(&w.name).map_err(|e| (key("name"), e.to_string()))?;
        if watch.iter().any(|x: &GitWatch| x.name == w.name) {
            return Err((key("name"), format!("{:?} is watched twice", w.name)));
        }
        let source = match (&w.path, &w.url) {
            (Some(p), None) => GitSource::Path(relative(p)),
            (None, Some(u)) if !u.is_empty() && !u.starts_with('-') => GitSource::Url(u.clone()),
            _ => {
                return Err((
                    key("path"),
                    "give exactly one of path (a local repository) or url (an upstream)".into(),
                ));
            }
        };
        let interval = match &w.interval {
            None => Duration::from_secs(30),
            Some(t) => humantime::parse_duration(t)
                .map_err(|e| (key("interval"), format!("{t:?}: {e}")))?,
        };
        if interval < Duration::from_millis(100) {
            return Err((key("interval"), "shorter than 100ms".into()));
        }
        watch.push(GitWatch {
            name: w.name.clone(),
            source,
            refs: w.refs.clone(),
            to: w.to.clone(),
            interval,
        });
    }
    Ok(GitConfig {
        listen,
        root,
        watch,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, GitSource};

    fn parse(git: &str) -> Result<Config, String> {
        let text = format!("[node]\nkey = \"k\"\n[store]\npath = \"s\"\n{git}");
        Config::parse(Path::new("/etc/ferry/ferryd.toml"), &text).map_err(|e| e.to_string())
    }

    #[test]
    fn git_defaults_to_a_root_beside_the_config_and_no_listener() {
        let c = parse("").unwrap();
        assert_eq!(c.git.root, Path::new("/etc/ferry/git"));
        assert_eq!(c.git.listen, None);
        assert!(c.git.watch.is_empty());
    }

    #[test]
    fn a_watched_repository_is_read_with_its_interval() {
        let c = parse(
            "[git]\nlisten = \"127.0.0.1:8418\"\n[[git.watch]]\nname = \"fleet\"\npath = \"repos/fleet.git\"\nrefs = [\"main\"]\nto = \"group:leaves\"\ninterval = \"5s\"\n",
        )
        .unwrap();
        let w = &c.git.watch[0];
        assert_eq!(
            w.source,
            GitSource::Path("/etc/ferry/repos/fleet.git".into())
        );
        assert_eq!(w.interval, std::time::Duration::from_secs(5));
        assert_eq!(c.git.listen, Some("127.0.0.1:8418".parse().unwrap()));
    }

    #[test]
    fn bad_git_settings_are_refused_with_their_key() {
        for (text, key) in [
            ("[git]\ncolour = 1\n", "colour"),
            ("[git]\nlisten = \"nowhere\"\n", "git.listen"),
            (
                "[[git.watch]]\nname = \"../x\"\npath = \"p\"\nto = \"leaf\"\n",
                "git.watch[0].name",
            ),
            (
                "[[git.watch]]\nname = \"x\"\nto = \"leaf\"\n",
                "git.watch[0].path",
            ),
            (
                "[[git.watch]]\nname = \"x\"\npath = \"p\"\nto = \"leaf\"\ninterval = \"soon\"\n",
                "git.watch[0].interval",
            ),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(key), "{text}: {err}");
        }
    }
}
