//! Starting and stopping a node: key, store, engine thread, QUIC links and
//! the admin API, until SIGINT or SIGTERM.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ferry_core::{Engine, EngineConfig};
use ferry_link::identity::NodeKey;
use ferry_link::quic::{QuicEndpoint, SharedTrust, TransportProfile};
use ferry_store::{RocksStore, SharedStore, StoreConfig};

use crate::admin::{self, Admin};
use crate::config::Config;
use crate::discovery::{self, Bootstrap, Learned, Mdns};
use crate::driver::{self, Input};
use crate::links::Registry;
use crate::serial_links::SerialLinks;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("node key {path}: {source}")]
    Key {
        path: PathBuf,
        source: ferry_link::identity::IdentityError,
    },
    #[error("store {path}: {source}")]
    Store {
        path: PathBuf,
        source: ferry_store::OpenError,
    },
    #[error("cannot restore the engine's state: {0}")]
    Engine(#[from] ferry_core::OpenError),
    #[error("QUIC on {addr}: {source}")]
    Quic {
        addr: SocketAddr,
        source: ferry_link::quic::LinkError,
    },
    #[error("discovery: {0}")]
    Discovery(#[from] discovery::DiscoveryError),
    #[error("git: {0}")]
    Git(String),
    #[error("{0}")]
    Trust(String),
    #[error("git smart HTTP on {addr}: {source}")]
    GitHttp {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Oci(std::io::Error),
    #[error("admin socket {path}: {source}")]
    Admin {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A running node: its engine thread, QUIC endpoint and admin API.
pub struct Node {
    pub id: ferry_core::NodeId,
    pub engine: driver::EngineHandle,
    pub store: Arc<RocksStore>,
    pub config: Arc<Config>,
    /// Where QUIC listens, if it does.
    pub quic_addr: Option<SocketAddr>,
    /// Where Git smart HTTP listens, if it does.
    pub git_addr: Option<SocketAddr>,
    git_http: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    engine_thread: std::thread::JoinHandle<()>,
    endpoint: Option<Arc<QuicEndpoint>>,
    admin: tokio::task::JoinHandle<std::io::Result<()>>,
    metrics: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    serial: SerialLinks,
    mdns: Option<Mdns>,
    media_watch: Option<tokio::task::JoinHandle<()>>,
    /// The image store, registry and watched sources.
    pub oci: crate::oci::Oci,
}

impl Node {
    /// Opens the key and the store, restores the engine and starts links and
    /// the admin API. Must be called inside a tokio runtime.
    pub async fn start(config: Config) -> Result<Node, DaemonError> {
        let mut key = NodeKey::load(&config.key).map_err(|source| DaemonError::Key {
            path: config.key.clone(),
            source,
        })?;
        if let Some(path) = &config.certificate {
            let der = std::fs::read(path).map_err(|e| {
                DaemonError::Trust(format!("node certificate {}: {e}", path.display()))
            })?;
            key = key
                .with_certificate(der)
                .map_err(|source| DaemonError::Key {
                    path: path.clone(),
                    source,
                })?;
            tracing::info!(certificate = %path.display(), "presenting a certificate issued by a trust anchor");
        }
        let me = key.node_id();
        let store = RocksStore::open(
            &config.store,
            StoreConfig {
                quota_bytes: config.quota,
                ..StoreConfig::default()
            },
        )
        .map_err(|source| DaemonError::Store {
            path: config.store.clone(),
            source,
        })?;
        let store = Arc::new(store);
        // What discovery learned before (enrolled leaves, the anchor's
        // address and welcome) counts as configuration.
        let learned = Learned::load(&discovery::learned_path(&config))?;
        let learned_peers = learned.peers(&config);
        let (routes, member_of) = discovery::routes(&config, &learned);
        let seed: u64 = rand::random();
        let mut engine_config = EngineConfig::new(me, seed);
        engine_config.routes = routes;
        engine_config.member_of = member_of;
        engine_config.contact_plan = config.contact_plan(me);
        engine_config.agent = format!("ferryd {} {:?}", env!("CARGO_PKG_VERSION"), config.role);
        let mut engine = Engine::new(engine_config, SharedStore(store.clone()))?;
        let links: BTreeMap<_, _> = config
            .peers
            .iter()
            .chain(&learned_peers)
            .map(|peer| (peer.node, (engine.add_link(), peer.clone())))
            .collect();
        let held_welcome = discovery::held_welcome(&engine, &config);
        let held_git = crate::git::held_releases(&engine);
        let held_oci = crate::oci::held(&engine);
        let held_statements = crate::trust::held_statements(&engine);
        tracing::info!(
            node = %me,
            role = ?config.role,
            seed,
            node_key = %ferry_trust::PublicKey(key.public_key()),
            bundles = engine.bundles().count(),
            peers = links.len(),
            "ferryd starting"
        );
        let (handle, engine_thread) = driver::spawn(engine);
        let oci_delivered = crate::oci::watch(&handle);

        let config = Arc::new(config);
        let serial = SerialLinks::start(&links, &key, &handle);
        let registry = Registry::new(me, links, handle.clone());
        let boot = Bootstrap::new(me, config.clone(), handle.clone(), store.clone(), learned);
        boot.watch_welcomes(held_welcome);
        let mut mdns = None;
        let mut endpoint = None;
        let mut quic_addr = None;
        let wants_quic = config.listen_quic.is_some()
            || config.peers.iter().any(|p| p.quic.is_some())
            || config.discovery.anchor.is_some();
        if wants_quic {
            let addr = config
                .listen_quic
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
            // One transport for the endpoint, sized for its most demanding peer.
            let rate = config
                .peers
                .iter()
                .map(|p| p.profile.rate_bps)
                .max()
                .unwrap_or(2_000_000);
            let rtt = config
                .peers
                .iter()
                .map(|p| p.profile.rtt)
                .max()
                .unwrap_or(Duration::from_millis(100));
            let trust = SharedTrust::new(discovery::trust_policy(&config, &learned_peers));
            let quic = QuicEndpoint::bind(
                addr,
                &key,
                trust.clone(),
                TransportProfile::for_link(rate, rtt),
            )
            .map_err(|source| DaemonError::Quic { addr, source })?;
            let quic = Arc::new(quic);
            quic_addr = Some(quic.local_addr().unwrap_or(addr));
            tracing::info!(addr = %quic_addr.unwrap_or(addr), "QUIC listening");
            mdns = discovery::start(&boot, &registry, &quic, trust);
            tokio::spawn(registry.clone().accept(quic.clone()));
            for peer in &config.peers {
                if let Some(addr) = peer.quic {
                    tokio::spawn(registry.clone().dial(quic.clone(), peer.node, addr));
                }
            }
            endpoint = Some(quic);
        }
        let gate = Arc::new(
            crate::trust::TrustGate::open(&config, &key, handle.clone(), store.clone())
                .map_err(DaemonError::Trust)?,
        );
        gate.watch_statements(held_statements);
        let git = crate::git::GitService::new(
            &config.git.root,
            store.clone(),
            handle.clone(),
            gate.clone(),
        )
        .map_err(DaemonError::Git)?;
        git.watch_deliveries(held_git);
        git.watch_deletions();
        git.watch_carried();
        let (git_http, git_addr) = match config.git.listen {
            Some(addr) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|source| DaemonError::GitHttp { addr, source })?;
                let bound = listener.local_addr().unwrap_or(addr);
                tracing::info!(addr = %bound, root = %config.git.root.display(), "git smart HTTP listening (read-only)");
                let root = git.root().clone();
                (
                    Some(tokio::spawn(crate::git::serve_on(
                        listener,
                        root,
                        gate.serve_check(ferry_trust::Kind::Git),
                    ))),
                    Some(bound),
                )
            }
            None => (None, None),
        };
        let publisher = crate::oci::Publisher {
            config: config.clone(),
            engine: handle.clone(),
            store: store.clone(),
            registry: registry.clone(),
            gate: gate.clone(),
        };
        let oci = crate::oci::start(&publisher, held_oci, oci_delivered)
            .await
            .map_err(DaemonError::Oci)?;
        let admin = Admin {
            engine: handle.clone(),
            store: store.clone(),
            config: config.clone(),
            registry: registry.clone(),
            git: Some(git.clone()),
            trust: gate.clone(),
        };
        git.watch_repositories(config.git.watch.clone(), admin.clone());
        let admin = tokio::spawn(admin::serve(config.admin.clone(), admin));
        let metrics = config.metrics.map(|addr| {
            tokio::spawn(crate::metrics::serve(
                addr,
                handle.clone(),
                registry.clone(),
            ))
        });
        let media_watch = config.media.watch.clone().map(|dir| {
            crate::media::watch(
                dir,
                config.media.poll,
                handle.clone(),
                gate.clone(),
                store.clone(),
                me,
            )
        });
        Ok(Node {
            media_watch,
            id: me,
            engine: handle,
            store,
            config,
            quic_addr,
            git_addr,
            git_http,
            engine_thread,
            endpoint,
            admin,
            metrics,
            serial,
            mdns,
            oci,
        })
    }

    /// Closes links, stops the engine thread (its last writes are synced)
    /// and removes the admin socket.
    pub async fn stop(self) {
        self.oci.stop();
        if let Some(mdns) = &self.mdns {
            mdns.shutdown();
        }
        if let Some(endpoint) = &self.endpoint {
            endpoint.close();
        }
        self.admin.abort();
        if let Some(watch) = &self.media_watch {
            watch.abort();
        }
        self.serial.stop().await;
        if let Some(metrics) = &self.metrics {
            metrics.abort();
        }
        if let Some(git_http) = &self.git_http {
            git_http.abort();
        }
        self.engine.send(Input::Shutdown);
        let thread = self.engine_thread;
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        let _ = std::fs::remove_file(&self.config.admin);
        tracing::info!("stopped");
    }
}

/// Runs the node until a signal asks it to stop, then stops it cleanly.
pub async fn run(config: Config) -> Result<(), DaemonError> {
    let mut node = Node::start(config).await?;
    let socket = node.config.admin.clone();
    tokio::select! {
        () = shutdown_signal() => tracing::info!("stopping"),
        result = &mut node.admin => {
            if let Ok(Err(source)) = result {
                node.stop().await;
                return Err(DaemonError::Admin { path: socket, source });
            }
        }
    }
    node.stop().await;
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// `ferryd init`: a new key and a commented configuration in `dir`.
/// Refuses to overwrite either. Returns the new node id.
pub fn init(dir: &Path, role: &str) -> Result<(ferry_core::NodeId, PathBuf), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let key_path = dir.join("node.key");
    let config_path = dir.join("ferryd.toml");
    for path in [&key_path, &config_path] {
        if path.exists() {
            return Err(format!("{} exists; not overwriting it", path.display()));
        }
    }
    let key = NodeKey::generate().map_err(|e| e.to_string())?;
    key.save(&key_path)
        .map_err(|e| format!("cannot write {}: {e}", key_path.display()))?;
    let text = crate::config::TEMPLATE
        .replace("{role}", role)
        .replace("{node_id}", &key.node_id().to_hex());
    std::fs::write(&config_path, text)
        .map_err(|e| format!("cannot write {}: {e}", config_path.display()))?;
    Ok((key.node_id(), config_path))
}
