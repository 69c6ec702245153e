//! OCI image layout directories (`oci-layout`, `index.json`,
//! `blobs/sha256/<hex>`): [`Layout`] reads one as an ingest [`Source`];
//! [`LayoutWriter`] writes one (export, test images).

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::Digest;
use crate::ingest::{IngestError, Source};
use crate::media::{self, Descriptor};

const LAYOUT_FILE: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;

/// An OCI image layout directory, read.
pub struct Layout {
    dir: PathBuf,
    index: Vec<Descriptor>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct IndexFile {
    schema_version: u32,
    manifests: Vec<Descriptor>,
}

impl Layout {
    /// Opens `dir`, reading its `oci-layout` and `index.json`.
    pub fn open(dir: &Path) -> Result<Layout, IngestError> {
        let bad = |reason: String| IngestError::Source {
            source_name: dir.display().to_string(),
            reason,
        };
        let marker = fs::read(dir.join("oci-layout"))
            .map_err(|e| bad(format!("not an OCI layout (oci-layout: {e})")))?;
        let marker: serde_json::Value = serde_json::from_slice(&marker)
            .map_err(|e| bad(format!("oci-layout is not JSON: {e}")))?;
        if marker["imageLayoutVersion"] != "1.0.0" {
            return Err(bad("oci-layout: imageLayoutVersion is not 1.0.0".into()));
        }
        let index =
            fs::read(dir.join("index.json")).map_err(|e| bad(format!("index.json: {e}")))?;
        let index: IndexFile = serde_json::from_slice(&index)
            .map_err(|e| bad(format!("index.json is not an image index: {e}")))?;
        if index.schema_version != 2 {
            return Err(bad("index.json: schemaVersion is not 2".into()));
        }
        Ok(Layout {
            dir: dir.to_owned(),
            index: index.manifests,
        })
    }

    fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join("blobs/sha256").join(digest.hex())
    }
}

impl Source for Layout {
    fn name(&self) -> String {
        format!("oci:{}", self.dir.display())
    }

    fn tags(&self) -> Result<Vec<String>, IngestError> {
        Ok(self
            .index
            .iter()
            .filter_map(|d| d.annotations.as_ref()?.get(media::REF_NAME)?.as_str())
            .map(str::to_owned)
            .collect())
    }

    fn resolve(&self, tag: &str) -> Result<Descriptor, IngestError> {
        self.index
            .iter()
            .find(|d| {
                d.annotations
                    .as_ref()
                    .and_then(|a| a.get(media::REF_NAME))
                    .and_then(|v| v.as_str())
                    == Some(tag)
            })
            .cloned()
            .ok_or_else(|| IngestError::UnknownTag {
                source_name: self.name(),
                tag: tag.to_owned(),
            })
    }

    fn open(&self, desc: &Descriptor) -> Result<Box<dyn Read + '_>, IngestError> {
        let file = File::open(self.path(&desc.digest)).map_err(|e| IngestError::Source {
            source_name: self.name(),
            reason: format!("blob {}: {e}", desc.digest),
        })?;
        Ok(Box::new(file))
    }

    fn referrers(&self, subject: &Digest) -> Result<Vec<Descriptor>, IngestError> {
        let mut found = Vec::new();
        for desc in &self.index {
            if !media::is_manifest(&desc.media_type) || desc.size > crate::ingest::MAX_DOCUMENT {
                continue;
            }
            let Ok(bytes) = fs::read(self.path(&desc.digest)) else {
                continue;
            };
            if let Ok(parsed) = media::parse(&desc.media_type, &bytes)
                && parsed.subject.as_ref().map(|s| s.digest) == Some(*subject)
            {
                found.push(desc.clone());
            }
        }
        Ok(found)
    }
}

/// Writes an OCI image layout: blobs as they are put, `index.json` at
/// [`LayoutWriter::finish`].
pub struct LayoutWriter {
    dir: PathBuf,
    index: Vec<Descriptor>,
}

impl LayoutWriter {
    /// Creates (or adds to) the layout at `dir`, keeping the entries its
    /// `index.json` already has.
    pub fn create(dir: &Path) -> io::Result<LayoutWriter> {
        fs::create_dir_all(dir.join("blobs/sha256"))?;
        fs::write(dir.join("oci-layout"), LAYOUT_FILE)?;
        let index = match fs::read(dir.join("index.json")) {
            Ok(bytes) => serde_json::from_slice::<IndexFile>(&bytes)
                .map(|i| i.manifests)
                .unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        Ok(LayoutWriter {
            dir: dir.to_owned(),
            index,
        })
    }

    /// Writes `bytes` as a blob; returns its descriptor.
    pub fn put(&mut self, media_type: &str, bytes: &[u8]) -> io::Result<Descriptor> {
        let desc = Descriptor::new(media_type, bytes);
        let path = self.dir.join("blobs/sha256").join(desc.digest.hex());
        if !path.exists() {
            let tmp = path.with_extension("tmp");
            let mut file = File::create(&tmp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            fs::rename(&tmp, &path)?;
        }
        Ok(desc)
    }

    /// Copies the blob at `from` (already verified by the caller) into the layout.
    pub fn copy_blob(&mut self, digest: &Digest, from: &Path) -> io::Result<()> {
        let path = self.dir.join("blobs/sha256").join(digest.hex());
        if !path.exists() {
            let tmp = path.with_extension("tmp");
            fs::copy(from, &tmp)?;
            File::open(&tmp)?.sync_all()?;
            fs::rename(&tmp, &path)?;
        }
        Ok(())
    }

    /// Names `desc` `tag` in `index.json` (replacing that tag's old entry).
    pub fn tag(&mut self, tag: &str, desc: &Descriptor) {
        let named = |d: &Descriptor| {
            d.annotations
                .as_ref()
                .and_then(|a| a.get(media::REF_NAME))
                .and_then(|v| v.as_str())
                == Some(tag)
        };
        self.index.retain(|d| !named(d));
        let mut desc = desc.clone();
        desc.annotations
            .get_or_insert_with(Default::default)
            .insert(media::REF_NAME.into(), tag.into());
        self.index.push(desc);
    }

    /// Lists `desc` in `index.json` without a tag (e.g. a referrer).
    pub fn add_untagged(&mut self, desc: &Descriptor) {
        if !self.index.iter().any(|d| d.digest == desc.digest) {
            self.index.push(desc.clone());
        }
    }

    /// Writes `index.json` (atomically).
    pub fn finish(self) -> io::Result<()> {
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_INDEX,
            "manifests": self.index,
        });
        let tmp = self.dir.join("index.json.tmp");
        let mut file = File::create(&tmp)?;
        file.write_all(serde_json::to_string_pretty(&index)?.as_bytes())?;
        file.sync_all()?;
        fs::rename(&tmp, self.dir.join("index.json"))
    }
}
