//! The operator's commands against running nodes: `ferry proxy` carries a
//! base's QUIC to a leaf, `ferry peers`, `ferry send --wait`, `ferry watch`,
//! `ferry get` and `ferry logs` as a user runs them (the real `ferry`
//! binary), against two ferryd nodes running in this process (real QUIC on
//! loopback, real RocksDB stores, real admin sockets).

mod support;

use support::{ferry, ok};

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferryd::config::Config;
use ferryd::daemon::Node;
use rand::{RngCore, SeedableRng};
use serde_json::Value;

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?} in\n{text}")))
        .collect()
}

/// `ferryd init` in `root/name`, then a configuration of our own.
fn configure(root: &Path, name: &str, role: &str, listen: &str, peer: &str) -> (PathBuf, String) {
    let dir = root.join(name);
    let (id, _) = ferryd::daemon::init(&dir, role).unwrap();
    let text = format!(
        "[node]\nkey = \"node.key\"\nrole = \"{role}\"\n[store]\npath = \"store\"\n\
         [listen]\n{listen}admin = \"ferryd.sock\"\n{peer}"
    );
    std::fs::write(dir.join("ferryd.toml"), text).unwrap();
    (dir, id.to_hex())
}

fn peer(name: &str, id: &str, quic: Option<&str>) -> String {
    let quic = quic.map_or(String::new(), |a| format!("quic = \"{a}\"\n"));
    format!("[[peer]]\nname = \"{name}\"\nnode_id = \"{id}\"\n{quic}profile = \"lte-bush\"\n")
}

/// Kills the proxy if the test fails before it stops it.
struct Proxy(Child);

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn send_wait_watch_peers_and_logs_through_the_impairment_proxy() {
    // The nodes' log lines go into the buffer `ferry logs` reads, as in ferryd.
    let _ = tracing_subscriber::fmt()
        .with_writer(ferryd::logbuf::tee(std::io::sink))
        .try_init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    let base_dir = root.path().join("base");
    let (leaf_dir, leaf_id) =
        configure(root.path(), "leaf", "leaf", "quic = \"127.0.0.1:0\"\n", "");
    // The leaf must know the base's id: make the base's key first.
    let (base_id, _) = ferryd::daemon::init(&base_dir.join("key"), "base").unwrap();
    let base_id = base_id.to_hex();
    std::fs::write(
        leaf_dir.join("ferryd.toml"),
        std::fs::read_to_string(leaf_dir.join("ferryd.toml")).unwrap()
            + &peer("base", &base_id, None),
    )
    .unwrap();
    let leaf = rt
        .block_on(Node::start(
            Config::load(&leaf_dir.join("ferryd.toml")).unwrap(),
        ))
        .unwrap();
    let leaf_addr = leaf.quic_addr.unwrap();

    // The base reaches the leaf only through the proxy (lte-bush: 2 Mbit/s,
    // 80 ms RTT, 1 % loss; its schedule's down time ignored).
    let mut proxy = Proxy(
        Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(["proxy", "--listen", "127.0.0.1:0", "--upstream"])
            .arg(leaf_addr.to_string())
            .args(["--profile", "lte-bush", "--seed", "3", "--always-up"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut proxy_out = BufReader::new(proxy.0.stdout.take().unwrap());
    let mut started = String::new();
    proxy_out.read_line(&mut started).unwrap();
    assert!(
        started.contains("as lte-bush: 2000 kbit/s, 80 ms RTT, 1.0 % loss, always up; seed 3"),
        "{started}"
    );
    let proxy_addr = started
        .strip_prefix("proxy ")
        .and_then(|s| s.split(' ').next())
        .unwrap_or_else(|| panic!("no address in {started:?}"))
        .to_string();

    std::fs::write(
        base_dir.join("ferryd.toml"),
        format!(
            "[node]\nkey = \"key/node.key\"\nrole = \"base\"\n[store]\npath = \"store\"\n\
             [listen]\nadmin = \"ferryd.sock\"\n{}",
            peer("leaf", &leaf_id, Some(&proxy_addr))
        ),
    )
    .unwrap();
    let base = rt
        .block_on(Node::start(
            Config::load(&base_dir.join("ferryd.toml")).unwrap(),
        ))
        .unwrap();
    let base_sock = base.config.admin.to_str().unwrap().to_string();
    let leaf_sock = leaf.config.admin.to_str().unwrap().to_string();

    // `ferry peers`: the leaf, reached at the proxy, comes up.
    let deadline = Instant::now() + Duration::from_secs(60);
    let table = loop {
        let table = ok(&ferry(&["peers", "--socket", &base_sock]));
        if table
            .lines()
            .any(|l| l.starts_with("leaf ") && l.contains(" up "))
        {
            break table;
        }
        assert!(
            Instant::now() < deadline,
            "the link did not come up:\n{table}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let row = table.lines().find(|l| l.starts_with("leaf ")).unwrap();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[1], &leaf_id[..16], "{table}");
    assert_eq!(
        &cells[2..6],
        ["quic", proxy_addr.as_str(), "lte-bush", "up"],
        "{table}"
    );
    let peers: Value =
        serde_json::from_str(&ok(&ferry(&["peers", "--socket", &leaf_sock, "--json"]))).unwrap();
    assert_eq!(peers["peers"][0]["node"], base_id.as_str());
    assert_eq!(peers["peers"][0]["address"], Value::Null);

    // `ferry send --wait --json`: the answer, then events, then the end.
    let release = root.path().join("release");
    std::fs::create_dir_all(&release).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(21);
    let mut files = Vec::new();
    for (name, len) in [("image.tar", 400_000), ("deploy.yaml", 1_000)] {
        let mut data = vec![0; len];
        rng.fill_bytes(&mut data);
        std::fs::write(release.join(name), &data).unwrap();
        files.push((name, data));
    }
    let out = ok(&ferry(&[
        "send",
        "--socket",
        &base_sock,
        "--to",
        "leaf",
        release.to_str().unwrap(),
        "--wait",
        "--json",
        "--timeout",
        "120",
    ]));
    let lines = json_lines(&out);
    let sent = lines[0]["sent"].as_array().unwrap().clone();
    assert_eq!(sent.len(), 2, "{out}");
    let ids: Vec<&str> = sent.iter().map(|s| s["bundle"].as_str().unwrap()).collect();
    let last = lines.last().unwrap();
    assert_eq!(last["finished"], true, "{out}");
    assert_eq!(
        (last["done"].as_u64(), last["of"].as_u64()),
        (Some(2), Some(2)),
        "{out}"
    );
    assert_eq!(last["bytes"], 401_000, "{out}");
    for id in &ids {
        assert!(
            lines
                .iter()
                .any(|l| l["bundle"] == *id && l["state"] == "handed_over"),
            "{id} never handed over:\n{out}"
        );
    }

    // `ferry watch --for` at the leaf: both already delivered there.
    let mut args = vec!["watch", "--socket", &leaf_sock, "--json", "--for"];
    args.extend(&ids);
    let out = ok(&ferry(&args));
    let lines = json_lines(&out);
    for id in &ids {
        assert!(
            lines
                .iter()
                .any(|l| l["bundle"] == *id && l["state"] == "delivered"),
            "{id} not delivered:\n{out}"
        );
    }
    assert_eq!(lines.last().unwrap()["done"], 2, "{out}");
    // Without --for and with nothing in flight, it ends at once.
    let out = ok(&ferry(&["watch", "--socket", &leaf_sock]));
    assert!(out.ends_with("nothing in flight\n"), "{out}");

    // What arrived, read back out of the leaf's store.
    for s in &sent {
        let name = s["path"].as_str().unwrap();
        let target = root.path().join(format!("{name}.out"));
        ok(&ferry(&[
            "get",
            "--socket",
            &leaf_sock,
            s["manifest"].as_str().unwrap(),
            "--out",
            target.to_str().unwrap(),
        ]));
        let expected = &files.iter().find(|(n, _)| *n == name).unwrap().1;
        assert!(
            std::fs::read(&target).unwrap() == *expected,
            "{name} differs"
        );
    }

    // `ferry logs`: the custody decisions are among the last lines.
    let logs = ok(&ferry(&["logs", "--socket", &leaf_sock, "-n", "1000"]));
    assert!(logs.contains("custody accepted"), "{logs}");
    let two = ok(&ferry(&["logs", "--socket", &leaf_sock, "-n", "2"]));
    assert_eq!(two.lines().count(), 2, "{two}");
    assert!(logs.ends_with(&two), "{two} is not the end of\n{logs}");

    // SIGTERM stops the proxy, which prints what crossed it.
    let pid = libc::pid_t::try_from(proxy.0.id()).unwrap();
    // SAFETY: kill(2) only sends a signal.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = proxy.0.wait().unwrap();
    let mut counters = String::new();
    std::io::Read::read_to_string(&mut proxy_out, &mut counters).unwrap();
    assert!(status.success(), "{status}: {counters}");
    let delivered_bytes = |line: &str| -> u64 {
        line.split_once(" delivered (")
            .and_then(|(_, rest)| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no delivered bytes in {line:?}"))
    };
    let up = counters
        .lines()
        .find(|l| l.starts_with("to upstream: "))
        .unwrap_or_else(|| panic!("{counters}"));
    assert!(delivered_bytes(up) > 401_000, "{counters}");

    rt.block_on(base.stop());
    rt.block_on(leaf.stop());
    // With the daemon gone, a command says so.
    let gone = ferry(&["peers", "--socket", &leaf_sock]);
    assert!(!gone.status.success());
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("is the daemon running?"),
        "{}",
        String::from_utf8_lossy(&gone.stderr)
    );
}

#[test]
fn bad_arguments_are_refused_with_the_reason() {
    let out = ferry(&[
        "proxy",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        "127.0.0.1:9",
        "--profile",
        "carrier-pigeon",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown link profile \"carrier-pigeon\"") && err.contains("geo-sat"),
        "{err}"
    );

    let out = ferry(&[
        "proxy",
        "--listen",
        "nowhere",
        "--upstream",
        "127.0.0.1:9",
        "--profile",
        "geo-sat",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--listen"));

    let out = ferry(&["watch", "--interval", "0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--interval"));

    let out = ferry(&["logs", "-n", "many"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--lines"));
}
