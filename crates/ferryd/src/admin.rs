//! The local admin API: a Unix socket where the `ferry` command asks for
//! status and hands over files to send. One JSON request per line, one JSON
//! answer per line: `{"ok":true,...}` or `{"ok":false,"error":"..."}`.
//!
//! One request is answered by a stream: `logs` with `follow` answers with
//! the recent lines, then sends `{"line":"..."}` for every new log line (or
//! `{"skipped":N}` when the client fell behind) until the client hangs up.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ferry_chunk::{Chunker, ChunkerConfig};
use ferry_core::{Endpoint, PayloadKind, Priority, Submission};
use ferry_store::{Ingest, RocksStore};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::config::{Config, Peer, parse_node_id};
use crate::driver::{EngineHandle, Status};
use crate::links::Registry;
use crate::logbuf::LogBuffer;
use crate::restore;

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
    /// Publish tags of an image source (`oci:DIR[:TAG]`, an OCI image
    /// layout; `docker://HOST/REPO[:TAG]` or `docker+http://...`, a
    /// registry) as one OCI bundle to `to`; the repository defaults to the
    /// registry's name or the layout directory's.
    OciPublish {
        source: String,
        /// A file holding `user:password` for a registry source.
        #[serde(default)]
        credentials: Option<PathBuf>,
        #[serde(default)]
        repository: Option<String>,
        #[serde(default)]
        tags: Vec<String>,
        to: String,
        #[serde(default)]
        lifetime_s: Option<u64>,
    },
    /// Send a signed key statement (`ferry key rotate|revoke` wrote it to
    /// `statement`) to `to`.
    KeyPublish {
        statement: PathBuf,
        to: String,
    },
    /// Reassemble an object held by the node, verified, into `out`.
    Get {
        manifest: String,
        out: PathBuf,
    },
    /// Reassemble the newest file delivered here under `name` (the path
    /// `ferry send` gave it) into `out`.
    GetNamed {
        name: String,
        out: PathBuf,
    },
    /// Write every file delivered here, the newest of each name, into the
    /// directory `out` by its name; with `under`, only names at or below
    /// that path. Answers with the files written and those skipped.
    Restore {
        out: PathBuf,
        #[serde(default)]
        under: Option<String>,
    },
    /// The configured peers with their links' state and traffic.
    Peers,
    /// Write the bundles held for `to` (a peer name, a node id or
    /// `group:NAME`) to volume files at `out`: only what `to` lacks, by its
    /// last receipts, or everything with `full`; split into volumes of at
    /// most `max_bytes`. Answered by a stream: `{"ok":true,"planned":…}`,
    /// `{"progress":bytes,"total":bytes}` lines, then `{"done":…}` (or
    /// `{"error":…}`).
    Export {
        to: String,
        out: PathBuf,
        #[serde(default)]
        max_bytes: Option<u64>,
        #[serde(default)]
        full: bool,
    },
    /// Import a volume or receipts file: every record verified, a report
    /// of each one rejected.
    Import {
        path: PathBuf,
    },
    /// Write this node's receipts (custody signals and what it holds) to `out`.
    ExportReceipts {
        out: PathBuf,
    },
    /// The daemon's recent log lines: the last `lines` (default: all kept);
    /// with `follow`, then every new line until the client hangs up.
    Logs {
        #[serde(default)]
        lines: Option<usize>,
        #[serde(default)]
        follow: bool,
    },
    /// Publish a repository's refs (`refs`: `main`, `refs/tags/*`; empty:
    /// every branch and tag) as Git release `name` (default: the
    /// directory's name without `.git`) to `to`.
    GitPublish {
        repo: PathBuf,
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        refs: Vec<String>,
        to: String,
        #[serde(default)]
        lifetime_s: Option<u64>,
        /// Send a whole release, forgetting what the destination was sent.
        #[serde(default)]
        whole: bool,
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

/// One configured peer, as `peers` answers it.
#[derive(Debug, Serialize, Deserialize)]
pub struct PeerStatus {
    pub name: String,
    /// All 64 hex digits.
    pub node: String,
    /// How this node reaches the peer: `quic`.
    pub transport: String,
    /// Where this node dials the peer; None: it waits to be dialled.
    pub address: Option<String>,
    pub profile: String,
    /// The engine's link number for the peer.
    pub link: Option<u32>,
    pub up: bool,
    pub frames_in: u64,
    pub bytes_in: u64,
    pub frames_out: u64,
    pub bytes_out: u64,
}

/// The transport and address of a peer, as `peers` shows them.
fn transport(peer: &Peer) -> (String, Option<String>) {
    match &peer.serial {
        Some(serial) => (
            "serial".to_string(),
            Some(serial.link.path.display().to_string()),
        ),
        None => ("quic".to_string(), peer.quic.map(|addr| addr.to_string())),
    }
}

/// Everything the admin server needs.
#[derive(Clone)]
pub struct Admin {
    pub engine: EngineHandle,
    pub store: Arc<RocksStore>,
    pub config: Arc<Config>,
    /// The peers, configured and learned at runtime, with their links.
    pub registry: Arc<Registry>,
    /// Git releases (`git_publish`).
    pub git: Option<Arc<crate::git::GitService>>,
    /// Signing, and key statements (`key_publish`).
    pub trust: Arc<crate::trust::TrustGate>,
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
        let request = serde_json::from_str::<Request>(&line);
        if let Ok(Request::Logs {
            lines: n,
            follow: true,
        }) = request
        {
            return follow_logs(n, lines, write).await;
        }
        if let Ok(Request::Export {
            to,
            out,
            max_bytes,
            full,
        }) = request
        {
            export_streaming(&admin, to, out, max_bytes, full, &mut write).await?;
            continue;
        }
        let answer = match request {
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

/// Answers `export`: the first line once the export is planned, progress
/// lines while its volumes are written, then the summary.
async fn export_streaming(
    admin: &Admin,
    to: String,
    out: PathBuf,
    max_bytes: Option<u64>,
    full: bool,
    write: &mut tokio::net::unix::OwnedWriteHalf,
) -> std::io::Result<()> {
    let destination = match admin.destination(&to) {
        Ok(d) => d,
        Err(error) => {
            let json = serde_json::json!({ "ok": false, "error": error });
            return write.write_all(format!("{json}\n").as_bytes()).await;
        }
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut last = 0;
    let progress = move |done: u64, total: u64| {
        // At most one line per MiB written, and the last.
        if done == 0 || done == total || done - last >= 1 << 20 {
            last = done;
            let _ = tx.send((done, total));
        }
    };
    let options = ferry_core::ExportOptions {
        full,
        max_volume_bytes: max_bytes,
    };
    let job = crate::media::export(
        &admin.engine,
        admin.trust.clone(),
        admin.store.clone(),
        destination,
        out,
        options,
        progress,
    );
    tokio::pin!(job);
    let mut first = true;
    let result = loop {
        tokio::select! {
            result = &mut job => break result,
            Some((done, total)) = rx.recv() => {
                let json = if first {
                    first = false;
                    serde_json::json!({ "ok": true, "planned": { "chunk_bytes": total } })
                } else {
                    serde_json::json!({ "progress": done, "total": total })
                };
                write.write_all(format!("{json}\n").as_bytes()).await?;
            }
        }
    };
    let json = match (result, first) {
        (Ok(done), true) => serde_json::json!({ "ok": true, "done": done }),
        (Ok(done), false) => serde_json::json!({ "done": done }),
        (Err(error), true) => serde_json::json!({ "ok": false, "error": error }),
        (Err(error), false) => serde_json::json!({ "error": error }),
    };
    write.write_all(format!("{json}\n").as_bytes()).await
}

/// Answers `logs` with `follow`: the recent lines, then each new one, until
/// the client hangs up (its end of the socket reads as closed, or a write
/// fails). Anything else the client sends meanwhile is ignored.
async fn follow_logs(
    n: Option<usize>,
    mut requests: tokio::io::Lines<BufReader<tokio::net::unix::OwnedReadHalf>>,
    mut write: tokio::net::unix::OwnedWriteHalf,
) -> std::io::Result<()> {
    use tokio::sync::broadcast::error::RecvError;
    let (tail, mut new_lines) = LogBuffer::global().follow(n.unwrap_or(usize::MAX));
    let first = serde_json::json!({ "ok": true, "lines": tail });
    write.write_all(format!("{first}\n").as_bytes()).await?;
    loop {
        let message = tokio::select! {
            line = new_lines.recv() => match line {
                Ok(line) => serde_json::json!({ "line": &*line }),
                Err(RecvError::Lagged(skipped)) => serde_json::json!({ "skipped": skipped }),
                Err(RecvError::Closed) => return Ok(()),
            },
            // Cancel-safe: a line read here is not lost to the next turn.
            request = requests.next_line() => match request? {
                None => return Ok(()),
                Some(_) => continue,
            },
        };
        write.write_all(format!("{message}\n").as_bytes()).await?;
    }
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
                // One bundle per file, taken into custody together: a
                // directory is sent whole or not at all.
                let submissions = files
                    .iter()
                    .map(|(name, manifest, ..)| Submission {
                        destination: destination.clone(),
                        lifetime,
                        priority,
                        kind: PayloadKind::Blob,
                        manifest: *manifest,
                        release: name.clone().into_bytes(),
                        signature: Vec::new(),
                    })
                    .collect();
                let bundles = self
                    .engine
                    .submit_all(submissions)
                    .await
                    .map_err(|e| format!("nothing sent: {e}"))?;
                let sent: Vec<Sent> = files
                    .into_iter()
                    .zip(bundles)
                    .map(|((path, manifest, bytes, new_bytes), bundle)| Sent {
                        path,
                        bundle: bundle.to_string(),
                        manifest: manifest.to_string(),
                        bytes,
                        new_bytes,
                    })
                    .collect();
                Ok(serde_json::json!({ "sent": sent }))
            }
            Request::OciPublish {
                source,
                credentials,
                repository,
                mut tags,
                to,
                lifetime_s,
            } => {
                let (spec, tag) = crate::oci::SourceSpec::parse(&source)?;
                if let Some(tag) = tag
                    && !tags.contains(&tag)
                {
                    tags.push(tag);
                }
                let repository = match repository {
                    Some(r) => r,
                    None => spec.default_repository().ok_or_else(|| {
                        format!("{source:?} names no valid repository; name one with --repository")
                    })?,
                };
                let publisher = crate::oci::Publisher {
                    config: self.config.clone(),
                    engine: self.engine.clone(),
                    store: self.store.clone(),
                    registry: self.registry.clone(),
                    gate: self.trust.clone(),
                };
                let lifetime = lifetime_s.map(Duration::from_secs);
                let (bundle, staged) = publisher
                    .publish(&spec, &credentials, &repository, &tags, &to, lifetime)
                    .await?;
                Ok(serde_json::json!({
                    "bundle": bundle.to_string(),
                    "manifest": staged.manifest.to_string(),
                    "repository": repository,
                    "tags": staged.release.tags.keys().collect::<Vec<_>>(),
                    "blobs": staged.release.blobs.len(),
                    "bytes": staged.bytes,
                    "new_bytes": staged.new_bytes,
                    "layers": staged.layers,
                }))
            }
            Request::Get { manifest, out } => {
                let id = ferry_chunk::ManifestId::from_hex(&manifest)
                    .ok_or_else(|| format!("{manifest:?} is not a manifest id (64 hex digits)"))?;
                let store = self.store.clone();
                let bytes =
                    tokio::task::spawn_blocking(move || restore::reassemble(&store, id, &out))
                        .await
                        .map_err(|e| e.to_string())??;
                Ok(serde_json::json!({ "bytes": bytes }))
            }
            Request::GetNamed { name, out } => {
                let files = self.delivered_files().await?;
                let file = restore::newest_by_name(files)
                    .remove(name.as_bytes())
                    .ok_or_else(|| format!("no file delivered here is named {name:?}"))?;
                let store = self.store.clone();
                let bytes = tokio::task::spawn_blocking(move || {
                    restore::reassemble(&store, file.manifest, &out)
                })
                .await
                .map_err(|e| e.to_string())??;
                Ok(serde_json::json!({
                    "bytes": bytes,
                    "bundle": file.bundle.to_string(),
                    "manifest": file.manifest.to_string(),
                }))
            }
            Request::Restore { out, under } => {
                let files = self.delivered_files().await?;
                let store = self.store.clone();
                let restored = tokio::task::spawn_blocking(move || {
                    restore::restore(&store, files, under.as_deref(), &out)
                })
                .await
                .map_err(|e| e.to_string())??;
                serde_json::to_value(restored).map_err(|e| e.to_string())
            }
            Request::Peers => {
                let status = self.engine.status().await?;
                Ok(serde_json::json!({ "peers": self.peers(&status) }))
            }
            Request::Logs { lines, .. } => {
                let lines = LogBuffer::global().tail(lines.unwrap_or(usize::MAX));
                Ok(serde_json::json!({ "lines": lines }))
            }
            Request::Export { .. } => Err("export is answered as a stream".into()),
            Request::Import { path } => {
                let me = self.engine.with_engine(|engine, _| engine.node()).await?;
                crate::media::import(&self.engine, &self.trust, self.store.clone(), me, path).await
            }
            Request::ExportReceipts { out } => {
                crate::media::export_receipts(&self.engine, self.trust.clone(), out).await
            }
            Request::GitPublish {
                repo,
                name,
                refs,
                to,
                lifetime_s,
                whole,
            } => {
                let git = self.git.as_ref().ok_or("this node has no Git adapter")?;
                let destination = self.destination(&to)?;
                let repo =
                    std::path::absolute(&repo).map_err(|e| format!("{}: {e}", repo.display()))?;
                let name = match name {
                    Some(n) => n,
                    None => repo
                        .file_name()
                        .map(|n| n.to_string_lossy().trim_end_matches(".git").to_owned())
                        .filter(|n| !n.is_empty())
                        .ok_or_else(|| format!("{}: give the release a name", repo.display()))?,
                };
                let options = crate::git::PublishOptions {
                    lifetime: lifetime_s.map(Duration::from_secs),
                    whole,
                };
                let published = git
                    .publish(repo, &name, &refs, destination, &to, options)
                    .await?;
                serde_json::to_value(published).map_err(|e| e.to_string())
            }
            Request::KeyPublish { statement, to } => {
                let trust = &self.trust;
                let destination = self.destination(&to)?;
                let bytes = std::fs::read(&statement)
                    .map_err(|e| format!("{}: {e}", statement.display()))?;
                let bundle = trust.publish_statement(bytes, destination).await?;
                Ok(serde_json::json!({ "bundle": bundle.to_string() }))
            }
        }
    }

    /// Every peer, configured or learned at runtime, with its link's state
    /// from `status`.
    fn peers(&self, status: &Status) -> Vec<PeerStatus> {
        self.registry
            .peers()
            .into_iter()
            .map(|(link, peer)| {
                let link = Some(link.0);
                let traffic = link.and_then(|l| status.links.iter().find(|t| t.link == l));
                let (transport, address) = transport(&peer);
                PeerStatus {
                    name: peer.name.clone(),
                    node: peer.node.to_hex(),
                    transport,
                    address,
                    profile: peer.profile.name.to_string(),
                    link,
                    up: link.is_some_and(|l| status.links_up.contains(&l)),
                    frames_in: traffic.map_or(0, |t| t.frames_in),
                    bytes_in: traffic.map_or(0, |t| t.bytes_in),
                    frames_out: traffic.map_or(0, |t| t.frames_out),
                    bytes_out: traffic.map_or(0, |t| t.bytes_out),
                }
            })
            .collect()
    }

    /// The file bundles delivered here and still held.
    async fn delivered_files(&self) -> Result<Vec<restore::Delivered>, String> {
        self.engine
            .with_engine(|engine, _| restore::delivered_files(engine))
            .await
    }

    pub(crate) fn destination(&self, to: &str) -> Result<Endpoint, String> {
        resolve_destination(&self.registry, to)
    }
}

/// `to` as a destination: a peer name (configured or learned), a node id,
/// or `group:NAME`.
pub fn resolve_destination(registry: &Registry, to: &str) -> Result<Endpoint, String> {
    if let Some(group) = to.strip_prefix("group:") {
        return Ok(Endpoint::Group(group.to_string()));
    }
    if let Some((_, peer)) = registry.peers().into_iter().find(|(_, p)| p.name == to) {
        return Ok(Endpoint::Node(peer.node));
    }
    parse_node_id(to)
        .map(Endpoint::Node)
        .map_err(|_| format!("{to:?} is not a peer name, a node id or group:NAME"))
}

/// Chunks `bytes` (a pack, a welcome, a statement) into `store` and syncs
/// them, off the async threads: the manifest to submit.
pub async fn store_bytes(
    store: &Arc<RocksStore>,
    name: &'static str,
    bytes: Vec<u8>,
) -> Result<ferry_chunk::ManifestId, String> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || {
        let chunker = Chunker::new(ChunkerConfig::default()).map_err(|e| e.to_string())?;
        let mut ingest = Ingest::new(&store, chunker);
        let manifest = ingest
            .add(name, bytes.as_slice(), |_| {})
            .map_err(|e| e.to_string())?;
        // Synced before the engine takes the bundle, as `ferry send` does.
        ingest.finish().map_err(|e| e.to_string())?;
        Ok(manifest)
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Chunks a file, or each file under a directory, into the store.
/// Returns (relative name, manifest, bytes, bytes new to the store) per file.
fn ingest(
    store: &RocksStore,
    path: &Path,
) -> Result<Vec<(String, ferry_chunk::ManifestId, u64, u64)>, String> {
    let entries = ferry_store::sources(path)?;
    if entries.is_empty() {
        return Err(format!("{} holds no files", path.display()));
    }
    // Every name first: a bundle's name is UTF-8 (the leaf writes the file
    // back out under it), and a directory is sent whole or not at all.
    let mut named = Vec::with_capacity(entries.len());
    let mut not_utf8 = Vec::new();
    for ferry_store::Source { path: file, .. } in entries {
        let name = file
            .strip_prefix(path)
            .ok()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| Path::new(file.file_name().unwrap_or_default()))
            .to_str()
            .map(str::to_owned);
        match name {
            Some(name) => named.push((name, file)),
            None => not_utf8.push(file.display().to_string()),
        }
    }
    if !not_utf8.is_empty() {
        return Err(format!(
            "{} holds names that are not UTF-8, which a bundle's name must be: {} \
             (rename them first)",
            path.display(),
            not_utf8.join(", ")
        ));
    }
    let chunker = Chunker::new(ChunkerConfig::default()).map_err(|e| e.to_string())?;
    let mut ingest = Ingest::new(store, chunker);
    let mut files = Vec::new();
    for (name, file) in named {
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

/// Sends one request to the daemon at `socket` and returns its answer.
pub async fn request(socket: &Path, request: &Request) -> Result<serde_json::Value, String> {
    let mut answer = None;
    stream(socket, request, |value| {
        answer = Some(value.clone());
        false
    })
    .await?;
    answer.ok_or_else(|| "ferryd closed the connection without answering".to_string())
}

/// Sends one request whose answer is a stream (`logs` with `follow`) and
/// hands `each` every line of it, the first answer included, until ferryd
/// closes the connection or `each` returns false.
pub async fn stream(
    socket: &Path,
    request: &Request,
    mut each: impl FnMut(&serde_json::Value) -> bool,
) -> Result<(), String> {
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
    let mut lines = BufReader::new(read).lines();
    let mut first = true;
    while let Some(line) = lines.next_line().await.map_err(|e| e.to_string())? {
        let value: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| format!("bad answer from ferryd: {e}"))?;
        if first && value["ok"] != true {
            return Err(value["error"]
                .as_str()
                .unwrap_or("ferryd refused the request")
                .to_string());
        }
        first = false;
        if !each(&value) {
            break;
        }
    }
    if first {
        return Err("ferryd closed the connection without answering".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An empty file (a `.gitkeep`) is chunked like any other: into an
    /// empty manifest, which travels as its bundle's offer alone.
    #[test]
    fn a_directory_with_an_empty_file_is_taken_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = RocksStore::open(dir.path().join("store"), Default::default()).unwrap();
        let send = dir.path().join("send");
        std::fs::create_dir_all(send.join("sub")).unwrap();
        std::fs::write(send.join("a.txt"), b"first").unwrap();
        std::fs::write(send.join("sub/.keep"), b"").unwrap();
        let files = ingest(&store, &send).unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.0.as_str()).collect();
        assert_eq!(names, ["a.txt", "sub/.keep"]);
        assert!(store.has_chunk(ferry_chunk::ChunkId::of(b"first")).unwrap());
        let empty = store.get_manifest(files[1].1).unwrap().expect("stored");
        assert_eq!((empty.total_length(), empty.encoded_len()), (0, 0));
        assert_eq!((files[1].2, files[1].3), (0, 0));
    }

    /// A name that is not UTF-8 cannot name a bundle (the leaf writes the
    /// file back out under it): the directory is refused, naming it, and
    /// nothing of it is stored.
    #[test]
    fn a_name_that_is_not_utf8_is_refused_and_nothing_stored() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let store = RocksStore::open(dir.path().join("store"), Default::default()).unwrap();
        let send = dir.path().join("send");
        std::fs::create_dir_all(&send).unwrap();
        std::fs::write(send.join("a.txt"), b"first").unwrap();
        let bad = std::ffi::OsStr::from_bytes(b"caf\xe9.txt");
        std::fs::write(send.join(bad), b"second").unwrap();
        let error = ingest(&store, &send).unwrap_err();
        assert!(
            error.contains("not UTF-8") && error.contains("caf"),
            "{error}"
        );
        assert!(!store.has_chunk(ferry_chunk::ChunkId::of(b"first")).unwrap());
    }
}
