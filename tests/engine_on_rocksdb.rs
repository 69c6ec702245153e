//! The engine on the real RocksDB store: a base sends a bundle to a leaf, the
//! leaf's process stops mid-transfer and reopens its store, and the transfer
//! completes from what was stored, delivered once and verified.

use std::time::Duration;

use ferry_chunk::{Chunker, ChunkerConfig, Reassembler};
use ferry_core::{
    Contact, Endpoint, Engine, EngineConfig, Event, Instant, LinkId, LinkProperties, NodeId,
    PayloadKind, Routes, Submission,
};
use ferry_sim::put_object;
use ferry_store::{RocksStore, StoreConfig};
use rand::{RngCore, SeedableRng};

const LINK: LinkId = LinkId(0);

fn props() -> LinkProperties {
    LinkProperties {
        mtu: 1400,
        rtt: Duration::from_millis(50),
        rate_bps: 0,
        reliable: true,
        pipeline: false,
    }
}

/// Moves frames both ways with no delay until `stop` holds or `budget`
/// frames have moved; advances time to the next timer when nothing moves.
fn pump(
    now: &mut Instant,
    a: &mut Engine<RocksStore>,
    b: &mut Engine<RocksStore>,
    events: &mut Vec<Event>,
    budget: usize,
    mut stop: impl FnMut(&[Event]) -> bool,
) {
    let mut moved = 0;
    while moved < budget && !stop(events) {
        let mut any = false;
        if let Some(t) = a.poll_transmit_on(*now, LINK) {
            b.handle_frame(*now, LINK, &t.frame);
            any = true;
        }
        if let Some(t) = b.poll_transmit_on(*now, LINK) {
            a.handle_frame(*now, LINK, &t.frame);
            any = true;
        }
        while let Some(event) = b.poll_event() {
            events.push(event);
        }
        while a.poll_event().is_some() {}
        if any {
            moved += 1;
            continue;
        }
        let Some(next) = [a.poll_timeout(), b.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
        else {
            return;
        };
        *now = (*now).max(next);
        a.handle_timeout(*now);
        b.handle_timeout(*now);
    }
}

#[test]
fn leaf_restarting_from_rocksdb_mid_transfer_completes_the_bundle_once() {
    let dir = tempfile::tempdir().unwrap();
    let node = |n: u8| NodeId([n; 32]);
    let mut base_config = EngineConfig::new(node(1), 1);
    base_config.routes = Routes {
        next_hop: [(node(2), node(2))].into(),
        ..Routes::default()
    };
    let leaf_config = EngineConfig::new(node(2), 2);
    let open =
        |name: &str| RocksStore::open(dir.path().join(name), StoreConfig::default()).unwrap();

    let mut base = Engine::new(base_config, open("base")).unwrap();
    let mut leaf = Engine::new(leaf_config.clone(), open("leaf")).unwrap();
    base.add_link();
    leaf.add_link();

    let mut data = vec![0u8; 3 << 20];
    rand_chacha::ChaCha8Rng::seed_from_u64(3).fill_bytes(&mut data);
    let chunker = Chunker::new(ChunkerConfig::default()).unwrap();
    let manifest = put_object(base.store_mut(), &chunker, &data).unwrap();
    let mut now = Instant::from_millis(1_700_000_000_000);
    let submission = Submission::new(
        Endpoint::Node(node(2)),
        PayloadKind::Blob,
        manifest,
        Duration::from_secs(3600),
    );
    base.submit(now, submission).unwrap();
    base.handle_contact(now, LINK, Contact::Up(props()));
    leaf.handle_contact(now, LINK, Contact::Up(props()));

    // About half of the ~2,300 data frames, then the leaf stops.
    let mut events = Vec::new();
    pump(&mut now, &mut base, &mut leaf, &mut events, 1_100, |_| {
        false
    });
    assert!(
        events.iter().all(|e| !matches!(e, Event::Delivered { .. })),
        "stopped too late to test resumption"
    );
    let entries = base
        .store()
        .get_manifest(manifest)
        .unwrap()
        .unwrap()
        .entries()
        .to_vec();
    let held_before = entries
        .iter()
        .filter(|e| leaf.store().has_chunk(e.id).unwrap())
        .count();
    drop(leaf);
    base.handle_contact(now, LINK, Contact::Down);

    let mut leaf = Engine::new(leaf_config, open("leaf")).unwrap();
    leaf.add_link();
    let held = entries
        .iter()
        .filter(|e| leaf.store().has_chunk(e.id).unwrap())
        .count();
    assert!(
        held > 0 && held == held_before,
        "{held} of {held_before} stored chunks survived the restart"
    );
    now = now + Duration::from_secs(60);
    base.handle_contact(now, LINK, Contact::Up(props()));
    leaf.handle_contact(now, LINK, Contact::Up(props()));
    let mut events = Vec::new();
    pump(
        &mut now,
        &mut base,
        &mut leaf,
        &mut events,
        100_000,
        |events| events.iter().any(|e| matches!(e, Event::Delivered { .. })),
    );
    let delivered = events
        .iter()
        .filter(|e| matches!(e, Event::Delivered { .. }))
        .count();
    assert_eq!(
        delivered, 1,
        "delivered once after the restart ({held} chunks were already stored)"
    );

    let store = leaf.store();
    let m = store.get_manifest(manifest).unwrap().unwrap();
    let mut out = Reassembler::new(&m, Vec::new());
    for entry in m.entries() {
        out.push(&store.get_chunk(entry.id).unwrap().unwrap())
            .unwrap();
    }
    assert!(out.finish().unwrap() == data, "the leaf's copy differs");
}
