//! OCI at the daemon: publishing images as bundles (the admin API's
//! `oci_publish` and `[[oci.watch]]`), applying delivered OCI bundles into
//! the node's [`ImageStore`], and serving it read-only (`[oci] listen`).
//!
//! Applying: the engine announces every delivered `Oci` bundle
//! ([`Input::Watch`]); those delivered before a restart but maybe not yet
//! applied are applied at start ([`held`]). Applying again is harmless: a
//! held blob is skipped and a tag never moves back to an older release.
//! The release is read from the bundle's durable record in the store.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use ferry_core::{BundleId, BundleRecord, Cf, Engine, PayloadKind, Store};
use ferry_oci::{
    Applied, Chunking, ImageStore, Layout, Limits, OciRelease, Recipes, RegistryRef, Source,
    Staged, Stamp,
};
use ferry_store::{RocksStore, SharedStore};
use tokio::sync::mpsc;

use crate::config::{Config, OciWatch};
use crate::driver::{EngineHandle, Input};
use crate::links::Registry;
use crate::trust::TrustGate;
use ferry_trust::Kind;

/// What publishing needs: the engine, the store, and the peers to resolve
/// a destination.
#[derive(Clone)]
pub struct Publisher {
    pub config: Arc<Config>,
    pub engine: EngineHandle,
    pub store: Arc<RocksStore>,
    pub registry: Arc<Registry>,
    /// Signs what is published; checks what is delivered.
    pub gate: Arc<TrustGate>,
}

/// The OCI side of a running node.
pub struct Oci {
    pub images: Arc<ImageStore>,
    /// Where the registry listens, if it does.
    pub addr: Option<SocketAddr>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Oci {
    pub fn stop(&self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// OCI bundles delivered here, oldest first: those a previous run may not
/// have applied.
pub fn held<S: Store>(engine: &Engine<S>) -> Vec<BundleId> {
    let mut ids: Vec<BundleId> = engine
        .bundles()
        .filter(|r| r.header.kind == PayloadKind::Oci && r.delivered)
        .map(|r| r.header.id)
        .collect();
    ids.sort_by_key(|id| (id.created_ms, id.sequence));
    ids
}

/// OCI bundles delivered from now on; call before links start.
pub fn watch(engine: &EngineHandle) -> Delivered {
    let (to, delivered) = mpsc::unbounded_channel();
    engine.send(Input::Watch {
        kind: PayloadKind::Oci,
        to,
    });
    delivered
}

/// What [`watch`] returns.
pub type Delivered = mpsc::UnboundedReceiver<(BundleId, ferry_chunk::ManifestId)>;

/// Opens the image store, starts applying delivered bundles (`held`, then
/// what `delivered` announces), serving (if `[oci] listen` is set) and
/// watching sources (`[[oci.watch]]`).
pub async fn start(
    publisher: &Publisher,
    held: Vec<BundleId>,
    delivered: Delivered,
) -> std::io::Result<Oci> {
    let (config, store) = (&publisher.config, &publisher.store);
    let images = Arc::new(ImageStore::open(&config.oci.root).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("OCI image store {}: {e}", config.oci.root.display()),
        )
    })?);
    let mut tasks = vec![tokio::spawn(run_applier(
        images.clone(),
        store.clone(),
        publisher.engine.clone(),
        publisher.gate.clone(),
        held,
        delivered,
    ))];
    // Requests from leaves to send blobs again without a recipe.
    let (to, requests) = mpsc::unbounded_channel();
    publisher.engine.send(Input::Watch {
        kind: PayloadKind::Admin,
        to,
    });
    tasks.push(tokio::spawn(run_refetches(publisher.clone(), requests)));
    let mut addr = None;
    if let Some(listen) = config.oci.listen {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("OCI registry on {listen}: {e}")))?;
        let local = listener.local_addr()?;
        tracing::info!(addr = %local, root = %config.oci.root.display(), "OCI registry listening (read-only)");
        addr = Some(local);
        let images = images.clone();
        let check = publisher.gate.serve_check(Kind::Oci);
        tasks.push(tokio::spawn(async move {
            if let Err(e) = ferry_oci::serve::serve_checked(listener, images, check).await {
                tracing::error!(error = %e, "OCI registry stopped");
            }
        }));
    }
    for watch in &config.oci.watch {
        tasks.push(tokio::spawn(run_watch(watch.clone(), publisher.clone())));
    }
    Ok(Oci {
        images,
        addr,
        tasks,
    })
}

async fn run_applier(
    images: Arc<ImageStore>,
    store: Arc<RocksStore>,
    engine: EngineHandle,
    gate: Arc<TrustGate>,
    held: Vec<BundleId>,
    mut delivered: Delivered,
) {
    for id in held {
        apply_logged(&images, &store, &engine, &gate, id).await;
    }
    while let Some((id, _)) = delivered.recv().await {
        apply_logged(&images, &store, &engine, &gate, id).await;
    }
}

async fn apply_logged(
    images: &Arc<ImageStore>,
    store: &Arc<RocksStore>,
    engine: &EngineHandle,
    gate: &Arc<TrustGate>,
    id: BundleId,
) {
    let (images, store2, gate2) = (images.clone(), store.clone(), gate.clone());
    let result = tokio::task::spawn_blocking(move || apply_detailed(&images, &store2, id, &gate2))
        .await
        .map_err(|e| Failure::Other(e.to_string()))
        .and_then(|r| r);
    match result {
        Err(Failure::Refused { header, refusal }) => gate.refuse(&header, &refusal),
        Ok(applied) => tracing::info!(
            bundle = %id,
            repository = %applied.repository,
            written = applied.blobs_written,
            rebuilt = applied.blobs_rebuilt,
            rebuild_ms = applied.rebuild_ms,
            held = applied.blobs_held,
            moved = ?applied.tags_moved,
            kept = ?applied.tags_kept,
            "OCI release applied"
        ),
        Err(Failure::Rebuild {
            repository,
            failures,
        }) => {
            let reason = ferry_oci::ApplyError::Rebuild(failures.clone()).to_string();
            tracing::error!(bundle = %id, "OCI release not applied, no tag moved: {reason}");
            let request = Refetch {
                bundle: bundle_key(&id),
                repository,
                digests: failures.iter().map(|f| f.digest).collect(),
            };
            match send_refetch(store, engine, id.source, &request).await {
                Ok(sent) => tracing::warn!(
                    bundle = %id, request = %sent, blobs = request.digests.len(),
                    "asked the release's source to send those blobs again as they are"
                ),
                Err(e) => {
                    tracing::error!(bundle = %id, "cannot ask for the blobs as they are: {e}")
                }
            }
        }
        Err(Failure::Other(reason)) => {
            tracing::error!(bundle = %id, "OCI release not applied, no tag moved: {reason}")
        }
    }
}

/// Why a delivered release was not applied.
enum Failure {
    /// Blobs whose recipe failed: the source can send them as they are.
    Rebuild {
        repository: String,
        failures: Vec<ferry_oci::leaf::RebuildFailure>,
    },
    /// The trust policy refused the release.
    Refused {
        header: Box<ferry_core::BundleHeader>,
        refusal: ferry_trust::Refusal,
    },
    Other(String),
}

/// The `release` of an `Admin` bundle that asks an OCI release's source
/// to send blobs again without recipes; its payload is a [`Refetch`].
pub const REFETCH_RELEASE: &[u8] = b"ferry.oci.refetch.v1";
/// The most digests one request names.
const MAX_REFETCH: usize = 4096;

/// A leaf's request: the blobs of release `bundle` that it could not
/// rebuild from their recipes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Refetch {
    /// The release's bundle, as [`bundle_key`] writes it.
    pub bundle: String,
    pub repository: String,
    pub digests: Vec<ferry_oci::Digest>,
}

/// A bundle id as a file name: the hex of its key.
pub fn bundle_key(id: &BundleId) -> String {
    hex::encode(id.to_key())
}

async fn send_refetch(
    store: &Arc<RocksStore>,
    engine: &EngineHandle,
    to: ferry_core::NodeId,
    request: &Refetch,
) -> Result<BundleId, String> {
    let bytes = serde_json::to_vec(request).expect("plain data serialises");
    let manifest = crate::admin::store_bytes(store, "refetch", bytes).await?;
    engine
        .submit(ferry_core::Submission {
            destination: ferry_core::Endpoint::Node(to),
            lifetime: Duration::from_secs(7 * 24 * 3600),
            priority: ferry_core::Priority::Expedited,
            kind: PayloadKind::Admin,
            manifest,
            release: REFETCH_RELEASE.to_vec(),
            signature: Vec::new(),
        })
        .await
}

/// What a base remembers of each release it published, so a leaf's
/// [`Refetch`] can be answered: `<oci root>/published/<bundle key>.json`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Published {
    source: String,
    credentials: Option<PathBuf>,
    repository: String,
    tags: Vec<String>,
}

/// Answers leaves' [`Refetch`] requests: the digests go on the never-list
/// (durably), and the release is published again to the leaf that asked,
/// those blobs now as they are.
async fn run_refetches(
    publisher: Publisher,
    mut requests: mpsc::UnboundedReceiver<(BundleId, ferry_chunk::ManifestId)>,
) {
    while let Some((bundle, manifest)) = requests.recv().await {
        let store = publisher.store.clone();
        let read = tokio::task::spawn_blocking(move || read_refetch(&store, bundle, manifest))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r);
        let request = match read {
            Ok(Some(request)) => request,
            Ok(None) => continue, // another kind of admin bundle
            Err(e) => {
                tracing::warn!(%bundle, "ignoring an OCI refetch request: {e}");
                continue;
            }
        };
        if let Err(e) = answer_refetch(&publisher, bundle.source, &request).await {
            tracing::warn!(%bundle, repository = %request.repository, "OCI refetch request not answered: {e}");
        }
    }
}

fn read_refetch(
    store: &RocksStore,
    bundle: BundleId,
    id: ferry_chunk::ManifestId,
) -> Result<Option<Refetch>, String> {
    let record = store
        .get(Cf::Bundles, &bundle.to_key())
        .map_err(|e| e.to_string())?
        .and_then(|bytes| BundleRecord::decode(&bytes));
    if record.is_none_or(|r| r.header.release != REFETCH_RELEASE) {
        return Ok(None);
    }
    let manifest = store
        .get_manifest(id)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("object {id} is not held here"))?;
    if manifest.total_length() > 1 << 20 {
        return Err(format!("{} bytes; too long", manifest.total_length()));
    }
    let mut bytes = Vec::new();
    store
        .read_object(&manifest, &mut bytes)
        .map_err(|e| format!("object {id}: {e}"))?;
    let request: Refetch =
        serde_json::from_slice(&bytes).map_err(|e| format!("not a refetch request: {e}"))?;
    ferry_oci::digest::check_repository(&request.repository)?;
    if request.digests.is_empty() || request.digests.len() > MAX_REFETCH {
        return Err(format!("{} digests", request.digests.len()));
    }
    if request.bundle.len() != 2 * BundleId::KEY_LEN
        || !request.bundle.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err("the bundle is not a bundle key".into());
    }
    Ok(Some(request))
}

async fn answer_refetch(
    publisher: &Publisher,
    leaf: ferry_core::NodeId,
    request: &Refetch,
) -> Result<(), String> {
    let path = publisher
        .config
        .oci
        .root
        .join("published")
        .join(format!("{}.json", request.bundle));
    let published: Published = serde_json::from_slice(
        &std::fs::read(&path).map_err(|e| format!("no record of that release here: {e}"))?,
    )
    .map_err(|e| format!("{}: {e}", path.display()))?;
    if published.repository != request.repository {
        return Err(format!(
            "release {} was {}, not {}",
            request.bundle, published.repository, request.repository
        ));
    }
    let recipes = recipes(&publisher.config);
    let new = {
        let (recipes, digests) = (recipes.clone(), request.digests.clone());
        tokio::task::spawn_blocking(move || recipes.never_again(&digests))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("keeping the never-list: {e}"))?
    };
    if !new {
        tracing::info!(repository = %request.repository, "OCI refetch: those blobs already travel as they are");
        return Ok(());
    }
    let (spec, _) = SourceSpec::parse(&published.source)?;
    let (bundle, staged) = publisher
        .publish_to(
            &spec,
            &published.credentials,
            &published.repository,
            &published.tags,
            ferry_core::Endpoint::Node(leaf),
            None,
        )
        .await?;
    tracing::warn!(
        repository = %request.repository, %bundle, %leaf, blobs = request.digests.len(),
        new_bytes = staged.new_bytes,
        "a leaf could not rebuild blobs from their recipes: published again with them as they are"
    );
    Ok(())
}

/// Applies the delivered bundle `id` (see [`ImageStore::apply`]): opened
/// if it travelled sealed, then checked against `gate`'s policy.
fn apply_detailed(
    images: &ImageStore,
    store: &Arc<RocksStore>,
    id: BundleId,
    gate: &TrustGate,
) -> Result<Applied, Failure> {
    let other = |e: String| Failure::Other(e);
    let record = store
        .get(Cf::Bundles, &id.to_key())
        .map_err(|e| other(e.to_string()))?
        .and_then(|bytes| BundleRecord::decode(&bytes))
        .ok_or_else(|| other(format!("bundle {id} is no longer held")))?;
    let refused = |header: &ferry_core::BundleHeader, refusal| Failure::Refused {
        header: Box::new(header.clone()),
        refusal,
    };
    let payload = gate
        .open_payload(&record.header)
        .map_err(|refusal| refused(&record.header, refusal))?;
    let header = &payload.header;
    let release = OciRelease::decode(&header.release).map_err(|e| other(e.to_string()))?;
    let accepted = gate
        .check(header, Kind::Oci, &release.repository)
        .map_err(|refusal| refused(header, refusal))?;
    let manifest = payload.manifest(store).map_err(other)?;
    let stamp = Stamp {
        created_ms: id.created_ms,
        sequence: id.sequence,
    };
    let shared = SharedStore(store.clone());
    let applied = match payload.opened() {
        Some(opened) => images.apply(&opened.view(&shared), &manifest, &release, stamp),
        None => images.apply(&shared, &manifest, &release, stamp),
    }
    .map_err(|e| match e {
        ferry_oci::ApplyError::Rebuild(failures) => Failure::Rebuild {
            repository: release.repository.clone(),
            failures,
        },
        e => Failure::Other(e.to_string()),
    })?;
    if let Some(accepted) = &accepted {
        gate.record(accepted);
    }
    Ok(applied)
}

/// Where images come from, as named on the command line or in
/// `[[oci.watch]]`: `oci:DIR[:TAG]` (an OCI image layout),
/// `docker-archive:FILE[:TAG]` (a `docker save` tar),
/// `docker://HOST/REPO[:TAG]` (a registry over HTTPS) or
/// `docker+http://HOST/REPO[:TAG]` (plain HTTP).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceSpec {
    Layout(PathBuf),
    DockerArchive(PathBuf),
    Registry(RegistryRef),
}

/// Registry credentials: a file holding `user:password` (one line).
pub type Credentials = Option<PathBuf>;

impl SourceSpec {
    /// The source and the tag it names, if any.
    pub fn parse(text: &str) -> Result<(SourceSpec, Option<String>), String> {
        if text.starts_with("docker://") || text.starts_with("docker+http://") {
            let at = RegistryRef::parse(text)?;
            let tag = at.tag.clone();
            return Ok((SourceSpec::Registry(at), tag));
        }
        let (make, rest): (fn(PathBuf) -> SourceSpec, &str) =
            if let Some(rest) = text.strip_prefix("oci:") {
                (SourceSpec::Layout, rest)
            } else if let Some(rest) = text.strip_prefix("docker-archive:") {
                (SourceSpec::DockerArchive, rest)
            } else {
                return Err(format!(
                    "{text:?}: a source is oci:DIR[:TAG], docker-archive:FILE[:TAG], \
                     docker://HOST/REPO[:TAG] or docker+http://HOST/REPO[:TAG]"
                ));
            };
        if let Some((path, tag)) = rest.rsplit_once(':')
            && !tag.contains('/')
            && ferry_oci::digest::check_tag(tag).is_ok()
            && !path.is_empty()
        {
            return Ok((make(PathBuf::from(path)), Some(tag.to_owned())));
        }
        Ok((make(PathBuf::from(rest)), None))
    }

    /// The text [`SourceSpec::parse`] reads back (without a tag).
    pub fn to_text(&self) -> String {
        match self {
            SourceSpec::Layout(path) => format!("oci:{}", path.display()),
            SourceSpec::DockerArchive(path) => format!("docker-archive:{}", path.display()),
            SourceSpec::Registry(at) => {
                let (scheme, host) = match at.base.split_once("://") {
                    Some(("http", host)) => ("docker+http", host),
                    Some((_, host)) => ("docker", host),
                    None => ("docker", at.base.as_str()),
                };
                format!("{scheme}://{host}/{}", at.repository)
            }
        }
    }

    /// The repository a leaf serves this source as when none is given:
    /// the registry's own name, or the layout directory's name.
    pub fn default_repository(&self) -> Option<String> {
        match self {
            SourceSpec::Registry(at) => Some(at.repository.clone()),
            SourceSpec::Layout(path) | SourceSpec::DockerArchive(path) => {
                let name = path.file_stem()?.to_str()?.to_ascii_lowercase();
                ferry_oci::digest::check_repository(&name).ok()?;
                Some(name)
            }
        }
    }

    /// Opens the source (blocking: a registry is asked nothing yet).
    fn open(&self, credentials: &Credentials) -> Result<Box<dyn Source>, String> {
        match self {
            SourceSpec::Layout(dir) => Ok(Box::new(Layout::open(dir).map_err(|e| e.to_string())?)),
            SourceSpec::DockerArchive(file) => Ok(Box::new(
                ferry_oci::DockerArchive::open(file).map_err(|e| e.to_string())?,
            )),
            SourceSpec::Registry(at) => {
                let credentials = match credentials {
                    None => None,
                    Some(path) => {
                        let text = std::fs::read_to_string(path)
                            .map_err(|e| format!("credentials {}: {e}", path.display()))?;
                        let (user, password) =
                            text.trim_end().split_once(':').ok_or_else(|| {
                                format!(
                                    "credentials {}: expected one line user:password",
                                    path.display()
                                )
                            })?;
                        Some((user.to_owned(), password.to_owned()))
                    }
                };
                Ok(Box::new(ferry_oci::Registry::new(at.clone(), credentials)))
            }
        }
    }
}

/// The node's [`Recipes`]: one per image store root, shared by the admin
/// API's publishes and the watches, so a layer analysed once is not
/// searched again; its never-list lives in `<oci root>/recipes/`.
pub fn recipes(config: &Config) -> Arc<Recipes> {
    static BY_ROOT: OnceLock<Mutex<BTreeMap<PathBuf, Arc<Recipes>>>> = OnceLock::new();
    let mut map = BY_ROOT
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    map.entry(config.oci.root.clone())
        .or_insert_with(|| {
            let dir = config.oci.root.join("recipes");
            let mut recipes = Recipes::persistent(&dir).unwrap_or_else(|e| {
                tracing::warn!(dir = %dir.display(), "recipe never-list not readable, starting empty: {e}");
                Recipes::default()
            });
            recipes.enabled = config.oci.recipes;
            recipes.max_blob = config.oci.max_recipe_blob;
            Arc::new(recipes)
        })
        .clone()
}

/// Reads, verifies and stages `tags` of `spec` (blocking).
pub fn stage(
    store: &Arc<RocksStore>,
    recipes: &Recipes,
    spec: &SourceSpec,
    credentials: &Credentials,
    repository: &str,
    tags: &[String],
    max_blob: u64,
) -> Result<Staged, String> {
    let source = spec.open(credentials)?;
    let plan = ferry_oci::plan(&*source, repository, tags, Limits { max_blob })
        .map_err(|e| e.to_string())?;
    let mut shared = SharedStore(store.clone());
    ferry_oci::stage(&mut shared, &Chunking::default(), recipes, &*source, &plan)
        .map_err(|e| e.to_string())
}

/// The digests `tags` name in `spec` (all its tags if empty).
fn current(
    spec: &SourceSpec,
    credentials: &Credentials,
    tags: &[String],
) -> Result<BTreeMap<String, String>, String> {
    let source = spec.open(credentials)?;
    let tags = if tags.is_empty() {
        source.tags().map_err(|e| e.to_string())?
    } else {
        tags.to_vec()
    };
    tags.into_iter()
        .map(|tag| {
            let desc = source.resolve(&tag).map_err(|e| e.to_string())?;
            Ok((tag, desc.digest.to_string()))
        })
        .collect()
}

/// Publishes the watched tags whenever what they name changes. What was
/// last published is kept in `<oci root>/watch/<repository>.json`, so a
/// restart does not publish again.
async fn run_watch(watch: OciWatch, publisher: Publisher) {
    let state = publisher
        .config
        .oci
        .root
        .join("watch")
        .join(format!("{}.json", watch.repository.replace('/', "~")));
    let mut last: BTreeMap<String, String> = std::fs::read(&state)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let (spec, _) = match SourceSpec::parse(&watch.source) {
        Ok(parsed) => parsed,
        Err(e) => {
            tracing::error!(source = %watch.source, "oci.watch: {e}");
            return;
        }
    };
    let mut ticks = tokio::time::interval(watch.interval);
    loop {
        ticks.tick().await;
        let (spec2, tags, credentials) =
            (spec.clone(), watch.tags.clone(), watch.credentials.clone());
        let now =
            match tokio::task::spawn_blocking(move || current(&spec2, &credentials, &tags)).await {
                Ok(Ok(now)) => now,
                Ok(Err(e)) => {
                    tracing::warn!(source = %watch.source, "oci.watch: {e}");
                    continue;
                }
                Err(_) => continue,
            };
        let Some(changed) = tags_to_publish(&last, &now) else {
            if now != last {
                // Only tags gone from the source: nothing to send.
                last = now;
                save_watch_state(&state, &last);
            }
            continue;
        };
        match publisher
            .publish(
                &spec,
                &watch.credentials,
                &watch.repository,
                &changed,
                &watch.to,
                None,
            )
            .await
        {
            Ok((bundle, _)) => {
                tracing::info!(source = %watch.source, repository = %watch.repository, tags = ?changed, %bundle, "oci.watch published");
                last = now;
                save_watch_state(&state, &last);
            }
            Err(e) => tracing::warn!(source = %watch.source, "oci.watch: not published: {e}"),
        }
    }
}

/// The watched tags whose digest differs from what was last published
/// (new ones included), or `None` when there are none. Never an empty
/// list: publishing no tags in particular publishes all of them.
fn tags_to_publish(
    last: &BTreeMap<String, String>,
    now: &BTreeMap<String, String>,
) -> Option<Vec<String>> {
    let changed: Vec<String> = now
        .iter()
        .filter(|(tag, digest)| last.get(*tag) != Some(digest))
        .map(|(tag, _)| tag.clone())
        .collect();
    (!changed.is_empty()).then_some(changed)
}

/// Records what a watch last published (written aside, then renamed into
/// place). Best effort: if it is lost, a restart publishes once more.
fn save_watch_state(state: &Path, last: &BTreeMap<String, String>) {
    let _ = std::fs::create_dir_all(state.parent().unwrap_or(Path::new(".")));
    let tmp = state.with_extension("tmp");
    if std::fs::write(&tmp, serde_json::to_vec(last).unwrap_or_default()).is_ok() {
        let _ = std::fs::rename(&tmp, state);
    }
}

impl Publisher {
    /// Stages `tags` of `spec` (all if empty) and submits them as one
    /// bundle to `to` (a peer name, node id or group:NAME).
    pub async fn publish(
        &self,
        spec: &SourceSpec,
        credentials: &Credentials,
        repository: &str,
        tags: &[String],
        to: &str,
        lifetime: Option<Duration>,
    ) -> Result<(BundleId, Staged), String> {
        let destination = crate::admin::resolve_destination(&self.registry, to)?;
        self.publish_to(spec, credentials, repository, tags, destination, lifetime)
            .await
    }

    /// [`Publisher::publish`] to a resolved destination. What was published
    /// is recorded under `<oci root>/published/` so a leaf that cannot
    /// rebuild a blob can ask for it as it is.
    pub async fn publish_to(
        &self,
        spec: &SourceSpec,
        credentials: &Credentials,
        repository: &str,
        tags: &[String],
        destination: ferry_core::Endpoint,
        lifetime: Option<Duration>,
    ) -> Result<(BundleId, Staged), String> {
        let record = Published {
            source: spec.to_text(),
            credentials: credentials.clone(),
            repository: repository.to_owned(),
            tags: tags.to_vec(),
        };
        let (store, spec, credentials, repository, tags) = (
            self.store.clone(),
            spec.clone(),
            credentials.clone(),
            repository.to_owned(),
            tags.to_vec(),
        );
        let max_blob = self.config.oci.max_blob;
        let recipes = recipes(&self.config);
        let staged = tokio::task::spawn_blocking(move || {
            stage(
                &store,
                &recipes,
                &spec,
                &credentials,
                &repository,
                &tags,
                max_blob,
            )
        })
        .await
        .map_err(|e| e.to_string())??;
        for layer in &staged.layers {
            tracing::info!(repository = %staged.release.repository, "OCI layer: {layer}");
        }
        let release = staged.release.encode();
        // Publishing time orders the releases of a repository for one
        // destination: it is the signed version.
        let version = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_millis() as u64);
        let prepared = self
            .gate
            .prepare(
                Kind::Oci,
                &staged.release.repository,
                &destination,
                version,
                release,
                staged.manifest,
            )
            .await?;
        let bundle = self
            .engine
            .submit(ferry_core::Submission {
                destination,
                lifetime: lifetime.unwrap_or(Duration::from_secs(7 * 24 * 3600)),
                priority: ferry_core::Priority::Normal,
                kind: PayloadKind::Oci,
                manifest: prepared.manifest,
                release: prepared.release,
                signature: prepared.signature,
            })
            .await?;
        if staged.release.rebuilt().next().is_some() {
            let dir = self.config.oci.root.join("published");
            let path = dir.join(format!("{}.json", bundle_key(&bundle)));
            let bytes = serde_json::to_vec(&record).expect("plain data serialises");
            let written = std::fs::create_dir_all(&dir)
                .map_err(|e| e.to_string())
                .and_then(|()| {
                    crate::media::write_atomic(&path, |out| {
                        std::io::Write::write_all(out, &bytes).map_err(|e| e.to_string())
                    })
                });
            if let Err(e) = written {
                tracing::warn!(path = %path.display(), "cannot record the release for refetches: {e}");
            }
        }
        Ok((bundle, staged))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_reads_back_from_its_text() {
        for text in [
            "oci:/srv/app",
            "docker-archive:/tmp/app.tar",
            "docker://r.example:5000/team/app",
            "docker+http://127.0.0.1:5000/team/app",
        ] {
            let (spec, tag) = SourceSpec::parse(text).unwrap();
            assert_eq!(tag, None);
            assert_eq!(spec.to_text(), text);
            assert_eq!(SourceSpec::parse(&spec.to_text()).unwrap().0, spec);
        }
    }

    /// A watch publishes the tags that changed or appeared; a tag gone
    /// from the source is no reason to publish, and above all not to
    /// publish every tag (which an empty list would mean).
    #[test]
    fn a_watch_publishes_changed_tags_only() {
        let tags = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(t, d)| (t.to_string(), d.to_string()))
                .collect()
        };
        let last = tags(&[("v1", "sha256:a"), ("v2", "sha256:b")]);
        assert_eq!(tags_to_publish(&last, &last), None);
        assert_eq!(tags_to_publish(&last, &tags(&[("v1", "sha256:a")])), None);
        assert_eq!(
            tags_to_publish(
                &last,
                &tags(&[("v1", "sha256:a"), ("v2", "sha256:c"), ("v3", "sha256:d")])
            ),
            Some(vec!["v2".to_string(), "v3".to_string()])
        );
        assert_eq!(
            tags_to_publish(&BTreeMap::new(), &last),
            Some(vec!["v1".to_string(), "v2".to_string()])
        );
    }

    #[test]
    fn a_refetch_request_round_trips_as_json() {
        let request = Refetch {
            bundle: "ab".repeat(BundleId::KEY_LEN),
            repository: "team/app".into(),
            digests: vec![ferry_oci::Digest::of(b"layer")],
        };
        let bytes = serde_json::to_vec(&request).unwrap();
        assert_eq!(serde_json::from_slice::<Refetch>(&bytes).unwrap(), request);
    }

    #[test]
    fn sources_name_a_layout_or_a_registry_and_maybe_a_tag() {
        let layout = |p: &str| SourceSpec::Layout(PathBuf::from(p));
        assert_eq!(
            SourceSpec::parse("oci:/srv/app:v1").unwrap(),
            (layout("/srv/app"), Some("v1".into()))
        );
        assert_eq!(
            SourceSpec::parse("oci:/srv/app").unwrap(),
            (layout("/srv/app"), None)
        );
        assert_eq!(
            SourceSpec::parse("oci:rel/dir").unwrap(),
            (layout("rel/dir"), None)
        );
        let (spec, tag) = SourceSpec::parse("docker+http://127.0.0.1:5000/team/app:v2").unwrap();
        assert_eq!(tag.as_deref(), Some("v2"));
        assert_eq!(spec.default_repository().as_deref(), Some("team/app"));
        assert!(
            SourceSpec::parse("ftp://x/y")
                .unwrap_err()
                .contains("oci:DIR")
        );
    }
}
