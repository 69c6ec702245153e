//! Workloads for tests and benchmarks: a generated GitOps repository whose
//! history is replayed step by step, or an existing repository's
//! first-parent history.
//!
//! `generate` writes, with `git fast-import`, a repository of YAML manifests
//! with realistic churn (image tags, replica counts, config maps added and
//! removed), a few binary blobs, a feature branch merged and deleted, a
//! `staging` branch that follows `main`, lightweight and annotated tags and
//! one force-push of `main`. Every [`Step`] is the full set of refs after one
//! event; [`set_refs`] makes a repository show exactly one step.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;

use crate::{Git, GitError, Oid};

/// The refs of a repository after one event of its history.
#[derive(Clone, Debug)]
pub struct Step {
    pub refs: BTreeMap<String, Oid>,
    pub what: String,
}

/// A repository holding every object of a history, and that history.
#[derive(Clone, Debug)]
pub struct Replay {
    pub git: Git,
    pub steps: Vec<Step>,
}

/// A deterministic generator (SplitMix64): no dependency, same seed ⇒ same
/// repository.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

type Tree = BTreeMap<String, Arc<Vec<u8>>>;

const APPS: [&str; 12] = [
    "api",
    "web",
    "worker",
    "ingest",
    "auth",
    "billing",
    "search",
    "notify",
    "gateway",
    "metrics",
    "scheduler",
    "cache",
];

fn deployment(app: &str, tag: &str, replicas: u64, env: u64) -> Vec<u8> {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {app}\n  namespace: prod\n  labels:\n    app.kubernetes.io/name: {app}\n    app.kubernetes.io/part-of: fleet\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels:\n      app.kubernetes.io/name: {app}\n  template:\n    metadata:\n      labels:\n        app.kubernetes.io/name: {app}\n    spec:\n      containers:\n        - name: {app}\n          image: registry.example.com/fleet/{app}:{tag}\n          ports:\n            - containerPort: 8080\n          env:\n            - name: LOG_LEVEL\n              value: info\n            - name: FEATURE_GATE\n              value: \"{env}\"\n          resources:\n            requests:\n              cpu: 100m\n              memory: 128Mi\n            limits:\n              memory: 512Mi\n          readinessProbe:\n            httpGet:\n              path: /healthz\n              port: 8080\n"
    )
    .into_bytes()
}

fn service(app: &str) -> Vec<u8> {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {app}\n  namespace: prod\nspec:\n  selector:\n    app.kubernetes.io/name: {app}\n  ports:\n    - port: 80\n      targetPort: 8080\n"
    )
    .into_bytes()
}

fn config_map(name: &str, rng: &mut Rng) -> Vec<u8> {
    let mut s = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: prod\ndata:\n"
    );
    for i in 0..(5 + rng.below(20)) {
        let _ = writeln!(s, "  key{i}: \"{:x}\"", rng.next() >> 16);
    }
    s.into_bytes()
}

struct Builder {
    rng: Rng,
    stream: Vec<u8>,
    marks: u64,
    time: u64,
    trees: BTreeMap<u64, Tree>,
}

impl Builder {
    /// Appends a commit on `parents` (marks) whose tree is `tree`, writing
    /// only the paths that differ from the first parent's tree.
    fn commit(&mut self, parents: &[u64], tree: Tree, message: &str) -> u64 {
        self.marks += 1;
        self.time += 300 + self.rng.below(3000);
        let mark = self.marks;
        let base = parents
            .first()
            .map(|p| self.trees[p].clone())
            .unwrap_or_default();
        let s = &mut self.stream;
        let _ = write!(
            s,
            "commit refs/heads/gen\nmark :{mark}\nauthor Ops Bot <ops@example.com> {t} +0000\ncommitter Ops Bot <ops@example.com> {t} +0000\ndata {}\n{message}\n",
            message.len(),
            t = self.time
        );
        match parents.first() {
            Some(p) => {
                let _ = writeln!(s, "from :{p}");
            }
            None => {
                let _ = writeln!(s, "from 0000000000000000000000000000000000000000");
            }
        }
        for p in &parents[1.min(parents.len())..] {
            let _ = writeln!(s, "merge :{p}");
        }
        for (path, content) in &tree {
            if base.get(path) != Some(content) {
                let _ = write!(s, "M 100644 inline {path}\ndata {}\n", content.len());
                s.extend_from_slice(content);
                s.push(b'\n');
            }
        }
        for path in base.keys().filter(|p| !tree.contains_key(*p)) {
            let _ = writeln!(s, "D {path}");
        }
        s.push(b'\n');
        self.trees.insert(mark, tree);
        mark
    }

    /// A typical GitOps change to `tree`: image bumps, replica changes,
    /// config maps added or removed, now and then a binary asset.
    fn churn(&mut self, tree: &mut Tree, n: u64, state: &mut BTreeMap<String, (u64, u64, u64)>) {
        let kind = self.rng.below(100);
        let app = APPS[self.rng.below(APPS.len() as u64) as usize];
        let entry = state.entry(app.to_owned()).or_insert((1, 2, 0));
        match kind {
            0..=54 => entry.0 += 1,
            55..=69 => entry.1 = 1 + self.rng.below(8),
            70..=79 => entry.2 = self.rng.below(1000),
            80..=89 => {
                let name = format!("config/{app}-{}.yaml", n % 17);
                let cm = config_map(&format!("{app}-{}", n % 17), &mut self.rng);
                tree.insert(name, Arc::new(cm));
            }
            90..=94 => {
                if let Some(k) = tree.keys().find(|k| k.starts_with("config/")).cloned() {
                    tree.remove(&k);
                }
            }
            _ => {
                let size = 8 * 1024 + self.rng.below(24 * 1024) as usize;
                let name = format!("assets/logo-{}.png", self.rng.below(4));
                tree.insert(name, Arc::new(self.rng.bytes(size)));
            }
        }
        let (tag, replicas, env) = *entry;
        tree.insert(
            format!("apps/{app}/deployment.yaml"),
            Arc::new(deployment(app, &format!("1.{tag}.0"), replicas, env)),
        );
    }
}

/// Generates a repository of about `commits` commits in `dir` (created, bare)
/// and the steps that replay its history.
pub fn generate(dir: &Path, commits: usize, seed: u64) -> Result<Replay, GitError> {
    let init = std::process::Command::new("git")
        .args(["init", "--bare", "-q", "-b", "main"])
        .arg(dir)
        .output()
        .map_err(|source| GitError::Spawn {
            command: "init".into(),
            dir: dir.to_owned(),
            source,
        })?;
    if !init.status.success() {
        return Err(GitError::Failed {
            command: "init".into(),
            dir: dir.to_owned(),
            status: init.status.to_string(),
            stderr: String::from_utf8_lossy(&init.stderr).into(),
        });
    }
    let git = Git::new(dir);
    let mut b = Builder {
        rng: Rng(seed),
        stream: Vec::new(),
        marks: 0,
        time: 1_700_000_000,
        trees: BTreeMap::new(),
    };
    enum Ev {
        Ref(&'static str, u64),
        Delete(&'static str),
        Tag(String, u64),
        Annotated(String, u64),
    }
    let mut events: Vec<(Ev, String)> = Vec::new();
    let mut state = BTreeMap::new();
    let mut tree = Tree::new();
    for app in APPS {
        tree.insert(
            format!("apps/{app}/deployment.yaml"),
            Arc::new(deployment(app, "1.0.0", 2, 0)),
        );
        tree.insert(format!("apps/{app}/service.yaml"), Arc::new(service(app)));
    }
    let mut components = String::new();
    for i in 0..600 {
        let _ = writeln!(
            components,
            "# component {i}\n- name: controller-{i}\n  image: ghcr.io/fluxcd/controller-{i}:v2.{}.0",
            i % 7
        );
    }
    tree.insert(
        "clusters/prod/flux-system/gotk-components.yaml".into(),
        Arc::new(components.into_bytes()),
    );
    tree.insert("assets/logo-0.png".into(), Arc::new(b.rng.bytes(20 * 1024)));
    let mut main = b.commit(&[], tree.clone(), "Initial fleet layout");
    events.push((Ev::Ref("refs/heads/main", main), "initial commit".into()));
    let mut feature: Option<u64> = None;
    let (fork, merge) = (commits / 4, commits / 4 + 30);
    let force = commits * 7 / 10;
    let mut n = 1;
    while n < commits {
        if n == fork {
            feature = Some(main);
            events.push((Ev::Ref("refs/heads/feature/canary", main), "branch".into()));
        }
        if let Some(f) = feature.filter(|_| n > fork && n < merge && n % 3 == 0) {
            let mut t = b.trees[&f].clone();
            t.insert(
                "apps/canary/deployment.yaml".into(),
                Arc::new(deployment("canary", &format!("0.{n}.0"), 1, n as u64)),
            );
            let c = b.commit(&[f], t, &format!("canary: try build {n}"));
            feature = Some(c);
            events.push((
                Ev::Ref("refs/heads/feature/canary", c),
                "feature commit".into(),
            ));
            n += 1;
            continue;
        }
        if n == merge
            && let Some(f) = feature.take()
        {
            let mut t = b.trees[&main].clone();
            for (k, v) in &b.trees[&f] {
                if k.starts_with("apps/canary/") {
                    t.insert(k.clone(), v.clone());
                }
            }
            main = b.commit(&[main, f], t, "Merge branch 'feature/canary'");
            events.push((Ev::Ref("refs/heads/main", main), "merge".into()));
            events.push((
                Ev::Delete("refs/heads/feature/canary"),
                "delete branch".into(),
            ));
            n += 1;
            continue;
        }
        if n == force {
            // Rewrite the last three commits of main as two others.
            let mut back = main;
            for _ in 0..3 {
                back = parent_of(&b.stream, back).unwrap_or(back);
            }
            let mut t = b.trees[&back].clone();
            b.churn(&mut t, n as u64, &mut state);
            let c1 = b.commit(&[back], t.clone(), "Squash hotfixes");
            b.churn(&mut t, n as u64 + 1, &mut state);
            main = b.commit(&[c1], t, "Hotfix: roll back gateway");
            events.push((Ev::Ref("refs/heads/main", main), "force-push".into()));
            n += 2;
            continue;
        }
        let mut t = b.trees[&main].clone();
        for _ in 0..1 + b.rng.below(3) {
            b.churn(&mut t, n as u64, &mut state);
        }
        main = b.commit(&[main], t, &format!("Deploy change {n}"));
        events.push((Ev::Ref("refs/heads/main", main), "commit".into()));
        if n % 20 == 0 {
            events.push((
                Ev::Ref("refs/heads/staging", main),
                "promote to staging".into(),
            ));
        }
        if n % 50 == 0 {
            events.push((
                Ev::Tag(format!("refs/tags/v0.{}.0", n / 50), main),
                "tag".into(),
            ));
        }
        if n % 100 == 0 {
            events.push((
                Ev::Annotated(format!("release-{}", n / 100), main),
                "annotated tag".into(),
            ));
        }
        n += 1;
    }
    // Annotated tags are objects; write them with the commits.
    for (ev, _) in &events {
        if let Ev::Annotated(name, mark) = ev {
            b.time += 60;
            let msg = format!("Release {name}");
            let _ = write!(
                b.stream,
                "tag {name}\nfrom :{mark}\ntagger Ops Bot <ops@example.com> {} +0000\ndata {}\n{msg}\n",
                b.time,
                msg.len()
            );
        }
    }
    let marks = dir.join("ferry-fixture.marks");
    git.run(
        [
            "fast-import".to_owned(),
            "--quiet".into(),
            "--force".into(),
            format!("--export-marks={}", marks.display()),
        ],
        &b.stream,
    )?;
    let text = std::fs::read_to_string(&marks).map_err(|source| GitError::Spawn {
        command: "fast-import marks".into(),
        dir: dir.to_owned(),
        source,
    })?;
    let _ = std::fs::remove_file(&marks);
    let oid_of: BTreeMap<u64, Oid> = text
        .lines()
        .filter_map(|l| {
            let (m, o) = l.split_once(' ')?;
            Some((m.strip_prefix(':')?.parse().ok()?, Oid::from_hex(o)?))
        })
        .collect();
    let tags = git.refs(&["refs/tags/".to_owned()])?;
    let mut refs = BTreeMap::new();
    let mut steps = Vec::new();
    for (ev, what) in events {
        match ev {
            Ev::Ref(name, mark) => {
                refs.insert(name.to_owned(), oid_of[&mark]);
            }
            Ev::Delete(name) => {
                refs.remove(name);
            }
            Ev::Tag(name, mark) => {
                refs.insert(name, oid_of[&mark]);
            }
            Ev::Annotated(name, _) => {
                let name = format!("refs/tags/{name}");
                if let Some(o) = tags.get(&name) {
                    refs.insert(name, *o);
                }
            }
        }
        steps.push(Step {
            refs: refs.clone(),
            what,
        });
    }
    let replay = Replay { git, steps };
    set_refs(&replay.git, &replay.steps[0].refs)?;
    Ok(replay)
}

/// The first parent of commit `mark` as the fast-import stream wrote it.
fn parent_of(stream: &[u8], mark: u64) -> Option<u64> {
    let text = String::from_utf8_lossy(stream);
    let at = text.find(&format!("mark :{mark}\n"))?;
    let from = text[at..].find("\nfrom :")? + at + 7;
    text[from..].split('\n').next()?.parse().ok()
}

/// Makes `git` show exactly `refs` under `refs/heads/` and `refs/tags/`
/// (others deleted), in one transaction, with HEAD on `main`.
pub fn set_refs(git: &Git, refs: &BTreeMap<String, Oid>) -> Result<(), GitError> {
    let current = git.refs(&["refs/heads/".to_owned(), "refs/tags/".to_owned()])?;
    let mut script = String::from("start\n");
    for (name, oid) in refs {
        if current.get(name) != Some(oid) {
            let _ = writeln!(script, "update {name} {oid}");
        }
    }
    for name in current.keys().filter(|n| !refs.contains_key(*n)) {
        let _ = writeln!(script, "delete {name}");
    }
    script.push_str("prepare\ncommit\n");
    git.run(["update-ref", "--stdin"], script.as_bytes())?;
    git.run(["symbolic-ref", "HEAD", "refs/heads/main"], b"")?;
    Ok(())
}

/// The first-parent history of `branch` in `repo`, oldest first, one step
/// per commit with `refs/heads/<branch>` only.
pub fn first_parent_history(repo: &Path, branch: &str) -> Result<Vec<Step>, GitError> {
    let git = Git::new(repo);
    let list = git.text(["rev-list", "--first-parent", "--reverse", branch])?;
    Ok(list
        .lines()
        .filter_map(Oid::from_hex)
        .map(|oid| Step {
            refs: [(format!("refs/heads/{branch}"), oid)].into(),
            what: "commit".into(),
        })
        .collect())
}
