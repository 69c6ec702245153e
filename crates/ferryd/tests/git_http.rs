//! Two real ferryd processes: the base publishes a generated repository to
//! the leaf through the admin API, the leaf applies it and serves it over
//! smart HTTP, and real clients clone it — git over protocol v2 and v0, full
//! and `--depth 1`, and dulwich (a v1 client like Flux's go-git) shallow.
//! A second release travels as a thin pack and a fetch sees it; pushes and
//! paths outside the served repositories are refused. A release whose
//! bundle expires on its way (at the base, or at a relay: a third process)
//! is given up, and the leaf still catches up.

mod support;

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ferry_git::{Git, fixture};
use ferryd::admin::Request;
use support::{base_and_leaf, configure_chain, free_port, init, runtime};

fn git(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .unwrap()
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = git(dir, args);
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `git ls-remote` of the served repository, as a sorted "oid ref" list.
fn remote_refs(dir: &Path, url: &str) -> Option<Vec<String>> {
    let out = git(dir, &["ls-remote", "--refs", url]);
    out.status.success().then(|| {
        let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.replace('\t', " "))
            .collect();
        v.sort();
        v
    })
}

fn expected(refs: &std::collections::BTreeMap<String, ferry_git::Oid>) -> Vec<String> {
    let mut v: Vec<String> = refs.iter().map(|(n, o)| format!("{o} {n}")).collect();
    v.sort();
    v
}

fn wait_for_refs(dir: &Path, url: &str, want: &[String], what: &str, logs: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while remote_refs(dir, url).as_deref() != Some(want) {
        if Instant::now() > deadline {
            let out = git(dir, &["ls-remote", "--refs", url]);
            panic!(
                "timed out waiting for {what}: ls-remote says {} {} want {want:?}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                logs()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Publishes `repo`'s refs as `fleet` to the peer named `leaf`, once the
/// base's admin API answers; returns the answer.
fn publish(
    base: &mut support::Node,
    rt: &tokio::runtime::Runtime,
    repo: &Path,
    lifetime_s: Option<u64>,
) -> serde_json::Value {
    publish_to(base, rt, repo, "leaf", lifetime_s, false)
}

/// [`publish`] to `to` (a peer name or a node id); `whole`: a whole release.
fn publish_to(
    base: &mut support::Node,
    rt: &tokio::runtime::Runtime,
    repo: &Path,
    to: &str,
    lifetime_s: Option<u64>,
    whole: bool,
) -> serde_json::Value {
    base.wait_for(rt, "the admin API", Duration::from_secs(60), |_| true);
    base.ask(
        rt,
        &Request::GitPublish {
            repo: repo.to_owned(),
            name: Some("fleet".into()),
            refs: vec![],
            to: to.into(),
            lifetime_s,
            whole,
        },
    )
    .unwrap_or_else(|e| panic!("publish failed: {e}{}", base.logs()))
}

/// The status line of a raw HTTP request.
fn http_status(port: u16, method: &str, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.lines().next().unwrap_or("").to_owned()
}

#[test]
fn a_published_repository_is_cloned_from_the_leaf_over_http() {
    let root = tempfile::tempdir().unwrap();
    let work = root.path();
    let http = free_port();
    let (mut base, leaf) = base_and_leaf(
        work,
        "",
        &format!("[git]\nlisten = \"127.0.0.1:{http}\"\nroot = \"served\"\n"),
    );
    let rt = runtime();

    let seed = 11;
    eprintln!("fixture seed {seed}");
    let replay = fixture::generate(&work.join("upstream.git"), 120, seed).unwrap();
    let middle = &replay.steps[replay.steps.len() / 2];
    let last = replay.steps.last().unwrap();
    fixture::set_refs(&replay.git, &middle.refs).unwrap();
    let publish = |base: &mut support::Node| publish(base, &rt, replay.git.dir(), None);
    let first = publish(&mut base);
    assert!(first["bundle"].is_string(), "{first}");

    let url = format!("http://127.0.0.1:{http}/fleet.git");
    wait_for_refs(
        work,
        &url,
        &expected(&middle.refs),
        "the first release",
        || leaf.logs(),
    );

    // Full clone, protocol v2 (the default).
    ok(work, &["clone", "-q", &url, "full"]);
    let main = middle.refs["refs/heads/main"].to_hex();
    assert_eq!(ok(&work.join("full"), &["rev-parse", "HEAD"]), main);
    ok(&work.join("full"), &["fsck", "--strict"]);
    // Shallow clones, v2 and v0.
    ok(work, &["clone", "-q", "--depth", "1", &url, "shallow"]);
    assert_eq!(
        ok(&work.join("shallow"), &["rev-list", "--count", "HEAD"]),
        "1"
    );
    ok(
        work,
        &[
            "-c",
            "protocol.version=0",
            "clone",
            "-q",
            "--depth",
            "1",
            &url,
            "shallow-v0",
        ],
    );
    assert_eq!(ok(&work.join("shallow-v0"), &["rev-parse", "HEAD"]), main);
    // A v1 client like go-git: dulwich, shallow.
    let dulwich = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import sys; from dulwich import porcelain; porcelain.clone(sys.argv[1], sys.argv[2], depth=1, checkout=True)",
            &url,
        ])
        .arg(work.join("dulwich"))
        .output()
        .expect("python3 (scripts/setup installs python3-dulwich)");
    assert!(
        dulwich.status.success(),
        "dulwich clone: {}",
        String::from_utf8_lossy(&dulwich.stderr)
    );
    assert_eq!(ok(&work.join("dulwich"), &["rev-parse", "HEAD"]), main);
    assert!(work.join("dulwich/apps/api/deployment.yaml").exists());

    // The rest of the history (force-push included) as a thin pack: once
    // the leaf took custody of the first release, the base notes it as
    // carried, and the next release leaves out what it holds.
    base.wait_for_log("the first release carried", &["git release carried on"]);
    fixture::set_refs(&replay.git, &last.refs).unwrap();
    let second = publish(&mut base);
    let objects = second["objects"].as_u64().unwrap();
    let whole = ok(replay.git.dir(), &["rev-list", "--objects", "--all"])
        .lines()
        .count() as u64;
    assert!(
        objects > 0 && objects < whole,
        "{second}: {whole} objects in all"
    );
    wait_for_refs(
        work,
        &url,
        &expected(&last.refs),
        "the second release",
        || leaf.logs(),
    );
    ok(
        &work.join("full"),
        &[
            "fetch",
            "-q",
            "--prune",
            "--force",
            "origin",
            "+refs/heads/*:refs/remotes/origin/*",
        ],
    );
    assert_eq!(
        ok(&work.join("full"), &["rev-parse", "origin/main"]),
        last.refs["refs/heads/main"].to_hex()
    );
    let served = Git::new(work.join("leaf/served/fleet.git"));
    served
        .run(["fsck", "--strict", "--no-dangling"], b"")
        .unwrap();
    // Nothing changed: nothing sent.
    let third = publish(&mut base);
    assert!(third["bundle"].is_null(), "{third}");

    // Read-only, and nothing outside the served repositories.
    let push = git(
        &work.join("full"),
        &["push", "origin", "HEAD:refs/heads/evil"],
    );
    assert!(!push.status.success());
    assert!(
        String::from_utf8_lossy(&push.stderr).contains("403"),
        "{}",
        String::from_utf8_lossy(&push.stderr)
    );
    for path in [
        "/fleet.git/info/refs?service=git-receive-pack",
        "/fleet.git/git-receive-pack",
    ] {
        let status = http_status(http, if path.contains('?') { "GET" } else { "POST" }, path);
        assert!(status.contains(" 403 "), "{path}: {status}");
    }
    for path in [
        "/../leaf/info/refs?service=git-upload-pack",
        "/%2e%2e/upstream.git/info/refs?service=git-upload-pack",
        "/.pending/info/refs?service=git-upload-pack",
        "/nothing.git/info/refs?service=git-upload-pack",
        "//etc/info/refs?service=git-upload-pack",
        "/fleet.git/HEAD",
    ] {
        let status = http_status(http, "GET", path);
        assert!(
            status.contains(" 404 ") || status.contains(" 403 ") || status.contains(" 400 "),
            "{path}: {status}"
        );
    }
}

#[test]
fn a_watched_repository_is_published_whenever_its_refs_change() {
    let root = tempfile::tempdir().unwrap();
    let work = root.path();
    let seed = 12;
    eprintln!("fixture seed {seed}");
    let replay = fixture::generate(&work.join("upstream.git"), 30, seed).unwrap();
    fixture::set_refs(&replay.git, &replay.steps[10].refs).unwrap();
    let http = free_port();
    let (base, leaf) = base_and_leaf(
        work,
        &format!(
            "[[git.watch]]\nname = \"fleet\"\npath = \"{}\"\nrefs = [\"main\", \"refs/tags/*\"]\nto = \"leaf\"\ninterval = \"200ms\"\n",
            replay.git.dir().display()
        ),
        &format!("[git]\nlisten = \"127.0.0.1:{http}\"\n"),
    );
    let url = format!("http://127.0.0.1:{http}/fleet.git");
    let published = |step: &fixture::Step| {
        let mut refs = step.refs.clone();
        refs.retain(|n, _| n == "refs/heads/main" || n.starts_with("refs/tags/"));
        expected(&refs)
    };
    wait_for_refs(
        work,
        &url,
        &published(&replay.steps[10]),
        "the watched repository",
        || format!("{}{}", base.logs(), leaf.logs()),
    );
    let last = replay.steps.last().unwrap();
    fixture::set_refs(&replay.git, &last.refs).unwrap();
    wait_for_refs(
        work,
        &url,
        &published(last),
        "the change to be published",
        || format!("{}{}", base.logs(), leaf.logs()),
    );
    // A tag on a commit the leaf holds, then its deletion: releases without
    // objects, whose bundles have empty payloads.
    let upstream = replay.git.dir().to_owned();
    ok(&upstream, &["tag", "light", "refs/heads/main"]);
    let mut tagged = last.refs.clone();
    tagged.insert("refs/tags/light".into(), last.refs["refs/heads/main"]);
    let tagged = fixture::Step {
        refs: tagged,
        what: "a tag on main".into(),
    };
    wait_for_refs(work, &url, &published(&tagged), "the new tag", || {
        format!("{}{}", base.logs(), leaf.logs())
    });
    ok(&upstream, &["tag", "-d", "light"]);
    wait_for_refs(work, &url, &published(last), "the tag's deletion", || {
        format!("{}{}", base.logs(), leaf.logs())
    });
    ok(work, &["clone", "-q", "--depth", "1", &url, "shallow"]);
}

/// A generated upstream published step by step to a leaf that serves it
/// at `url`, for the tests below.
struct Releases {
    replay: fixture::Replay,
    rt: tokio::runtime::Runtime,
    work: std::path::PathBuf,
    url: String,
    /// Where releases go: a peer name or a node id.
    to: String,
}

impl Releases {
    /// A history of `commits` commits from `seed` under `work`, for the leaf
    /// serving Git on `http`.
    fn new(work: &Path, seed: u64, commits: usize, http: u16, to: &str) -> Releases {
        eprintln!("fixture seed {seed}");
        Releases {
            replay: fixture::generate(&work.join("upstream.git"), commits, seed).unwrap(),
            rt: runtime(),
            work: work.to_owned(),
            url: format!("http://127.0.0.1:{http}/fleet.git"),
            to: to.to_owned(),
        }
    }

    /// Publishes the refs of replay step `step`; returns the answer.
    fn publish(
        &self,
        base: &mut support::Node,
        step: usize,
        lifetime_s: Option<u64>,
        whole: bool,
    ) -> serde_json::Value {
        fixture::set_refs(&self.replay.git, &self.replay.steps[step].refs).unwrap();
        publish_to(
            base,
            &self.rt,
            self.replay.git.dir(),
            &self.to,
            lifetime_s,
            whole,
        )
    }

    /// Waits until the leaf serves step `step`'s refs, then checks its
    /// repository with `git fsck`.
    fn served(&self, step: usize, what: &str, logs: impl Fn() -> String) {
        let want = expected(&self.replay.steps[step].refs);
        wait_for_refs(&self.work, &self.url, &want, what, logs);
        Git::new(self.work.join("leaf/git/fleet.git"))
            .run(["fsck", "--strict", "--no-dangling"], b"")
            .unwrap();
    }

    /// Publishes step 5, waits until the leaf serves it and the base counts
    /// it carried; returns the publish answer.
    fn first(&self, base: &mut support::Node, leaf: &support::Node) -> serde_json::Value {
        let first = self.publish(base, 5, None, false);
        self.served(5, "the first release", || leaf.logs());
        base.wait_for_log("the first release carried", &["git release carried on"]);
        first
    }
}

/// A release whose bundle expires before the leaf is back would hold every
/// later release pending there for ever (each builds on the one before):
/// the base gives it up, and the next release builds on the last one
/// carried, which the leaf applies as soon as it returns.
#[test]
fn a_release_that_expires_before_the_leaf_returns_is_given_up() {
    let root = tempfile::tempdir().unwrap();
    let work = root.path();
    let http = free_port();
    let (mut base, mut leaf) =
        base_and_leaf(work, "", &format!("[git]\nlisten = \"127.0.0.1:{http}\"\n"));
    let releases = Releases::new(work, 13, 40, http, "leaf");
    let first = releases.first(&mut base, &leaf);

    // The leaf goes away; the next release lives one second.
    leaf.kill9();
    let lost = releases.publish(&mut base, 15, Some(1), false);
    assert_eq!(lost["base"], first["sequence"], "{lost}");
    base.wait_for_log("the release given up", &["git release", "given up"]);

    let next = releases.publish(&mut base, 30, None, false);
    assert_eq!(next["base"], first["sequence"], "{next}");
    leaf.start();
    releases.served(30, "the release after the lost one", || {
        format!("{}{}", base.logs(), leaf.logs())
    });
}

/// base → relay → leaf. A release the relay took custody of, whose
/// lifetime ends there while the leaf is away, comes back as a deletion
/// report: the base gives it up and, since it had counted it carried, makes
/// the next release whole, which the leaf applies when it returns.
#[test]
fn a_release_that_expires_at_a_relay_is_given_up_and_the_next_is_whole() {
    let root = tempfile::tempdir().unwrap();
    let work = root.path();
    let mut base = init(work, "base", "base");
    let mut relay = init(work, "relay", "relay");
    let mut leaf = init(work, "leaf", "leaf");
    let http = free_port();
    configure_chain(
        [&base, &relay, &leaf],
        &[],
        ["", "", &format!("[git]\nlisten = \"127.0.0.1:{http}\"\n")],
    );
    leaf.start();
    relay.start();
    base.start();
    let releases = Releases::new(work, 14, 40, http, &leaf.id.clone());
    releases.first(&mut base, &leaf);

    // The leaf goes away; the relay takes the next release, which lives
    // three seconds.
    leaf.kill9();
    let lost = releases.publish(&mut base, 15, Some(3), false);
    assert!(lost["base"].is_u64(), "{lost}");
    base.wait_for_log_lines("the relay's custody", &["git release carried on"], 2);
    base.wait_for_log(
        "the relay's report",
        &["deleted before it reached the destination", "a whole one"],
    );

    let next = releases.publish(&mut base, 30, None, false);
    assert!(next["base"].is_null(), "a whole release: {next}");
    leaf.start();
    releases.served(30, "the whole release", || {
        format!("{}{}", base.logs(), leaf.logs())
    });
}

/// A leaf that lost its repository and its store (re-imaged, its key kept)
/// keeps a thin release pending for the release it no longer has; `ferry
/// git publish --whole` sends everything again and the leaf serves it.
#[test]
fn a_leaf_that_lost_its_repository_catches_up_with_a_whole_release() {
    let root = tempfile::tempdir().unwrap();
    let work = root.path();
    let http = free_port();
    let (mut base, mut leaf) =
        base_and_leaf(work, "", &format!("[git]\nlisten = \"127.0.0.1:{http}\"\n"));
    let releases = Releases::new(work, 15, 30, http, "leaf");
    let first = releases.first(&mut base, &leaf);

    leaf.kill9();
    for gone in ["leaf/git", "leaf/store"] {
        std::fs::remove_dir_all(work.join(gone)).unwrap();
    }
    leaf.start();
    let thin = releases.publish(&mut base, 15, None, false);
    assert_eq!(thin["base"], first["sequence"], "{thin}");
    leaf.wait_for_log("the thin release pending", &["git release", "Pending"]);
    // The base learnt at once that the leaf had restarted: the new run
    // answered a packet of the old connection with a stateless reset the
    // base believed (rather than the base waiting out its idle timeout).
    base.wait_for_log(
        "the old connection reset by the restarted leaf",
        &["link failed", "reset by peer"],
    );

    let whole = releases.publish(&mut base, 15, None, true);
    assert!(whole["base"].is_null(), "{whole}");
    assert!(
        whole["objects"].as_u64() > thin["objects"].as_u64(),
        "{whole} {thin}"
    );
    releases.served(15, "the whole release", || {
        format!("{}{}", base.logs(), leaf.logs())
    });
}
