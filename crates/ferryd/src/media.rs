//! Removable media for ferryd: writes export volumes and receipts to files
//! (atomically: a temporary file, fsync, rename, fsync of the directory),
//! reads volumes back in, and watches a mount point for new ones. Every
//! file it writes is signed (`FILE.sig`, [`TrustGate::sign_media`]); a file
//! read in is hashed as it is read and checked against its signature before
//! custody is taken of anything in it. The volume format, what goes in an
//! export and custody live in `ferry_core::medium`; this module only moves
//! files.

use std::collections::BTreeMap;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ferry_core::{Endpoint, ExportOptions, ImportReport, medium};
use ferry_store::{RocksStore, SharedStore};
use serde::Serialize;

use crate::driver::EngineHandle;
use crate::trust::{TrustGate, media_refused};

/// A reader or writer that hashes (BLAKE3) and counts what passes through
/// it: a volume is hashed as it is written (to sign it) and as it is read
/// (to check it), never read a second time.
pub struct Hashing<R> {
    inner: R,
    hasher: blake3::Hasher,
    len: u64,
}

impl<R> Hashing<R> {
    pub fn new(inner: R) -> Self {
        Hashing {
            inner,
            hasher: blake3::Hasher::new(),
            len: 0,
        }
    }

    /// The BLAKE3 and length of everything read or written.
    pub fn finish(self) -> ([u8; 32], u64) {
        (*self.hasher.finalize().as_bytes(), self.len)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<R: std::io::Read> std::io::Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

/// What `export` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct Exported {
    pub export_id: String,
    pub target: String,
    pub files: Vec<String>,
    pub volume_bytes: Vec<u64>,
    pub bundles: u64,
    pub payload_bytes: u64,
    pub manifests: u64,
    pub manifest_deltas: u64,
    pub chunks: u64,
    pub chunk_bytes: u64,
    /// Chunks left out because the target's receipts say it holds them.
    pub skipped_chunks: u64,
    pub skipped_bytes: u64,
    pub total_bytes: u64,
    /// What a `--full` export of the same bundles would take.
    pub full_bytes: u64,
    pub saved_bytes: u64,
}

/// The file of volume `index` of `count`: `out` itself for a single volume,
/// else `out` with `.1-of-3`, `.2-of-3`… appended.
pub fn volume_path(out: &Path, index: usize, count: usize) -> PathBuf {
    if count == 1 {
        return out.to_path_buf();
    }
    let mut name = out.as_os_str().to_owned();
    name.push(format!(".{}-of-{count}", index + 1));
    PathBuf::from(name)
}

/// A state file kept as JSON: its contents, or the default if there is none.
pub(crate) fn read_json<T: serde::de::DeserializeOwned + Default>(
    path: &Path,
) -> Result<T, String> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Keeps `json` in `path` with [`write_atomic`]; a failure is logged (the
/// state is kept again at the next change), naming `what` it holds.
pub(crate) fn write_json(path: &Path, json: &[u8], what: &str) {
    let written = write_atomic(path, |out| {
        std::io::Write::write_all(out, json).map_err(|e| e.to_string())
    });
    if let Err(e) = written {
        tracing::error!(path = %path.display(), error = %e, "cannot keep {what}");
    }
}

/// Writes `path` through a temporary file in the same directory, synced and
/// renamed into place: a crash leaves the old file or the whole new one.
pub fn write_atomic<T>(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<std::fs::File>) -> Result<T, String>,
) -> Result<T, String> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| format!("{} is not a file name", path.display()))?
        .to_string_lossy()
        .into_owned();
    let partial = dir.join(format!(".{name}.ferry-partial"));
    let result = (|| {
        let file = std::fs::File::create(&partial)
            .map_err(|e| format!("cannot create {}: {e}", partial.display()))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let value = write(&mut out)?;
        out.flush()
            .map_err(|e| format!("cannot write {}: {e}", partial.display()))?;
        let file = out
            .into_inner()
            .map_err(|e| format!("cannot write {}: {e}", partial.display()))?;
        file.sync_all()
            .map_err(|e| format!("cannot sync {}: {e}", partial.display()))?;
        std::fs::rename(&partial, path)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        if let Ok(dir) = std::fs::File::open(&dir) {
            let _ = dir.sync_all();
        }
        Ok(value)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

/// Plans an export on the engine thread, then writes its volumes away from
/// it (they only read the store). `progress(done, total)` follows the chunk
/// bytes written.
pub async fn export(
    engine: &EngineHandle,
    gate: Arc<TrustGate>,
    store: Arc<RocksStore>,
    to: Endpoint,
    out: PathBuf,
    options: ExportOptions,
    mut progress: impl FnMut(u64, u64) + Send + 'static,
) -> Result<Exported, String> {
    let target = to.to_string();
    let plan = engine
        .with_engine(move |engine, now| engine.plan_export(now, to, options))
        .await?
        .map_err(|e| e.to_string())?;
    tokio::task::spawn_blocking(move || {
        let store = SharedStore(store);
        let summary = plan.summary().clone();
        let count = plan.volume_count();
        let mut files = Vec::new();
        let mut done = 0;
        let total = summary.chunk_bytes;
        progress(0, total);
        for index in 0..count {
            let path = volume_path(&out, index, count);
            let (digest, len) = write_atomic(&path, |file| {
                let mut out = Hashing::new(file);
                plan.write_volume(index, &store, &mut out, |bytes| {
                    done += bytes;
                    progress(done, total);
                })
                .map_err(|e| format!("{}: {e}", path.display()))?;
                Ok(out.finish())
            })?;
            gate.sign_media(&path, &digest, len)?;
            tracing::info!(file = %path.display(), volume = index + 1, of = count, "volume written and signed");
            files.push(path.display().to_string());
        }
        let total_bytes = summary.total_bytes();
        Ok(Exported {
            export_id: plan.export_id_hex(),
            target,
            files,
            volume_bytes: summary.volume_bytes.clone(),
            bundles: summary.bundles,
            payload_bytes: summary.payload_bytes,
            manifests: summary.manifests,
            manifest_deltas: summary.manifest_deltas,
            chunks: summary.chunks,
            chunk_bytes: summary.chunk_bytes,
            skipped_chunks: summary.skipped_chunks,
            skipped_bytes: summary.skipped_bytes,
            total_bytes,
            full_bytes: summary.full_bytes,
            saved_bytes: summary.full_bytes.saturating_sub(total_bytes),
        })
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Imports the volume (or receipts) at `path`: read, verified and its
/// chunks stored away from the engine thread, which then only takes custody.
pub async fn import(
    engine: &EngineHandle,
    gate: &TrustGate,
    store: Arc<RocksStore>,
    me: ferry_core::NodeId,
    path: PathBuf,
) -> Result<serde_json::Value, String> {
    let signature = gate
        .media_signature(&path)
        .map_err(|e| media_refused(&path, e))?;
    let file =
        std::fs::File::open(&path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let (read, digest, len) = tokio::task::spawn_blocking(move || {
        let mut store = SharedStore(store);
        let mut input = Hashing::new(BufReader::with_capacity(1 << 20, file));
        let read = medium::read_volume(&mut store, me, &mut input).map_err(|e| e.to_string())?;
        // What follows the last record counts too.
        std::io::copy(&mut input, &mut std::io::sink()).map_err(|e| e.to_string())?;
        let (digest, len) = input.finish();
        Ok::<_, String>((read, digest, len))
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("{}: {e}", path.display()))?;
    signature
        .check(&digest, len, read.info().source)
        .map_err(|e| media_refused(&path, e))?;
    let report = engine
        .with_engine(move |engine, now| engine.accept_volume(now, read))
        .await?
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(report_json(&path, &report))
}

/// Writes this node's receipts to `out`.
pub async fn export_receipts(
    engine: &EngineHandle,
    gate: Arc<TrustGate>,
    out: PathBuf,
) -> Result<serde_json::Value, String> {
    let (bytes, summary) = engine
        .with_engine(|engine, now| {
            let mut bytes = Vec::new();
            engine.export_receipts(now, &mut bytes).map(|s| (bytes, s))
        })
        .await?
        .map_err(|e| e.to_string())?;
    let file = out.clone();
    tokio::task::spawn_blocking(move || {
        write_atomic(&file, |w| {
            w.write_all(&bytes)
                .map_err(|e| format!("cannot write {}: {e}", file.display()))
        })?;
        gate.sign_media(&file, blake3::hash(&bytes).as_bytes(), bytes.len() as u64)
    })
    .await
    .map_err(|e| e.to_string())??;
    Ok(serde_json::json!({
        "file": out.display().to_string(),
        "bundles": summary.bundles,
        "manifests": summary.manifests,
        "chunks": summary.chunks,
        "bytes": summary.bytes,
    }))
}

/// An import report as the admin API answers it.
pub fn report_json(path: &Path, report: &ImportReport) -> serde_json::Value {
    let ids = |ids: &[ferry_core::BundleId]| -> Vec<String> {
        ids.iter().map(ToString::to_string).collect()
    };
    serde_json::json!({
        "file": path.display().to_string(),
        "volume": report.volume.as_ref().map(|v| serde_json::json!({
            "source": v.source.to_hex(),
            "target": v.target.to_string(),
            "export_id": hex::encode(v.export_id),
            "index": v.index + 1,
            "count": v.count,
            "created_ms": v.created_ms,
            "contents": match v.contents {
                medium::Contents::Bundles => "bundles",
                medium::Contents::Receipts => "receipts",
            },
        })),
        "records": report.records,
        "chunks_stored": report.chunks_stored,
        "bytes_stored": report.bytes_stored,
        "chunks_present": report.chunks_present,
        "accepted": ids(&report.accepted),
        "delivered": report.delivered.iter().map(|(b, m)| serde_json::json!({
            "bundle": b.to_string(), "manifest": m.to_string(),
        })).collect::<Vec<_>>(),
        "already_held": ids(&report.already_held),
        "incomplete": report.incomplete.iter().map(|(b, missing)| serde_json::json!({
            "bundle": b.to_string(), "missing_chunks": missing,
        })).collect::<Vec<_>>(),
        "refused": report.refused.iter().map(|(b, why)| serde_json::json!({
            "bundle": b.to_string(), "reason": why,
        })).collect::<Vec<_>>(),
        "no_manifest": ids(&report.no_manifest),
        "released": ids(&report.released),
        "problems": report.problems.iter().map(|p| serde_json::json!({
            "record": p.record, "offset": p.offset, "kind": p.kind, "reason": p.reason,
        })).collect::<Vec<_>>(),
        "truncated": report.truncated,
    })
}

/// Polls `dir` every `every` for volumes (files that start with the volume
/// magic) and imports each once it stopped changing between two polls.
/// A file is imported again only if it changes (importing is idempotent
/// anyway, so a restart that imports everything once more is harmless).
pub fn watch(
    dir: PathBuf,
    every: Duration,
    engine: EngineHandle,
    gate: Arc<TrustGate>,
    store: Arc<RocksStore>,
    me: ferry_core::NodeId,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        tracing::info!(dir = %dir.display(), "watching for volumes");
        // Path → (length, modified) when last seen, and whether imported.
        let mut seen: BTreeMap<PathBuf, (Stamp, bool)> = BTreeMap::new();
        loop {
            for (path, stamp) in candidates(&dir) {
                let entry = seen.entry(path.clone()).or_insert((stamp, false));
                if entry.0 != stamp {
                    // Still being written (or replaced): wait for it to settle.
                    *entry = (stamp, false);
                    continue;
                }
                if entry.1 {
                    continue;
                }
                entry.1 = true;
                match import(&engine, &gate, store.clone(), me, path.clone()).await {
                    Ok(report) => tracing::info!(
                        file = %path.display(),
                        accepted = report["accepted"].as_array().map_or(0, Vec::len),
                        problems = report["problems"].as_array().map_or(0, Vec::len),
                        "volume imported from the watched directory"
                    ),
                    Err(e) => {
                        tracing::warn!(file = %path.display(), error = %e, "volume not imported")
                    }
                }
            }
            tokio::time::sleep(every).await;
        }
    })
}

/// A file's length and modification time, and those of its `.sig`: a
/// signature copied after its volume makes the volume new again.
type Stamp = ((u64, Option<SystemTime>), Option<(u64, Option<SystemTime>)>);

/// Regular files in `dir` that begin with the volume magic, with their
/// [`Stamp`]. An unreadable directory (the medium is not mounted) yields
/// nothing.
fn candidates(dir: &Path) -> Vec<(PathBuf, Stamp)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        let mut magic = [0u8; 8];
        let is_volume = std::fs::File::open(&path)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
            .is_ok()
            && &magic == medium::MAGIC;
        if is_volume {
            let sig = std::fs::metadata(crate::trust::signature_path(&path))
                .ok()
                .map(|m| (m.len(), m.modified().ok()));
            out.push((path, ((meta.len(), meta.modified().ok()), sig)));
        }
    }
    out.sort();
    out
}
