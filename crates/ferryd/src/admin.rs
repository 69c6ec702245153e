//! The local admin API: a Unix socket where the `ferry` command asks for
//! status and hands over files to send. One JSON request per line, one JSON
//! answer per line: `{"ok":true,...}` or `{"ok":false,"error":"..."}`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ferry_chunk::{Chunker, ChunkerConfig};
use ferry_core::{Endpoint, PayloadKind, Priority, Submission};
use ferry_store::{Ingest, RocksStore};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::config::{Config, parse_node_id};
use crate::driver::EngineHandle;

/// A request from the `ferry` command.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    Status,
    /// Ingest a file (or every file under a directory) and send each as a
    /// bundle to `to`: a peer name, a node id, or `group:NAME`.
    Send {
        path: PathBuf,
        to: String,
        #[serde(default)]
        priority: Option<String>,
        #[serde(default)]
        lifetime_s: Option<u64>,
    },
    /// Reassemble an object held by the node, verified, into `out`.
    Get {
        manifest: String,
        out: PathBuf,
    },
}

/// One file handed to the engine.
#[derive(Debug, Serialize, Deserialize)]
pub struct Sent {
    pub path: String,
    pub bundle: String,
    pub manifest: String,
    pub bytes: u64,
    pub new_bytes: u64,
}

/// Everything the admin server needs.
#[derive(Clone)]
pub struct Admin {
    pub engine: EngineHandle,
    pub store: Arc<RocksStore>,
    pub config: Arc<Config>,
}

/// Serves the socket at `path` until the task is dropped. A stale socket
/// file from an earlier run is replaced.
pub async fn serve(path: PathBuf, admin: Admin) -> std::io::Result<()> {
    if path.exists() {
        std::fs::remove_file(&path)?;
    }
    let listener = UnixListener::bind(&path)?;
    tracing::info!(socket = %path.display(), "admin API listening");
    loop {
        let (stream, _) = listener.accept().await?;
        let admin = admin.clone();
        tokio::spawn(async move {
            if let Err(e) = session(stream, admin).await {
                tracing::debug!(error = %e, "admin session ended");
            }
        });
    }
}

async fn session(stream: UnixStream, admin: Admin) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    while let Some(line) = lines.next_line().await? {
        let answer = match serde_json::from_str::<Request>(&line) {
            Ok(request) => admin.answer(request).await,
            Err(e) => Err(format!("bad request: {e}")),
        };
        let json = match answer {
            Ok(mut value) => {
                value["ok"] = true.into();
                value
            }
            Err(error) => serde_json::json!({ "ok": false, "error": error }),
        };
        write.write_all(format!("{json}\n").as_bytes()).await?;
    }
    Ok(())
}

impl Admin {
    async fn answer(&self, request: Request) -> Result<serde_json::Value, String> {
        match request {
            Request::Status => {
                let status = self.engine.status().await?;
                serde_json::to_value(status).map_err(|e| e.to_string())
            }
            Request::Send {
                path,
                to,
                priority,
                lifetime_s,
            } => {
                let destination = self.destination(&to)?;
                let priority = match priority.as_deref().unwrap_or("normal") {
                    "bulk" => Priority::Bulk,
                    "normal" => Priority::Normal,
                    "expedited" => Priority::Expedited,
                    other => {
                        return Err(format!(
                            "priority {other:?} is not one of bulk, normal, expedited"
                        ));
                    }
                };
                let lifetime = Duration::from_secs(lifetime_s.unwrap_or(7 * 24 * 3600));
                let store = self.store.clone();
                let files = tokio::task::spawn_blocking(move || ingest(&store, &path))
                    .await
                    .map_err(|e| e.to_string())??;
                let mut sent = Vec::new();
                for (name, manifest, bytes, new_bytes) in files {
                    let bundle = self
                        .engine
                        .submit(Submission {
                            destination: destination.clone(),
                            lifetime,
                            priority,
                            kind: PayloadKind::Blob,
                            manifest,
                            release: name.clone().into_bytes(),
                        })
                        .await?;
                    sent.push(Sent {
                        path: name,
                        bundle: bundle.to_string(),
                        manifest: manifest.to_string(),
                        bytes,
                        new_bytes,
                    });
                }
                Ok(serde_json::json!({ "sent": sent }))
            }
            Request::Get { manifest, out } => {
                let id = ferry_chunk::ManifestId::from_hex(&manifest)
                    .ok_or_else(|| format!("{manifest:?} is not a manifest id (64 hex digits)"))?;
                let store = self.store.clone();
                let bytes = tokio::task::spawn_blocking(move || reassemble(&store, id, &out))
                    .await
                    .map_err(|e| e.to_string())??;
                Ok(serde_json::json!({ "bytes": bytes }))
            }
        }
    }

    fn destination(&self, to: &str) -> Result<Endpoint, String> {
        if let Some(group) = to.strip_prefix("group:") {
            return Ok(Endpoint::Group(group.to_string()));
        }
        if let Some(peer) = self.config.peers.iter().find(|p| p.name == to) {
            return Ok(Endpoint::Node(peer.node));
        }
        parse_node_id(to)
            .map(Endpoint::Node)
            .map_err(|_| format!("{to:?} is not a peer name, a node id or group:NAME"))
    }
}

/// Chunks a file, or each file under a directory, into the store.
/// Returns (relative name, manifest, bytes, bytes new to the store) per file.
fn ingest(
    store: &RocksStore,
    path: &Path,
) -> Result<Vec<(String, ferry_chunk::ManifestId, u64, u64)>, String> {
    let chunker = Chunker::new(ChunkerConfig::default()).map_err(|e| e.to_string())?;
    let mut ingest = Ingest::new(store, chunker);
    let mut files = Vec::new();
    let entries = ferry_store::sources(path)?;
    if entries.is_empty() {
        return Err(format!("{} holds no files", path.display()));
    }
    for ferry_store::Source { path: file, .. } in entries {
        let name = file
            .strip_prefix(path)
            .ok()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| Path::new(file.file_name().unwrap_or_default()))
            .to_string_lossy()
            .into_owned();
        let reader = std::fs::File::open(&file)
            .map_err(|e| format!("cannot open {}: {e}", file.display()))?;
        let before = ingest.stats();
        let manifest = ingest
            .add(&name, reader, |_| {})
            .map_err(|e| e.to_string())?;
        let after = ingest.stats();
        files.push((
            name,
            manifest,
            after.bytes - before.bytes,
            after.new_bytes - before.new_bytes,
        ));
    }
    ingest.finish().map_err(|e| e.to_string())?;
    Ok(files)
}

/// Writes the object `id` to `out` (through a temporary file renamed into
/// place), every chunk and the native digest verified.
fn reassemble(store: &RocksStore, id: ferry_chunk::ManifestId, out: &Path) -> Result<u64, String> {
    let manifest = store
        .get_manifest(id)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("this node holds no object {id}"))?;
    let partial = out.with_extension("ferry-partial");
    let file = std::fs::File::create(&partial)
        .map_err(|e| format!("cannot create {}: {e}", partial.display()))?;
    let result = store
        .read_object(&manifest, std::io::BufWriter::new(file))
        .map_err(|e| format!("object {id}: {e}"));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    std::fs::rename(&partial, out).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    Ok(manifest.total_length())
}

/// Sends one request to the daemon at `socket` and returns its answer.
pub async fn request(socket: &Path, request: &Request) -> Result<serde_json::Value, String> {
    let stream = UnixStream::connect(socket).await.map_err(|e| {
        format!(
            "cannot reach ferryd at {}: {e} (is the daemon running?)",
            socket.display()
        )
    })?;
    let (read, mut write) = stream.into_split();
    let line = serde_json::to_string(request).map_err(|e| e.to_string())? + "\n";
    write
        .write_all(line.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let answer = BufReader::new(read)
        .lines()
        .next_line()
        .await
        .map_err(|e| e.to_string())?
        .ok_or("ferryd closed the connection without answering")?;
    let value: serde_json::Value =
        serde_json::from_str(&answer).map_err(|e| format!("bad answer from ferryd: {e}"))?;
    if value["ok"] == true {
        Ok(value)
    } else {
        Err(value["error"]
            .as_str()
            .unwrap_or("ferryd refused the request")
            .to_string())
    }
}
