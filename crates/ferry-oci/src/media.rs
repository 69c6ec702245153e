//! The JSON documents of an image (indexes and manifests, OCI and Docker
//! schema 2) as far as ferry needs them: what a document reaches, and the
//! subject it refers to. Parsing is strict about what it reads and ignores
//! the rest, since the bytes are served as they are, never re-encoded.

use serde::{Deserialize, Serialize};

use crate::Digest;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";

/// The annotation an OCI layout's index.json uses for a tag.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Media types a registry serves from its manifests endpoint.
pub fn is_manifest(media_type: &str) -> bool {
    is_index(media_type) || media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
}

/// Media types of documents that list other manifests.
pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_LIST
}

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<serde_json::Value>,
}

impl Descriptor {
    pub fn new(media_type: &str, bytes: &[u8]) -> Self {
        Descriptor {
            media_type: media_type.to_owned(),
            digest: Digest::of(bytes),
            size: bytes.len() as u64,
            artifact_type: None,
            annotations: None,
            platform: None,
        }
    }
}

/// An index or a manifest, as read.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Document {
    schema_version: Option<u32>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

/// What ferry reads from an index or a manifest.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The descriptors it reaches: an index's manifests, or a manifest's
    /// config and layers.
    pub children: Vec<Descriptor>,
    /// The manifest it refers to (OCI 1.1 `subject`), if any.
    pub subject: Option<Descriptor>,
    /// `artifactType`, or for a manifest without one its config's media type
    /// (as the referrers API reports it).
    pub artifact_type: Option<String>,
    pub annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A document that is not the index or manifest its media type says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {media_type} {digest}: {reason}")]
pub struct Malformed {
    pub media_type: String,
    pub digest: Digest,
    pub reason: String,
}

/// Parses the index or manifest `bytes`, served as `media_type`.
pub fn parse(media_type: &str, bytes: &[u8]) -> Result<Parsed, Malformed> {
    let malformed = |reason: String| Malformed {
        media_type: media_type.to_owned(),
        digest: Digest::of(bytes),
        reason,
    };
    let doc: Document = serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
    if doc.schema_version != Some(2) {
        return Err(malformed("schemaVersion is not 2".into()));
    }
    if let Some(declared) = &doc.media_type
        && declared != media_type
    {
        return Err(malformed(format!(
            "its mediaType is {declared}, but it was described as {media_type}"
        )));
    }
    let children = if is_index(media_type) {
        if doc.config.is_some() || doc.layers.is_some() {
            return Err(malformed("an index with config or layers".into()));
        }
        doc.manifests
            .ok_or_else(|| malformed("an index without manifests".into()))?
    } else if is_manifest(media_type) {
        if doc.manifests.is_some() {
            return Err(malformed("a manifest with manifests".into()));
        }
        let config = doc
            .config
            .ok_or_else(|| malformed("a manifest without config".into()))?;
        let mut children = vec![config];
        children.extend(
            doc.layers
                .ok_or_else(|| malformed("a manifest without layers".into()))?,
        );
        children
    } else {
        return Err(malformed("not an index or manifest media type".into()));
    };
    if is_index(media_type)
        && let Some(child) = children.iter().find(|c| !is_manifest(&c.media_type))
    {
        return Err(malformed(format!(
            "it lists {} of media type {}, not a manifest",
            child.digest, child.media_type
        )));
    }
    let artifact_type = doc.artifact_type.or_else(|| {
        (!is_index(media_type))
            .then(|| children.first().map(|c| c.media_type.clone()))
            .flatten()
    });
    Ok(Parsed {
        children,
        subject: doc.subject,
        artifact_type,
        annotations: doc.annotations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_reaches_its_config_and_layers() {
        let config = Descriptor::new(OCI_CONFIG, b"{}");
        let layer = Descriptor::new(OCI_LAYER_GZIP, b"layer");
        let doc = serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": config, "layers": [layer],
        });
        let parsed = parse(OCI_MANIFEST, doc.to_string().as_bytes()).unwrap();
        assert_eq!(parsed.children, vec![config, layer]);
        assert_eq!(parsed.artifact_type.as_deref(), Some(OCI_CONFIG));
    }

    #[test]
    fn malformed_documents_are_refused_with_the_reason() {
        let err = parse(OCI_MANIFEST, b"{not json").unwrap_err();
        assert!(err.to_string().contains("malformed"), "{err}");
        let doc = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        let err = parse(OCI_MANIFEST, doc).unwrap_err();
        assert!(err.reason.contains("mediaType"), "{err}");
        let doc = br#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:../x","size":1},"layers":[]}"#;
        assert!(parse(OCI_MANIFEST, doc).is_err());
    }
}
