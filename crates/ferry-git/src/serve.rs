//! `ServedRoot`: the directory of bare repositories a leaf serves, and the
//! only way from a name in a URL to a repository on disk.
//!
//! Only repositories ferry itself applied are served: a name is checked
//! (no `..`, no absolute paths, no hidden segments), then the repository must
//! carry the `ferry.repository` setting ferry writes when it creates it.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Git;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("repository name {name:?} refused: {reason}")]
    BadName { name: String, reason: &'static str },
    #[error("no repository {0:?} is served here")]
    NotServed(String),
}

/// Checks a repository name: `/`-separated segments of ASCII letters,
/// digits, `.`, `_` and `-`, none empty or starting with `.`, at most 200
/// bytes, not ending in `.git` (the directory name adds it).
pub fn validate_repo_name(name: &str) -> Result<(), ServeError> {
    let bad = |reason| {
        Err(ServeError::BadName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() || name.len() > 200 {
        return bad("empty or longer than 200 bytes");
    }
    if name.ends_with(".git") {
        return bad("ends with .git");
    }
    for segment in name.split('/') {
        if segment.is_empty() || segment.starts_with('.') {
            return bad(
                "has an empty segment or one starting with '.' (no '..', no absolute path)",
            );
        }
        if !segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return bad("has a character other than A-Z a-z 0-9 . _ - /");
        }
    }
    Ok(())
}

/// The directory under which a leaf keeps (and serves) one bare repository
/// per published repository: `<root>/<name>.git`.
#[derive(Clone, Debug)]
pub struct ServedRoot {
    root: PathBuf,
}

impl ServedRoot {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Where repository `name` lives (whether or not it exists yet).
    pub fn repo_dir(&self, name: &str) -> Result<PathBuf, ServeError> {
        validate_repo_name(name)?;
        Ok(self.root.join(format!("{name}.git")))
    }

    /// The repository a URL names (`fleet`, `fleet.git`, `a/b.git`), if ferry
    /// applied it here.
    pub fn resolve(&self, name: &str) -> Result<(String, Git), ServeError> {
        let name = name.strip_suffix(".git").unwrap_or(name);
        let dir = self.repo_dir(name)?;
        if !dir.join("objects").is_dir() {
            return Err(ServeError::NotServed(name.to_owned()));
        }
        let git = Git::new(&dir);
        match git.text(["config", "--get", "ferry.repository"]) {
            Ok(owner) if owner == name => Ok((name.to_owned(), git)),
            _ => Err(ServeError::NotServed(name.to_owned())),
        }
    }

    /// `git upload-pack --stateless-rpc` for one smart-HTTP request;
    /// `protocol` is the client's `Git-Protocol` header (e.g. `version=2`).
    pub fn upload_pack(git: &Git, advertise: bool, protocol: Option<&str>) -> Command {
        let mut args = vec!["upload-pack", "--stateless-rpc", "--strict"];
        if advertise {
            args.push("--http-backend-info-refs");
        }
        args.push(".");
        let mut cmd = git.command(["-c", "uploadpack.allowFilter=true"]);
        cmd.args(args).current_dir(git.dir());
        if let Some(p) = protocol.filter(|p| is_safe_protocol(p)) {
            cmd.env("GIT_PROTOCOL", p);
        }
        cmd
    }
}

/// A `Git-Protocol` header value passed to git: `key=value` pairs joined by
/// `:`, printable ASCII only.
fn is_safe_protocol(p: &str) -> bool {
    p.len() <= 256 && p.bytes().all(|b| (0x21..0x7f).contains(&b))
}
