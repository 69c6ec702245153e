//! Framing of engine frames for byte-stream modems.
//!
//! Each engine frame goes on the wire as
//!
//! ```text
//! COBS( flags: u8 | payload | CRC, little-endian ) 0x00
//! ```
//!
//! COBS removes every zero byte from the frame, so the single `0x00` that ends
//! it is an unambiguous delimiter: a receiver that joins mid-stream, or loses
//! bytes, resynchronises at the next `0x00`. The CRC covers the flags and the
//! payload; it is CRC-32 (ISO-HDLC, the usual "CRC-32") by default, or
//! CRC-16/IBM-SDLC (X.25) where every byte counts. On a channel others can
//! transmit on, [`CrcKind::Mac`] replaces the CRC with an 8-byte keyed
//! BLAKE3 tag under a key the two ends share ([`LinkKey`], derived from
//! their node keys): it catches bit errors as a CRC does, and a frame
//! injected without the key is dropped the same way. It does not stop a
//! recorded frame being replayed; the engine treats a replayed frame as the
//! duplicate it is. A frame that fails any check
//! is dropped and counted, never repaired: the engine repairs lost frames
//! itself, and this layer never retransmits.
//!
//! Both ends of a link must use the same [`SerialConfig`].
//!
//! Only a delimiter ends a frame, so noise that arrives just before a frame,
//! with no `0x00` in between, merges with it and costs that frame (dropped,
//! never delivered wrong). A driver that suspects noise on an idle line may
//! send a lone `0x00` first; the receiver counts it as [`DropReason::Empty`].
//!
//! # Sizes
//!
//! [`SerialConfig::modem_mtu`] is the number of bytes on the air per frame,
//! every overhead included. A frame of `r = 1 + payload + CRC` bytes grows
//! under COBS by at most `ceil(r / 254)` bytes, and the delimiter adds one, so
//! [`SerialConfig::max_payload`] is the largest payload with
//! `r + ceil(r / 254) + 1 <= modem_mtu`:
//!
//! | `modem_mtu` | link                 | CRC-16 | CRC-32 | MAC |
//! |------------:|----------------------|-------:|-------:|----:|
//! |          32 | smallest modem frame |     27 |     25 |  21 |
//! |         256 | acoustic modem       |    251 |    249 | 245 |
//! |         340 | Iridium SBD          |    334 |    332 | 328 |
//! |        2048 | largest accepted     |   2035 |   2033 |2029 |

use crc::{CRC_16_IBM_SDLC, CRC_32_ISO_HDLC, Crc};

use super::ConfigError;

const CRC16: Crc<u16> = Crc::<u16>::new(&CRC_16_IBM_SDLC);
const CRC32: Crc<u32> = Crc::<u32>::new(&CRC_32_ISO_HDLC);

/// The frame delimiter; COBS guarantees it appears nowhere else.
pub const DELIMITER: u8 = 0x00;

/// The key both ends of a serial link authenticate frames with
/// ([`CrcKind::Mac`]). `Debug` does not show it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct LinkKey(pub [u8; 32]);

impl std::fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkKey(..)")
    }
}

/// The check value appended to every frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CrcKind {
    /// CRC-16/IBM-SDLC (X.25): 2 bytes.
    Crc16,
    /// CRC-32/ISO-HDLC: 4 bytes.
    #[default]
    Crc32,
    /// The first 8 bytes of BLAKE3 keyed with the link's key: authenticates
    /// each frame as well as catching bit errors.
    Mac(LinkKey),
}

impl CrcKind {
    /// Bytes the check value takes on the wire.
    pub const fn size(self) -> usize {
        match self {
            CrcKind::Crc16 => 2,
            CrcKind::Crc32 => 4,
            CrcKind::Mac(_) => 8,
        }
    }

    /// The check value of `data` in the first [`size`](Self::size) bytes
    /// (CRCs little-endian).
    fn checksum(self, data: &[u8]) -> [u8; 8] {
        let mut out = [0; 8];
        match self {
            CrcKind::Crc16 => out[..2].copy_from_slice(&CRC16.checksum(data).to_le_bytes()),
            CrcKind::Crc32 => out[..4].copy_from_slice(&CRC32.checksum(data).to_le_bytes()),
            CrcKind::Mac(key) => {
                out.copy_from_slice(&blake3::keyed_hash(&key.0, data).as_bytes()[..8]);
            }
        }
        out
    }

    /// Verifies the check value at the end of `frame` and returns what it covers.
    fn check(self, frame: &[u8]) -> Option<&[u8]> {
        let (data, crc) = frame.split_at_checked(frame.len().checked_sub(self.size())?)?;
        (crc == &self.checksum(data)[..self.size()]).then_some(data)
    }
}

/// Framing parameters; both ends of a link must agree on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SerialConfig {
    /// The check value on every frame.
    pub crc: CrcKind,
    /// Bytes on the air per frame, every overhead included
    /// ([`MIN_MODEM_MTU`](Self::MIN_MODEM_MTU)..=[`MAX_MODEM_MTU`](Self::MAX_MODEM_MTU)).
    pub modem_mtu: usize,
}

impl Default for SerialConfig {
    /// CRC-32 over the acoustic modem's 256-byte frames.
    fn default() -> Self {
        SerialConfig {
            crc: CrcKind::Crc32,
            modem_mtu: 256,
        }
    }
}

impl SerialConfig {
    /// Smallest accepted [`modem_mtu`](Self::modem_mtu).
    pub const MIN_MODEM_MTU: usize = 32;
    /// Largest accepted [`modem_mtu`](Self::modem_mtu).
    pub const MAX_MODEM_MTU: usize = 2048;

    /// Checks that the configuration is usable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if (Self::MIN_MODEM_MTU..=Self::MAX_MODEM_MTU).contains(&self.modem_mtu) {
            Ok(())
        } else {
            Err(ConfigError::ModemMtu(self.modem_mtu))
        }
    }

    /// The largest engine frame that fits in one modem frame whatever its
    /// content (worst-case COBS overhead, flags, CRC and delimiter included).
    /// This is the MTU to give the engine. See the [module docs](self) for
    /// the figures at common MTUs.
    pub fn max_payload(&self) -> usize {
        self.max_raw().saturating_sub(1 + self.crc.size())
    }

    /// Bytes of the largest frame before COBS: flags, payload and CRC.
    fn max_raw(&self) -> usize {
        let budget = self.modem_mtu.saturating_sub(1); // the delimiter
        (0..=budget)
            .rev()
            .find(|&raw| cobs::max_encoding_length(raw) <= budget)
            .unwrap_or(0)
    }
}

/// Why [`Encoder::encode`] refused a payload.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EncodeError {
    #[error("payload of {len} bytes exceeds the serial maximum of {max} bytes")]
    TooLong { len: usize, max: usize },
}

/// Turns engine frames into bytes for the modem.
#[derive(Clone, Debug)]
pub struct Encoder {
    config: SerialConfig,
}

impl Encoder {
    pub fn new(config: SerialConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Encoder { config })
    }

    pub fn config(&self) -> &SerialConfig {
        &self.config
    }

    /// Frames `payload` with `flags`: the result, delimiter included, is at
    /// most `modem_mtu` bytes long.
    pub fn encode(&self, flags: u8, payload: &[u8]) -> Result<Vec<u8>, EncodeError> {
        let max = self.config.max_payload();
        if payload.len() > max {
            return Err(EncodeError::TooLong {
                len: payload.len(),
                max,
            });
        }
        let mut raw = Vec::with_capacity(1 + payload.len() + self.config.crc.size());
        raw.push(flags);
        raw.extend_from_slice(payload);
        raw.extend_from_slice(&self.config.crc.checksum(&raw)[..self.config.crc.size()]);
        let mut wire = cobs::encode_vec(&raw);
        wire.push(DELIMITER);
        debug_assert!(wire.len() <= self.config.modem_mtu);
        Ok(wire)
    }
}

/// A frame that arrived intact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedFrame {
    pub flags: u8,
    pub payload: Vec<u8>,
}

/// Why the bytes up to a delimiter were not a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum DropReason {
    /// The check value did not match: bit errors on the air.
    #[error("CRC mismatch")]
    Crc,
    /// Not a valid COBS encoding, or too short to hold flags and a CRC.
    #[error("malformed COBS frame")]
    Cobs,
    /// Longer than any frame this configuration sends: a lost delimiter
    /// merged frames, or noise; the bytes were discarded up to the delimiter.
    #[error("frame too long")]
    TooLong,
    /// Nothing between two delimiters.
    #[error("empty frame")]
    Empty,
}

/// What [`Decoder`] has seen, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecoderStats {
    /// Frames delivered intact.
    pub frames_ok: u64,
    pub dropped_crc: u64,
    pub dropped_cobs: u64,
    pub dropped_too_long: u64,
    pub dropped_empty: u64,
    /// Bytes that were not part of an intact frame, delimiters included.
    pub bytes_discarded: u64,
}

impl DecoderStats {
    /// Frames dropped for any reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_crc + self.dropped_cobs + self.dropped_too_long + self.dropped_empty
    }
}

/// Streaming decoder: takes bytes as they come off the wire, split anywhere,
/// and yields one outcome per delimiter: a [`DecodedFrame`] or a
/// [`DropReason`].
///
/// Its buffer never grows past the longest frame the configuration can
/// produce; longer runs are discarded up to the next delimiter. It never
/// panics, whatever the input.
#[derive(Clone, Debug)]
pub struct Decoder {
    config: SerialConfig,
    /// Longest frame before COBS.
    max_raw: usize,
    /// Longest frame after COBS, delimiter excluded (at most `modem_mtu - 1`).
    max_encoded: usize,
    buf: Vec<u8>,
    /// The current frame outgrew `max_encoded`: skip to the next delimiter.
    overflow: bool,
    stats: DecoderStats,
}

impl Decoder {
    pub fn new(config: SerialConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let max_raw = config.max_raw();
        let max_encoded = cobs::max_encoding_length(max_raw);
        Ok(Decoder {
            config,
            max_raw,
            max_encoded,
            buf: Vec::with_capacity(max_encoded),
            overflow: false,
            stats: DecoderStats::default(),
        })
    }

    pub fn config(&self) -> &SerialConfig {
        &self.config
    }

    pub fn stats(&self) -> &DecoderStats {
        &self.stats
    }

    /// Consumes bytes from the front of `input` up to and including the next
    /// delimiter and returns what they were, or consumes all of `input` and
    /// returns `None` if it holds no delimiter (the bytes are kept for the
    /// next call). Call it until it returns `None`:
    ///
    /// ```
    /// # use ferry_link::serial::{Decoder, Encoder, SerialConfig};
    /// let config = SerialConfig::default();
    /// let wire = Encoder::new(config)?.encode(0, b"hello")?;
    /// let mut decoder = Decoder::new(config)?;
    /// let (mut first, mut second) = wire.split_at(3);
    /// assert_eq!(decoder.decode(&mut first), None);
    /// let frame = decoder.decode(&mut second).unwrap().unwrap();
    /// assert_eq!(frame.payload, b"hello");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn decode(&mut self, input: &mut &[u8]) -> Option<Result<DecodedFrame, DropReason>> {
        let end = input.iter().position(|&b| b == DELIMITER);
        let (chunk, rest) = match end {
            Some(i) => (&input[..i], &input[i + 1..]),
            None => (&input[..], &[][..]),
        };
        *input = rest;
        if !self.overflow && self.buf.len() + chunk.len() > self.max_encoded {
            self.overflow = true;
            self.discard(self.buf.len());
            self.buf.clear();
        }
        if self.overflow {
            self.discard(chunk.len());
        } else {
            self.buf.extend_from_slice(chunk);
        }
        end.map(|_| self.finish())
    }

    /// Decodes everything in `bytes`; a frame cut off at the end is kept for
    /// the next call.
    pub fn decode_all(&mut self, mut bytes: &[u8]) -> Vec<Result<DecodedFrame, DropReason>> {
        std::iter::from_fn(|| self.decode(&mut bytes)).collect()
    }

    /// Forgets a partly received frame (e.g. when the link goes down).
    pub fn reset(&mut self) {
        self.discard(self.buf.len());
        self.buf.clear();
        self.overflow = false;
    }

    /// A delimiter ended the buffered bytes: decide what they were.
    fn finish(&mut self) -> Result<DecodedFrame, DropReason> {
        let wire_len = self.buf.len();
        let result = self.check();
        self.buf.clear();
        self.overflow = false;
        match result {
            Ok(_) => self.stats.frames_ok += 1,
            Err(reason) => {
                self.discard(wire_len + 1);
                *match reason {
                    DropReason::Crc => &mut self.stats.dropped_crc,
                    DropReason::Cobs => &mut self.stats.dropped_cobs,
                    DropReason::TooLong => &mut self.stats.dropped_too_long,
                    DropReason::Empty => &mut self.stats.dropped_empty,
                } += 1;
            }
        }
        result
    }

    /// Decodes the buffered frame in place.
    fn check(&mut self) -> Result<DecodedFrame, DropReason> {
        if self.overflow {
            return Err(DropReason::TooLong);
        }
        if self.buf.is_empty() {
            return Err(DropReason::Empty);
        }
        let len = cobs::decode_in_place(&mut self.buf).map_err(|_| DropReason::Cobs)?;
        let raw = &self.buf[..len];
        if len > self.max_raw {
            return Err(DropReason::TooLong);
        }
        if len < 1 + self.config.crc.size() {
            return Err(DropReason::Cobs);
        }
        let data = self.config.crc.check(raw).ok_or(DropReason::Crc)?;
        Ok(DecodedFrame {
            flags: data[0],
            payload: data[1..].to_vec(),
        })
    }

    fn discard(&mut self, bytes: usize) {
        self.stats.bytes_discarded += bytes as u64;
    }
}
