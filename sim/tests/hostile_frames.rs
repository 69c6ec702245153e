//! A peer that sends well-formed but arbitrary frames mid-transfer: the
//! engine never panics, and whatever it delivers is still whole and correct
//! (a chunk that does not hash to its id is never stored).

use std::time::Duration;

use ferry_chunk::{Chunker, ChunkerConfig, Reassembler};
use ferry_core::{
    Endpoint, EngineConfig, Event, LinkId, MemStore, NodeId, PayloadKind, Routes, Store, Submission,
};
use ferry_proto::FrameCodec;
use ferry_proto::v1::{self, frame::Body};
use ferry_sim::{LinkModel, Net, put_object};
use proptest::prelude::*;
use rand::{RngCore, SeedableRng};

fn hostile_body() -> impl Strategy<Value = Body> {
    let chunk = (
        0u32..4,
        prop_oneof![0u32..64, Just(u32::MAX), any::<u32>()],
        any::<u32>(),
        any::<u32>(),
        prop::collection::vec(any::<u8>(), 1..200),
        any::<bool>(),
    )
        .prop_map(
            |(handle, chunk_index, chunk_length, offset, data, checkpoint)| {
                let chunk_length = chunk_length.max(data.len() as u32);
                let offset = offset % (chunk_length - data.len() as u32 + 1);
                Body::Chunk(v1::ChunkData {
                    handle,
                    chunk_index,
                    chunk_id: Vec::new(),
                    chunk_length,
                    offset,
                    data: data.into(),
                    checkpoint,
                    checkpoint_serial: u32::from(checkpoint),
                })
            },
        );
    let want = (
        0u32..4,
        prop::collection::vec((0u32..100, 1u32..10), 0..4),
        prop::collection::vec(any::<u8>(), 0..16),
        any::<bool>(),
        0i32..7,
    )
        .prop_map(|(handle, ranges, bitmap, complete, refused)| {
            Body::Want(v1::WantList {
                handle,
                ranges: ranges
                    .into_iter()
                    .map(|(s, n)| v1::IndexRange {
                        start: s,
                        end: s + n,
                    })
                    .collect(),
                bitmap,
                pieces: Vec::new(),
                complete,
                refused,
                report_serial: 1,
                checkpoint_seen: 0,
            })
        });
    let custody =
        (any::<bool>(), 1i32..6, 0u64..5, 0u64..5).prop_map(|(accepted, reason, first, span)| {
            Body::Custody(v1::CustodySignal {
                accepted,
                reason,
                ranges: vec![v1::SequenceRange {
                    source: vec![1; 32],
                    first,
                    last: first + span,
                }],
            })
        });
    prop_oneof![chunk, want, custody]
}

fn accepts_custody(body: &Body) -> bool {
    let redundant = v1::RefusalReason::Redundant as i32;
    match body {
        Body::Custody(signal) => signal.accepted || signal.reason == redundant,
        Body::Want(want) => want.refused == redundant,
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_frames_mid_transfer_never_panic_or_corrupt(
        seed in any::<u64>(),
        hostile in prop::collection::vec((0u64..3000, hostile_body()), 1..40),
    ) {
        let node = |n: u8| NodeId([n; 32]);
        let mut net = Net::new(seed);
        let mut base = EngineConfig::new(node(1), seed);
        base.routes = Routes { next_hop: [(node(2), node(2))].into(), ..Routes::default() };
        let b = net.add_node(base, MemStore::new());
        let r = net.add_node(EngineConfig::new(node(2), seed ^ 1), MemStore::new());
        let w = net.add_wire(b, r, LinkModel::new(1_000_000, Duration::from_millis(40), 600));
        net.set_up(w, true);
        let mut data = vec![0; 120_000];
        rand_chacha::ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut data);
        let chunker = Chunker::new(ChunkerConfig::new(1024, 4096, 16384).unwrap()).unwrap();
        let manifest = put_object(net.engine_mut(b).store_mut(), &chunker, &data).unwrap();
        let now = net.now;
        let submission = Submission::new(
            Endpoint::Node(node(2)),
            PayloadKind::Blob,
            manifest,
            Duration::from_secs(3600),
        );
        net.engine_mut(b).submit(now, submission).unwrap();
        let codec = FrameCodec::default();
        for (delay, body) in hostile {
            net.run_until(net.now + Duration::from_millis(delay));
            let bytes = codec.encode(&v1::Frame { body: Some(body.clone()) }).unwrap();
            let now = net.now;
            // Into both ends: the relay as if from the base, the base as if
            // from the relay. A forged acceptance of custody is withheld from
            // the base: it would rightly release the bundle; stopping forgery
            // is the job of authenticated sessions, not of this parser.
            net.engine_mut(r).handle_frame(now, LinkId(0), &bytes);
            if !accepts_custody(&body) {
                net.engine_mut(b).handle_frame(now, LinkId(0), &bytes);
            }
        }
        net.run_until(net.now + Duration::from_secs(600));
        // Sessions closed by bad frames start again; the bundle still arrives.
        let delivered = net.events(r).iter().filter(|(_, e)| matches!(e, Event::Delivered { .. })).count();
        prop_assert_eq!(delivered, 1, "seed {}: the transfer recovers", seed);
        for (_, event) in net.events(r) {
            if let Event::Delivered { manifest, .. } = event {
                let store = net.engine(r).store();
                let m = store.get_manifest(*manifest).unwrap().unwrap();
                let mut out = Reassembler::new(&m, Vec::new());
                for entry in m.entries() {
                    out.push(&store.get_chunk(entry.id).unwrap().unwrap()).unwrap();
                }
                prop_assert!(out.finish().unwrap() == data, "seed {}: delivered bytes differ", seed);
            }
        }
    }
}
