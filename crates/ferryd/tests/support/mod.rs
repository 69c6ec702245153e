//! Real ferryd processes for tests: init, configure, start, kill -9, ask.

#![allow(dead_code)]

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferryd::admin::{Request, request};

pub struct Node {
    pub dir: PathBuf,
    /// All 64 hex digits.
    pub id: String,
    pub child: Option<Child>,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A current-thread runtime for a test's admin requests.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

pub fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `ferryd init` in `root/name`.
pub fn init(root: &Path, name: &str, role: &str) -> Node {
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

/// A peer entry for a config; `dial` is where to reach it, if this side dials.
pub fn peer(name: &str, node: &Node, dial: Option<u16>, profile: &str) -> String {
    let quic = dial.map_or(String::new(), |p| format!("quic = \"127.0.0.1:{p}\"\n"));
    format!(
        "[[peer]]\nname = \"{name}\"\nnode_id = \"{}\"\n{quic}profile = \"{profile}\"\n",
        node.id
    )
}

/// A peer entry reached over a serial line: `serial` is the body of its
/// `[peer.serial]` table (device, baud, ...). Put it last, or before a table.
pub fn serial_peer(name: &str, node: &Node, profile: &str, serial: &str) -> String {
    format!(
        "[[peer]]\nname = \"{name}\"\nnode_id = \"{}\"\nprofile = \"{profile}\"\n\
         [peer.serial]\n{serial}",
        node.id
    )
}

/// A base that dials a leaf over QUIC (both peers on the `lte-bush`
/// profile), each config followed by its `*_rest` verbatim; both started,
/// the leaf first.
pub fn base_and_leaf(root: &Path, base_rest: &str, leaf_rest: &str) -> (Node, Node) {
    let mut base = init(root, "base", "base");
    let mut leaf = init(root, "leaf", "leaf");
    let leaf_port = free_port();
    configure(
        &base,
        "base",
        free_port(),
        &format!(
            "{}{base_rest}",
            peer("leaf", &leaf, Some(leaf_port), "lte-bush")
        ),
    );
    configure(
        &leaf,
        "leaf",
        leaf_port,
        &format!("{}{leaf_rest}", peer("base", &base, None, "lte-bush")),
    );
    leaf.start();
    base.start();
    (base, leaf)
}

/// Configures base → relay → leaf (all peers on the `lte-bush` profile):
/// the base dials the relay and routes everything through it, the relay
/// dials the leaf, and the leaf is a member of `leaf_groups`. Each config
/// ends with its entry of `rests`: base, relay, leaf.
pub fn configure_chain(nodes: [&Node; 3], leaf_groups: &[&str], rests: [&str; 3]) {
    let [base, relay, leaf] = nodes;
    let (relay_port, leaf_port) = (free_port(), free_port());
    configure(
        base,
        "base",
        free_port(),
        &format!(
            "{}[routes]\ndefault = \"relay\"\n{}",
            peer("relay", relay, Some(relay_port), "lte-bush"),
            rests[0]
        ),
    );
    configure(
        relay,
        "relay",
        relay_port,
        &format!(
            "{}{}{}",
            peer("base", base, None, "lte-bush"),
            peer("leaf", leaf, Some(leaf_port), "lte-bush"),
            rests[1]
        ),
    );
    configure_member(
        leaf,
        "leaf",
        leaf_groups,
        leaf_port,
        &format!("{}{}", peer("relay", relay, None, "lte-bush"), rests[2]),
    );
}

/// Writes the node's ferryd.toml: QUIC on `port`, then `rest` verbatim.
pub fn configure(node: &Node, role: &str, port: u16, rest: &str) {
    configure_member(node, role, &[], port, rest);
}

/// [`configure`] for a node that is a member of `groups`.
pub fn configure_member(node: &Node, role: &str, groups: &[&str], port: u16, rest: &str) {
    configure_node(node, role, &format!("member_of = {groups:?}\n"), port, rest);
}

/// [`configure`] with `node_extra` in the `[node]` table.
pub fn configure_node(node: &Node, role: &str, node_extra: &str, port: u16, rest: &str) {
    let text = format!(
        "[node]\nkey = \"node.key\"\nrole = \"{role}\"\n{node_extra}\
         [store]\npath = \"store\"\n\
         [listen]\nquic = \"127.0.0.1:{port}\"\nadmin = \"ferryd.sock\"\n{rest}"
    );
    std::fs::write(node.dir.join("ferryd.toml"), text).unwrap();
}

impl Node {
    pub fn socket(&self) -> PathBuf {
        self.dir.join("ferryd.sock")
    }

    /// Starts `ferryd run`, appending to the node's log.
    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("ferryd.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_ferryd"))
            .args(["run", "--config"])
            .arg(self.dir.join("ferryd.toml"))
            .env("FERRY_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// This node's log and those beside it, for failure messages.
    pub fn logs(&self) -> String {
        let mut all = String::new();
        for entry in std::fs::read_dir(self.dir.parent().unwrap())
            .unwrap()
            .flatten()
        {
            let path = entry.path().join("ferryd.log");
            if path.exists() {
                all += &format!("\n--- {}:\n", entry.path().display());
                all += &std::fs::read_to_string(path).unwrap_or_default();
            }
        }
        all
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("ferryd.log")).unwrap_or_default()
    }

    /// Waits up to a minute until the log has `count` lines containing
    /// every one of `parts`; returns them, or panics with the logs.
    pub fn wait_for_log_lines(&self, what: &str, parts: &[&str], count: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let lines: Vec<String> = self
                .log()
                .lines()
                .filter(|l| parts.iter().all(|p| l.contains(p)))
                .map(str::to_string)
                .collect();
            if lines.len() >= count {
                return lines;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what};{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The first log line containing every one of `parts`, once there is one.
    pub fn wait_for_log(&self, what: &str, parts: &[&str]) -> String {
        self.wait_for_log_lines(what, parts, 1).swap_remove(0)
    }

    pub fn ask(
        &self,
        rt: &tokio::runtime::Runtime,
        req: &Request,
    ) -> Result<serde_json::Value, String> {
        rt.block_on(request(&self.socket(), req))
    }

    /// Hands `path` to the node for `to`, once its admin API answers;
    /// returns what it sent, one entry per file.
    pub fn send(
        &mut self,
        rt: &tokio::runtime::Runtime,
        path: &Path,
        to: &str,
    ) -> Vec<serde_json::Value> {
        self.wait_for(rt, "the admin API", Duration::from_secs(60), |_| true);
        let request = Request::Send {
            path: path.to_path_buf(),
            to: to.to_string(),
            priority: None,
            lifetime_s: None,
        };
        let answer = self
            .ask(rt, &request)
            .unwrap_or_else(|e| panic!("send failed: {e}{}", self.logs()));
        answer["sent"]
            .as_array()
            .expect("a list of sent files")
            .clone()
    }

    /// Sends the signed key statement `statement` to `to` through this
    /// node's admin API (as `ferry key publish` does), written to `name`
    /// in the node's directory first.
    pub fn publish_statement(
        &self,
        rt: &tokio::runtime::Runtime,
        name: &str,
        statement: &ferry_trust::Signed,
        to: &str,
    ) {
        let path = self.dir.join(name);
        std::fs::write(&path, statement.encode()).unwrap();
        self.ask(
            rt,
            &Request::KeyPublish {
                statement: path,
                to: to.into(),
            },
        )
        .unwrap_or_else(|e| panic!("key publish failed: {e}{}", self.logs()));
    }

    /// Asks for status until `done` holds for it, or panics with the logs.
    pub fn wait_for(
        &mut self,
        rt: &tokio::runtime::Runtime,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(status) = self.ask(rt, &Request::Status)
                && done(&status)
            {
                return status;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(exit)) = child.try_wait()
            {
                panic!("ferryd exited ({exit}) waiting for {what};{}", self.logs());
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what};{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `skopeo copy` of `image` from the registry at `addr` to the layout
/// `out`; returns the digest the layout records for its tag.
pub fn skopeo_pull(addr: &str, image: &str, out: &Path) -> String {
    let tag = image.rsplit(':').next().unwrap();
    let result = Command::new("skopeo")
        .args([
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{addr}/{image}"),
            &format!("oci:{}:{tag}", out.display()),
        ])
        .output()
        .expect("skopeo is installed (scripts/setup installs it)");
    assert!(
        result.status.success(),
        "skopeo failed: {}",
        String::from_utf8_lossy(&result.stderr)
    );
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .map(|m| m["digest"].as_str().unwrap().to_owned())
        .unwrap()
}
