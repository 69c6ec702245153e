//! Target `serial`: ferry-link's serial frame decoder (COBS + CRC-16,
//! CRC-32 or MAC) fed arbitrary byte streams, split anywhere.

use ferry_link::serial::{CrcKind, Decoder, DropReason, Encoder, LinkKey, SerialConfig};

use crate::input::Input;

pub fn serial(data: &[u8]) {
    let mut input = Input::new(data);
    let selector = input.byte();
    let config = SerialConfig {
        crc: [
            CrcKind::Crc32,
            CrcKind::Crc16,
            CrcKind::Mac(LinkKey([0x42; 32])),
        ][usize::from(selector) % 3],
        modem_mtu: [32, 33, 256, 340, 2048][usize::from(selector / 3) % 5],
    };
    let split = usize::from(input.u16());
    let stream = input.rest();

    let mut whole = Decoder::new(config).expect("a valid configuration");
    let all = whole.decode_all(stream);
    // The same stream in two pieces, and a byte at a time, decodes alike.
    let split = split.min(stream.len());
    let mut two = Decoder::new(config).expect("a valid configuration");
    let mut pieces = two.decode_all(&stream[..split]);
    pieces.extend(two.decode_all(&stream[split..]));
    assert_eq!(
        pieces, all,
        "splitting the stream changed what it decodes to"
    );
    assert_eq!(two.stats(), whole.stats());
    let mut bytes = Decoder::new(config).expect("a valid configuration");
    let singly: Vec<_> = stream.chunks(1).flat_map(|b| bytes.decode_all(b)).collect();
    assert_eq!(singly, all, "a byte at a time changed what it decodes to");

    // One outcome per delimiter, each counted once.
    let delimiters = stream.iter().filter(|&&b| b == 0).count();
    assert_eq!(all.len(), delimiters);
    let stats = whole.stats();
    let ok = all.iter().filter(|r| r.is_ok()).count() as u64;
    assert_eq!(stats.frames_ok, ok);
    assert_eq!(stats.dropped(), all.len() as u64 - ok);
    let count = |reason| all.iter().filter(|r| **r == Err(reason)).count() as u64;
    assert_eq!(stats.dropped_crc, count(DropReason::Crc));
    assert_eq!(stats.dropped_cobs, count(DropReason::Cobs));
    assert_eq!(stats.dropped_too_long, count(DropReason::TooLong));
    assert_eq!(stats.dropped_empty, count(DropReason::Empty));
    assert!(stats.bytes_discarded <= stream.len() as u64);

    // Whatever arrived intact fits the configuration and survives a round
    // trip through the encoder.
    let encoder = Encoder::new(config).expect("a valid configuration");
    for frame in all.iter().flatten() {
        assert!(frame.payload.len() <= config.max_payload());
        let wire = encoder
            .encode(frame.flags, &frame.payload)
            .expect("a decoded payload re-encodes");
        assert!(wire.len() <= config.modem_mtu);
        let mut again = Decoder::new(config).expect("a valid configuration");
        assert_eq!(again.decode_all(&wire), vec![Ok(frame.clone())]);
    }
}
