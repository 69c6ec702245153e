//! The leaf's read-only OCI Distribution API over an [`ImageStore`]:
//! `GET /v2/`; GET/HEAD of manifests by tag or digest (with the manifest's
//! own Content-Type, Docker-Content-Digest and Content-Length); GET/HEAD of
//! blobs with a single byte Range (206, or 416 with `bytes */size`);
//! `tags/list` with `n`/`last`; the referrers API (an image index, filtered
//! by `artifactType`); the spec's JSON errors. Repository names of several
//! segments are parsed from the end of the path; the `ns=` query that
//! containerd mirrors add is accepted and ignored. Anything but GET/HEAD is
//! refused (405, UNSUPPORTED): a leaf is fed by ferry, never pushed to.
//!
//! Only verified blobs exist in the store, and a name or digest from the
//! request is checked before it becomes a path.

use std::io::SeekFrom;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::leaf::{ImageStore, RepoIndex};
use crate::media::{self, Descriptor};
use crate::{Digest, digest};

/// Asked before a repository is served: `Err(reason)` refuses every
/// request for it (403 `DENIED`, with the reason). A leaf's trust policy
/// uses it to check, at each request, that what it serves is still trusted.
pub type ServeCheck = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

#[derive(Clone)]
struct Served {
    store: Arc<ImageStore>,
    check: Option<ServeCheck>,
}

/// The router serving `store`, asking `check` (if any) before each
/// repository is served.
pub fn router(store: Arc<ImageStore>, check: Option<ServeCheck>) -> Router {
    Router::new()
        .fallback(handle)
        .with_state(Served { store, check })
}

/// Serves `store` on `listener` until the future is dropped.
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: Arc<ImageStore>,
) -> std::io::Result<()> {
    serve_checked(listener, store, None).await
}

/// As [`serve`], asking `check` before each repository is served.
pub async fn serve_checked(
    listener: tokio::net::TcpListener,
    store: Arc<ImageStore>,
    check: Option<ServeCheck>,
) -> std::io::Result<()> {
    axum::serve(listener, router(store, check)).await
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = serde_json::json!({
        "errors": [{"code": code, "message": message.into(), "detail": null}]
    });
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

enum Route<'a> {
    Base,
    Manifest(&'a str, &'a str),
    Blob(&'a str, &'a str),
    Tags(&'a str),
    Referrers(&'a str, &'a str),
}

fn route<'a>(path: &'a str) -> Option<Route<'a>> {
    let rest = path.strip_prefix("/v2")?;
    if rest.is_empty() || rest == "/" {
        return Some(Route::Base);
    }
    let rest = rest.strip_prefix('/')?;
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Some(Route::Tags(name));
    }
    for (marker, make) in [
        (
            "/manifests/",
            Route::Manifest as fn(&'a str, &'a str) -> Route<'a>,
        ),
        ("/blobs/", Route::Blob),
        ("/referrers/", Route::Referrers),
    ] {
        if let Some(at) = rest.rfind(marker) {
            let reference = &rest[at + marker.len()..];
            if !reference.is_empty() && !reference.contains('/') {
                return Some(make(&rest[..at], reference));
            }
        }
    }
    None
}

async fn handle(State(served): State<Served>, request: Request) -> Response {
    let Served { store, check } = served;
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let head = method == Method::HEAD;
    if method != Method::GET && !head {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            format!(
                "{method} refused: this is a read-only ferry leaf registry; images arrive only through ferry"
            ),
        );
    }
    let span = tracing::debug_span!("oci", %method, %path);
    let _enter = span.enter();
    let Some(route) = route(&path) else {
        return error(
            StatusCode::NOT_FOUND,
            "NAME_INVALID",
            format!("{path} is not a distribution API path"),
        );
    };
    let mut response = match route {
        Route::Base => {
            let mut r = (StatusCode::OK, "{}").into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        Route::Tags(name) => match repo(&store, check.as_ref(), name).await {
            Ok(index) => tags_list(name, &index, &query),
            Err(r) => r,
        },
        Route::Manifest(name, reference) => match repo(&store, check.as_ref(), name).await {
            Ok(index) => manifest(&store, &index, reference, head).await,
            Err(r) => r,
        },
        Route::Blob(name, reference) => match repo(&store, check.as_ref(), name).await {
            Ok(index) => blob(&store, &index, reference, request.headers(), head).await,
            Err(r) => r,
        },
        Route::Referrers(name, reference) => match repo(&store, check.as_ref(), name).await {
            Ok(index) => referrers(&index, reference, &query),
            Err(r) => r,
        },
    };
    response.headers_mut().insert(
        "Docker-Distribution-API-Version",
        HeaderValue::from_static("registry/2.0"),
    );
    response
}

async fn repo(
    store: &Arc<ImageStore>,
    check: Option<&ServeCheck>,
    name: &str,
) -> Result<RepoIndex, Response> {
    if let Err(reason) = digest::check_repository(name) {
        return Err(error(StatusCode::NOT_FOUND, "NAME_INVALID", reason));
    }
    let store = store.clone();
    let owned = name.to_owned();
    let index = tokio::task::spawn_blocking(move || store.repository(&owned))
        .await
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", e.to_string()))?;
    match index {
        Ok(Some(index)) => match check.map(|check| check(name)) {
            Some(Err(reason)) => Err(error(
                StatusCode::FORBIDDEN,
                "DENIED",
                format!("repository {name} is not served: {reason}"),
            )),
            _ => Ok(index),
        },
        Ok(None) => Err(error(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            format!("repository {name} is not known to this leaf"),
        )),
        Err(e) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "UNKNOWN",
            format!("repository {name}: {e}"),
        )),
    }
}

fn query_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

fn json(status: StatusCode, content_type: &'static str, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn tags_list(name: &str, index: &RepoIndex, query: &str) -> Response {
    let n = match query_param(query, "n").map(str::parse::<usize>) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "PAGINATION_NUMBER_INVALID",
                "n is not a number",
            );
        }
    };
    let last = query_param(query, "last");
    let mut tags: Vec<&String> = index
        .tags
        .keys()
        .filter(|t| last.is_none_or(|l| t.as_str() > l))
        .collect();
    let more = n.is_some_and(|n| tags.len() > n);
    if let Some(n) = n {
        tags.truncate(n);
    }
    let body = serde_json::json!({"name": name, "tags": tags}).to_string();
    let mut r = json(StatusCode::OK, "application/json", body);
    if more && let Some(last) = tags.last() {
        let link = format!(
            "</v2/{name}/tags/list?n={}&last={last}>; rel=\"next\"",
            n.unwrap_or(0)
        );
        if let Ok(v) = HeaderValue::from_str(&link) {
            r.headers_mut().insert(header::LINK, v);
        }
    }
    r
}

async fn manifest(
    store: &Arc<ImageStore>,
    index: &RepoIndex,
    reference: &str,
    head: bool,
) -> Response {
    let (digest, media_type) = if reference.starts_with("sha256:") || reference.contains(':') {
        let digest = match reference.parse::<Digest>() {
            Ok(d) => d,
            Err(e) => return error(StatusCode::BAD_REQUEST, "DIGEST_INVALID", e.to_string()),
        };
        match index.blobs.get(&digest) {
            Some(mt) if media::is_manifest(mt) => (digest, mt.clone()),
            _ => {
                return error(
                    StatusCode::NOT_FOUND,
                    "MANIFEST_UNKNOWN",
                    format!("manifest {digest} is not known in this repository"),
                );
            }
        }
    } else {
        if let Err(reason) = digest::check_tag(reference) {
            return error(StatusCode::BAD_REQUEST, "TAG_INVALID", reason);
        }
        match index.tags.get(reference) {
            Some(t) => (t.target.digest, t.target.media_type.clone()),
            None => {
                return error(
                    StatusCode::NOT_FOUND,
                    "MANIFEST_UNKNOWN",
                    format!("tag {reference} is not known in this repository"),
                );
            }
        }
    };
    let bytes = match tokio::fs::read(store.blob_path(&digest)).await {
        Ok(b) => b,
        Err(_) => {
            return error(
                StatusCode::NOT_FOUND,
                "MANIFEST_UNKNOWN",
                format!("manifest {digest} is not held here"),
            );
        }
    };
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&media_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    headers.insert(
        "Docker-Content-Digest",
        HeaderValue::from_str(&digest.to_string()).expect("a digest is ASCII"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    headers.insert(
        header::ETAG,
        HeaderValue::from_str(&format!("\"{digest}\"")).expect("ASCII"),
    );
    let body = if head {
        Body::empty()
    } else {
        Body::from(bytes)
    };
    (StatusCode::OK, headers, body).into_response()
}

/// A single `bytes=` range resolved against `size`: Ok(None) for no Range
/// header, Err for one that is malformed or unsatisfiable.
fn parse_range(value: Option<&HeaderValue>, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(value) = value else { return Ok(None) };
    let text = value.to_str().map_err(|_| ())?.trim();
    let spec = text.strip_prefix("bytes=").ok_or(())?;
    if spec.contains(',') {
        return Err(());
    }
    let (start, end) = spec.split_once('-').ok_or(())?;
    let (start, end) = match (start.trim(), end.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().map_err(|_| ())?;
            if n == 0 || size == 0 {
                return Err(());
            }
            (size.saturating_sub(n), size - 1)
        }
        (start, "") => (start.parse().map_err(|_| ())?, size.saturating_sub(1)),
        (start, end) => {
            let start: u64 = start.parse().map_err(|_| ())?;
            let end: u64 = end.parse().map_err(|_| ())?;
            (start, end.min(size.saturating_sub(1)))
        }
    };
    if start >= size || end < start {
        return Err(());
    }
    Ok(Some((start, end)))
}

async fn blob(
    store: &Arc<ImageStore>,
    index: &RepoIndex,
    reference: &str,
    headers: &HeaderMap,
    head: bool,
) -> Response {
    let digest = match reference.parse::<Digest>() {
        Ok(d) => d,
        Err(e) => return error(StatusCode::BAD_REQUEST, "DIGEST_INVALID", e.to_string()),
    };
    let unknown = || {
        error(
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
            format!("blob {digest} is not known in this repository"),
        )
    };
    if !index.blobs.contains_key(&digest) {
        return unknown();
    }
    let Ok(mut file) = tokio::fs::File::open(store.blob_path(&digest)).await else {
        return unknown();
    };
    let size = match file.metadata().await {
        Ok(m) => m.len(),
        Err(_) => return unknown(),
    };
    let range = match parse_range(headers.get(header::RANGE), size) {
        Ok(r) => r,
        Err(()) => {
            let mut r = error(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "BLOB_UNKNOWN",
                format!(
                    "range not satisfiable for a {size}-byte blob (one bytes=start-end range is supported)"
                ),
            );
            r.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{size}")).expect("ASCII"),
            );
            return r;
        }
    };
    let (status, start, len) = match range {
        Some((start, end)) => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        None => (StatusCode::OK, 0, size),
    };
    let mut out = HeaderMap::new();
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    out.insert(
        "Docker-Content-Digest",
        HeaderValue::from_str(&digest.to_string()).expect("ASCII"),
    );
    out.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    out.insert(
        header::ETAG,
        HeaderValue::from_str(&format!("\"{digest}\"")).expect("ASCII"),
    );
    if range.is_some() {
        out.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&format!("bytes {start}-{}/{size}", start + len - 1))
                .expect("ASCII"),
        );
    }
    if head {
        return (status, out, Body::empty()).into_response();
    }
    if file.seek(SeekFrom::Start(start)).await.is_err() {
        return unknown();
    }
    let stream = futures_util::stream::unfold(
        (file.take(len), vec![0u8; 256 << 10]),
        |(mut reader, mut buf)| async move {
            match reader.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    let chunk = bytes::Bytes::copy_from_slice(&buf[..n]);
                    Some((Ok::<_, std::io::Error>(chunk), (reader, buf)))
                }
                Err(e) => Some((Err(e), (reader, buf))),
            }
        },
    );
    (status, out, Body::from_stream(stream)).into_response()
}

fn referrers(index: &RepoIndex, reference: &str, query: &str) -> Response {
    let digest = match reference.parse::<Digest>() {
        Ok(d) => d,
        Err(e) => return error(StatusCode::BAD_REQUEST, "DIGEST_INVALID", e.to_string()),
    };
    let filter = query_param(query, "artifactType");
    let manifests: Vec<&Descriptor> = index
        .referrers
        .get(&digest)
        .into_iter()
        .flatten()
        .filter(|d| filter.is_none_or(|f| d.artifact_type.as_deref() == Some(f)))
        .collect();
    let body = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_INDEX,
        "manifests": manifests,
    });
    let mut r = json(StatusCode::OK, media::OCI_INDEX, body.to_string());
    if filter.is_some() {
        r.headers_mut().insert(
            "OCI-Filters-Applied",
            HeaderValue::from_static("artifactType"),
        );
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_segment_names_are_split_at_the_last_marker() {
        assert!(matches!(
            route("/v2/a/b/c/manifests/v1"),
            Some(Route::Manifest("a/b/c", "v1"))
        ));
        assert!(matches!(
            route("/v2/a/blobs/x/blobs/sha256:00"),
            Some(Route::Blob("a/blobs/x", "sha256:00"))
        ));
        assert!(matches!(
            route("/v2/team/app/tags/list"),
            Some(Route::Tags("team/app"))
        ));
        assert!(matches!(route("/v2/"), Some(Route::Base)));
        assert!(route("/v3/x").is_none());
    }

    #[test]
    fn ranges_are_resolved_or_refused() {
        let h = |s: &'static str| HeaderValue::from_static(s);
        assert_eq!(parse_range(None, 10), Ok(None));
        assert_eq!(parse_range(Some(&h("bytes=0-3")), 10), Ok(Some((0, 3))));
        assert_eq!(parse_range(Some(&h("bytes=5-")), 10), Ok(Some((5, 9))));
        assert_eq!(parse_range(Some(&h("bytes=-4")), 10), Ok(Some((6, 9))));
        assert_eq!(parse_range(Some(&h("bytes=8-100")), 10), Ok(Some((8, 9))));
        for bad in [
            "bytes=10-",
            "bytes=5-2",
            "bytes=x-1",
            "items=0-1",
            "bytes=0-1,3-4",
        ] {
            assert_eq!(parse_range(Some(&h(bad)), 10), Err(()), "{bad}");
        }
    }
}
