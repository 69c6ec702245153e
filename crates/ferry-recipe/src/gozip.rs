//! The real Go encoders, for tests and benchmarks: `tools/gozip/main.go`
//! built once per machine with Debian's golang-go and
//! golang-github-klauspost-pgzip-dev (GOPATH mode, no network).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

const SOURCE: &str = include_str!("../tools/gozip/main.go");
const GOPATH: &str = "/usr/share/gocode";

/// Which Go encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Go's `compress/gzip`.
    Go,
    /// klauspost/pgzip with blocks of this many bytes.
    Pgzip { block_size: usize },
}

#[derive(Debug, thiserror::Error)]
pub enum GozipError {
    #[error(
        "building tools/gozip failed (needs Debian's golang-go and golang-github-klauspost-pgzip-dev): {0}"
    )]
    Build(String),
    #[error("running gozip failed: {0}")]
    Run(String),
}

/// The built `gozip`, built on first use into the temporary directory.
pub fn binary() -> Result<&'static Path, GozipError> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(build)
        .as_ref()
        .map(PathBuf::as_path)
        .map_err(|e| GozipError::Build(e.clone()))
}

fn build() -> Result<PathBuf, String> {
    let hash = SOURCE.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let dir = std::env::temp_dir().join(format!("ferry-gozip-{hash:016x}"));
    let bin = dir.join("gozip");
    if bin.exists() {
        return Ok(bin);
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // Each builder works in its own directory and renames into place, so
    // test processes running at once never see half a binary.
    let work = tempdir_in(&dir)?;
    std::fs::write(work.join("main.go"), SOURCE).map_err(|e| e.to_string())?;
    let out = Command::new("go")
        .args(["build", "-o", "gozip", "main.go"])
        .current_dir(&work)
        .env("GO111MODULE", "off")
        .env("GOPATH", GOPATH)
        .env("GOCACHE", dir.join("cache"))
        .env("GOFLAGS", "-mod=mod")
        .output()
        .map_err(|e| format!("go: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    std::fs::rename(work.join("gozip"), &bin).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(bin)
}

fn tempdir_in(dir: &Path) -> Result<PathBuf, String> {
    let work = dir.join(format!("build-{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    Ok(work)
}

/// `data` gzipped by the real Go encoder: the whole gzip member.
pub fn gzip(family: Family, level: i32, data: &[u8]) -> Result<Vec<u8>, GozipError> {
    let mut cmd = Command::new(binary()?);
    match family {
        Family::Go => cmd.args(["-family", "go"]),
        Family::Pgzip { block_size } => {
            cmd.args(["-family", "pgzip", "-block", &block_size.to_string()])
        }
    };
    cmd.args(["-level", &level.to_string()]);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| GozipError::Run(e.to_string()))?;
    let mut stdin = child.stdin.take().expect("piped");
    let input = data.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let out = child
        .wait_with_output()
        .map_err(|e| GozipError::Run(e.to_string()))?;
    feeder
        .join()
        .map_err(|_| GozipError::Run("stdin writer panicked".into()))?
        .map_err(|e| GozipError::Run(e.to_string()))?;
    if !out.status.success() {
        return Err(GozipError::Run(
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
    Ok(out.stdout)
}

/// The raw DEFLATE body of a gzip member Go wrote: its 10-byte header (Go
/// writes no optional fields unless asked) and 8-byte trailer cut off.
pub fn deflate_body(member: &[u8]) -> &[u8] {
    assert!(
        member.len() >= 18 && member[3] == 0,
        "not a plain gzip member"
    );
    &member[10..member.len() - 8]
}
