//! Two real ferryd processes with a trust policy at the leaf: a release
//! signed by a trusted publisher key is applied and served; an unsigned
//! one, one signed by a key the leaf does not trust, and one naming a
//! repository outside the key's rights are each refused with a clear
//! reason — logged at the leaf, reported back to the base — and never
//! served. The served repository keeps the last trusted release, and the
//! base, told of each refusal, makes its next release a whole one. Once the
//! key that signed what is served is revoked, the leaf stops serving it.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ferry_git::fixture;
use ferry_trust::{PublisherKey, Signed, Statement};
use ferryd::admin::Request;
use support::{Node, configure, free_port, init, peer, runtime};

fn ls_remote(url: &str) -> Option<Vec<String>> {
    let out = Command::new("git")
        .args(["ls-remote", "--refs", url])
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .unwrap();
    out.status.success().then(|| {
        let mut refs: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.replace('\t', " "))
            .collect();
        refs.sort();
        refs
    })
}

fn expected(refs: &std::collections::BTreeMap<String, ferry_git::Oid>) -> Vec<String> {
    let mut v: Vec<String> = refs.iter().map(|(n, o)| format!("{o} {n}")).collect();
    v.sort();
    v
}

/// Writes the base's configuration: signing with `key_file`, if any.
fn configure_base(base: &Node, port: u16, leaf: &Node, leaf_port: u16, key_file: Option<&str>) {
    let trust = key_file.map_or(String::new(), |k| {
        format!("[trust]\npublisher_key = \"{k}\"\n")
    });
    configure(
        base,
        "base",
        port,
        &format!("{}{trust}", peer("leaf", leaf, Some(leaf_port), "lte-bush")),
    );
}

#[test]
fn the_leaf_applies_only_releases_its_policy_trusts() {
    let root = tempfile::tempdir().unwrap();
    let work = root.path();
    let mut base = init(work, "base", "base");
    let mut leaf = init(work, "leaf", "leaf");
    let trusted = PublisherKey::from_seed([41; 32]);
    let stranger = PublisherKey::from_seed([42; 32]);
    trusted.save(base.dir.join("trusted.pem")).unwrap();
    stranger.save(base.dir.join("stranger.pem")).unwrap();

    let (base_port, leaf_port, http) = (free_port(), free_port(), free_port());
    configure_base(&base, base_port, &leaf, leaf_port, Some("trusted.pem"));
    configure(
        &leaf,
        "leaf",
        leaf_port,
        &format!(
            "{}[git]\nlisten = \"127.0.0.1:{http}\"\nroot = \"served\"\n\
             [[trust.publisher]]\nkey = \"{}\"\ngit = [\"fleet\"]\n",
            peer("base", &base, None, "lte-bush"),
            trusted.public()
        ),
    );
    leaf.start();
    base.start();
    let rt = runtime();

    let seed = 17;
    eprintln!("fixture seed {seed}");
    let replay = fixture::generate(&work.join("upstream.git"), 30, seed).unwrap();
    let steps = &replay.steps;
    let publish = |base: &mut Node, name: &str| {
        base.wait_for(&rt, "the admin API", Duration::from_secs(60), |_| true);
        base.ask(
            &rt,
            &Request::GitPublish {
                repo: replay.git.dir().to_owned(),
                name: Some(name.into()),
                refs: vec![],
                to: "leaf".into(),
                lifetime_s: None,
                whole: false,
            },
        )
        .unwrap_or_else(|e| panic!("publish failed: {e}{}", base.logs()))
    };
    let url = |name: &str| format!("http://127.0.0.1:{http}/{name}.git");
    let wait_for_refs = |name: &str, want: &[String], leaf: &Node| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while ls_remote(&url(name)).as_deref() != Some(want) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {name}; {}",
                leaf.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };

    // 1. Signed by the trusted key, in policy: applied and served.
    fixture::set_refs(&replay.git, &steps[5].refs).unwrap();
    publish(&mut base, "fleet");
    let trusted_refs = expected(&steps[5].refs);
    wait_for_refs("fleet", &trusted_refs, &leaf);

    // 2. A repository the key may not publish: refused, reported, not served.
    publish(&mut base, "other");
    let line = leaf.wait_for_log("the out-of-policy refusal", &["release refused", "other"]);
    assert!(line.contains("may not publish git"), "{line}");
    let report = base.wait_for_log(
        "the refusal reported to the base",
        &["deletion reported", "may not publish git"],
    );
    assert!(report.contains(&leaf.id[..16]), "{report}");
    // The base forgets what it thought the leaf holds of a refused release.
    let refused = |base: &Node, n: usize| {
        base.wait_for_log_lines(
            "the base resetting the refused destination",
            &["git release refused at the destination"],
            n,
        );
    };
    refused(&base, 1);

    // 3. Signed by a key the leaf does not trust: refused.
    base.kill9();
    configure_base(&base, base_port, &leaf, leaf_port, Some("stranger.pem"));
    base.start();
    fixture::set_refs(&replay.git, &steps[10].refs).unwrap();
    publish(&mut base, "fleet");
    let line = leaf.wait_for_log(
        "the unknown-key refusal",
        &["release refused", "is not in this node's trust policy"],
    );
    assert!(line.contains(&stranger.public().to_string()), "{line}");
    refused(&base, 2);

    // 4. Unsigned: refused.
    base.kill9();
    configure_base(&base, base_port, &leaf, leaf_port, None);
    base.start();
    fixture::set_refs(&replay.git, &steps[15].refs).unwrap();
    publish(&mut base, "fleet");
    leaf.wait_for_log("the unsigned refusal", &["release refused", "unsigned"]);
    refused(&base, 3);

    // Nothing refused was served: the leaf still serves the trusted release,
    // and no repository named "other".
    assert_eq!(ls_remote(&url("fleet")), Some(trusted_refs));
    assert_eq!(ls_remote(&url("other")), None);
    assert!(!Path::new(&leaf.dir.join("served/other.git")).exists());

    // 5. Signed by the trusted key again: the newest refs arrive.
    base.kill9();
    configure_base(&base, base_port, &leaf, leaf_port, Some("trusted.pem"));
    base.start();
    fixture::set_refs(&replay.git, &steps[20].refs).unwrap();
    publish(&mut base, "fleet");
    wait_for_refs("fleet", &expected(&steps[20].refs), &leaf);
    let state = std::fs::read_to_string(leaf.dir.join("trust-state.json")).unwrap();
    assert!(state.contains("git fleet node:"), "{state}");

    // 6. The trusted key rotates to a successor; the statement travels to
    // the leaf as a bundle. The successor publishes; the old key no longer.
    let successor = PublisherKey::from_seed([43; 32]);
    successor.save(base.dir.join("successor.pem")).unwrap();
    let rotation = Signed::sign(
        &trusted,
        &Statement::Rotation {
            new_key: successor.public(),
        },
        0,
    );
    base.publish_statement(&rt, "rotation.stmt", &rotation, "leaf");
    leaf.wait_for_log("the rotation taken", &["key statement accepted", "Rotated"]);
    base.kill9();
    configure_base(&base, base_port, &leaf, leaf_port, Some("successor.pem"));
    base.start();
    fixture::set_refs(&replay.git, &steps[25].refs).unwrap();
    publish(&mut base, "fleet");
    wait_for_refs("fleet", &expected(&steps[25].refs), &leaf);
    base.kill9();
    configure_base(&base, base_port, &leaf, leaf_port, Some("trusted.pem"));
    base.start();
    fixture::set_refs(&replay.git, &steps[29].refs).unwrap();
    publish(&mut base, "fleet");
    let line = leaf.wait_for_log(
        "the retired-key refusal",
        &["release refused", "was rotated to"],
    );
    assert!(line.contains(&successor.public().to_string()), "{line}");
    assert_eq!(ls_remote(&url("fleet")), Some(expected(&steps[25].refs)));

    // 7. The successor key is revoked (by itself). What it signed is
    // checked again at the next request, and no longer served.
    let revocation = Signed::sign(
        &successor,
        &Statement::Revocation {
            revoked: successor.public(),
            reason: "key left on a field laptop".into(),
        },
        0,
    );
    base.publish_statement(&rt, "revocation.stmt", &revocation, "leaf");
    leaf.wait_for_log(
        "the revocation taken",
        &["key statement accepted", "Revoked"],
    );
    assert_eq!(ls_remote(&url("fleet")), None);
    let line = leaf.wait_for_log(
        "the request refused",
        &["request refused", "fleet", "key left on a field laptop"],
    );
    assert!(line.contains("is revoked"), "{line}");
}
