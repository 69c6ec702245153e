//! Ed25519 private keys on disk: PKCS#8 (RFC 8410), PEM-encoded (`-----BEGIN
//! PRIVATE KEY-----`, as `openssl genpkey -algorithm ed25519` writes it); raw
//! DER is read too. Written with mode 0600 into a temporary file beside the
//! target, synced, renamed over it, and the directory synced, so a crash
//! leaves the old key or the new one, never half of one. Group keys (for
//! sealing, [`crate::seal`]) are kept the same way, as one line of hex.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, KeypairBytes};
use ring::rand::{SecureRandom, SystemRandom};

use crate::seal::GroupKey;

/// Why a key file could not be made, read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("{}: no such file", path.display())]
    Missing { path: PathBuf },
    #[error("{}: cannot read: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{}: not an Ed25519 PKCS#8 private key: {reason}", path.display())]
    Malformed { path: PathBuf, reason: String },
    #[error("{}: cannot write: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot encode the key as PKCS#8: {0}")]
    Encode(String),
    #[error("the system random number generator failed")]
    Random,
}

/// A new key from the operating system's random number generator.
pub fn generate() -> Result<SigningKey, KeyFileError> {
    let mut seed = [0u8; 32];
    SystemRandom::new()
        .fill(&mut seed)
        .map_err(|_| KeyFileError::Random)?;
    Ok(SigningKey::from_bytes(&seed))
}

/// The bytes of a secret key file; warns (but reads) if the file is
/// readable by group or others.
fn read_secret(path: &Path) -> Result<Vec<u8>, KeyFileError> {
    let bytes = fs::read(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => KeyFileError::Missing {
            path: path.to_owned(),
        },
        _ => KeyFileError::Read {
            path: path.to_owned(),
            source,
        },
    })?;
    warn_if_exposed(path);
    Ok(bytes)
}

/// Reads a PEM or DER PKCS#8 key. Warns on stderr (but loads) if the file is
/// readable by group or others.
pub fn load(path: &Path) -> Result<SigningKey, KeyFileError> {
    let bytes = read_secret(path)?;
    let malformed = |reason: String| KeyFileError::Malformed {
        path: path.to_owned(),
        reason,
    };
    if bytes.starts_with(b"-----BEGIN") {
        let text =
            std::str::from_utf8(&bytes).map_err(|_| malformed("PEM file is not UTF-8".into()))?;
        SigningKey::from_pkcs8_pem(text).map_err(|e| malformed(e.to_string()))
    } else {
        SigningKey::from_pkcs8_der(&bytes).map_err(|e| malformed(e.to_string()))
    }
}

/// Writes `key` as PEM PKCS#8, mode 0600, atomically (see the module docs).
pub fn save(key: &SigningKey, path: &Path) -> Result<(), KeyFileError> {
    let pem = KeypairBytes {
        secret_key: key.to_bytes(),
        public_key: None,
    }
    .to_pkcs8_pem(LineEnding::LF)
    .map_err(|e| KeyFileError::Encode(e.to_string()))?;
    write_atomically(path, pem.as_bytes()).map_err(|source| KeyFileError::Write {
        path: path.to_owned(),
        source,
    })
}

/// The first word of a group key file.
const GROUP_KEY_TAG: &str = "ferry-group-key-v1";

/// Reads a group key: one line, `ferry-group-key-v1 <64 hex digits>`.
pub fn load_group_key(path: &Path) -> Result<GroupKey, KeyFileError> {
    let bytes = read_secret(path)?;
    let malformed = || KeyFileError::Malformed {
        path: path.to_owned(),
        reason: format!("a group key file is one line: {GROUP_KEY_TAG} <64 hex digits>"),
    };
    let text = std::str::from_utf8(&bytes).map_err(|_| malformed())?;
    let hex_key = text
        .trim_end()
        .strip_prefix(GROUP_KEY_TAG)
        .and_then(|rest| rest.strip_prefix(' '))
        .ok_or_else(malformed)?;
    let mut key = [0u8; 32];
    hex::decode_to_slice(hex_key, &mut key).map_err(|_| malformed())?;
    Ok(GroupKey::from_bytes(key))
}

/// Writes a group key, mode 0600, atomically (see the module docs).
pub fn save_group_key(key: &GroupKey, path: &Path) -> Result<(), KeyFileError> {
    let text = format!("{GROUP_KEY_TAG} {}\n", hex::encode(key.secret_bytes()));
    write_atomically(path, text.as_bytes()).map_err(|source| KeyFileError::Write {
        path: path.to_owned(),
        source,
    })
}

/// Writes `bytes` to a fresh temporary file beside `path` (mode 0600), syncs
/// it, renames it over `path` and syncs the directory.
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    // A leftover from a crashed earlier attempt by a process with our pid.
    let _ = fs::remove_file(&tmp);
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
        return result;
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::File::open(dir)?.sync_all()
}

/// Logs a warning if a key file can be read by anyone but its owner.
fn warn_if_exposed(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = fs::metadata(path) {
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format_args!("{:o}", mode & 0o777),
                "key file is readable by others; it should be mode 0600"
            );
        }
    }
}
