//! An upstream registry as an ingest [`Source`] (OCI distribution pull):
//! manifests fetched with an Accept header listing the OCI and Docker
//! schema 2 media types, blobs, `tags/list`, referrers (the referrers API,
//! or the `sha256-<hex>` fallback tag of registries without it), and authentication by the `WWW-Authenticate` challenge
//! (Bearer: a token from the realm for the challenge's service and scope,
//! with Basic credentials if given; or Basic directly).
//!
//! The HTTP client is ureq: blocking, like [`Source`] (ingest runs on a
//! blocking thread), without an async stack of its own; TLS by rustls with
//! ring (already in ferry) and the webpki roots.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Mutex;
use std::time::Duration;

use crate::ingest::{IngestError, MAX_DOCUMENT, Source};
use crate::media::{self, Descriptor};
use crate::{Digest, digest};

/// What manifests the client accepts, most preferred first.
const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// `docker://HOST[:PORT]/REPO[:TAG]` (HTTPS) or
/// `docker+http://HOST[:PORT]/REPO[:TAG]` (plain HTTP), parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryRef {
    /// `https://host:port` or `http://host:port`.
    pub base: String,
    pub repository: String,
    pub tag: Option<String>,
}

impl RegistryRef {
    pub fn parse(text: &str) -> Result<RegistryRef, String> {
        let (scheme, rest) = if let Some(rest) = text.strip_prefix("docker://") {
            ("https", rest)
        } else if let Some(rest) = text.strip_prefix("docker+http://") {
            ("http", rest)
        } else {
            return Err(format!(
                "{text:?} is not docker://HOST/REPO[:TAG] or docker+http://HOST/REPO[:TAG]"
            ));
        };
        let (host, path) = rest
            .split_once('/')
            .ok_or_else(|| format!("{text:?}: no repository after the host"))?;
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        {
            return Err(format!("{text:?}: {host:?} is not a host[:port]"));
        }
        let (repository, tag) = match path.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => (repo, Some(tag.to_owned())),
            _ => (path, None),
        };
        // Docker Hub: its API lives elsewhere, and official images are library/NAME.
        let (host, repository) = match host {
            "docker.io" | "index.docker.io" | "registry-1.docker.io" => (
                "registry-1.docker.io",
                if repository.contains('/') {
                    repository.to_owned()
                } else {
                    format!("library/{repository}")
                },
            ),
            _ => (host, repository.to_owned()),
        };
        digest::check_repository(&repository)?;
        if let Some(tag) = &tag {
            digest::check_tag(tag)?;
        }
        Ok(RegistryRef {
            base: format!("{scheme}://{host}"),
            repository,
            tag,
        })
    }
}

/// A repository of an upstream registry.
pub struct Registry {
    at: RegistryRef,
    agent: ureq::Agent,
    /// Basic credentials (user, password), for the token realm or a Basic challenge.
    credentials: Option<(String, String)>,
    /// The Authorization header that last worked.
    authorization: Mutex<Option<String>>,
    /// Manifests fetched by `resolve`, so the walk does not fetch them again.
    fetched: Mutex<BTreeMap<Digest, Vec<u8>>>,
}

impl Registry {
    pub fn new(at: RegistryRef, credentials: Option<(String, String)>) -> Registry {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(30)))
            .max_redirects(5)
            .build()
            .into();
        Registry {
            at,
            agent,
            credentials,
            authorization: Mutex::new(None),
            fetched: Mutex::new(BTreeMap::new()),
        }
    }

    fn fail(&self, reason: impl Into<String>) -> IngestError {
        IngestError::Source {
            source_name: self.name(),
            reason: reason.into(),
        }
    }

    /// GETs `path` below the registry's base, answering one auth challenge.
    fn get(
        &self,
        path: &str,
        accept: Option<&str>,
    ) -> Result<ureq::http::Response<ureq::Body>, IngestError> {
        let url = format!("{}{path}", self.at.base);
        let send = |auth: Option<&str>| {
            let mut request = self.agent.get(&url);
            if let Some(accept) = accept {
                request = request.header("Accept", accept);
            }
            if let Some(auth) = auth {
                request = request.header("Authorization", auth);
            }
            request
                .call()
                .map_err(|e| self.fail(format!("GET {url}: {e}")))
        };
        let held = self
            .authorization
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let response = send(held.as_deref())?;
        if response.status() != 401 {
            return Ok(response);
        }
        let challenge = response
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let auth = self.authorize(&challenge)?;
        let response = send(Some(&auth))?;
        if response.status() == 401 {
            return Err(self.fail(format!(
                "GET {url}: still unauthorized after answering {challenge:?}; check the credentials"
            )));
        }
        *self.authorization.lock().unwrap_or_else(|e| e.into_inner()) = Some(auth);
        Ok(response)
    }

    /// The Authorization header answering `challenge`.
    fn authorize(&self, challenge: &str) -> Result<String, IngestError> {
        let basic = self.credentials.as_ref().map(|(user, password)| {
            format!("Basic {}", base64(format!("{user}:{password}").as_bytes()))
        });
        let (scheme, params) = challenge.split_once(' ').unwrap_or((challenge, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return basic
                .ok_or_else(|| self.fail("the registry wants Basic credentials; none were given"));
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(self.fail(format!(
                "unsupported authentication challenge {challenge:?}"
            )));
        }
        let params = challenge_params(params);
        let realm = params
            .get("realm")
            .ok_or_else(|| self.fail(format!("a Bearer challenge without realm: {challenge:?}")))?;
        let scope = params
            .get("scope")
            .cloned()
            .unwrap_or_else(|| format!("repository:{}:pull", self.at.repository));
        let mut request = self.agent.get(realm.as_str()).query("scope", &scope);
        if let Some(service) = params.get("service") {
            request = request.query("service", service);
        }
        if let Some(basic) = &basic {
            request = request.header("Authorization", basic);
        }
        let mut response = request
            .call()
            .map_err(|e| self.fail(format!("token from {realm}: {e}")))?;
        if response.status() != 200 {
            return Err(self.fail(format!("token from {realm}: HTTP {}", response.status())));
        }
        let body = response
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_vec()
            .map_err(|e| self.fail(format!("token from {realm}: {e}")))?;
        let answer: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| self.fail(format!("token from {realm} is not JSON: {e}")))?;
        let token = answer["token"]
            .as_str()
            .or_else(|| answer["access_token"].as_str())
            .ok_or_else(|| self.fail(format!("{realm} answered without a token")))?;
        Ok(format!("Bearer {token}"))
    }

    fn read_document(&self, path: &str, what: &str) -> Result<Fetched, IngestError> {
        let mut response = self.get(path, Some(ACCEPT))?;
        let status = response.status();
        if status == 404 {
            return Err(self.fail(format!("{what} not found ({path})")));
        }
        if status != 200 {
            return Err(self.fail(format!("{what}: HTTP {status} for {path}")));
        }
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned())
        };
        let content_type = header("content-type");
        let digest = header("docker-content-digest");
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_DOCUMENT)
            .read_to_vec()
            .map_err(|e| self.fail(format!("{what}: {e}")))?;
        Ok((body, content_type, digest))
    }
}

/// A document's body, its Content-Type and its Docker-Content-Digest header.
type Fetched = (Vec<u8>, Option<String>, Option<String>);

/// `key="value", key=value` pairs of a challenge.
fn challenge_params(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = text.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.split_once('"') {
                Some((value, next)) => (value.to_owned(), next),
                None => (quoted.to_owned(), ""),
            }
        } else {
            match after.split_once(',') {
                Some((value, next)) => (value.trim().to_owned(), next),
                None => (after.trim().to_owned(), ""),
            }
        };
        out.insert(key, value);
        rest = next.trim_start_matches([',', ' ']);
    }
    out
}

fn base64(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= group.len() {
                out.push(TABLE[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

impl Source for Registry {
    fn name(&self) -> String {
        format!("{}/{}", self.at.base, self.at.repository)
    }

    fn tags(&self) -> Result<Vec<String>, IngestError> {
        let (body, _, _) =
            self.read_document(&format!("/v2/{}/tags/list", self.at.repository), "tag list")?;
        let list: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| self.fail(format!("tag list is not JSON: {e}")))?;
        Ok(list["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(str::to_owned))
            .collect())
    }

    fn resolve(&self, tag: &str) -> Result<Descriptor, IngestError> {
        let path = format!("/v2/{}/manifests/{tag}", self.at.repository);
        let (body, content_type, header_digest) =
            match self.read_document(&path, &format!("tag {tag}")) {
                Err(IngestError::Source { reason, .. }) if reason.contains("not found") => {
                    return Err(IngestError::UnknownTag {
                        source_name: self.name(),
                        tag: tag.to_owned(),
                    });
                }
                other => other?,
            };
        let digest = Digest::of(&body);
        if let Some(header) = header_digest
            && header != digest.to_string()
        {
            return Err(self.fail(format!(
                "tag {tag}: the registry says {header}, the manifest's bytes hash to {digest}"
            )));
        }
        let media_type = content_type
            .filter(|t| media::is_manifest(t))
            .or_else(|| {
                serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()?
                    .get("mediaType")?
                    .as_str()
                    .map(str::to_owned)
            })
            .ok_or_else(|| {
                self.fail(format!(
                    "tag {tag}: neither Content-Type nor mediaType names a manifest type"
                ))
            })?;
        let desc = Descriptor::new(&media_type, &body);
        self.fetched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(digest, body);
        Ok(desc)
    }

    fn open(&self, desc: &Descriptor) -> Result<Box<dyn Read + '_>, IngestError> {
        if media::is_manifest(&desc.media_type) {
            if let Some(body) = self
                .fetched
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&desc.digest)
            {
                return Ok(Box::new(std::io::Cursor::new(body.clone())));
            }
            let path = format!("/v2/{}/manifests/{}", self.at.repository, desc.digest);
            let (body, _, _) = self.read_document(&path, &format!("manifest {}", desc.digest))?;
            return Ok(Box::new(std::io::Cursor::new(body)));
        }
        let path = format!("/v2/{}/blobs/{}", self.at.repository, desc.digest);
        let response = self.get(&path, None)?;
        if response.status() != 200 {
            return Err(self.fail(format!("blob {}: HTTP {}", desc.digest, response.status())));
        }
        Ok(Box::new(response.into_body().into_reader()))
    }

    fn referrers(&self, subject: &Digest) -> Result<Vec<Descriptor>, IngestError> {
        let path = format!("/v2/{}/referrers/{subject}", self.at.repository);
        let mut response = self.get(&path, Some(media::OCI_INDEX))?;
        let body = if response.status() == 200 {
            response
                .body_mut()
                .with_config()
                .limit(MAX_DOCUMENT)
                .read_to_vec()
                .map_err(|e| self.fail(format!("referrers of {subject}: {e}")))?
        } else {
            // No referrers API: the OCI 1.1 fallback, an index tagged
            // sha256-<hex> listing the referrers.
            let tag = format!(
                "/v2/{}/manifests/sha256-{}",
                self.at.repository,
                subject.hex()
            );
            let mut response = self.get(&tag, Some(media::OCI_INDEX))?;
            if response.status() != 200 {
                return Ok(Vec::new());
            }
            response
                .body_mut()
                .with_config()
                .limit(MAX_DOCUMENT)
                .read_to_vec()
                .map_err(|e| self.fail(format!("referrers of {subject}: {e}")))?
        };
        let index: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| self.fail(format!("referrers of {subject} are not JSON: {e}")))?;
        let manifests = index["manifests"].clone();
        serde_json::from_value::<Option<Vec<Descriptor>>>(manifests)
            .map(Option::unwrap_or_default)
            .map_err(|e| self.fail(format!("referrers of {subject}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_name_scheme_host_repository_and_tag() {
        assert_eq!(
            RegistryRef::parse("docker+http://127.0.0.1:5000/team/app:v1").unwrap(),
            RegistryRef {
                base: "http://127.0.0.1:5000".into(),
                repository: "team/app".into(),
                tag: Some("v1".into())
            }
        );
        let r = RegistryRef::parse("docker://registry.example/library/debian").unwrap();
        assert_eq!((r.base.as_str(), r.tag), ("https://registry.example", None));
        let hub = RegistryRef::parse("docker://docker.io/alpine:3.20").unwrap();
        assert_eq!(
            (hub.base.as_str(), hub.repository.as_str()),
            ("https://registry-1.docker.io", "library/alpine")
        );
        assert!(RegistryRef::parse("docker://h/../x").is_err());
        assert!(RegistryRef::parse("oci:/x").is_err());
    }

    #[test]
    fn challenges_and_basic_credentials_are_parsed() {
        let p = challenge_params(
            r#"realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull""#,
        );
        assert_eq!(p["realm"], "https://auth.example/token");
        assert_eq!(p["service"], "registry.example");
        assert_eq!(p["scope"], "repository:a/b:pull");
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
        assert_eq!(base64(b"ab"), "YWI=");
    }
}
