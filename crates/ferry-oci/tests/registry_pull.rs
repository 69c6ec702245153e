//! Ingest from a real upstream registry: Debian's `docker-registry`
//! (distribution 2.8) on loopback with token authentication. The token
//! service is written here: it grants what is asked and signs ES256 JWTs
//! with a key whose self-signed certificate is the registry's
//! `rootcertbundle` (sent as `x5c`). skopeo pushes the test images into the
//! registry (through the same token flow); ferry pulls them back and must
//! find upstream's digests, blob for blob.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ferry_core::{MemStore, Store};
use ferry_oci::{ImageStore, Limits, Registry, RegistryRef, Stamp, fixture, media};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};

const SERVICE: &str = "ferry-test-registry";
const ISSUER: &str = "ferry-test-issuer";

fn b64(bytes: &[u8], url: bool) -> String {
    let table: &[u8; 64] = if url {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    } else {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    };
    let mut out = String::new();
    for group in bytes.chunks(3) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= group.len() {
                out.push(table[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else if !url {
                out.push('=');
            }
        }
    }
    out
}

struct TokenService {
    key: EcdsaKeyPair,
    cert_der: Vec<u8>,
}

impl TokenService {
    /// A JWT granting every action of `scope` (`repository:NAME:ACTIONS`).
    fn token(&self, scope: Option<&str>) -> String {
        let access: Vec<serde_json::Value> = scope
            .into_iter()
            .flat_map(|s| s.split(' '))
            .filter_map(|s| {
                let mut parts = s.splitn(3, ':');
                let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
                Some(serde_json::json!({
                    "type": kind, "name": name,
                    "actions": actions.split(',').collect::<Vec<_>>(),
                }))
            })
            .collect();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let header =
            serde_json::json!({"typ": "JWT", "alg": "ES256", "x5c": [b64(&self.cert_der, false)]});
        let claims = serde_json::json!({
            "iss": ISSUER, "sub": "", "aud": SERVICE,
            "exp": now + 3600, "nbf": now - 60, "iat": now - 60,
            "jti": format!("{now}-{}", access.len()), "access": access,
        });
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes(), true),
            b64(claims.to_string().as_bytes(), true)
        );
        let signature = self
            .key
            .sign(&SystemRandom::new(), input.as_bytes())
            .unwrap();
        format!("{input}.{}", b64(signature.as_ref(), true))
    }
}

/// Starts the token service; returns its address and the root certificate PEM.
fn token_service(runtime: &tokio::runtime::Runtime) -> (SocketAddr, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["ferry-token-service".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let service = Arc::new(TokenService {
        key: EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &key.serialize_der(),
            &SystemRandom::new(),
        )
        .unwrap(),
        cert_der: cert.der().to_vec(),
    });
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
        let service = service.clone();
        async move {
            let query = request.uri().query().unwrap_or("").to_owned();
            let scope = query
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| *k == "scope")
                .map(|(_, v)| {
                    v.replace("%3A", ":")
                        .replace("%2F", "/")
                        .replace("%2C", ",")
                        .replace('+', " ")
                });
            let token = service.token(scope.as_deref());
            let body =
                serde_json::json!({"token": token, "access_token": token, "expires_in": 3600});
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
        }
    });
    runtime.spawn(async move { axum::serve(listener, app).await });
    let body = b64(cert.der(), false);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|l| std::str::from_utf8(l).unwrap())
        .collect();
    let pem = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    );
    (addr, pem)
}

struct Upstream(Child);

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Debian's docker-registry on a free loopback port, token auth via `realm`.
fn docker_registry(dir: &Path, realm: SocketAddr, root_pem: &str) -> (Upstream, SocketAddr) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    std::fs::write(dir.join("root.pem"), root_pem).unwrap();
    let config = format!(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {storage}\n\
         http:\n  addr: {addr}\nauth:\n  token:\n    realm: http://{realm}/token\n    service: {SERVICE}\n    \
         issuer: {ISSUER}\n    rootcertbundle: {root}\n",
        storage = dir.join("storage").display(),
        root = dir.join("root.pem").display(),
    );
    std::fs::write(dir.join("config.yml"), config).unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(dir.join("config.yml"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("registry.log")).unwrap())
        .spawn()
        .expect("docker-registry is installed (scripts/setup installs it)");
    let upstream = Upstream(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "docker-registry did not start: {}",
            std::fs::read_to_string(dir.join("registry.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (upstream, addr)
}

fn skopeo(args: &[&str]) {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("skopeo is installed");
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn images_pulled_from_a_token_authenticated_registry_keep_their_digests() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("upstream");
    let images = fixture::test_layout(&layout, 256, 64).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (realm, root_pem) = token_service(&runtime);
    let (_upstream, addr) = docker_registry(dir.path(), realm, &root_pem);
    // The signature, as OCI 1.1 clients store it on a registry without the
    // referrers API: an index tagged sha256-<subject hex>.
    let fallback = format!("sha256-{}", images.v1.digest.hex());
    let mut writer = ferry_oci::LayoutWriter::create(&layout).unwrap();
    let mut signature = images.signature.clone();
    signature.artifact_type = Some("application/vnd.example.signature.v1".into());
    let index = serde_json::json!({
        "schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": [signature],
    });
    let index = writer
        .put(media::OCI_INDEX, index.to_string().as_bytes())
        .unwrap();
    writer.tag(&fallback, &index);
    writer.finish().unwrap();
    for (tag, all) in [("v1", false), ("multi", true), (fallback.as_str(), true)] {
        let mut args = vec!["copy", "--dest-tls-verify=false"];
        if all {
            args.push("--all");
        }
        let src = format!("oci:{}:{tag}", layout.display());
        let dest = format!("docker://{addr}/team/app:{tag}");
        args.extend([src.as_str(), dest.as_str()]);
        skopeo(&args);
    }

    // The registry does demand a token.
    let anonymous = ureq::get(&format!("http://{addr}/v2/team/app/tags/list"))
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let challenge = anonymous.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("Bearer realm="), "{challenge}");

    let at = RegistryRef::parse(&format!("docker+http://{addr}/team/app")).unwrap();
    let registry = Registry::new(at, None);
    let mut tags = ferry_oci::Source::tags(&registry).unwrap();
    tags.sort();
    assert_eq!(tags, ["multi", fallback.as_str(), "v1"]);
    let tags = vec!["v1".to_string(), "multi".to_string()];
    let plan = ferry_oci::plan(&registry, "team/app", &tags, Limits::default()).unwrap();
    // v1's signature came along through the fallback tag.
    assert!(
        plan.blobs
            .iter()
            .any(|b| b.digest == images.signature.digest)
    );
    assert_eq!(plan.tags["v1"].digest, images.v1.digest);
    assert_eq!(plan.tags["multi"].digest, images.multi.digest);
    let mut store = MemStore::new();
    let staged = ferry_oci::stage(
        &mut store,
        &ferry_oci::Chunking::default(),
        &ferry_oci::Recipes::default(),
        &registry,
        &plan,
    )
    .unwrap();
    for blob in &staged.release.blobs {
        assert!(
            layout.join("blobs/sha256").join(blob.digest.hex()).exists(),
            "{}",
            blob.digest
        );
    }

    // Applied as a leaf would, the blobs are upstream's bytes.
    let leaf = ImageStore::open(&dir.path().join("leaf")).unwrap();
    let manifest = store.get_manifest(staged.manifest).unwrap().unwrap();
    leaf.apply(&store, &manifest, &staged.release, Stamp::default())
        .unwrap();
    for blob in &staged.release.blobs {
        assert_eq!(
            std::fs::read(leaf.blob_path(&blob.digest)).unwrap(),
            std::fs::read(layout.join("blobs/sha256").join(blob.digest.hex())).unwrap()
        );
    }

    // An unknown tag is a clear error.
    let err =
        ferry_oci::plan(&registry, "team/app", &["v9".into()], Limits::default()).unwrap_err();
    assert!(err.to_string().contains("no tag \"v9\""), "{err}");
}
