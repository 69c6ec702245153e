//! `Engine`: the sans-IO state machine. Inputs carry `now`; outputs are pulled.
//!
//! Owns sessions, offers, want-lists, chunk transfer and custody. Never
//! touches a socket, a file, the clock or an unseeded random generator.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use ferry_chunk::{Manifest, ManifestId};
use ferry_proto::v1::{self, frame::Body};
use ferry_proto::{
    Bytes, FrameCodec, FrameError, MANIFEST_INDEX, SUPPORTED_VERSIONS, Validate, negotiate,
};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::bundle::{BundleHeader, BundleRecord, PayloadKind};
use crate::config::EngineConfig;
use crate::event::{Event, Reason};
use crate::in_flight::InFlight;
use crate::mtu::{self, MIN_MTU, Reassembly};
use crate::peer_holds::PeerHolds;
use crate::pieces::PieceBuf;
use crate::store::{Batch, Cf, Store, StoreError};
use crate::types::{BundleId, Endpoint, Instant, LinkId, NodeId, Priority, transmission_time};

// Removable media: a child module, so it takes custody through the same
// private paths a link does.
#[path = "medium.rs"]
pub mod medium;

const SEQUENCE_KEY: &[u8] = b"sequence";
/// `Cf::Timers` keys: prefix, bundle key, next hop.
const TIMER_PREFIX: &[u8] = b"reoffer/";
/// Largest encoded manifest a peer may offer (about 1.8 M chunks).
pub const MAX_MANIFEST_LEN: u32 = 64 << 20;

/// Whether a bundle's manifest of `len` encoded bytes may travel: at most
/// [`MAX_MANIFEST_LEN`]. An empty payload's manifest encodes to nothing (0
/// bytes); such a bundle travels as its offer alone.
pub(crate) fn manifest_len_ok(len: u64) -> bool {
    len <= u64::from(MAX_MANIFEST_LEN)
}
/// Largest chunk a peer's manifest may name. Reassembly buffers are sized from
/// peer-supplied lengths, so both limits bound what a peer can make us allocate.
pub const MAX_CHUNK_LEN: u32 = 16 << 20;

/// What a driver knows of a link when its contact begins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkProperties {
    /// Largest frame the link carries, header included.
    pub mtu: u32,
    /// Round-trip time the engine plans its timers with.
    pub rtt: Duration,
    /// A reliable link (QUIC) never loses frames: no repair timers run.
    pub reliable: bool,
    /// The link's rate in bits per second, 0 if unknown.
    pub rate_bps: u64,
    /// Send a newly offered bundle's chunks at once, before the want-list
    /// returns (worth it on long round trips). The first want-list then only
    /// removes what the receiver already holds from what is still queued.
    pub pipeline: bool,
}

/// A contact starting or ending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Contact {
    Up(LinkProperties),
    Down,
}

/// One frame for the driver to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub link: LinkId,
    pub frame: Vec<u8>,
    /// Chunk data, which a driver may carry apart from control frames (on
    /// QUIC, unidirectional streams); everything else is control.
    pub bulk: bool,
}

/// Running totals, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Offers repeated because the next hop did not answer in time: custody
    /// retransmissions.
    pub reoffers: u64,
    /// Chunk bytes sent on speculation (pipelined ahead of any answer).
    pub speculative_bytes: u64,
    /// Chunk bytes sent because a receiver asked for them.
    pub asked_bytes: u64,
}

/// A bundle an application hands to the engine. Its manifest and every chunk
/// must already be in the store (e.g. put there by an ingest).
#[derive(Clone, Debug)]
pub struct Submission {
    pub destination: Endpoint,
    pub lifetime: Duration,
    pub priority: Priority,
    pub kind: PayloadKind,
    pub manifest: ManifestId,
    pub release: Vec<u8>,
    /// The publisher's signature of the release (a `ferry.v1.SignedStatement`),
    /// or empty. The engine carries it unread.
    pub signature: Vec<u8>,
}

impl Submission {
    /// A bundle of `manifest` for `destination`, at normal priority, with no
    /// release name or signature (set those fields after, if wanted).
    pub fn new(
        destination: Endpoint,
        kind: PayloadKind,
        manifest: ManifestId,
        lifetime: Duration,
    ) -> Self {
        Submission {
            destination,
            lifetime,
            priority: Priority::Normal,
            kind,
            manifest,
            release: Vec::new(),
            signature: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("manifest {0} is not in the store; ingest the payload first")]
    MissingManifest(ManifestId),
    #[error("chunk {index} of manifest {manifest} is not in the store; the payload is incomplete")]
    MissingChunk { manifest: ManifestId, index: usize },
    #[error("the bundle could not travel: {0}")]
    Invalid(ferry_proto::ValidationError),
    #[error(
        "manifest {manifest} encodes to {len} bytes; a bundle's manifest may have at most {MAX_MANIFEST_LEN} bytes"
    )]
    ManifestSize { manifest: ManifestId, len: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("bundle record {key} in the store is unreadable; the store may be corrupt")]
    BadRecord { key: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

struct Session {
    peer: NodeId,
}

struct Outbound {
    bundle: BundleId,
    priority: Priority,
    manifest: Option<Manifest>,
    /// Byte ranges still to send: chunk index → ranges [start, end).
    wanted: BTreeMap<u32, Vec<(u32, u32)>>,
    /// When to re-offer if nothing is heard; None while data is flowing.
    retry_at: Option<Instant>,
    backoff: Duration,
    /// Chunks were queued before any want-list: the first one filters them.
    pipelined: bool,
    /// Bytes sent on speculation (pipelined, before any answer to the
    /// offer): they count against the link's [`speculation_budget`] until
    /// the receiver answers (a new session starts with none).
    speculative: u64,
    /// Serial of the newest want-list acted on: an older or duplicated one
    /// would ask again for what was sent since.
    want_serial: u32,
    /// The chunk whose pieces are being sent, read once rather than once
    /// per piece.
    sending: Option<(u32, Vec<u8>)>,
    /// Chunks read for this handle before (a bit per index). The first read
    /// skips the hash check, since the receiver checks every chunk; a chunk
    /// asked for again (lost, altered in flight, or corrupt here) is read
    /// verified, which finds and drops a corrupt copy in this store.
    read_before: Vec<u64>,
    /// Pieces handed over whose round the receiver has not answered: a
    /// want-list naming them may predate their arrival, so it does not make
    /// them go again.
    in_flight: InFlight,
    /// Checkpoints sent on this handle (the last one's `checkpoint_serial`).
    checkpoints: u32,
    /// The checkpoint that ended the data handed over, and when that data
    /// was reckoned to have left: the delay of its answer (a want-list that
    /// has seen that checkpoint, or custody) is a sample for
    /// [`LinkState::answer_delay`]. An answer to a re-offer alone is not:
    /// the receiver counts checkpoints afresh from each offer.
    awaiting: Option<(u32, Instant)>,
}

struct Inbound {
    header: BundleHeader,
    from: NodeId,
    link: LinkId,
    handle: u32,
    manifest: Option<Manifest>,
    manifest_buf: Option<PieceBuf>,
    missing: BTreeSet<u32>,
    partial: BTreeMap<u32, PieceBuf>,
    received: u64,
    report_at: Option<Instant>,
    report_backoff: Duration,
    serial: u32,
    /// The highest `checkpoint_serial` received on `handle`.
    checkpoint_seen: u32,
}

struct LinkState {
    props: LinkProperties,
    up: bool,
    /// The peer, once its Hello arrived.
    session: Option<Session>,
    /// Our Hello's nonce for this contact; the peer's, once seen.
    nonce: u64,
    peer_nonce: u64,
    /// The peer echoed our nonce: it knows us, offers may flow.
    acked: bool,
    hello_due: Option<Instant>,
    hello_backoff: Duration,
    control: VecDeque<v1::Frame>,
    /// Encoded fragments of a control frame larger than the MTU, sent next.
    fragments: VecDeque<Vec<u8>>,
    next_message: u32,
    reassembly: Reassembly,
    out: BTreeMap<u32, Outbound>,
    next_handle: u32,
    in_handles: BTreeMap<u32, BundleId>,
    /// Custody signals waiting to be batched: (accepted, reason) → source → sequences.
    signals: BTreeMap<(bool, i32), BTreeMap<NodeId, BTreeSet<u64>>>,
    signal_due: Option<Instant>,
    /// When the bulk data handed to the link so far will have left it at
    /// the link's rate: a link that buffers (QUIC) may hold much of it long
    /// after the engine let go of it.
    drained_at: Instant,
    /// How long answers to checkpoints take after their data was reckoned
    /// to have left, smoothed, and the mean deviation (as RFC 6298 keeps a
    /// round-trip time); None before the first. Re-offers wait at least
    /// this long: a link that buffers and carries less than its nominal
    /// rate (QUIC's own overhead and repairs) answers later than its round
    /// trip says, and an early re-offer's answer asks for data that is
    /// still on its way.
    answer_delay: Option<(Duration, Duration)>,
}

/// The protocol engine of one node.
pub struct Engine<S: Store> {
    config: EngineConfig,
    store: S,
    rng: ChaCha8Rng,
    links: BTreeMap<LinkId, LinkState>,
    bundles: BTreeMap<BundleId, BundleRecord>,
    by_sequence: BTreeMap<(NodeId, u64), BundleId>,
    inbound: BTreeMap<BundleId, Inbound>,
    events: VecDeque<Event>,
    /// Status reports waiting for a session with the neighbour they go to.
    reports: BTreeMap<NodeId, VecDeque<v1::StatusReport>>,
    /// Re-offer backoff per (bundle, next hop), mirrored in `Cf::Timers` so
    /// a restart continues the backoff instead of starting it over.
    backoffs: BTreeMap<(BundleId, NodeId), Duration>,
    sequence: u64,
    next_link: u32,
    stats: EngineStats,
    /// When a planned contact ends: bundles waiting for it are routed again.
    replan_at: Option<Instant>,
    /// Manifests each peer is known to hold: their bundles are offered
    /// without the manifest inline and without chunks sent ahead.
    peer_holds: PeerHolds,
}

/// Status reports kept per neighbour while it is out of contact; older ones
/// are dropped first (reports are best effort, custody is not).
const MAX_QUEUED_REPORTS: usize = 1024;

impl<S: Store> Engine<S> {
    /// Opens the engine over `store`, restoring every bundle it holds.
    pub fn new(config: EngineConfig, store: S) -> Result<Self, OpenError> {
        let mut bundles = BTreeMap::new();
        let mut by_sequence = BTreeMap::new();
        for (key, value) in store.scan_prefix(Cf::Bundles, &[])? {
            let record = BundleRecord::decode(&value).ok_or_else(|| OpenError::BadRecord {
                key: hex::encode(&key),
            })?;
            by_sequence.insert(
                (record.header.id.source, record.header.id.sequence),
                record.header.id,
            );
            bundles.insert(record.header.id, record);
        }
        let sequence = store
            .get(Cf::Meta, SEQUENCE_KEY)?
            .and_then(|v| v.try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(0);
        let mut backoffs = BTreeMap::new();
        for (key, value) in store.scan_prefix(Cf::Timers, TIMER_PREFIX)? {
            match decode_timer(&key, &value) {
                Some((id, hop, backoff)) if bundles.contains_key(&id) => {
                    // Read from disk: bounded before any arithmetic on it.
                    backoffs.insert((id, hop), backoff.min(config.retransmit_max));
                }
                // A timer of a bundle we no longer hold, or unreadable: soft state, skip.
                _ => {}
            }
        }
        let rng = ChaCha8Rng::seed_from_u64(config.seed);
        // Contacts may have passed while the node was down: plan at once.
        let replan_at = (!config.contact_plan.is_empty()).then_some(Instant::ZERO);
        Ok(Self {
            replan_at,
            config,
            store,
            rng,
            links: BTreeMap::new(),
            bundles,
            by_sequence,
            inbound: BTreeMap::new(),
            events: VecDeque::new(),
            reports: BTreeMap::new(),
            backoffs,
            peer_holds: PeerHolds::default(),
            sequence,
            next_link: 0,
            stats: EngineStats::default(),
        })
    }

    pub fn node(&self) -> NodeId {
        self.config.node
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// The store, for an application adding a payload's chunks and manifest
    /// before it submits the bundle. Records the engine owns must not be touched.
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// Stops the engine, keeping only its store: what a restart starts from.
    pub fn into_store(self) -> S {
        self.store
    }

    /// Running totals since the engine started.
    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    /// Bundles this node holds a record of.
    pub fn bundles(&self) -> impl Iterator<Item = &BundleRecord> {
        self.bundles.values()
    }

    /// The bundle `id`, if this node holds it.
    pub fn bundle(&self, id: &BundleId) -> Option<&BundleRecord> {
        self.bundles.get(id)
    }

    /// Hands a bundle to the engine; this node takes custody of it durably.
    pub fn submit(
        &mut self,
        now: Instant,
        submission: Submission,
    ) -> Result<BundleId, SubmitError> {
        let ids = self.submit_all(now, [submission])?;
        Ok(ids[0])
    }

    /// Hands several bundles to the engine at once, all or nothing: every
    /// submission is checked first, then custody of all of them is recorded
    /// in one synced write. On a refusal nothing is recorded and the first
    /// reason is returned. Ids come in the submissions' order.
    pub fn submit_all(
        &mut self,
        now: Instant,
        submissions: impl IntoIterator<Item = Submission>,
    ) -> Result<Vec<BundleId>, SubmitError> {
        let mut sequence = self.sequence;
        let mut records = Vec::new();
        for submission in submissions {
            sequence += 1;
            records.push(self.custody_record(now, submission, sequence)?);
        }
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let mut batch = Batch::new();
        for record in &records {
            batch.put(
                Cf::Bundles,
                record.header.id.to_key().to_vec(),
                record.encode(),
            );
        }
        batch.put(Cf::Meta, SEQUENCE_KEY, sequence.to_be_bytes().to_vec());
        self.store.write_synced(&batch)?;
        self.sequence = sequence;
        let mut ids = Vec::with_capacity(records.len());
        for record in records {
            let id = record.header.id;
            self.events.push_back(Event::CustodyAccepted {
                bundle: id,
                from: None,
            });
            if record.delivered {
                self.events.push_back(Event::Delivered {
                    bundle: id,
                    manifest: record.header.manifest,
                });
            }
            self.index(record);
            self.offer_to_all(now, id);
            ids.push(id);
        }
        Ok(ids)
    }

    /// The record this node would keep for `submission` as bundle number
    /// `sequence`, once its manifest and every chunk are found in the store
    /// and its header would pass a peer's validation. Nothing is written.
    fn custody_record(
        &self,
        now: Instant,
        submission: Submission,
        sequence: u64,
    ) -> Result<BundleRecord, SubmitError> {
        let manifest = self
            .store
            .get_manifest(submission.manifest)?
            .ok_or(SubmitError::MissingManifest(submission.manifest))?;
        let manifest_len = manifest.encoded_len() as u64;
        if !manifest_len_ok(manifest_len) {
            return Err(SubmitError::ManifestSize {
                manifest: submission.manifest,
                len: manifest_len,
            });
        }
        for (index, entry) in manifest.entries().iter().enumerate() {
            if !self.store.has_chunk(entry.id)? {
                return Err(SubmitError::MissingChunk {
                    manifest: submission.manifest,
                    index,
                });
            }
        }
        let header = BundleHeader {
            id: BundleId {
                source: self.config.node,
                created_ms: now.as_millis(),
                sequence,
            },
            destination: submission.destination,
            lifetime: submission.lifetime,
            priority: submission.priority,
            kind: submission.kind,
            manifest: submission.manifest,
            manifest_len: manifest_len as u32,
            payload_len: manifest.total_length(),
            report_to: None,
            release: submission.release,
            signature: submission.signature,
            hop_count: 0,
        };
        // What a peer would refuse, this node does not take custody of.
        header.to_proto().validate().map_err(SubmitError::Invalid)?;
        let (pending_hops, delivered) = self.config.plan(
            &header.destination,
            now,
            header.payload_len,
            header.expires_at(),
        );
        Ok(BundleRecord {
            header,
            custody_from: None,
            pending_hops,
            delivered,
        })
    }

    /// A new link, known to the engine but down until its contact begins.
    pub fn add_link(&mut self) -> LinkId {
        let id = LinkId(self.next_link);
        self.next_link += 1;
        self.links.insert(
            id,
            LinkState {
                props: LinkProperties {
                    mtu: 1400,
                    rtt: Duration::from_millis(100),
                    reliable: false,
                    rate_bps: 0,
                    pipeline: false,
                },
                up: false,
                session: None,
                nonce: 0,
                peer_nonce: 0,
                acked: false,
                hello_due: None,
                hello_backoff: Duration::from_secs(1),
                control: VecDeque::new(),
                fragments: VecDeque::new(),
                next_message: 0,
                reassembly: Reassembly::default(),
                out: BTreeMap::new(),
                next_handle: 1,
                in_handles: BTreeMap::new(),
                signals: BTreeMap::new(),
                signal_due: None,
                drained_at: Instant(0),
                answer_delay: None,
            },
        );
        id
    }

    /// Replaces the static routes (e.g. a peer enrolled, or a leaf was told
    /// its routes). Every held bundle whose next hops change with them is
    /// routed again: hops the new routes add are offered it, hops they drop
    /// and that have not taken custody yet are no longer waited for. Hops
    /// that already took custody are not asked again, and bundles the
    /// change does not concern are left alone.
    pub fn set_routes(&mut self, now: Instant, routes: crate::config::Routes) {
        let before = self.config.clone();
        self.config.routes = routes;
        let me = self.config.node;
        let mut changed = Vec::new();
        for record in self.bundles.values() {
            let header = &record.header;
            if header.destination == Endpoint::Node(me) {
                continue;
            }
            let plan = |config: &EngineConfig| {
                let (mut hops, _) = config.plan(
                    &header.destination,
                    now,
                    header.payload_len,
                    header.expires_at(),
                );
                if let Some(from) = record.custody_from {
                    hops.remove(&from);
                }
                hops
            };
            let (old, new) = (plan(&before), plan(&self.config));
            if old == new {
                continue;
            }
            let mut hops = record.pending_hops.clone();
            let dropped: BTreeSet<NodeId> = old.difference(&new).copied().collect();
            hops.retain(|hop| !dropped.contains(hop));
            hops.extend(new.difference(&old).copied());
            if hops != record.pending_hops {
                changed.push((header.id, hops, dropped));
            }
        }
        for (id, hops, dropped) in changed {
            self.reroute(now, id, hops, &dropped);
        }
    }

    /// Gives bundle `id` the next hops `hops`, no longer waiting for the
    /// `dropped` ones (their re-offer timers and transfers end), keeps that
    /// in the store and offers the bundle where it can go now.
    fn reroute(
        &mut self,
        now: Instant,
        id: BundleId,
        hops: BTreeSet<NodeId>,
        dropped: &BTreeSet<NodeId>,
    ) {
        let Some(record) = self.bundles.get_mut(&id) else {
            return;
        };
        record.pending_hops = hops;
        let mut batch = Batch::new();
        batch.put(Cf::Bundles, id.to_key().to_vec(), record.encode());
        for hop in dropped {
            batch.delete(Cf::Timers, timer_key(id, *hop));
            self.backoffs.remove(&(id, *hop));
        }
        for state in self.links.values_mut() {
            if state
                .session
                .as_ref()
                .is_some_and(|s| dropped.contains(&s.peer))
            {
                state.out.retain(|_, out| out.bundle != id);
            }
        }
        if let Err(e) = self.store.write(&batch) {
            self.events.push_back(Event::StoreFailed {
                detail: e.to_string(),
            });
        }
        self.offer_to_all(now, id);
    }

    /// Replaces the groups this node belongs to. A held bundle for a group
    /// it has just joined is delivered here now.
    pub fn set_member_of(&mut self, member_of: BTreeSet<String>) {
        self.config.member_of = member_of;
        let joined: Vec<BundleId> = self
            .bundles
            .values()
            .filter(|r| !r.delivered)
            .filter(|r| match &r.header.destination {
                Endpoint::Group(name) => self.config.member_of.contains(name),
                Endpoint::Node(_) => false,
            })
            .map(|r| r.header.id)
            .collect();
        for id in joined {
            let record = self.bundles.get_mut(&id).expect("listed above");
            record.delivered = true;
            let mut batch = Batch::new();
            batch.put(Cf::Bundles, id.to_key().to_vec(), record.encode());
            if let Err(e) = self.store.write_synced(&batch) {
                record.delivered = false;
                self.events.push_back(Event::StoreFailed {
                    detail: e.to_string(),
                });
                continue;
            }
            self.events.push_back(Event::Delivered {
                bundle: id,
                manifest: record.header.manifest,
            });
        }
    }

    /// A contact begins or ends. At the start each side says Hello; at the
    /// end, per-session state goes, but partly received bundles are kept so
    /// the next contact resumes them.
    pub fn handle_contact(&mut self, now: Instant, link: LinkId, contact: Contact) {
        let retransmit = self.config.retransmit_slack;
        let Some(state) = self.links.get_mut(&link) else {
            return;
        };
        state.control.clear();
        state.fragments.clear();
        state.hello_due = None;
        match contact {
            Contact::Up(mut props) => {
                if props.mtu < MIN_MTU {
                    tracing::warn!(
                        ?link,
                        mtu = props.mtu,
                        "MTU below {MIN_MTU}; using {MIN_MTU}"
                    );
                    props.mtu = MIN_MTU;
                }
                state.up = true;
                state.hello_backoff = props.rtt * 2 + retransmit;
                state.props = props;
                state.drained_at = now;
                // A new contact may take another path: learn its delay afresh.
                state.answer_delay = None;
            }
            Contact::Down => {
                state.up = false;
                if !self.config.contact_plan.is_empty() {
                    // Bundles may have waited for this contact in vain.
                    self.replan_at = Some(now);
                }
            }
        }
        self.restart_session(now, link);
        for inbound in self.inbound.values_mut() {
            if inbound.link == link {
                inbound.report_at = None;
            }
        }
    }

    /// Sends our Hello, echoing the peer's nonce if we have seen it, and
    /// arms the timer that repeats it until the peer echoes ours.
    fn send_hello(&mut self, now: Instant, link: LinkId) {
        let node = self.config.node;
        let agent = self.config.agent.clone();
        let Some(state) = self.links.get_mut(&link) else {
            return;
        };
        let hello = v1::Hello {
            min_version: *SUPPORTED_VERSIONS.start(),
            max_version: *SUPPORTED_VERSIONS.end(),
            node_id: node.0.to_vec(),
            capabilities: vec![v1::Capability::PieceRepair as i32],
            max_frame_size: state.props.mtu.max(ferry_proto::DEFAULT_MAX_FRAME as u32),
            session_nonce: state.nonce,
            agent,
            peer_nonce: state.peer_nonce,
            acked: state.acked,
        };
        state.control.push_back(frame(Body::Hello(hello)));
        if !state.acked && !state.props.reliable {
            state.hello_due = Some(now + state.hello_backoff);
        }
    }

    /// A frame arrived on `link`. A malformed frame or a protocol violation
    /// closes that session with a logged reason and changes nothing stored.
    pub fn handle_frame(&mut self, now: Instant, link: LinkId, bytes: &[u8]) {
        if self.links.get(&link).is_some_and(|state| state.up) {
            let frame = FrameCodec::new(ferry_proto::HARD_MAX_FRAME).decode_exact(bytes);
            self.handle_decoded(now, link, frame);
        }
    }

    /// [`handle_frame`](Self::handle_frame) for a frame in a shared buffer:
    /// a whole chunk in it is checked and stored without being copied out.
    pub fn handle_shared_frame(&mut self, now: Instant, link: LinkId, bytes: &Bytes) {
        if self.links.get(&link).is_some_and(|state| state.up) {
            let frame = FrameCodec::new(ferry_proto::HARD_MAX_FRAME).decode_exact_shared(bytes);
            self.handle_decoded(now, link, frame);
        }
    }

    fn handle_decoded(&mut self, now: Instant, link: LinkId, frame: Result<v1::Frame, FrameError>) {
        let frame = match frame {
            Ok(frame) => frame,
            Err(e) => {
                return self.close(now, link, v1::CloseReason::MalformedFrame, &malformed(&e));
            }
        };
        let Some(mut body) = frame.body else { return };
        if let Body::Fragment(part) = &body {
            let state = self.links.get_mut(&link).expect("checked above");
            let whole = match state.reassembly.insert(part) {
                Ok(Some(whole)) => whole,
                Ok(None) => return,
                Err(violation) => {
                    return self.close(now, link, v1::CloseReason::MalformedFrame, &violation);
                }
            };
            let inner = FrameCodec::new(ferry_proto::MAX_FRAGMENTED_FRAME as usize)
                .decode_exact(&whole)
                .map_err(|e| malformed(&e))
                .and_then(|f| match f.body {
                    Some(Body::Fragment(_)) => Err("a fragment inside a fragment".to_string()),
                    Some(body) => Ok(body),
                    None => Err("an empty fragmented frame".to_string()),
                });
            match inner {
                Ok(inner) => body = inner,
                Err(violation) => {
                    return self.close(now, link, v1::CloseReason::MalformedFrame, &violation);
                }
            }
        }
        tracing::trace!(node = %self.config.node, ?link, kind = body_kind(&body), "frame in");
        if let Err(violation) = self.dispatch(now, link, body) {
            self.close(now, link, v1::CloseReason::MalformedFrame, &violation);
        }
    }

    fn dispatch(&mut self, now: Instant, link: LinkId, body: Body) -> Result<(), String> {
        let state = self.links.get_mut(&link).expect("link checked by caller");
        let peer = match (&body, &state.session) {
            (Body::Hello(_), _) => None,
            (Body::Close(_), _) => None,
            (_, Some(session)) => Some(session.peer),
            // The peer's Hello may have been lost: ignore, its timers repeat.
            (_, None) => return Ok(()),
        };
        match body {
            Body::Hello(hello) => self.on_hello(now, link, hello),
            Body::Close(close) => {
                // Only a Close from the current session ends it; a stale or
                // duplicated one arriving after a fresh handshake must not.
                if state.session.is_some() {
                    self.events.push_back(Event::SessionClosed {
                        link,
                        reason: format!("peer closed: {}", close.detail),
                    });
                    self.restart_session(now, link);
                }
                Ok(())
            }
            Body::Offer(offer) => {
                let peer = peer.expect("session checked");
                for offered in offer.bundles {
                    self.on_offer(now, link, peer, offered)?;
                }
                Ok(())
            }
            Body::Want(want) => self.on_want(now, link, peer.expect("session checked"), want),
            Body::Chunk(chunk) => self.on_chunk(now, link, chunk),
            Body::Custody(signal) => {
                self.on_custody(now, peer.expect("session checked"), signal);
                Ok(())
            }
            Body::Status(report) => {
                self.on_status(now, report);
                Ok(())
            }
            Body::Keepalive(_) => Ok(()),
            Body::Fragment(_) => unreachable!("reassembled by handle_frame"),
        }
    }

    fn on_hello(&mut self, now: Instant, link: LinkId, hello: v1::Hello) -> Result<(), String> {
        let ours = v1::Hello {
            min_version: *SUPPORTED_VERSIONS.start(),
            max_version: *SUPPORTED_VERSIONS.end(),
            max_frame_size: u32::MAX,
            ..Default::default()
        };
        negotiate(&ours, &hello).map_err(|e| e.to_string())?;
        let peer = NodeId::from_slice(&hello.node_id).ok_or("bad node id")?;
        if peer == self.config.node {
            return Err("peer claims our own node id".into());
        }
        let state = self.links.get_mut(&link).expect("link checked by caller");
        if state.session.as_ref().is_some_and(|s| s.peer != peer) {
            return Err("peer changed its node id within a contact".into());
        }
        let new_peer_session = state.peer_nonce != hello.session_nonce;
        if new_peer_session && state.peer_nonce != 0 {
            // The peer restarted: what it had in flight with us is gone.
            state.out.clear();
            state.in_handles.clear();
        }
        state.peer_nonce = hello.session_nonce;
        state.session = Some(Session { peer });
        let was_ready = state.acked;
        if hello.peer_nonce == state.nonce {
            state.acked = true;
            state.hello_due = None;
        }
        let now_ready = state.acked;
        if !hello.acked || hello.peer_nonce != state.nonce {
            self.send_hello(now, link);
        }
        if now_ready {
            self.flush_reports(peer);
        }
        if now_ready && (!was_ready || new_peer_session) {
            let ids: Vec<BundleId> = self
                .bundles
                .values()
                .filter(|r| r.pending_hops.contains(&peer))
                .map(|r| r.header.id)
                .collect();
            for id in ids {
                self.offer_on(now, link, id);
            }
        }
        Ok(())
    }

    fn on_offer(
        &mut self,
        now: Instant,
        link: LinkId,
        peer: NodeId,
        offered: v1::OfferedBundle,
    ) -> Result<(), String> {
        let mut proto = offered.header.clone().ok_or("offer without header")?;
        if proto.manifest_id.is_empty() {
            // Left out by the sender: the manifest is inline.
            proto.manifest_id = ManifestId::of_encoding(&offered.manifest)
                .as_bytes()
                .to_vec();
        }
        let header = BundleHeader::from_proto(&proto).ok_or("offer with an invalid header")?;
        if !manifest_len_ok(header.manifest_len.into()) {
            return Err(format!(
                "offer with a manifest of {} bytes",
                header.manifest_len
            ));
        }
        // The one manifest that encodes to nothing is an empty payload's.
        let empty = header.manifest_len == 0;
        if empty && header.manifest != ManifestId::of_encoding(&[]) {
            return Err("offer with a 0-byte manifest of another id".into());
        }
        let id = header.id;
        let refuse = |engine: &mut Self, reason: Reason, wire: v1::RefusalReason| {
            let want = v1::WantList {
                handle: offered.handle,
                refused: wire as i32,
                ..Default::default()
            };
            engine.queue_control(link, Body::Want(want));
            if reason != Reason::Redundant {
                engine
                    .events
                    .push_back(Event::CustodyRefused { bundle: id, reason });
            }
        };
        if self.bundles.contains_key(&id) {
            refuse(self, Reason::Redundant, v1::RefusalReason::Redundant);
            return Ok(());
        }
        if header.expires_at() <= now {
            refuse(self, Reason::Expired, v1::RefusalReason::Expired);
            return Ok(());
        }
        if header.hop_count >= self.config.max_hops {
            refuse(self, Reason::HopLimit, v1::RefusalReason::NoRoute);
            return Ok(());
        }
        let usage = self.store.usage();
        if usage
            .quota
            .is_some_and(|quota| usage.bytes.saturating_add(header.payload_len) > quota)
        {
            refuse(
                self,
                Reason::DepletedStorage,
                v1::RefusalReason::DepletedStorage,
            );
            return Ok(());
        }
        let state = self.links.get_mut(&link).expect("link checked by caller");
        state.in_handles.insert(offered.handle, id);
        let rtt = state.props.rtt;
        let inbound = self.inbound.entry(id).or_insert_with(|| Inbound {
            header: header.clone(),
            from: peer,
            link,
            handle: offered.handle,
            manifest: None,
            manifest_buf: None,
            missing: BTreeSet::new(),
            partial: BTreeMap::new(),
            received: 0,
            report_at: None,
            report_backoff: rtt,
            serial: 0,
            checkpoint_seen: 0,
        });
        // An offer (new, repeated, or from a restarted sender reusing the
        // handle) starts the checkpoint count afresh.
        inbound.checkpoint_seen = 0;
        inbound.from = peer;
        inbound.link = link;
        inbound.handle = offered.handle;
        if inbound.manifest.is_none() {
            let known = match self.store.get_manifest(header.manifest) {
                Ok(found) => found,
                Err(e) => {
                    self.events.push_back(Event::StoreFailed {
                        detail: e.to_string(),
                    });
                    None
                }
            };
            let manifest = known.or_else(|| {
                let inline: &[u8] = if empty { &[] } else { &offered.manifest };
                (ManifestId::of_encoding(inline) == header.manifest)
                    .then(|| Manifest::decode(inline).ok())
                    .flatten()
            });
            if let Some(manifest) = manifest
                && let Err(e) = self.set_manifest(id, manifest)
            {
                self.inbound.remove(&id);
                return Err(e);
            }
        }
        self.report(now, id);
        Ok(())
    }

    /// Records the manifest of an inbound bundle and works out its missing chunks.
    fn set_manifest(&mut self, id: BundleId, manifest: Manifest) -> Result<(), String> {
        let inbound = self.inbound.get_mut(&id).expect("inbound exists");
        if manifest.total_length() != inbound.header.payload_len
            || manifest.encoded_len() as u64 != u64::from(inbound.header.manifest_len)
        {
            return Err("manifest length disagrees with the header".into());
        }
        if let Some(entry) = manifest.entries().iter().find(|e| e.len > MAX_CHUNK_LEN) {
            return Err(format!("manifest names a chunk of {} bytes", entry.len));
        }
        let mut missing = BTreeSet::new();
        for (index, entry) in manifest.entries().iter().enumerate() {
            match self.store.chunk_len(entry.id) {
                Ok(Some(len)) if len == entry.len => {}
                // A chunk's id fixes its length: a manifest that says
                // otherwise could never be reassembled, so no custody.
                Ok(Some(len)) => {
                    return Err(format!(
                        "manifest gives chunk {index} ({}) {} bytes; that chunk has {len}",
                        entry.id, entry.len
                    ));
                }
                Ok(None) => {
                    missing.insert(index as u32);
                }
                Err(e) => {
                    self.events.push_back(Event::StoreFailed {
                        detail: e.to_string(),
                    });
                    missing.insert(index as u32);
                }
            }
        }
        inbound.received = manifest.total_length()
            - missing
                .iter()
                .map(|&i| u64::from(manifest.entries()[i as usize].len))
                .sum::<u64>();
        inbound.missing = missing;
        inbound.manifest = Some(manifest);
        inbound.manifest_buf = None;
        Ok(())
    }

    /// Tells the sender what is still missing of an inbound bundle, or takes
    /// custody if nothing is.
    fn report(&mut self, now: Instant, id: BundleId) {
        let Some(inbound) = self.inbound.get_mut(&id) else {
            return;
        };
        if inbound.manifest.is_some() && inbound.missing.is_empty() {
            self.complete(now, id);
            return;
        }
        let Some(state) = self.links.get_mut(&inbound.link) else {
            return;
        };
        if !state.up || state.session.is_none() {
            return;
        }
        inbound.serial += 1;
        let mut want = v1::WantList {
            handle: inbound.handle,
            report_serial: inbound.serial,
            checkpoint_seen: inbound.checkpoint_seen,
            ..Default::default()
        };
        match &inbound.manifest {
            None => {
                let gaps = inbound
                    .manifest_buf
                    .as_ref()
                    .map_or(vec![(0, inbound.header.manifest_len)], PieceBuf::missing);
                want.pieces.push(piece_want(MANIFEST_INDEX, &gaps));
            }
            Some(_) => {
                let whole: Vec<u32> = inbound
                    .missing
                    .iter()
                    .copied()
                    .filter(|i| !inbound.partial.contains_key(i))
                    .collect();
                encode_indexes(&whole, &mut want);
                for (&index, buf) in &inbound.partial {
                    want.pieces.push(piece_want(index, &buf.missing()));
                }
            }
        }
        // Keep the report within the link's frame size; the rest is asked next round.
        mtu::trim_want(&mut want, state.props.mtu as usize);
        state.control.push_back(frame(Body::Want(want)));
        if !state.props.reliable {
            inbound.report_at = Some(now + inbound.report_backoff + state.props.rtt);
        }
    }

    fn on_want(
        &mut self,
        now: Instant,
        link: LinkId,
        peer: NodeId,
        want: v1::WantList,
    ) -> Result<(), String> {
        let retransmit = self.retransmit_timeout(link);
        let state = self.links.get_mut(&link).expect("link checked by caller");
        let Some(out) = state.out.get_mut(&want.handle) else {
            return Ok(());
        };
        // The receiver answered: what was sent on speculation has its verdict.
        out.speculative = 0;
        let bundle = out.bundle;
        if want.refused != 0 {
            match v1::RefusalReason::try_from(want.refused) {
                Ok(v1::RefusalReason::Redundant) => self.hop_accepted(bundle, peer, None),
                _ => {
                    // Refused for now (full, expired, no route): try again later.
                    out.wanted.clear();
                    out.backoff = (out.backoff * 2).min(self.config.retransmit_max);
                    out.retry_at = Some(now + out.backoff);
                }
            }
            return Ok(());
        }
        if want.complete {
            out.wanted.clear();
            out.retry_at = Some(now + retransmit);
            return Ok(());
        }
        if want.report_serial <= out.want_serial {
            return Ok(());
        }
        out.want_serial = want.report_serial;
        if let Some((serial, left)) = out.awaiting
            && want.checkpoint_seen >= serial
        {
            out.awaiting = None;
            add_sample(&mut state.answer_delay, now.saturating_since(left));
        }
        if out.manifest.is_none() {
            let header = &self
                .bundles
                .get(&bundle)
                .ok_or("want for an unknown bundle")?
                .header;
            match self.store.get_manifest(header.manifest) {
                Ok(Some(manifest)) => out.manifest = Some(manifest),
                Ok(None) | Err(_) => {
                    self.events.push_back(Event::StoreFailed {
                        detail: format!("manifest of {bundle} unreadable"),
                    });
                    return Ok(());
                }
            }
        }
        let manifest = out.manifest.as_ref().expect("loaded above");
        let count = manifest.chunk_count() as u32;
        // Pipelined chunks are already queued or in flight: this first
        // want-list only drops what the receiver holds, adding nothing.
        let filter = std::mem::take(&mut out.pipelined);
        let queued = if filter {
            std::mem::take(&mut out.wanted)
        } else {
            BTreeMap::new()
        };
        let manifest_len = self
            .bundles
            .get(&bundle)
            .map_or(0, |r| r.header.manifest_len);
        let len_of = |index: u32| -> Option<u32> {
            if index == MANIFEST_INDEX {
                Some(manifest_len)
            } else {
                manifest.entries().get(index as usize).map(|e| e.len)
            }
        };
        // Pieces up to a checkpoint the receiver has seen had their chance;
        // the others are still on their way, not lost.
        out.in_flight.forget(want.checkpoint_seen, now);
        let in_flight = out.in_flight.index();
        let mut add = |index: u32, start: u32, end: u32| -> Result<(), String> {
            let len =
                len_of(index).ok_or_else(|| format!("want names chunk {index} of {count}"))?;
            let gaps = in_flight.subtract(index, vec![(start, end.min(len))]);
            out.wanted.entry(index).or_default().extend(gaps);
            Ok(())
        };
        for range in &want.ranges {
            if range.end > count {
                return Err(format!(
                    "want range {}..{} past {count} chunks",
                    range.start, range.end
                ));
            }
            for index in range.start..range.end {
                add(index, 0, u32::MAX)?;
            }
        }
        for (byte, bits) in want.bitmap.iter().enumerate() {
            for bit in 0..8 {
                if bits & (1 << bit) != 0 {
                    add(byte as u32 * 8 + bit, 0, u32::MAX)?;
                }
            }
        }
        for piece in &want.pieces {
            for range in &piece.ranges {
                add(
                    piece.chunk_index,
                    range.offset,
                    range.offset.saturating_add(range.length),
                )?;
            }
        }
        if filter {
            // Keep only queued ranges the receiver still wants, and at least
            // whatever it asked for of the manifest.
            let wanted = std::mem::take(&mut out.wanted);
            out.wanted = queued
                .into_iter()
                .filter(|(index, _)| wanted.contains_key(index))
                .collect();
        }
        out.wanted.retain(|_, ranges| {
            normalise(ranges);
            !ranges.is_empty()
        });
        // Data flowing: the checkpoint at its end asks for the next report.
        // Nothing to send: ask again after a while if the receiver is silent.
        out.retry_at = out.wanted.is_empty().then_some(now + retransmit);
        out.backoff = retransmit;
        Ok(())
    }

    fn on_chunk(&mut self, now: Instant, link: LinkId, chunk: v1::ChunkData) -> Result<(), String> {
        let state = self.links.get_mut(&link).expect("link checked by caller");
        let Some(&id) = state.in_handles.get(&chunk.handle) else {
            return Ok(());
        };
        let Some(inbound) = self.inbound.get_mut(&id) else {
            return Ok(());
        };
        inbound.report_backoff = state.props.rtt;
        if !state.props.reliable {
            inbound.report_at = Some(now + inbound.report_backoff * 2 + state.props.rtt);
        }
        if chunk.checkpoint {
            inbound.checkpoint_seen = inbound.checkpoint_seen.max(chunk.checkpoint_serial);
        }
        if chunk.chunk_index == MANIFEST_INDEX {
            if inbound.manifest.is_none() {
                if chunk.chunk_length != inbound.header.manifest_len {
                    return Err("manifest piece with the wrong length".into());
                }
                let buf = inbound
                    .manifest_buf
                    .get_or_insert_with(|| PieceBuf::new(chunk.chunk_length));
                if !buf.insert(chunk.offset, &chunk.data) {
                    return Err("manifest piece out of bounds".into());
                }
                if buf.is_complete() {
                    let bytes = inbound.manifest_buf.take().expect("present").into_bytes();
                    let decoded = (ManifestId::of_encoding(&bytes) == inbound.header.manifest)
                        .then(|| Manifest::decode(&bytes).ok())
                        .flatten();
                    match decoded {
                        Some(manifest) => {
                            if let Err(e) = self.set_manifest(id, manifest) {
                                self.inbound.remove(&id);
                                return Err(e);
                            }
                            self.report(now, id);
                            return Ok(());
                        }
                        // Corrupt in transit: ask for it again.
                        None => inbound.manifest_buf = None,
                    }
                }
            }
        } else {
            let Some(manifest) = &inbound.manifest else {
                return Ok(());
            };
            let entry = *manifest
                .entries()
                .get(chunk.chunk_index as usize)
                .ok_or_else(|| format!("chunk index {} past the manifest", chunk.chunk_index))?;
            if chunk.chunk_length != entry.len {
                return Err(format!(
                    "chunk {} length {} != {}",
                    chunk.chunk_index, chunk.chunk_length, entry.len
                ));
            }
            if inbound.missing.contains(&chunk.chunk_index) {
                let whole = chunk.offset == 0
                    && chunk.data.len() == entry.len as usize
                    && !inbound.partial.contains_key(&chunk.chunk_index);
                let complete = if whole {
                    // The whole chunk in one frame: no reassembly buffer.
                    inbound.received += u64::from(entry.len);
                    Some(chunk.data)
                } else {
                    let buf = inbound
                        .partial
                        .entry(chunk.chunk_index)
                        .or_insert_with(|| PieceBuf::new(entry.len));
                    let before = buf.received();
                    if !buf.insert(chunk.offset, &chunk.data) {
                        return Err("chunk piece out of bounds".into());
                    }
                    inbound.received += buf.received() - before;
                    buf.is_complete().then(|| {
                        let buf = inbound.partial.remove(&chunk.chunk_index);
                        Bytes::from(buf.expect("present").into_bytes())
                    })
                };
                if let Some(bytes) = complete {
                    match self.store.put_chunk_checked(entry.id, &bytes) {
                        Ok(_) => {
                            inbound.missing.remove(&chunk.chunk_index);
                        }
                        Err(StoreError::ChunkMismatch { .. }) => {
                            // Corrupt in transit: discarded, wanted again.
                            inbound.received -= u64::from(entry.len);
                        }
                        Err(e) => {
                            inbound.received -= u64::from(entry.len);
                            self.events.push_back(Event::StoreFailed {
                                detail: e.to_string(),
                            });
                        }
                    }
                    self.events.push_back(Event::Progress {
                        bundle: id,
                        received: inbound.received,
                        total: inbound.header.payload_len,
                    });
                }
            }
        }
        let done = inbound.manifest.is_some() && inbound.missing.is_empty();
        if done || chunk.checkpoint {
            self.report(now, id);
        }
        Ok(())
    }

    /// Every chunk of an inbound bundle is stored: take custody durably, then
    /// tell the sender, deliver, and forward.
    fn complete(&mut self, now: Instant, id: BundleId) {
        let Some(inbound) = self.inbound.remove(&id) else {
            return;
        };
        let manifest = inbound
            .manifest
            .as_ref()
            .expect("complete implies a manifest");
        let mut header = inbound.header.clone();
        header.hop_count += 1;
        let (mut hops, local) = self.config.plan(
            &header.destination,
            now,
            header.payload_len,
            header.expires_at(),
        );
        hops.remove(&inbound.from);
        let record = BundleRecord {
            header,
            custody_from: Some(inbound.from),
            pending_hops: hops,
            delivered: local,
        };
        let written = self.store.put_manifest(manifest).and_then(|_| {
            let mut batch = Batch::new();
            batch.put(Cf::Bundles, id.to_key().to_vec(), record.encode());
            self.store.write_synced(&batch)
        });
        if let Err(e) = written {
            let reason = match e {
                StoreError::Full { .. } => v1::RefusalReason::DepletedStorage,
                _ => v1::RefusalReason::Unspecified,
            };
            self.events.push_back(Event::StoreFailed {
                detail: e.to_string(),
            });
            if reason == v1::RefusalReason::DepletedStorage {
                self.events.push_back(Event::CustodyRefused {
                    bundle: id,
                    reason: Reason::DepletedStorage,
                });
                self.queue_signal(now, inbound.link, id, false, reason as i32);
            }
            return;
        }
        self.events.push_back(Event::CustodyAccepted {
            bundle: id,
            from: Some(inbound.from),
        });
        if local {
            self.events.push_back(Event::Delivered {
                bundle: id,
                manifest: record.header.manifest,
            });
        }
        self.queue_signal(now, inbound.link, id, true, 0);
        self.index(record);
        self.offer_to_all(now, id);
    }

    fn queue_signal(
        &mut self,
        now: Instant,
        link: LinkId,
        id: BundleId,
        accepted: bool,
        reason: i32,
    ) {
        let delay = self.config.custody_signal_delay;
        let Some(state) = self.links.get_mut(&link) else {
            return;
        };
        state
            .signals
            .entry((accepted, reason))
            .or_default()
            .entry(id.source)
            .or_default()
            .insert(id.sequence);
        state.signal_due.get_or_insert(now + delay);
    }

    fn on_custody(&mut self, now: Instant, peer: NodeId, signal: v1::CustodySignal) {
        let accepted = signal.accepted || signal.reason == v1::RefusalReason::Redundant as i32;
        let mut ids = Vec::new();
        for range in &signal.ranges {
            // No source: bundles this node made.
            let source = if range.source.is_empty() {
                self.config.node
            } else if let Some(source) = NodeId::from_slice(&range.source) {
                source
            } else {
                continue;
            };
            ids.extend(
                self.by_sequence
                    .range((source, range.first)..=(source, range.last))
                    .map(|(_, id)| *id),
            );
        }
        for id in ids {
            if accepted {
                self.hop_accepted(id, peer, Some(now));
            }
        }
    }

    /// `peer` holds `id` now (it took custody, or already had it). Custody
    /// `answered_at` a time answers the data handed over for it: how long
    /// after that data was reckoned to have left is a sample of the link's
    /// answer delay.
    fn hop_accepted(&mut self, id: BundleId, peer: NodeId, answered_at: Option<Instant>) {
        for state in self.links.values_mut() {
            if state.session.as_ref().is_some_and(|s| s.peer == peer) {
                let delay = &mut state.answer_delay;
                state.out.retain(|_, out| {
                    if out.bundle != id {
                        return true;
                    }
                    if let (Some(now), Some((_, left))) = (answered_at, out.awaiting) {
                        add_sample(delay, now.saturating_since(left));
                    }
                    false
                });
            }
        }
        let Some(record) = self.bundles.get_mut(&id) else {
            return;
        };
        self.peer_holds.insert(peer, record.header.manifest);
        if !record.pending_hops.remove(&peer) {
            return;
        }
        let mut batch = Batch::new();
        batch.put(Cf::Bundles, id.to_key().to_vec(), record.encode());
        batch.delete(Cf::Timers, timer_key(id, peer));
        self.backoffs.remove(&(id, peer));
        if let Err(e) = self.store.write(&batch) {
            self.events.push_back(Event::StoreFailed {
                detail: e.to_string(),
            });
        }
        if record.pending_hops.is_empty() {
            self.events.push_back(Event::CustodyReleased { bundle: id });
        }
    }

    fn index(&mut self, record: BundleRecord) {
        self.by_sequence.insert(
            (record.header.id.source, record.header.id.sequence),
            record.header.id,
        );
        self.bundles.insert(record.header.id, record);
    }

    fn offer_to_all(&mut self, now: Instant, id: BundleId) {
        let Some(record) = self.bundles.get(&id) else {
            return;
        };
        let links: Vec<LinkId> = self
            .links
            .iter()
            .filter(|(_, s)| {
                s.up && s.acked
                    && s.session
                        .as_ref()
                        .is_some_and(|p| record.pending_hops.contains(&p.peer))
            })
            .map(|(l, _)| *l)
            .collect();
        for link in links {
            self.offer_on(now, link, id);
        }
    }

    /// Offers a bundle on a link (again, if it was offered before).
    fn offer_on(&mut self, now: Instant, link: LinkId, id: BundleId) {
        let peer = self
            .links
            .get(&link)
            .and_then(|s| s.session.as_ref())
            .map(|s| s.peer);
        let retransmit = peer
            .and_then(|peer| self.backoffs.get(&(id, peer)).copied())
            .unwrap_or_else(|| self.retransmit_timeout(link));
        let Some(record) = self.bundles.get(&id) else {
            return;
        };
        // The peer most likely needs nothing for it: no manifest inline, no
        // chunks ahead of its answer.
        let held = peer.is_some_and(|p| self.peer_holds.contains(p, record.header.manifest));
        let Some(state) = self.links.get_mut(&link) else {
            return;
        };
        let handle = match state.out.iter().find(|(_, o)| o.bundle == id) {
            Some((&handle, _)) => handle,
            None => {
                let handle = state.next_handle;
                state.next_handle += 1;
                let mut out = Outbound {
                    bundle: id,
                    priority: record.header.priority,
                    manifest: None,
                    wanted: BTreeMap::new(),
                    retry_at: None,
                    backoff: retransmit,
                    pipelined: false,
                    speculative: 0,
                    want_serial: 0,
                    sending: None,
                    read_before: Vec::new(),
                    in_flight: InFlight::new(state.props.reliable, in_flight_window(&state.props)),
                    awaiting: None,
                    checkpoints: 0,
                };
                if state.props.pipeline
                    && !held
                    && let Ok(Some(manifest)) = self.store.get_manifest(record.header.manifest)
                {
                    // An empty manifest travels in the offer, always.
                    if record.header.manifest_len > 0 {
                        out.wanted
                            .insert(MANIFEST_INDEX, vec![(0, record.header.manifest_len)]);
                    }
                    for (index, entry) in manifest.entries().iter().enumerate() {
                        out.wanted.insert(index as u32, vec![(0, entry.len)]);
                    }
                    out.manifest = Some(manifest);
                    out.pipelined = true;
                }
                state.out.insert(handle, out);
                handle
            }
        };
        let out = state.out.get_mut(&handle).expect("inserted above");
        if let Some(peer) = peer {
            let mut batch = Batch::new();
            batch.put(
                Cf::Timers,
                timer_key(id, peer),
                u64::try_from(out.backoff.as_millis())
                    .unwrap_or(u64::MAX)
                    .to_be_bytes()
                    .to_vec(),
            );
            self.backoffs.insert((id, peer), out.backoff);
            // Soft state: losing it in a crash only restarts the backoff.
            if let Err(e) = self.store.write(&batch) {
                self.events.push_back(Event::StoreFailed {
                    detail: e.to_string(),
                });
            }
        }
        let mut header = record.header.to_proto();
        header.hop_count = record.header.hop_count;
        let mut offered = v1::OfferedBundle {
            handle,
            header: Some(header),
            manifest: Vec::new(),
        };
        // A manifest travels inline when the offer still fits in one frame
        // and the peer is not known to hold it; one that cannot fit is not
        // read for it (a re-offer on a small-MTU link would decode a large
        // manifest each time only to leave it out).
        let may_fit = !held && (record.header.manifest_len as usize) < state.props.mtu as usize;
        let inline = match &out.manifest {
            _ if !may_fit => None,
            Some(manifest) => Some(manifest.encode()),
            None => self
                .store
                .get_manifest(record.header.manifest)
                .ok()
                .flatten()
                .map(|manifest| manifest.encode()),
        };
        if let Some(encoded) = inline {
            offered.manifest = encoded;
            let with = frame(Body::Offer(v1::Offer {
                bundles: vec![offered.clone()],
            }));
            if FrameCodec::encoded_len(&with) > state.props.mtu as usize {
                offered.manifest.clear();
            } else if let Some(header) = offered.header.as_mut()
                && !offered.manifest.is_empty()
            {
                // The inline manifest names itself: its hash is the id. (An
                // empty one cannot be told from none, so keeps its id, which
                // tells the receiver it has the whole manifest already.)
                header.manifest_id.clear();
            }
        }
        let offer = frame(Body::Offer(v1::Offer {
            bundles: vec![offered],
        }));
        // No answer is due before the offer has left behind the control
        // frames queued ahead of it (taken as that many of its size): the
        // offers of a release sent at once take a while on a thin link.
        let queued = FrameCodec::encoded_len(&offer) as u64 * (state.control.len() as u64 + 1);
        let ahead = transmission_time(queued, state.props.rate_bps).unwrap_or_default();
        out.retry_at = Some(now + out.backoff + ahead);
        state.control.push_back(offer);
    }

    /// How long to wait for an answer on `link` before offering again
    /// ([`answer_timeout`]).
    fn retransmit_timeout(&self, link: LinkId) -> Duration {
        // An unknown link: a round trip of one second, no answers measured.
        let (rtt, delay) = self
            .links
            .get(&link)
            .map_or((Duration::from_secs(1), None), |s| {
                (s.props.rtt, s.answer_delay)
            });
        answer_timeout(rtt, delay, &self.config)
    }

    /// Timers: custody signal batches, repair reports, re-offers, expiry,
    /// routing again when planned contacts end.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.replan_at.is_some_and(|at| at <= now) {
            self.replan(now);
        }
        let hellos: Vec<LinkId> = self
            .links
            .iter()
            .filter(|(_, s)| s.up && s.hello_due.is_some_and(|due| due <= now))
            .map(|(l, _)| *l)
            .collect();
        for link in hellos {
            let state = self.links.get_mut(&link).expect("listed above");
            // The contact is up: the peer is there or due. Keep asking often
            // (a Hello in 32-byte fragments is often lost on a lossy link).
            let max = (state.props.rtt * 16 + self.config.retransmit_slack)
                .min(self.config.retransmit_max);
            state.hello_backoff = (state.hello_backoff * 2).min(max);
            self.send_hello(now, link);
        }
        for state in self.links.values_mut() {
            if state.signal_due.is_some_and(|due| due <= now) {
                state.signal_due = None;
                let mtu = state.props.mtu as usize;
                let peer = state.session.as_ref().map(|s| s.peer);
                for ((accepted, reason), sources) in std::mem::take(&mut state.signals) {
                    let ranges = sources
                        .into_iter()
                        .flat_map(|(source, seqs)| sequence_ranges(source, &seqs, peer));
                    for signal in mtu::custody_signals(accepted, reason, ranges, mtu) {
                        state.control.push_back(frame(Body::Custody(signal)));
                    }
                }
            }
        }
        let reports: Vec<BundleId> = self
            .inbound
            .iter()
            .filter(|(_, i)| i.report_at.is_some_and(|at| at <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in reports {
            let max = self.config.retransmit_max;
            if let Some(inbound) = self.inbound.get_mut(&id) {
                inbound.report_backoff = (inbound.report_backoff * 2).min(max);
                inbound.report_at = None;
            }
            self.report(now, id);
        }
        let mut retries = Vec::new();
        for (link, state) in &mut self.links {
            if !state.up || state.session.is_none() {
                continue;
            }
            let timeout = answer_timeout(state.props.rtt, state.answer_delay, &self.config);
            for out in state.out.values_mut() {
                if out.retry_at.is_some_and(|at| at <= now) {
                    // The answer to data handed over is due by what this
                    // link's answers take now, which may have been learnt
                    // since the data went.
                    if let Some((_, left)) = out.awaiting
                        && left + timeout > now
                    {
                        out.retry_at = Some(left + timeout);
                        continue;
                    }
                    out.backoff = (out.backoff * 2).min(self.config.retransmit_max);
                    retries.push((*link, out.bundle));
                }
            }
        }
        self.stats.reoffers += retries.len() as u64;
        for (link, id) in retries {
            self.offer_on(now, link, id);
        }
        let expired: Vec<BundleId> = self
            .bundles
            .values()
            .filter(|r| r.header.expires_at() <= now)
            .map(|r| r.header.id)
            .collect();
        for id in expired {
            self.expire(now, id);
        }
        let stale: Vec<BundleId> = self
            .inbound
            .values()
            .filter(|i| i.header.expires_at() <= now)
            .map(|i| i.header.id)
            .collect();
        for id in stale {
            self.inbound.remove(&id);
        }
    }

    /// Bundles waiting for a planned contact that has passed go by the best
    /// route left; a neighbour that gets one it already holds refuses it as
    /// redundant, which releases it here.
    fn replan(&mut self, now: Instant) {
        let me = self.config.node;
        let plan = &self.config.contact_plan;
        self.replan_at = plan.next_end(me, now);
        // A contact that outlasts its plan is still a contact.
        let connected: BTreeSet<NodeId> = self
            .links
            .values()
            .filter(|s| s.up && s.acked)
            .filter_map(|s| s.session.as_ref().map(|p| p.peer))
            .collect();
        let mut moved = Vec::new();
        for record in self.bundles.values() {
            let stale: BTreeSet<NodeId> = record
                .pending_hops
                .iter()
                .copied()
                .filter(|hop| !connected.contains(hop))
                .filter(|&hop| plan.contact_ahead(me, hop, now) == Some(false))
                .collect();
            if !stale.is_empty() {
                moved.push((record.header.id, stale));
            }
        }
        for (id, stale) in moved {
            let record = self.bundles.get(&id).expect("listed above");
            let header = &record.header;
            let (fresh, _) = self.config.plan(
                &header.destination,
                now,
                header.payload_len,
                header.expires_at(),
            );
            let mut hops: BTreeSet<NodeId> =
                record.pending_hops.difference(&stale).copied().collect();
            hops.extend(
                fresh
                    .into_iter()
                    .filter(|h| Some(*h) != record.custody_from),
            );
            if hops == record.pending_hops {
                continue;
            }
            tracing::debug!(bundle = %id, ?stale, ?hops, "planned contact passed; routing again");
            // The stale hops have no session here, so no transfer to them ends.
            self.reroute(now, id, hops, &stale);
        }
    }

    fn expire(&mut self, now: Instant, id: BundleId) {
        let Some(record) = self.bundles.remove(&id) else {
            return;
        };
        self.by_sequence.remove(&(id.source, id.sequence));
        for state in self.links.values_mut() {
            state.out.retain(|_, out| out.bundle != id);
        }
        let mut batch = Batch::new();
        batch.delete(Cf::Bundles, id.to_key().to_vec());
        for hop in &record.pending_hops {
            batch.delete(Cf::Timers, timer_key(id, *hop));
            self.backoffs.remove(&(id, *hop));
        }
        let shared = self
            .bundles
            .values()
            .any(|r| r.header.manifest == record.header.manifest);
        let result = self.store.write(&batch).and_then(|()| {
            if shared {
                Ok(())
            } else {
                self.store.delete_manifest(record.header.manifest)
            }
        });
        if let Err(e) = result {
            self.events.push_back(Event::StoreFailed {
                detail: e.to_string(),
            });
        }
        self.events.push_back(Event::Expired { bundle: id });
        if !record.pending_hops.is_empty() {
            // It died in our custody: tell whoever asked to know.
            let report = v1::StatusReport {
                bundle: Some(id.to_proto()),
                kind: v1::StatusKind::Deleted as i32,
                reason: v1::DeletionReason::LifetimeExpired as i32,
                reporter: self.config.node.0.to_vec(),
                time_ms: record.header.expires_at().as_millis(),
                hops: 0,
                detail: String::new(),
            };
            let target = record
                .header
                .report_to
                .clone()
                .unwrap_or(Endpoint::Node(id.source));
            self.route_report(now, target, report);
        }
    }

    /// The application here refuses a bundle delivered to it (e.g. a release
    /// its trust policy does not admit): tells the bundle's `report_to` (or
    /// source) why, as a deletion report with reason `Unauthorised` and
    /// `detail` (cut to [`ferry_proto::MAX_REPORT_DETAIL_LEN`] bytes). The
    /// engine keeps carrying the bundle wherever else it is bound.
    pub fn report_refusal(&mut self, now: Instant, bundle: BundleId, detail: &str) {
        let Some(record) = self.bundles.get(&bundle) else {
            return;
        };
        let target = record
            .header
            .report_to
            .clone()
            .unwrap_or(Endpoint::Node(bundle.source));
        let mut cut = detail.len().min(ferry_proto::MAX_REPORT_DETAIL_LEN);
        while !detail.is_char_boundary(cut) {
            cut -= 1;
        }
        let report = v1::StatusReport {
            bundle: Some(bundle.to_proto()),
            kind: v1::StatusKind::Deleted as i32,
            reason: v1::DeletionReason::Unauthorised as i32,
            reporter: self.config.node.0.to_vec(),
            time_ms: now.as_millis(),
            hops: 0,
            detail: detail[..cut].to_owned(),
        };
        self.route_report(now, target, report);
    }

    /// A status report arrived: ours to read, or to pass on towards the
    /// bundle's source.
    fn on_status(&mut self, now: Instant, mut report: v1::StatusReport) {
        let Some(bundle) = report.bundle.as_ref().and_then(BundleId::from_proto) else {
            return;
        };
        report.hops += 1;
        if report.hops > self.config.max_hops {
            return;
        }
        self.route_report(now, Endpoint::Node(bundle.source), report);
    }

    fn route_report(&mut self, now: Instant, target: Endpoint, report: v1::StatusReport) {
        let (hops, local) = self.config.plan(&target, now, 0, Instant(u64::MAX));
        if local {
            let bundle = report.bundle.as_ref().and_then(BundleId::from_proto);
            let reporter = NodeId::from_slice(&report.reporter);
            if let (Some(bundle), Some(reporter)) = (bundle, reporter) {
                let reason = match v1::DeletionReason::try_from(report.reason) {
                    Ok(v1::DeletionReason::DepletedStorage) => Reason::DepletedStorage,
                    Ok(v1::DeletionReason::NoRoute) => Reason::NoRoute,
                    Ok(v1::DeletionReason::Unauthorised) => Reason::Unauthorised,
                    _ => Reason::Expired,
                };
                self.events.push_back(Event::DeletionReported {
                    bundle,
                    reporter,
                    reason,
                    detail: report.detail.clone(),
                });
            }
        }
        if let Some(hop) = hops.into_iter().next() {
            let queue = self.reports.entry(hop).or_default();
            if queue.len() == MAX_QUEUED_REPORTS {
                queue.pop_front();
            }
            queue.push_back(report);
            self.flush_reports(hop);
        }
    }

    /// Sends queued reports for `hop` on a link with a live session to it.
    fn flush_reports(&mut self, hop: NodeId) {
        let Some(state) = self
            .links
            .values_mut()
            .find(|s| s.up && s.acked && s.session.as_ref().is_some_and(|p| p.peer == hop))
        else {
            return;
        };
        for report in self.reports.remove(&hop).unwrap_or_default() {
            state.control.push_back(frame(Body::Status(report)));
        }
    }

    /// The earliest time `handle_timeout` has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let links = self.links.values().flat_map(|s| {
            let retries = s
                .out
                .values()
                .filter_map(|o| o.retry_at)
                .filter(|_| s.up && s.session.is_some());
            let hello = s.hello_due.filter(|_| s.up);
            s.signal_due.into_iter().chain(retries).chain(hello)
        });
        let reports = self.inbound.values().filter_map(|i| i.report_at);
        let expiry = self.bundles.values().map(|r| r.header.expires_at());
        let inbound_expiry = self.inbound.values().map(|i| i.header.expires_at());
        links
            .chain(self.replan_at)
            .chain(reports)
            .chain(expiry)
            .chain(inbound_expiry)
            .min()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The next frame for any link, links taken in order.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        let links: Vec<LinkId> = self.links.keys().copied().collect();
        links
            .into_iter()
            .find_map(|link| self.poll_transmit_on(now, link))
    }

    /// The next frame for `link`: control first, then data of the most
    /// urgent bundle. Call it when the link can take a frame.
    pub fn poll_transmit_on(&mut self, now: Instant, link: LinkId) -> Option<Transmit> {
        let retransmit = self.retransmit_timeout(link);
        let codec = FrameCodec::new(ferry_proto::HARD_MAX_FRAME);
        let state = self.links.get_mut(&link)?;
        if !state.up {
            return None;
        }
        let mtu = state.props.mtu as usize;
        if let Some(frame) = state.fragments.pop_front() {
            return Some(Transmit {
                link,
                frame,
                bulk: false,
            });
        }
        while let Some(frame) = state.control.pop_front() {
            tracing::trace!(node = %self.config.node, ?link, kind = frame.body.as_ref().map_or("", body_kind), "frame out");
            let Ok(encoded) = codec.encode(&frame) else {
                continue;
            };
            if encoded.len() <= mtu {
                return Some(Transmit {
                    link,
                    frame: encoded,
                    bulk: false,
                });
            }
            state.next_message = state.next_message.wrapping_add(1);
            let Ok(parts) = mtu::fragment(&encoded, state.next_message, mtu) else {
                // Validation bounds every control frame below the fragment
                // limit; should one exceed it, it is dropped, not sent.
                tracing::warn!(
                    ?link,
                    len = encoded.len(),
                    "control frame too large to send"
                );
                continue;
            };
            state.fragments = parts.into();
            let first = state.fragments.pop_front().expect("at least one part");
            return Some(Transmit {
                link,
                frame: first,
                bulk: false,
            });
        }
        state.session.as_ref()?;
        // Data the receiver asked for goes before data sent on speculation,
        // and speculation stops at one bandwidth-delay product in flight:
        // what the receiver already holds is sent at most once per round trip.
        let may_speculate = state.props.pipeline
            && state.out.values().map(|o| o.speculative).sum::<u64>()
                < speculation_budget(&state.props);
        // A chunk that cannot be read (or is not the length its manifest
        // says) is dropped from what is wanted and the next one is tried, so
        // one bad entry never stalls the link.
        loop {
            let (&handle, out) = state
                .out
                .iter_mut()
                .filter(|(_, o)| !o.wanted.is_empty() && (!o.pipelined || may_speculate))
                .max_by_key(|(handle, o)| {
                    (o.priority, !o.pipelined, std::cmp::Reverse(**handle))
                })?;
            let manifest = out.manifest.as_ref()?;
            let only_chunk = out.wanted.len() == 1;
            // The manifest first: the receiver cannot place chunks without it.
            let index = match out.wanted.contains_key(&MANIFEST_INDEX) {
                true => MANIFEST_INDEX,
                false => *out.wanted.keys().next().expect("wanted is not empty"),
            };
            let ranges = out.wanted.get_mut(&index).expect("present");
            let (start, end) = ranges[0];
            let record = self.bundles.get(&out.bundle)?;
            let chunk_length = if index == MANIFEST_INDEX {
                record.header.manifest_len
            } else {
                manifest.entries().get(index as usize)?.len
            };
            if out
                .sending
                .as_ref()
                .is_none_or(|(cached, _)| *cached != index)
            {
                let bytes = if index == MANIFEST_INDEX {
                    manifest.encode()
                } else {
                    let id = manifest.entries()[index as usize].id;
                    let read = match first_time(&mut out.read_before, index) {
                        true => self.store.get_chunk_unverified(id),
                        false => self.store.get_chunk(id),
                    };
                    match read {
                        // A manifest from a peer may give a chunk we hold (by
                        // id) a length it does not have: such a bundle cannot be
                        // served. Dropped like a lost chunk, rather than asked
                        // for pieces past its end forever, which would stall
                        // every transfer behind it on this link.
                        Ok(Some(bytes)) if bytes.len() == chunk_length as usize => bytes,
                        Ok(Some(bytes)) => {
                            out.wanted.remove(&index);
                            self.events.push_back(Event::StoreFailed {
                                detail: format!(
                                    "chunk {id} is {} bytes, but the manifest of {} says {chunk_length}",
                                    bytes.len(),
                                    out.bundle
                                ),
                            });
                            continue;
                        }
                        _ => {
                            // Lost locally: nothing to send for it; the receiver will keep asking.
                            out.wanted.remove(&index);
                            self.events.push_back(Event::StoreFailed {
                                detail: format!("chunk {id} unreadable"),
                            });
                            continue;
                        }
                    }
                };
                out.sending = Some((index, bytes));
            }
            let bytes = &out.sending.as_ref().expect("filled above").1;
            let mut piece = v1::ChunkData {
                handle,
                chunk_index: index,
                chunk_id: Vec::new(),
                chunk_length,
                offset: start,
                data: Bytes::new(),
                checkpoint: false,
                checkpoint_serial: 0,
            };
            let mut room = mtu::data_room(mtu, prost::Message::encoded_len(&piece)) as u32;
            let last = only_chunk && ranges.len() == 1;
            if last && end - start <= room {
                // This piece ends the handle's data and carries the checkpoint flag.
                piece.checkpoint = true;
                piece.checkpoint_serial = out.checkpoints + 1;
                room = mtu::data_room(mtu, prost::Message::encoded_len(&piece)) as u32;
                piece.checkpoint = false;
                piece.checkpoint_serial = 0;
            }
            let take = (end - start).min(room);
            let whole = start == 0 && take as usize == bytes.len() && ranges.len() == 1;
            piece.data = if whole {
                // The whole chunk in one piece: hand over the buffer read for it.
                Bytes::from(out.sending.take().expect("filled above").1)
            } else {
                Bytes::copy_from_slice(bytes.get(start as usize..(start + take) as usize)?)
            };
            if out.pipelined {
                out.speculative += u64::from(take);
                self.stats.speculative_bytes += u64::from(take);
            } else {
                self.stats.asked_bytes += u64::from(take);
            }
            let whole_chunk = start == 0 && take >= chunk_length;
            let round = out.checkpoints + 1;
            out.in_flight
                .push(now, index, (start, start + take), whole_chunk, round);
            if start + take >= end {
                ranges.remove(0);
                if ranges.is_empty() {
                    out.wanted.remove(&index);
                    out.sending = None;
                }
            } else {
                ranges[0].0 = start + take;
            }
            let done = out.wanted.is_empty();
            if done {
                piece.checkpoint = true;
                out.checkpoints += 1;
                piece.checkpoint_serial = out.checkpoints;
            }
            let frame = codec.encode(&frame(Body::Chunk(piece))).ok()?;
            state.drained_at = state.drained_at.max(now)
                + transmission_time(frame.len() as u64, state.props.rate_bps).unwrap_or_default();
            if done {
                // No answer is due before the data handed over ahead of it has left.
                out.retry_at = Some(state.drained_at + retransmit);
                out.awaiting = Some((out.checkpoints, state.drained_at));
            }
            return Some(Transmit {
                link,
                frame,
                bulk: true,
            });
        }
    }

    fn queue_control(&mut self, link: LinkId, body: Body) {
        if let Some(state) = self.links.get_mut(&link) {
            state.control.push_back(frame(body));
        }
    }

    /// Ends the session on `link` because of the peer's bad input, then
    /// starts a fresh one: the contact is still up, and transfers resume from
    /// what is stored.
    fn close(&mut self, now: Instant, link: LinkId, reason: v1::CloseReason, detail: &str) {
        tracing::warn!(?link, %detail, "closing session");
        if let Some(state) = self.links.get_mut(&link) {
            state.control.clear();
            state.control.push_back(frame(Body::Close(v1::Close {
                reason: reason as i32,
                detail: detail.into(),
            })));
        }
        self.events.push_back(Event::SessionClosed {
            link,
            reason: detail.to_string(),
        });
        self.restart_session(now, link);
    }

    /// Forgets the session on `link` and says Hello again with a new nonce.
    fn restart_session(&mut self, now: Instant, link: LinkId) {
        let nonce = self.rng.next_u64() | 1;
        let Some(state) = self.links.get_mut(&link) else {
            return;
        };
        state.session = None;
        state.fragments.clear();
        state.reassembly.clear();
        state.out.clear();
        state.in_handles.clear();
        state.signals.clear();
        state.signal_due = None;
        state.nonce = nonce;
        state.peer_nonce = 0;
        state.acked = false;
        if state.up {
            self.send_hello(now, link);
        }
    }
}

/// Bytes a link may have in flight on speculation: one bandwidth-delay
/// product (a piece may start below it and end above); unbounded on a link
/// of unknown rate.
fn speculation_budget(props: &LinkProperties) -> u64 {
    if props.rate_bps == 0 {
        return u64::MAX;
    }
    let bdp = u128::from(props.rate_bps) * props.rtt.as_micros() / 8 / 1_000_000;
    u64::try_from(bdp).unwrap_or(u64::MAX).max(1)
}

/// How long to wait for an answer on a link of round trip `rtt` before
/// offering again: `retransmit_rtts` round trips, or the answers' measured
/// delay and four deviations (`answer_delay`) if that is longer (at most
/// `retransmit_max`); `retransmit_slack` on top.
fn answer_timeout(
    rtt: Duration,
    answer_delay: Option<(Duration, Duration)>,
    config: &EngineConfig,
) -> Duration {
    let rtts = rtt * config.retransmit_rtts;
    let measured = answer_delay.map_or(Duration::ZERO, |(delay, deviation)| {
        (delay + deviation * 4).min(config.retransmit_max)
    });
    rtts.max(measured) + config.retransmit_slack
}

/// Takes one more `sample` into a smoothed delay and its mean deviation
/// (RFC 6298's gains: 1/8 and 1/4).
fn add_sample(smoothed: &mut Option<(Duration, Duration)>, sample: Duration) {
    *smoothed = Some(match *smoothed {
        None => (sample, sample / 2),
        Some((delay, deviation)) => {
            let diff = delay.abs_diff(sample);
            (delay * 7 / 8 + sample / 8, deviation * 3 / 4 + diff / 4)
        }
    });
}

/// How long a sent piece may still be in flight, as far as a want-list
/// arriving now could know: a round trip plus a full frame's serialisation
/// each way and one waiting frame; without a known rate, a quarter RTT.
fn in_flight_window(props: &LinkProperties) -> Duration {
    match transmission_time(u64::from(props.mtu), props.rate_bps) {
        Some(frame) => props.rtt + frame * 3,
        None => props.rtt + props.rtt / 4,
    }
}

/// Sets bit `index` of `bits`; true if it was clear.
fn first_time(bits: &mut Vec<u64>, index: u32) -> bool {
    let (word, bit) = ((index / 64) as usize, 1u64 << (index % 64));
    if bits.len() <= word {
        bits.resize(word + 1, 0);
    }
    let first = bits[word] & bit == 0;
    bits[word] |= bit;
    first
}

fn timer_key(id: BundleId, hop: NodeId) -> Vec<u8> {
    [TIMER_PREFIX, &id.to_key(), hop.as_bytes()].concat()
}

fn decode_timer(key: &[u8], value: &[u8]) -> Option<(BundleId, NodeId, Duration)> {
    let rest = key.strip_prefix(TIMER_PREFIX)?;
    let (bundle, hop) = rest.split_at_checked(BundleId::KEY_LEN)?;
    let millis = u64::from_be_bytes(value.try_into().ok()?);
    Some((
        BundleId::from_key(bundle)?,
        NodeId::from_slice(hop)?,
        Duration::from_millis(millis),
    ))
}

fn body_kind(body: &Body) -> &'static str {
    match body {
        Body::Hello(_) => "hello",
        Body::Offer(_) => "offer",
        Body::Want(_) => "want",
        Body::Chunk(_) => "chunk",
        Body::Custody(_) => "custody",
        Body::Status(_) => "status",
        Body::Keepalive(_) => "keepalive",
        Body::Close(_) => "close",
        Body::Fragment(_) => "fragment",
    }
}

fn frame(body: Body) -> v1::Frame {
    v1::Frame { body: Some(body) }
}

fn malformed(e: &FrameError) -> String {
    format!("malformed frame: {e}")
}

fn piece_want(index: u32, gaps: &[(u32, u32)]) -> v1::PieceWant {
    v1::PieceWant {
        chunk_index: index,
        ranges: gaps
            .iter()
            .map(|&(s, e)| v1::ByteRange {
                offset: s,
                length: e - s,
            })
            .collect(),
    }
}

/// Whole chunks wanted, as ranges or a bitmap, whichever is smaller.
fn encode_indexes(indexes: &[u32], want: &mut v1::WantList) {
    let mut ranges: Vec<v1::IndexRange> = Vec::new();
    for &i in indexes {
        match ranges.last_mut() {
            Some(last) if last.end == i => last.end = i + 1,
            _ => ranges.push(v1::IndexRange {
                start: i,
                end: i + 1,
            }),
        }
    }
    let bitmap_len = indexes.last().map_or(0, |&max| max as usize / 8 + 1);
    if ranges.len() * 6 > bitmap_len + 2 {
        let mut bitmap = vec![0u8; bitmap_len];
        for &i in indexes {
            bitmap[i as usize / 8] |= 1 << (i % 8);
        }
        want.bitmap = bitmap;
    } else {
        want.ranges = ranges;
    }
}

/// Sorts and merges byte ranges.
fn normalise(ranges: &mut Vec<(u32, u32)>) {
    ranges.sort_unstable();
    let mut merged: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
    for &(s, e) in ranges.iter() {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    *ranges = merged;
}

/// Ranges of `source`'s bundles for a custody signal to `to`; the source is
/// left out when it is `to` itself (the first hop of every bundle).
fn sequence_ranges(
    source: NodeId,
    seqs: &BTreeSet<u64>,
    to: Option<NodeId>,
) -> Vec<v1::SequenceRange> {
    let mut out: Vec<v1::SequenceRange> = Vec::new();
    for &seq in seqs {
        match out.last_mut() {
            Some(last) if last.last + 1 == seq => last.last = seq,
            _ => out.push(v1::SequenceRange {
                source: if to == Some(source) {
                    Vec::new()
                } else {
                    source.0.to_vec()
                },
                first: seq,
                last: seq,
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use ferry_chunk::{Chunker, ChunkerConfig, ManifestBuilder};

    use super::*;
    use crate::config::Routes;
    use crate::mem_store::MemStore;

    const A: NodeId = NodeId([1; 32]);
    const B: NodeId = NodeId([2; 32]);
    const C: NodeId = NodeId([3; 32]);

    #[test]
    fn custody_ranges_leave_out_the_source_only_when_it_is_the_receiver() {
        let seqs: BTreeSet<u64> = [1, 2, 3, 7].into();
        let to_source = sequence_ranges(A, &seqs, Some(A));
        assert_eq!(to_source.len(), 2);
        assert!(to_source.iter().all(|r| r.source.is_empty()));
        let onwards = sequence_ranges(A, &seqs, Some(B));
        assert!(onwards.iter().all(|r| r.source == A.0.to_vec()));
        assert_eq!((onwards[0].first, onwards[0].last), (1, 3));
    }

    fn engine(node: NodeId) -> Engine<MemStore> {
        Engine::new(EngineConfig::new(node, 7), MemStore::new()).unwrap()
    }

    /// Puts `data` in the engine's store and submits it for `destination`.
    fn submit(engine: &mut Engine<MemStore>, destination: Endpoint, data: &[u8]) -> BundleId {
        let manifest = store_payload(engine, data);
        engine
            .submit(Instant(1_000_000), submission(destination, manifest))
            .unwrap()
    }

    /// Puts `data`'s chunks and manifest in the engine's store, synced.
    fn store_payload(engine: &mut Engine<MemStore>, data: &[u8]) -> ManifestId {
        let chunker = Chunker::new(ChunkerConfig::default()).unwrap();
        let store = engine.store_mut();
        let mut builder = ManifestBuilder::new();
        for span in chunker.chunk_slice(data) {
            let bytes = &data[span.offset as usize..span.end() as usize];
            store.put_chunk(span.id, bytes).unwrap();
            builder.push(span, bytes).unwrap();
        }
        let manifest = store.put_manifest(&builder.finish()).unwrap();
        store.sync().unwrap();
        manifest
    }

    /// A blob bundle of `manifest` for `destination`, valid for an hour.
    fn submission(destination: Endpoint, manifest: ManifestId) -> Submission {
        Submission::new(
            destination,
            PayloadKind::Blob,
            manifest,
            Duration::from_secs(3600),
        )
    }

    /// Several submissions are taken all or none: one whose payload is
    /// incomplete leaves no record of the others, in memory or in the
    /// store, and uses up no sequence number.
    #[test]
    fn submissions_taken_together_are_taken_all_or_none() {
        let mut a = engine(A);
        let first = store_payload(&mut a, &[1; 100_000]);
        let second = store_payload(&mut a, &[2; 50_000]);
        // A manifest whose chunk never reached the store.
        let lost = ferry_chunk::ManifestEntry {
            id: ferry_chunk::ChunkId::of(&[3; 1000]),
            len: 1000,
        };
        let incomplete = a
            .store_mut()
            .put_manifest(&Manifest::new(vec![lost]).unwrap())
            .unwrap();
        let now = Instant(1_000_000);
        let to_b = || Endpoint::Node(B);

        let refused = a.submit_all(
            now,
            [first, incomplete, second].map(|m| submission(to_b(), m)),
        );
        assert!(
            matches!(refused, Err(SubmitError::MissingChunk { manifest, index: 0 }) if manifest == incomplete),
            "{refused:?}"
        );
        assert_eq!(a.bundles().count(), 0);
        assert!(a.poll_event().is_none());
        let mut a = Engine::new(EngineConfig::new(A, 7), a.into_store()).unwrap();
        assert_eq!(a.bundles().count(), 0, "nothing recorded in the store");

        let ids = a
            .submit_all(now, [first, second].map(|m| submission(to_b(), m)))
            .unwrap();
        assert_eq!(
            ids.iter().map(|id| id.sequence).collect::<Vec<_>>(),
            [1, 2],
            "sequence numbers follow on from before the refusal"
        );
        assert_eq!(a.bundle(&ids[1]).unwrap().header.manifest, second);
        let a = Engine::new(EngineConfig::new(A, 7), a.into_store()).unwrap();
        assert_eq!(a.bundles().count(), 2, "both recorded in the store");
    }

    /// An offer carries the manifest inline only when it fits in one frame,
    /// and reads it only then: re-offering a big bundle on a small-MTU link
    /// (a serial modem) decodes no manifest, and a first offer on a
    /// pipelined link reads it once, for both uses.
    #[test]
    fn offers_read_the_manifest_only_when_it_can_travel_inline() {
        let (mut a, _b, now) = a_routed_to_b(small_mtu());
        let manifest = store_payload(&mut a, &vec![1; 4 << 20]);
        let len = a
            .store()
            .get_manifest(manifest)
            .unwrap()
            .unwrap()
            .encoded_len();
        assert!(
            len > 1400,
            "the manifest ({len} bytes) must not fit the MTU"
        );
        let reads = a.store().manifest_reads();
        a.submit(now, submission(Endpoint::Node(B), manifest))
            .unwrap();
        assert_eq!(
            a.store().manifest_reads() - reads,
            1,
            "read once, at submit"
        );
        // B never answers: A offers again and again.
        let mut t = now;
        for _ in 0..4 {
            while a.poll_transmit(t).is_some() {}
            t = t + Duration::from_secs(600);
            a.handle_timeout(t);
        }
        assert!(a.stats().reoffers >= 3, "{:?}", a.stats());
        assert_eq!(a.store().manifest_reads() - reads, 1, "no read per offer");

        let pipelined = LinkProperties {
            mtu: 1 << 20,
            pipeline: true,
            ..small_mtu()
        };
        let (mut a, _b, now) = a_routed_to_b(pipelined);
        let manifest = store_payload(&mut a, &vec![2; 4 << 20]);
        let reads = a.store().manifest_reads();
        a.submit(now, submission(Endpoint::Node(B), manifest))
            .unwrap();
        assert_eq!(
            a.store().manifest_reads() - reads,
            2,
            "read at submit, then once for the pipelined offer"
        );
    }

    /// An empty payload (an empty file: its manifest encodes to nothing)
    /// travels as its offer alone, on a link that waits for want-lists and
    /// on one that sends ahead of them, and is delivered as an empty object.
    #[test]
    fn an_empty_payload_travels_as_its_offer_alone() {
        let pipelined = LinkProperties {
            rtt: Duration::from_millis(650),
            rate_bps: 512_000,
            pipeline: true,
            ..small_mtu()
        };
        for props in [small_mtu(), pipelined] {
            let (mut a, mut b, now) = a_routed_to_b(props.clone());
            let empty = ManifestBuilder::new().finish();
            assert_eq!(empty.encoded_len(), 0);
            let manifest = a.store_mut().put_manifest(&empty).unwrap();
            let id = a
                .submit(now, submission(Endpoint::Node(B), manifest))
                .unwrap();
            let codec = FrameCodec::new(ferry_proto::HARD_MAX_FRAME);
            let mut pieces = 0;
            let events = exchange_altering(&mut a, &mut b, now, |bytes| {
                if let Ok(v1::Frame {
                    body: Some(Body::Chunk(_)),
                    ..
                }) = codec.decode_exact(&bytes)
                {
                    pieces += 1;
                }
                bytes
            });
            assert_eq!(pieces, 0, "{props:?}: no data for an empty payload");
            assert!(
                events.iter().any(|e| matches!(
                    e,
                    Event::Delivered { bundle, manifest: m } if *bundle == id && *m == manifest
                )),
                "{props:?}: {events:?}"
            );
            let held = b.store().get_manifest(manifest).unwrap();
            assert_eq!(held.map(|m| m.total_length()), Some(0), "{props:?}");
            assert!(
                a.bundles().all(|record| record.pending_hops.is_empty()),
                "{props:?}: A still waits for B's custody"
            );
        }
    }

    /// Two engines joined by one reliable link, frames moved until quiet;
    /// the events of `b`.
    fn exchange(a: &mut Engine<MemStore>, b: &mut Engine<MemStore>, now: Instant) -> Vec<Event> {
        exchange_altering(a, b, now, |frame| frame)
    }

    /// [`exchange`], with every frame from `a` to `b` passed through `alter`
    /// on the way (a hostile relay).
    fn exchange_altering(
        a: &mut Engine<MemStore>,
        b: &mut Engine<MemStore>,
        now: Instant,
        mut alter: impl FnMut(Vec<u8>) -> Vec<u8>,
    ) -> Vec<Event> {
        let mut events = Vec::new();
        for _ in 0..1000 {
            let moved = move_frames(a, b, now, &mut |frame| Some(alter(frame)));
            // Custody signals wait a little to be batched.
            let later = now + Duration::from_secs(1);
            a.handle_timeout(later);
            b.handle_timeout(later);
            events.extend(std::iter::from_fn(|| b.poll_event()));
            if !moved {
                return events;
            }
        }
        panic!("the engines never went quiet");
    }

    /// Hands every frame `a` has ready to `b` (through `pass`, which may
    /// alter it, or keep it back with None), then every one `b` has ready
    /// to `a`; whether any moved.
    fn move_frames(
        a: &mut Engine<MemStore>,
        b: &mut Engine<MemStore>,
        now: Instant,
        pass: &mut impl FnMut(Vec<u8>) -> Option<Vec<u8>>,
    ) -> bool {
        let mut moved = false;
        while let Some(t) = a.poll_transmit(now) {
            if let Some(frame) = pass(t.frame) {
                b.handle_frame(now, LinkId(0), &frame);
            }
            moved = true;
        }
        while let Some(t) = b.poll_transmit(now) {
            a.handle_frame(now, LinkId(0), &t.frame);
            moved = true;
        }
        moved
    }

    /// Twenty rounds of [`move_frames`], for engines that never go quiet (a
    /// sender offering again after each closed session); the events of `b`.
    fn exchange_rounds(
        a: &mut Engine<MemStore>,
        b: &mut Engine<MemStore>,
        now: Instant,
        mut alter: impl FnMut(Vec<u8>) -> Vec<u8>,
    ) -> Vec<Event> {
        let mut events = Vec::new();
        for _ in 0..20 {
            move_frames(a, b, now, &mut |frame| Some(alter(frame)));
            events.extend(std::iter::from_fn(|| b.poll_event()));
        }
        events
    }

    /// The receiver closed the session with a reason containing `reason`
    /// and holds nothing of `bundle`; the sender keeps custody of it.
    fn assert_closed_and_kept(
        events: &[Event],
        reason: &str,
        (a, b): (&Engine<MemStore>, &Engine<MemStore>),
        bundle: BundleId,
    ) {
        assert!(
            events.iter().any(|e| matches!(
                e,
                Event::SessionClosed { reason: said, .. } if said.contains(reason)
            )),
            "{events:?}"
        );
        assert!(b.bundle(&bundle).is_none());
        assert!(a.bundle(&bundle).is_some(), "the sender keeps custody");
    }

    fn connect(a: &mut Engine<MemStore>, b: &mut Engine<MemStore>, now: Instant) {
        let props = LinkProperties {
            mtu: 1 << 20,
            rtt: Duration::from_millis(10),
            reliable: true,
            rate_bps: 0,
            pipeline: false,
        };
        connect_with(a, b, now, props);
    }

    fn connect_with(
        a: &mut Engine<MemStore>,
        b: &mut Engine<MemStore>,
        now: Instant,
        props: LinkProperties,
    ) {
        for engine in [&mut *a, &mut *b] {
            let link = engine.add_link();
            engine.handle_contact(now, link, Contact::Up(props.clone()));
        }
    }

    /// A reliable 1400-byte-MTU link with a 10 ms round trip.
    fn small_mtu() -> LinkProperties {
        LinkProperties {
            mtu: 1400,
            rtt: Duration::from_millis(10),
            reliable: true,
            rate_bps: 0,
            pipeline: false,
        }
    }

    /// A reliable 512 kbit/s link that keeps what it is handed in its own
    /// buffers (QUIC), with round trip `rtt`.
    fn buffering(rtt: Duration) -> LinkProperties {
        LinkProperties {
            mtu: 1 << 20,
            rtt,
            reliable: true,
            rate_bps: 512_000,
            pipeline: false,
        }
    }

    /// A and B joined by a link with `props`, their sessions up, and A
    /// routing to B directly.
    fn a_routed_to_b(props: LinkProperties) -> (Engine<MemStore>, Engine<MemStore>, Instant) {
        let (mut a, mut b) = (engine(A), engine(B));
        let now = Instant(2_000_000);
        connect_with(&mut a, &mut b, now, props);
        a.set_routes(
            now,
            Routes {
                next_hop: [(B, B)].into(),
                ..Routes::default()
            },
        );
        assert!(exchange(&mut a, &mut b, now).is_empty());
        (a, b, now)
    }

    /// A link that buffers what it is handed (QUIC) must not be handed more
    /// than one bandwidth-delay product of chunks the receiver may already
    /// hold: until want-lists come back, speculation stops there.
    #[test]
    fn speculation_on_a_pipelined_link_stops_at_one_bandwidth_delay_product() {
        let props = LinkProperties {
            mtu: 1 << 20,
            rtt: Duration::from_millis(650),
            reliable: true,
            rate_bps: 512_000,
            pipeline: true,
        };
        let (mut a, mut b, now) = a_routed_to_b(props.clone());
        let data: Vec<Vec<u8>> = (0..10u8)
            .map(|i| (0..20_000u32).map(|n| (n % 251) as u8 ^ i).collect())
            .collect();
        for file in &data {
            submit(&mut a, Endpoint::Node(B), file);
        }
        // Nothing comes back yet: count what A hands the link.
        let mut held = Vec::new();
        let mut speculated = 0;
        while let Some(t) = a.poll_transmit(now) {
            if t.bulk {
                speculated += t.frame.len();
            }
            held.push(t.frame);
        }
        let budget = speculation_budget(&props) as usize;
        assert_eq!(budget, 41_600);
        assert!(speculated > 0, "pipelining sends before the want-lists");
        assert!(
            speculated <= budget + 20_000 + 100,
            "{speculated} bytes on speculation, budget {budget}"
        );
        // Once the receiver answers, the rest follows and all arrives.
        for frame in held {
            b.handle_frame(now, LinkId(0), &frame);
        }
        let events = exchange(&mut a, &mut b, now);
        let delivered = events
            .iter()
            .filter(|e| matches!(e, Event::Delivered { .. }))
            .count();
        assert_eq!(delivered, data.len(), "{events:?}");
    }

    /// A release sent again is mostly payloads the next hop already took
    /// custody of. On a pipelined link such a bundle is offered without its
    /// manifest inline and without chunks ahead of the answer, and still
    /// delivered; if the peer has dropped the manifest since, it asks for
    /// it and gets it.
    #[test]
    fn a_payload_the_peer_holds_is_offered_without_data_ahead() {
        let (mut a, mut b, now) = a_routed_to_b(LinkProperties {
            mtu: 1 << 20,
            rtt: Duration::from_millis(650),
            reliable: true,
            rate_bps: 512_000,
            pipeline: true,
        });
        let data: Vec<u8> = (0..100_000u32).map(|n| (n % 241) as u8).collect();
        let manifest = store_payload(&mut a, &data);
        let codec = FrameCodec::new(ferry_proto::HARD_MAX_FRAME);
        // Each round: the bundle sent, the chunk frames from A, whether an
        // offer carried a manifest, what B delivered.
        let round = |a: &mut Engine<MemStore>, b: &mut Engine<MemStore>| {
            let id = a
                .submit(now, submission(Endpoint::Node(B), manifest))
                .unwrap();
            let (mut chunks, mut inline) = (0, false);
            let events = exchange_altering(a, b, now, |bytes| {
                match codec.decode_exact(&bytes).map(|f| f.body) {
                    Ok(Some(Body::Chunk(_))) => chunks += 1,
                    Ok(Some(Body::Offer(offer))) => {
                        inline |= offer.bundles.iter().any(|o| !o.manifest.is_empty());
                    }
                    _ => {}
                }
                bytes
            });
            let delivered = events
                .iter()
                .any(|e| matches!(e, Event::Delivered { bundle, .. } if *bundle == id));
            assert!(delivered, "{events:?}");
            assert!(a.bundle(&id).is_none_or(|r| r.pending_hops.is_empty()));
            (chunks, inline)
        };
        let (chunks, inline) = round(&mut a, &mut b);
        assert!(chunks > 0 && inline, "the first time, all of it travels");
        let speculated = a.stats().speculative_bytes;
        assert!(speculated > 0);

        assert_eq!(
            round(&mut a, &mut b),
            (0, false),
            "sent again: the offer alone"
        );
        assert_eq!(a.stats().speculative_bytes, speculated);

        // B lost the manifest (a store restored from a backup, say): it asks.
        b.store_mut().delete_manifest(manifest).unwrap();
        let (chunks, _) = round(&mut a, &mut b);
        assert!(chunks > 0, "the manifest travels when asked for");
        assert!(b.store().get_manifest(manifest).unwrap().is_some());
    }

    /// The offers of a release sent at once take a while on a thin link:
    /// none is offered again before it can have left and been answered.
    #[test]
    fn a_burst_of_offers_is_not_repeated_before_it_can_have_left() {
        let rate_bps = 64_000;
        let (mut a, _b, now) = a_routed_to_b(LinkProperties {
            mtu: 1 << 20,
            rtt: Duration::from_millis(650),
            reliable: true,
            rate_bps,
            pipeline: false,
        });
        let count = 100u32;
        for i in 0..count {
            let manifest = store_payload(&mut a, &i.to_be_bytes().repeat(100));
            a.submit(now, submission(Endpoint::Node(B), manifest))
                .unwrap();
        }
        // All handed over at once; B never answers.
        let mut bytes = 0;
        while let Some(t) = a.poll_transmit(now) {
            bytes += t.frame.len() as u64;
        }
        let burst = transmission_time(bytes, rate_bps).unwrap();
        assert!(burst > Duration::from_secs(1), "{burst:?}");
        let first = now + a.retransmit_timeout(LinkId(0));
        a.handle_timeout(first + Duration::from_millis(50));
        assert!(a.stats().reoffers <= 3, "{:?}", a.stats());
        a.handle_timeout(first + burst + Duration::from_millis(100));
        assert_eq!(a.stats().reoffers, u64::from(count));
    }

    /// A link that holds data longer than its round trip says (QUIC behind
    /// a slower path) answers late. Once one answer has shown that, a
    /// bundle whose data went before is not offered again at the earlier
    /// deadline (its answer would ask for data still on its way), only
    /// once the answer is overdue by the delay learnt.
    #[test]
    fn reoffers_wait_as_long_as_the_link_has_taken_to_answer() {
        let (mut a, mut b, now) = a_routed_to_b(buffering(Duration::from_millis(650)));
        for seed in [1u8, 2] {
            let manifest = store_payload(&mut a, &[seed; 20_000]);
            a.submit(now, submission(Endpoint::Node(B), manifest))
                .unwrap();
        }
        // Offers and want-lists cross at once; the chunk data is held, by handle.
        type Held = BTreeMap<u32, Vec<Vec<u8>>>;
        fn trade(a: &mut Engine<MemStore>, b: &mut Engine<MemStore>, at: Instant, data: &mut Held) {
            let codec = FrameCodec::new(ferry_proto::HARD_MAX_FRAME);
            let mut hold_data = |frame: Vec<u8>| match codec.decode_exact(&frame).map(|f| f.body) {
                Ok(Some(Body::Chunk(c))) => {
                    data.entry(c.handle).or_default().push(frame);
                    None
                }
                _ => Some(frame),
            };
            while move_frames(a, b, at, &mut hold_data) {}
        }
        let mut data = Held::new();
        trade(&mut a, &mut b, now, &mut data);
        // The first bundle's data arrives 2.5 s on, past the three round
        // trips (and slack) that re-offers waited for: custody answers it.
        let late = now + Duration::from_millis(2500);
        let (&first, _) = data.iter().next().expect("data for two handles");
        for frame in data.remove(&first).unwrap() {
            b.handle_frame(late, LinkId(0), &frame);
        }
        let answered = late + Duration::from_millis(100);
        b.handle_timeout(answered);
        trade(&mut a, &mut b, answered, &mut data);
        assert_eq!(a.bundles().filter(|r| r.pending_hops.is_empty()).count(), 1);
        // The second's data went with the first's: its first deadline has
        // passed, but not the one its link has shown.
        a.handle_timeout(now + Duration::from_millis(3500));
        assert_eq!(a.stats().reoffers, 0);
        // Silence long past that: offered again.
        a.handle_timeout(now + Duration::from_secs(60));
        assert_eq!(a.stats().reoffers, 1);
    }

    /// On a link that buffers what it is handed (QUIC), a bundle whose data
    /// all went to the link is not offered again before that data can have
    /// left at the link's rate: a repeated offer would have the receiver
    /// ask for what is still on its way.
    #[test]
    fn no_reoffer_before_the_data_handed_over_can_have_left() {
        let (mut a, mut b, now) = a_routed_to_b(buffering(Duration::from_millis(100)));
        let data: Vec<u8> = (0..640_000u32).map(|n| (n % 253) as u8).collect();
        submit(&mut a, Endpoint::Node(B), &data);
        // Offer and want-list, then A hands over all 640 kB at once.
        while let Some(t) = a.poll_transmit(now) {
            b.handle_frame(now, LinkId(0), &t.frame);
        }
        while let Some(t) = b.poll_transmit(now) {
            a.handle_frame(now, LinkId(0), &t.frame);
        }
        let mut handed = 0;
        while let Some(t) = a.poll_transmit(now) {
            handed += t.frame.len();
        }
        assert!(handed > data.len(), "{handed} bytes handed over");
        // 640 kB at 512 kbit/s take 10 s to leave.
        let drained = now + transmission_time(handed as u64, 512_000).unwrap();
        let next = a.poll_timeout().expect("a re-offer is due some time");
        assert!(
            next >= drained,
            "re-offer at {next:?}, data gone at {drained:?}"
        );
    }

    /// A link that holds data longer than its rate says (QUIC behind a
    /// slower path) lets a re-offer, on the control stream, overtake the
    /// data handed over before it. The receiver's answer names chunks still
    /// on their way; they do not go again. Once their checkpoint is in,
    /// what the receiver still lacks (here a chunk altered in flight) goes.
    #[test]
    fn a_reoffer_overtaking_data_on_a_reliable_link_does_not_send_it_again() {
        let (mut a, mut b, now) = a_routed_to_b(buffering(Duration::from_millis(100)));
        let data: Vec<u8> = (0..640_000u32).map(|n| (n * 7 % 253) as u8).collect();
        let id = submit(&mut a, Endpoint::Node(B), &data);
        let codec = FrameCodec::new(ferry_proto::HARD_MAX_FRAME);
        let chunk_bytes = |frames: &[Vec<u8>]| -> usize {
            frames
                .iter()
                .filter_map(|f| match codec.decode_exact(f).ok()?.body? {
                    Body::Chunk(c) => Some(c.data.len()),
                    _ => None,
                })
                .sum()
        };
        // Control frames cross at once; chunk data waits. A offers again
        // twice before any of it arrives.
        let mut held: Vec<Vec<u8>> = Vec::new();
        let mut at = now;
        for _ in 0..100 {
            let mut moved = false;
            while let Some(t) = a.poll_transmit(at) {
                if t.bulk {
                    held.push(t.frame);
                } else {
                    b.handle_frame(at, LinkId(0), &t.frame);
                }
                moved = true;
            }
            while let Some(t) = b.poll_transmit(at) {
                a.handle_frame(at, LinkId(0), &t.frame);
                moved = true;
            }
            if moved {
                continue;
            }
            if a.stats().reoffers == 2 {
                break;
            }

            at = a.poll_timeout().expect("a re-offer is due").max(at);
            a.handle_timeout(at);
        }
        assert_eq!(a.stats().reoffers, 2);
        assert_eq!(chunk_bytes(&held), data.len(), "sent again while in flight");
        let asked = a.stats().asked_bytes;
        // The data arrives, one chunk altered on the way.
        let mut altered = None;
        for frame in held {
            let mut frame = codec.decode_exact(&frame).unwrap();
            if let Some(Body::Chunk(piece)) = &mut frame.body
                && altered.is_none()
            {
                let mut bytes = piece.data.to_vec();
                bytes[0] ^= 1;
                piece.data = bytes.into();
                altered = Some(piece.chunk_length);
            }
            b.handle_frame(at, LinkId(0), &codec.encode(&frame).unwrap());
        }
        let events = exchange(&mut a, &mut b, at);
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::Delivered { bundle, .. } if *bundle == id)),
            "{events:?}"
        );
        // Of what was in flight, only the altered chunk went again.
        let again = a.stats().asked_bytes - asked;
        assert_eq!(again, u64::from(altered.unwrap()));
    }

    /// Found by fuzzing (fuzz/regressions/engine): a peer's manifest may
    /// name a chunk this node holds with a length it does not have. Serving
    /// that bundle must not ask the store's bytes for pieces past their end
    /// forever: that stalled every transfer behind it on the link.
    #[test]
    fn a_manifest_misstating_a_held_chunk_does_not_stall_the_link() {
        let (mut a, mut b, now) = a_routed_to_b(small_mtu());
        let held = vec![5u8; 200];
        let id = ferry_chunk::ChunkId::of(&held);
        let store = a.store_mut();
        store.put_chunk(id, &held).unwrap();
        let lying = Manifest::new(vec![ferry_chunk::ManifestEntry { id, len: 600 }]).unwrap();
        let lying = store.put_manifest(&lying).unwrap();
        store.sync().unwrap();
        // Submitted first: its handle is served first.
        a.submit(now, submission(Endpoint::Node(B), lying)).unwrap();
        let good = submit(&mut a, Endpoint::Node(B), &[7; 3000]);
        let events = exchange(&mut a, &mut b, now);
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::Delivered { bundle, .. } if *bundle == good)),
            "the good bundle waited behind the unservable one: {events:?}"
        );
        let a_events: Vec<Event> = std::iter::from_fn(|| a.poll_event()).collect();
        assert!(
            a_events
                .iter()
                .any(|e| matches!(e, Event::StoreFailed { detail } if detail.contains("says 600"))),
            "{a_events:?}"
        );
    }

    /// A chunk altered in flight (a hostile relay, or a bit error past the
    /// link's own checks) fails its BLAKE3 check at the receiver: it is not
    /// stored, it is asked for again, and what is delivered is the original.
    #[test]
    fn a_chunk_altered_in_flight_is_discarded_and_fetched_again() {
        let (mut a, mut b, now) = a_routed_to_b(small_mtu());
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 31 % 251) as u8).collect();
        let id = submit(&mut a, Endpoint::Node(B), &data);
        let codec = FrameCodec::new(ferry_proto::HARD_MAX_FRAME);
        let mut tampered = 0;
        let events = exchange_altering(&mut a, &mut b, now, |bytes| {
            if tampered == 0
                && let Ok(mut frame) = codec.decode_exact(&bytes)
                && let Some(Body::Chunk(piece)) = &mut frame.body
                && !piece.data.is_empty()
            {
                let mut data = piece.data.to_vec();
                data[0] ^= 0xff;
                piece.data = data.into();
                tampered += 1;
                return codec.encode(&frame).unwrap();
            }
            bytes
        });
        assert_eq!(tampered, 1);
        let manifest = events
            .iter()
            .find_map(|e| match e {
                Event::Delivered { bundle, manifest } if *bundle == id => Some(*manifest),
                _ => None,
            })
            .unwrap_or_else(|| panic!("not delivered: {events:?}"));
        let manifest = b.store().get_manifest(manifest).unwrap().unwrap();
        let mut out = Vec::new();
        ferry_chunk::reassemble(
            &manifest,
            |chunk| b.store().get_chunk(chunk).unwrap().ok_or("missing"),
            &mut out,
        )
        .unwrap();
        assert!(out == data, "what was delivered differs from what was sent");
    }

    /// A chunk corrupt in the sender's store goes out once unchecked (the
    /// receiver checks every chunk, so the sender's first read skips the
    /// hash); the receiver refuses it and asks again, and that second read,
    /// verified, finds the corruption: the sender reports it, sends it no
    /// more, and the receiver never stores the bad bytes.
    #[test]
    fn a_chunk_corrupt_at_the_sender_goes_once_and_is_found_when_asked_again() {
        let (mut a, mut b, now) = a_routed_to_b(small_mtu());
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 31 % 251) as u8).collect();
        let id = submit(&mut a, Endpoint::Node(B), &data);
        let manifest = a.bundle(&id).unwrap().header.manifest;
        let manifest = a.store().get_manifest(manifest).unwrap().unwrap();
        assert!(manifest.entries().len() > 1);
        let bad = manifest.entries()[1].id;
        assert!(a.store_mut().corrupt_chunk(bad));
        let codec = FrameCodec::new(ferry_proto::HARD_MAX_FRAME);
        let mut sent = 0;
        let events = exchange_altering(&mut a, &mut b, now, |bytes| {
            if let Ok(frame) = codec.decode_exact(&bytes)
                && let Some(Body::Chunk(piece)) = &frame.body
                && piece.chunk_index == 1
                && piece.offset == 0
            {
                sent += 1;
            }
            bytes
        });
        assert_eq!(sent, 1, "the corrupt chunk's first piece went {sent} times");
        assert!(
            !events.iter().any(|e| matches!(e, Event::Delivered { .. })),
            "{events:?}"
        );
        assert!(!b.store().has_chunk(bad).unwrap());
        let a_events: Vec<Event> = std::iter::from_fn(|| a.poll_event()).collect();
        let reported = format!("chunk {bad} unreadable");
        assert!(
            a_events
                .iter()
                .any(|e| matches!(e, Event::StoreFailed { detail } if *detail == reported)),
            "{a_events:?}"
        );
    }

    /// A receiver that holds a chunk refuses a manifest giving it another
    /// length: such a bundle could never be reassembled, so it must not
    /// take custody of it (the sender keeps it).
    #[test]
    fn a_manifest_misstating_a_chunk_the_receiver_holds_is_refused() {
        let (mut a, mut b, now) = a_routed_to_b(small_mtu());
        let held = vec![5u8; 200];
        let id = ferry_chunk::ChunkId::of(&held);
        for store in [a.store_mut(), b.store_mut()] {
            store.put_chunk(id, &held).unwrap();
            store.sync().unwrap();
        }
        let lying = Manifest::new(vec![ferry_chunk::ManifestEntry { id, len: 600 }]).unwrap();
        let lying = a.store_mut().put_manifest(&lying).unwrap();
        a.store_mut().sync().unwrap();
        let bundle = a.submit(now, submission(Endpoint::Node(B), lying)).unwrap();
        // The sender offers it again after each closed session, so the
        // two never go quiet: a few rounds show what happens.
        let events = exchange_rounds(&mut a, &mut b, now, |frame| frame);
        assert!(
            !events.iter().any(|e| matches!(
                e,
                Event::CustodyAccepted { bundle: got, .. } | Event::Delivered { bundle: got, .. }
                    if *got == bundle
            )),
            "{events:?}"
        );
        assert_closed_and_kept(&events, "that chunk has 200", (&a, &b), bundle);
    }

    /// The only manifest of 0 bytes is the empty payload's: an offer that
    /// claims 0 bytes for another manifest closes the session, and nothing
    /// is taken.
    #[test]
    fn an_offer_claiming_an_empty_manifest_for_another_is_refused() {
        let (mut a, mut b, now) = a_routed_to_b(small_mtu());
        let bundle = submit(&mut a, Endpoint::Node(B), &[7; 3000]);
        let codec = FrameCodec::new(ferry_proto::HARD_MAX_FRAME);
        let events = exchange_rounds(&mut a, &mut b, now, |bytes| {
            let mut frame = codec.decode_exact(&bytes).unwrap();
            let Some(Body::Offer(offer)) = &mut frame.body else {
                return bytes;
            };
            for offered in &mut offer.bundles {
                let header = offered.header.as_mut().unwrap();
                if header.manifest_id.is_empty() {
                    header.manifest_id = ManifestId::of_encoding(&offered.manifest)
                        .as_bytes()
                        .to_vec();
                }
                header.manifest_length = 0;
                offered.manifest.clear();
            }
            codec.encode(&frame).unwrap()
        });
        assert_closed_and_kept(&events, "0-byte manifest of another id", (&a, &b), bundle);
    }

    #[test]
    fn a_bundle_without_a_route_goes_once_routes_arrive() {
        let (mut a, mut b) = (engine(A), engine(B));
        let now = Instant(2_000_000);
        connect(&mut a, &mut b, now);
        // C is behind B, but A does not know that yet.
        let id = submit(&mut a, Endpoint::Node(C), b"for c, through b");
        assert!(a.bundles().next().unwrap().pending_hops.is_empty());
        let events = exchange(&mut a, &mut b, now);
        assert!(events.is_empty(), "{events:?}");

        a.set_routes(
            now,
            Routes {
                default_hop: Some(B),
                ..Routes::default()
            },
        );
        let events = exchange(&mut a, &mut b, now);
        assert!(
            events.iter().any(
                |e| matches!(e, Event::CustodyAccepted { bundle, from: Some(A) } if *bundle == id)
            ),
            "{events:?}"
        );
        let released: Vec<Event> = std::iter::from_fn(|| a.poll_event()).collect();
        assert!(
            released.contains(&Event::CustodyReleased { bundle: id }),
            "{released:?}"
        );
        // The route survives in the record: a restart keeps it.
        let record = BundleRecord::decode(
            &a.store()
                .get(Cf::Bundles, &id.to_key())
                .unwrap()
                .expect("record kept"),
        )
        .unwrap();
        assert!(record.pending_hops.is_empty());
        assert_eq!(record.header.id, id);

        // A change that does not concern the bundle offers nothing again.
        a.set_routes(
            now,
            Routes {
                default_hop: Some(B),
                next_hop: [(NodeId([9; 32]), B)].into(),
                ..Routes::default()
            },
        );
        assert!(a.poll_transmit(now).is_none());
    }

    #[test]
    fn a_dropped_route_is_no_longer_waited_for() {
        let mut a = engine(A);
        a.set_routes(
            Instant(0),
            Routes {
                next_hop: [(C, B)].into(),
                ..Routes::default()
            },
        );
        let id = submit(&mut a, Endpoint::Node(C), b"for c");
        assert_eq!(a.bundles().next().unwrap().pending_hops, [B].into());
        a.set_routes(Instant(0), Routes::default());
        let record = a.bundle(&id).unwrap();
        assert!(record.pending_hops.is_empty());
    }

    #[test]
    fn joining_a_group_delivers_what_is_held_for_it() {
        let (mut a, mut b) = (engine(A), engine(B));
        let now = Instant(2_000_000);
        connect(&mut a, &mut b, now);
        a.set_routes(
            now,
            Routes {
                next_hop: [(B, B)].into(),
                groups: [("leaves".to_string(), [B].into())].into(),
                ..Routes::default()
            },
        );
        let id = submit(&mut a, Endpoint::Group("leaves".into()), b"for every leaf");
        let events = exchange(&mut a, &mut b, now);
        // B holds it but is not (yet) a member: nothing delivered.
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::CustodyAccepted { bundle, .. } if *bundle == id)),
            "{events:?}"
        );
        assert!(!events.iter().any(|e| matches!(e, Event::Delivered { .. })));
        b.set_member_of(["leaves".to_string()].into());
        let events: Vec<Event> = std::iter::from_fn(|| b.poll_event()).collect();
        assert!(
            matches!(events.as_slice(), [Event::Delivered { bundle, .. }] if *bundle == id),
            "{events:?}"
        );
        assert!(b.bundle(&id).unwrap().delivered);
        // Joining again delivers nothing twice.
        b.set_member_of(["leaves".to_string()].into());
        assert!(b.poll_event().is_none());
    }
}
