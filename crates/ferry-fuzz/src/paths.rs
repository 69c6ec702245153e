//! Target `paths`: names from the network that become paths — OCI
//! repository names, tags and digests, Git repository and ref names, group
//! names. Anything accepted has no `..` or `.` component, is not absolute,
//! holds no NUL or backslash, and joined to a root stays under it.

use std::path::{Component, Path, PathBuf};

use ferry_git::{GitRelease, PackEncoding, RefUpdate, ServedRoot, validate_repo_name};
use ferry_oci::Digest;
use ferry_oci::digest::{check_repository, check_tag};

use crate::input::Input;

/// `path` with `.` and `..` resolved lexically, as a hostile name would
/// have the file system resolve them.
pub fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// A name accepted from the network is safe as a relative path.
pub fn assert_contained(name: &str) {
    assert!(!name.is_empty());
    assert!(!name.contains('\0'), "{name:?} holds a NUL");
    assert!(!name.contains('\\'), "{name:?} holds a backslash");
    assert!(!name.starts_with('/'), "{name:?} is absolute");
    let path = Path::new(name);
    assert!(path.is_relative(), "{name:?} is absolute");
    for component in path.components() {
        assert!(
            matches!(component, Component::Normal(_)),
            "{name:?} has a {component:?} component"
        );
    }
    assert!(
        name.split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".."),
        "{name:?} has an empty, '.' or '..' segment"
    );
    let root = Path::new("/srv/ferry");
    let joined = normalise(&root.join(name));
    assert!(joined.starts_with(root), "{name:?} escapes the root");
    assert_ne!(joined, root, "{name:?} names the root itself");
}

pub fn paths(data: &[u8]) {
    let mut input = Input::new(data);
    let selector = input.byte();
    let name = String::from_utf8_lossy(input.rest()).into_owned();
    let name = name.as_str();
    match selector % 6 {
        0 => {
            if check_repository(name).is_ok() {
                assert_contained(name);
                // ImageStore keeps `repositories/<name>/_index.json`.
                assert!(name.len() <= 255);
                assert!(name.bytes().all(|b| !b.is_ascii_uppercase()));
            }
        }
        1 => {
            if check_tag(name).is_ok() {
                assert_contained(name);
                assert!(!name.contains('/'));
            }
        }
        2 => {
            if let Ok(digest) = name.parse::<Digest>() {
                assert_eq!(digest.to_string(), name);
                assert_contained(&format!("blobs/sha256/{}", digest.hex()));
            }
        }
        3 => {
            if validate_repo_name(name).is_ok() {
                assert_contained(name);
                assert_contained(&format!("{name}.git"));
                let root = ServedRoot::new("/srv/ferry/git");
                let dir = root.repo_dir(name).expect("a valid name has a directory");
                assert!(normalise(&dir).starts_with(root.path()));
                assert_eq!(dir, root.path().join(format!("{name}.git")));
            }
            // A URL's name, `.git` or not.
            let root = ServedRoot::new("/srv/ferry/git");
            if let Ok(dir) = root.repo_dir(name.strip_suffix(".git").unwrap_or(name)) {
                assert!(normalise(&dir).starts_with(root.path()));
            }
        }
        4 => {
            // A ref name, through the only public door: a release.
            let release = GitRelease {
                repository: "fleet".into(),
                sequence: 1,
                base: Some(0),
                refs: vec![RefUpdate {
                    name: name.to_owned(),
                    target: None,
                }],
                prerequisites: Vec::new(),
                objects: 0,
                head: None,
                encoding: PackEncoding::Raw,
            };
            if release.validate().is_ok() {
                assert!(name.starts_with("refs/"));
                assert_contained(name);
                assert!(!name.ends_with(".lock"));
                assert!(!name.bytes().any(|b| b.is_ascii_control() || b == b' '));
            }
        }
        _ => {
            // A group name in an endpoint: never a path, but bounded.
            let endpoint = ferry_proto::v1::Endpoint {
                kind: Some(ferry_proto::v1::endpoint::Kind::Group(name.to_owned())),
            };
            if ferry_proto::Validate::validate(&endpoint).is_ok() {
                assert!(!name.is_empty() && name.len() <= ferry_proto::MAX_GROUP_NAME_LEN);
            }
        }
    }
}
