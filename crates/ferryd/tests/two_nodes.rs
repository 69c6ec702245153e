//! Two real ferryd processes on loopback QUIC: a base sends a directory to
//! a leaf through the admin API, the leaf delivers every file verified, and
//! a node that is not pinned is refused at the handshake.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferryd::admin::{Request, request};
use rand::{RngCore, SeedableRng};

struct Node {
    dir: PathBuf,
    id: String,
    child: Option<Child>,
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn init(root: &Path, name: &str, role: &str) -> Node {
    let dir = root.join(name);
    let out = Command::new(env!("CARGO_BIN_EXE_ferryd"))
        .args(["init", "--role", role, "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("node id "))
        .expect("init prints the node id")
        .to_string();
    Node {
        dir,
        id,
        child: None,
    }
}

fn configure(node: &Node, role: &str, port: u16, peers: &str, routes: &str) {
    let text = format!(
        "[node]\nkey = \"node.key\"\nrole = \"{role}\"\n[store]\npath = \"store\"\n\
         [listen]\nquic = \"127.0.0.1:{port}\"\nadmin = \"ferryd.sock\"\n{peers}{routes}"
    );
    std::fs::write(node.dir.join("ferryd.toml"), text).unwrap();
}

fn start(node: &mut Node) {
    let log = std::fs::File::create(node.dir.join("ferryd.log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_ferryd"))
        .args(["run", "--config"])
        .arg(node.dir.join("ferryd.toml"))
        .env("FERRY_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    node.child = Some(child);
}

/// The node's log, and those of the nodes beside it, for failure messages.
fn log(node: &Node) -> String {
    let mut all = std::fs::read_to_string(node.dir.join("ferryd.log")).unwrap_or_default();
    for other in std::fs::read_dir(node.dir.parent().unwrap())
        .unwrap()
        .flatten()
    {
        let path = other.path().join("ferryd.log");
        if other.path() != node.dir && path.exists() {
            all += &format!("\n--- {}:\n", other.path().display());
            all += &std::fs::read_to_string(path).unwrap_or_default();
        }
    }
    all
}

/// Asks the node until `done` holds for its answer, or panics with its log.
fn wait_for(
    rt: &tokio::runtime::Runtime,
    node: &mut Node,
    what: &str,
    mut done: impl FnMut(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let socket = node.dir.join("ferryd.sock");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(status) = rt.block_on(request(&socket, &Request::Status))
            && done(&status)
        {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; log:\n{}",
            log(node)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn base_sends_a_directory_to_a_leaf_over_quic_and_strangers_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let mut base = init(root.path(), "base", "base");
    let mut leaf = init(root.path(), "leaf", "leaf");
    let stranger = init(root.path(), "stranger", "leaf");
    let (base_port, leaf_port) = (free_port(), free_port());
    configure(
        &base,
        "base",
        base_port,
        &format!(
            "[[peer]]\nname = \"leaf\"\nnode_id = \"{}\"\nquic = \"127.0.0.1:{leaf_port}\"\nprofile = \"lte-bush\"\n",
            leaf.id
        ),
        "",
    );
    configure(
        &leaf,
        "leaf",
        leaf_port,
        &format!("[[peer]]\nname = \"base\"\nnode_id = \"{}\"\n", base.id),
        "",
    );
    // The stranger knows the leaf, but the leaf does not know it.
    configure(
        &stranger,
        "leaf",
        free_port(),
        &format!(
            "[[peer]]\nname = \"leaf\"\nnode_id = \"{}\"\nquic = \"127.0.0.1:{leaf_port}\"\n",
            leaf.id
        ),
        "",
    );
    start(&mut leaf);
    start(&mut base);
    let mut stranger = stranger;
    start(&mut stranger);

    let payload = root.path().join("release");
    std::fs::create_dir_all(payload.join("manifests")).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let mut files = Vec::new();
    for (name, len) in [
        ("manifests/deploy.yaml", 3_000),
        ("image.tar", 3 << 20),
        ("empty-ish", 1),
    ] {
        let mut data = vec![0; len];
        rng.fill_bytes(&mut data);
        std::fs::write(payload.join(name), &data).unwrap();
        files.push((name, data));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    wait_for(&rt, &mut base, "the base's admin API", |_| true);
    let sent = rt
        .block_on(request(
            &base.dir.join("ferryd.sock"),
            &Request::Send {
                path: payload.clone(),
                to: "leaf".into(),
                priority: None,
                lifetime_s: None,
            },
        ))
        .unwrap_or_else(|e| panic!("send failed: {e}\n{}", log(&base)));
    let sent = sent["sent"].as_array().unwrap().clone();
    assert_eq!(sent.len(), files.len());

    let status = wait_for(&rt, &mut leaf, "every file delivered", |s| {
        s["delivered"]
            .as_array()
            .is_some_and(|d| d.len() == files.len())
    });
    for s in &sent {
        let name = s["path"].as_str().unwrap();
        let manifest = s["manifest"].as_str().unwrap();
        assert!(
            status["delivered"]
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d["manifest"] == manifest),
            "{name} not delivered"
        );
        let out = root.path().join("out").join(name.replace('/', "_"));
        std::fs::create_dir_all(out.parent().unwrap()).unwrap();
        rt.block_on(request(
            &leaf.dir.join("ferryd.sock"),
            &Request::Get {
                manifest: manifest.into(),
                out: out.clone(),
            },
        ))
        .unwrap();
        let expected = &files.iter().find(|(n, _)| *n == name).unwrap().1;
        assert!(std::fs::read(&out).unwrap() == *expected, "{name} differs");
    }
    // Custody went back to the base, which released it.
    wait_for(&rt, &mut base, "custody released", |s| {
        s["counters"]["custody_released"].as_u64() == Some(files.len() as u64)
    });
    // The stranger was refused by the leaf at the handshake, by node id.
    let deadline = Instant::now() + Duration::from_secs(30);
    let leaf_log = || std::fs::read_to_string(leaf.dir.join("ferryd.log")).unwrap_or_default();
    while !leaf_log().contains(&stranger.id[..16]) {
        assert!(
            Instant::now() < deadline,
            "no refusal logged:\n{}",
            log(&leaf)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let leaf_log = leaf_log();
    let refusal = leaf_log
        .lines()
        .find(|l| l.contains(&stranger.id[..16]))
        .unwrap();
    assert!(refusal.contains("WARN"), "{refusal}");
    assert!(
        refusal.contains("not pinned") || refusal.contains("refus"),
        "{refusal}"
    );
}
