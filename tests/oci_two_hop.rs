//! OCI images through a lossy two-hop chain, applied and served at the leaf,
//! pulled with skopeo.
//!
//! The base stages releases from an OCI layout built here from files
//! (`ferry_oci::fixture`): v1 (with a signature referring to it), then v2
//! and a multi-arch index. Engines run on ferry-sim's virtual clock with 3 %
//! frame loss on both hops; the leaf's side is the real code: the delivered
//! bundle is applied into an `ImageStore` and served by `ferry_oci::serve`
//! on a real socket, from which `skopeo copy` pulls (skopeo must be
//! installed; scripts/setup installs it).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use ferry_core::{
    BundleId, Endpoint, EngineConfig, Event, MemStore, NodeId, PayloadKind, Priority, Routes,
    Store, Submission,
};
use ferry_oci::{ImageStore, Layout, Limits, OciRelease, Stamp, fixture};
use ferry_sim::{Chain, LinkModel, Net, NodeIndex};

const REPO: &str = "team/app";

fn node(n: u8) -> NodeId {
    NodeId([n; 32])
}

fn chain(seed: u64, loss: f64) -> Chain {
    let mut model = LinkModel::new(2_000_000, Duration::from_millis(80), 1400);
    model.loss = ferry_sim::Loss::Bernoulli(loss);
    Chain::new(seed, model)
}

/// Stages `tags` of `layout` at the base and submits them to the leaf;
/// runs until the leaf has it; returns the bundle id.
fn publish(chain: &mut Chain, layout: &Path, tags: &[&str]) -> BundleId {
    let source = Layout::open(layout).unwrap();
    let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
    let plan = ferry_oci::plan(&source, REPO, &tags, Limits::default()).unwrap();
    let staged = ferry_oci::stage(
        chain.net.engine_mut(chain.base).store_mut(),
        &ferry_oci::ingest::Chunking::default(),
        &ferry_oci::Recipes::default(),
        &source,
        &plan,
    )
    .unwrap();
    let now = chain.net.now;
    let id = chain
        .net
        .engine_mut(chain.base)
        .submit(
            now,
            Submission {
                destination: Endpoint::Node(node(3)),
                lifetime: Duration::from_secs(24 * 3600),
                priority: Priority::Normal,
                kind: PayloadKind::Oci,
                manifest: staged.manifest,
                release: staged.release.encode(),
                signature: Vec::new(),
            },
        )
        .unwrap();
    let leaf = chain.leaf;
    let delivered = move |net: &Net| {
        net.events(leaf)
            .iter()
            .any(|(_, e)| matches!(e, Event::Delivered { bundle, .. } if *bundle == id))
    };
    let limit = chain.net.now + Duration::from_secs(6 * 3600);
    assert!(
        chain.net.run_while(limit, |net| !delivered(net)),
        "release {tags:?} never reached the leaf"
    );
    id
}

/// What the leaf's daemon does with a delivered OCI bundle.
fn apply(chain: &Chain, images: &ImageStore, id: BundleId) -> ferry_oci::Applied {
    let engine = chain.net.engine(chain.leaf);
    let record = engine.bundle(&id).expect("the leaf holds the bundle");
    assert_eq!(record.header.kind, PayloadKind::Oci);
    let release = OciRelease::decode(&record.header.release).unwrap();
    let manifest = engine
        .store()
        .get_manifest(record.header.manifest)
        .unwrap()
        .unwrap();
    let stamp = Stamp {
        created_ms: id.created_ms,
        sequence: id.sequence,
    };
    images
        .apply(engine.store(), &manifest, &release, stamp)
        .unwrap()
}

fn serve(images: Arc<ImageStore>) -> (SocketAddr, tokio::runtime::Runtime) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(ferry_oci::serve::serve(listener, images));
    (addr, runtime)
}

fn skopeo(args: &[&str]) {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("skopeo is installed (scripts/setup installs it)");
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The digest `tag` names in the OCI layout at `dir`.
fn tagged(dir: &Path, tag: &str) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .map(|m| m["digest"].as_str().unwrap().to_owned())
        .unwrap_or_else(|| panic!("{} has no tag {tag}", dir.display()))
}

/// One plain HTTP/1.1 request; returns (status, headers, body).
fn http(addr: SocketAddr, method: &str, path: &str, headers: &[&str]) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for h in headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(response[..split].to_vec()).unwrap();
    let status = head[9..12].parse().unwrap();
    (
        status,
        head.to_ascii_lowercase(),
        response[split + 4..].to_vec(),
    )
}

#[test]
fn images_cross_a_lossy_chain_and_skopeo_pulls_them_with_their_digests() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("upstream");
    let images = fixture::test_layout(&layout, 2048, 512).unwrap();
    let store = Arc::new(ImageStore::open(&dir.path().join("leaf")).unwrap());
    let mut chain = chain(11, 0.03);

    let first = publish(&mut chain, &layout, &["v1"]);
    let applied = apply(&chain, &store, first);
    assert_eq!(applied.tags_moved, ["v1"]);
    let second = publish(&mut chain, &layout, &["v2", "multi"]);
    let applied = apply(&chain, &store, second);
    assert_eq!(applied.tags_moved, ["multi", "v2"]);
    assert_eq!(
        applied.blobs_held, 1,
        "the shared base layer is held already"
    );

    let (addr, _runtime) = serve(store.clone());
    for (tag, want) in [("v1", &images.v1), ("v2", &images.v2)] {
        let out = dir.path().join(format!("pulled-{tag}"));
        skopeo(&[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{addr}/{REPO}:{tag}"),
            &format!("oci:{}:{tag}", out.display()),
        ]);
        assert_eq!(tagged(&out, tag), want.digest.to_string(), "{tag}");
        // Every blob skopeo fetched is upstream's, byte for byte.
        for entry in std::fs::read_dir(out.join("blobs/sha256")).unwrap() {
            let entry = entry.unwrap();
            let upstream = layout.join("blobs/sha256").join(entry.file_name());
            assert_eq!(
                std::fs::read(entry.path()).unwrap(),
                std::fs::read(upstream).unwrap()
            );
        }
    }
    let out = dir.path().join("pulled-multi");
    skopeo(&[
        "copy",
        "--all",
        "--src-tls-verify=false",
        &format!("docker://{addr}/{REPO}:multi"),
        &format!("oci:{}:multi", out.display()),
    ]);
    assert_eq!(tagged(&out, "multi"), images.multi.digest.to_string());

    // The signature came along with v1 and is listed by the referrers API.
    let (status, _, body) = http(
        addr,
        "GET",
        &format!("/v2/{REPO}/referrers/{}", images.v1.digest),
        &[],
    );
    assert_eq!(status, 200);
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        body["manifests"][0]["digest"],
        images.signature.digest.to_string()
    );
    assert_eq!(
        body["manifests"][0]["artifactType"],
        "application/vnd.example.signature.v1"
    );

    // Export to a layout gives the same digests.
    let exported = dir.path().join("exported");
    store
        .export(REPO, &["v2".into(), "v1".into()], &exported)
        .unwrap();
    assert_eq!(tagged(&exported, "v2"), images.v2.digest.to_string());
    // v1's signature goes along.
    assert!(
        exported
            .join("blobs/sha256")
            .join(images.signature.digest.hex())
            .exists()
    );
    let exported_index = std::fs::read_to_string(exported.join("index.json")).unwrap();
    assert!(exported_index.contains(&images.signature.digest.to_string()));
    assert!(
        chain.net.stats(chain.last_hop).lost[0] > 0,
        "the chain did lose frames"
    );
}

#[test]
fn the_leaf_api_answers_with_the_specs_errors_headers_and_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("upstream");
    let images = fixture::test_layout(&layout, 256, 64).unwrap();
    let store = Arc::new(ImageStore::open(&dir.path().join("leaf")).unwrap());
    let mut chain = chain(5, 0.0);
    let id = publish(&mut chain, &layout, &["v1", "v2"]);
    apply(&chain, &store, id);
    let (addr, _runtime) = serve(store);
    let code = |body: &[u8]| -> String {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        v["errors"][0]["code"].as_str().unwrap().to_owned()
    };

    let (status, head, _) = http(addr, "GET", "/v2/", &[]);
    assert_eq!(status, 200);
    assert!(head.contains("docker-distribution-api-version: registry/2.0"));

    let v1 = images.v1.digest.to_string();
    let manifest = std::fs::read(layout.join("blobs/sha256").join(images.v1.digest.hex())).unwrap();
    for reference in ["v1", v1.as_str()] {
        let (status, head, body) = http(
            addr,
            "GET",
            &format!("/v2/{REPO}/manifests/{reference}?ns=registry.example"),
            &[],
        );
        assert_eq!(status, 200, "{reference}");
        assert_eq!(body, manifest);
        assert!(
            head.contains("content-type: application/vnd.oci.image.manifest.v1+json"),
            "{head}"
        );
        assert!(head.contains(&format!("docker-content-digest: {v1}")));
        assert!(head.contains(&format!("content-length: {}", manifest.len())));
        let (status, head, body) = http(
            addr,
            "HEAD",
            &format!("/v2/{REPO}/manifests/{reference}"),
            &[],
        );
        assert_eq!((status, body.len()), (200, 0));
        assert!(head.contains(&format!("content-length: {}", manifest.len())));
    }

    let parsed: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let layer = parsed["layers"][0]["digest"].as_str().unwrap();
    let layer_bytes = std::fs::read(layout.join("blobs/sha256").join(&layer[7..])).unwrap();
    let size = layer_bytes.len();
    let (status, head, body) = http(
        addr,
        "GET",
        &format!("/v2/{REPO}/blobs/{layer}"),
        &["Range: bytes=10-19"],
    );
    assert_eq!(status, 206);
    assert_eq!(body, layer_bytes[10..20]);
    assert!(
        head.contains(&format!("content-range: bytes 10-19/{size}")),
        "{head}"
    );
    let (status, _, body) = http(addr, "GET", &format!("/v2/{REPO}/blobs/{layer}"), &[]);
    assert_eq!((status, body), (200, layer_bytes));
    let (status, head, _) = http(
        addr,
        "GET",
        &format!("/v2/{REPO}/blobs/{layer}"),
        &[&format!("Range: bytes={size}-")],
    );
    assert_eq!(status, 416);
    assert!(
        head.contains(&format!("content-range: bytes */{size}")),
        "{head}"
    );

    let (status, _, body) = http(addr, "GET", "/v2/nobody/here/manifests/v1", &[]);
    assert_eq!((status, code(&body).as_str()), (404, "NAME_UNKNOWN"));
    let (status, _, body) = http(addr, "GET", &format!("/v2/{REPO}/manifests/v9"), &[]);
    assert_eq!((status, code(&body).as_str()), (404, "MANIFEST_UNKNOWN"));
    let unknown = ferry_oci::Digest::of(b"not here");
    let (status, _, body) = http(addr, "GET", &format!("/v2/{REPO}/blobs/{unknown}"), &[]);
    assert_eq!((status, code(&body).as_str()), (404, "BLOB_UNKNOWN"));
    let (status, _, body) = http(
        addr,
        "GET",
        &format!("/v2/{REPO}/blobs/sha256:..%2F..%2Fetc"),
        &[],
    );
    assert_eq!((status, code(&body).as_str()), (400, "DIGEST_INVALID"));
    let (status, _, body) = http(addr, "GET", "/v2/../../etc/manifests/v1", &[]);
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
    let (status, _, body) = http(
        addr,
        "PUT",
        &format!("/v2/{REPO}/manifests/v1"),
        &["Content-Length: 0"],
    );
    assert_eq!((status, code(&body).as_str()), (405, "UNSUPPORTED"));
    let (status, _, body) = http(addr, "DELETE", &format!("/v2/{REPO}/blobs/{layer}"), &[]);
    assert_eq!((status, code(&body).as_str()), (405, "UNSUPPORTED"));

    let (status, _, body) = http(addr, "GET", &format!("/v2/{REPO}/tags/list"), &[]);
    assert_eq!(status, 200);
    let tags: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        tags,
        serde_json::json!({"name": REPO, "tags": ["v1", "v2"]})
    );
    let (_, head, body) = http(addr, "GET", &format!("/v2/{REPO}/tags/list?n=1"), &[]);
    let tags: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(tags["tags"], serde_json::json!(["v1"]));
    assert!(
        head.contains(&format!(
            "link: </v2/{REPO}/tags/list?n=1&last=v1>; rel=\"next\""
        )),
        "{head}"
    );
    let (_, head, body) = http(
        addr,
        "GET",
        &format!("/v2/{REPO}/tags/list?n=1&last=v1"),
        &[],
    );
    let tags: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(tags["tags"], serde_json::json!(["v2"]));
    assert!(!head.contains("link:"), "{head}");

    // Referrers, filtered by artifactType.
    let referrers = format!("/v2/{REPO}/referrers/{v1}");
    let (_, _, body) = http(
        addr,
        "GET",
        &format!("{referrers}?artifactType=application/vnd.example.signature.v1"),
        &[],
    );
    let index: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        index["manifests"][0]["digest"],
        images.signature.digest.to_string()
    );
    let (_, head, body) = http(
        addr,
        "GET",
        &format!("{referrers}?artifactType=application/x-other"),
        &[],
    );
    let index: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(index["manifests"], serde_json::json!([]));
    assert!(head.contains("oci-filters-applied: artifacttype"), "{head}");
}

/// Stages `tags` of `layout` at `base` and submits them to `destination`.
fn submit(
    net: &mut Net,
    base: NodeIndex,
    layout: &Path,
    tags: &[&str],
    destination: Endpoint,
) -> (BundleId, u64) {
    let source = Layout::open(layout).unwrap();
    let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
    let plan = ferry_oci::plan(&source, REPO, &tags, Limits::default()).unwrap();
    let staged = ferry_oci::stage(
        net.engine_mut(base).store_mut(),
        &ferry_oci::ingest::Chunking::default(),
        &ferry_oci::Recipes::default(),
        &source,
        &plan,
    )
    .unwrap();
    let now = net.now;
    let id = net
        .engine_mut(base)
        .submit(
            now,
            Submission {
                destination,
                lifetime: Duration::from_secs(24 * 3600),
                priority: Priority::Normal,
                kind: PayloadKind::Oci,
                manifest: staged.manifest,
                release: staged.release.encode(),
                signature: Vec::new(),
            },
        )
        .unwrap();
    (id, staged.bytes)
}

fn delivered_at(net: &Net, leaf: NodeIndex, id: BundleId) -> bool {
    net.events(leaf)
        .iter()
        .any(|(_, e)| matches!(e, Event::Delivered { bundle, .. } if *bundle == id))
}

#[test]
fn a_release_for_a_group_crosses_each_link_once_and_every_leaf_serves_it() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("upstream");
    let images = fixture::test_layout(&layout, 1024, 256).unwrap();
    let seed = 21;
    let mut net = Net::new(seed);
    let group: std::collections::BTreeSet<NodeId> = [node(3), node(4)].into();
    let groups: std::collections::BTreeMap<String, _> = [("leaves".to_string(), group)].into();
    let mut base = EngineConfig::new(node(1), seed);
    base.routes = Routes {
        next_hop: [(node(3), node(2)), (node(4), node(2))].into(),
        groups: groups.clone(),
        ..Routes::default()
    };
    let mut relay = EngineConfig::new(node(2), seed + 1);
    relay.routes = Routes {
        next_hop: [(node(3), node(3)), (node(4), node(4))].into(),
        groups,
        ..Routes::default()
    };
    let b = net.add_node(base, MemStore::new());
    let r = net.add_node(relay, MemStore::new());
    let leaves: Vec<NodeIndex> = [3u8, 4]
        .iter()
        .map(|&n| {
            let mut config = EngineConfig::new(node(n), seed + u64::from(n));
            config.member_of.insert("leaves".into());
            net.add_node(config, MemStore::new())
        })
        .collect();
    let mut model = LinkModel::new(2_000_000, Duration::from_millis(80), 1400);
    model.loss = ferry_sim::Loss::Bernoulli(0.02);
    let trunk = net.add_wire(b, r, model.clone());
    net.set_up(trunk, true);
    for &leaf in &leaves {
        let w = net.add_wire(r, leaf, model.clone());
        net.set_up(w, true);
    }
    let (id, bytes) = submit(
        &mut net,
        b,
        &layout,
        &["v1"],
        Endpoint::Group("leaves".into()),
    );
    let limit = net.now + Duration::from_secs(6 * 3600);
    assert!(net.run_while(limit, |net| {
        !leaves.iter().all(|&l| delivered_at(net, l, id))
    }));
    let trunk_bytes = net.stats(trunk).bytes[0];
    assert!(
        (trunk_bytes as f64) < bytes as f64 * 1.1,
        "the release crossed the trunk once: {trunk_bytes} B for {bytes} B"
    );
    for &leaf in &leaves {
        let engine = net.engine(leaf);
        let record = engine.bundle(&id).unwrap();
        let release = OciRelease::decode(&record.header.release).unwrap();
        let manifest = engine
            .store()
            .get_manifest(record.header.manifest)
            .unwrap()
            .unwrap();
        let store = ImageStore::open(&dir.path().join(format!("leaf{leaf}"))).unwrap();
        store
            .apply(engine.store(), &manifest, &release, Stamp::default())
            .unwrap();
        let repo = store.repository(REPO).unwrap().unwrap();
        assert_eq!(repo.tags["v1"].target.digest, images.v1.digest);
    }
}

#[test]
fn an_interrupted_release_resumes_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("upstream");
    fixture::test_layout(&layout, 2048, 256).unwrap();
    let mut chain = chain(31, 0.0);
    let (id, bytes) = submit(
        &mut chain.net,
        chain.base,
        &layout,
        &["v1"],
        Endpoint::Node(node(3)),
    );
    let last_hop = chain.last_hop;
    let limit = chain.net.now + Duration::from_secs(3600);
    // Cut the leaf's link once half the payload crossed it, for ten minutes.
    chain
        .net
        .run_while(limit, |net| net.stats(last_hop).bytes[0] < bytes / 2);
    chain.net.set_up(last_hop, false);
    let later = chain.net.now + Duration::from_secs(600);
    chain.net.run_until(later);
    chain.net.set_up(last_hop, true);
    let leaf = chain.leaf;
    let limit = chain.net.now + Duration::from_secs(6 * 3600);
    assert!(
        chain
            .net
            .run_while(limit, |net| !delivered_at(net, leaf, id))
    );
    let sent = chain.net.stats(last_hop).bytes[0];
    assert!(
        (sent as f64) < bytes as f64 * 1.05,
        "the second contact sent only what was missing: {sent} B in all for {bytes} B"
    );
}

#[test]
fn blobs_the_leaf_holds_cross_as_manifest_entries_only() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("upstream");
    fixture::test_layout(&layout, 2048, 512).unwrap();
    let mut chain = chain(41, 0.0);
    let first = publish(&mut chain, &layout, &["v1"]);
    let before = chain.net.stats(chain.last_hop).bytes[0];
    // The same image under another tag: every blob is held already.
    let mut writer = ferry_oci::LayoutWriter::create(&layout).unwrap();
    let v1 = Layout::open(&layout).unwrap();
    let v1 = ferry_oci::Source::resolve(&v1, "v1").unwrap();
    writer.tag("stable", &v1);
    writer.finish().unwrap();
    let (id, bytes) = submit(
        &mut chain.net,
        chain.base,
        &layout,
        &["stable"],
        Endpoint::Node(node(3)),
    );
    let leaf = chain.leaf;
    let limit = chain.net.now + Duration::from_secs(3600);
    assert!(
        chain
            .net
            .run_while(limit, |net| !delivered_at(net, leaf, id))
    );
    let retag = chain.net.stats(chain.last_hop).bytes[0] - before;
    assert!(
        (retag as f64) < bytes as f64 * 0.02,
        "a retag of a held image cost {retag} B of {bytes} B"
    );
    assert_ne!(first, id);
}
