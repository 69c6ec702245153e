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
pub fn is_safe_protocol(p: &str) -> bool {
    p.len() <= 256 && p.bytes().all(|b| (0x21..0x7f).contains(&b))
}

/// Whether a `Git-Protocol` header asks for protocol version 2.
pub fn wants_protocol_v2(protocol: Option<&str>) -> bool {
    protocol.is_some_and(|p| p.split(':').any(|kv| kv == "version=2"))
}

/// A smart-HTTP request ferry answers: `git upload-pack` for a repository,
/// advertising refs (`GET .../info/refs?service=git-upload-pack`) or
/// answering a fetch (`POST .../git-upload-pack`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmartRequest {
    /// The repository as the URL names it (`fleet`, `fleet.git`, `a/b`),
    /// not yet checked: [`ServedRoot::resolve`] does that.
    pub repository: String,
    /// `info/refs`: advertise refs rather than answer a fetch.
    pub advertise: bool,
}

/// Why a smart-HTTP request is refused before any repository is looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The right path with the wrong method (HTTP 405).
    #[error("{0}")]
    MethodNotAllowed(&'static str),
    /// A push, or not smart HTTP (HTTP 403).
    #[error("{0}")]
    Forbidden(&'static str),
    /// Not a smart-HTTP Git path (HTTP 404).
    #[error("{0}")]
    NotFound(&'static str),
}

/// What a push is told.
pub const PUSH_REFUSED: &str =
    "ferry serves this repository read-only: push to the upstream the base publishes from";

/// Routes a smart-HTTP request by its method, path and query string. Pure:
/// nothing is read or run, so it can be tested and fuzzed on its own.
pub fn route_request(
    method: &str,
    path: &str,
    query: Option<&str>,
) -> Result<SmartRequest, Refusal> {
    let path = path.trim_start_matches('/');
    let query = query.unwrap_or("");
    if let Some(repo) = path.strip_suffix("/info/refs") {
        if method != "GET" {
            return Err(Refusal::MethodNotAllowed("info/refs answers GET"));
        }
        match query.split('&').find_map(|kv| kv.strip_prefix("service=")) {
            Some("git-upload-pack") => Ok(SmartRequest {
                repository: repo.to_owned(),
                advertise: true,
            }),
            Some("git-receive-pack") => Err(Refusal::Forbidden(PUSH_REFUSED)),
            _ => Err(Refusal::Forbidden(
                "only smart HTTP (service=git-upload-pack) is served",
            )),
        }
    } else if let Some(repo) = path.strip_suffix("/git-upload-pack") {
        if method != "POST" {
            return Err(Refusal::MethodNotAllowed("git-upload-pack answers POST"));
        }
        Ok(SmartRequest {
            repository: repo.to_owned(),
            advertise: false,
        })
    } else if path.ends_with("/git-receive-pack") {
        Err(Refusal::Forbidden(PUSH_REFUSED))
    } else {
        Err(Refusal::NotFound("not a smart-HTTP Git path"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_route_to_upload_pack_or_are_refused() {
        let ok = |advertise| {
            Ok(SmartRequest {
                repository: "fleet/apps.git".into(),
                advertise,
            })
        };
        assert_eq!(
            route_request(
                "GET",
                "/fleet/apps.git/info/refs",
                Some("service=git-upload-pack")
            ),
            ok(true)
        );
        assert_eq!(
            route_request("POST", "/fleet/apps.git/git-upload-pack", None),
            ok(false)
        );
        assert!(matches!(
            route_request(
                "GET",
                "/fleet/info/refs",
                Some("a=b&service=git-receive-pack")
            ),
            Err(Refusal::Forbidden(PUSH_REFUSED))
        ));
        assert!(matches!(
            route_request("POST", "/fleet/git-receive-pack", None),
            Err(Refusal::Forbidden(_))
        ));
        assert!(matches!(
            route_request("GET", "/fleet/git-upload-pack", None),
            Err(Refusal::MethodNotAllowed(_))
        ));
        assert!(matches!(
            route_request("GET", "/fleet/info/refs", None),
            Err(Refusal::Forbidden(_))
        ));
        assert!(matches!(
            route_request("GET", "/fleet/HEAD", None),
            Err(Refusal::NotFound(_))
        ));
    }

    #[test]
    fn protocol_headers_are_checked_before_git_sees_them() {
        assert!(wants_protocol_v2(Some("version=2")));
        assert!(wants_protocol_v2(Some("object-format=sha1:version=2")));
        assert!(!wants_protocol_v2(Some("version=1")));
        assert!(!wants_protocol_v2(None));
        assert!(is_safe_protocol("version=2"));
        assert!(!is_safe_protocol("version=2\nx"));
        assert!(!is_safe_protocol("version=2 x"));
        assert!(!is_safe_protocol(&"x".repeat(257)));
    }
}
