//! A docker-archive tar (`docker save`, `skopeo copy ... docker-archive:`)
//! as an ingest [`Source`]. Two forms are read:
//! - an OCI image layout inside the tar (`oci-layout`, `index.json`,
//!   `blobs/sha256/...`, as Docker 25 and later write): served as it is;
//! - the legacy form (`manifest.json` listing each image's `Config`,
//!   `RepoTags` and `Layers` files): such an archive holds no manifest, so
//!   one is made, as skopeo does when it reads one — a Docker schema 2
//!   manifest whose config is the archive's config file, byte for byte, and
//!   whose layers are the archive's layer files (uncompressed tars, so their
//!   digests are the config's `diff_ids`; gzip'd ones are marked as such).
//!
//! The tar is indexed once; blobs are then read in place (seek + length).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::ingest::{IngestError, MAX_DOCUMENT, Source};
use crate::media::{self, Descriptor};
use crate::{Digest, Layout};

/// A docker-archive tar file, indexed.
pub struct DockerArchive {
    path: PathBuf,
    /// Regular files: name → (offset of the data, length).
    files: BTreeMap<String, (u64, u64)>,
    /// Tag → root descriptor.
    tags: BTreeMap<String, Descriptor>,
    /// Blob digest → file name in the tar.
    blobs: BTreeMap<Digest, String>,
    /// Manifests made for the legacy form.
    made: BTreeMap<Digest, Vec<u8>>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct LegacyImage {
    config: String,
    #[serde(default)]
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

impl DockerArchive {
    pub fn open(path: &Path) -> Result<DockerArchive, IngestError> {
        let fail = |reason: String| IngestError::Source {
            source_name: format!("docker-archive:{}", path.display()),
            reason,
        };
        let file = File::open(path).map_err(|e| fail(e.to_string()))?;
        let mut tar = tar::Archive::new(file);
        let mut files = BTreeMap::new();
        for entry in tar.entries().map_err(|e| fail(format!("not a tar: {e}")))? {
            let entry = entry.map_err(|e| fail(format!("not a tar: {e}")))?;
            if entry.header().entry_type() != tar::EntryType::Regular {
                continue;
            }
            let name = entry
                .path()
                .map_err(|e| fail(e.to_string()))?
                .to_string_lossy()
                .trim_start_matches("./")
                .to_owned();
            files.insert(name, (entry.raw_file_position(), entry.size()));
        }
        let mut archive = DockerArchive {
            path: path.to_owned(),
            files,
            tags: BTreeMap::new(),
            blobs: BTreeMap::new(),
            made: BTreeMap::new(),
        };
        if archive.files.contains_key("index.json") && archive.files.contains_key("oci-layout") {
            archive.read_oci().map_err(|e| fail(e.to_string()))?;
        } else if archive.files.contains_key("manifest.json") {
            archive.read_legacy().map_err(fail)?;
        } else {
            return Err(fail(
                "neither index.json (OCI) nor manifest.json (docker-archive) in the tar".into(),
            ));
        }
        Ok(archive)
    }

    fn read_file(&self, name: &str, limit: u64) -> Result<Vec<u8>, String> {
        let (offset, len) = *self
            .files
            .get(name)
            .ok_or_else(|| format!("{name} is not in the archive"))?;
        if len > limit {
            return Err(format!("{name} is {len} bytes, over {limit}"));
        }
        let mut file = File::open(&self.path).map_err(|e| e.to_string())?;
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| e.to_string())?;
        let mut bytes = Vec::with_capacity(len as usize);
        file.take(len)
            .read_to_end(&mut bytes)
            .map_err(|e| e.to_string())?;
        Ok(bytes)
    }

    fn read_oci(&mut self) -> Result<(), String> {
        // Reuse the layout reader's rules on an unpacked index.json.
        let index = self.read_file("index.json", MAX_DOCUMENT)?;
        let dir = tempdir_for_index(&index)?;
        let layout = Layout::open(dir.path()).map_err(|e| e.to_string())?;
        for tag in layout.tags().map_err(|e| e.to_string())? {
            let desc = layout.resolve(&tag).map_err(|e| e.to_string())?;
            // Docker writes full references ("docker.io/library/x:tag") as
            // containerd names; the OCI ref name is the tag.
            let tag = tag.rsplit(':').next().unwrap_or(&tag).to_owned();
            self.tags.insert(tag, desc);
        }
        for name in self.files.keys() {
            if let Some(hex) = name.strip_prefix("blobs/sha256/")
                && let Ok(digest) = format!("sha256:{hex}").parse::<Digest>()
            {
                self.blobs.insert(digest, name.clone());
            }
        }
        Ok(())
    }

    fn read_legacy(&mut self) -> Result<(), String> {
        let manifest = self.read_file("manifest.json", MAX_DOCUMENT)?;
        let images: Vec<LegacyImage> =
            serde_json::from_slice(&manifest).map_err(|e| format!("manifest.json: {e}"))?;
        for image in images {
            let config = self.read_file(&image.config, MAX_DOCUMENT)?;
            let config_desc = Descriptor::new(media::DOCKER_CONFIG, &config);
            self.blobs.insert(config_desc.digest, image.config.clone());
            let mut layers = Vec::new();
            for layer in &image.layers {
                let (digest, size, gzip) = self.hash_file(layer)?;
                layers.push(serde_json::json!({
                    "mediaType": if gzip { media::DOCKER_LAYER_GZIP } else { media::DOCKER_LAYER_TAR },
                    "size": size,
                    "digest": digest.to_string(),
                }));
                self.blobs.insert(digest, layer.clone());
            }
            let manifest = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": media::DOCKER_MANIFEST,
                "config": {"mediaType": media::DOCKER_CONFIG, "size": config_desc.size, "digest": config_desc.digest.to_string()},
                "layers": layers,
            });
            let bytes = serde_json::to_vec_pretty(&manifest).expect("JSON serializes");
            let desc = Descriptor::new(media::DOCKER_MANIFEST, &bytes);
            self.made.insert(desc.digest, bytes);
            for reference in &image.repo_tags {
                let tag = reference.rsplit_once(':').map_or("latest", |(_, t)| t);
                self.tags.insert(tag.to_owned(), desc.clone());
            }
        }
        Ok(())
    }

    /// sha256, length and whether the file is gzip'd.
    fn hash_file(&self, name: &str) -> Result<(Digest, u64, bool), String> {
        let (offset, len) = *self
            .files
            .get(name)
            .ok_or_else(|| format!("{name} is not in the archive"))?;
        let mut file = File::open(&self.path).map_err(|e| e.to_string())?;
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| e.to_string())?;
        let mut reader = file.take(len);
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut first = [0u8; 2];
        let mut seen = 0u64;
        loop {
            let n = reader.read(&mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            if seen == 0 && n >= 2 {
                first.copy_from_slice(&buf[..2]);
            }
            seen += n as u64;
            hasher.update(&buf[..n]);
        }
        Ok((Digest(hasher.finalize().into()), len, first == [0x1f, 0x8b]))
    }
}

/// A directory holding only `oci-layout` and `index.json`, so the layout
/// reader can check and parse the index.
fn tempdir_for_index(index: &[u8]) -> Result<TempDir, String> {
    let dir = std::env::temp_dir().join(format!(
        "ferry-archive-index-{}-{}",
        std::process::id(),
        Digest::of(index).hex()
    ));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)
        .map_err(|e| e.to_string())?;
    std::fs::write(dir.join("index.json"), index).map_err(|e| e.to_string())?;
    Ok(TempDir(dir))
}

struct TempDir(PathBuf);

impl TempDir {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Source for DockerArchive {
    fn name(&self) -> String {
        format!("docker-archive:{}", self.path.display())
    }

    fn tags(&self) -> Result<Vec<String>, IngestError> {
        Ok(self.tags.keys().cloned().collect())
    }

    fn resolve(&self, tag: &str) -> Result<Descriptor, IngestError> {
        self.tags
            .get(tag)
            .cloned()
            .ok_or_else(|| IngestError::UnknownTag {
                source_name: self.name(),
                tag: tag.to_owned(),
            })
    }

    fn open(&self, desc: &Descriptor) -> Result<Box<dyn Read + '_>, IngestError> {
        if let Some(bytes) = self.made.get(&desc.digest) {
            return Ok(Box::new(std::io::Cursor::new(bytes.clone())));
        }
        let fail = |reason: String| IngestError::Source {
            source_name: self.name(),
            reason,
        };
        let name = self
            .blobs
            .get(&desc.digest)
            .ok_or_else(|| fail(format!("blob {} is not in the archive", desc.digest)))?;
        let (offset, len) = self.files[name];
        let mut file = File::open(&self.path).map_err(|e| fail(e.to_string()))?;
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| fail(e.to_string()))?;
        Ok(Box::new(file.take(len)))
    }

    fn referrers(&self, _subject: &Digest) -> Result<Vec<Descriptor>, IngestError> {
        Ok(Vec::new())
    }
}
