//! `Git`: the `git` binary run as a subprocess on one repository.

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A failed `git` invocation: which command, on which repository, and what
/// git said.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("could not run git {command} in {dir}: {source} (is git installed and on PATH?)")]
    Spawn {
        command: String,
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("git {command} in {dir} failed ({status}): {stderr}")]
    Failed {
        command: String,
        dir: PathBuf,
        status: String,
        stderr: String,
    },
}

/// One repository's git directory (bare, or the `.git` of a work tree).
#[derive(Clone, Debug)]
pub struct Git {
    dir: PathBuf,
    env: Vec<(String, PathBuf)>,
}

impl Git {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            env: Vec::new(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The same repository with an extra environment variable on every run
    /// (e.g. a quarantine object directory).
    pub fn with_env(&self, key: &str, value: impl Into<PathBuf>) -> Self {
        let mut git = self.clone();
        git.env.push((key.to_owned(), value.into()));
        git
    }

    /// A `git` command for this repository, not yet started.
    pub fn command<I, A>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = A>,
        A: AsRef<OsStr>,
    {
        let mut cmd = Command::new("git");
        cmd.arg("--git-dir")
            .arg(&self.dir)
            .args(args)
            .env_remove("GIT_DIR")
            .env_remove("GIT_OBJECT_DIRECTORY")
            .env_remove("GIT_ALTERNATE_OBJECT_DIRECTORIES")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("LC_ALL", "C");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs git with `args`, feeding `stdin`, and returns its stdout.
    pub fn run<I, A>(&self, args: I, stdin: &[u8]) -> Result<Vec<u8>, GitError>
    where
        I: IntoIterator<Item = A> + Clone,
        A: AsRef<OsStr>,
    {
        let name = args
            .clone()
            .into_iter()
            .next()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .unwrap_or_default();
        let spawn = |source| GitError::Spawn {
            command: name.clone(),
            dir: self.dir.clone(),
            source,
        };
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn)?;
        let mut input = child.stdin.take().expect("stdin is piped");
        let data = stdin.to_vec();
        // Write on a thread so a large stdout cannot deadlock against stdin.
        let writer = std::thread::spawn(move || {
            let _ = input.write_all(&data);
        });
        let output = child.wait_with_output().map_err(spawn)?;
        let _ = writer.join();
        if !output.status.success() {
            return Err(GitError::Failed {
                command: name,
                dir: self.dir.clone(),
                status: output.status.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        Ok(output.stdout)
    }

    /// Runs git and returns stdout as text, trimmed.
    pub fn text<I, A>(&self, args: I) -> Result<String, GitError>
    where
        I: IntoIterator<Item = A> + Clone,
        A: AsRef<OsStr>,
    {
        Ok(String::from_utf8_lossy(&self.run(args, b"")?)
            .trim()
            .to_owned())
    }

    /// Every ref matching `patterns` (as `git for-each-ref` takes them).
    pub fn refs(
        &self,
        patterns: &[String],
    ) -> Result<std::collections::BTreeMap<String, crate::Oid>, GitError> {
        let mut args = vec![
            "for-each-ref".to_owned(),
            "--format=%(objectname) %(refname)".into(),
        ];
        args.extend(patterns.iter().cloned());
        let out = self.text(&args)?;
        Ok(out
            .lines()
            .filter_map(|l| {
                let (oid, name) = l.split_once(' ')?;
                Some((name.to_owned(), crate::Oid::from_hex(oid)?))
            })
            .collect())
    }

    /// Which of `oids` the repository holds.
    pub fn present(&self, oids: &[crate::Oid]) -> Result<Vec<bool>, GitError> {
        if oids.is_empty() {
            return Ok(Vec::new());
        }
        let input: String = oids.iter().map(|o| format!("{o}\n")).collect();
        let out = self.run(
            ["cat-file", "--batch-check=%(objectname)"],
            input.as_bytes(),
        )?;
        let text = String::from_utf8_lossy(&out);
        Ok(text.lines().map(|l| !l.ends_with(" missing")).collect())
    }
}
