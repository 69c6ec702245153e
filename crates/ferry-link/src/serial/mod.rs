//! The serial convergence layer: framing, pacing and half-duplex turns for
//! byte-stream modems (acoustic modems, Iridium SBD).
//!
//! All of it is sans-IO: no I/O, no clock, no threads. A driver reads and
//! writes the serial port, passes time in as [`ferry_core::Instant`], and glues
//! the pieces together:
//!
//! - [`codec`]: each engine frame becomes `COBS(flags | payload | CRC) 0x00`;
//!   the [`Decoder`] hands back exactly the frames that arrived intact.
//! - [`pacing`]: the [`Pacer`] keeps writes to the modem's line rate.
//! - [`turns`]: [`Turns`] decides which end of a half-duplex link may talk.
//!
//! With the `serial-port` feature, [`port::SerialLink`] is the async driver
//! that does this over a real serial port (tokio-serial).
//!
//! The engine repairs lost frames itself, so this layer never retransmits.

pub mod codec;
pub mod pacing;
#[cfg(feature = "serial-port")]
pub mod port;
#[cfg(all(unix, feature = "serial-port"))]
#[doc(hidden)]
pub mod pty;
pub mod turns;

pub use codec::{
    CrcKind, DecodedFrame, Decoder, DecoderStats, DropReason, EncodeError, Encoder, LinkKey,
    SerialConfig,
};
pub use pacing::{Pacer, Slot};
pub use turns::{
    END_OF_TURN, IDLE, REPEAT_MASK, REPEATS, TurnConfig, TurnStats, Turns, repeat_index,
};

/// A configuration the serial layer cannot work with.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error(
        "modem MTU of {0} bytes is outside {min}..={max}",
        min = SerialConfig::MIN_MODEM_MTU,
        max = SerialConfig::MAX_MODEM_MTU
    )]
    ModemMtu(usize),
    #[error("line rate of {baud_bps} bit/s with {bits_per_byte} bits per byte")]
    Pacing { baud_bps: u32, bits_per_byte: u32 },
    #[error("turn timing: {0}")]
    Turns(&'static str),
}
