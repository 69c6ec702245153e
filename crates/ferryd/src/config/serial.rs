//! `[peer.serial]`: a peer reached over a serial line (an acoustic or
//! satellite modem) instead of QUIC. Every value is checked here, and the
//! section becomes the [`SerialLinkConfig`] that `serial_links` opens the
//! device with, half-duplex turn timing included.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ferry_core::LinkProperties;
use ferry_core::mtu::MIN_MTU;
use ferry_link::profile::LinkProfile;
use ferry_link::serial::port::{BITS_PER_BYTE, HalfDuplex, SerialLinkConfig};
use ferry_link::serial::{CrcKind, LinkKey, SerialConfig, TurnConfig};
use serde::Deserialize;

use crate::units::parse_rate;

/// The section as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SerialSection {
    device: PathBuf,
    baud: u32,
    line_rate: Option<String>,
    modem_mtu: Option<usize>,
    crc: Option<String>,
    peer_key: Option<String>,
    #[serde(default)]
    half_duplex: bool,
    initiator: Option<bool>,
    propagation: Option<String>,
    max_turn: Option<String>,
    guard: Option<String>,
}

/// A peer reached over a serial line, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SerialPeer {
    /// The device, its framing, pacing and (half-duplex) turn timing.
    pub link: SerialLinkConfig,
    /// Upper bound of the line's one-way delay (modem latency and
    /// propagation), from `propagation` or half the profile's round trip.
    pub propagation: Duration,
    /// With `crc = "mac"`: the peer's Ed25519 node public key. The daemon
    /// derives the link key from it and its own node key at start (until
    /// then `link.framing.crc` holds a placeholder key).
    pub peer_key: Option<[u8; 32]>,
}

impl SerialPeer {
    /// What the engine is told when the device is open.
    pub fn link_properties(&self) -> LinkProperties {
        self.link.link_properties(self.propagation)
    }
}

/// A rejected value: the field under `peer[i].serial.`, and why.
pub(super) type Rejection = (&'static str, String);

/// Turns in a default turn: long enough that the turn-around (propagation
/// and guard, each way) costs little of the line's time.
const FRAMES_PER_TURN: u32 = 16;

impl SerialSection {
    /// Checks every value; `resolve` makes a relative device path absolute.
    pub(super) fn build(
        &self,
        profile: &LinkProfile,
        resolve: impl Fn(&Path) -> PathBuf,
    ) -> Result<SerialPeer, Rejection> {
        if self.device.as_os_str().is_empty() {
            return Err((
                "device",
                "is empty; name the serial device, e.g. \"/dev/ttyUSB0\"".into(),
            ));
        }
        if self.baud == 0 {
            return Err(("baud", "must be positive".into()));
        }
        let port_rate = u64::from(self.baud) * 8 / u64::from(BITS_PER_BYTE);
        let line_rate = match &self.line_rate {
            None => None,
            Some(text) => {
                let rate = parse_rate(text).map_err(|e| ("line_rate", e))?;
                if rate > port_rate {
                    return Err((
                        "line_rate",
                        format!(
                            "{text:?} is faster than the port carries at {} baud \
                             ({port_rate} data bit/s, 8N1)",
                            self.baud
                        ),
                    ));
                }
                // Not above port_rate, which fits in a u32.
                Some(rate as u32)
            }
        };
        let crc = match self.crc.as_deref() {
            None | Some("crc32") => CrcKind::Crc32,
            Some("crc16") => CrcKind::Crc16,
            Some("mac") => CrcKind::Mac(LinkKey([0; 32])),
            Some(other) => {
                return Err(("crc", format!("{other:?} is not one of crc32, crc16, mac")));
            }
        };
        let peer_key = match (&self.peer_key, crc) {
            (Some(text), CrcKind::Mac(_)) => {
                let key: ferry_trust::PublicKey =
                    text.parse().map_err(|e: String| ("peer_key", e))?;
                Some(key.0)
            }
            (None, CrcKind::Mac(_)) => {
                return Err((
                    "peer_key",
                    "crc = \"mac\" needs the peer's node public key (ed25519:…, as its ferryd logs it at start)".into(),
                ));
            }
            (Some(_), _) => {
                return Err(("peer_key", "is used only with crc = \"mac\"".into()));
            }
            (None, _) => None,
        };
        let framing = SerialConfig {
            crc,
            modem_mtu: self.modem_mtu.unwrap_or(SerialConfig::default().modem_mtu),
        };
        if framing.validate().is_err() {
            return Err((
                "modem_mtu",
                format!(
                    "{} is outside {}..={}",
                    framing.modem_mtu,
                    SerialConfig::MIN_MODEM_MTU,
                    SerialConfig::MAX_MODEM_MTU
                ),
            ));
        }
        if framing.max_payload() < MIN_MTU as usize {
            let least = (framing.modem_mtu..=SerialConfig::MAX_MODEM_MTU)
                .find(|&m| {
                    SerialConfig {
                        modem_mtu: m,
                        ..framing
                    }
                    .max_payload()
                        >= MIN_MTU as usize
                })
                .unwrap_or(SerialConfig::MAX_MODEM_MTU);
            return Err((
                "modem_mtu",
                format!(
                    "{} leaves {} bytes per engine frame after {} framing; the engine \
                     needs {MIN_MTU} (use {least} or more)",
                    framing.modem_mtu,
                    framing.max_payload(),
                    crc_name(crc)
                ),
            ));
        }
        let propagation = match &self.propagation {
            Some(text) => parse_duration(text).map_err(|e| ("propagation", e))?,
            None => profile.rtt / 2,
        };
        let mut link = SerialLinkConfig {
            path: resolve(&self.device),
            baud_bps: self.baud,
            line_rate_bps: line_rate,
            framing,
            half_duplex: None,
        };
        if self.half_duplex {
            let Some(initiator) = self.initiator else {
                return Err((
                    "initiator",
                    "is required when half_duplex = true: set it true at exactly one \
                     end of the link and false at the other"
                        .into(),
                ));
            };
            let turns = self.turns(link.frame_airtime(), propagation)?;
            link.half_duplex = Some(HalfDuplex { initiator, turns });
        } else {
            for (field, set) in [
                ("initiator", self.initiator.is_some()),
                ("max_turn", self.max_turn.is_some()),
                ("guard", self.guard.is_some()),
            ] {
                if set {
                    return Err((field, "only applies when half_duplex = true".into()));
                }
            }
        }
        // Everything it checks was checked above, with the field named.
        link.validate()
            .map_err(|e| ("device", format!("cannot be driven as configured: {e}")))?;
        Ok(SerialPeer {
            link,
            propagation,
            peer_key,
        })
    }

    /// Turn timing for frames of `airtime` over a line of `propagation`.
    /// Both ends compute the same from the same settings.
    ///
    /// - `guard`: a fifth of the propagation delay, at least 20 ms;
    /// - `max_turn`: 16 full frames, at least four times propagation and
    ///   guard, so that passing the turn costs little of the line's time;
    /// - an end with nothing to send keeps an idle turn from
    ///   max(airtime, guard), doubling, up to half a turn before handing it
    ///   back, so two idle ends do not chatter.
    fn turns(&self, airtime: Duration, propagation: Duration) -> Result<TurnConfig, Rejection> {
        let guard = match &self.guard {
            Some(text) => parse_duration(text).map_err(|e| ("guard", e))?,
            None => (propagation / 5).max(Duration::from_millis(20)),
        };
        let max_turn = match &self.max_turn {
            Some(text) => {
                let turn = parse_duration(text).map_err(|e| ("max_turn", e))?;
                if turn < airtime * 3 {
                    return Err((
                        "max_turn",
                        format!(
                            "{text:?} is shorter than three frames' airtime ({:?} at this \
                             rate and modem_mtu)",
                            airtime * 3
                        ),
                    ));
                }
                turn
            }
            None => (airtime * FRAMES_PER_TURN).max((propagation + guard) * 4),
        };
        let idle_max = (max_turn - airtime) / 2;
        Ok(TurnConfig {
            max_turn,
            max_frame_airtime: airtime,
            propagation,
            guard,
            idle_initial: airtime.max(guard).min(idle_max),
            idle_max,
        })
    }
}

fn crc_name(crc: CrcKind) -> &'static str {
    match crc {
        CrcKind::Crc16 => "crc16",
        CrcKind::Crc32 => "crc32",
        CrcKind::Mac(_) => "mac",
    }
}

/// A duration such as `1s`, `250ms` or `1min 30s`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration (try \"1s\" or \"250ms\"): {e}"))
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use ferry_link::serial::CrcKind;

    use crate::config::{Config, ConfigError, TEMPLATE};

    const ID: &str = "0101010101010101010101010101010101010101010101010101010101010101";

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/ferry/ferryd.toml"), text)
    }

    /// A file with one acoustic peer whose serial table has `serial` in it.
    fn with_serial(serial: &str) -> String {
        format!(
            "[node]\nkey = \"k\"\n[store]\npath = \"s\"\n\
             [[peer]]\nname = \"sub-1\"\nnode_id = \"{ID}\"\nprofile = \"acoustic\"\n\
             [peer.serial]\n{serial}"
        )
    }

    fn rejected(serial: &str) -> String {
        parse(&with_serial(serial)).unwrap_err().to_string()
    }

    #[test]
    fn a_half_duplex_acoustic_peer() {
        let c = parse(&with_serial(
            "device = \"/dev/ttyUSB0\"\nbaud = 19200\nline_rate = \"80 bit/s\"\n\
             modem_mtu = 64\ncrc = \"crc16\"\nhalf_duplex = true\ninitiator = true\n\
             propagation = \"1s\"\n",
        ))
        .unwrap();
        let peer = &c.peers[0];
        assert_eq!(peer.quic, None);
        let serial = peer.serial.as_ref().expect("a serial peer");
        let link = &serial.link;
        assert_eq!(link.path, Path::new("/dev/ttyUSB0"));
        assert_eq!(link.baud_bps, 19200);
        assert_eq!(link.line_rate_bps, Some(80));
        assert_eq!(link.framing.modem_mtu, 64);
        assert_eq!(link.framing.crc, CrcKind::Crc16);
        assert_eq!(serial.propagation, Duration::from_secs(1));
        // 64 bytes at 80 data bits per second.
        assert_eq!(link.frame_airtime(), Duration::from_millis(6400));
        let half = link.half_duplex.expect("half duplex");
        assert!(half.initiator);
        let turns = half.turns;
        assert_eq!(turns.max_frame_airtime, link.frame_airtime());
        assert_eq!(turns.propagation, Duration::from_secs(1));
        assert_eq!(turns.guard, Duration::from_millis(200));
        assert_eq!(turns.max_turn, link.frame_airtime() * 16);
        turns.validate().unwrap();
        assert!(turns.idle_initial <= turns.idle_max);
        let props = serial.link_properties();
        assert_eq!(props.mtu as usize, link.max_payload());
        assert!(!props.reliable);
        // Two frames, two propagation delays and two turns with their guards.
        assert!(props.rtt > 2 * (turns.max_turn + Duration::from_secs(1)));
    }

    #[test]
    fn defaults_are_a_full_duplex_port_with_acoustic_frames() {
        let c = parse(&with_serial("device = \"ttyS0\"\nbaud = 115200\n")).unwrap();
        let serial = c.peers[0].serial.as_ref().unwrap();
        let link = &serial.link;
        // Relative paths are taken from the file's directory, like any other.
        assert_eq!(link.path, Path::new("/etc/ferry/ttyS0"));
        assert_eq!(link.line_rate_bps, None);
        assert_eq!(link.framing.modem_mtu, 256);
        assert_eq!(link.framing.crc, CrcKind::Crc32);
        assert_eq!(link.half_duplex, None);
        // Half the acoustic profile's 2 s round trip.
        assert_eq!(serial.propagation, Duration::from_secs(1));
        assert_eq!(serial.link_properties().mtu, 249);
    }

    #[test]
    fn half_duplex_timing_can_be_set() {
        let c = parse(&with_serial(
            "device = \"/dev/ttyS0\"\nbaud = 115200\nhalf_duplex = true\ninitiator = false\n\
             propagation = \"30ms\"\nmax_turn = \"500ms\"\nguard = \"50ms\"\n",
        ))
        .unwrap();
        let half = c.peers[0]
            .serial
            .as_ref()
            .unwrap()
            .link
            .half_duplex
            .unwrap();
        assert!(!half.initiator);
        assert_eq!(half.turns.max_turn, Duration::from_millis(500));
        assert_eq!(half.turns.guard, Duration::from_millis(50));
        half.turns.validate().unwrap();
    }

    #[test]
    fn bad_serial_values_name_the_key_and_the_reason() {
        let dev = "device = \"/dev/ttyUSB0\"\n";
        let cases = [
            (
                format!("{dev}baud = 9600\nmodem_mtu = 4096\n"),
                "peer[0].serial.modem_mtu: 4096 is outside 32..=2048",
            ),
            (
                format!("{dev}baud = 9600\nmodem_mtu = 32\n"),
                "peer[0].serial.modem_mtu: 32 leaves 25 bytes",
            ),
            (
                format!("{dev}baud = 9600\nmodem_mtu = 38\n"),
                "peer[0].serial.modem_mtu: 38 leaves 31 bytes per engine frame after crc32 \
                 framing; the engine needs 32 (use 39 or more)",
            ),
            (
                format!("{dev}baud = 9600\nmodem_mtu = 36\ncrc = \"crc16\"\n"),
                "(use 37 or more)",
            ),
            (
                format!("{dev}baud = 9600\nhalf_duplex = true\n"),
                "peer[0].serial.initiator: is required when half_duplex = true",
            ),
            (
                format!("{dev}baud = 9600\ncrc = \"mac\"\n"),
                "peer[0].serial.peer_key: crc = \"mac\" needs the peer's node public key",
            ),
            (
                format!(
                    "{dev}baud = 9600\npeer_key = \"ed25519:d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a\"\n"
                ),
                "peer[0].serial.peer_key: is used only with crc = \"mac\"",
            ),
            (
                format!(
                    "{dev}baud = 9600\ncrc = \"mac\"\npeer_key = \"ed25519:d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a\"\n"
                ),
                "peer[0].serial.peer_key: is not the key of node_id",
            ),
            (
                format!(
                    "{dev}baud = 9600\nmodem_mtu = 42\ncrc = \"mac\"\npeer_key = \"ed25519:d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a\"\n"
                ),
                "after mac framing; the engine needs 32 (use 43 or more)",
            ),
            (
                format!("{dev}baud = 9600\ninitiator = true\n"),
                "peer[0].serial.initiator: only applies when half_duplex",
            ),
            (
                format!("{dev}baud = 9600\nmax_turn = \"1s\"\n"),
                "peer[0].serial.max_turn: only applies when half_duplex",
            ),
            (
                "device = \"\"\nbaud = 9600\n".into(),
                "peer[0].serial.device: is empty",
            ),
            (
                format!("{dev}baud = 0\n"),
                "peer[0].serial.baud: must be positive",
            ),
            (
                format!("{dev}baud = 9600\ncrc = \"md5\"\n"),
                "peer[0].serial.crc: \"md5\" is not one of crc32, crc16, mac",
            ),
            (
                format!("{dev}baud = 9600\nline_rate = \"9600 bit/s\"\n"),
                "peer[0].serial.line_rate: \"9600 bit/s\" is faster than the port",
            ),
            (
                format!("{dev}baud = 9600\nline_rate = \"slow\"\n"),
                "peer[0].serial.line_rate: \"slow\" is not a rate",
            ),
            (
                format!("{dev}baud = 9600\npropagation = \"soon\"\n"),
                "peer[0].serial.propagation: \"soon\" is not a duration",
            ),
            (
                format!(
                    "{dev}baud = 9600\nhalf_duplex = true\ninitiator = true\nmax_turn = \"100ms\"\n"
                ),
                "peer[0].serial.max_turn: \"100ms\" is shorter than three frames' airtime",
            ),
            (
                format!(
                    "{dev}baud = 9600\nhalf_duplex = true\ninitiator = true\nguard = \"-1s\"\n"
                ),
                "peer[0].serial.guard:",
            ),
        ];
        for (serial, expected) in cases {
            let err = rejected(&serial);
            assert!(err.contains(expected), "expected {expected:?}, got {err}");
        }
        // The smallest frames the engine can use.
        for (mtu, crc) in [(39, "crc32"), (37, "crc16")] {
            let c = parse(&with_serial(&format!(
                "{dev}baud = 9600\nmodem_mtu = {mtu}\ncrc = \"{crc}\"\n"
            )))
            .unwrap();
            assert_eq!(
                c.peers[0].serial.as_ref().unwrap().link_properties().mtu,
                32
            );
        }
        // Unknown keys in the table are refused by name.
        let err = rejected(&format!("{dev}baud = 9600\nparity = \"even\"\n"));
        assert!(err.contains("parity"), "{err}");
    }

    #[test]
    fn a_peer_is_reached_over_quic_or_serial_not_both() {
        let text = with_serial("device = \"/dev/ttyUSB0\"\nbaud = 9600\n").replace(
            "profile = \"acoustic\"\n",
            "profile = \"acoustic\"\nquic = \"127.0.0.1:7410\"\n",
        );
        let err = parse(&text).unwrap_err().to_string();
        assert!(
            err.contains("peer[0].serial: a peer is reached over QUIC or over a serial line"),
            "{err}"
        );
    }

    #[test]
    fn the_templates_serial_example_parses() {
        // The commented example peer, uncommented.
        let start = TEMPLATE.find("# [[peer]]\n# name = \"sub-1\"").unwrap();
        let example: String = TEMPLATE[start..]
            .lines()
            .take_while(|l| l.starts_with("# "))
            .map(|l| format!("{}\n", &l[2..]))
            .collect::<String>()
            .replace("<64 hex digits>", ID);
        let text = format!("[node]\nkey = \"k\"\n[store]\npath = \"s\"\n{example}");
        let c = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let serial = c.peers[0].serial.as_ref().unwrap();
        assert_eq!(serial.link.framing.modem_mtu, 64);
        assert!(serial.link.half_duplex.unwrap().initiator);
    }
}
