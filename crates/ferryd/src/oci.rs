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

/// What publishing needs: the engine, the store, and the peers to resolve
/// a destination.
#[derive(Clone)]
pub struct Publisher {
    pub config: Arc<Config>,
    pub engine: EngineHandle,
    pub store: Arc<RocksStore>,
    pub registry: Arc<Registry>,
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
        held,
        delivered,
    ))];
    let mut addr = None;
    if let Some(listen) = config.oci.listen {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("OCI registry on {listen}: {e}")))?;
        let local = listener.local_addr()?;
        tracing::info!(addr = %local, root = %config.oci.root.display(), "OCI registry listening (read-only)");
        addr = Some(local);
        let images = images.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = ferry_oci::serve::serve(listener, images).await {
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
    held: Vec<BundleId>,
    mut delivered: Delivered,
) {
    for id in held {
        apply_logged(&images, &store, id).await;
    }
    while let Some((id, _)) = delivered.recv().await {
        apply_logged(&images, &store, id).await;
    }
}

async fn apply_logged(images: &Arc<ImageStore>, store: &Arc<RocksStore>, id: BundleId) {
    let (images, store) = (images.clone(), store.clone());
    let result = tokio::task::spawn_blocking(move || apply(&images, &store, id))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
    match result {
        Ok(applied) => tracing::info!(
            bundle = %id,
            repository = %applied.repository,
            written = applied.blobs_written,
            held = applied.blobs_held,
            moved = ?applied.tags_moved,
            kept = ?applied.tags_kept,
            "OCI release applied"
        ),
        Err(reason) => {
            tracing::error!(bundle = %id, "OCI release not applied, no tag moved: {reason}")
        }
    }
}

/// Applies the delivered bundle `id` (see [`ImageStore::apply`]).
pub fn apply(images: &ImageStore, store: &RocksStore, id: BundleId) -> Result<Applied, String> {
    let record = store
        .get(Cf::Bundles, &id.to_key())
        .map_err(|e| e.to_string())?
        .and_then(|bytes| BundleRecord::decode(&bytes))
        .ok_or_else(|| format!("bundle {id} is no longer held"))?;
    let release = OciRelease::decode(&record.header.release).map_err(|e| e.to_string())?;
    let manifest = store
        .get_manifest(record.header.manifest)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("the root manifest of {id} is not held"))?;
    let stamp = Stamp {
        created_ms: id.created_ms,
        sequence: id.sequence,
    };
    images
        .apply(store, &manifest, &release, stamp)
        .map_err(|e| e.to_string())
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
        if now == last {
            continue;
        }
        let changed: Vec<String> = now
            .iter()
            .filter(|(tag, digest)| last.get(*tag) != Some(digest))
            .map(|(tag, _)| tag.clone())
            .collect();
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
                let _ = std::fs::create_dir_all(state.parent().unwrap_or(Path::new(".")));
                let tmp = state.with_extension("tmp");
                if std::fs::write(&tmp, serde_json::to_vec(&last).unwrap_or_default()).is_ok() {
                    let _ = std::fs::rename(&tmp, &state);
                }
            }
            Err(e) => tracing::warn!(source = %watch.source, "oci.watch: not published: {e}"),
        }
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
        let bundle = self
            .engine
            .submit(ferry_core::Submission {
                destination,
                lifetime: lifetime.unwrap_or(Duration::from_secs(7 * 24 * 3600)),
                priority: ferry_core::Priority::Normal,
                kind: PayloadKind::Oci,
                manifest: staged.manifest,
                release: staged.release.encode(),
            })
            .await?;
        Ok((bundle, staged))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
