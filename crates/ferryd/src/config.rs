//! The daemon's one TOML file: who this node is, its store, where it
//! listens, its peers and how bundles are routed. Parsing rejects unknown
//! keys and impossible values with the key and the reason; relative paths
//! are taken from the file's directory.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferry_core::{ContactPlan, Instant, NodeId, PlannedContact, Routes};
use ferry_link::profile::LinkProfile;
use serde::Deserialize;

use crate::units::{parse_rate, parse_size};

mod git;
mod oci;
mod serial;
mod trust;
pub use git::{GitConfig, GitSource, GitWatch};
pub use oci::{OciConfig, OciWatch};
pub use serial::SerialPeer;
pub use trust::{SealConfig, TrustConfig};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {key}: {reason}")]
    Invalid {
        path: PathBuf,
        key: String,
        reason: String,
    },
}

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    node: NodeSection,
    store: StoreSection,
    #[serde(default)]
    listen: ListenSection,
    #[serde(default, rename = "peer")]
    peers: Vec<PeerSection>,
    #[serde(default)]
    routes: RoutesSection,
    #[serde(default)]
    groups: BTreeMap<String, Vec<String>>,
    #[serde(default, rename = "contact")]
    contacts: Vec<ContactSection>,
    #[serde(default)]
    discovery: DiscoverySection,
    #[serde(default)]
    git: git::GitSection,
    #[serde(default)]
    oci: oci::OciSection,
    #[serde(default)]
    media: MediaSection,
    #[serde(default)]
    trust: trust::TrustSection,
}

/// `[media]`: removable media for air-gapped sites.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MediaSection {
    /// A mount point polled for volumes to import.
    watch: Option<PathBuf>,
    /// Seconds between polls (default 5).
    poll_s: Option<u64>,
    #[serde(default)]
    require_signed: bool,
}

/// `[media]`, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Media {
    /// A directory (mount point) polled for volumes; each is imported once.
    pub watch: Option<PathBuf>,
    pub poll: std::time::Duration,
    /// Import only volumes and receipts signed (`FILE.sig`) by a peer.
    /// Either way, a signature that is present must verify.
    pub require_signed: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeSection {
    key: PathBuf,
    certificate: Option<PathBuf>,
    #[serde(default = "default_role")]
    role: String,
    #[serde(default)]
    member_of: Vec<String>,
}

fn default_role() -> String {
    "relay".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreSection {
    path: PathBuf,
    quota: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListenSection {
    quic: Option<String>,
    admin: Option<PathBuf>,
    metrics: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PeerSection {
    name: String,
    node_id: String,
    quic: Option<String>,
    #[serde(default = "default_profile")]
    profile: String,
    serial: Option<serial::SerialSection>,
}

/// The link profile of a peer (or of enrolled leaves) that names none.
const DEFAULT_PROFILE: &str = "lte-bush";

fn default_profile() -> String {
    DEFAULT_PROFILE.into()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoutesSection {
    default: Option<String>,
    #[serde(default)]
    next_hop: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContactSection {
    from: String,
    to: String,
    start: String,
    end: String,
    rate: Option<String>,
    #[serde(default)]
    both_ways: bool,
}

/// What a node plays in the fleet; shown in logs and `ferry status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Base,
    Relay,
    Leaf,
}

/// A neighbour, as configured.
#[derive(Clone, Debug)]
pub struct Peer {
    pub name: String,
    pub node: NodeId,
    /// Dial this address; None: wait for the peer to dial us.
    pub quic: Option<SocketAddr>,
    pub profile: &'static LinkProfile,
    /// Reached over this serial line instead of QUIC.
    pub serial: Option<SerialPeer>,
}

/// A validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub path: PathBuf,
    pub key: PathBuf,
    /// A certificate a trust anchor issued for the node key (DER), presented
    /// instead of a self-signed one.
    pub certificate: Option<PathBuf>,
    pub role: Role,
    pub store: PathBuf,
    pub quota: Option<u64>,
    pub listen_quic: Option<SocketAddr>,
    pub admin: PathBuf,
    /// Where Prometheus scrapes `/metrics`, if anywhere.
    pub metrics: Option<SocketAddr>,
    pub peers: Vec<Peer>,
    pub routes: Routes,
    pub member_of: BTreeSet<String>,
    pub contacts: Vec<PlannedContact>,
    /// `[discovery]`: mDNS advertising, the anchor of a new leaf, enrolment.
    pub discovery: Discovery,
    /// `[media]`: the mount point watched for volumes.
    pub media: Media,
    /// `[git]`: served repositories, smart HTTP, watched repositories.
    pub git: git::GitConfig,
    /// `[oci]`: the leaf's registry and watched image sources.
    pub oci: OciConfig,
    /// `[trust]`: the publisher key and the trust policy.
    pub trust: TrustConfig,
}

impl Config {
    /// Reads and validates `path`. `me` is this node's id (from its key),
    /// which names may refer to as "self".
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let file: File = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let invalid = |key: &str, reason: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            key: key.to_string(),
            reason,
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        let relative = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                dir.join(p)
            }
        };
        let role = match file.node.role.as_str() {
            "base" => Role::Base,
            "relay" => Role::Relay,
            "leaf" => Role::Leaf,
            other => {
                return Err(invalid(
                    "node.role",
                    format!("{other:?} is not one of base, relay, leaf"),
                ));
            }
        };
        let quota = file
            .store
            .quota
            .as_deref()
            .map(parse_size)
            .transpose()
            .map_err(|e| invalid("store.quota", e))?;
        let listen_quic =
            parse_addr(file.listen.quic.as_deref()).map_err(|e| invalid("listen.quic", e))?;
        let metrics =
            parse_addr(file.listen.metrics.as_deref()).map_err(|e| invalid("listen.metrics", e))?;
        let mut peers = Vec::new();
        let mut names: BTreeMap<String, NodeId> = BTreeMap::new();
        for (i, p) in file.peers.iter().enumerate() {
            let key = |field: &str| format!("peer[{i}].{field}");
            let node = parse_node_id(&p.node_id).map_err(|e| invalid(&key("node_id"), e))?;
            if names.insert(p.name.clone(), node).is_some() {
                return Err(invalid(&key("name"), format!("{:?} is used twice", p.name)));
            }
            if peers.iter().any(|q: &Peer| q.node == node) {
                return Err(invalid(
                    &key("node_id"),
                    "the same node is listed twice".into(),
                ));
            }
            let quic = parse_addr(p.quic.as_deref()).map_err(|e| invalid(&key("quic"), e))?;
            let profile = p
                .profile
                .parse::<&LinkProfile>()
                .map_err(|e| invalid(&key("profile"), e.to_string()))?;
            let serial = match &p.serial {
                Some(_) if quic.is_some() => {
                    return Err(invalid(
                        &key("serial"),
                        "a peer is reached over QUIC or over a serial line, not both \
                         (remove quic or the serial table)"
                            .into(),
                    ));
                }
                Some(section) => {
                    let serial = section
                        .build(profile, relative)
                        .map_err(|(field, reason)| {
                            invalid(&key(&format!("serial.{field}")), reason)
                        })?;
                    if let Some(public) = serial.peer_key
                        && ferry_link::identity::node_id_from_public_key(&public) != node
                    {
                        return Err(invalid(
                            &key("serial.peer_key"),
                            format!("is not the key of node_id {node}"),
                        ));
                    }
                    Some(serial)
                }
                None => None,
            };
            peers.push(Peer {
                name: p.name.clone(),
                node,
                quic,
                profile,
                serial,
            });
        }
        let resolve = |text: &str| -> Result<NodeId, String> {
            names
                .get(text)
                .copied()
                .map_or_else(|| parse_node_id(text), Ok)
                .map_err(|_| format!("{text:?} is neither a peer name nor a 64-digit node id"))
        };
        let mut routes = Routes::default();
        // A neighbour is its own next hop unless a route says otherwise.
        for peer in &peers {
            routes.next_hop.insert(peer.node, peer.node);
        }
        if let Some(hop) = &file.routes.default {
            routes.default_hop = Some(resolve(hop).map_err(|e| invalid("routes.default", e))?);
        }
        for (dest, hop) in &file.routes.next_hop {
            let key = format!("routes.next_hop.{dest}");
            let dest = resolve(dest).map_err(|e| invalid(&key, e))?;
            let hop = resolve(hop).map_err(|e| invalid(&key, e))?;
            routes.next_hop.insert(dest, hop);
        }
        for (group, members) in &file.groups {
            let key = format!("groups.{group}");
            let members = members
                .iter()
                .map(|m| resolve(m))
                .collect::<Result<BTreeSet<_>, _>>()
                .map_err(|e| invalid(&key, e))?;
            routes.groups.insert(group.clone(), members);
        }
        let mut contacts = Vec::new();
        for (i, c) in file.contacts.iter().enumerate() {
            let key = |field: &str| format!("contact[{i}].{field}");
            // "self" is resolved by the daemon once it knows its key.
            let node = |text: &str, field: &str| {
                if text == "self" {
                    Ok(SELF)
                } else {
                    resolve(text).map_err(|e| invalid(&key(field), e))
                }
            };
            let from = node(&c.from, "from")?;
            let to = node(&c.to, "to")?;
            let start = parse_time(&c.start).map_err(|e| invalid(&key("start"), e))?;
            let end = parse_time(&c.end).map_err(|e| invalid(&key("end"), e))?;
            if end <= start {
                return Err(invalid(
                    &key("end"),
                    "the window ends before it starts".into(),
                ));
            }
            let rate_bps = c
                .rate
                .as_deref()
                .map(parse_rate)
                .transpose()
                .map_err(|e| invalid(&key("rate"), e))?
                .unwrap_or(0);
            let contact = PlannedContact {
                from,
                to,
                start,
                end,
                rate_bps,
                owlt: Duration::ZERO,
            };
            if c.both_ways {
                contacts.push(PlannedContact {
                    from: to,
                    to: from,
                    ..contact.clone()
                });
            }
            contacts.push(contact);
        }
        let discovery = parse_discovery(&file.discovery, &peers, listen_quic)
            .map_err(|(key, reason)| invalid(&format!("discovery.{key}"), reason))?;
        let git = git::parse_git(&file.git, relative)
            .map_err(|(key, reason)| invalid(&format!("git.{key}"), reason))?;
        let oci = file
            .oci
            .build(relative)
            .map_err(|(key, reason)| invalid(&format!("oci.{key}"), reason))?;
        let trust = file
            .trust
            .build(relative)
            .map_err(|(key, reason)| invalid(&format!("trust.{key}"), reason))?;
        if discovery.enrol == Enrol::Anchored && trust.anchors.is_empty() {
            return Err(invalid(
                "discovery.enrol",
                "\"anchored\" needs [trust] anchors: the certificates of the anchors whose nodes may enrol".into(),
            ));
        }
        Ok(Config {
            path: path.to_path_buf(),
            key: relative(&file.node.key),
            certificate: file.node.certificate.as_deref().map(relative),
            role,
            store: relative(&file.store.path),
            quota,
            listen_quic,
            admin: relative(
                file.listen
                    .admin
                    .as_deref()
                    .unwrap_or(Path::new("ferryd.sock")),
            ),
            metrics,
            peers,
            routes,
            member_of: file.node.member_of.into_iter().collect(),
            contacts,
            discovery,
            media: Media {
                watch: file.media.watch.as_deref().map(relative),
                poll: std::time::Duration::from_secs(file.media.poll_s.unwrap_or(5).max(1)),
                require_signed: file.media.require_signed,
            },
            git,
            oci,
            trust,
        })
    }

    /// The contact plan with "self" replaced by this node's id.
    pub fn contact_plan(&self, me: NodeId) -> ContactPlan {
        let swap = |n: NodeId| if n == SELF { me } else { n };
        ContactPlan::new(self.contacts.iter().map(|c| PlannedContact {
            from: swap(c.from),
            to: swap(c.to),
            ..c.clone()
        }))
    }
}

/// The file `ferryd init` writes; `{role}` and `{node_id}` are filled in.
pub const TEMPLATE: &str = r#"# ferryd configuration, written by `ferryd init`.
# This node's id is {node_id}
# (give it to the peers that should admit this node).
# Relative paths are taken from this file's directory.

[node]
# The node's Ed25519 key; the node id is derived from it. Keep it secret.
key = "node.key"
# base, relay or leaf: shown in logs and `ferry status`.
role = "{role}"
# Groups this node belongs to: bundles sent to "group:NAME" are delivered here.
member_of = []

[store]
# Where bundles and chunks are kept (RocksDB and pack files).
path = "store"
# Refuse custody rather than fill the disk past this size, e.g. "50 GiB".
# quota = "50 GiB"

[listen]
# QUIC address peers dial; omit to only dial out.
quic = "0.0.0.0:7410"
# Unix socket of the admin API used by the `ferry` command.
admin = "ferryd.sock"
# Prometheus metrics at http://ADDRESS/metrics; omit to turn off.
# metrics = "127.0.0.1:9410"

# One [[peer]] per neighbour. Only listed peers are admitted: an unknown
# node is refused at the TLS handshake.
# [[peer]]
# name = "base"
# node_id = "<64 hex digits, printed by `ferryd init` on that node>"
# quic = "192.0.2.10:7410"   # dial it there; omit if it dials this node
# profile = "lte-bush"       # lte-bush, geo-sat, drone-wifi, iridium-sbd, acoustic
#
# A peer behind a serial modem (acoustic, satellite) has a [peer.serial]
# table instead of quic. Both ends must agree on line_rate (or baud),
# modem_mtu, crc, half_duplex, propagation, max_turn and guard.
# [[peer]]
# name = "sub-1"
# node_id = "<64 hex digits>"
# profile = "acoustic"
# [peer.serial]
# device = "/dev/ttyUSB0"
# baud = 19200               # the port's rate, 8N1
# line_rate = "80 bit/s"     # pace slower than the port (the modem's air rate)
# modem_mtu = 64             # bytes per modem frame, all framing included (39..=2048)
# crc = "crc32"              # or "crc16" (2 bytes a frame fewer), or "mac" (frames
#                            # authenticated by both node keys; also set peer_key =
#                            # "ed25519:...", the node_key the peer's ferryd logs)
# half_duplex = true         # the modem cannot talk and listen at once
# initiator = true           # with half_duplex: true at exactly one end
# propagation = "1s"         # one-way delay bound; default half the profile's RTT
# max_turn = "2min"          # half-duplex turn; default 16 frames' airtime
# guard = "200ms"            # turn-around margin; default propagation / 5

[routes]
# The peer that carries bundles for destinations without a route of their own.
# default = "base"
# Destination (peer name or node id) = the peer to hand it to.
[routes.next_hop]

# Named groups of nodes, for "group:NAME" destinations.
[groups]
# leaves = ["leaf-1", "<node id>"]

# Discovery on the local network (mDNS/DNS-SD, service _ferry._udp).
[discovery]
# Advertise this node (its id, role and QUIC port) so new leaves find it.
# advertise = true
# On a new leaf: the one node it trusts (64 hex digits), its base. The leaf
# browses for it, dials it with its id pinned (the advertisement is only a
# hint; the TLS handshake proves the identity), enrols and receives its
# routes. Not also a [[peer]].
# anchor = "<node id of the base>"
# On a base: who may enrol without a [[peer]] entry: a list of node ids,
# "anchored" — nodes a [trust] anchor certified — or "any" — any node on the
# local network that holds a key (staging only).
# Enrolled leaves are kept in learned.json beside this file; removing an id
# here stops new enrolments, not those already made.
# enrol = ["<node id of a new leaf>"]
# Groups a leaf enrolled here joins (it is told so, and routed to for them).
# welcome_groups = ["leaves"]
# Interfaces mDNS uses; all when omitted.
# interfaces = ["eth0"]
# The mDNS port: 5353, the standard one; another only for tests.
# mdns_port = 5353
# Profile of links to the anchor and to enrolled leaves.
# profile = "lte-bush"

# Git releases. A leaf applies every Git release delivered to it into one
# bare repository per published repository under root, and serves them
# read-only over smart HTTP (clone http://ADDRESS/NAME.git).
# [git]
# listen = "127.0.0.1:8418"
# root = "git"
# On a base: publish a repository whenever its refs change (a local path,
# or url = "https://..." fetched into a mirror under root at every poll).
# [[git.watch]]
# name = "fleet"
# path = "/srv/git/fleet.git"
# refs = ["main", "refs/tags/*"]   # default: every branch and tag
# to = "group:leaves"
# interval = "30s"

# Trust. A base signs what it publishes with a publisher key (make one with
# `ferry key new --out publisher.pem`; keep it off relays and leaves). A leaf
# applies only releases signed by a key its policy trusts for that name and
# destination, and never an older version over a newer one. Without any
# [[trust.publisher]], releases are applied unsigned.
# [trust]
# publisher_key = "publisher.pem"
# Admit QUIC peers a trust anchor certified (`ferry key anchor`, `ferry key
# admit`) besides the pinned ones; with [discovery] enrol = "anchored" they
# enrol here. A node presents the certificate an anchor issued it with
# [node] certificate = "node.crt".
# anchors = ["anchor.crt"]
# [[trust.publisher]]
# key = "ed25519:..."        # `ferry key show publisher.pem`
# git = ["fleet", "apps/*"]  # repository names it may publish
# oci = ["team/**"]          # image repositories it may publish
# to = ["group:leaves"]      # destinations; default: any
# Seal what goes to a group: relays and media carry ciphertext, and only the
# members listed (by node public key, which ferryd logs at start as
# node_key) open it. Members need no setting of their own.
# [[trust.seal]]
# group = "leaves"
# key = "groups/leaves.key"  # the group key; made here if absent
# members = ["ed25519:..."]

# Removable media: volumes and receipts are signed by the node that writes
# them (FILE.sig beside each file); a signature that is present must verify.
# [media]
# watch = "/mnt/usb"         # import volumes dropped here
# poll_s = 5
# require_signed = true      # refuse files not signed by a [[peer]]

# Planned contacts (times in RFC 3339, UTC). Where the plan reaches a
# destination, bundles wait for the earliest-arriving route over it.
# [[contact]]
# from = "self"
# to = "base"
# start = "2026-11-28T06:00:00Z"
# end = "2026-11-28T06:08:00Z"
# rate = "2400 bit/s"
# both_ways = true
"#;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DiscoverySection {
    #[serde(default)]
    advertise: bool,
    anchor: Option<String>,
    enrol: Option<EnrolSection>,
    #[serde(default)]
    welcome_groups: Vec<String>,
    #[serde(default)]
    interfaces: Vec<String>,
    mdns_port: Option<u16>,
    profile: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum EnrolSection {
    Word(String),
    List(Vec<String>),
}

/// Who may enrol with this node: connect without a `[[peer]]` entry and
/// become a peer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Enrol {
    #[default]
    Nobody,
    Only(BTreeSet<NodeId>),
    /// Any node that proves it holds its key (staging only).
    Any,
    /// Any node the handshake admits: pinned, or certified by one of
    /// `[trust] anchors`.
    Anchored,
}

impl Enrol {
    pub fn allows(&self, node: &NodeId) -> bool {
        match self {
            Enrol::Nobody => false,
            Enrol::Only(ids) => ids.contains(node),
            Enrol::Any | Enrol::Anchored => true,
        }
    }
}

/// `[discovery]`, validated.
#[derive(Clone, Debug)]
pub struct Discovery {
    /// Register `_ferry._udp.local.` with this node's id, role and QUIC port.
    pub advertise: bool,
    /// The only node a new leaf trusts: it browses for it and dials it.
    pub anchor: Option<NodeId>,
    pub enrol: Enrol,
    /// Groups an enrolled leaf is told it belongs to (and added to here).
    pub welcome_groups: Vec<String>,
    /// Interfaces mDNS uses (names such as "eth0"); empty: all of them.
    pub interfaces: Vec<String>,
    /// The mDNS port: 5353 except in tests.
    pub mdns_port: u16,
    /// Profile of links to the anchor and to enrolled leaves.
    pub profile: &'static LinkProfile,
}

impl Discovery {
    /// Whether mDNS runs at all.
    pub fn enabled(&self) -> bool {
        self.advertise || self.anchor.is_some()
    }
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Base => "base",
            Role::Relay => "relay",
            Role::Leaf => "leaf",
        }
    }
}

/// `[discovery]` checked against the peers and the QUIC address; an error
/// is (key under `discovery.`, reason).
fn parse_discovery(
    section: &DiscoverySection,
    peers: &[Peer],
    listen_quic: Option<SocketAddr>,
) -> Result<Discovery, (String, String)> {
    let err = |key: &str, reason: String| (key.to_string(), reason);
    if section.advertise && listen_quic.is_none() {
        return Err(err(
            "advertise",
            "needs listen.quic: it is the port that is advertised".into(),
        ));
    }
    let anchor = match &section.anchor {
        None => None,
        Some(text) => {
            let node = parse_node_id(text).map_err(|e| err("anchor", e))?;
            if let Some(peer) = peers.iter().find(|p| p.node == node) {
                return Err(err(
                    "anchor",
                    format!(
                        "is also [[peer]] {:?}; an anchor is found by mDNS, a peer is configured: keep one",
                        peer.name
                    ),
                ));
            }
            Some(node)
        }
    };
    let enrol = match &section.enrol {
        None => Enrol::Nobody,
        Some(EnrolSection::Word(word)) if word == "any" => Enrol::Any,
        Some(EnrolSection::Word(word)) if word == "anchored" => Enrol::Anchored,
        Some(EnrolSection::Word(word)) => {
            return Err(err(
                "enrol",
                format!("{word:?} is neither \"any\", \"anchored\" nor a list of node ids"),
            ));
        }
        Some(EnrolSection::List(ids)) => Enrol::Only(
            ids.iter()
                .enumerate()
                .map(|(i, id)| parse_node_id(id).map_err(|e| err(&format!("enrol[{i}]"), e)))
                .collect::<Result<_, _>>()?,
        ),
    };
    if enrol != Enrol::Nobody && listen_quic.is_none() {
        return Err(err(
            "enrol",
            "needs listen.quic: enrolling nodes dial this one".into(),
        ));
    }
    if let Some(group) = section.welcome_groups.iter().find(|g| g.trim().is_empty()) {
        return Err(err(
            "welcome_groups",
            format!("{group:?} is not a group name"),
        ));
    }
    if let Some(name) = section.interfaces.iter().find(|n| n.trim().is_empty()) {
        return Err(err(
            "interfaces",
            format!("{name:?} is not an interface name"),
        ));
    }
    let mdns_port = match section.mdns_port {
        Some(0) => return Err(err("mdns_port", "0 is not a port".into())),
        Some(port) => port,
        None => 5353,
    };
    let profile = section
        .profile
        .as_deref()
        .unwrap_or(DEFAULT_PROFILE)
        .parse::<&LinkProfile>()
        .map_err(|e| err("profile", e.to_string()))?;
    Ok(Discovery {
        advertise: section.advertise,
        anchor,
        enrol,
        welcome_groups: section.welcome_groups.clone(),
        interfaces: section.interfaces.clone(),
        mdns_port,
        profile,
    })
}

/// Stands for "this node" in contacts until the key is known.
const SELF: NodeId = NodeId([0; 32]);

fn parse_addr(text: Option<&str>) -> Result<Option<SocketAddr>, String> {
    text.map(|a| a.parse().map_err(|e| format!("{a:?}: {e}")))
        .transpose()
}

pub fn parse_node_id(text: &str) -> Result<NodeId, String> {
    let bytes = hex::decode(text.trim()).map_err(|_| format!("{text:?} is not hex"))?;
    NodeId::from_slice(&bytes).ok_or_else(|| {
        format!(
            "{text:?} has {} hex digits; a node id has 64",
            text.trim().len()
        )
    })
}

/// An RFC 3339 time, e.g. `2026-11-28T06:00:00Z`.
fn parse_time(text: &str) -> Result<Instant, String> {
    let t = humantime::parse_rfc3339_weak(text)
        .map_err(|e| format!("{text:?} is not an RFC 3339 time: {e}"))?;
    let since = t
        .duration_since(UNIX_EPOCH)
        .map_err(|_| format!("{text:?} is before 1970"))?;
    Ok(Instant(since.as_micros() as u64))
}

/// The daemon's clock: microseconds since the Unix epoch, the time base of
/// bundle ids and contact plans.
pub fn now() -> Instant {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Instant(since.as_micros() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0101010101010101010101010101010101010101010101010101010101010101";

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/ferry/ferryd.toml"), text)
    }

    fn minimal() -> String {
        "[node]\nkey = \"node.key\"\n[store]\npath = \"store\"\n".into()
    }

    #[test]
    fn the_init_template_parses() {
        let text = TEMPLATE.replace("{role}", "leaf").replace("{node_id}", ID);
        let c = parse(&text).unwrap();
        assert_eq!(c.role, Role::Leaf);
        assert_eq!(c.listen_quic, Some("0.0.0.0:7410".parse().unwrap()));
    }

    #[test]
    fn minimal_file_takes_defaults_and_resolves_paths() {
        let c = parse(&minimal()).unwrap();
        assert_eq!(c.key, Path::new("/etc/ferry/node.key"));
        assert_eq!(c.store, Path::new("/etc/ferry/store"));
        assert_eq!(c.admin, Path::new("/etc/ferry/ferryd.sock"));
        assert_eq!(c.role, Role::Relay);
    }

    #[test]
    fn unknown_key_is_rejected_with_its_name_and_line() {
        let err = parse(&format!("{}colour = \"red\"\n", minimal()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("colour"), "{err}");
        assert!(err.contains("line 5"), "{err}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let cases = [
            (
                "[node]\nkey = \"k\"\nrole = \"boss\"\n[store]\npath = \"s\"\n",
                "node.role",
            ),
            (
                "[node]\nkey = \"k\"\n[store]\npath = \"s\"\nquota = \"lots\"\n",
                "store.quota",
            ),
            (
                &format!("{}[[peer]]\nname = \"r\"\nnode_id = \"abc\"\n", minimal()),
                "peer[0].node_id",
            ),
            (
                &format!(
                    "{}[[peer]]\nname = \"r\"\nnode_id = \"{ID}\"\nprofile = \"carrier-pigeon\"\n",
                    minimal()
                ),
                "peer[0].profile",
            ),
            (
                &format!("{}[routes]\ndefault = \"nobody\"\n", minimal()),
                "routes.default",
            ),
        ];
        for (text, key) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
    }

    #[test]
    fn discovery_keys_are_checked_with_their_names() {
        let listen = "[listen]\nquic = \"127.0.0.1:7410\"\n";
        let c = parse(&format!(
            "{}{listen}[discovery]\nadvertise = true\nenrol = [\"{ID}\"]\nwelcome_groups = [\"leaves\"]\ninterfaces = [\"lo\"]\n",
            minimal()
        ))
        .unwrap();
        assert!(c.discovery.advertise);
        assert_eq!(c.discovery.enrol, Enrol::Only([NodeId([1; 32])].into()));
        assert!(c.discovery.enrol.allows(&NodeId([1; 32])));
        assert!(!c.discovery.enrol.allows(&NodeId([2; 32])));
        assert_eq!(c.discovery.mdns_port, 5353);
        assert_eq!(c.discovery.profile.name, "lte-bush");
        let c = parse(&format!(
            "{}{listen}[discovery]\nenrol = \"any\"\n",
            minimal()
        ))
        .unwrap();
        assert!(c.discovery.enrol.allows(&NodeId([2; 32])));
        assert!(!c.discovery.enabled());
        let c = parse(&format!("{}[discovery]\nanchor = \"{ID}\"\n", minimal())).unwrap();
        assert_eq!(c.discovery.anchor, Some(NodeId([1; 32])));
        assert_eq!(c.discovery.enrol, Enrol::Nobody);
        assert!(c.discovery.enabled());

        let cases = [
            (
                "[discovery]\nadvertise = true\n".to_string(),
                "discovery.advertise: needs listen.quic",
            ),
            (
                format!("{listen}[discovery]\nenrol = \"everyone\"\n"),
                "discovery.enrol: \"everyone\" is neither",
            ),
            (
                format!("{listen}[discovery]\nenrol = [\"{ID}\", \"12\"]\n"),
                "discovery.enrol[1]",
            ),
            (
                format!("[discovery]\nenrol = [\"{ID}\"]\n"),
                "discovery.enrol: needs listen.quic",
            ),
            (
                "[discovery]\nanchor = \"base\"\n".to_string(),
                "discovery.anchor",
            ),
            (
                format!(
                    "[[peer]]\nname = \"base\"\nnode_id = \"{ID}\"\n[discovery]\nanchor = \"{ID}\"\n"
                ),
                "discovery.anchor: is also [[peer]] \"base\"",
            ),
            (
                "[discovery]\nmdns_port = 0\n".to_string(),
                "discovery.mdns_port",
            ),
            (
                "[discovery]\nprofile = \"smoke\"\n".to_string(),
                "discovery.profile",
            ),
            (
                "[discovery]\nwelcome_groups = [\" \"]\n".to_string(),
                "discovery.welcome_groups",
            ),
            ("[discovery]\nbeacon = true\n".to_string(), "beacon"),
            (
                "[[trust.seal]]\ngroup = \"../x\"\nmembers = [\"ed25519:d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a\"]\n".to_string(),
                "trust.seal[0].group",
            ),
            (
                "[[trust.seal]]\ngroup = \"east\"\nmembers = []\n".to_string(),
                "trust.seal[0].members: 1 to 256",
            ),
            (
                "[[trust.seal]]\ngroup = \"east\"\nmembers = [\"ed25519:00\"]\n".to_string(),
                "trust.seal[0].members",
            ),
            (
                "[[trust.seal]]\ngroup = \"east\"\nmembers = [\"ed25519:d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a\"]\n\
                 [[trust.seal]]\ngroup = \"east\"\nmembers = [\"ed25519:d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a\"]\n"
                    .to_string(),
                "trust.seal[1].group: group \"east\" is sealed twice",
            ),
        ];
        for (text, expected) in cases {
            let err = parse(&format!("{}{text}", minimal()))
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{expected}: {err}");
        }
    }

    #[test]
    fn a_sealed_group_names_its_members_and_key() {
        let text = format!(
            "{}[[trust.seal]]\ngroup = \"east\"\nmembers = [\"ed25519:d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a\"]\n",
            minimal()
        );
        let c = parse(&text).unwrap();
        let seal = &c.trust.seal[0];
        assert_eq!(seal.group, "east");
        assert!(
            seal.key.ends_with("groups/east.key"),
            "{}",
            seal.key.display()
        );
        assert_eq!(seal.members.len(), 1);
    }

    #[test]
    fn peers_routes_groups_and_contacts() {
        let text = format!(
            "{}[[peer]]\nname = \"relay\"\nnode_id = \"{ID}\"\nquic = \"127.0.0.1:7410\"\nprofile = \"geo-sat\"\n\
             [routes]\ndefault = \"relay\"\n[groups]\nleaves = [\"relay\"]\n\
             [[contact]]\nfrom = \"self\"\nto = \"relay\"\nstart = \"2026-11-28T06:00:00Z\"\nend = \"2026-11-28T06:08:00Z\"\nrate = \"2400 bit/s\"\nboth_ways = true\n",
            minimal()
        );
        let c = parse(&text).unwrap();
        let relay = NodeId([1; 32]);
        assert_eq!(c.peers[0].profile.name, "geo-sat");
        assert_eq!(c.routes.default_hop, Some(relay));
        assert!(c.routes.groups["leaves"].contains(&relay));
        let me = NodeId([9; 32]);
        let plan = c.contact_plan(me);
        assert_eq!(plan.contact_ahead(me, relay, Instant(0)), Some(true));
        assert_eq!(plan.contact_ahead(relay, me, Instant(0)), Some(true));
    }
}
