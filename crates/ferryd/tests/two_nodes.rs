//! Two real ferryd processes on loopback QUIC: a base sends a directory (an
//! empty file in it) to a leaf through the admin API, the leaf delivers
//! every file verified and writes the directory back out by name, and a
//! node that is not pinned is refused at the handshake.

mod support;

use std::time::{Duration, Instant};

use ferryd::admin::{Request, stream as request_stream};
use rand::{RngCore, SeedableRng};
use support::{configure, free_port, init, peer, runtime};

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
        ("one-byte", 1),
        // Empty files (placeholders in GitOps trees) travel too.
        ("manifests/.gitkeep", 0),
    ] {
        let mut data = vec![0; len];
        rng.fill_bytes(&mut data);
        std::fs::write(payload.join(name), &data).unwrap();
        files.push((name, data));
    }
    let rt = runtime();
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
    // The leaf writes the directory back out by the names the files were
    // sent under (`ferry get --all`), and one file by its name.
    let restored = root.path().join("restored");
    let answer = leaf
        .ask(
            &rt,
            &Request::Restore {
                out: restored.clone(),
                under: None,
            },
        )
        .unwrap();
    assert_eq!(
        answer["written"].as_array().unwrap().len(),
        files.len(),
        "{answer}"
    );
    assert_eq!(answer["skipped"].as_array().unwrap().len(), 0, "{answer}");
    for (name, data) in &files {
        assert!(
            std::fs::read(restored.join(name)).unwrap() == *data,
            "{name} differs"
        );
    }
    let one = root.path().join("deploy.yaml");
    leaf.ask(
        &rt,
        &Request::GetNamed {
            name: "manifests/deploy.yaml".into(),
            out: one.clone(),
        },
    )
    .unwrap();
    assert!(std::fs::read(&one).unwrap() == files[0].1);
    let unknown = leaf.ask(
        &rt,
        &Request::GetNamed {
            name: "manifests/missing.yaml".into(),
            out: one,
        },
    );
    assert!(unknown.unwrap_err().contains("no file delivered here"));
    // Custody went back to the base, which released it.
    base.wait_for(&rt, "custody released", minute, |s| {
        s["counters"]["custody_released"].as_u64() == Some(files.len() as u64)
    });
    // Prometheus sees the traffic to the leaf and the released bundles.
    let metrics = scrape(metrics_port);
    let sample = |series: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {series}:\n{metrics}"))
            .parse()
            .unwrap()
    };
    let sent_bytes = sample("ferry_link_bytes_total{peer=\"leaf\",direction=\"out\"}");
    assert!(sent_bytes > 3 << 20, "{metrics}");
    // The connection to the leaf, as QUIC sees it.
    assert!(
        sample("ferry_quic_packets_sent_total{peer=\"leaf\"}") > 0,
        "{metrics}"
    );
    assert!(
        metrics.contains("ferry_quic_rtt_seconds{peer=\"leaf\"} "),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "ferry_bundles{{state=\"released\"}} {}\n",
            files.len()
        )),
        "{metrics}"
    );

    // The stranger was refused by the leaf at the handshake, by node id.
    let refusal = leaf.wait_for_log("the stranger's refusal", &[&stranger.id[..16]]);
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

#[test]
fn the_admin_api_lists_peers_and_serves_the_log_as_it_grows() {
    let root = tempfile::tempdir().unwrap();
    let mut base = init(root.path(), "base", "base");
    let mut leaf = init(root.path(), "leaf", "leaf");
    let leaf_port = free_port();
    configure(
        &base,
        "base",
        free_port(),
        &peer("leaf", &leaf, Some(leaf_port), "lte-bush"),
    );
    configure(
        &leaf,
        "leaf",
        leaf_port,
        &peer("base", &base, None, "geo-sat"),
    );
    leaf.start();
    base.start();
    let rt = runtime();
    let minute = Duration::from_secs(60);
    leaf.wait_for(&rt, "the admin API", minute, |_| true);

    // Follow the leaf's log from now on, on a thread of its own, until the
    // line saying the bundle was delivered arrives.
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    let socket = leaf.socket();
    let follower = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let follow = Request::Logs {
            lines: Some(0),
            follow: true,
        };
        let mut first = None;
        let result = rt.block_on(request_stream(&socket, &follow, |message| {
            if first.is_none() {
                first = Some(message.clone());
                return true;
            }
            let line = message["line"].as_str().unwrap_or_default().to_string();
            let done = line.contains("delivered");
            let _ = lines_tx.send(line);
            !done
        }));
        (result, first)
    });

    let payload = root.path().join("deploy.yaml");
    let mut data = vec![0; 200_000];
    rand_chacha::ChaCha8Rng::seed_from_u64(11).fill_bytes(&mut data);
    std::fs::write(&payload, &data).unwrap();
    let sent = base.send(&rt, &payload, "leaf");
    let manifest = sent[0]["manifest"].as_str().unwrap().to_string();
    let mut followed = Vec::new();
    while !followed
        .last()
        .is_some_and(|l: &String| l.contains("delivered"))
    {
        let line = lines_rx
            .recv_timeout(minute)
            .unwrap_or_else(|_| panic!("no delivery line followed: {followed:?}{}", leaf.logs()));
        followed.push(line);
    }
    let (result, first) = follower.join().unwrap();
    result.unwrap();
    // The first answer holds the last 0 lines; then come new lines only.
    assert_eq!(first.unwrap()["lines"], serde_json::json!([]));
    let delivered = followed.last().unwrap();
    assert!(
        delivered.contains(" INFO ") && delivered.contains(&manifest),
        "{delivered}"
    );
    assert!(
        followed.iter().any(|l| l.contains("custody accepted")),
        "{followed:?}"
    );

    // `logs` without follow: lines formatted exactly as on stderr, the
    // daemon's start among them, and `lines` counts from the end.
    let all = leaf
        .ask(
            &rt,
            &Request::Logs {
                lines: None,
                follow: false,
            },
        )
        .unwrap();
    let all: Vec<&str> = all["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(all.iter().any(|l| l.contains("ferryd starting")), "{all:?}");
    let stderr = leaf.log();
    for line in &all {
        assert!(
            stderr.contains(line),
            "{line:?} is not on stderr:\n{stderr}"
        );
    }
    for line in &followed {
        assert!(all.contains(&line.as_str()), "{line:?} missing from logs");
    }
    let last_two = leaf
        .ask(
            &rt,
            &Request::Logs {
                lines: Some(2),
                follow: false,
            },
        )
        .unwrap();
    assert_eq!(last_two["lines"].as_array().unwrap().len(), 2);

    // `peers` on both sides: who, how, and what crossed.
    let peers = base.ask(&rt, &Request::Peers).unwrap();
    let peers = peers["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 1, "{peers:?}");
    let p = &peers[0];
    assert_eq!(p["name"], "leaf");
    assert_eq!(p["node"], leaf.id.as_str());
    assert_eq!(p["transport"], "quic");
    assert_eq!(p["address"], format!("127.0.0.1:{leaf_port}"));
    assert_eq!(p["profile"], "lte-bush");
    assert_eq!(p["up"], true, "{p}");
    assert!(p["bytes_out"].as_u64().unwrap() > 200_000, "{p}");
    assert!(p["frames_in"].as_u64().unwrap() > 0, "{p}");
    let peers = leaf.ask(&rt, &Request::Peers).unwrap();
    let p = &peers["peers"][0];
    assert_eq!(p["name"], "base");
    assert_eq!(p["node"], base.id.as_str());
    assert_eq!(p["address"], serde_json::Value::Null);
    assert_eq!(p["profile"], "geo-sat");
    assert_eq!(p["up"], true, "{p}");
    assert!(p["bytes_in"].as_u64().unwrap() > 200_000, "{p}");

    // A malformed request is answered with an error, and the session and
    // the daemon go on.
    let answer = raw_exchange(
        &leaf.socket(),
        "{\"cmd\":\"logs\",\"lines\":-1}\n{\"cmd\":\"peers\"}\n",
        2,
    );
    assert_eq!(answer[0]["ok"], false, "{answer:?}");
    assert!(
        answer[0]["error"].as_str().unwrap().contains("bad request"),
        "{answer:?}"
    );
    assert_eq!(answer[1]["ok"], true, "{answer:?}");
}

/// Writes `text` to the admin socket and reads `n` answer lines.
fn raw_exchange(socket: &std::path::Path, text: &str, n: usize) -> Vec<serde_json::Value> {
    use std::io::{BufRead, BufReader, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
    stream.write_all(text.as_bytes()).unwrap();
    let mut reader = BufReader::new(stream);
    (0..n)
        .map(|_| {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            serde_json::from_str(&line).unwrap()
        })
        .collect()
}
