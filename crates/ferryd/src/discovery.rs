//! Discovery and bootstrap of a new leaf over mDNS/DNS-SD.
//!
//! - A node with `[discovery] advertise = true` registers
//!   `_ferry._udp.local.` ([`SERVICE`]): instance `ferry-<first 16 hex digits
//!   of its id>`, its QUIC port, and TXT records `id=<64 hex node id>` and
//!   `role=base|relay|leaf` ([`Mdns::advertise`]).
//! - A leaf with `[discovery] anchor = "<node id>"` browses for a service
//!   whose TXT id is the anchor and dials it by QUIC, pinning that id
//!   ([`run_anchor`]). The TXT record is only a hint: the TLS handshake
//!   proves who answers, and any other key is refused there.
//! - A base with `[discovery] enrol = [...]` (or `"any"`) admits such a leaf
//!   at the handshake, makes it a peer (`leaf-<8 hex digits>`) with a link of
//!   its own, routes to it, and sends it a welcome: an `Admin` bundle whose
//!   payload is a [`Welcome`] (its default route, the base, and the groups
//!   of `welcome_groups`) ([`Enrolment`]).
//! - The leaf applies a welcome from its anchor when the bundle is delivered
//!   ([`run_welcomes`]).
//! - What was learned — enrolled leaves at the base; the anchor's addresses
//!   and the welcome at the leaf — is kept in `learned.json` beside the
//!   configuration ([`Learned`]), written atomically, and read at start, so a
//!   restart works without the local network.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_chunk::ManifestId;
use ferry_core::{
    BundleId, BundleRecord, Cf, Endpoint, Engine, LinkId, NodeId, PayloadKind, Priority, Routes,
    Submission,
};
use ferry_link::quic::{QuicEndpoint, SharedTrust, TrustPolicy};
use ferry_store::RocksStore;
use mdns_sd::{DaemonEvent, IfKind, ServiceDaemon, ServiceEvent, ServiceInfo};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use crate::config::{Config, Enrol, Peer, Role, parse_node_id};
use crate::driver::{EngineHandle, Input};
use crate::links::Registry;

/// The DNS-SD service type ferry nodes advertise.
pub const SERVICE: &str = "_ferry._udp.local.";
/// What the `release` of a welcome bundle says.
pub const WELCOME_RELEASE: &[u8] = b"ferry-welcome/1";
/// The largest welcome a leaf reads.
const MAX_WELCOME: u64 = 64 << 10;
/// How long a welcome bundle may wait for its leaf.
const WELCOME_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("mDNS: {0}")]
    Mdns(#[from] mdns_sd::Error),
    #[error("{path}: {reason}")]
    Learned { path: PathBuf, reason: String },
}

/// The file beside the configuration where discovery keeps what it learned.
pub fn learned_path(config: &Config) -> PathBuf {
    config
        .path
        .parent()
        .unwrap_or(Path::new("."))
        .join("learned.json")
}

/// What discovery learned, as kept in `learned.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Learned {
    /// Leaves that enrolled with this node.
    #[serde(default)]
    pub enrolled: Vec<EnrolledLeaf>,
    /// Where the anchor was last reached.
    #[serde(default)]
    pub anchor: Option<LearnedAnchor>,
    /// The routes the anchor sent.
    #[serde(default)]
    pub welcome: Option<Welcome>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrolledLeaf {
    /// 64 hex digits.
    pub node: String,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LearnedAnchor {
    /// 64 hex digits.
    pub node: String,
    pub addrs: Vec<SocketAddr>,
}

/// The document a base sends a leaf it enrolled (JSON, in an `Admin`
/// bundle): where to send what has no route of its own, and the groups the
/// leaf belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Welcome {
    /// The node that sent it (64 hex digits).
    pub from: String,
    /// The default next hop (64 hex digits): the base itself.
    pub default_route: String,
    #[serde(default)]
    pub groups: Vec<String>,
}

impl Learned {
    /// Reads `path`; a missing file is an empty one.
    pub fn load(path: &Path) -> Result<Learned, DiscoveryError> {
        let bad = |reason: String| DiscoveryError::Learned {
            path: path.to_path_buf(),
            reason,
        };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Learned::default()),
            Err(e) => return Err(bad(format!("cannot read: {e}"))),
        };
        let learned: Learned = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        for (i, leaf) in learned.enrolled.iter().enumerate() {
            parse_node_id(&leaf.node).map_err(|e| bad(format!("enrolled[{i}].node: {e}")))?;
        }
        if let Some(anchor) = &learned.anchor {
            parse_node_id(&anchor.node).map_err(|e| bad(format!("anchor.node: {e}")))?;
        }
        if let Some(welcome) = &learned.welcome {
            welcome.check().map_err(|e| bad(format!("welcome: {e}")))?;
        }
        Ok(learned)
    }

    /// Writes `path` atomically: a temporary file beside it, synced, then
    /// renamed over it, and the directory synced.
    pub fn save(&self, path: &Path) -> Result<(), DiscoveryError> {
        let bad = |e: std::io::Error| DiscoveryError::Learned {
            path: path.to_path_buf(),
            reason: format!("cannot write: {e}"),
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(bad)?;
        let text = serde_json::to_string_pretty(self).expect("plain data serialises");
        tmp.write_all(text.as_bytes()).map_err(bad)?;
        tmp.write_all(b"\n").map_err(bad)?;
        tmp.as_file().sync_all().map_err(bad)?;
        tmp.persist(path).map_err(|e| bad(e.error))?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(bad)?;
        Ok(())
    }

    /// The anchor's known addresses, if they are the anchor's.
    pub fn anchor_addrs(&self, anchor: NodeId) -> Vec<SocketAddr> {
        self.anchor
            .as_ref()
            .filter(|a| parse_node_id(&a.node) == Ok(anchor))
            .map(|a| a.addrs.clone())
            .unwrap_or_default()
    }

    /// Peers learned here: enrolled leaves, and the anchor (with no address
    /// to dial: [`run_anchor`] dials it).
    pub fn peers(&self, config: &Config) -> Vec<Peer> {
        let profile = config.discovery.profile;
        let mut peers: Vec<Peer> = self
            .enrolled
            .iter()
            .filter_map(|leaf| {
                Some(Peer {
                    name: leaf.name.clone(),
                    node: parse_node_id(&leaf.node).ok()?,
                    quic: None,
                    profile,
                    serial: None,
                })
            })
            .filter(|leaf| config.peers.iter().all(|p| p.node != leaf.node))
            .collect();
        if let Some(anchor) = config.discovery.anchor {
            peers.push(Peer {
                name: "anchor".into(),
                node: anchor,
                quic: None,
                profile,
                serial: None,
            });
        }
        peers
    }
}

impl Welcome {
    fn check(&self) -> Result<(NodeId, NodeId), String> {
        let from = parse_node_id(&self.from).map_err(|e| format!("from: {e}"))?;
        let route =
            parse_node_id(&self.default_route).map_err(|e| format!("default_route: {e}"))?;
        if let Some(group) = self.groups.iter().find(|g| g.trim().is_empty()) {
            return Err(format!("groups: {group:?} is not a group name"));
        }
        Ok((from, route))
    }
}

/// The routes and groups of this node: the configuration's, plus what
/// discovery learned. A leaf's own `[routes] default` wins over the one its
/// anchor sent.
pub fn routes(config: &Config, learned: &Learned) -> (Routes, BTreeSet<String>) {
    let mut routes = config.routes.clone();
    let mut member_of = config.member_of.clone();
    for leaf in &learned.enrolled {
        let Ok(node) = parse_node_id(&leaf.node) else {
            continue;
        };
        routes.next_hop.entry(node).or_insert(node);
        for group in &config.discovery.welcome_groups {
            routes.groups.entry(group.clone()).or_default().insert(node);
        }
    }
    if let Some(anchor) = config.discovery.anchor {
        routes.next_hop.entry(anchor).or_insert(anchor);
        if let Some(welcome) = &learned.welcome
            && let Ok((from, route)) = welcome.check()
            && from == anchor
        {
            routes.default_hop.get_or_insert(route);
            member_of.extend(welcome.groups.iter().cloned());
        }
    }
    (routes, member_of)
}

/// Who may connect: configured and learned peers, and (until they enrol)
/// the nodes `[discovery] enrol` names, or anyone for `enrol = "any"`.
pub fn trust_policy(config: &Config, learned: &[Peer]) -> TrustPolicy {
    // A peer on a serial line is not admitted over QUIC.
    let quic_peers = config.peers.iter().filter(|p| p.serial.is_none());
    let mut policy = TrustPolicy::pinned(quic_peers.chain(learned).map(|p| p.node));
    policy.anchors = config.trust.anchors.clone();
    match &config.discovery.enrol {
        Enrol::Nobody | Enrol::Anchored => {}
        Enrol::Only(ids) => policy.pinned.extend(ids.iter().copied()),
        Enrol::Any => policy.allow_any = true,
    }
    policy
}

/// The newest welcome from the anchor the engine holds, delivered: applied
/// again at start in case a crash came before it was kept.
pub fn held_welcome<S: ferry_core::Store>(
    engine: &Engine<S>,
    config: &Config,
) -> Option<(BundleId, ManifestId)> {
    engine
        .bundles()
        .filter(|r| r.header.kind == PayloadKind::Admin && r.delivered)
        .filter(|r| r.header.release == WELCOME_RELEASE)
        .filter(|r| Some(r.header.id.source) == config.discovery.anchor)
        .max_by_key(|r| (r.header.id.created_ms, r.header.id.sequence))
        .map(|r| (r.header.id, r.header.manifest))
}

/// Starts discovery on a node whose QUIC endpoint is `quic` (before it
/// accepts): enrolment if `[discovery] enrol` lets anyone enrol, mDNS if
/// the node advertises or has an anchor, and the task that dials the
/// anchor. The mDNS daemon returned runs until shut down. Without mDNS
/// (it failed to start) a leaf still dials the addresses it learned.
pub fn start(
    boot: &Arc<Bootstrap>,
    registry: &Arc<Registry>,
    quic: &Arc<QuicEndpoint>,
    trust: SharedTrust,
) -> Option<Mdns> {
    let config = &boot.config;
    match &config.discovery.enrol {
        Enrol::Nobody => {}
        Enrol::Only(ids) => tracing::info!(
            nodes = ids.len(),
            "enrolment open to the nodes discovery.enrol names"
        ),
        Enrol::Any => tracing::warn!(
            "enrolment open to any node that holds a key (discovery.enrol = \"any\"): for staging only"
        ),
        Enrol::Anchored => tracing::info!(
            anchors = config.trust.anchors.len(),
            "enrolment open to the nodes a trust anchor certified"
        ),
    }
    if config.discovery.enrol != Enrol::Nobody {
        registry.set_enrolment(Enrolment::new(boot.clone(), trust));
    }
    let mdns = if config.discovery.enabled() {
        Mdns::start(config)
            .inspect_err(|e| tracing::error!(error = %e, "mDNS unavailable; discovery off"))
            .ok()
    } else {
        None
    };
    if let (Some(mdns), Ok(addr)) = (&mdns, quic.local_addr())
        && config.discovery.advertise
        && let Err(e) = mdns.advertise(boot.me, config.role, addr)
    {
        tracing::error!(error = %e, "cannot advertise on mDNS");
    }
    if let Some(anchor) = config.discovery.anchor {
        let found = mdns
            .as_ref()
            .map(Mdns::browse)
            .transpose()
            .inspect_err(|e| tracing::error!(error = %e, "cannot browse mDNS"))
            .ok()
            .flatten();
        tokio::spawn(run_anchor(
            boot.clone(),
            anchor,
            quic.clone(),
            registry.clone(),
            found,
        ));
    }
    mdns
}

/// What discovery shares between its tasks: the configuration and the
/// learned state, written through to `learned.json`.
pub struct Bootstrap {
    pub me: NodeId,
    pub config: Arc<Config>,
    pub engine: EngineHandle,
    pub store: Arc<RocksStore>,
    path: PathBuf,
    learned: Mutex<Learned>,
    /// Held from a change until its write is done, so writes land in the
    /// order of the changes.
    saving: tokio::sync::Mutex<()>,
}

impl Bootstrap {
    pub fn new(
        me: NodeId,
        config: Arc<Config>,
        engine: EngineHandle,
        store: Arc<RocksStore>,
        learned: Learned,
    ) -> Arc<Bootstrap> {
        Arc::new(Bootstrap {
            me,
            path: learned_path(&config),
            config,
            engine,
            store,
            learned: Mutex::new(learned),
            saving: tokio::sync::Mutex::new(()),
        })
    }

    fn learned(&self) -> Learned {
        self.learned.lock().expect("not poisoned").clone()
    }

    /// Changes the learned state and writes it out; a failed write is
    /// logged (the change holds until the daemon stops).
    async fn update(&self, change: impl FnOnce(&mut Learned)) -> Learned {
        let _saving = self.saving.lock().await;
        let learned = {
            let mut learned = self.learned.lock().expect("not poisoned");
            change(&mut learned);
            learned.clone()
        };
        let path = self.path.clone();
        let copy = learned.clone();
        let saved = tokio::task::spawn_blocking(move || copy.save(&path)).await;
        match saved {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "cannot keep what discovery learned"),
            Err(e) => tracing::error!(error = %e, "cannot keep what discovery learned"),
        }
        learned
    }

    /// Has the engine announce every `Admin` bundle delivered here, and
    /// applies the welcomes among them ([`run_welcomes`]), starting with
    /// `held` (see [`held_welcome`]).
    pub fn watch_welcomes(self: &Arc<Self>, held: Option<(BundleId, ManifestId)>) {
        let (to, delivered) = mpsc::unbounded_channel();
        if let Some(held) = held {
            let _ = to.send(held);
        }
        self.engine.send(Input::Watch {
            kind: PayloadKind::Admin,
            to,
        });
        tokio::spawn(run_welcomes(
            self.clone(),
            self.config.discovery.anchor,
            delivered,
        ));
    }

    /// Tells the engine the routes as they are now.
    fn reroute(&self, learned: &Learned) {
        let (routes, member_of) = routes(&self.config, learned);
        self.engine.send(Input::SetRoutes { routes, member_of });
    }
}

/// The mDNS responder and browser of this node.
pub struct Mdns {
    daemon: ServiceDaemon,
}

impl Mdns {
    /// Starts mDNS on the configured port and interfaces. Must be called
    /// inside a tokio runtime.
    pub fn start(config: &Config) -> Result<Mdns, DiscoveryError> {
        let discovery = &config.discovery;
        let daemon = ServiceDaemon::new_with_port(discovery.mdns_port)?;
        if !discovery.interfaces.is_empty() {
            daemon.disable_interface(IfKind::All)?;
            daemon.enable_interface(
                discovery
                    .interfaces
                    .iter()
                    .map(|name| IfKind::Name(name.clone()))
                    .collect::<Vec<_>>(),
            )?;
        }
        // The daemon's own troubles (a socket it cannot open, a name it
        // had to change) reach the log.
        let events = daemon.monitor()?;
        tokio::spawn(async move {
            while let Ok(event) = events.recv_async().await {
                match event {
                    DaemonEvent::Error(e) => tracing::warn!(error = %e, "mDNS"),
                    DaemonEvent::NameChange(change) => {
                        tracing::info!(?change, "mDNS renamed a record after a conflict");
                    }
                    other => tracing::debug!(event = ?other, "mDNS"),
                }
            }
        });
        Ok(Mdns { daemon })
    }

    /// Advertises this node's QUIC address: `addr`'s port, and its IP unless
    /// that is unspecified (then every address of the chosen interfaces).
    pub fn advertise(
        &self,
        me: NodeId,
        role: Role,
        addr: SocketAddr,
    ) -> Result<(), DiscoveryError> {
        let hex = me.to_hex();
        let instance = format!("ferry-{}", &hex[..16]);
        let host = format!("{instance}.local.");
        let properties = [("id", hex.as_str()), ("role", role.as_str())];
        let ip = if addr.ip().is_unspecified() {
            String::new()
        } else {
            addr.ip().to_string()
        };
        let mut info =
            ServiceInfo::new(SERVICE, &instance, &host, ip, addr.port(), &properties[..])?;
        if addr.ip().is_unspecified() {
            info = info.enable_addr_auto();
        }
        self.daemon.register(info)?;
        tracing::info!(%instance, port = addr.port(), role = role.as_str(), "advertising {SERVICE}");
        Ok(())
    }

    /// Browses for ferry nodes; resolved ones come out of the returned
    /// channel. Runs until the daemon shuts down.
    pub fn browse(&self) -> Result<mpsc::UnboundedReceiver<Found>, DiscoveryError> {
        let events = self.daemon.browse(SERVICE)?;
        let (found, out) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reported = BTreeSet::new();
            while let Ok(event) = events.recv_async().await {
                let ServiceEvent::ServiceResolved(service) = event else {
                    continue;
                };
                match Found::from_service(&service) {
                    Ok(node) => {
                        if found.send(node).is_err() {
                            break;
                        }
                    }
                    Err(reason) => {
                        if reported.insert(service.fullname.clone()) {
                            tracing::warn!(service = %service.fullname, "ignoring a ferry service: {reason}");
                        }
                    }
                }
            }
        });
        Ok(out)
    }

    pub fn shutdown(&self) {
        let _ = self.daemon.shutdown();
    }
}

/// A ferry node found on the local network: what its advertisement claims.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub instance: String,
    pub node: NodeId,
    pub role: String,
    pub addrs: Vec<SocketAddr>,
}

impl Found {
    fn from_service(service: &mdns_sd::ResolvedService) -> Result<Found, String> {
        let id = service
            .get_property_val_str("id")
            .ok_or("no id in its TXT record")?;
        let node = parse_node_id(id).map_err(|e| format!("TXT id: {e}"))?;
        let mut addrs: Vec<SocketAddr> = service
            .get_addresses()
            .iter()
            .map(|ip| ip.to_ip_addr())
            // A link-local IPv6 address needs a scope the record lacks.
            .filter(|ip| !matches!(ip, IpAddr::V6(v6) if v6.is_unicast_link_local()))
            .map(|ip| SocketAddr::new(ip, service.get_port()))
            .collect();
        addrs.sort();
        if addrs.is_empty() {
            return Err("no usable address".into());
        }
        Ok(Found {
            instance: service.fullname.clone(),
            node,
            role: service
                .get_property_val_str("role")
                .unwrap_or("unknown")
                .to_string(),
            addrs,
        })
    }
}

/// A leaf's way to its anchor: tries the addresses it knows (from
/// `learned.json`, then from mDNS) with QUIC pinned to the anchor's id,
/// runs each link it gets until it ends, and keeps the address that worked.
/// Services with another id are ignored, once logged.
pub async fn run_anchor(
    boot: Arc<Bootstrap>,
    anchor: NodeId,
    endpoint: Arc<QuicEndpoint>,
    registry: Arc<Registry>,
    found: Option<mpsc::UnboundedReceiver<Found>>,
) {
    let family = endpoint.local_addr().ok().map(|a| a.is_ipv4());
    let (seen, mut heard) = watch::channel(Vec::<SocketAddr>::new());
    if let Some(mut found) = found {
        tokio::spawn(async move {
            let mut ignored = BTreeSet::new();
            while let Some(node) = found.recv().await {
                if node.node != anchor {
                    if ignored.insert((node.instance.clone(), node.node)) {
                        tracing::info!(
                            service = %node.instance,
                            node = %node.node,
                            role = %node.role,
                            anchor = %anchor,
                            "ignoring a ferry node: its id is not this leaf's anchor"
                        );
                    }
                    continue;
                }
                // Answers repeat (announcements, refreshes): news only.
                if *seen.borrow() != node.addrs {
                    tracing::info!(peer = "anchor", node = %anchor, addrs = ?node.addrs, "found the anchor on the local network");
                    seen.send_replace(node.addrs);
                }
            }
        });
    }
    let mut backoff = Duration::from_secs(1);
    loop {
        let mut candidates = boot.learned().anchor_addrs(anchor);
        for addr in heard.borrow_and_update().iter() {
            if !candidates.contains(addr) {
                candidates.push(*addr);
            }
        }
        // The endpoint's socket reaches only its own address family.
        candidates.retain(|a| family.is_none_or(|v4| a.is_ipv4() == v4));
        let mut connected = false;
        for addr in candidates {
            match endpoint.connect(addr, anchor).await {
                Ok(link) => {
                    connected = true;
                    let known = boot.learned().anchor_addrs(anchor);
                    if known.first() != Some(&addr) {
                        boot.update(|learned| {
                            let mut addrs = vec![addr];
                            addrs.extend(known.into_iter().filter(|a| *a != addr).take(3));
                            learned.anchor = Some(LearnedAnchor {
                                node: anchor.to_hex(),
                                addrs,
                            });
                        })
                        .await;
                    }
                    let since = std::time::Instant::now();
                    registry.run(link, boot.me).await;
                    // A link that ends at once (refused after the handshake,
                    // say) is retried with backoff, not in a tight loop.
                    if since.elapsed() < Duration::from_secs(10) {
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(60));
                    } else {
                        backoff = Duration::from_secs(1);
                    }
                    break;
                }
                Err(e) => {
                    tracing::warn!(peer = "anchor", node = %anchor, %addr, error = %e, "cannot connect to the anchor");
                }
            }
        }
        if connected {
            continue;
        }
        // Wait for news from mDNS, or retry what is known after a while.
        tokio::select! {
            changed = heard.changed() => {
                if changed.is_err() {
                    tokio::time::sleep(backoff).await;
                }
            }
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(60));
    }
}

/// A leaf applying the welcomes its anchor sends: `delivered` yields every
/// `Admin` bundle delivered here; one from the anchor carrying a valid
/// [`Welcome`] becomes this node's routes and groups (and is kept in
/// `learned.json`). Anything else is logged and ignored.
pub async fn run_welcomes(
    boot: Arc<Bootstrap>,
    anchor: Option<NodeId>,
    mut delivered: mpsc::UnboundedReceiver<(BundleId, ManifestId)>,
) {
    while let Some((bundle, manifest)) = delivered.recv().await {
        let is_welcome = boot
            .store
            .get(Cf::Bundles, &bundle.to_key())
            .ok()
            .flatten()
            .and_then(|b| BundleRecord::decode(&b))
            .is_some_and(|r| r.header.release == WELCOME_RELEASE);
        if !is_welcome {
            // Another kind of admin bundle (a key statement): not ours.
            continue;
        }
        if Some(bundle.source) != anchor {
            tracing::warn!(%bundle, source = %bundle.source, "ignoring an admin bundle: not from this node's anchor");
            continue;
        }
        let store = boot.store.clone();
        let read = tokio::task::spawn_blocking(move || read_welcome(&store, manifest))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r);
        let welcome = match read {
            Ok(welcome) => welcome,
            Err(reason) => {
                tracing::warn!(%bundle, peer = "anchor", "ignoring a welcome: {reason}");
                continue;
            }
        };
        let route = match welcome.check() {
            Ok((from, _)) if from != bundle.source => {
                tracing::warn!(%bundle, peer = "anchor", "ignoring a welcome: it names {from} as its sender");
                continue;
            }
            Ok((_, route)) if Some(route) != anchor => {
                tracing::warn!(%bundle, peer = "anchor", %route, "ignoring a welcome: its default route is not the anchor, this leaf's only neighbour it knows");
                continue;
            }
            Ok((_, route)) => route,
            Err(reason) => {
                tracing::warn!(%bundle, peer = "anchor", "ignoring a welcome: {reason}");
                continue;
            }
        };
        if boot.learned().welcome.as_ref() == Some(&welcome) {
            continue;
        }
        let learned = boot
            .update(|learned| learned.welcome = Some(welcome.clone()))
            .await;
        tracing::info!(peer = "anchor", default_route = %route, groups = ?welcome.groups, "routes received from the anchor");
        boot.reroute(&learned);
    }
}

fn read_welcome(store: &RocksStore, id: ManifestId) -> Result<Welcome, String> {
    let manifest = store
        .get_manifest(id)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("object {id} is not held here"))?;
    if manifest.total_length() > MAX_WELCOME {
        return Err(format!(
            "{} bytes; a welcome has at most {MAX_WELCOME}",
            manifest.total_length()
        ));
    }
    let mut bytes = Vec::new();
    store
        .read_object(&manifest, &mut bytes)
        .map_err(|e| format!("object {id}: {e}"))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("not a welcome document: {e}"))
}

/// A base admitting leaves that are not configured peers, as `[discovery]
/// enrol` allows.
pub struct Enrolment {
    boot: Arc<Bootstrap>,
    trust: SharedTrust,
    /// One enrolment at a time, so two connections of one new leaf make one peer.
    lock: tokio::sync::Mutex<()>,
}

impl Enrolment {
    pub fn new(boot: Arc<Bootstrap>, trust: SharedTrust) -> Arc<Enrolment> {
        Arc::new(Enrolment {
            boot,
            trust,
            lock: tokio::sync::Mutex::new(()),
        })
    }

    /// `node` completed the handshake but is no peer: if `enrol` allows it,
    /// it becomes one (a new engine link, a route, a pinned id, a line in
    /// `learned.json`) and is sent its welcome. None if it may not enrol.
    pub async fn enrol(
        &self,
        registry: &Registry,
        node: NodeId,
        remote: SocketAddr,
    ) -> Option<(LinkId, Peer)> {
        let _one = self.lock.lock().await;
        if let Some(known) = registry.peer(node) {
            return Some(known);
        }
        let config = &self.boot.config;
        if !config.discovery.enrol.allows(&node) {
            tracing::warn!(peer = %node, %remote, "refused enrolment: the node is not in discovery.enrol");
            return None;
        }
        let link = match self.boot.engine.add_link().await {
            Ok(link) => link,
            Err(e) => {
                tracing::warn!(peer = %node, error = %e, "cannot enrol");
                return None;
            }
        };
        let hex = node.to_hex();
        let peer = Peer {
            name: format!("leaf-{}", &hex[..8]),
            node,
            quic: None,
            profile: config.discovery.profile,
            serial: None,
        };
        self.trust.pin(node);
        registry.add_peer(link, peer.clone());
        let learned = self
            .boot
            .update(|learned| {
                learned.enrolled.push(EnrolledLeaf {
                    node: hex.clone(),
                    name: peer.name.clone(),
                });
            })
            .await;
        self.boot.reroute(&learned);
        tracing::info!(peer = %peer.name, node = %node, %remote, "enrolled a leaf");
        let welcome = Welcome {
            from: self.boot.me.to_hex(),
            default_route: self.boot.me.to_hex(),
            groups: config.discovery.welcome_groups.clone(),
        };
        match self.send_welcome(node, &welcome).await {
            Ok(bundle) => {
                tracing::info!(peer = %peer.name, %bundle, groups = ?welcome.groups, "sent the leaf its routes");
            }
            Err(e) => {
                tracing::error!(peer = %peer.name, error = %e, "cannot send the leaf its routes")
            }
        }
        Some((link, peer))
    }

    async fn send_welcome(&self, leaf: NodeId, welcome: &Welcome) -> Result<BundleId, String> {
        let bytes = serde_json::to_vec(welcome).expect("plain data serialises");
        let manifest = crate::admin::store_bytes(&self.boot.store, "welcome", bytes).await?;
        self.boot
            .engine
            .submit(Submission {
                destination: Endpoint::Node(leaf),
                lifetime: WELCOME_LIFETIME,
                priority: Priority::Expedited,
                kind: PayloadKind::Admin,
                manifest,
                release: WELCOME_RELEASE.to_vec(),
                signature: Vec::new(),
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::parse(
            Path::new("/etc/ferry/ferryd.toml"),
            &format!("[node]\nkey = \"k\"\n[store]\npath = \"s\"\n[listen]\nquic = \"127.0.0.1:7410\"\n{text}"),
        )
        .unwrap()
    }

    #[test]
    fn learned_state_round_trips_atomically_and_bad_files_name_the_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("learned.json");
        assert_eq!(Learned::load(&path).unwrap(), Learned::default());
        let learned = Learned {
            enrolled: vec![EnrolledLeaf {
                node: NodeId([7; 32]).to_hex(),
                name: "leaf-07070707".into(),
            }],
            anchor: Some(LearnedAnchor {
                node: NodeId([8; 32]).to_hex(),
                addrs: vec!["127.0.0.1:7410".parse().unwrap()],
            }),
            welcome: Some(Welcome {
                from: NodeId([8; 32]).to_hex(),
                default_route: NodeId([8; 32]).to_hex(),
                groups: vec!["leaves".into()],
            }),
        };
        learned.save(&path).unwrap();
        assert_eq!(Learned::load(&path).unwrap(), learned);
        // Only the file itself is left: the temporary one was renamed.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert_eq!(
            learned.anchor_addrs(NodeId([8; 32])),
            vec!["127.0.0.1:7410".parse().unwrap()]
        );
        assert!(learned.anchor_addrs(NodeId([9; 32])).is_empty());

        std::fs::write(&path, r#"{"enrolled":[{"node":"abc","name":"x"}]}"#).unwrap();
        let err = Learned::load(&path).unwrap_err().to_string();
        assert!(err.contains("enrolled[0].node"), "{err}");
        assert!(err.contains("learned.json"), "{err}");
        std::fs::write(&path, "{").unwrap();
        assert!(Learned::load(&path).is_err());
    }

    #[test]
    fn the_handshake_admits_peers_learned_ones_and_who_may_enrol() {
        let (peer, learned, invited, stranger) = (
            NodeId([1; 32]),
            NodeId([2; 32]),
            NodeId([3; 32]),
            NodeId([4; 32]),
        );
        let text = |enrol: &str| {
            format!(
                "[[peer]]\nname = \"relay\"\nnode_id = \"{}\"\n[discovery]\n{enrol}",
                peer.to_hex()
            )
        };
        let kept = Learned {
            enrolled: vec![EnrolledLeaf {
                node: learned.to_hex(),
                name: "leaf-02020202".into(),
            }],
            ..Learned::default()
        };
        let closed = config(&text(""));
        let policy = trust_policy(&closed, &kept.peers(&closed));
        assert!(policy.admits(&peer) && policy.admits(&learned));
        assert!(!policy.admits(&invited) && !policy.admits(&stranger));

        let listed = config(&text(&format!("enrol = [\"{}\"]\n", invited.to_hex())));
        let policy = trust_policy(&listed, &kept.peers(&listed));
        assert!(policy.admits(&invited) && policy.admits(&learned));
        assert!(!policy.admits(&stranger));

        let open = config(&text("enrol = \"any\"\n"));
        assert!(trust_policy(&open, &[]).admits(&stranger));
    }

    #[test]
    fn routes_add_enrolled_leaves_and_the_anchors_welcome() {
        let leaf = NodeId([7; 32]);
        let base = NodeId([8; 32]);
        let learned = Learned {
            enrolled: vec![EnrolledLeaf {
                node: leaf.to_hex(),
                name: "leaf-07070707".into(),
            }],
            ..Learned::default()
        };
        let at_base = config(&format!(
            "[discovery]\nadvertise = true\nenrol = [\"{}\"]\nwelcome_groups = [\"leaves\"]\n",
            leaf.to_hex()
        ));
        let (at_base, _) = routes(&at_base, &learned);
        assert_eq!(at_base.next_hop[&leaf], leaf);
        assert!(at_base.groups["leaves"].contains(&leaf));

        let at_leaf = config(&format!("[discovery]\nanchor = \"{}\"\n", base.to_hex()));
        let (routes_before, member_of) = routes(&at_leaf, &Learned::default());
        assert_eq!(routes_before.next_hop[&base], base);
        assert_eq!(routes_before.default_hop, None);
        assert!(member_of.is_empty());
        let welcomed = Learned {
            welcome: Some(Welcome {
                from: base.to_hex(),
                default_route: base.to_hex(),
                groups: vec!["leaves".into()],
            }),
            ..Learned::default()
        };
        let (routes_after, member_of) = routes(&at_leaf, &welcomed);
        assert_eq!(routes_after.default_hop, Some(base));
        assert!(member_of.contains("leaves"));
        // A welcome from anyone but the anchor changes nothing.
        let stranger = Learned {
            welcome: Some(Welcome {
                from: leaf.to_hex(),
                ..welcomed.welcome.clone().unwrap()
            }),
            ..Learned::default()
        };
        assert_eq!(routes(&at_leaf, &stranger).0.default_hop, None);
        // The anchor becomes a peer without an address: discovery dials it.
        let peers = welcomed.peers(&at_leaf);
        assert_eq!(peers.len(), 1);
        assert_eq!((peers[0].node, peers[0].quic), (base, None));
    }
}
