//! The daemon's trust gate: signs the releases this node publishes with its
//! publisher key, and checks every release delivered here against the
//! `[trust]` policy before an adapter applies it. A refused release is never
//! applied (so never served); the refusal is logged with who and why,
//! counted in `/metrics`, and reported to the bundle's source as a deletion
//! report naming the reason. Relays forward bundles without asking the gate.
//!
//! Releases sent to a group named in `[[trust.seal]]` are sealed for its
//! members after signing ([`TrustGate::prepare`]); a delivered sealed
//! release is opened with this node's key before it is checked
//! ([`TrustGate::open_payload`]), and one this node cannot open is refused like an
//! unsigned one. Relays carry sealed bundles without opening them.
//!
//! What the node has accepted (the newest version per release line, key
//! rotations and revocations) is kept in `trust-state.json` beside the
//! configuration, written atomically after each change.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_chunk::Manifest;
use ferry_chunk::ManifestId;
use ferry_core::{
    BundleHeader, BundleId, BundleRecord, Cf, Endpoint, PayloadKind, Priority, Store, Submission,
};
use ferry_link::identity::NodeKey;
use ferry_store::{RocksStore, SharedStore};
use ferry_trust::envelope::{self, Opened};
use ferry_trust::seal::GroupKey;
use ferry_trust::volume::VolumeSignature;
use ferry_trust::{
    Accepted, Arrived, Kind, PublisherKey, Refusal, ReleaseClaim, Signed, Statement, Trust,
    TrustState,
};
use tokio::sync::mpsc;

use crate::config::{Config, SealConfig, TrustConfig};
use crate::driver::{EngineHandle, Input};

/// Refusal classes, as `/metrics` labels them.
const CLASSES: [&str; 10] = [
    "unsigned",
    "malformed",
    "forged",
    "unknown_key",
    "revoked",
    "retired",
    "out_of_policy",
    "replayed",
    "mismatch",
    "sealed",
];
static REFUSED: [AtomicU64; 10] = [const { AtomicU64::new(0) }; 10];
static SERVE_REFUSED: AtomicU64 = AtomicU64::new(0);
static MEDIA_REFUSED: AtomicU64 = AtomicU64::new(0);

fn class(refusal: &Refusal) -> usize {
    match refusal {
        Refusal::Unsigned => 0,
        Refusal::Malformed(_) => 1,
        Refusal::BadSignature(_) => 2,
        Refusal::UnknownKey(_) => 3,
        Refusal::Revoked { .. } => 4,
        Refusal::Retired { .. } => 5,
        Refusal::OutOfPolicy { .. } | Refusal::NotAllowed(_) => 6,
        Refusal::Replayed { .. } => 7,
        Refusal::Mismatch(_) => 8,
        Refusal::Sealed(_) => 9,
    }
}

/// `ferry_releases_refused_total{reason=…}` lines for `/metrics`.
pub fn render_metrics(out: &mut String) {
    use std::fmt::Write;
    out.push_str("# HELP ferry_releases_refused_total Releases refused by the trust policy.\n");
    out.push_str("# TYPE ferry_releases_refused_total counter\n");
    for (name, count) in CLASSES.iter().zip(&REFUSED) {
        let _ = writeln!(
            out,
            "ferry_releases_refused_total{{reason=\"{name}\"}} {}",
            count.load(Ordering::Relaxed)
        );
    }
    out.push_str(
        "# HELP ferry_serve_refused_total Requests refused because what they asked for is no longer trusted.\n",
    );
    out.push_str("# TYPE ferry_serve_refused_total counter\n");
    let _ = writeln!(
        out,
        "ferry_serve_refused_total {}",
        SERVE_REFUSED.load(Ordering::Relaxed)
    );
    for (name, help, count) in [
        (
            "ferry_handshakes_refused_total",
            "QUIC peers refused at the handshake (not pinned, not certified by an anchor).",
            ferry_link::quic::handshakes_refused(),
        ),
        (
            "ferry_media_refused_total",
            "Volumes and receipts refused whole for their signature.",
            MEDIA_REFUSED.load(Ordering::Relaxed),
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {count}"
        );
    }
}

/// Key statements delivered here before this start, to take again in case
/// a crash came first (taking one twice changes nothing).
pub fn held_statements<S: Store>(engine: &ferry_core::Engine<S>) -> Vec<(BundleId, ManifestId)> {
    engine
        .bundles()
        .filter(|r| {
            r.header.kind == PayloadKind::Admin
                && r.delivered
                && r.header.release == KEY_STATEMENT_RELEASE
        })
        .map(|r| (r.header.id, r.header.manifest))
        .collect()
}

/// How a bundle's destination is named in a release claim.
pub fn destination_name(endpoint: &Endpoint) -> String {
    match endpoint {
        Endpoint::Node(node) => format!("node:{node}"),
        Endpoint::Group(name) => format!("group:{name}"),
    }
}

/// The `release` of an `Admin` bundle whose payload is one signed key
/// statement (a rotation or a revocation).
pub const KEY_STATEMENT_RELEASE: &[u8] = b"ferry-key-statement/1";

pub struct TrustGate {
    signer: Option<PublisherKey>,
    /// The groups this node seals for, with their keys.
    seals: Vec<(SealConfig, GroupKey)>,
    /// This node's key: it opens what is sealed for this node and signs
    /// the media files it writes.
    node: NodeKey,
    /// The nodes whose signed media files this node imports: its peers.
    admitted: std::collections::BTreeSet<ferry_core::NodeId>,
    /// `[media] require_signed`.
    require_signed_media: bool,
    enforced: bool,
    trust: Mutex<Trust>,
    state_path: PathBuf,
    engine: EngineHandle,
    store: Arc<RocksStore>,
}

impl TrustGate {
    /// Loads the publisher key and the state kept beside `config`.
    pub fn open(
        config: &Config,
        node: &NodeKey,
        engine: EngineHandle,
        store: Arc<RocksStore>,
    ) -> Result<Self, String> {
        let TrustConfig {
            publisher_key,
            policy,
            seal,
            ..
        } = &config.trust;
        let seals = seal
            .iter()
            .map(|s| Ok((s.clone(), group_key(s)?)))
            .collect::<Result<_, String>>()?;
        let signer = publisher_key
            .as_deref()
            .map(|path| PublisherKey::load(path).map_err(|e| format!("trust.publisher_key: {e}")))
            .transpose()?;
        let state_path = config
            .path
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join("trust-state.json");
        let state: TrustState = crate::media::read_json(&state_path)?;
        let enforced = config.trust.enforced();
        if !enforced {
            tracing::warn!(
                "no [[trust.publisher]] in the configuration: releases delivered here are applied without signature checks"
            );
        }
        if let Some(key) = &signer {
            tracing::info!(publisher = %key.public(), "releases published here are signed");
        }
        Ok(TrustGate {
            signer,
            seals,
            node: node.clone(),
            admitted: config.peers.iter().map(|p| p.node).collect(),
            require_signed_media: config.media.require_signed,
            enforced,
            trust: Mutex::new(Trust::new(policy.clone(), state)?),
            state_path,
            engine,
            store,
        })
    }

    /// The signature for a release this node publishes (empty without a
    /// publisher key). `version` must grow per (kind, name, destination).
    pub fn sign(
        &self,
        kind: Kind,
        name: &str,
        destination: &Endpoint,
        version: u64,
        release: &[u8],
        manifest: ManifestId,
    ) -> Vec<u8> {
        let Some(key) = &self.signer else {
            return Vec::new();
        };
        let claim = ReleaseClaim {
            kind,
            name: name.to_owned(),
            destination: destination_name(destination),
            version,
            release_digest: ReleaseClaim::digest_of(release),
            manifest_id: *manifest.as_bytes(),
        };
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Signed::sign(key, &Statement::Release(claim), now_ms).encode()
    }

    /// What to submit for a release this node publishes: signed (see
    /// [`TrustGate::sign`]), then sealed if `destination` is a group in
    /// `[[trust.seal]]` or a member of one. Sealing reads and writes the store, so it runs on a
    /// blocking thread.
    pub async fn prepare(
        &self,
        kind: Kind,
        name: &str,
        destination: &Endpoint,
        version: u64,
        release: Vec<u8>,
        manifest: ManifestId,
    ) -> Result<Prepared, String> {
        let signature = self.sign(kind, name, destination, version, &release, manifest);
        // A node that is a member of a sealed group gets what is sent to it
        // alone sealed too (an OCI refetch answer, say), under that key.
        let seal = match destination {
            Endpoint::Group(group) => self.seals.iter().find(|(s, _)| &s.group == group),
            Endpoint::Node(node) => self
                .seals
                .iter()
                .find(|(s, _)| s.members.iter().any(|m| m.node == node.0)),
        };
        let Some((config, key)) = seal else {
            return Ok(Prepared {
                release,
                manifest,
                signature,
                sealed_bytes: None,
            });
        };
        let (store, key, members) = (self.store.clone(), key.clone(), config.members.clone());
        let sealed = tokio::task::spawn_blocking(move || {
            let plain = store
                .get_manifest(manifest)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("manifest {manifest} is not in the store"))?;
            envelope::seal(&mut SharedStore(store), &key, &members, &release, &plain)
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("sealing for group {}: {e}", config.group))?;
        tracing::info!(
            group = %config.group, members = config.members.len(), %manifest,
            sealed = %sealed.manifest, sealed_bytes = sealed.sealed_bytes,
            "release sealed for its group"
        );
        Ok(Prepared {
            release: sealed.release,
            manifest: sealed.manifest,
            signature,
            sealed_bytes: Some(sealed.sealed_bytes),
        })
    }

    /// A delivered bundle's payload as its adapter reads it: opened with
    /// this node's key if it is sealed (every chunk opened and checked), as
    /// it is otherwise. Blocking.
    pub fn open_payload(&self, header: &BundleHeader) -> Result<Payload, Refusal> {
        if !envelope::is_sealed(&header.release) {
            return Ok(Payload {
                header: header.clone(),
                opened: None,
            });
        }
        let opened = envelope::open(
            &SharedStore(self.store.clone()),
            &self.node.node_id().0,
            &self.node.member_secret(),
            &header.release,
            header.manifest,
        )
        .map_err(|e| Refusal::Sealed(e.to_string()))?;
        let mut plain = header.clone();
        plain.release = opened.release().to_vec();
        plain.manifest = opened.manifest().id();
        Ok(Payload {
            header: plain,
            opened: Some(opened),
        })
    }

    /// Checks a delivered release of `kind` named `name` (its adapter's
    /// reading of `header.release`). `Ok(None)`: no policy, so unchecked.
    pub fn check(
        &self,
        header: &BundleHeader,
        kind: Kind,
        name: &str,
    ) -> Result<Option<Accepted>, Refusal> {
        if !self.enforced {
            return Ok(None);
        }
        let signed = if header.signature.is_empty() {
            None
        } else {
            Some(Signed::decode(&header.signature)?)
        };
        let destination = destination_name(&header.destination);
        let arrived = Arrived {
            kind,
            name,
            destination: &destination,
            release: &header.release,
            manifest_id: *header.manifest.as_bytes(),
        };
        self.trust
            .lock()
            .expect("trust lock")
            .check_release(signed.as_ref(), &arrived)
            .map(Some)
    }

    /// What an adapter's server asks before serving a repository of
    /// `kind` (None without a policy): the release applied for it must
    /// still be trusted as the keys and the policy stand now
    /// ([`Trust::check_serving`]). A refusal is logged and counted.
    pub fn serve_check(self: &Arc<Self>, kind: Kind) -> Option<ferry_oci::serve::ServeCheck> {
        if !self.enforced {
            return None;
        }
        let me = self.clone();
        Some(Arc::new(move |name: &str| {
            let checked = me
                .trust
                .lock()
                .expect("trust lock")
                .check_serving(kind, name);
            checked.map_err(|refusal| {
                SERVE_REFUSED.fetch_add(1, Ordering::Relaxed);
                let reason = refusal.to_string();
                tracing::warn!(%kind, name, %reason, "request refused: what is served here is no longer trusted");
                reason
            })
        }))
    }

    /// Writes `FILE.sig` beside the media file at `path`, whose BLAKE3 is
    /// `digest` and length `len` (hashed as it was written): this node's
    /// signature of them. Blocking.
    pub fn sign_media(&self, path: &Path, digest: &[u8; 32], len: u64) -> Result<(), String> {
        let text = self.node.sign_volume(digest, len).to_text();
        let sig = signature_path(path);
        crate::media::write_atomic(&sig, |out| {
            std::io::Write::write_all(out, text.as_bytes())
                .map_err(|e| format!("cannot write {}: {e}", sig.display()))
        })
    }

    /// The signature beside the media file at `path`, checked as far as it
    /// can be before the file is read. With `[media] require_signed` it
    /// must be there and made by a `[[peer]]`; without, an unsigned file or
    /// one signed by another node is imported with a warning. Either way
    /// [`MediaSignature::check`] then refuses a file its signature does not
    /// match.
    pub fn media_signature(&self, path: &Path) -> Result<MediaSignature, String> {
        let sig = signature_path(path);
        let signature = match std::fs::read_to_string(&sig) {
            Ok(text) => {
                VolumeSignature::from_text(&text).map_err(|e| format!("{}: {e}", sig.display()))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if self.require_signed_media {
                    return Err(format!(
                        "unsigned: there is no {}, and [media] require_signed is set",
                        sig.display()
                    ));
                }
                tracing::warn!(file = %path.display(), "importing an unsigned media file");
                return Ok(MediaSignature(None));
            }
            Err(e) => return Err(format!("cannot read {}: {e}", sig.display())),
        };
        let signer = ferry_core::NodeId(signature.node_id());
        if !self.admitted.contains(&signer) {
            if self.require_signed_media {
                return Err(format!(
                    "signed by node {signer}, which is not a [[peer]] of this node"
                ));
            }
            tracing::warn!(file = %path.display(), %signer, "importing a media file signed by a node that is not a peer");
        }
        Ok(MediaSignature(Some(signature)))
    }

    /// Remembers an applied release: older versions are refused from now on.
    pub fn record(&self, accepted: &Accepted) {
        self.update(|trust| trust.record_release(accepted));
    }

    /// Changes the trust state and keeps it.
    fn update(&self, change: impl FnOnce(&mut Trust)) {
        let json = {
            let mut trust = self.trust.lock().expect("trust lock");
            change(&mut trust);
            serde_json::to_vec_pretty(trust.state()).expect("trust state serialises")
        };
        crate::media::write_json(&self.state_path, &json, "the trust state");
    }

    /// Sends a signed key statement (as `ferry key rotate|revoke` write
    /// them) to `to` as an `Admin` bundle: every node it reaches that can
    /// check it takes it into its trust state.
    pub async fn publish_statement(
        &self,
        statement: Vec<u8>,
        to: Endpoint,
    ) -> Result<BundleId, String> {
        let signed = Signed::decode(&statement).map_err(|e| e.to_string())?;
        signed.verify().map_err(|e| e.to_string())?;
        let manifest = crate::admin::store_bytes(&self.store, "key statement", statement).await?;
        self.engine
            .submit(Submission {
                destination: to,
                lifetime: Duration::from_secs(365 * 24 * 3600),
                priority: Priority::Expedited,
                kind: PayloadKind::Admin,
                manifest,
                release: KEY_STATEMENT_RELEASE.to_vec(),
                signature: Vec::new(),
            })
            .await
    }

    /// Takes every key statement delivered here (now and before this
    /// start) into the trust state, or refuses it.
    pub fn watch_statements(self: &Arc<Self>, held: Vec<(BundleId, ManifestId)>) {
        let (to, mut delivered) = mpsc::unbounded_channel();
        for h in held {
            let _ = to.send(h);
        }
        self.engine.send(Input::Watch {
            kind: PayloadKind::Admin,
            to,
        });
        let me = self.clone();
        tokio::spawn(async move {
            while let Some((bundle, manifest)) = delivered.recv().await {
                let me = me.clone();
                let _ =
                    tokio::task::spawn_blocking(move || me.take_statement(bundle, manifest)).await;
            }
        });
    }

    fn take_statement(&self, bundle: BundleId, manifest: ManifestId) {
        let Some(header) = self
            .store
            .get(Cf::Bundles, &bundle.to_key())
            .ok()
            .flatten()
            .and_then(|b| BundleRecord::decode(&b))
            .map(|r| r.header)
        else {
            return;
        };
        if header.release != KEY_STATEMENT_RELEASE {
            return;
        }
        let read = (|| {
            let manifest = self
                .store
                .get_manifest(manifest)
                .map_err(|e| e.to_string())?
                .ok_or("its payload is not held")?;
            if manifest.total_length() > ferry_trust::statement::MAX_SIGNED_LEN as u64 {
                return Err("its payload is larger than a statement".to_owned());
            }
            let mut bytes = Vec::new();
            self.store
                .read_object(&manifest, &mut bytes)
                .map_err(|e| e.to_string())?;
            Ok(bytes)
        })();
        let checked = read
            .map_err(Refusal::Malformed)
            .and_then(|bytes| Signed::decode(&bytes).map_err(Refusal::from))
            .and_then(|signed| {
                self.trust
                    .lock()
                    .expect("trust lock")
                    .check_key_statement(&signed)
            });
        match checked {
            Ok(change) => {
                tracing::info!(%bundle, ?change, "key statement accepted");
                self.update(|trust| trust.record_key_change(&change));
            }
            Err(refusal) => self.refuse(&header, &refusal),
        }
    }

    /// Logs and counts a refusal and reports it to the bundle's source.
    pub fn refuse(&self, header: &BundleHeader, refusal: &Refusal) {
        REFUSED[class(refusal)].fetch_add(1, Ordering::Relaxed);
        let detail = refusal.to_string();
        tracing::warn!(
            bundle = %header.id,
            source = %header.id.source,
            kind = ?header.kind,
            reason = %detail,
            "release refused by the trust policy; not applied"
        );
        let bundle = header.id;
        self.engine
            .send(Input::WithEngine(Box::new(move |engine, now| {
                engine.report_refusal(now, bundle, &detail)
            })));
    }
}

/// What [`TrustGate::prepare`] returns: the bundle's release, manifest and
/// signature.
pub struct Prepared {
    pub release: Vec<u8>,
    pub manifest: ManifestId,
    pub signature: Vec<u8>,
    /// The sealed payload's length, if it was sealed.
    pub sealed_bytes: Option<u64>,
}

/// A delivered bundle as its adapter reads it ([`TrustGate::open_payload`]).
pub struct Payload {
    /// The header with the plaintext release and manifest id.
    pub header: BundleHeader,
    opened: Option<Opened>,
}

impl Payload {
    /// Whether the bundle travelled sealed.
    pub fn sealed(&self) -> bool {
        self.opened.is_some()
    }

    /// The plaintext payload's manifest.
    pub fn manifest(&self, store: &RocksStore) -> Result<Manifest, String> {
        match &self.opened {
            Some(opened) => Ok(opened.manifest().clone()),
            None => store
                .get_manifest(self.header.manifest)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("manifest {} is not held", self.header.manifest)),
        }
    }

    /// The opened sealed payload, if it travelled sealed: read it through
    /// [`Opened::view`].
    pub fn opened(&self) -> Option<&Opened> {
        self.opened.as_ref()
    }

    /// Writes the plaintext payload to `out`, every chunk verified.
    pub fn read_object<W: std::io::Write>(
        &self,
        store: &Arc<RocksStore>,
        out: W,
    ) -> Result<(), String> {
        let Some(opened) = &self.opened else {
            let manifest = self.manifest(store)?;
            return store.read_object(&manifest, out).map_err(|e| e.to_string());
        };
        let shared = SharedStore(store.clone());
        let view = opened.view(&shared);
        ferry_chunk::reassemble(
            opened.manifest(),
            |id| match view.get_chunk(id) {
                Ok(Some(bytes)) => Ok(bytes),
                Ok(None) => Err(format!("chunk {id} is not held")),
                Err(e) => Err(e.to_string()),
            },
            out,
        )
        .map_err(|e| e.to_string())
    }
}

/// The key of a `[[trust.seal]]` group: read from its file, or made and
/// written there (mode 0600) the first time.
fn group_key(seal: &SealConfig) -> Result<GroupKey, String> {
    use ferry_trust::keyfile::{self, KeyFileError};
    match keyfile::load_group_key(&seal.key) {
        Ok(key) => Ok(key),
        Err(KeyFileError::Missing { .. }) => {
            let key = GroupKey::generate().map_err(|e| e.to_string())?;
            if let Some(dir) = seal.key.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("trust.seal {}: {}: {e}", seal.group, dir.display()))?;
            }
            keyfile::save_group_key(&key, &seal.key)
                .map_err(|e| format!("trust.seal {}: {e}", seal.group))?;
            tracing::info!(group = %seal.group, path = %seal.key.display(), key = %hex::encode(key.id()), "made a new group key");
            Ok(key)
        }
        Err(e) => Err(format!("trust.seal {}: {e}", seal.group)),
    }
}

/// A media file's signature, before the file is read ([`TrustGate::media_signature`]).
pub struct MediaSignature(Option<VolumeSignature>);

impl MediaSignature {
    /// Checks the file as read (its BLAKE3 and length) and the writer its
    /// header names against the signature. Unsigned passes (the gate
    /// already refused it if signatures are required).
    pub fn check(
        &self,
        digest: &[u8; 32],
        len: u64,
        writer: ferry_core::NodeId,
    ) -> Result<(), String> {
        let Some(signature) = &self.0 else {
            return Ok(());
        };
        let signer = ferry_core::NodeId(signature.node_id());
        if !signature.verifies(digest, len) {
            return Err(format!(
                "tampered: the file is not what node {signer} signed; nothing was taken into custody"
            ));
        }
        if writer != signer {
            return Err(format!(
                "signed by node {signer}, but its header names node {writer} as its writer"
            ));
        }
        Ok(())
    }
}

/// Logs and counts a media file refused for its signature; the error to
/// return, naming the file.
pub fn media_refused(path: &Path, reason: String) -> String {
    MEDIA_REFUSED.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(file = %path.display(), %reason, "media file refused");
    format!("{}: {reason}", path.display())
}

/// `FILE.sig` for the media file `FILE`.
pub fn signature_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".sig");
    PathBuf::from(name)
}
