//! Real ferryd processes joined by a serial line: each opens the device end
//! of a pseudo-terminal as its serial port, and a `LineRelay` in this test
//! joins the two terminals' far ends as a 115200-baud line that loses
//! frames, flips bits and delays. A base sends a file to a leaf over it,
//! full duplex and half duplex; a peer whose device does not exist leaves
//! the node running and retrying.
//!
//! FERRY_TEST_SEED picks the line's seed (printed).

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ferry_link::serial::pty::{Direction, Impairment, LineRelay, PtyPair, PtyStream, RelayStats};
use ferryd::admin::Request;
use rand::{RngCore, SeedableRng};
use support::{Node, configure, free_port, init, serial_peer};

const BAUD: u32 = 115_200;
const MINUTE: Duration = Duration::from_secs(60);

fn runtime() -> tokio::runtime::Runtime {
    // The relay must run while the test thread waits: worker threads.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn seed() -> u64 {
    let seed = std::env::var("FERRY_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    println!("FERRY_TEST_SEED={seed}");
    seed
}

/// Two pseudo-terminals whose far ends a relay joins: a serial cable with
/// a modem on it, between `paths[0]` and `paths[1]`.
struct Line {
    paths: [PathBuf; 2],
    relay: LineRelay,
    /// The device ends stay open here too, so that the relay never sees a
    /// hang-up while a daemon reopens its port.
    _near: [PtyStream; 2],
}

fn serial_line(rt: &tokio::runtime::Runtime, line: Impairment, seed: u64) -> Line {
    let _runtime = rt.enter();
    let (a, b) = (PtyPair::open().unwrap(), PtyPair::open().unwrap());
    let paths = [a.path().to_owned(), b.path().to_owned()];
    let (near_a, far_a) = a.into_streams();
    let (near_b, far_b) = b.into_streams();
    Line {
        paths,
        relay: LineRelay::start(far_a, far_b, line, line, seed),
        _near: [near_a, near_b],
    }
}

/// 2 % of frames lost, about one bit in 100 000 flipped, 20 ms each way.
fn impaired() -> Impairment {
    Impairment {
        frame_loss: 0.02,
        bit_error_rate: 1e-5,
        delay: Duration::from_millis(20),
        ..Impairment::clean(BAUD)
    }
}

/// The `[peer.serial]` body for one end of the line.
fn serial(device: &Path, extra: &str) -> String {
    let crc = match extra.contains("crc = ") {
        true => "",
        false => "crc = \"crc32\"\n",
    };
    format!(
        "device = \"{}\"\nbaud = {BAUD}\nmodem_mtu = 256\n{crc}propagation = \"30ms\"\n{extra}",
        device.display()
    )
}

/// `crc = "mac"` with the node public key of the node at `dir`.
fn authenticated(dir: &Path) -> String {
    let key = ferry_link::identity::NodeKey::load(dir.join("node.key")).unwrap();
    format!(
        "crc = \"mac\"\npeer_key = \"{}\"\n",
        ferry_trust::PublicKey(key.public_key())
    )
}

/// A base and a leaf on the two ends of `line`, started; with `mac`, the
/// line authenticates its frames with the key the two derive.
fn base_and_leaf(
    root: &Path,
    line: &Line,
    base_extra: &str,
    leaf_extra: &str,
    mac: bool,
) -> (Node, Node) {
    let mut base = init(root, "base", "base");
    let mut leaf = init(root, "leaf", "leaf");
    let (base_extra, leaf_extra) = match mac {
        true => (
            format!("{base_extra}{}", authenticated(&leaf.dir)),
            format!("{leaf_extra}{}", authenticated(&base.dir)),
        ),
        false => (base_extra.to_owned(), leaf_extra.to_owned()),
    };
    let base_peer = serial_peer(
        "leaf",
        &leaf,
        "acoustic",
        &serial(&line.paths[0], &base_extra),
    );
    let leaf_peer = serial_peer(
        "base",
        &base,
        "acoustic",
        &serial(&line.paths[1], &leaf_extra),
    );
    configure(&base, "base", free_port(), &base_peer);
    configure(&leaf, "leaf", free_port(), &leaf_peer);
    leaf.start();
    base.start();
    (base, leaf)
}

/// Sends `len` seeded random bytes from base to leaf, waits until the leaf
/// has delivered them and the base released custody, and checks the bytes.
fn send_and_verify(
    rt: &tokio::runtime::Runtime,
    root: &Path,
    base: &mut Node,
    leaf: &mut Node,
    len: usize,
    seed: u64,
) {
    let mut data = vec![0; len];
    rand_chacha::ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut data);
    let file = root.join("payload.bin");
    std::fs::write(&file, &data).unwrap();
    let started = Instant::now();
    let sent = base.send(rt, &file, "leaf");
    assert_eq!(sent.len(), 1);
    let manifest = sent[0]["manifest"].as_str().unwrap().to_string();

    leaf.wait_for(rt, "the file delivered", MINUTE, |s| {
        s["delivered"]
            .as_array()
            .is_some_and(|d| d.iter().any(|d| d["manifest"] == manifest.as_str()))
    });
    println!("delivered {len} bytes in {:?}", started.elapsed());
    let out = root.join("out.bin");
    leaf.ask(
        rt,
        &Request::Get {
            manifest: manifest.clone(),
            out: out.clone(),
        },
    )
    .unwrap_or_else(|e| panic!("get failed: {e}{}", leaf.logs()));
    assert!(
        std::fs::read(&out).unwrap() == data,
        "the delivered bytes differ"
    );

    // The custody signal came back over the same line.
    let status = base.wait_for(rt, "custody released", MINUTE, |s| {
        s["counters"]["custody_released"].as_u64() == Some(1)
    });
    // The bytes went out on the serial peer's link, which is up.
    let link = &status["links"][0];
    assert_eq!(link["up"], true, "{status}");
    assert!(link["bytes_out"].as_u64().unwrap() > len as u64, "{status}");
    assert!(link["frames_in"].as_u64().unwrap() > 0, "{status}");
    let log = base.log();
    assert!(
        log.lines()
            .any(|l| l.contains("serial link up") && l.contains("peer=leaf")),
        "{log}"
    );
}

/// What the line carried each way, the frames the leaf's engine sent, and
/// the leaf's status.
fn line_counts(
    rt: &tokio::runtime::Runtime,
    line: &Line,
    leaf: &mut Node,
) -> (RelayStats, RelayStats, u64, serde_json::Value) {
    let (ab, ba) = (
        line.relay.stats(Direction::AToB),
        line.relay.stats(Direction::BToA),
    );
    let status = leaf.wait_for(rt, "status", MINUTE, |_| true);
    let leaf_frames = status["links"][0]["frames_out"].as_u64().unwrap();
    println!("line base→leaf {ab:?}\nline leaf→base {ba:?}\nleaf engine frames {leaf_frames}");
    (ab, ba, leaf_frames, status)
}

#[test]
fn a_file_crosses_a_lossy_full_duplex_serial_line() {
    let seed = seed();
    let rt = runtime();
    let root = tempfile::tempdir().unwrap();
    let line = serial_line(&rt, impaired(), seed);
    let (mut base, mut leaf) = base_and_leaf(root.path(), &line, "", "", false);
    send_and_verify(&rt, root.path(), &mut base, &mut leaf, 48 << 10, seed);

    // The line did lose and corrupt frames, and the engines repaired them.
    let (ab, ba, leaf_frames, status) = line_counts(&rt, &line, &mut leaf);
    assert!(ab.frames_dropped + ab.frames_corrupted > 0, "{ab:?}");
    assert!(ab.bytes_in > 48 << 10, "{ab:?}");
    // Full duplex: every frame on the line is an engine frame, no turns.
    assert!(ba.frames <= leaf_frames, "{ba:?}, {status}");
}

/// The same lossy line with every frame authenticated by the key the two
/// nodes derive from their node keys: the file crosses, and the frames the
/// line corrupted were dropped by the MAC check.
#[test]
fn a_file_crosses_an_authenticated_serial_line() {
    let seed = seed();
    let rt = runtime();
    let root = tempfile::tempdir().unwrap();
    let line = serial_line(&rt, impaired(), seed);
    let (mut base, mut leaf) = base_and_leaf(root.path(), &line, "", "", true);
    send_and_verify(&rt, root.path(), &mut base, &mut leaf, 32 << 10, seed);
    let (ab, _, _, _) = line_counts(&rt, &line, &mut leaf);
    assert!(ab.frames_dropped + ab.frames_corrupted > 0, "{ab:?}");
    let log = leaf.log();
    assert!(
        log.lines()
            .any(|l| l.contains("serial link up") && l.contains("Mac(LinkKey(..))")),
        "{log}"
    );
}

#[test]
fn a_file_crosses_a_half_duplex_serial_line() {
    let seed = seed();
    let rt = runtime();
    let root = tempfile::tempdir().unwrap();
    let line = serial_line(&rt, impaired(), seed);
    let (mut base, mut leaf) = base_and_leaf(
        root.path(),
        &line,
        "half_duplex = true\ninitiator = true\n",
        "half_duplex = true\ninitiator = false\n",
        false,
    );
    send_and_verify(&rt, root.path(), &mut base, &mut leaf, 24 << 10, seed);
    let (ab, ba, leaf_frames, status) = line_counts(&rt, &line, &mut leaf);
    assert!(ab.bytes_in > 24 << 10, "{ab:?}");
    // The leaf mostly listened: most of what it put on the line were empty
    // frames handing the turn back (at most two engine frames may still
    // wait for its next turn).
    assert!(ba.frames > leaf_frames + 2, "{ba:?}, {status}");
}

#[test]
fn a_missing_device_is_retried_and_the_node_keeps_running() {
    let rt = runtime();
    let root = tempfile::tempdir().unwrap();
    let mut node = init(root.path(), "base", "base");
    let other = init(root.path(), "sub", "leaf");
    let device = root.path().join("no-such-tty");
    configure(
        &node,
        "base",
        free_port(),
        &serial_peer("sub-1", &other, "acoustic", &serial(&device, "")),
    );
    node.start();
    let status = node.wait_for(&rt, "the admin API", MINUTE, |_| true);
    assert_eq!(status["links_up"], serde_json::json!([]), "{status}");

    // Opened at start, then again a second later: two warnings naming it.
    let device = device.display().to_string();
    let warnings = node.wait_for_log_lines(
        "retries",
        &["WARN", "cannot open serial device", &device],
        2,
    );
    let warning = &warnings[0];
    assert!(warning.contains("peer=sub-1"), "{warning}");
    assert!(warning.contains("retry_in"), "{warning}");
    // Still running and answering.
    let status = node.wait_for(&rt, "status after the retries", MINUTE, |_| true);
    assert_eq!(status["links_up"], serde_json::json!([]), "{status}");
    assert!(node.child.as_mut().unwrap().try_wait().unwrap().is_none());
}

/// Reads what the daemon writes on `far` and counts the intact serial
/// frames in it, until the task is aborted (which closes the far end: a
/// hang-up for the daemon's port).
fn listen(
    rt: &tokio::runtime::Runtime,
    mut far: PtyStream,
) -> (
    tokio::task::JoinHandle<()>,
    std::sync::Arc<std::sync::atomic::AtomicU64>,
) {
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::io::AsyncReadExt;
    let frames = std::sync::Arc::new(AtomicU64::new(0));
    let counted = frames.clone();
    let task = rt.spawn(async move {
        let mut decoder = ferry_link::serial::Decoder::new(Default::default()).unwrap();
        let mut buf = [0u8; 1024];
        while let Ok(n @ 1..) = far.read(&mut buf).await {
            let intact = decoder.decode_all(&buf[..n]).into_iter().flatten().count();
            counted.fetch_add(intact as u64, Ordering::Relaxed);
        }
    });
    (task, frames)
}

#[test]
fn a_port_that_hangs_up_takes_the_link_down_until_the_device_is_back() {
    use std::sync::atomic::Ordering;
    let rt = runtime();
    let root = tempfile::tempdir().unwrap();
    let mut node = init(root.path(), "base", "base");
    let other = init(root.path(), "sub", "leaf");
    // A stable name for the device, as udev gives one (/dev/serial/by-id/...).
    let device = root.path().join("modem");
    let first = {
        let _runtime = rt.enter();
        PtyPair::open().unwrap()
    };
    std::os::unix::fs::symlink(first.path(), &device).unwrap();
    let (near, far) = first.into_streams();
    let (listener, frames) = listen(&rt, far);
    configure(
        &node,
        "base",
        free_port(),
        &serial_peer("sub-1", &other, "acoustic", &serial(&device, "")),
    );
    node.start();
    let up = |s: &serde_json::Value| s["links_up"].as_array().is_some_and(|l| !l.is_empty());
    node.wait_for(&rt, "the serial link up", MINUTE, up);
    // The engine says Hello on the line, in serial frames.
    let deadline = Instant::now() + MINUTE;
    while frames.load(Ordering::Relaxed) == 0 {
        assert!(Instant::now() < deadline, "nothing sent:{}", node.logs());
        std::thread::sleep(Duration::from_millis(20));
    }

    // The modem goes away: the port hangs up, the link goes down.
    listener.abort();
    drop(near);
    node.wait_for(&rt, "the serial link down", MINUTE, |s| !up(s));
    let log = node.log();
    assert!(
        log.lines().any(|l| l.contains("WARN")
            && l.contains("serial link down")
            && l.contains("peer=sub-1")),
        "{log}"
    );

    // It comes back under the same name: the daemon opens it again.
    let second = {
        let _runtime = rt.enter();
        PtyPair::open().unwrap()
    };
    std::fs::remove_file(&device).unwrap();
    std::os::unix::fs::symlink(second.path(), &device).unwrap();
    let (_near, far) = second.into_streams();
    let (_listener, frames) = listen(&rt, far);
    node.wait_for(&rt, "the serial link up again", MINUTE, up);
    let deadline = Instant::now() + MINUTE;
    while frames.load(Ordering::Relaxed) == 0 {
        assert!(Instant::now() < deadline, "nothing sent:{}", node.logs());
        std::thread::sleep(Duration::from_millis(20));
    }
    let ups = node
        .log()
        .lines()
        .filter(|l| l.contains("serial link up"))
        .count();
    assert_eq!(ups, 2, "{}", node.log());
}
