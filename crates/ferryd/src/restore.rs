//! Files delivered here, written back out: `ferry get` by manifest id, by
//! the name a file was sent under, or every delivered file into a directory
//! by its name (`ferry get --all`).
//!
//! `ferry send DIR` sends each file as its own bundle named by its path
//! under DIR. The names come from the sender, so a name is written only if
//! it is a plain relative path (no root, no `..`); when a name was sent more
//! than once, the newest bundle wins. Every file is verified chunk by chunk
//! and against its digest, written to a temporary file, synced and renamed
//! into place: a crash leaves the old file or the new one, never a mix.

use std::collections::BTreeMap;
use std::path::{Component, Path};

use ferry_chunk::ManifestId;
use ferry_core::{BundleId, Engine, PayloadKind, Store};
use ferry_store::RocksStore;
use serde::Serialize;

use crate::media::write_atomic;

/// A file bundle delivered to this node and still held.
#[derive(Clone, Debug)]
pub struct Delivered {
    /// The name it was sent under (`ferry send`: its path under the directory).
    pub name: Vec<u8>,
    pub bundle: BundleId,
    pub manifest: ManifestId,
}

/// The file bundles delivered here, from the engine's records.
pub fn delivered_files<S: Store>(engine: &Engine<S>) -> Vec<Delivered> {
    engine
        .bundles()
        .filter(|r| r.delivered && r.header.kind == PayloadKind::Blob)
        .map(|r| Delivered {
            name: r.header.release.clone(),
            bundle: r.header.id,
            manifest: r.header.manifest,
        })
        .collect()
}

/// The newest bundle of each name, in name order. Newest: created last by
/// its sender's clock, then the higher sequence number.
pub fn newest_by_name(files: Vec<Delivered>) -> BTreeMap<Vec<u8>, Delivered> {
    let mut newest: BTreeMap<Vec<u8>, Delivered> = BTreeMap::new();
    for file in files {
        let key = |f: &Delivered| (f.bundle.created_ms, f.bundle.sequence, f.bundle.source);
        match newest.get(&file.name) {
            Some(held) if key(held) >= key(&file) => {}
            _ => {
                newest.insert(file.name.clone(), file);
            }
        }
    }
    newest
}

/// The relative path a sent name stands for, or why it cannot be written:
/// UTF-8, not empty, and every component a plain name.
pub fn safe_path(name: &[u8]) -> Result<&Path, &'static str> {
    let name = std::str::from_utf8(name).map_err(|_| "its name is not UTF-8")?;
    let path = Path::new(name);
    if name.is_empty() {
        return Err("it has no name");
    }
    if !path.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err("its name is not a plain relative path (absolute, or holding `.` or `..`)");
    }
    Ok(path)
}

/// Whether `name` is `under` or lies below it, component by component.
fn lies_under(name: &str, under: &str) -> bool {
    Path::new(name).starts_with(under.trim_end_matches('/'))
}

/// One file written by [`restore`].
#[derive(Debug, Serialize)]
pub struct Written {
    pub name: String,
    pub bundle: String,
    pub bytes: u64,
}

/// One file [`restore`] did not write, and why.
#[derive(Debug, Serialize)]
pub struct Skipped {
    pub name: String,
    pub bundle: String,
    pub reason: String,
}

/// What [`restore`] did.
#[derive(Debug, Default, Serialize)]
pub struct Restored {
    pub written: Vec<Written>,
    pub skipped: Vec<Skipped>,
    pub bytes: u64,
}

/// Writes the newest delivered file of each name (with `under`, only names
/// at or below that path) into the directory `out`, by its name. Files
/// already there under those names are replaced; nothing else is touched.
pub fn restore(
    store: &RocksStore,
    files: Vec<Delivered>,
    under: Option<&str>,
    out: &Path,
) -> Result<Restored, String> {
    // An unsafe name under the filter is reported below, not written.
    let chosen: Vec<Delivered> = newest_by_name(files)
        .into_values()
        .filter(|f| under.is_none_or(|under| lies_under(&String::from_utf8_lossy(&f.name), under)))
        .collect();
    if chosen.is_empty() {
        return Err(match under {
            Some(under) => format!("no file delivered here is named {under} or lies under it"),
            None => "no file delivered here (`ferry bundles` lists what this node holds)".into(),
        });
    }
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let mut restored = Restored::default();
    for file in chosen {
        let name = String::from_utf8_lossy(&file.name).into_owned();
        let written = safe_path(&file.name)
            .map_err(str::to_string)
            .and_then(|path| {
                let target = out.join(path);
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
                }
                reassemble(store, file.manifest, &target)
            });
        match written {
            Ok(bytes) => {
                restored.bytes += bytes;
                restored.written.push(Written {
                    name,
                    bundle: file.bundle.to_string(),
                    bytes,
                });
            }
            Err(reason) => restored.skipped.push(Skipped {
                name,
                bundle: file.bundle.to_string(),
                reason,
            }),
        }
    }
    Ok(restored)
}

/// Writes the object `id` to `out` ([`write_atomic`]: a temporary file
/// beside it, synced, then renamed into place), every chunk and the native
/// digest verified. Returns its length.
pub fn reassemble(store: &RocksStore, id: ManifestId, out: &Path) -> Result<u64, String> {
    let manifest = store
        .get_manifest(id)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("this node holds no object {id}"))?;
    write_atomic(out, |writer| {
        store
            .read_object(&manifest, writer)
            .map_err(|e| format!("object {id}: {e}"))
    })?;
    Ok(manifest.total_length())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_chunk::{Chunker, ChunkerConfig};
    use ferry_core::NodeId;
    use ferry_store::Ingest;

    fn delivered(name: &str, created_ms: u64, manifest: ManifestId) -> Delivered {
        Delivered {
            name: name.as_bytes().to_vec(),
            bundle: BundleId {
                source: NodeId([7; 32]),
                created_ms,
                sequence: created_ms,
            },
            manifest,
        }
    }

    #[test]
    fn only_plain_relative_names_are_paths() {
        for good in ["a.txt", "manifests/deploy.yaml", ".gitkeep", "a//b"] {
            assert!(safe_path(good.as_bytes()).is_ok(), "{good}");
        }
        for bad in ["", "/etc/passwd", "../up", "a/../../up", "./a", "a/./b/.."] {
            assert!(safe_path(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert!(safe_path(b"\xff.txt").is_err());
    }

    #[test]
    fn the_newest_of_each_name_wins() {
        let [a, b, c] = [1u8, 2, 3].map(|i| ManifestId::of_encoding(&[i]));
        let newest = newest_by_name(vec![
            delivered("x", 20, b),
            delivered("x", 10, a),
            delivered("y", 5, c),
        ]);
        assert_eq!(newest[&b"x".to_vec()].manifest, b);
        assert_eq!(newest[&b"y".to_vec()].manifest, c);
    }

    /// Three files are written by name, the newest version of one of them;
    /// a name reaching out of the directory is skipped, and nothing is
    /// written outside it.
    #[test]
    fn files_are_written_by_name_and_escapes_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let store = RocksStore::open(dir.path().join("store"), Default::default()).unwrap();
        let mut ingest = Ingest::new(&store, Chunker::new(ChunkerConfig::default()).unwrap());
        let mut ids = Vec::new();
        for data in [&b"old"[..], b"new", b"deploy: yes\n", b"", b"escaped"] {
            ids.push(ingest.add("f", data, |_| {}).unwrap());
        }
        ingest.finish().unwrap();
        let out = dir.path().join("out");
        let files = vec![
            delivered("a.txt", 1, ids[0]),
            delivered("a.txt", 2, ids[1]),
            delivered("manifests/deploy.yaml", 1, ids[2]),
            delivered("manifests/.gitkeep", 1, ids[3]),
            delivered("../escaped", 1, ids[4]),
        ];
        let restored = restore(&store, files.clone(), None, &out).unwrap();
        assert_eq!(std::fs::read(out.join("a.txt")).unwrap(), b"new");
        assert_eq!(
            std::fs::read(out.join("manifests/deploy.yaml")).unwrap(),
            b"deploy: yes\n"
        );
        assert_eq!(std::fs::read(out.join("manifests/.gitkeep")).unwrap(), b"");
        assert_eq!(restored.written.len(), 3);
        assert_eq!(restored.bytes, 15);
        assert_eq!(restored.skipped.len(), 1);
        assert_eq!(restored.skipped[0].name, "../escaped");
        assert!(!dir.path().join("escaped").exists());
        // No temporary file is left behind.
        let mut left: Vec<_> = walk(&out);
        left.sort();
        assert_eq!(
            left,
            ["a.txt", "manifests/.gitkeep", "manifests/deploy.yaml"]
        );

        // `under` picks a subtree, by whole components.
        let sub = dir.path().join("sub");
        let restored = restore(&store, files.clone(), Some("manifests/"), &sub).unwrap();
        assert_eq!(restored.written.len(), 2);
        assert!(sub.join("manifests/deploy.yaml").exists());
        let none = restore(&store, files, Some("manifest"), &dir.path().join("none"));
        assert!(none.unwrap_err().contains("no file delivered here"));
    }

    fn walk(root: &Path) -> Vec<String> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(root).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                found.extend(walk(&path).into_iter().map(|f| format!("{name}/{f}")));
            } else {
                found.push(path.file_name().unwrap().to_string_lossy().into_owned());
            }
        }
        found
    }
}
