//! Discovery and bootstrap with real ferryd processes and real multicast:
//! a base advertises `_ferry._udp` over mDNS; a leaf that holds only the
//! base's id as its anchor finds it, enrols, receives its routes, and then
//! gets files sent to it (and to a group the welcome put it in), verified.
//! After a restart without mDNS both sides still reach each other from
//! `learned.json`. A leaf with another anchor never connects (not even to
//! a forged advertisement of its anchor's id), and a leaf the base does
//! not let enrol is refused with a log line naming it. With `enrol =
//! "any"` a base takes any leaf, and warns that it does.
//!
//! Each test runs in a private network namespace (its own loopback, mDNS on
//! the standard port) when it may create one (root, or CAP_SYS_ADMIN);
//! otherwise (or with `FERRY_TEST_HOST_NETWORK=1`) on the host's loopback
//! with an mDNS port of its own.

mod support;

use std::path::Path;
use std::time::Duration;

use ferryd::admin::Request;
use rand::{RngCore, SeedableRng};
use support::{Node, configure, free_port, init, runtime};

const MINUTE: Duration = Duration::from_secs(60);

/// Moves this test's thread (and the ferryd processes it starts) into a
/// new network namespace whose loopback is up with multicast on. False if
/// the namespace cannot be made here.
fn private_network() -> bool {
    // SAFETY: unshare(2) only changes the calling thread's namespaces.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return false;
    }
    // SAFETY: a plain socket for the interface ioctls, closed below; the
    // ifreq is zeroed and carries a NUL-terminated name.
    unsafe {
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        assert!(sock >= 0, "socket: {}", std::io::Error::last_os_error());
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        let got = libc::ioctl(sock, libc::SIOCGIFFLAGS as _, &mut req);
        assert_eq!(
            got,
            0,
            "SIOCGIFFLAGS lo: {}",
            std::io::Error::last_os_error()
        );
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_MULTICAST) as libc::c_short;
        let set = libc::ioctl(sock, libc::SIOCSIFFLAGS as _, &req);
        assert_eq!(
            set,
            0,
            "SIOCSIFFLAGS lo: {}",
            std::io::Error::last_os_error()
        );
        libc::close(sock);
    }
    true
}

/// The `[discovery]` keys every node of a test shares, and the mDNS port:
/// mDNS on loopback only, on the standard port in a private namespace,
/// else on a port of this test's own.
fn network() -> (String, u16) {
    // FERRY_TEST_HOST_NETWORK=1 tries the fallback where namespaces work too.
    if std::env::var_os("FERRY_TEST_HOST_NETWORK").is_none() && private_network() {
        eprintln!("mDNS in a private network namespace, port 5353");
        ("interfaces = [\"lo\"]\n".into(), 5353)
    } else {
        let port = free_port();
        eprintln!("no private network namespace here: mDNS on the host's loopback, port {port}");
        (format!("interfaces = [\"lo\"]\nmdns_port = {port}\n"), port)
    }
}

/// A leaf's configuration that holds only its anchor's id.
fn anchored(anchor: &str, net: &str) -> String {
    format!("[discovery]\nanchor = \"{anchor}\"\n{net}")
}

fn learned(node: &Node) -> serde_json::Value {
    std::fs::read_to_string(node.dir.join("learned.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// Sends `data` from `from` to `to` and waits until `at` delivered it;
/// then checks the bytes `at` hands back.
fn send_and_check(
    rt: &tokio::runtime::Runtime,
    from: &mut Node,
    at: &mut Node,
    to: &str,
    name: &str,
    data: &[u8],
    scratch: &Path,
) {
    let file = scratch.join(name);
    std::fs::write(&file, data).unwrap();
    let sent = from.send(rt, &file, to);
    let manifest = sent[0]["manifest"].as_str().unwrap().to_string();
    at.wait_for(rt, &format!("{name} delivered"), MINUTE, |s| {
        s["delivered"]
            .as_array()
            .is_some_and(|d| d.iter().any(|d| d["manifest"] == manifest.as_str()))
    });
    let out = scratch.join(format!("{name}.out"));
    at.ask(
        rt,
        &Request::Get {
            manifest: manifest.clone(),
            out: out.clone(),
        },
    )
    .unwrap_or_else(|e| panic!("get {name}: {e}{}", at.logs()));
    assert!(std::fs::read(&out).unwrap() == data, "{name} differs");
}

#[test]
fn a_new_leaf_finds_its_base_enrols_gets_its_routes_and_survives_a_restart_without_mdns() {
    let (net, _) = network();
    let root = tempfile::tempdir().unwrap();
    let mut base = init(root.path(), "base", "base");
    let mut leaf = init(root.path(), "leaf", "leaf");
    let (base_id, leaf_id) = (base.id.clone(), leaf.id.clone());
    let base_port = free_port();
    let base_config = |advertise: bool| {
        format!(
            "[discovery]\nadvertise = {advertise}\nenrol = [\"{leaf_id}\"]\nwelcome_groups = [\"leaves\"]\n{net}"
        )
    };
    configure(&base, "base", base_port, &base_config(true));
    // The leaf holds nothing but its key and the base's id.
    configure(&leaf, "leaf", free_port(), &anchored(&base.id, &net));
    base.start();
    leaf.start();
    let rt = runtime();

    // Found over mDNS, dialled with the base's id pinned, enrolled.
    leaf.wait_for_log("the anchor found", &["found the anchor", &base.id[..16]]);
    let enrolled = base.wait_for_log("the leaf enrolled", &["enrolled a leaf", &leaf.id[..16]]);
    let name = format!("leaf-{}", &leaf.id[..8]);
    assert!(enrolled.contains(&name), "{enrolled}");
    leaf.wait_for(&rt, "the link to the base", MINUTE, |s| {
        s["links_up"].as_array().is_some_and(|l| l.len() == 1)
    });
    // Its routes arrived in an Admin bundle and were kept.
    leaf.wait_for_log("routes from the base", &["routes received from the anchor"]);
    let kept = learned(&leaf);
    assert_eq!(kept["welcome"]["from"], base.id.as_str(), "{kept}");
    assert_eq!(kept["welcome"]["default_route"], base.id.as_str(), "{kept}");
    assert_eq!(kept["welcome"]["groups"], serde_json::json!(["leaves"]));
    assert_eq!(kept["anchor"]["node"], base.id.as_str(), "{kept}");
    assert_eq!(
        kept["anchor"]["addrs"],
        serde_json::json!([format!("127.0.0.1:{base_port}")])
    );
    let kept = learned(&base);
    assert_eq!(kept["enrolled"][0]["node"], leaf.id.as_str(), "{kept}");
    assert_eq!(kept["enrolled"][0]["name"], name.as_str(), "{kept}");

    // The base lists the enrolled leaf among its peers, link up.
    let peers = base.ask(&rt, &Request::Peers).unwrap();
    let listed = peers["peers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == name.as_str())
        .unwrap_or_else(|| panic!("{name} not in {peers}"));
    assert_eq!(listed["node"], leaf.id.as_str(), "{peers}");
    assert_eq!(listed["up"], true, "{peers}");

    // Files reach the leaf by the name it enrolled under and by the group
    // its welcome named.
    let seed = 11;
    eprintln!("payload seed {seed}");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut data = vec![0; 300_000];
    rng.fill_bytes(&mut data);
    let scratch = root.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    send_and_check(&rt, &mut base, &mut leaf, &name, "to-leaf", &data, &scratch);
    rng.fill_bytes(&mut data);
    send_and_check(
        &rt,
        &mut base,
        &mut leaf,
        "group:leaves",
        "to-group",
        &data,
        &scratch,
    );
    // And from the leaf to the base, over the default route it was sent.
    rng.fill_bytes(&mut data[..5_000]);
    send_and_check(
        &rt,
        &mut leaf,
        &mut base,
        &base_id,
        "to-base",
        &data[..5_000],
        &scratch,
    );

    // Restart both with the base no longer advertising: the leaf reaches it
    // at the address it learned, the base still knows the leaf.
    base.kill9();
    leaf.kill9();
    configure(&base, "base", base_port, &base_config(false));
    let before = leaf.log().len();
    base.start();
    leaf.start();
    leaf.wait_for(&rt, "the link to the base after a restart", MINUTE, |s| {
        s["links_up"].as_array().is_some_and(|l| l.len() == 1)
    });
    assert!(
        !leaf.log()[before..].contains("found the anchor"),
        "the base no longer advertises:{}",
        leaf.logs()
    );
    rng.fill_bytes(&mut data);
    send_and_check(
        &rt,
        &mut base,
        &mut leaf,
        "group:leaves",
        "after-restart",
        &data,
        &scratch,
    );
    // Enrolment happened once: the restarted base took the leaf from learned.json.
    assert_eq!(
        base.log().matches("enrolled a leaf").count(),
        1,
        "{}",
        base.logs()
    );
}

#[test]
fn a_leaf_with_another_anchor_stays_away_and_one_not_allowed_to_enrol_is_refused() {
    let (net, mdns_port) = network();
    let root = tempfile::tempdir().unwrap();
    let mut base = init(root.path(), "base", "base");
    let mut elsewhere = init(root.path(), "elsewhere", "leaf");
    let mut uninvited = init(root.path(), "uninvited", "leaf");
    // The base lets some other node enrol, not these two.
    let someone = init(root.path(), "someone", "leaf");
    configure(
        &base,
        "base",
        free_port(),
        &format!(
            "[discovery]\nadvertise = true\nenrol = [\"{}\"]\n{net}",
            someone.id
        ),
    );
    // This leaf's anchor is a base that is not on this network.
    configure(
        &elsewhere,
        "leaf",
        free_port(),
        &anchored(&someone.id, &net),
    );
    let uninvited_port = free_port();
    configure(
        &uninvited,
        "leaf",
        uninvited_port,
        &anchored(&base.id, &net),
    );
    base.start();
    elsewhere.start();
    uninvited.start();
    let rt = runtime();

    // The uninvited leaf finds the base and dials it; the base refuses it
    // at the handshake, naming it.
    uninvited.wait_for_log("the anchor found", &["found the anchor", &base.id[..16]]);
    let refusal = base.wait_for_log("the refusal", &["refused QUIC peer", &uninvited.id[..16]]);
    assert!(refusal.contains("WARN"), "{refusal}");
    assert!(refusal.contains("not pinned"), "{refusal}");
    uninvited.wait_for_log(
        "the failed dial",
        &["cannot connect to the anchor", &base.id[..16]],
    );

    // The other leaf sees the base's advertisement and says why it ignores it.
    let ignored = elsewhere.wait_for_log(
        "the base ignored",
        &["not this leaf's anchor", &base.id[..16]],
    );
    assert!(ignored.contains(&someone.id[..16]), "{ignored}");
    // An advertisement is only a hint: one forged with the anchor's id but
    // pointing at another node is refused at the TLS handshake.
    let forger = mdns_sd::ServiceDaemon::new_with_port(mdns_port).unwrap();
    forger.disable_interface(mdns_sd::IfKind::All).unwrap();
    forger.enable_interface("lo").unwrap();
    let impostor_port = uninvited_port;
    let forged = mdns_sd::ServiceInfo::new(
        ferryd::discovery::SERVICE,
        "forged",
        "forged.local.",
        "127.0.0.1",
        impostor_port,
        &[("id", someone.id.as_str()), ("role", "base")][..],
    )
    .unwrap();
    forger.register(forged).unwrap();
    elsewhere.wait_for_log(
        "the forged anchor found",
        &["found the anchor", &someone.id[..16]],
    );
    let refused = elsewhere.wait_for_log(
        "the impostor refused",
        &["refused QUIC peer", &uninvited.id[..16]],
    );
    assert!(
        refused.contains(&format!("expected node {}", &someone.id[..16])),
        "{refused}"
    );
    let _ = forger.shutdown();

    // Nobody got a link, nothing enrolled, and the base never heard of
    // the leaf with another anchor.
    for leaf in [&mut elsewhere, &mut uninvited] {
        let status = leaf.wait_for(&rt, "status", MINUTE, |_| true);
        assert_eq!(status["links_up"], serde_json::json!([]), "{status}");
        assert!(!leaf.log().contains("link up"), "{}", leaf.logs());
    }
    let status = base.wait_for(&rt, "status", MINUTE, |_| true);
    assert_eq!(status["links_up"], serde_json::json!([]), "{status}");
    assert!(!base.log().contains("enrolled a leaf"), "{}", base.logs());
    assert!(!base.log().contains(&elsewhere.id[..16]), "{}", base.logs());
    for name in ["base", "elsewhere", "uninvited"] {
        assert!(
            !root.path().join(name).join("learned.json").exists(),
            "{name}"
        );
    }
}

#[test]
fn with_enrol_any_a_base_takes_any_leaf_that_holds_a_key() {
    let (net, _) = network();
    let root = tempfile::tempdir().unwrap();
    let mut base = init(root.path(), "base", "base");
    let mut leaf = init(root.path(), "leaf", "leaf");
    configure(
        &base,
        "base",
        free_port(),
        &format!("[discovery]\nadvertise = true\nenrol = \"any\"\n{net}"),
    );
    configure(&leaf, "leaf", free_port(), &anchored(&base.id, &net));
    base.start();
    leaf.start();
    let open = base.wait_for_log("the open enrolment", &["enrolment open to any node"]);
    assert!(open.contains("WARN"), "{open}");
    base.wait_for_log("the leaf enrolled", &["enrolled a leaf", &leaf.id[..16]]);
    leaf.wait_for_log("routes from the base", &["routes received from the anchor"]);
    let kept = learned(&leaf);
    assert_eq!(kept["welcome"]["default_route"], base.id.as_str(), "{kept}");
    assert_eq!(kept["welcome"]["groups"], serde_json::json!([]), "{kept}");
    assert_eq!(learned(&base)["enrolled"][0]["node"], leaf.id.as_str());
    let rt = runtime();
    leaf.wait_for(&rt, "the link to the base", MINUTE, |s| {
        s["links_up"].as_array().is_some_and(|l| l.len() == 1)
    });
}
