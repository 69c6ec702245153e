//! The async serial driver over pseudo-terminals: round trips, an impaired
//! line (loss and bit errors), pacing, half-duplex turns, and errors.
#![cfg(all(unix, feature = "serial-port"))]

use std::time::Duration;

use ferry_link::serial::TurnConfig;
use ferry_link::serial::port::{HalfDuplex, SerialError, SerialLink, SerialLinkConfig, WRITE_LEAD};
use ferry_link::serial::pty::{Direction, Impairment, LineRelay, PtyPair};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::io::AsyncReadExt;

/// Fast enough for quick tests, slow enough that pacing matters.
const BAUD: u32 = 1_000_000;

fn config(name: &str, baud: u32) -> SerialLinkConfig {
    SerialLinkConfig::new(name, baud)
}

/// Frame `index`: its index, then bytes from a generator seeded by it, of
/// a length from 5 to `max` chosen by `seed`.
fn frame(seed: u64, index: u32, max: usize) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (u64::from(index) << 20));
    let len = rng.random_range(5..=max);
    let mut frame = index.to_be_bytes().to_vec();
    frame.resize(len, 0);
    rng.fill_bytes(&mut frame[4..]);
    frame
}

/// Two links over one PTY: the device end and the master end.
fn linked_pair(baud: u32) -> (SerialLink, SerialLink) {
    let (near, far) = PtyPair::open().unwrap().into_streams();
    let a = SerialLink::new(near, config("pty-near", baud)).unwrap();
    let b = SerialLink::new(far, config("pty-far", baud)).unwrap();
    (a, b)
}

/// Two links on two PTYs joined by a relay: A ─ relay ─ B.
fn relayed(a: SerialLinkConfig, b: SerialLinkConfig, line: Impairment, seed: u64) -> Relayed {
    let (near_a, far_a) = PtyPair::open().unwrap().into_streams();
    let (near_b, far_b) = PtyPair::open().unwrap().into_streams();
    Relayed {
        relay: LineRelay::start(far_a, far_b, line, line, seed),
        a: SerialLink::new(near_a, a).unwrap(),
        b: SerialLink::new(near_b, b).unwrap(),
    }
}

struct Relayed {
    relay: LineRelay,
    a: SerialLink,
    b: SerialLink,
}

async fn send_all(link: &SerialLink, frames: &[Vec<u8>]) {
    for frame in frames {
        link.send(frame.clone()).await.unwrap();
    }
}

/// Sends as an engine driver does: each frame only once the link is ready.
async fn send_when_ready(link: &SerialLink, frames: &[Vec<u8>]) {
    for frame in frames {
        link.ready().await.unwrap();
        link.send(frame.clone()).await.unwrap();
    }
}

async fn recv_n(link: &SerialLink, n: usize) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    while got.len() < n {
        got.push(link.recv().await.unwrap().expect("link closed early"));
    }
    got
}

#[tokio::test]
async fn frames_round_trip_over_a_pty_pair() {
    let (a, b) = linked_pair(BAUD);
    let max = a.max_payload();
    let to_b: Vec<Vec<u8>> = (0..40).map(|i| frame(1, i, max)).collect();
    let to_a: Vec<Vec<u8>> = (0..40).map(|i| frame(2, i, max)).collect();
    let ((), (), at_b, at_a) = tokio::join!(
        send_all(&a, &to_b),
        send_all(&b, &to_a),
        recv_n(&b, to_b.len()),
        recv_n(&a, to_a.len()),
    );
    assert_eq!(at_b, to_b);
    assert_eq!(at_a, to_a);

    let sent = a.stats();
    let received = b.stats();
    let payload: u64 = to_b.iter().map(|f| f.len() as u64).sum();
    assert_eq!(sent.frames_sent, 40);
    assert_eq!(sent.payload_bytes_sent, payload);
    assert!(
        sent.bytes_sent > payload + 40 * 6,
        "framing overhead counted"
    );
    assert_eq!(received.frames_received, 40);
    assert_eq!(received.payload_bytes_received, payload);
    assert_eq!(received.bytes_received, sent.bytes_sent);
    assert_eq!(received.decoder.frames_ok, 40);
    assert_eq!(received.decoder.dropped(), 0);
}

#[tokio::test]
async fn opens_a_device_by_path() {
    let pty = PtyPair::open().unwrap();
    let path = pty.path().to_owned();
    // The near end stays open (unused) so the master never sees a hang-up.
    let (_near, far) = pty.into_streams();
    let device = SerialLink::open(config(path.to_str().unwrap(), 115_200)).unwrap();
    let modem = SerialLink::new(far, config("modem", 115_200)).unwrap();
    assert_eq!(device.device(), path);

    device.send(b"from the device".to_vec()).await.unwrap();
    assert_eq!(
        modem.recv().await.unwrap().as_deref(),
        Some(&b"from the device"[..])
    );
    modem.send(b"from the modem".to_vec()).await.unwrap();
    assert_eq!(
        device.recv().await.unwrap().as_deref(),
        Some(&b"from the modem"[..])
    );
}

#[tokio::test]
async fn opening_a_missing_device_names_it() {
    let err = SerialLink::open(config("/dev/does-not-exist", 9600))
        .err()
        .expect("no such device");
    assert!(matches!(err, SerialError::Open { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("/dev/does-not-exist"), "{message}");
}

#[tokio::test]
async fn a_frame_over_max_payload_is_rejected() {
    let (a, b) = linked_pair(BAUD);
    let max = a.max_payload();
    assert_eq!(max, 249, "CRC-32 over 256-byte modem frames");

    let err = a.send(vec![7; max + 1]).await.unwrap_err();
    match &err {
        SerialError::FrameTooLong { len, max: m, .. } => assert_eq!((*len, *m), (max + 1, max)),
        other => panic!("expected FrameTooLong, got {other:?}"),
    }
    assert!(err.to_string().contains("pty-near"), "{err}");
    assert!(matches!(
        a.send(Vec::new()).await,
        Err(SerialError::EmptyFrame { .. })
    ));
    assert_eq!(a.stats().bytes_sent, 0, "nothing written");

    // The largest frame goes through, and is the first thing the other end sees.
    a.send(vec![0; max]).await.unwrap();
    assert_eq!(b.recv().await.unwrap(), Some(vec![0; max]));
    assert_eq!(b.stats().decoder.dropped(), 0);
}

#[tokio::test]
async fn an_impaired_line_never_delivers_a_corrupted_frame() {
    let seed = 11;
    let line = Impairment {
        frame_loss: 0.05,
        // About one bit in five frames of 250 bytes.
        bit_error_rate: 1e-4,
        ..Impairment::clean(BAUD)
    };
    let Relayed { relay, a, b } = relayed(config("a", BAUD), config("b", BAUD), line, seed);
    let max = a.max_payload();
    let count = 400;
    let frames: Vec<Vec<u8>> = (0..count).map(|i| frame(seed, i, max)).collect();
    let marker = b"end of test".to_vec();

    let sender = async {
        send_all(&a, &frames).await;
        // From here the line is clean. The marker goes three times: the first
        // copy may merge with a frame whose delimiter was hit, not the next.
        relay.set_impairment(Direction::AToB, Impairment::clean(BAUD));
        for _ in 0..3 {
            a.send(marker.clone()).await.unwrap();
        }
    };
    let receiver = async {
        let mut delivered = Vec::new();
        loop {
            let got = b.recv().await.unwrap().expect("link closed early");
            if got == marker {
                return delivered;
            }
            delivered.push(got);
        }
    };
    let ((), delivered) = tokio::join!(sender, receiver);

    // Every delivered frame is one that was sent, byte for byte, in order.
    let mut last = None;
    for got in &delivered {
        let index = u32::from_be_bytes(got[..4].try_into().unwrap());
        assert!(index < count, "delivered a frame that was never sent");
        assert_eq!(got, &frames[index as usize], "frame {index} corrupted");
        assert!(last < Some(index), "frame {index} out of order or twice");
        last = Some(index);
    }

    let line = relay.stats(Direction::AToB);
    let stats = b.stats();
    assert_eq!(
        stats.frames_received,
        delivered.len() as u64 + 1,
        "stats count what recv handed over (the frames and one marker)"
    );
    assert!(
        line.frames_dropped > 0 && line.frames_corrupted > 0,
        "{line:?}"
    );
    assert!(stats.decoder.dropped() > 0, "{stats:?}");
    // A lost frame is lost; a corrupted one takes at most its successor with
    // it (a delimiter hit merges two frames).
    let delivered = delivered.len() as u64;
    let sent = u64::from(count);
    assert!(delivered <= sent - line.frames_dropped, "{line:?}");
    assert!(
        delivered + line.frames_dropped + 2 * line.frames_corrupted >= sent,
        "delivered {delivered} of {sent}: {line:?}, {stats:?}"
    );
}

#[tokio::test]
async fn writes_are_paced_to_the_line_rate() {
    let baud = 96_000;
    let (near, mut far) = PtyPair::open().unwrap().into_streams();
    let link = SerialLink::new(near, config("paced", baud)).unwrap();
    let max = link.max_payload();
    let frames = 12;
    let started = tokio::time::Instant::now();
    let sender = async {
        for _ in 0..frames {
            link.send(vec![0x55; max]).await.unwrap();
        }
    };
    let reader = async {
        let mut total = 0;
        let mut buf = [0u8; 4096];
        while total < frames * 256 {
            let n = far.read(&mut buf).await.unwrap();
            assert!(n > 0);
            total += n;
        }
        started.elapsed()
    };
    let ((), elapsed) = tokio::join!(sender, reader);
    // A full frame is 256 bytes of 10 bits: the last one cannot start
    // before all the others have left (less the writer's lead).
    let airtime = Duration::from_secs_f64(256.0 * 10.0 / f64::from(baud));
    assert!(
        elapsed + WRITE_LEAD >= airtime * (frames as u32 - 1),
        "{frames} frames in {elapsed:?}, faster than the line"
    );
    assert_eq!(link.stats().bytes_sent, frames as u64 * 256);
}

#[tokio::test]
async fn ready_waits_until_the_line_is_free() {
    let baud = 9600;
    let (near, _far) = PtyPair::open().unwrap().into_streams();
    let link = SerialLink::new(near, config("ready", baud)).unwrap();
    let started = tokio::time::Instant::now();
    link.ready().await.unwrap();
    link.send(vec![1; link.max_payload()]).await.unwrap();
    link.ready().await.unwrap();
    // The frame is 256 bytes on the line; the next may be handed over just
    // before it has left.
    let airtime = Duration::from_secs_f64(256.0 * 10.0 / f64::from(baud));
    let waited = started.elapsed();
    assert!(waited + WRITE_LEAD >= airtime, "ready after {waited:?}");
    assert_eq!(link.stats().bytes_sent, 256);
}

/// The half-duplex tests' line rate.
const TURNS_BAUD: u32 = 115_200;

/// One end of a half-duplex line at [`TURNS_BAUD`] with 150 ms turns.
fn half(name: &str, initiator: bool) -> SerialLinkConfig {
    let mut config = config(name, TURNS_BAUD);
    config.half_duplex = Some(HalfDuplex {
        initiator,
        turns: TurnConfig {
            max_turn: Duration::from_millis(150),
            max_frame_airtime: config.frame_airtime(),
            propagation: Duration::from_millis(20),
            guard: Duration::from_millis(20),
            idle_initial: Duration::from_millis(10),
            idle_max: Duration::from_millis(80),
        },
    });
    config
}

#[tokio::test]
async fn half_duplex_ends_take_turns() {
    let line = Impairment {
        delay: Duration::from_millis(5),
        ..Impairment::clean(TURNS_BAUD)
    };
    let Relayed { relay, a, b } = relayed(half("a", true), half("b", false), line, 3);
    let max = a.max_payload();
    let to_b: Vec<Vec<u8>> = (0..30).map(|i| frame(5, i, max)).collect();
    let to_a: Vec<Vec<u8>> = (0..30).map(|i| frame(6, i, max)).collect();
    let ((), (), at_b, at_a) = tokio::join!(
        send_when_ready(&a, &to_b),
        send_when_ready(&b, &to_a),
        recv_n(&b, to_b.len()),
        recv_n(&a, to_a.len()),
    );
    assert_eq!(at_b, to_b);
    assert_eq!(at_a, to_a);

    let (sa, sb) = (a.stats(), b.stats());
    // About 4 KiB each way is 0.37 s of airtime at 115200 baud, in turns of
    // at most 150 ms: both ends needed several turns, and handed them over.
    assert!(sa.turns.turns >= 2 && sb.turns.turns >= 2, "{sa:?} {sb:?}");
    assert!(sa.handovers_sent + sb.handovers_sent > 0);
    // A driver that sends only when the link is ready still fills its turns:
    // the link waits for the next frame before it passes the turn.
    for stats in [sa, sb] {
        let data_turns = stats.turns.turns - stats.turns.idle_handovers;
        assert!(stats.frames_sent >= 2 * data_turns, "{stats:?}");
    }
    assert_eq!(sa.decoder.dropped() + sb.decoder.dropped(), 0);
    assert!(relay.stats(Direction::AToB).bytes_out <= sa.bytes_sent);
}

#[tokio::test]
async fn a_busy_end_keeps_the_turns_a_talking_end_hands_it() {
    // A always has a frame for `ready`; B sends a short frame now and then,
    // so the turns A gets are not idle hand-overs (no idle hold). A driver
    // that answers `ready` at once must still get its frame into each turn:
    // the link gives it the lead time at the start of a turn, as after a frame.
    let line = Impairment {
        delay: Duration::from_millis(5),
        ..Impairment::clean(TURNS_BAUD)
    };
    let Relayed {
        relay: _relay,
        a,
        b,
    } = relayed(half("a", true), half("b", false), line, 9);
    // About 1 s of airtime for A, and B's chatter over its first 0.6 s:
    // A has a frame waiting in every turn it gets meanwhile.
    let to_b: Vec<Vec<u8>> = (0..60)
        .map(|i| {
            let mut frame = frame(8, i, 200);
            frame.resize(200, 0);
            frame
        })
        .collect();
    let chatter = async {
        for i in 0..6 {
            b.ready().await.unwrap();
            b.send(frame(9, i, 20)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let ((), at_b, (), at_a) = tokio::join!(
        send_when_ready(&a, &to_b),
        recv_n(&b, to_b.len()),
        chatter,
        recv_n(&a, 6),
    );
    assert_eq!(at_b, to_b);
    assert_eq!(at_a.len(), 6);
    let stats = a.stats();
    // Before the lead at the start of a turn, A passed most of its turns
    // on unused (12 of 22 in one run).
    assert!(stats.turns.idle_handovers <= 2, "{stats:?}");
    assert!(
        stats.handovers_sent <= stats.turns.turns / 2 + 1,
        "{stats:?}"
    );
}
