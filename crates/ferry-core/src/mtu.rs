//! Fitting frames to a link's MTU, from 32-byte acoustic frames to 64 KiB.
//!
//! Data is cut to size where it is made (chunk pieces, want-lists trimmed to
//! what fits); any other frame too large for the link is sent as
//! [`v1::Fragment`]s and put together again by [`Reassembly`]. A lost
//! fragment loses its whole frame, which the engine's timers repair like any
//! lost frame.

use std::collections::BTreeMap;

use ferry_proto::v1::{self, frame::Body};
use ferry_proto::{FrameCodec, FrameError, MAX_FRAGMENTED_FRAME};

use crate::pieces::PieceBuf;

/// The smallest MTU the engine fits frames to; smaller links are treated as
/// this. A chunk piece then carries about 12 bytes, a fragment about 20.
pub const MIN_MTU: u32 = 32;

/// Frames reassembled at once per session; a newer one evicts the oldest.
const MAX_PENDING: usize = 8;

/// Encoded length of a frame whose body message is `body_len` bytes long
/// without its `bytes` field, once that field holds `data` bytes.
fn frame_len_with_data(body_len: usize, data: usize) -> usize {
    let body = if data == 0 {
        body_len
    } else {
        body_len + 1 + prost::length_delimiter_len(data) + data
    };
    // One key byte for the Frame oneof field, its length, then the body.
    let payload = 1 + prost::length_delimiter_len(body) + body;
    FrameCodec::header_len(payload) + payload
}

/// The most data bytes a frame can carry within `mtu`, given its body's
/// length without the data; at least one, so a transfer always progresses.
pub fn data_room(mtu: usize, body_len: usize) -> usize {
    let mut room = mtu.saturating_sub(body_len);
    while room > 1 && frame_len_with_data(body_len, room) > mtu {
        room -= (frame_len_with_data(body_len, room) - mtu).min(room - 1);
    }
    // Shrinking past a varint boundary can free a byte or two again.
    while frame_len_with_data(body_len, room + 1) <= mtu {
        room += 1;
    }
    room.max(1)
}

/// Cuts an encoded frame larger than `mtu` into encoded `Fragment` frames;
/// an error if it exceeds `MAX_FRAGMENTED_FRAME`.
pub fn fragment(encoded: &[u8], message: u32, mtu: usize) -> Result<Vec<Vec<u8>>, FrameError> {
    let codec = FrameCodec::new(ferry_proto::HARD_MAX_FRAME);
    let total = encoded.len() as u32;
    let mut parts = Vec::new();
    let mut offset = 0usize;
    while offset < encoded.len() {
        let empty = v1::Fragment {
            message,
            offset: offset as u32,
            total,
            data: Vec::new(),
        };
        let room = data_room(mtu, prost::Message::encoded_len(&empty));
        let end = (offset + room).min(encoded.len());
        let part = v1::Fragment {
            data: encoded[offset..end].to_vec(),
            ..empty
        };
        let frame = v1::Frame {
            body: Some(Body::Fragment(part)),
        };
        parts.push(codec.encode(&frame)?);
        offset = end;
    }
    Ok(parts)
}

/// Fragments of one session's frames being put together.
#[derive(Default)]
pub struct Reassembly {
    pending: BTreeMap<u32, PieceBuf>,
}

impl Reassembly {
    /// Adds a fragment; returns the whole encoded frame once every part of
    /// it arrived. A fragment contradicting earlier ones is an error.
    pub fn insert(&mut self, part: &v1::Fragment) -> Result<Option<Vec<u8>>, String> {
        debug_assert!(part.total <= MAX_FRAGMENTED_FRAME, "validated by the codec");
        if !self.pending.contains_key(&part.message) && self.pending.len() == MAX_PENDING {
            // The oldest frame lost a part: it is not coming.
            self.pending.pop_first();
        }
        let buf = self
            .pending
            .entry(part.message)
            .or_insert_with(|| PieceBuf::new(part.total));
        if buf.len() != part.total {
            return Err(format!(
                "fragments of frame {} disagree on its length",
                part.message
            ));
        }
        if !buf.insert(part.offset, &part.data) {
            return Err("fragment out of bounds".into());
        }
        if !buf.is_complete() {
            return Ok(None);
        }
        let buf = self.pending.remove(&part.message).expect("present");
        Ok(Some(buf.into_bytes()))
    }

    pub fn clear(&mut self) {
        self.pending.clear();
    }
}

/// Encoded size of a frame carrying `want`, without building the frame.
pub fn want_frame_len(want: &v1::WantList) -> usize {
    frame_len_with_data(prost::Message::encoded_len(want), 0)
}

/// Custody signals for `ranges`, as many ranges to a frame as fit `mtu`
/// (at least one: a range alone too large goes in fragments).
pub fn custody_signals(
    accepted: bool,
    reason: i32,
    ranges: impl IntoIterator<Item = v1::SequenceRange>,
    mtu: usize,
) -> Vec<v1::CustodySignal> {
    let empty = v1::CustodySignal {
        accepted,
        reason,
        ranges: Vec::new(),
    };
    let base = prost::Message::encoded_len(&empty);
    let mut signals = Vec::new();
    let mut signal = empty.clone();
    let mut body = base;
    for range in ranges {
        // A repeated message field: key, length, message.
        let len = prost::Message::encoded_len(&range);
        let item = 1 + prost::length_delimiter_len(len) + len;
        if !signal.ranges.is_empty() && frame_len_with_data(body + item, 0) > mtu {
            signals.push(std::mem::replace(&mut signal, empty.clone()));
            body = base;
        }
        signal.ranges.push(range);
        body += item;
    }
    if !signal.ranges.is_empty() {
        signals.push(signal);
    }
    signals
}

/// Drops the tail of a want-list until it fits `mtu`, keeping at least one
/// entry of each kind: what is dropped is asked for in the next report, and
/// the first missing chunks stay at the front.
pub fn trim_want(want: &mut v1::WantList, mtu: usize) {
    while want_frame_len(want) > mtu {
        if want.pieces.len() > 1 {
            want.pieces.pop();
        } else if want.ranges.len() > 1 {
            want.ranges.pop();
        } else if want.bitmap.len() > 1 {
            let excess = want_frame_len(want) - mtu;
            let keep = want.bitmap.len().saturating_sub(excess).max(1);
            want.bitmap.truncate(keep);
        } else if let Some(piece) = want.pieces.first_mut()
            && piece.ranges.len() > 1
        {
            piece.ranges.pop();
        } else {
            // Even the least useful report is larger: it goes in fragments.
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_proto::FrameCodec;

    fn chunk_frame(data: usize) -> v1::Frame {
        v1::Frame {
            body: Some(Body::Chunk(v1::ChunkData {
                handle: 3,
                chunk_index: 1_000,
                chunk_length: 60_000,
                offset: 50_000,
                data: vec![7; data].into(),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn data_room_fills_the_mtu_exactly() {
        for mtu in [
            32usize, 33, 100, 127, 128, 129, 130, 256, 1400, 16_400, 65_536,
        ] {
            let body = prost::Message::encoded_len(&match chunk_frame(0).body {
                Some(Body::Chunk(c)) => c,
                _ => unreachable!(),
            });
            let room = data_room(mtu, body);
            assert!(
                FrameCodec::encoded_len(&chunk_frame(room)) <= mtu,
                "mtu {mtu}"
            );
            assert!(
                FrameCodec::encoded_len(&chunk_frame(room + 1)) > mtu,
                "mtu {mtu}: room {room} is not the most that fits"
            );
        }
    }

    #[test]
    fn fragments_fit_and_reassemble_in_any_order() {
        let encoded: Vec<u8> = (0..=255u8).cycle().take(1_000).collect();
        for mtu in [32usize, 64, 256] {
            let parts = fragment(&encoded, 9, mtu).unwrap();
            assert!(parts.iter().all(|p| p.len() <= mtu), "mtu {mtu}");
            let codec = FrameCodec::new(1 << 20);
            let mut reassembly = Reassembly::default();
            let mut whole = None;
            for part in parts.iter().rev() {
                let Some(Body::Fragment(f)) = codec.decode_exact(part).unwrap().body else {
                    panic!("not a fragment");
                };
                assert!(whole.is_none(), "complete before the last part");
                whole = reassembly.insert(&f).unwrap();
            }
            assert_eq!(whole.as_deref(), Some(&encoded[..]), "mtu {mtu}");
        }
    }

    #[test]
    fn a_frame_over_the_fragment_limit_is_an_error_not_a_panic() {
        let huge = vec![0; MAX_FRAGMENTED_FRAME as usize + 1];
        assert!(fragment(&huge, 1, 1400).is_err());
    }

    #[test]
    fn conflicting_fragment_lengths_are_an_error() {
        let mut reassembly = Reassembly::default();
        let part = |total| v1::Fragment {
            message: 1,
            offset: 0,
            total,
            data: vec![1],
        };
        assert_eq!(reassembly.insert(&part(4)), Ok(None));
        assert!(reassembly.insert(&part(5)).is_err());
    }

    #[test]
    fn trimmed_want_fits_and_keeps_the_front() {
        let mut want = v1::WantList {
            handle: 1,
            ranges: (0..50)
                .map(|i| v1::IndexRange {
                    start: i * 10,
                    end: i * 10 + 3,
                })
                .collect(),
            report_serial: 4,
            ..Default::default()
        };
        trim_want(&mut want, 64);
        assert!(want_frame_len(&want) <= 64);
        assert_eq!(want.ranges[0].start, 0);
        let mut bitmap = v1::WantList {
            handle: 1,
            bitmap: vec![0xff; 500],
            ..Default::default()
        };
        trim_want(&mut bitmap, 100);
        assert!(want_frame_len(&bitmap) <= 100);
        assert!(bitmap.bitmap.len() > 80);
    }

    #[test]
    fn custody_signals_fill_frames_and_keep_every_range() {
        let ranges: Vec<v1::SequenceRange> = (0..40)
            .map(|i| v1::SequenceRange {
                source: vec![i as u8; 32],
                first: i * 10,
                last: i * 10 + 3,
            })
            .collect();
        for mtu in [32usize, 200, 1400] {
            let signals = custody_signals(true, 0, ranges.clone(), mtu);
            let sent: Vec<_> = signals.iter().flat_map(|s| s.ranges.clone()).collect();
            assert_eq!(sent, ranges, "mtu {mtu}");
            for (i, signal) in signals.iter().enumerate() {
                let len = FrameCodec::encoded_len(&v1::Frame {
                    body: Some(Body::Custody(signal.clone())),
                });
                assert!(len <= mtu || signal.ranges.len() == 1, "mtu {mtu}: {len}");
                if let Some(next) = signals.get(i + 1) {
                    // Not split early: the next range would not have fitted.
                    let mut more = signal.clone();
                    more.ranges.push(next.ranges[0].clone());
                    let more_len = FrameCodec::encoded_len(&v1::Frame {
                        body: Some(Body::Custody(more)),
                    });
                    assert!(more_len > mtu, "mtu {mtu}");
                }
            }
        }
    }

    #[test]
    fn want_frame_len_matches_the_encoded_frame() {
        let want = v1::WantList {
            handle: 300,
            ranges: vec![v1::IndexRange {
                start: 1,
                end: 90_000,
            }],
            pieces: vec![v1::PieceWant {
                chunk_index: 7,
                ranges: vec![v1::ByteRange {
                    offset: 0,
                    length: 1400,
                }],
            }],
            report_serial: 2,
            ..Default::default()
        };
        let frame = v1::Frame {
            body: Some(Body::Want(want.clone())),
        };
        assert_eq!(want_frame_len(&want), FrameCodec::encoded_len(&frame));
    }
}
