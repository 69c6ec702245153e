//! Decoding arbitrary bytes returns a frame or a typed error, never a panic.

use ferry_proto::v1::{self, frame::Body};
use ferry_proto::{FrameCodec, FrameError};
use proptest::prelude::*;

fn arb_frame() -> impl Strategy<Value = v1::Frame> {
    let id = proptest::collection::vec(any::<u8>(), 32);
    let chunk = (
        any::<u32>(),
        any::<u32>(),
        proptest::collection::vec(any::<u8>(), 1..300),
    )
        .prop_map(|(handle, index, data)| {
            Body::Chunk(v1::ChunkData {
                handle,
                chunk_index: index,
                chunk_id: Vec::new(),
                chunk_length: data.len() as u32 + 5,
                offset: 5,
                data: data.into(),
                checkpoint: handle % 2 == 0,
                checkpoint_serial: 0,
            })
        });
    let custody = (id.clone(), any::<u64>(), 0u64..1000).prop_map(|(source, first, span)| {
        Body::Custody(v1::CustodySignal {
            accepted: true,
            reason: 0,
            ranges: vec![v1::SequenceRange {
                source,
                first,
                last: first.saturating_add(span),
            }],
        })
    });
    let keepalive = (any::<u64>(), any::<u64>())
        .prop_map(|(sequence, time_ms)| Body::Keepalive(v1::Keepalive { sequence, time_ms }));
    let want = proptest::collection::vec((0u32..1000, 1u32..50), 0..20).prop_map(|ranges| {
        Body::Want(v1::WantList {
            handle: 1,
            ranges: ranges
                .into_iter()
                .map(|(s, n)| v1::IndexRange {
                    start: s,
                    end: s + n,
                })
                .collect(),
            ..Default::default()
        })
    });
    prop_oneof![chunk, custody, keepalive, want].prop_map(|body| v1::Frame { body: Some(body) })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_decode_to_frame_or_error(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let codec = FrameCodec::new(1024);
        if let Ok(decoded) = codec.decode(&bytes) {
            prop_assert!(decoded.consumed <= bytes.len());
        }
        let _ = codec.decode_exact(&bytes);
    }

    /// Decoding from a shared buffer agrees with decoding from a slice,
    /// frame for frame and error for error.
    #[test]
    fn shared_decoding_agrees(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let codec = FrameCodec::new(1024);
        let shared = codec.decode_exact_shared(&ferry_proto::Bytes::from(bytes.clone()));
        prop_assert_eq!(format!("{:?}", shared), format!("{:?}", codec.decode_exact(&bytes)));
    }

    #[test]
    fn random_payload_behind_valid_header_never_panics(payload in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut bytes = vec![ferry_proto::WIRE_VERSION];
        let mut len = payload.len();
        while len >= 0x80 { bytes.push((len as u8) | 0x80); len >>= 7; }
        bytes.push(len as u8);
        bytes.extend_from_slice(&payload);
        let _ = FrameCodec::default().decode(&bytes);
    }

    #[test]
    fn valid_frames_round_trip(frame in arb_frame()) {
        let codec = FrameCodec::default();
        let bytes = codec.encode(&frame).unwrap();
        prop_assert_eq!(codec.decode_exact(&bytes).unwrap(), frame.clone());
        // From a shared buffer, chunk data points into that buffer.
        let shared = ferry_proto::Bytes::from(bytes);
        let decoded = codec.decode_exact_shared(&shared).unwrap();
        if let Some(Body::Chunk(piece)) = &decoded.body && !piece.data.is_empty() {
            let within = shared.as_ptr_range();
            prop_assert!(within.contains(&piece.data.as_ptr()), "chunk data was copied");
        }
        prop_assert_eq!(decoded, frame);
    }

    #[test]
    fn every_truncation_is_incomplete(frame in arb_frame(), cut in any::<prop::sample::Index>()) {
        let codec = FrameCodec::default();
        let bytes = codec.encode(&frame).unwrap();
        let cut = cut.index(bytes.len());
        let result = codec.decode(&bytes[..cut]);
        prop_assert!(matches!(result, Err(FrameError::Incomplete { .. })), "cut at {}: {:?}", cut, result);
    }

    #[test]
    fn flipped_bytes_never_panic(frame in arb_frame(), at in any::<prop::sample::Index>(), mask in 1u8..=255) {
        let codec = FrameCodec::default();
        let mut bytes = codec.encode(&frame).unwrap();
        let at = at.index(bytes.len());
        bytes[at] ^= mask;
        let _ = codec.decode(&bytes);
    }
}
