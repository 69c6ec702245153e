//! `Applier`: a release and its pack into a bare repository under a served
//! root — indexed in quarantine, verified, then refs moved in one
//! transaction. A ref never points at an object that is not all there.
//!
//! Steps for a release of repository `r` (one applier per root at a time):
//! 1. releases older than what `r` shows are no-ops; one whose base is not
//!    applied yet, or whose prerequisites are missing, waits under
//!    `<root>/.pending/` and is applied when its predecessor is;
//! 2. the pack (header and trailer restored) goes through
//!    `git index-pack --stdin --fix-thin --strict` into a quarantine object
//!    directory, with the repository's objects as alternates;
//! 3. `git rev-list --objects` over the new tips, excluding every existing
//!    ref, must find every object (quarantine included);
//! 4. the quarantined pack moves into `objects/pack` (`.idx` last);
//! 5. `git update-ref --stdin` moves every ref in one transaction, each
//!    checked against the value read before; then HEAD and the applied
//!    sequence (`ferry.sequence`) are recorded. Re-applying after a crash
//!    between 5's steps finds the refs already moved and changes nothing.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use sha1::Digest;

use crate::{Git, GitError, GitRelease, Oid, PackEncoding, ReleaseError, ServeError, ServedRoot};

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    Name(#[from] ServeError),
    #[error(transparent)]
    Release(#[from] ReleaseError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "release {sequence} of {repository:?}: the pack does not complete the new refs ({detail}); no ref moved"
    )]
    Incomplete {
        repository: String,
        sequence: u64,
        detail: String,
    },
}

/// What applying a release did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// Refs now show the release (and `then` pending releases after it).
    Applied { changed_refs: usize, then: Vec<u64> },
    /// The repository already shows this release or a newer one.
    AlreadyApplied,
    /// Kept until release `waiting_for` (or the prerequisites) arrive.
    Pending { waiting_for: u64 },
}

/// Applies releases into `<root>/<name>.git`.
#[derive(Clone, Debug)]
pub struct Applier {
    root: ServedRoot,
}

/// What `release` still waits for in `git` (whose applied sequence is
/// `applied`): its base release, or (0 if it has none) prerequisite objects.
fn waiting_for(git: &Git, release: &GitRelease, applied: u64) -> Result<Option<u64>, ApplyError> {
    if let Some(base) = release.base.filter(|&b| b > applied) {
        return Ok(Some(base));
    }
    if git.present(&release.prerequisites)?.iter().any(|p| !p) {
        return Ok(Some(release.base.unwrap_or(0)));
    }
    Ok(None)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ApplyError + '_ {
    move |source| ApplyError::Io {
        path: path.to_owned(),
        source,
    }
}

impl Applier {
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, ApplyError> {
        let root = ServedRoot::new(root);
        fs::create_dir_all(root.path()).map_err(io(root.path()))?;
        Ok(Self { root })
    }

    pub fn root(&self) -> &ServedRoot {
        &self.root
    }

    /// The newest release applied to `repository`, 0 if none.
    pub fn applied_sequence(&self, repository: &str) -> Result<u64, ApplyError> {
        let dir = self.root.repo_dir(repository)?;
        if !dir.exists() {
            return Ok(0);
        }
        Ok(Git::new(dir)
            .text(["config", "--get", "ferry.sequence"])
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0))
    }

    /// Whether `release` would still change anything (cheap: no payload).
    pub fn wants(&self, release: &GitRelease) -> Result<bool, ApplyError> {
        Ok(release.sequence > self.applied_sequence(&release.repository)?)
    }

    /// Applies `release` with its pack body (as [`crate::Publication::payload`]).
    #[tracing::instrument(skip_all, fields(repository = %release.repository, sequence = release.sequence))]
    pub fn apply(
        &self,
        release: &GitRelease,
        body: &mut dyn Read,
    ) -> Result<ApplyOutcome, ApplyError> {
        release.validate()?;
        let outcome = self.apply_one(release, body)?;
        if let ApplyOutcome::Applied { changed_refs, .. } = outcome {
            let then = self.drain_pending(&release.repository)?;
            return Ok(ApplyOutcome::Applied { changed_refs, then });
        }
        Ok(outcome)
    }

    fn apply_one(
        &self,
        release: &GitRelease,
        body: &mut dyn Read,
    ) -> Result<ApplyOutcome, ApplyError> {
        let git = self.open_or_create(&release.repository)?;
        let applied = self.applied_sequence(&release.repository)?;
        if release.sequence <= applied {
            return Ok(ApplyOutcome::AlreadyApplied);
        }
        if let Some(waiting_for) = waiting_for(&git, release, applied)? {
            self.keep_pending(release, body)?;
            return Ok(ApplyOutcome::Pending { waiting_for });
        }
        self.apply_now(&git, release, body)
    }

    /// Applies `release`, whose base and prerequisites are all here.
    fn apply_now(
        &self,
        git: &Git,
        release: &GitRelease,
        body: &mut dyn Read,
    ) -> Result<ApplyOutcome, ApplyError> {
        // 2. Index into quarantine.
        let objects = git.dir().join("objects");
        let quarantine = objects.join(format!("incoming-ferry-{}", release.sequence));
        let _ = fs::remove_dir_all(&quarantine);
        let qpack = quarantine.join("pack");
        fs::create_dir_all(&qpack).map_err(io(&qpack))?;
        let guard = RemoveOnDrop(quarantine.clone());
        let qgit = git
            .with_env("GIT_OBJECT_DIRECTORY", &quarantine)
            .with_env("GIT_ALTERNATE_OBJECT_DIRECTORIES", &objects)
            .with_env("GIT_QUARANTINE_PATH", &quarantine);
        let incomplete = |detail: String| ApplyError::Incomplete {
            repository: release.repository.clone(),
            sequence: release.sequence,
            detail,
        };
        if release.objects > 0 {
            match release.encoding {
                PackEncoding::Raw => index_pack(&qgit, release.objects, body),
                PackEncoding::Deflated => {
                    let mut pack = Vec::new();
                    crate::packcode::decode(body, release.objects, &mut pack)
                        .map_err(|e| incomplete(e.to_string()))?;
                    index_pack(&qgit, release.objects, &mut pack.as_slice())
                }
            }
            .map_err(|e| incomplete(e.to_string()))?;
        }

        // 3. Every object the new tips reach must be here.
        let tips: Vec<Oid> = release.refs.iter().filter_map(|r| r.target).collect();
        if !tips.is_empty() {
            let mut args: Vec<String> =
                vec!["rev-list".into(), "--objects".into(), "--quiet".into()];
            args.extend(tips.iter().map(Oid::to_hex));
            args.extend(["--not".into(), "--all".into()]);
            qgit.run(&args, b"")
                .map_err(|e| incomplete(e.to_string()))?;
        }

        // 4. Migrate the pack: data first, index last.
        let mut files: Vec<PathBuf> = fs::read_dir(&qpack)
            .map_err(io(&qpack))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        files.sort_by_key(|p| p.extension().is_some_and(|e| e == "idx"));
        let pack_dir = objects.join("pack");
        fs::create_dir_all(&pack_dir).map_err(io(&pack_dir))?;
        for f in files {
            let to = pack_dir.join(f.file_name().expect("read_dir names files"));
            fs::rename(&f, &to).map_err(io(&to))?;
        }
        drop(guard);

        // 5. Refs, in one transaction against the values just read.
        let current = git.refs(&["refs/".to_owned()])?;
        let mut target: BTreeMap<String, Option<Oid>> = BTreeMap::new();
        if release.base.is_none() {
            for name in current.keys() {
                target.insert(name.clone(), None);
            }
        }
        for r in &release.refs {
            target.insert(r.name.clone(), r.target);
        }
        let mut script = String::from("start\n");
        let mut changed = 0;
        for (name, new) in &target {
            let old = current.get(name);
            match (old, new) {
                (Some(o), Some(n)) if o == n => continue,
                (Some(o), Some(n)) => script.push_str(&format!("update {name} {n} {o}\n")),
                (None, Some(n)) => script.push_str(&format!("create {name} {n}\n")),
                (Some(o), None) => script.push_str(&format!("delete {name} {o}\n")),
                (None, None) => continue,
            }
            changed += 1;
        }
        if changed > 0 {
            script.push_str("prepare\ncommit\n");
            git.run(["update-ref", "--stdin"], script.as_bytes())?;
        }
        if let Some(head) = &release.head {
            git.run(["symbolic-ref", "HEAD", head], b"")?;
        }
        git.run(
            ["config", "ferry.sequence", &release.sequence.to_string()],
            b"",
        )?;
        tracing::info!(changed_refs = changed, "git release applied");
        Ok(ApplyOutcome::Applied {
            changed_refs: changed,
            then: Vec::new(),
        })
    }

    fn open_or_create(&self, repository: &str) -> Result<Git, ApplyError> {
        let dir = self.root.repo_dir(repository)?;
        if dir.join("objects").is_dir() {
            return Ok(Git::new(dir));
        }
        let tmp = self
            .root
            .path()
            .join(format!(".new-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        let init = std::process::Command::new("git")
            .args(["init", "--bare", "-q"])
            .arg(&tmp)
            .output()
            .map_err(|source| GitError::Spawn {
                command: "init".into(),
                dir: tmp.clone(),
                source,
            })?;
        if !init.status.success() {
            return Err(GitError::Failed {
                command: "init".into(),
                dir: tmp,
                status: init.status.to_string(),
                stderr: String::from_utf8_lossy(&init.stderr).trim().to_owned(),
            }
            .into());
        }
        let git = Git::new(&tmp);
        for (k, v) in [
            ("ferry.repository", repository),
            ("gc.auto", "0"),
            ("uploadpack.allowFilter", "true"),
        ] {
            git.run(["config", k, v], b"")?;
        }
        if let Some(parent) = dir.parent() {
            fs::create_dir_all(parent).map_err(io(parent))?;
        }
        fs::rename(&tmp, &dir).map_err(io(&dir))?;
        Ok(Git::new(dir))
    }

    fn pending_dir(&self, repository: &str) -> PathBuf {
        self.root
            .path()
            .join(".pending")
            .join(repository.replace('/', "~"))
    }

    /// Keeps `release` and its pack until it can be applied: the pack
    /// first, then the `.release` file that marks it complete, each written
    /// aside, synced and renamed into place, so a crash leaves either a whole
    /// pending release or none.
    fn keep_pending(&self, release: &GitRelease, body: &mut dyn Read) -> Result<(), ApplyError> {
        let dir = self.pending_dir(&release.repository);
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let pack = dir.join(format!("{}.pack", release.sequence));
        let tmp = dir.join(format!("{}.pack.tmp", release.sequence));
        let mut file = fs::File::create(&tmp).map_err(io(&tmp))?;
        std::io::copy(body, &mut file).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
        fs::rename(&tmp, &pack).map_err(io(&pack))?;
        let meta = dir.join(format!("{}.release", release.sequence));
        let tmp = dir.join(format!("{}.release.tmp", release.sequence));
        let mut file = fs::File::create(&tmp).map_err(io(&tmp))?;
        file.write_all(&release.encode()).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
        fs::rename(&tmp, &meta).map_err(io(&meta))?;
        fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&dir))?;
        tracing::info!(waiting_for = ?release.base, "git release pending");
        Ok(())
    }

    /// Applies pending releases of `repository` that can now go, in order.
    fn drain_pending(&self, repository: &str) -> Result<Vec<u64>, ApplyError> {
        let dir = self.pending_dir(repository);
        let mut done = Vec::new();
        loop {
            let applied = self.applied_sequence(repository)?;
            let Ok(entries) = fs::read_dir(&dir) else {
                return Ok(done);
            };
            let mut waiting: Vec<(u64, PathBuf)> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "release"))
                .filter_map(|p| {
                    let seq = p.file_stem()?.to_str()?.parse().ok()?;
                    Some((seq, p))
                })
                .collect();
            waiting.sort();
            let mut progressed = false;
            for (seq, meta) in waiting {
                let pack = meta.with_extension("pack");
                let release = fs::read(&meta)
                    .ok()
                    .and_then(|b| GitRelease::decode(&b).ok())
                    .filter(|r| r.sequence == seq && seq > applied);
                let Some(release) = release else {
                    // Applied since, or not a release: nothing to keep.
                    let _ = fs::remove_file(&meta);
                    let _ = fs::remove_file(&pack);
                    continue;
                };
                let git = self.open_or_create(repository)?;
                if waiting_for(&git, &release, applied)?.is_some() {
                    continue;
                }
                let mut body = fs::File::open(&pack).map_err(io(&pack))?;
                match self.apply_now(&git, &release, &mut body) {
                    Ok(_) => {
                        // Only now is the pending copy no longer needed.
                        let _ = fs::remove_file(&meta);
                        let _ = fs::remove_file(&pack);
                        done.push(seq);
                        progressed = true;
                        break;
                    }
                    Err(e @ ApplyError::Incomplete { .. }) => {
                        // The pack itself is bad: set it aside, never retried.
                        tracing::warn!(error = %e, "pending git release set aside");
                        let failed = meta.with_extension("failed");
                        fs::rename(&meta, &failed).map_err(io(&failed))?;
                    }
                    Err(e) => return Err(e),
                }
            }
            if !progressed {
                return Ok(done);
            }
        }
    }
}

/// Streams header + body + SHA-1 trailer into `git index-pack --stdin`.
fn index_pack(git: &Git, objects: u32, body: &mut dyn Read) -> Result<(), GitError> {
    let failed = |stderr: String| GitError::Failed {
        command: "index-pack".into(),
        dir: git.dir().to_owned(),
        status: "error".into(),
        stderr,
    };
    let mut child = git
        .command(["index-pack", "--stdin", "--fix-thin", "--strict"])
        .current_dir(git.dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| GitError::Spawn {
            command: "index-pack".into(),
            dir: git.dir().to_owned(),
            source,
        })?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let mut hasher = sha1::Sha1::new();
    let mut header = Vec::with_capacity(12);
    header.extend_from_slice(b"PACK");
    header.extend_from_slice(&2u32.to_be_bytes());
    header.extend_from_slice(&objects.to_be_bytes());
    let write = (|| -> std::io::Result<()> {
        hasher.update(&header);
        stdin.write_all(&header)?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = body.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            stdin.write_all(&buf[..n])?;
        }
        stdin.write_all(&hasher.finalize())?;
        Ok(())
    })();
    drop(stdin);
    let output = child.wait_with_output().map_err(|source| GitError::Spawn {
        command: "index-pack".into(),
        dir: git.dir().to_owned(),
        source,
    })?;
    if !output.status.success() {
        return Err(failed(
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        ));
    }
    write.map_err(|e| failed(e.to_string()))
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
