//! An air-gapped site served by removable media, as an operator runs it:
//! the real `ferry` binary against two ferryd nodes running in this process
//! (real RocksDB stores, real admin sockets) with no link between them.
//! `ferry send` a directory tree at the base, `ferry export` it to a file,
//! `ferry import` a tampered copy then the good one at the site, `ferry get`
//! every file back verified, `ferry export-receipts` there and `ferry
//! import` them at the base, which releases custody; a second export then
//! carries nothing; a volume dropped in the site's watched directory is
//! imported on its own. A Git repository crosses the same way: `ferry git
//! publish` at the base, exported and imported, applied and served over
//! smart HTTP at the site to the real `git`; once the receipts come back,
//! the next release's volume carries only the new objects.

mod support;

use support::{ferry, ok};

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ferry_git::fixture;
use ferryd::config::Config;
use ferryd::daemon::Node;
use rand::{RngCore, SeedableRng};
use serde_json::Value;

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// `ferryd init` in `root/name`, then a configuration of our own.
fn configure(root: &Path, name: &str, extra: &str) -> (PathBuf, String) {
    let dir = root.join(name);
    let (id, _) = ferryd::daemon::init(&dir, "leaf").unwrap();
    let text = format!(
        "[node]\nkey = \"node.key\"\n[store]\npath = \"store\"\n\
         [listen]\nadmin = \"ferryd.sock\"\n{extra}"
    );
    std::fs::write(dir.join("ferryd.toml"), text).unwrap();
    (dir, id.to_hex())
}

/// A runtime for the nodes: worker threads, so they run while the test
/// thread waits on the `ferry` binary.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Starts the node configured in `dir` on `rt`.
fn start(rt: &tokio::runtime::Runtime, dir: &Path) -> Node {
    rt.block_on(Node::start(Config::load(&dir.join("ferryd.toml")).unwrap()))
        .unwrap()
}

fn files(dir: &Path, seed: u64) -> Vec<(String, Vec<u8>)> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::new();
    for (name, len) in [
        ("manifests/app.yaml", 3_000),
        ("charts/big.tgz", 400_000),
        ("images/layer.bin", 250_000),
    ] {
        let mut bytes = vec![0; len];
        rng.fill_bytes(&mut bytes);
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &bytes).unwrap();
        out.push((name.to_string(), bytes));
    }
    out
}

#[test]
fn a_release_crosses_an_air_gap_on_a_file_and_receipts_release_custody() {
    let seed = 9;
    println!("seed {seed}");
    let rt = runtime();
    let root = tempfile::tempdir().unwrap();
    let watched = root.path().join("mnt");
    std::fs::create_dir_all(&watched).unwrap();
    let (site_dir, site_id) = configure(
        root.path(),
        "site",
        &format!("[media]\nwatch = \"{}\"\npoll_s = 1\n", watched.display()),
    );
    let (base_dir, _) = configure(
        root.path(),
        "base",
        &format!("[[peer]]\nname = \"site\"\nnode_id = \"{site_id}\"\n"),
    );
    let start = |dir: &Path| start(&rt, dir);
    let base = start(&base_dir);
    let site = start(&site_dir);
    let base_sock = base.config.admin.to_str().unwrap().to_string();
    let site_sock = site.config.admin.to_str().unwrap().to_string();

    let release = root.path().join("release");
    let tree = files(&release, seed);
    let sent = json(&ok(&ferry(&[
        "send",
        "--socket",
        &base_sock,
        "--json",
        release.to_str().unwrap(),
        "--to",
        "site",
    ])));
    let manifests: Vec<(String, String)> = sent["sent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["path"].as_str().unwrap().to_string(),
                s["manifest"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(manifests.len(), 3);

    // Export to a file.
    let volume = root.path().join("usb/release.ferry");
    std::fs::create_dir_all(volume.parent().unwrap()).unwrap();
    let export = ferry(&[
        "export",
        "--socket",
        &base_sock,
        "--to",
        "site",
        "--out",
        volume.to_str().unwrap(),
    ]);
    let text = ok(&export);
    assert!(text.contains("3 bundle(s)"), "{text}");
    assert!(text.contains("saved"), "{text}");
    let bytes = std::fs::read(&volume).unwrap();

    // A tampered copy: one record rejected, the valid rest kept.
    let tampered = root.path().join("usb/tampered.ferry");
    let mut bad = bytes.clone();
    let at = bad.len() - 300;
    bad[at] ^= 1;
    std::fs::write(&tampered, &bad).unwrap();
    let out = ferry(&[
        "import",
        "--socket",
        &site_sock,
        "--json",
        tampered.to_str().unwrap(),
    ]);
    assert!(!out.status.success(), "rejected records fail the command");
    let report = json(&String::from_utf8(out.stdout).unwrap());
    let problems = report["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{report}");
    assert_eq!(problems[0]["kind"], "chunk");
    assert!(problems[0]["reason"].as_str().unwrap().contains("BLAKE3"));
    assert_eq!(report["accepted"].as_array().unwrap().len(), 2, "{report}");
    assert_eq!(
        report["incomplete"].as_array().unwrap().len(),
        1,
        "{report}"
    );

    // The good volume completes it; a human reads the per-record report.
    let text = ok(&ferry(&[
        "import",
        "--socket",
        &site_sock,
        volume.to_str().unwrap(),
    ]));
    assert!(
        text.contains("1 taken into custody (1 delivered here), 2 already held"),
        "{text}"
    );
    for (name, manifest) in &manifests {
        let data = &tree.iter().find(|(n, _)| n == name).expect("a sent file").1;
        let out = root.path().join("out").join(name.replace('/', "_"));
        std::fs::create_dir_all(out.parent().unwrap()).unwrap();
        ok(&ferry(&[
            "get",
            "--socket",
            &site_sock,
            manifest,
            "--out",
            out.to_str().unwrap(),
        ]));
        assert!(
            &std::fs::read(&out).unwrap() == data,
            "{name} read back differs"
        );
    }

    // Split for small media (before the receipts come back, so everything
    // is exported again): several volumes, each importable alone, in any
    // order; all held already, so nothing changes.
    let split = json(&ok(&ferry(&[
        "export",
        "--socket",
        &base_sock,
        "--json",
        "--to",
        "site",
        "--full",
        "--max-size",
        "300K",
        "--out",
        root.path().join("usb/split.ferry").to_str().unwrap(),
    ])));
    let parts: Vec<String> = split["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect();
    assert!(parts.len() >= 3, "{split}");
    assert!(parts[0].ends_with(&format!("split.ferry.1-of-{}", parts.len())));
    for part in &parts {
        assert!(std::fs::metadata(part).unwrap().len() <= 300 * 1024);
    }
    for part in parts.iter().rev() {
        let report = json(&ok(&ferry(&[
            "import", "--socket", &site_sock, "--json", part,
        ])));
        assert!(
            report["problems"].as_array().unwrap().is_empty(),
            "{report}"
        );
        assert!(
            report["accepted"].as_array().unwrap().is_empty(),
            "{report}"
        );
    }

    // Receipts back to the base release custody.
    let receipts = root.path().join("usb/receipts.ferry");
    let text = ok(&ferry(&[
        "export-receipts",
        "--socket",
        &site_sock,
        "--out",
        receipts.to_str().unwrap(),
    ]));
    assert!(text.contains("custody of 3 bundle(s)"), "{text}");
    let report = json(&ok(&ferry(&[
        "import",
        "--socket",
        &base_sock,
        "--json",
        receipts.to_str().unwrap(),
    ])));
    assert_eq!(report["released"].as_array().unwrap().len(), 3, "{report}");
    let status = json(&ok(&ferry(&["bundles", "--socket", &base_sock, "--json"])));
    for b in status["bundles"].as_array().unwrap() {
        assert_eq!(b["pending_hops"].as_array().unwrap().len(), 0, "{b}");
    }
    let again = json(&ok(&ferry(&[
        "export",
        "--socket",
        &base_sock,
        "--json",
        "--to",
        "site",
        "--out",
        root.path().join("usb/empty.ferry").to_str().unwrap(),
    ])));
    assert_eq!(again["bundles"], 0, "{again}");

    // A bump (one file changed), exported straight into the site's watched
    // mount point: imported on its own, carrying only the changed chunks.
    let mut changed = tree[1].1.clone(); // charts/big.tgz
    changed[1000..1100].fill(7);
    let bump = root.path().join("bump");
    std::fs::create_dir_all(&bump).unwrap();
    std::fs::write(bump.join("big.tgz"), &changed).unwrap();
    let sent = json(&ok(&ferry(&[
        "send",
        "--socket",
        &base_sock,
        "--json",
        bump.to_str().unwrap(),
        "--to",
        "site",
    ])));
    let manifest = sent["sent"][0]["manifest"].as_str().unwrap().to_string();
    let done = json(&ok(&ferry(&[
        "export",
        "--socket",
        &base_sock,
        "--json",
        "--to",
        "site",
        "--out",
        watched.join("bump.ferry").to_str().unwrap(),
    ])));
    assert_eq!(done["bundles"], 1, "{done}");
    assert!(
        done["chunk_bytes"].as_u64().unwrap() < changed.len() as u64 / 2,
        "only changed chunks travel: {done}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = json(&ok(&ferry(&["bundles", "--socket", &site_sock, "--json"])));
        let delivered = status["delivered"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["manifest"] == manifest.as_str());
        if delivered {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the watched volume was not imported"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = root.path().join("out/bumped");
    ok(&ferry(&[
        "get",
        "--socket",
        &site_sock,
        &manifest,
        "--out",
        out.to_str().unwrap(),
    ]));
    assert!(
        std::fs::read(&out).unwrap() == changed,
        "bumped file differs"
    );

    rt.block_on(base.stop());
    rt.block_on(site.stop());
}

/// Runs the real `git` in `dir`.
/// A site with `[media] require_signed`: a volume whose bytes changed
/// after it was signed, one without its signature, and one signed by a node
/// that is not its peer are each refused whole, with the reason, and
/// nothing is taken into custody; the genuine signed volume is imported,
/// and the site's signed receipts release the base's custody.
#[test]
fn a_site_requiring_signed_media_refuses_tampered_unsigned_and_foreign_volumes() {
    let rt = runtime();
    let root = tempfile::tempdir().unwrap();
    let (site_dir, site_id) = configure(root.path(), "site", "");
    let (base_dir, base_id) = configure(
        root.path(),
        "base",
        &format!("[[peer]]\nname = \"site\"\nnode_id = \"{site_id}\"\n"),
    );
    let site_toml = site_dir.join("ferryd.toml");
    let mut text = std::fs::read_to_string(&site_toml).unwrap();
    text.push_str(&format!(
        "[media]\nrequire_signed = true\n[[peer]]\nname = \"base\"\nnode_id = \"{base_id}\"\n"
    ));
    std::fs::write(&site_toml, text).unwrap();
    let start = |dir: &Path| start(&rt, dir);
    let base = start(&base_dir);
    let site = start(&site_dir);
    let base_sock = base.config.admin.to_str().unwrap().to_string();
    let site_sock = site.config.admin.to_str().unwrap().to_string();

    let release = root.path().join("release");
    files(&release, 11);
    ok(&ferry(&[
        "send",
        "--socket",
        &base_sock,
        release.join("charts/big.tgz").to_str().unwrap(),
        "--to",
        "site",
    ]));
    let usb = root.path().join("usb");
    std::fs::create_dir_all(&usb).unwrap();
    let volume = usb.join("release.ferry");
    export_one(&base_sock, &volume);
    let signature = std::fs::read_to_string(usb.join("release.ferry.sig")).unwrap();
    assert!(
        signature.starts_with("ferry-volume-signature-v1 "),
        "{signature}"
    );
    let bytes = std::fs::read(&volume).unwrap();

    let refused = |name: &str, data: &[u8], sig: Option<&str>, reason: &str| {
        let path = usb.join(name);
        std::fs::write(&path, data).unwrap();
        if let Some(sig) = sig {
            std::fs::write(usb.join(format!("{name}.sig")), sig).unwrap();
        }
        let out = ferry(&["import", "--socket", &site_sock, path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name} was imported");
        assert!(stderr.contains(reason), "{name}: {stderr}");
        let held = json(&ok(&ferry(&["bundles", "--socket", &site_sock, "--json"])));
        assert_eq!(
            held["bundles"].as_array().unwrap().len(),
            0,
            "{name}: {held}"
        );
    };
    let mut tampered = bytes.clone();
    let at = tampered.len() - 300;
    tampered[at] ^= 1;
    refused("tampered.ferry", &tampered, Some(&signature), "tampered");
    refused("unsigned.ferry", &bytes, None, "unsigned");
    let stranger = ferry_link::identity::NodeKey::from_seed([9; 32]);
    let foreign = stranger
        .sign_volume(blake3::hash(&bytes).as_bytes(), bytes.len() as u64)
        .to_text();
    refused(
        "foreign.ferry",
        &bytes,
        Some(&foreign),
        "which is not a [[peer]] of this node",
    );

    let report = json(&ok(&ferry(&[
        "import",
        "--socket",
        &site_sock,
        "--json",
        volume.to_str().unwrap(),
    ])));
    assert_eq!(report["delivered"].as_array().unwrap().len(), 1, "{report}");

    // The site's receipts are signed too; the base checks them and releases.
    let receipts = usb.join("receipts.ferry");
    ok(&ferry(&[
        "export-receipts",
        "--socket",
        &site_sock,
        "--out",
        receipts.to_str().unwrap(),
    ]));
    assert!(usb.join("receipts.ferry.sig").is_file());
    let report = json(&ok(&ferry(&[
        "import",
        "--socket",
        &base_sock,
        "--json",
        receipts.to_str().unwrap(),
    ])));
    assert_eq!(report["released"].as_array().unwrap().len(), 1, "{report}");
    drop((base, site));
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A repository's refs (tags and branches), sorted "oid name" lines.
fn local_refs(repo: &Path) -> Vec<String> {
    let mut v: Vec<String> = git(repo, &["for-each-ref", "--format=%(objectname) %(refname)"])
        .lines()
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

fn expected(refs: &std::collections::BTreeMap<String, ferry_git::Oid>) -> Vec<String> {
    let mut v: Vec<String> = refs.iter().map(|(n, o)| format!("{o} {n}")).collect();
    v.sort();
    v
}

/// Waits until the site serves `want` at `url` (a delivered release is
/// applied in the background).
fn wait_for_served(dir: &Path, url: &str, want: &[String], what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new("git")
            .current_dir(dir)
            .args(["ls-remote", "--refs", url])
            .env("GIT_TERMINAL_PROMPT", "0")
            .output()
            .unwrap();
        let mut got: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.replace('\t', " "))
            .collect();
        got.sort();
        if out.status.success() && got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: ls-remote says {got:?} {}, want {want:?}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Exports everything the base holds for the site into `volume`; its size.
fn export_one(base_sock: &str, volume: &Path) -> u64 {
    let done = json(&ok(&ferry(&[
        "export",
        "--socket",
        base_sock,
        "--json",
        "--to",
        "site",
        "--out",
        volume.to_str().unwrap(),
    ])));
    assert_eq!(done["bundles"], 1, "{done}");
    std::fs::metadata(volume).unwrap().len()
}

/// Imports `volume` at the site: the Git release is delivered there.
fn import_delivered(site_sock: &str, volume: &Path, bundle: &str) {
    let report = json(&ok(&ferry(&[
        "import",
        "--socket",
        site_sock,
        "--json",
        volume.to_str().unwrap(),
    ])));
    assert!(
        report["problems"].as_array().unwrap().is_empty(),
        "{report}"
    );
    let delivered = report["delivered"].as_array().unwrap();
    assert!(
        delivered.iter().any(|d| d["bundle"] == bundle),
        "{bundle} not delivered: {report}"
    );
}

/// Carries the site's receipts back to the base, which releases custody
/// of `bundle`.
fn receipts_back(root: &Path, site_sock: &str, base_sock: &str, bundle: &str) {
    let receipts = root.join("usb/git-receipts.ferry");
    ok(&ferry(&[
        "export-receipts",
        "--socket",
        site_sock,
        "--out",
        receipts.to_str().unwrap(),
    ]));
    let report = json(&ok(&ferry(&[
        "import",
        "--socket",
        base_sock,
        "--json",
        receipts.to_str().unwrap(),
    ])));
    let released = report["released"].as_array().unwrap();
    assert!(
        released.iter().any(|b| b == bundle),
        "{bundle} not released: {report}"
    );
    let status = json(&ok(&ferry(&["bundles", "--socket", base_sock, "--json"])));
    for b in status["bundles"].as_array().unwrap() {
        assert_eq!(b["pending_hops"].as_array().unwrap().len(), 0, "{b}");
    }
}

/// Waits until the base's Git publisher counts release `sequence` as
/// carried on (it checks custody whenever a bundle leaves it).
fn wait_for_confirmed(base_dir: &Path, sequence: u64) {
    let path = base_dir.join("git/.publish.json");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let state: Value = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null);
        let confirmed = state
            .as_object()
            .into_iter()
            .flat_map(|m| m.values())
            .filter_map(|s| s["confirmed_sequence"].as_u64())
            .max()
            .unwrap_or(0);
        if confirmed >= sequence {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "release {sequence} never confirmed after the receipts: {state}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_git_repository_crosses_an_air_gap_and_the_next_release_is_thin() {
    let seed = 13;
    println!("fixture seed {seed}");
    let rt = runtime();
    let root = tempfile::tempdir().unwrap();
    let work = root.path();
    let (site_dir, site_id) = configure(
        work,
        "site",
        "[git]\nlisten = \"127.0.0.1:0\"\nroot = \"served\"\n",
    );
    let (base_dir, _) = configure(
        work,
        "base",
        &format!("[[peer]]\nname = \"site\"\nnode_id = \"{site_id}\"\n"),
    );
    let start = |dir: &Path| start(&rt, dir);
    let base = start(&base_dir);
    let site = start(&site_dir);
    let base_sock = base.config.admin.to_str().unwrap().to_string();
    let site_sock = site.config.admin.to_str().unwrap().to_string();
    let url = format!("http://{}/fleet.git", site.git_addr.expect("[git] listen"));

    let replay = fixture::generate(&work.join("upstream.git"), 80, seed).unwrap();
    let steps = &replay.steps;
    let (first, second) = (&steps[steps.len() - 6], steps.last().unwrap());
    assert_ne!(
        first.refs["refs/heads/main"], second.refs["refs/heads/main"],
        "main moves between the releases"
    );
    let upstream = replay.git.dir().to_str().unwrap().to_string();
    let publish = || {
        let answer = json(&ok(&ferry(&[
            "git", "publish", "--socket", &base_sock, "--json", &upstream, "--name", "fleet",
            "--to", "site",
        ])));
        let bundle = answer["bundle"]
            .as_str()
            .unwrap_or_else(|| panic!("{answer}"));
        (bundle.to_string(), answer["sequence"].as_u64().unwrap())
    };

    // The first release: the whole history so far, on one volume.
    fixture::set_refs(&replay.git, &first.refs).unwrap();
    let (bundle, _) = publish();
    let volume = work.join("usb/git-1.ferry");
    std::fs::create_dir_all(volume.parent().unwrap()).unwrap();
    let full = export_one(&base_sock, &volume);
    import_delivered(&site_sock, &volume, &bundle);
    wait_for_served(work, &url, &expected(&first.refs), "the first release");
    git(work, &["clone", "-q", "--bare", &url, "clone.git"]);
    let clone = work.join("clone.git");
    assert_eq!(local_refs(&clone), expected(&first.refs));
    assert_eq!(local_refs(replay.git.dir()), expected(&first.refs));
    git(&clone, &["fsck", "--strict"]);
    // Publishing right after the receipts are imported: the release they
    // released is confirmed, so the next pack leaves out what it holds.
    receipts_back(work, &site_sock, &base_sock, &bundle);

    // New commits upstream: the next volume carries only what is new.
    fixture::set_refs(&replay.git, &second.refs).unwrap();
    let (bundle, sequence) = publish();
    let volume = work.join("usb/git-2.ferry");
    let thin = export_one(&base_sock, &volume);
    println!("volumes: first {full} B, second {thin} B");
    assert!(
        thin < full / 4,
        "the second volume ({thin} B) is not thin against the first ({full} B)"
    );
    import_delivered(&site_sock, &volume, &bundle);
    wait_for_served(work, &url, &expected(&second.refs), "the second release");
    git(
        &clone,
        &[
            "fetch",
            "-q",
            "--prune",
            "--force",
            &url,
            "+refs/heads/*:refs/heads/*",
            "+refs/tags/*:refs/tags/*",
        ],
    );
    assert_eq!(local_refs(&clone), expected(&second.refs));
    git(&clone, &["fsck", "--strict"]);
    receipts_back(work, &site_sock, &base_sock, &bundle);
    wait_for_confirmed(&base_dir, sequence);

    rt.block_on(base.stop());
    rt.block_on(site.stop());
}
