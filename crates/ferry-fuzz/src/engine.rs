//! Target `engine`: frames from a hostile peer, fed to a real engine that
//! holds a bundle for that peer and has a session with it — the paths that
//! take want-lists, chunk pieces, offers and custody signals apart.
//!
//! The engine is deterministic (seeded, no clock), so a recorded exchange
//! with a real peer replays exactly: the seed corpus is such recordings.

use std::time::Duration;

use ferry_chunk::{ChunkId, Manifest, ManifestEntry};
use ferry_core::{
    Cf, Contact, Endpoint, Engine, EngineConfig, Instant, LinkId, LinkProperties, MemStore, NodeId,
    PayloadKind, Priority, Routes, Store, Submission,
};
use ferry_proto::FrameCodec;

use crate::input::Input;

/// The engine under test.
pub const A: NodeId = NodeId([1; 32]);
/// The peer whose frames the fuzzer writes.
pub const B: NodeId = NodeId([2; 32]);
pub const START: Instant = Instant(2_000_000);
/// A driver hands the engine at most this many frames per step.
const MAX_DRAIN: usize = 20_000;

/// What a step of the input does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// A frame from the peer: the next length-prefixed chunk.
    Frame,
    /// Time passes: the next u16 in milliseconds, then timers run.
    Wait,
    /// The link goes down and up again.
    Bounce,
}

impl Op {
    pub fn from_byte(b: u8) -> Self {
        match b % 8 {
            0..=5 => Op::Frame,
            6 => Op::Wait,
            _ => Op::Bounce,
        }
    }

    pub fn to_byte(self) -> u8 {
        match self {
            Op::Frame => 0,
            Op::Wait => 6,
            Op::Bounce => 7,
        }
    }
}

/// Link properties chosen by the input's first byte.
pub fn props(selector: u8) -> LinkProperties {
    LinkProperties {
        mtu: [32, 256, 1400, 1 << 20][usize::from(selector & 3)],
        rtt: Duration::from_millis(100),
        reliable: selector & 4 != 0,
        rate_bps: 0,
        pipeline: selector & 8 != 0,
    }
}

fn engine(node: NodeId, seed: u64, peer: NodeId) -> Engine<MemStore> {
    let mut config = EngineConfig::new(node, seed);
    config.routes = Routes {
        next_hop: [(peer, peer)].into(),
        groups: [("fleet".to_owned(), [peer].into())].into(),
        ..Routes::default()
    };
    config.member_of = ["fleet".to_owned()].into();
    Engine::new(config, MemStore::new()).expect("an empty store opens")
}

/// `len` bytes cut into `piece`-byte chunks, stored, and submitted for `to`.
pub fn submit(engine: &mut Engine<MemStore>, to: Endpoint, len: usize, piece: usize, salt: u8) {
    let data: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt))
        .collect();
    let store = engine.store_mut();
    let mut entries = Vec::new();
    for bytes in data.chunks(piece) {
        let id = ChunkId::of(bytes);
        store.put_chunk(id, bytes).expect("memory store");
        entries.push(ManifestEntry {
            id,
            len: bytes.len() as u32,
        });
    }
    let manifest = Manifest::new(entries).expect("no empty chunk");
    let manifest = store.put_manifest(&manifest).expect("memory store");
    store.sync().expect("memory store");
    engine
        .submit(
            START,
            Submission {
                destination: to,
                lifetime: Duration::from_secs(3600),
                priority: Priority::Normal,
                kind: PayloadKind::Blob,
                manifest,
                release: b"release".to_vec(),
                signature: Vec::new(),
            },
        )
        .expect("a stored payload submits");
}

/// Two engines with a session up; `a` holds a bundle for `b`, `b` one for
/// `a` (neither offered yet: the handshake ran before they were made).
pub fn setup(selector: u8) -> (Engine<MemStore>, Engine<MemStore>) {
    let mut a = engine(A, 7, B);
    let mut b = engine(B, 8, A);
    for e in [&mut a, &mut b] {
        let link = e.add_link();
        e.handle_contact(START, link, Contact::Up(props(selector)));
    }
    for _ in 0..100 {
        let mut moved = false;
        while let Some(t) = a.poll_transmit(START) {
            b.handle_frame(START, LinkId(0), &t.frame);
            moved = true;
        }
        while let Some(t) = b.poll_transmit(START) {
            a.handle_frame(START, LinkId(0), &t.frame);
            moved = true;
        }
        if !moved {
            break;
        }
    }
    submit(&mut a, Endpoint::Node(B), 3000, 700, 1);
    submit(&mut b, Endpoint::Node(A), 2500, 600, 2);
    submit(&mut b, Endpoint::Group("fleet".into()), 900, 900, 3);
    (a, b)
}

pub fn engine_target(data: &[u8]) {
    replay(data);
}

/// Feeds the input to a fresh engine; the engine afterwards.
pub fn replay(data: &[u8]) -> Engine<MemStore> {
    let mut input = Input::new(data);
    let selector = input.byte();
    let props = props(selector);
    let (mut a, _) = setup(selector);
    let mut now = START;
    let link = LinkId(0);
    drain(&mut a, now, props.mtu as usize);
    while !input.is_empty() {
        match Op::from_byte(input.byte()) {
            Op::Frame => a.handle_frame(now, link, input.chunk()),
            Op::Wait => {
                now = now + Duration::from_millis(u64::from(input.u16()));
                a.handle_timeout(now);
            }
            Op::Bounce => {
                a.handle_contact(now, link, Contact::Down);
                a.handle_contact(now, link, Contact::Up(props.clone()));
            }
        }
        drain(&mut a, now, props.mtu as usize);
    }
    check_store(a.store());
    a
}

/// Takes what the engine sends: every frame fits the MTU and decodes.
fn drain(a: &mut Engine<MemStore>, now: Instant, mtu: usize) {
    let codec = FrameCodec::new(ferry_proto::HARD_MAX_FRAME);
    for _ in 0..MAX_DRAIN {
        let Some(t) = a.poll_transmit(now) else { break };
        assert!(
            t.frame.len() <= mtu,
            "a {}-byte frame on a {mtu}-byte link",
            t.frame.len()
        );
        codec
            .decode_exact(&t.frame)
            .expect("the engine emits valid frames");
    }
    while a.poll_event().is_some() {}
}

/// Custody only of what is whole: every bundle record decodes, and its
/// manifest and every chunk of it are held, verify, and have the length
/// the manifest gives them (`regressions/engine/misstated-chunk-length`).
pub(crate) fn check_store(store: &MemStore) {
    let records = store.scan_prefix(Cf::Bundles, &[]).expect("memory store");
    for (key, value) in records {
        let record = ferry_core::BundleRecord::decode(&value).expect("a bundle record decodes");
        assert_eq!(&record.header.id.to_key()[..], &key[..]);
        let manifest = store
            .get_manifest(record.header.manifest)
            .expect("memory store")
            .expect("a held bundle's manifest is held");
        assert_eq!(manifest.total_length(), record.header.payload_len);
        for entry in manifest.entries() {
            let chunk = store
                .get_chunk(entry.id)
                .expect("stored chunks verify")
                .expect("a held bundle's chunks are held");
            assert_eq!(chunk.len(), entry.len as usize);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The recorded exchanges do what they did with the real peer: the
    /// engine takes custody of both bundles the peer sent, and the peer's
    /// custody signal releases the one it sent.
    #[test]
    fn recorded_exchanges_replay() {
        for (target, name, bytes) in crate::seeds::all() {
            if target != "engine" || name == "seed-bounce" {
                continue;
            }
            let a = replay(&bytes);
            let held: Vec<_> = a.bundles().collect();
            assert_eq!(held.len(), 3, "{name}");
            let from_b = held.iter().filter(|r| r.header.id.source == B).count();
            assert_eq!(from_b, 2, "{name}");
            let own = held
                .iter()
                .find(|r| r.header.id.source == A)
                .expect("own bundle");
            assert!(own.pending_hops.is_empty(), "{name}: custody not released");
        }
    }
}
