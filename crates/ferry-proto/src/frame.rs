//! Frame codec: `[version: u8][length: LEB128 u32][protobuf Frame]`.
//!
//! Owns the byte layout of a frame and the size limit; never panics on input.

use bytes::Bytes;
use prost::Message as _;

use crate::v1::Frame;
use crate::{Validate, ValidationError};

/// The frame layout version written by this build.
pub const WIRE_VERSION: u8 = 1;
/// Default largest frame accepted (header included).
pub const DEFAULT_MAX_FRAME: usize = 1 << 20;
/// No codec accepts a frame larger than this, whatever it is configured to.
pub const HARD_MAX_FRAME: usize = 16 << 20;
/// A LEB128-encoded u32 takes at most five bytes.
const MAX_LEN_BYTES: usize = 5;

/// Why a byte string is not a frame.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// More bytes are needed; on a stream, wait for them. `needed` is a lower bound.
    #[error("incomplete frame: at least {needed} more byte(s) needed")]
    Incomplete { needed: usize },
    #[error("unsupported frame version {found} (this build speaks version {WIRE_VERSION})")]
    UnsupportedVersion { found: u8 },
    #[error("frame length field is not a valid LEB128 u32")]
    BadLength,
    #[error("frame of {length} bytes exceeds the limit of {max} bytes")]
    TooLarge { length: usize, max: usize },
    #[error("frame payload is not a valid ferry.v1.Frame: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("frame is well-formed protobuf but invalid: {0}")]
    Invalid(#[from] ValidationError),
    #[error("{extra} unexpected byte(s) after the frame")]
    TrailingBytes { extra: usize },
}

/// A frame decoded from the front of a buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub frame: Frame,
    /// Bytes of the buffer the frame occupied.
    pub consumed: usize,
}

/// Encodes and decodes frames under a maximum frame size.
#[derive(Debug, Clone, Copy)]
pub struct FrameCodec {
    max_frame: usize,
}

impl Default for FrameCodec {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME)
    }
}

impl FrameCodec {
    /// A codec that refuses frames above `max_frame` bytes (capped at [`HARD_MAX_FRAME`]).
    pub fn new(max_frame: usize) -> Self {
        Self {
            max_frame: max_frame.clamp(8, HARD_MAX_FRAME),
        }
    }

    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Bytes of header in front of a payload of `payload_len` bytes.
    pub fn header_len(payload_len: usize) -> usize {
        1 + prost::length_delimiter_len(payload_len)
    }

    /// Encoded size of `frame`, header included.
    pub fn encoded_len(frame: &Frame) -> usize {
        let payload = frame.encoded_len();
        Self::header_len(payload) + payload
    }

    /// Appends the encoded frame to `out`. Fails, leaving `out` unchanged, if
    /// the frame is invalid or larger than the limit.
    pub fn encode_into(&self, frame: &Frame, out: &mut Vec<u8>) -> Result<(), FrameError> {
        frame.validate()?;
        let payload = frame.encoded_len();
        let total = Self::header_len(payload) + payload;
        if total > self.max_frame {
            return Err(FrameError::TooLarge {
                length: total,
                max: self.max_frame,
            });
        }
        out.reserve(total);
        out.push(WIRE_VERSION);
        prost::encode_length_delimiter(payload, out).expect("a Vec grows as needed");
        frame.encode_raw(out);
        Ok(())
    }

    pub fn encode(&self, frame: &Frame) -> Result<Vec<u8>, FrameError> {
        let mut out = Vec::new();
        self.encode_into(frame, &mut out)?;
        Ok(out)
    }

    /// Decodes the frame at the front of `buf` (a stream may hold more after it).
    pub fn decode(&self, buf: &[u8]) -> Result<Decoded, FrameError> {
        let (header, total) = self.bounds(buf)?;
        let frame = Frame::decode(&buf[header..total])?;
        frame.validate()?;
        Ok(Decoded {
            frame,
            consumed: total,
        })
    }

    /// Where the frame at the front of `buf` starts (past its header) and ends.
    fn bounds(&self, buf: &[u8]) -> Result<(usize, usize), FrameError> {
        let total = self.frame_len(buf)?;
        Ok((total - self.payload_len(buf)?, total))
    }

    /// Length of the whole frame at the front of `buf`, header included,
    /// from its header alone; an error if the header is bad, the frame too
    /// large, or not all of it is in `buf`. Splits a run of frames cheaply.
    pub fn frame_len(&self, buf: &[u8]) -> Result<usize, FrameError> {
        let payload_len = self.payload_len(buf)?;
        let total = 1 + prost::length_delimiter_len(payload_len) + payload_len;
        if buf.len() < total {
            return Err(FrameError::Incomplete {
                needed: total - buf.len(),
            });
        }
        Ok(total)
    }

    fn payload_len(&self, buf: &[u8]) -> Result<usize, FrameError> {
        let Some(&version) = buf.first() else {
            return Err(FrameError::Incomplete { needed: 2 });
        };
        if version != WIRE_VERSION {
            return Err(FrameError::UnsupportedVersion { found: version });
        }
        let (payload_len, len_bytes) = get_leb128(&buf[1..])?;
        let total = (1 + len_bytes)
            .checked_add(payload_len)
            .ok_or(FrameError::BadLength)?;
        if total > self.max_frame {
            return Err(FrameError::TooLarge {
                length: total,
                max: self.max_frame,
            });
        }
        Ok(payload_len)
    }

    /// Decodes a buffer that must hold exactly one frame (a datagram).
    pub fn decode_exact(&self, buf: &[u8]) -> Result<Frame, FrameError> {
        let decoded = self.decode(buf)?;
        match buf.len() - decoded.consumed {
            0 => Ok(decoded.frame),
            extra => Err(FrameError::TrailingBytes { extra }),
        }
    }

    /// [`decode_exact`](Self::decode_exact) from a shared buffer: chunk data
    /// in the frame points into `buf` instead of being copied out of it.
    pub fn decode_exact_shared(&self, buf: &Bytes) -> Result<Frame, FrameError> {
        let (header, total) = self.bounds(buf)?;
        let frame = Frame::decode(buf.slice(header..total))?;
        frame.validate()?;
        match buf.len() - total {
            0 => Ok(frame),
            extra => Err(FrameError::TrailingBytes { extra }),
        }
    }
}

/// Reads a LEB128 u32; returns the value and the bytes it took.
fn get_leb128(buf: &[u8]) -> Result<(usize, usize), FrameError> {
    let mut value: u64 = 0;
    for (i, &byte) in buf.iter().take(MAX_LEN_BYTES).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            if value > u64::from(u32::MAX) || (i > 0 && byte == 0) {
                // Overlong or out of range: one value, one encoding.
                return Err(FrameError::BadLength);
            }
            return Ok((value as usize, i + 1));
        }
    }
    if buf.len() >= MAX_LEN_BYTES {
        Err(FrameError::BadLength)
    } else {
        Err(FrameError::Incomplete { needed: 1 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{Keepalive, frame::Body};

    fn keepalive(sequence: u64) -> Frame {
        Frame {
            body: Some(Body::Keepalive(Keepalive {
                sequence,
                time_ms: 7,
            })),
        }
    }

    #[test]
    fn leb128_round_trips_boundaries() {
        for v in [0u32, 1, 127, 128, 16_383, 16_384, u32::MAX] {
            let mut out = Vec::new();
            prost::encode_length_delimiter(v as usize, &mut out).unwrap();
            assert_eq!(out.len(), prost::length_delimiter_len(v as usize));
            assert_eq!(get_leb128(&out).unwrap(), (v as usize, out.len()));
        }
    }

    #[test]
    fn overlong_length_is_rejected() {
        // 0 encoded in two bytes.
        assert_eq!(get_leb128(&[0x80, 0x00]), Err(FrameError::BadLength));
        assert_eq!(get_leb128(&[0xff; 6]), Err(FrameError::BadLength));
    }

    #[test]
    fn frame_round_trips_and_reports_consumed() {
        let codec = FrameCodec::default();
        let mut buf = codec.encode(&keepalive(3)).unwrap();
        let len = buf.len();
        buf.extend_from_slice(&codec.encode(&keepalive(4)).unwrap());
        let first = codec.decode(&buf).unwrap();
        assert_eq!(first.frame, keepalive(3));
        assert_eq!(first.consumed, len);
        assert_eq!(codec.decode(&buf[len..]).unwrap().frame, keepalive(4));
        assert_eq!(
            codec.decode_exact(&buf),
            Err(FrameError::TrailingBytes {
                extra: buf.len() - len
            })
        );
    }

    #[test]
    fn oversized_frame_is_refused_both_ways() {
        let codec = FrameCodec::new(16);
        let big = Frame {
            body: Some(Body::Keepalive(Keepalive {
                sequence: u64::MAX,
                time_ms: u64::MAX,
            })),
        };
        assert!(matches!(
            codec.encode(&big),
            Err(FrameError::TooLarge { .. })
        ));
        let encoded = FrameCodec::default().encode(&big).unwrap();
        assert!(matches!(
            codec.decode(&encoded),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn wrong_version_is_named() {
        assert_eq!(
            FrameCodec::default().decode(&[9, 0]),
            Err(FrameError::UnsupportedVersion { found: 9 })
        );
    }

    #[test]
    fn empty_frame_body_is_invalid() {
        let codec = FrameCodec::default();
        assert!(matches!(
            codec.decode(&[WIRE_VERSION, 0]),
            Err(FrameError::Invalid(_))
        ));
    }
}
