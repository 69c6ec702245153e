//! A two-hop ferry network (base → relay → leaf) on ferry-sim's virtual
//! clock carrying Git releases: the base publishes with ferry-git, the
//! engines move the bundles (real `ferry-core`, optional frame loss), and
//! the leaf applies each delivered release with ferry-git into a real bare
//! repository. Shared by `tests/git_replay.rs` and `benches/git_replay.rs`.
#![allow(dead_code)] // each includer uses part of it

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use ferry_chunk::{Chunker, ChunkerConfig};
use ferry_core::{BundleId, Endpoint, Event, NodeId, PayloadKind, Priority, Store, Submission};
use ferry_git::{Applier, ApplyOutcome, DestinationState, GitRelease, Publisher};
use ferry_proto::FrameCodec;
use ferry_proto::v1::frame::Body;
use ferry_sim::{Chain, LinkModel, Net, WireId, put_object};

pub struct TwoHop {
    pub net: Net,
    base: usize,
    leaf: usize,
    /// base ↔ relay.
    pub first_hop: WireId,
    pub second_hop: WireId,
    chunker: Chunker,
    pub publisher: Publisher,
    pub state: DestinationState,
    pub applier: Applier,
    delivered: usize,
}

/// What one published step cost and did.
pub struct StepOutcome {
    pub outcome: ApplyOutcome,
    pub payload_bytes: usize,
    pub release_bytes: usize,
}

fn node(n: u8) -> NodeId {
    NodeId([n; 32])
}

impl TwoHop {
    /// `loss` is the Bernoulli frame loss on both hops (each direction).
    pub fn new(seed: u64, loss: f64, publisher: Publisher, served: &Path) -> Self {
        let mut model = LinkModel::new(2_000_000, Duration::from_millis(80), 1400);
        model.loss = ferry_sim::Loss::Bernoulli(loss);
        let Chain {
            mut net,
            base: b,
            leaf: l,
            first_hop: w1,
            last_hop: w2,
            ..
        } = Chain::new(seed, model);
        // Let the sessions' Hellos pass before the first release.
        let settle = net.now + Duration::from_secs(5);
        net.run_until(settle);
        Self {
            net,
            base: b,
            leaf: l,
            first_hop: w1,
            second_hop: w2,
            chunker: Chunker::new(ChunkerConfig::default()).expect("default chunker config"),
            publisher,
            state: DestinationState::default(),
            applier: Applier::new(served).expect("served root"),
            delivered: 0,
        }
    }

    /// Bytes both directions of a wire carried so far.
    pub fn wire_bytes(&self, wire: WireId) -> u64 {
        let s = self.net.stats(wire);
        s.bytes[0] + s.bytes[1]
    }

    /// Publishes what changed in the publisher's repository, carries it to
    /// the leaf and applies it there. `None` when nothing changed.
    pub fn step(&mut self) -> Option<StepOutcome> {
        let now_ms = self.net.now.as_millis().max(1);
        let publication = self
            .publisher
            .publish(&self.state, now_ms)
            .expect("publish")?;
        let release = publication.release.encode();
        let manifest = put_object(
            self.net.engine_mut(self.base).store_mut(),
            &self.chunker,
            &publication.payload,
        )
        .expect("memory store");
        let now = self.net.now;
        let bundle = self
            .net
            .engine_mut(self.base)
            .submit(
                now,
                Submission {
                    destination: Endpoint::Node(node(3)),
                    lifetime: Duration::from_secs(30 * 24 * 3600),
                    priority: Priority::Normal,
                    kind: PayloadKind::Git,
                    manifest,
                    release: release.clone(),
                    signature: Vec::new(),
                },
            )
            .expect("submit");
        self.state.record_sent(&publication);
        let (base, leaf, want) = (self.base, self.leaf, self.delivered + 1);
        let released = |net: &Net| {
            net.events(base)
                .iter()
                .any(|(_, e)| matches!(e, Event::CustodyReleased { bundle: b } if *b == bundle))
        };
        let delivered = |net: &Net| {
            net.events(leaf)
                .iter()
                .filter(|(_, e)| matches!(e, Event::Delivered { .. }))
                .count()
        };
        let limit = self.net.now + Duration::from_secs(24 * 3600);
        assert!(
            self.net
                .run_while(limit, |net| delivered(net) < want || !released(net)),
            "seed {}: release {} ({} payload bytes) never arrived; base events {:?}",
            self.net.seed(),
            publication.release.sequence,
            publication.payload.len(),
            self.net
                .events(base)
                .iter()
                .rev()
                .take(4)
                .collect::<Vec<_>>()
        );
        // Custody taken by the next hop: the release is confirmed.
        self.state.confirm(publication.release.sequence);
        self.delivered = want;
        let (id, manifest) = self
            .net
            .events(leaf)
            .iter()
            .filter_map(|(_, e)| match e {
                Event::Delivered { bundle, manifest } => Some((*bundle, *manifest)),
                _ => None,
            })
            .nth(want - 1)
            .expect("counted above");
        let outcome = self.apply_delivered(id, manifest);
        Some(StepOutcome {
            outcome,
            payload_bytes: publication.payload.len(),
            release_bytes: release.len(),
        })
    }

    /// Reads a delivered bundle's release and payload out of the leaf's
    /// store and applies them.
    fn apply_delivered(&mut self, id: BundleId, manifest: ferry_chunk::ManifestId) -> ApplyOutcome {
        let engine = self.net.engine(self.leaf);
        let record = engine.bundle(&id).expect("a delivered bundle is held");
        assert_eq!(record.header.kind, PayloadKind::Git);
        let release = GitRelease::decode(&record.header.release).expect("release decodes");
        let store = engine.store();
        let manifest = store
            .get_manifest(manifest)
            .expect("store")
            .expect("manifest held");
        let mut payload = Vec::with_capacity(manifest.total_length() as usize);
        for span in manifest.spans() {
            payload.extend(
                store
                    .get_chunk(span.id)
                    .expect("store")
                    .expect("chunk held"),
            );
        }
        self.applier
            .apply(&release, &mut payload.as_slice())
            .expect("apply")
    }

    /// Bytes on the first hop by frame type, when transmissions are recorded.
    pub fn breakdown(&self) -> BTreeMap<&'static str, u64> {
        let codec = FrameCodec::new(ferry_proto::HARD_MAX_FRAME);
        let mut by = BTreeMap::new();
        for t in self.net.transmissions() {
            if t.wire != self.first_hop {
                continue;
            }
            let kind = match codec.decode_exact(&t.frame).ok().and_then(|f| f.body) {
                Some(Body::Hello(_)) => "hello",
                Some(Body::Offer(_)) => "offer",
                Some(Body::Want(_)) => "want",
                Some(Body::Chunk(_)) => "chunk",
                Some(Body::Custody(_)) => "custody",
                Some(Body::Status(_)) => "status",
                Some(Body::Keepalive(_)) => "keepalive",
                Some(Body::Close(_)) => "close",
                Some(Body::Fragment(_)) => "fragment",
                None => "undecodable",
            };
            *by.entry(kind).or_default() += t.frame.len() as u64;
        }
        by
    }
}
