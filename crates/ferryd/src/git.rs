//! Git releases in the daemon: publishing (`ferry git publish`, watched
//! repositories), applying delivered `Git` bundles into the served root, and
//! the read-only smart-HTTP server over it.
//!
//! Publishing keeps, per repository and destination, a
//! [`DestinationState`] in `<git root>/.publish.json`; a release is
//! confirmed when the store no longer holds its bundle for forwarding (the
//! next hop took custody, or receipts carried back on removable media
//! released it), and the next thin pack leaves out what that release's refs
//! reach. A publish first confirms whatever has been carried on since the
//! last check, so a release published right after receipts are imported is
//! thin. A release that will not arrive (its bundle expired here before
//! the next hop took it, or a deletion report names it) is given up with
//! every release built on it ([`DestinationState::lost`]), so none waits at
//! the leaf for it. The applying side reads delivered bundles from the
//! store and hands them to [`Applier`], one at a time, including bundles
//! delivered before a restart. This module never talks to the engine except
//! through [`Input`].

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ferry_chunk::{Chunker, ChunkerConfig, ManifestId};
use ferry_core::{BundleId, BundleRecord, Cf, Endpoint, PayloadKind, Priority, Store, Submission};
use ferry_git::{Applier, DestinationState, GitRelease, Lost, Publisher, Refusal, ServedRoot};
use ferry_store::{Ingest, RocksStore};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::config::{GitSource, GitWatch};
use crate::driver::{EngineHandle, Input};
use crate::trust::TrustGate;
use ferry_trust::Kind;

/// What `ferry git publish` answers.
#[derive(Debug, Serialize)]
pub struct Published {
    pub repository: String,
    /// None: the destination already has these refs.
    pub bundle: Option<String>,
    pub sequence: Option<u64>,
    /// The release this one builds on; None: a whole release.
    pub base: Option<u64>,
    pub refs: usize,
    pub objects: u32,
    pub payload_bytes: u64,
}

/// How a release is published.
#[derive(Clone, Copy, Debug, Default)]
pub struct PublishOptions {
    /// How long the bundle may live undelivered; default 30 days.
    pub lifetime: Option<Duration>,
    /// Forget what the destination was sent and confirmed: the release is a
    /// whole one (for a leaf that lost its repository, say).
    pub whole: bool,
}

/// A release sent: its state key, when it was sent (ms since the epoch)
/// and its sequence (absent in entries written before it was kept).
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
struct Sent(String, u64, #[serde(default)] Option<u64>);

/// The daemon's Git adapter.
pub struct GitService {
    store: Arc<RocksStore>,
    engine: EngineHandle,
    applier: Applier,
    state_path: PathBuf,
    /// "repository\0destination" → state.
    states: Mutex<BTreeMap<String, DestinationState>>,
    /// Sent and not yet confirmed: (state key, bundle, sequence).
    in_flight: Mutex<Vec<(String, BundleId, u64)>>,
    /// Every release sent, by bundle id, so a loss reported later (even
    /// after a restart) reaches the right destination's state. Kept in
    /// `.sent.json`; entries go after 60 days.
    sent_path: PathBuf,
    sent: Mutex<BTreeMap<String, Sent>>,
    /// One publish at a time.
    publishing: tokio::sync::Mutex<()>,
    /// Signs what is published here; checks what is delivered here.
    gate: Arc<TrustGate>,
}

impl GitService {
    pub fn new(
        root: &Path,
        store: Arc<RocksStore>,
        engine: EngineHandle,
        gate: Arc<TrustGate>,
    ) -> Result<Arc<Self>, String> {
        let applier = Applier::new(root).map_err(|e| format!("git root: {e}"))?;
        let state_path = root.join(".publish.json");
        let states = crate::media::read_json(&state_path)?;
        let sent_path = root.join(".sent.json");
        let sent = crate::media::read_json(&sent_path)?;
        Ok(Arc::new(Self {
            store,
            engine,
            applier,
            state_path,
            states: Mutex::new(states),
            in_flight: Mutex::new(Vec::new()),
            sent_path,
            sent: Mutex::new(sent),
            publishing: tokio::sync::Mutex::new(()),
            gate,
        }))
    }

    pub fn root(&self) -> &ServedRoot {
        self.applier.root()
    }

    fn save_states(&self) {
        let json = {
            let states = self.states.lock().expect("git state lock");
            serde_json::to_vec_pretty(&*states).expect("states serialise")
        };
        crate::media::write_json(&self.state_path, &json, "the git publish state");
    }

    fn save_sent(&self) {
        let json = {
            let sent = self.sent.lock().expect("git sent lock");
            serde_json::to_vec_pretty(&*sent).expect("sent releases serialise")
        };
        crate::media::write_json(&self.sent_path, &json, "the git releases sent");
    }

    /// Release `sequence` of `key` will not reach its destination: the
    /// state gives it up, with every release sent after it (see
    /// [`DestinationState::lost`]); those still in flight here confirm
    /// nothing when their bundles leave. Answers what the state did.
    fn give_up(&self, key: &str, sequence: Option<u64>) -> Lost {
        let lost = self
            .states
            .lock()
            .expect("git state lock")
            .get_mut(key)
            .map_or(Lost::Ignored, |state| state.lost(sequence));
        if lost != Lost::Ignored {
            self.save_states();
        }
        lost
    }

    /// A node reported deleting a release this node sent: its lifetime
    /// ended in that node's custody, or the destination refused it (its
    /// trust policy, say). Whatever was built on it is given up.
    fn deleted(&self, report: &crate::driver::Report) {
        let Some(Sent(key, _, sequence)) = self
            .sent
            .lock()
            .expect("git sent lock")
            .get(&report.bundle.to_string())
            .cloned()
        else {
            return;
        };
        let lost = self.give_up(&key, sequence);
        let (repository, destination) = key.split_once('\0').unwrap_or((key.as_str(), ""));
        let what = match report.reason {
            ferry_core::Reason::Unauthorised => "git release refused at the destination",
            _ => "git release deleted before it reached the destination",
        };
        let next = match lost {
            Lost::Ignored => return,
            Lost::Reset => "the next release to it is a whole one".to_owned(),
            Lost::RolledBack { to } => format!("the next release to it builds on release {to}"),
        };
        tracing::warn!(
            bundle = %report.bundle,
            repository,
            destination,
            sequence,
            reporter = %report.reporter,
            reason = ?report.reason,
            detail = %report.detail,
            "{what}; it and the releases built on it are given up; {next}"
        );
    }

    /// Listens for deletion reports about releases sent from here.
    pub fn watch_deletions(self: &Arc<Self>) {
        let (to, mut reports) = mpsc::unbounded_channel();
        self.engine.send(Input::WatchReports { to });
        let me = self.clone();
        tokio::spawn(async move {
            while let Some(report) = reports.recv().await {
                // A report can come back before the publish that sent the
                // bundle has noted it: wait for that publish.
                let _publish_done = me.publishing.lock().await;
                me.deleted(&report);
            }
        });
    }

    /// Publishes `source`'s refs matching `refs` as repository `name` to
    /// `to` (`to_key` names the destination in the state).
    #[tracing::instrument(skip_all, fields(repository = name, to = to_key))]
    pub async fn publish(
        self: &Arc<Self>,
        source: PathBuf,
        name: &str,
        refs: &[String],
        to: Endpoint,
        to_key: &str,
        options: PublishOptions,
    ) -> Result<Published, String> {
        let _one = self.publishing.lock().await;
        self.confirm_carried();
        let key = format!("{name}\0{to_key}");
        let state = match options.whole {
            true => DestinationState::default(),
            false => self
                .states
                .lock()
                .expect("git state lock")
                .get(&key)
                .cloned()
                .unwrap_or_default(),
        };
        let publisher = Publisher::new(git_dir(&source), name, refs).map_err(|e| e.to_string())?;
        let store = self.store.clone();
        let repo = name.to_owned();
        let made = tokio::task::spawn_blocking(move || {
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_millis() as u64);
            let Some(publication) = publisher
                .publish(&state, now_ms)
                .map_err(|e| e.to_string())?
            else {
                return Ok(None);
            };
            let chunker = Chunker::new(ChunkerConfig::default()).map_err(|e| e.to_string())?;
            let mut ingest = Ingest::new(&store, chunker);
            let manifest = ingest
                .add(&repo, publication.payload.as_slice(), |_| {})
                .map_err(|e| e.to_string())?;
            // Synced before the engine takes the bundle, as `ferry send` does.
            ingest.finish().map_err(|e| e.to_string())?;
            Ok::<_, String>(Some((publication, manifest)))
        })
        .await
        .map_err(|e| e.to_string())??;
        let Some((publication, manifest)) = made else {
            return Ok(Published {
                repository: name.to_owned(),
                bundle: None,
                sequence: None,
                base: None,
                refs: 0,
                objects: 0,
                payload_bytes: 0,
            });
        };
        let release = publication.release.encode();
        // The sequence grows with every release of this repository to this
        // destination: it is the signed version.
        let prepared = self
            .gate
            .prepare(
                Kind::Git,
                name,
                &to,
                publication.release.sequence,
                release,
                manifest,
            )
            .await?;
        let bundle = self
            .engine
            .submit(Submission {
                destination: to,
                lifetime: options.lifetime.unwrap_or(RELEASE_LIFETIME),
                priority: Priority::Normal,
                kind: PayloadKind::Git,
                manifest: prepared.manifest,
                release: prepared.release,
                signature: prepared.signature,
            })
            .await?;
        let sequence = publication.release.sequence;
        {
            let mut states = self.states.lock().expect("git state lock");
            let state = states.entry(key.clone()).or_default();
            if options.whole {
                *state = DestinationState::default();
            }
            state.record_sent(&publication);
        }
        self.save_states();
        {
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let mut sent = self.sent.lock().expect("git sent lock");
            sent.retain(|_, Sent(_, at, _)| now_ms.saturating_sub(*at) < SENT_KEPT_MS);
            sent.insert(
                bundle.to_string(),
                Sent(key.clone(), now_ms, Some(sequence)),
            );
        }
        self.save_sent();
        self.in_flight
            .lock()
            .expect("git in-flight lock")
            .push((key, bundle, sequence));
        tracing::info!(%bundle, sequence, objects = publication.release.objects, bytes = publication.payload.len(), "git release sent");
        // Carried already (no next hop owes custody: the destination is
        // not routed yet), or carried before it was noted in flight.
        self.confirm_carried();
        Ok(Published {
            repository: name.to_owned(),
            bundle: Some(bundle.to_string()),
            sequence: Some(sequence),
            base: publication.release.base,
            refs: publication.release.refs.len(),
            objects: publication.release.objects,
            payload_bytes: publication.payload.len() as u64,
        })
    }

    /// Confirms a release once its bundle is carried: whenever a bundle in
    /// flight leaves this node's custody (every next hop took it, or its
    /// lifetime ended, which confirms nothing), later packs leave out what
    /// a carried one holds.
    pub fn watch_carried(self: &Arc<Self>) {
        let (to, mut ended) = mpsc::unbounded_channel();
        self.engine.send(Input::WatchCustodyEnds { to });
        let me = self.clone();
        tokio::spawn(async move {
            while let Some(bundle) = ended.recv().await {
                let ours = me
                    .in_flight
                    .lock()
                    .expect("git in-flight lock")
                    .iter()
                    .any(|(_, b, _)| *b == bundle);
                if ours {
                    // Not while a publish builds on the state.
                    let _one = me.publishing.lock().await;
                    me.confirm_carried();
                }
            }
        });
    }

    /// Confirms every in-flight release whose bundle every next hop took
    /// custody of: later packs leave out what it holds. One whose bundle
    /// expired here first is given up, with every release built on it.
    /// Called with `publishing` held.
    fn confirm_carried(&self) {
        let mut carried = Vec::new();
        let mut expired = Vec::new();
        {
            let mut waiting = self.in_flight.lock().expect("git in-flight lock");
            for (key, bundle, sequence) in std::mem::take(&mut *waiting) {
                let fate = match self.store.get(Cf::Bundles, &bundle.to_key()) {
                    Ok(record) => fate(record.and_then(|b| BundleRecord::decode(&b)).as_ref()),
                    // Read again at the next custody end.
                    Err(_) => Fate::Waiting,
                };
                match fate {
                    Fate::Carried => carried.push((key, bundle, sequence)),
                    Fate::Waiting => waiting.push((key, bundle, sequence)),
                    Fate::Expired => expired.push((key, bundle, sequence)),
                }
            }
        }
        // Before the carried ones: a release built on one lost here
        // confirms nothing.
        for (key, bundle, sequence) in expired {
            let lost = self.give_up(&key, Some(sequence));
            if lost != Lost::Ignored {
                tracing::warn!(
                    %bundle, sequence, repository = %key, ?lost,
                    "git release expired before every next hop took it; it and the releases built on it are given up"
                );
            }
        }
        let confirmed: Vec<(BundleId, u64)> = {
            let mut states = self.states.lock().expect("git state lock");
            carried
                .into_iter()
                .filter(|(key, _, sequence)| {
                    states
                        .get_mut(key)
                        .is_some_and(|state| state.confirm(*sequence))
                })
                .map(|(_, bundle, sequence)| (bundle, sequence))
                .collect()
        };
        if confirmed.is_empty() {
            return;
        }
        self.save_states();
        for (bundle, sequence) in confirmed {
            tracing::info!(%bundle, sequence, "git release carried on; later packs leave out what it holds");
        }
    }

    /// Applies every `Git` bundle delivered here: `held` (delivered before
    /// this start) first, then each new one.
    pub fn watch_deliveries(self: &Arc<Self>, held: Vec<(BundleId, ManifestId)>) {
        let (to, mut delivered) = mpsc::unbounded_channel();
        for h in held {
            let _ = to.send(h);
        }
        self.engine.send(Input::Watch {
            kind: PayloadKind::Git,
            to,
        });
        let me = self.clone();
        tokio::spawn(async move {
            while let Some((bundle, _)) = delivered.recv().await {
                let me = me.clone();
                let applied = tokio::task::spawn_blocking(move || me.apply_delivered(bundle)).await;
                match applied {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::error!(%bundle, "git release not applied: {e}"),
                    Err(e) => tracing::error!(%bundle, "git release not applied: {e}"),
                }
            }
        });
    }

    fn apply_delivered(&self, bundle: BundleId) -> Result<(), String> {
        let record = self
            .store
            .get(Cf::Bundles, &bundle.to_key())
            .map_err(|e| e.to_string())?
            .and_then(|b| BundleRecord::decode(&b))
            .ok_or("the bundle is no longer held")?;
        let payload = match self.gate.open_payload(&record.header) {
            Ok(payload) => payload,
            Err(refusal) => {
                self.gate.refuse(&record.header, &refusal);
                return Ok(());
            }
        };
        let header = &payload.header;
        let release = GitRelease::decode(&header.release).map_err(|e| e.to_string())?;
        if !self.applier.wants(&release).map_err(|e| e.to_string())? {
            return Ok(());
        }
        let accepted = match self.gate.check(header, Kind::Git, &release.repository) {
            Ok(accepted) => accepted,
            Err(refusal) => {
                self.gate.refuse(header, &refusal);
                return Ok(());
            }
        };
        let incoming = self.root().path().join(".incoming");
        std::fs::create_dir_all(&incoming).map_err(|e| e.to_string())?;
        let mut file = tempfile::tempfile_in(&incoming).map_err(|e| e.to_string())?;
        payload.read_object(&self.store, std::io::BufWriter::new(&mut file))?;
        use std::io::Seek;
        file.rewind().map_err(|e| e.to_string())?;
        let outcome = self
            .applier
            .apply(&release, &mut std::io::BufReader::new(file))
            .map_err(|e| e.to_string())?;
        tracing::info!(%bundle, repository = %release.repository, sequence = release.sequence, sealed = payload.sealed(), ?outcome, "git release");
        if let (Some(accepted), ferry_git::ApplyOutcome::Applied { .. }) = (&accepted, &outcome) {
            self.gate.record(accepted);
        }
        Ok(())
    }

    /// Polls each watched repository and publishes it when its refs change.
    pub fn watch_repositories(
        self: &Arc<Self>,
        watches: Vec<GitWatch>,
        admin: crate::admin::Admin,
    ) {
        for w in watches {
            let me = self.clone();
            let admin = admin.clone();
            tokio::spawn(async move {
                loop {
                    if let Err(e) = me.poll_watch(&w, &admin).await {
                        tracing::warn!(repository = %w.name, "watched repository not published: {e}");
                    }
                    tokio::time::sleep(w.interval).await;
                }
            });
        }
    }

    async fn poll_watch(
        self: &Arc<Self>,
        w: &GitWatch,
        admin: &crate::admin::Admin,
    ) -> Result<(), String> {
        let source = match &w.source {
            GitSource::Path(p) => p.clone(),
            GitSource::Url(url) => {
                let mirror = self
                    .root()
                    .path()
                    .join(".mirrors")
                    .join(format!("{}.git", w.name.replace('/', "~")));
                let url = url.clone();
                let dir = mirror.clone();
                tokio::task::spawn_blocking(move || fetch_mirror(&url, &dir))
                    .await
                    .map_err(|e| e.to_string())??;
                mirror
            }
        };
        let to = admin.destination(&w.to)?;
        let published = self
            .publish(
                source,
                &w.name,
                &w.refs,
                to,
                &w.to,
                PublishOptions::default(),
            )
            .await?;
        if published.bundle.is_some() {
            tracing::info!(repository = %w.name, sequence = ?published.sequence, "watched repository changed; published");
        }
        Ok(())
    }
}

/// What became of a release's bundle at this node, by its custody record.
#[derive(Debug, PartialEq, Eq)]
enum Fate {
    /// Every next hop took custody (or none was owed).
    Carried,
    /// Next hops still owe custody.
    Waiting,
    /// No record: the engine deletes one only when the bundle expires.
    Expired,
}

fn fate(record: Option<&BundleRecord>) -> Fate {
    match record {
        Some(r) if r.pending_hops.is_empty() => Fate::Carried,
        Some(_) => Fate::Waiting,
        None => Fate::Expired,
    }
}

/// Clones `url` into the bare mirror `dir`, or fetches it (pruning).
fn fetch_mirror(url: &str, dir: &Path) -> Result<(), String> {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .output()
            .map_err(|e| format!("git: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "git {}: {}",
                args[0],
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    };
    let d = dir.to_string_lossy();
    if dir.join("objects").is_dir() {
        run(&["--git-dir", &d, "fetch", "--prune", "--quiet", "origin"])
    } else {
        let _ = std::fs::remove_dir_all(dir);
        run(&["clone", "--mirror", "--quiet", "--", url, &d])
    }
}

/// A work tree's `.git`, or the directory itself (bare).
fn git_dir(path: &Path) -> PathBuf {
    let dotgit = path.join(".git");
    if dotgit.is_dir() {
        dotgit
    } else {
        path.to_owned()
    }
}

/// How long a sent release is remembered for deletion reports: twice the
/// default lifetime.
const SENT_KEPT_MS: u64 = 2 * RELEASE_LIFETIME.as_millis() as u64;

/// A release's lifetime unless the publish gives one.
const RELEASE_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

/// Git bundles delivered here before this start, to apply again in case a
/// crash came before they were applied (applying twice changes nothing).
pub fn held_releases<S: Store>(engine: &ferry_core::Engine<S>) -> Vec<(BundleId, ManifestId)> {
    let mut held: Vec<_> = engine
        .bundles()
        .filter(|r| r.header.kind == PayloadKind::Git && r.delivered)
        .map(|r| (r.header.id, r.header.manifest))
        .collect();
    held.sort_by_key(|(id, _)| (id.created_ms, id.sequence));
    held
}

// ---------------------------------------------------------------- smart HTTP

/// Serves the root's repositories read-only over smart HTTP on `listener`
/// until the task is dropped, asking `check` (if any) before each
/// repository is served: `Err(reason)` answers 403 with the reason.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    root: ServedRoot,
    check: Option<ferry_oci::serve::ServeCheck>,
) -> std::io::Result<()> {
    let app = axum::Router::new()
        .fallback(handle)
        .with_state(Arc::new((root, check)));
    axum::serve(listener, app).await
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain")],
        format!("{message}\n"),
    )
        .into_response()
}

async fn handle(
    State(served): State<Arc<(ServedRoot, Option<ferry_oci::serve::ServeCheck>)>>,
    request: Request,
) -> Response {
    let (root, check) = &*served;
    let (parts, body) = request.into_parts();
    let (repo, advertise) = match ferry_git::route_request(
        parts.method.as_str(),
        parts.uri.path(),
        parts.uri.query(),
    ) {
        Ok(r) => (r.repository, r.advertise),
        Err(refusal) => {
            let status = match refusal {
                Refusal::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
                Refusal::Forbidden(_) => StatusCode::FORBIDDEN,
                Refusal::NotFound(_) => StatusCode::NOT_FOUND,
            };
            return refuse(status, &refusal.to_string());
        }
    };
    let git = match root.resolve(&repo) {
        Ok((name, git)) => match check.as_ref().map(|check| check(&name)) {
            Some(Err(reason)) => {
                return refuse(
                    StatusCode::FORBIDDEN,
                    &format!("repository {name} is not served: {reason}"),
                );
            }
            _ => git,
        },
        Err(e) => return refuse(StatusCode::NOT_FOUND, &e.to_string()),
    };
    let protocol = header_str(&parts.headers, "git-protocol");
    let gzip = header_str(&parts.headers, "content-encoding")
        .is_some_and(|e| e.eq_ignore_ascii_case("gzip"));
    let body = match axum::body::to_bytes(body, 64 << 20).await {
        Ok(b) => b,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, &format!("request body: {e}")),
    };
    let v2 = ferry_git::wants_protocol_v2(protocol.as_deref());
    let ran = tokio::task::spawn_blocking(move || {
        let input = if gzip { gunzip(&body)? } else { body.to_vec() };
        run_upload_pack(&git, advertise, protocol.as_deref(), &input)
    })
    .await;
    let output = match ran {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => {
            tracing::warn!(repository = %repo, "upload-pack: {e}");
            return refuse(StatusCode::INTERNAL_SERVER_ERROR, &e);
        }
        Err(e) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let mut body = Vec::with_capacity(output.len() + 40);
    let content_type = if advertise {
        if !v2 {
            body.extend_from_slice(b"001e# service=git-upload-pack\n0000");
        }
        "application/x-git-upload-pack-advertisement"
    } else {
        "application/x-git-upload-pack-result"
    };
    body.extend_from_slice(&output);
    let mut response = Bytes::from(body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, max-age=0, must-revalidate"),
    );
    response
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn gunzip(body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .take(256 << 20)
        .read_to_end(&mut out)
        .map_err(|e| format!("gzip request body: {e}"))?;
    Ok(out)
}

fn run_upload_pack(
    git: &ferry_git::Git,
    advertise: bool,
    protocol: Option<&str>,
    input: &[u8],
) -> Result<Vec<u8>, String> {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = ServedRoot::upload_pack(git, advertise, protocol)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run git upload-pack: {e}"))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let data = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let _ = writer.join();
    if !out.status.success() && out.stdout.is_empty() {
        return Err(format!(
            "git upload-pack: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_core::{BundleHeader, NodeId};

    /// A release whose bundle expired here was not carried: confirming it
    /// would make later packs leave out objects the next hop never got.
    #[test]
    fn an_expired_release_is_not_carried() {
        let node = NodeId([1; 32]);
        let record = |pending_hops: &[NodeId]| BundleRecord {
            header: BundleHeader {
                id: BundleId {
                    source: node,
                    created_ms: 1,
                    sequence: 1,
                },
                destination: Endpoint::Node(NodeId([2; 32])),
                lifetime: Duration::from_secs(60),
                priority: Priority::Normal,
                kind: PayloadKind::Git,
                manifest: ManifestId::of_encoding(&[]),
                manifest_len: 0,
                payload_len: 0,
                report_to: None,
                release: Vec::new(),
                signature: Vec::new(),
                hop_count: 0,
            },
            custody_from: None,
            pending_hops: pending_hops.iter().copied().collect(),
            delivered: false,
        };
        assert_eq!(fate(Some(&record(&[]))), Fate::Carried);
        assert_eq!(fate(Some(&record(&[NodeId([3; 32])]))), Fate::Waiting);
        assert_eq!(fate(None), Fate::Expired);
    }

    /// `.sent.json` written before sequences were kept still loads (a loss
    /// reported for such a release resets its destination); new entries
    /// keep their sequence.
    #[test]
    fn sent_releases_load_with_or_without_their_sequence() {
        let old: BTreeMap<String, Sent> =
            serde_json::from_str(r#"{"b1": ["fleet\u0000leaf", 5]}"#).unwrap();
        let Sent(key, at, sequence) = &old["b1"];
        assert_eq!((key.as_str(), *at, *sequence), ("fleet\0leaf", 5, None));
        let new = serde_json::to_string(&Sent("fleet\0leaf".into(), 5, Some(9))).unwrap();
        let Sent(_, _, sequence) = serde_json::from_str(&new).unwrap();
        assert_eq!(sequence, Some(9));
    }
}
