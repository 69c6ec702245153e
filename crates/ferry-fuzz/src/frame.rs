//! Target `frame`: ferry-proto's frame codec and wire validation, and the
//! ferry-core helpers that take decoded frames apart (fragment reassembly,
//! want-list trimming, custody signal splitting, bundle headers).

use ferry_core::mtu::{self, Reassembly};
use ferry_core::{BundleHeader, BundleRecord, NodeId};
use ferry_proto::v1::{self, frame::Body};
use ferry_proto::{
    FrameCodec, FrameError, HARD_MAX_FRAME, MAX_FRAGMENTED_FRAME, Validate, WIRE_VERSION,
};
use prost::Message as _;

/// MTUs the helpers are checked at: the smallest, a modem's, a datagram's.
const MTUS: [usize; 3] = [mtu::MIN_MTU as usize, 256, 1400];

pub fn frame(data: &[u8]) {
    // The limits a session may negotiate, from the smallest to the hardest.
    for max in [32, 256, ferry_proto::DEFAULT_MAX_FRAME, HARD_MAX_FRAME] {
        let codec = FrameCodec::new(max);
        check_one(&codec, data);
    }
    // A stream of frames, as a reliable link delivers them.
    let codec = FrameCodec::new(HARD_MAX_FRAME);
    let mut reassembly = Reassembly::default();
    let mut rest = data;
    while let Ok(decoded) = codec.decode(rest) {
        assert!(decoded.consumed > 0 && decoded.consumed <= rest.len());
        take_apart(&decoded.frame, &mut reassembly);
        rest = &rest[decoded.consumed..];
    }
}

/// Decodes `data` alone and checks what the codec says about it.
fn check_one(codec: &FrameCodec, data: &[u8]) {
    let decoded = codec.decode(data);
    let exact = codec.decode_exact(data);
    // From a shared buffer (as the daemon decodes), the same answer.
    let shared = codec.decode_exact_shared(&ferry_proto::Bytes::copy_from_slice(data));
    assert_eq!(shared, exact);
    match &decoded {
        Ok(d) => {
            assert!(d.consumed <= data.len() && d.consumed <= codec.max_frame());
            assert_eq!(codec.frame_len(data), Ok(d.consumed));
            assert_eq!(data[0], WIRE_VERSION);
            d.frame.validate().expect("a decoded frame is valid");
            match &exact {
                Ok(frame) => {
                    assert_eq!(d.consumed, data.len());
                    assert_eq!(frame, &d.frame);
                }
                Err(FrameError::TrailingBytes { extra }) => {
                    assert_eq!(*extra, data.len() - d.consumed)
                }
                Err(e) => panic!("decode accepted what decode_exact refused: {e}"),
            }
            re_encode(&d.frame);
        }
        Err(e) => {
            assert!(exact.is_err(), "decode_exact accepted what decode refused");
            if let FrameError::Incomplete { needed } = e {
                assert!(*needed > 0);
            }
        }
    }
}

/// decode → encode → decode is stable, and the encoder agrees with itself
/// about sizes.
fn re_encode(frame: &v1::Frame) {
    let codec = FrameCodec::new(HARD_MAX_FRAME);
    let bytes = codec
        .encode(frame)
        .expect("a decoded frame re-encodes under the hard limit");
    assert_eq!(bytes.len(), FrameCodec::encoded_len(frame));
    assert_eq!(codec.frame_len(&bytes), Ok(bytes.len()));
    let again = codec
        .decode_exact(&bytes)
        .expect("a re-encoded frame decodes");
    assert_eq!(&again, frame);
    // Canonical bytes are a fixed point.
    assert_eq!(codec.encode(&again).ok().as_deref(), Some(&bytes[..]));
}

/// Runs a decoded frame through what a session does with it before the
/// engine's state is involved.
fn take_apart(frame: &v1::Frame, reassembly: &mut Reassembly) {
    let Some(body) = &frame.body else {
        panic!("a decoded frame has a body");
    };
    match body {
        Body::Fragment(part) => {
            assert!(part.total <= MAX_FRAGMENTED_FRAME);
            if let Ok(Some(whole)) = reassembly.insert(part) {
                assert_eq!(whole.len(), part.total as usize);
                // What the engine does with a reassembled frame.
                if let Ok(inner) =
                    FrameCodec::new(MAX_FRAGMENTED_FRAME as usize).decode_exact(&whole)
                {
                    re_encode(&inner);
                }
            }
        }
        Body::Want(want) => {
            let framed = v1::Frame {
                body: Some(Body::Want(want.clone())),
            };
            assert_eq!(mtu::want_frame_len(want), FrameCodec::encoded_len(&framed));
            for mtu in MTUS {
                let mut trimmed = want.clone();
                mtu::trim_want(&mut trimmed, mtu);
                let fits = mtu::want_frame_len(&trimmed) <= mtu;
                let minimal = trimmed.pieces.len() <= 1
                    && trimmed.ranges.len() <= 1
                    && trimmed.bitmap.len() <= 1
                    && trimmed.pieces.first().is_none_or(|p| p.ranges.len() <= 1);
                assert!(fits || minimal, "trim_want left a long report");
                // Trimming keeps the front and never invents entries.
                assert!(want.ranges.starts_with(&trimmed.ranges));
                assert!(want.bitmap.starts_with(&trimmed.bitmap));
                trimmed.validate().expect("a trimmed valid want is valid");
            }
        }
        Body::Custody(signal) => {
            for mtu in MTUS {
                let split = mtu::custody_signals(
                    signal.accepted,
                    signal.reason,
                    signal.ranges.clone(),
                    mtu,
                );
                let ranges: Vec<_> = split.iter().flat_map(|s| s.ranges.clone()).collect();
                assert_eq!(ranges, signal.ranges, "splitting lost or reordered ranges");
                for part in &split {
                    part.validate().expect("a part of a valid signal is valid");
                    let len = FrameCodec::encoded_len(&v1::Frame {
                        body: Some(Body::Custody(part.clone())),
                    });
                    assert!(len <= mtu || part.ranges.len() == 1);
                }
            }
        }
        Body::Offer(offer) => {
            for bundle in &offer.bundles {
                let Some(proto) = &bundle.header else {
                    panic!("a valid offer has headers");
                };
                if proto.manifest_id.is_empty() {
                    continue;
                }
                let header = BundleHeader::from_proto(proto).expect("a valid header converts");
                header_round_trips(&header);
            }
        }
        Body::Hello(hello) => {
            let ours = v1::Hello {
                min_version: 1,
                max_version: 1,
                max_frame_size: u32::MAX,
                ..Default::default()
            };
            if let Ok(n) = ferry_proto::negotiate(&ours, hello) {
                assert!(n.version >= hello.min_version && n.version <= hello.max_version);
                assert!(n.max_frame_size <= hello.max_frame_size);
            }
        }
        Body::Status(report) => {
            let bundle = report.bundle.as_ref().expect("validated");
            assert!(ferry_core::BundleId::from_proto(bundle).is_some());
        }
        Body::Chunk(_) | Body::Keepalive(_) | Body::Close(_) => {}
    }
}

/// A header the engine accepted survives its own record encoding.
pub(crate) fn header_round_trips(header: &BundleHeader) {
    let proto = header.to_proto();
    assert_eq!(BundleHeader::from_proto(&proto).as_ref(), Some(header));
    let record = BundleRecord {
        header: header.clone(),
        custody_from: Some(NodeId([9; 32])),
        pending_hops: Default::default(),
        delivered: false,
    };
    let encoded = record.encode();
    assert_eq!(BundleRecord::decode(&encoded), Some(record));
    let _ = proto.encoded_len();
}
