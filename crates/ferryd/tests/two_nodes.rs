//! Two real ferryd processes on loopback QUIC: a base sends a directory to
//! a leaf through the admin API, the leaf delivers every file verified, and
//! a node that is not pinned is refused at the handshake.

mod support;

use std::time::{Duration, Instant};

use ferryd::admin::Request;
use rand::{RngCore, SeedableRng};
use support::{configure, free_port, init, peer};

#[test]
fn base_sends_a_directory_to_a_leaf_over_quic_and_strangers_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let mut base = init(root.path(), "base", "base");
    let mut leaf = init(root.path(), "leaf", "leaf");
    let mut stranger = init(root.path(), "stranger", "leaf");
    let (leaf_port, metrics_port) = (free_port(), free_port());
    configure(
        &base,
        "base",
        free_port(),
        &format!(
            "metrics = \"127.0.0.1:{metrics_port}\"\n{}",
            peer("leaf", &leaf, Some(leaf_port), "lte-bush")
        ),
    );
    configure(
        &leaf,
        "leaf",
        leaf_port,
        &peer("base", &base, None, "lte-bush"),
    );
    // The stranger knows the leaf, but the leaf does not know it.
    configure(
        &stranger,
        "leaf",
        free_port(),
        &peer("leaf", &leaf, Some(leaf_port), "lte-bush"),
    );
    leaf.start();
    base.start();
    stranger.start();

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
    let minute = Duration::from_secs(60);
    let sent = base.send(&rt, &payload, "leaf");
    assert_eq!(sent.len(), files.len());

    let status = leaf.wait_for(&rt, "every file delivered", minute, |s| {
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
        leaf.ask(
            &rt,
            &Request::Get {
                manifest: manifest.into(),
                out: out.clone(),
            },
        )
        .unwrap();
        let expected = &files.iter().find(|(n, _)| *n == name).unwrap().1;
        assert!(std::fs::read(&out).unwrap() == *expected, "{name} differs");
    }
    // Custody went back to the base, which released it.
    base.wait_for(&rt, "custody released", minute, |s| {
        s["counters"]["custody_released"].as_u64() == Some(files.len() as u64)
    });
    // Prometheus sees the traffic to the leaf and the released bundles.
    let metrics = scrape(metrics_port);
    let sent_bytes: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("ferry_link_bytes_total{peer=\"leaf\",direction=\"out\"} "))
        .unwrap_or_else(|| panic!("no traffic metric:\n{metrics}"))
        .parse()
        .unwrap();
    assert!(sent_bytes > 3 << 20, "{metrics}");
    assert!(
        metrics.contains("ferry_bundles{state=\"released\"} 3\n"),
        "{metrics}"
    );

    // The stranger was refused by the leaf at the handshake, by node id.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !leaf.log().contains(&stranger.id[..16]) {
        assert!(
            Instant::now() < deadline,
            "no refusal logged:{}",
            leaf.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = leaf.log();
    let refusal = log
        .lines()
        .find(|l| l.contains(&stranger.id[..16]))
        .unwrap();
    assert!(refusal.contains("WARN"), "{refusal}");
    assert!(refusal.contains("not pinned"), "{refusal}");
    stranger.kill9();

    // SIGTERM stops a node cleanly: exit status 0, admin socket removed.
    let mut child = base.child.take().unwrap();
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill(2) takes any pid and signal; it only sends the signal.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "no exit after SIGTERM:{}",
            base.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "{exit}:{}", base.logs());
    assert!(!base.socket().exists());
}

/// `GET /metrics` on the loopback port, the body returned.
fn scrape(port: u16) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string()
}
