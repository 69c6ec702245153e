//! Target `volume`: removable-media volumes from a stranger, imported by a
//! node that already holds an earlier release (so manifest deltas and
//! bundle references resolve against a real store).
//!
//! The input is either a whole volume (first byte even) or, so the fuzzer
//! gets past the BLAKE3 every record carries, a list of records whose
//! hashes the harness computes (first byte odd): `kind: u8 | flags: u8 |
//! len: u16 LE | payload`; flags bit 0 spoils the hash, bit 1 on a trailer
//! replaces its payload by the right one.

use std::sync::OnceLock;
use std::time::Duration;

use ferry_chunk::ChunkId;
use ferry_core::medium::{FORMAT_VERSION, MAGIC, RecordKind};
use ferry_core::{
    Cf, Endpoint, Engine, EngineConfig, ExportOptions, Instant, MemStore, NodeId, Store,
};
use prost::Message as _;

use crate::engine::{A, B, START, check_store, submit};
use crate::input::Input;

/// The node that imports.
pub const IMPORTER: NodeId = A;

/// Trailer record (kind 5) as ferry-core writes it.
#[derive(Clone, PartialEq, prost::Message)]
struct TrailerProto {
    #[prost(uint64, tag = "1")]
    records: u64,
    #[prost(bytes = "vec", tag = "2")]
    digest: Vec<u8>,
}

/// The importer's store after an earlier trip, and volumes a real exporter
/// wrote: the first trip's, the receipts the importer sent back, and the
/// next trip's (deltas and references against what the receipts said).
pub struct Fixture {
    pub base: MemStore,
    pub volumes: Vec<(&'static str, Vec<u8>)>,
}

fn config(node: NodeId) -> EngineConfig {
    let mut config = EngineConfig::new(node, 11);
    config.member_of = ["fleet".to_owned()].into();
    config
}

fn export(b: &mut Engine<MemStore>, now: Instant, target: Endpoint) -> Vec<u8> {
    let plan = b
        .plan_export(now, target, ExportOptions::default())
        .expect("export plan");
    let mut out = Vec::new();
    plan.write_volume(0, b.store(), &mut out, |_| {})
        .expect("memory store");
    out
}

fn build_fixture() -> Fixture {
    let now = START;
    let mut a = Engine::new(config(A), MemStore::new()).expect("empty store");
    let mut b = Engine::new(config(B), MemStore::new()).expect("empty store");
    submit(&mut b, Endpoint::Node(A), 5000, 700, 1);
    submit(&mut b, Endpoint::Group("fleet".into()), 1200, 500, 5);
    let first = export(&mut b, now, Endpoint::Node(A));
    a.import_volume(now, first.as_slice())
        .expect("first trip imports");
    let mut receipts = Vec::new();
    a.export_receipts(now, &mut receipts).expect("receipts");
    let base = a.store().clone();
    b.import_volume(now, receipts.as_slice())
        .expect("receipts import");
    // The next release: mostly the same chunks, the same release text.
    submit(&mut b, Endpoint::Node(A), 5600, 700, 1);
    submit(&mut b, Endpoint::Node(A), 5000, 700, 1);
    let later = now + Duration::from_secs(60);
    let second = export(&mut b, later, Endpoint::Node(A));
    Fixture {
        base,
        volumes: vec![("first", first), ("receipts", receipts), ("second", second)],
    }
}

pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(build_fixture)
}

/// A volume from records whose hashes the harness writes.
pub fn assemble(data: &[u8]) -> Vec<u8> {
    let mut input = Input::new(data);
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    let mut checks = Vec::new();
    let mut records = 0u64;
    while !input.is_empty() {
        let kind = input.byte();
        let flags = input.byte();
        let mut payload = input.chunk().to_vec();
        if kind == RecordKind::Trailer as u8 && flags & 2 != 0 {
            payload = TrailerProto {
                records,
                digest: ChunkId::of(&checks).as_bytes().to_vec(),
            }
            .encode_to_vec();
        }
        let mut check = *ChunkId::of(&payload).as_bytes();
        if flags & 1 != 0 {
            check[0] ^= 1;
        }
        if kind != RecordKind::Trailer as u8 {
            checks.extend_from_slice(&check);
        }
        records += 1;
        out.push(kind);
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&payload);
        out.extend_from_slice(&check);
    }
    out
}

/// The records of a volume, written back in [`assemble`]'s form (hashes
/// left out; a trailer asks for the right payload). For seeds.
pub fn disassemble(volume: &[u8]) -> Vec<u8> {
    let mut out = vec![1u8];
    let mut at = 10;
    while at + 5 <= volume.len() {
        let kind = volume[at];
        let len = u32::from_be_bytes(volume[at + 1..at + 5].try_into().expect("4 bytes")) as usize;
        let Some(payload) = volume.get(at + 5..at + 5 + len) else {
            break;
        };
        let trailer = kind == RecordKind::Trailer as u8;
        out.push(kind);
        out.push(if trailer { 2 } else { 0 });
        let payload: &[u8] = if trailer { &[] } else { payload };
        out.extend_from_slice(&(payload.len() as u16).to_le_bytes());
        out.extend_from_slice(payload);
        at += 5 + len + 32;
    }
    out
}

pub fn volume(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let bytes = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        assemble(rest)
    };
    let fixture = fixture();
    let mut engine =
        Engine::new(config(IMPORTER), fixture.base.clone()).expect("the base store opens");
    let held_before = fixture
        .base
        .scan_prefix(Cf::Bundles, &[])
        .expect("memory store");
    let now = START + Duration::from_secs(120);
    // Errors are answers; only a panic or a damaged store is a failure.
    if let Ok(report) = engine.import_volume(now, bytes.as_slice()) {
        for id in &report.accepted {
            assert!(engine.bundle(id).is_some(), "accepted but not held");
        }
    }
    while engine.poll_event().is_some() {}
    let store = engine.store();
    check_store(store);
    // What was held is still held (receipts may only release next hops).
    for (key, _) in held_before {
        assert!(
            store
                .get(Cf::Bundles, &key)
                .expect("memory store")
                .is_some(),
            "a volume removed a held bundle"
        );
    }
    // Whatever it left pending names bundles by well-formed keys.
    let pending = store
        .scan_prefix(Cf::Peers, b"medium/pending/")
        .expect("memory store");
    for (key, _) in pending {
        assert_eq!(key.len(), b"medium/pending/".len() + 48);
    }
}
