//! `cargo bench --bench serial`: a bundle over a real (pseudo-terminal)
//! serial line at 9600 baud with 2 % frame loss.
//!
//! Two engines (`Engine<MemStore>`) each drive a `SerialLink` on the device
//! end of a PTY; a `LineRelay` joins the two PTYs' far ends as a 9600-baud
//! 8N1 full-duplex line that loses 2 % of frames each way. Modem frames are
//! 256 bytes with CRC-32, so the engines' MTU is `max_payload()` = 249. The
//! sender submits a bundle of random data to the receiver; each engine runs
//! a small tokio loop on the real clock. The run ends when the receiver
//! reports `Delivered`; the payload is checked byte for byte.
//!
//! Prints one JSON line:
//! - goodput_vs_line = payload bits delivered / (line data capacity over the
//!   transfer = baud × 8/10 × seconds): 1.0 would be every data bit the line
//!   can carry in that time being payload; 2 % loss alone caps it at 0.98;
//! - breakdown: where the sender's line time went (fractions of that
//!   capacity, summing to 1): first-time chunk data (= goodput), data sent
//!   again after a loss, the manifest, chunk frame headers, control frames,
//!   serial framing (flags, CRC, COBS, delimiter) and idle line time.
//!
//! FERRY_BENCH_SEED picks the seed; FERRY_BENCH_KIB the payload size (64);
//! FERRY_BENCH_RTT_MS overrides the round-trip time the engines plan with
//! (default: what `SerialLinkConfig::link_properties` says); FERRY_BENCH_TRACE
//! prints every frame the engines send, with its time, on stderr.

use std::collections::BTreeSet;
use std::time::Duration;

use ferry_chunk::{Chunker, ChunkerConfig, ManifestId};
use ferry_core::{
    Contact, Endpoint, Engine, EngineConfig, Event, LinkId, MemStore, NodeId, PayloadKind, Routes,
    Store, Submission,
};
use ferry_link::serial::port::{BITS_PER_BYTE, SerialLink, SerialLinkConfig};
use ferry_link::serial::pty::{Direction, Impairment, LineRelay, PtyPair};
use ferry_link::serial::{CrcKind, SerialConfig};
use ferry_proto::v1::frame::Body;
use ferry_proto::{FrameCodec, MANIFEST_INDEX};
use ferry_sim::put_object;
use ferryd::config::now;
use rand::{RngCore, SeedableRng};

const BAUD: u32 = 9600;
const LOSS: f64 = 0.02;

fn main() {
    let seed: u64 = env("FERRY_BENCH_SEED").unwrap_or(7);
    let kib: usize = env("FERRY_BENCH_KIB").unwrap_or(64);
    let mut data = vec![0u8; kib << 10];
    rand_chacha::ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut data);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let report = runtime.block_on(run(seed, &data));
    println!("{report}");
}

fn env<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn node(n: u8) -> NodeId {
    NodeId([n; 32])
}

async fn run(seed: u64, data: &[u8]) -> serde_json::Value {
    let line = Impairment {
        frame_loss: LOSS,
        ..Impairment::clean(BAUD)
    };
    let (near_a, far_a) = PtyPair::open().expect("pty").into_streams();
    let (near_b, far_b) = PtyPair::open().expect("pty").into_streams();
    let relay = LineRelay::start(far_a, far_b, line, line, seed);
    let serial = |name: &str| SerialLinkConfig {
        framing: SerialConfig {
            crc: CrcKind::Crc32,
            modem_mtu: 256,
        },
        ..SerialLinkConfig::new(name, BAUD)
    };
    let link_a = SerialLink::new(near_a, serial("sender-pty")).expect("serial link");
    let link_b = SerialLink::new(near_b, serial("receiver-pty")).expect("serial link");
    let mut props = link_a.config().link_properties(line.delay);
    if let Some(ms) = env("FERRY_BENCH_RTT_MS") {
        props.rtt = Duration::from_millis(ms);
    }

    let mut sender_config = EngineConfig::new(node(1), seed);
    sender_config.routes = Routes {
        next_hop: [(node(2), node(2))].into(),
        ..Routes::default()
    };
    let mut sender = Engine::new(sender_config, MemStore::new()).expect("engine");
    let mut receiver =
        Engine::new(EngineConfig::new(node(2), seed + 1), MemStore::new()).expect("engine");
    let chunker = Chunker::new(ChunkerConfig::default()).expect("default chunker config");
    let manifest = put_object(sender.store_mut(), &chunker, data).expect("memory store");

    let started = now();
    let wall = *TRACE_START.get_or_init(std::time::Instant::now);
    let at_a = sender.add_link();
    let at_b = receiver.add_link();
    sender.handle_contact(started, at_a, Contact::Up(props.clone()));
    receiver.handle_contact(started, at_b, Contact::Up(props.clone()));
    sender
        .submit(
            started,
            Submission::new(
                Endpoint::Node(node(2)),
                PayloadKind::Blob,
                manifest,
                Duration::from_secs(24 * 3600),
            ),
        )
        .expect("submit");

    let mut sent = Tally::new("sender");
    let mut replies = Tally::new("receiver");
    let delivered = tokio::select! {
        delivered = drive(&mut receiver, &link_b, at_b, &mut replies, true) => delivered,
        never = drive(&mut sender, &link_a, at_a, &mut sent, false) => never,
    };
    let seconds = wall.elapsed().as_secs_f64();
    let delivered = delivered.expect("the receiver reports delivery");
    assert_eq!(delivered, manifest, "delivered the bundle's manifest");
    assert_eq!(
        reassemble(receiver.store(), manifest),
        data,
        "seed {seed}: payload differs"
    );

    let a_stats = link_a.stats();
    let b_stats = link_b.stats();
    let ab = relay.stats(Direction::AToB);
    let ba = relay.stats(Direction::BToA);
    // The line's data capacity over the transfer, in bytes (8N1: 10 bits a byte).
    let capacity = f64::from(BAUD) / f64::from(BITS_PER_BYTE) * seconds;
    let payload = data.len() as f64;
    let framing = a_stats.bytes_sent - a_stats.payload_bytes_sent;
    let idle = capacity - a_stats.bytes_sent as f64;
    let fraction = |bytes: f64| bytes / capacity;
    serde_json::json!({
        "bench": "serial",
        "goodput_vs_line": payload / capacity,
        "definition": "payload bits delivered / (baud × 8/10 × seconds): \
                       the line's data capacity over the transfer, 8N1",
        "seed": seed,
        "engine_seeds": [seed, seed + 1],
        "seconds": seconds,
        "payload_bytes": data.len(),
        "baud": BAUD,
        "frame_loss": LOSS,
        "modem_mtu": 256,
        "engine_mtu": props.mtu,
        "engine_rtt_ms": props.rtt.as_millis(),
        "line_bytes_each_way": [ab.bytes_in, ba.bytes_in],
        "frames_each_way": [ab.frames, ba.frames],
        "frames_lost": ab.frames_dropped + ba.frames_dropped,
        "frames_corrupted": a_stats.decoder.dropped() + b_stats.decoder.dropped(),
        "breakdown": {
            "chunk_data_first": fraction(sent.data_first as f64),
            "chunk_data_again": fraction(sent.data_again as f64),
            "manifest": fraction(sent.manifest as f64),
            "chunk_headers": fraction(sent.chunk_headers as f64),
            "control": fraction(sent.control as f64),
            "serial_framing": fraction(framing as f64),
            "idle": fraction(idle),
        },
        "sender_frames": {
            "chunk": sent.chunk_frames,
            "control": sent.control_frames,
            "control_kinds": sent.kinds,
        },
        "receiver_frames": {
            "control": replies.control_frames,
            "control_bytes": replies.control,
            "control_kinds": replies.kinds,
        },
    })
}

/// Runs one engine on its link until it delivers a bundle (when `until_delivered`).
async fn drive(
    engine: &mut Engine<MemStore>,
    link: &SerialLink,
    id: LinkId,
    tally: &mut Tally,
    until_delivered: bool,
) -> Option<ManifestId> {
    // The engine may have frames to send: poll it when the link is ready.
    let mut more = true;
    loop {
        while let Some(event) = engine.poll_event() {
            if let Event::Delivered { manifest, .. } = event
                && until_delivered
            {
                return Some(manifest);
            }
        }
        let timeout = engine.poll_timeout();
        let wait = timeout.map_or(Duration::from_secs(3600), |at| at.saturating_since(now()));
        tokio::select! {
            biased;
            frame = link.recv() => {
                let frame = frame.expect("serial link").expect("link open");
                engine.handle_frame(now(), id, &frame);
                more = true;
            }
            ready = link.ready(), if more => {
                ready.expect("serial link");
                match engine.poll_transmit_on(now(), id) {
                    Some(transmit) => {
                        tally.count(&transmit.frame);
                        link.send(transmit.frame).await.expect("frame within the MTU");
                    }
                    None => more = false,
                }
            }
            () = tokio::time::sleep(wait) => {
                engine.handle_timeout(now());
                more = true;
            }
        }
    }
}

static TRACE_START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

/// What an engine sent, by kind, in engine-frame bytes.
struct Tally {
    name: &'static str,
    trace: bool,
    /// Chunk bytes sent for the first time.
    data_first: u64,
    /// Chunk bytes sent again (repairs).
    data_again: u64,
    /// Manifest bytes in chunk frames.
    manifest: u64,
    /// Chunk frame bytes other than data.
    chunk_headers: u64,
    /// Bytes of every other frame.
    control: u64,
    chunk_frames: u64,
    control_frames: u64,
    kinds: std::collections::BTreeMap<&'static str, u64>,
    /// (chunk index, byte) already sent once, per chunk as ranges sent.
    seen: BTreeSet<(u32, u32, u32)>,
}

impl Tally {
    fn new(name: &'static str) -> Self {
        Tally {
            name,
            trace: std::env::var_os("FERRY_BENCH_TRACE").is_some(),
            data_first: 0,
            data_again: 0,
            manifest: 0,
            chunk_headers: 0,
            control: 0,
            chunk_frames: 0,
            control_frames: 0,
            kinds: Default::default(),
            seen: BTreeSet::new(),
        }
    }

    fn count(&mut self, frame: &[u8]) {
        let body = FrameCodec::new(ferry_proto::HARD_MAX_FRAME)
            .decode_exact(frame)
            .ok()
            .and_then(|f| f.body);
        if self.trace {
            let t = TRACE_START.get_or_init(std::time::Instant::now).elapsed();
            match &body {
                Some(Body::Chunk(c)) => eprintln!(
                    "{:9.3} {} chunk {} @{} +{} cp={}",
                    t.as_secs_f64(),
                    self.name,
                    c.chunk_index,
                    c.offset,
                    c.data.len(),
                    c.checkpoint
                ),
                other => eprintln!(
                    "{:9.3} {} {} B {:?}",
                    t.as_secs_f64(),
                    self.name,
                    frame.len(),
                    other
                ),
            }
        }
        match body {
            Some(Body::Chunk(chunk)) => {
                let len = chunk.data.len() as u64;
                self.chunk_frames += 1;
                self.chunk_headers += frame.len() as u64 - len;
                if chunk.chunk_index == MANIFEST_INDEX {
                    self.manifest += len;
                } else {
                    let end = chunk.offset + chunk.data.len() as u32;
                    let again = self.overlap(chunk.chunk_index, chunk.offset, end);
                    self.data_again += again;
                    self.data_first += len - again;
                    self.seen.insert((chunk.chunk_index, chunk.offset, end));
                }
            }
            other => {
                self.control_frames += 1;
                self.control += frame.len() as u64;
                let kind = match other {
                    Some(Body::Hello(_)) => "hello",
                    Some(Body::Offer(_)) => "offer",
                    Some(Body::Want(_)) => "want",
                    Some(Body::Custody(_)) => "custody",
                    Some(Body::Status(_)) => "status",
                    Some(Body::Keepalive(_)) => "keepalive",
                    Some(Body::Close(_)) => "close",
                    Some(Body::Fragment(_)) => "fragment",
                    Some(Body::Chunk(_)) | None => "other",
                };
                *self.kinds.entry(kind).or_default() += 1;
            }
        }
    }

    /// Bytes of `index`'s [start, end) already sent.
    fn overlap(&self, index: u32, start: u32, end: u32) -> u64 {
        let mut covered: Vec<(u32, u32)> = self
            .seen
            .range((index, 0, 0)..(index + 1, 0, 0))
            .map(|&(_, s, e)| (s.max(start), e.min(end)))
            .filter(|(s, e)| s < e)
            .collect();
        covered.sort_unstable();
        let mut total = 0u64;
        let mut reach = start;
        for (s, e) in covered {
            let s = s.max(reach);
            if e > s {
                total += u64::from(e - s);
                reach = e;
            }
        }
        total
    }
}

fn reassemble(store: &MemStore, manifest: ManifestId) -> Vec<u8> {
    let manifest = store
        .get_manifest(manifest)
        .expect("memory store")
        .expect("manifest delivered");
    let mut out = Vec::new();
    ferry_chunk::reassemble(
        &manifest,
        |id| {
            store
                .get_chunk(id)
                .ok()
                .flatten()
                .ok_or("chunk not delivered")
        },
        &mut out,
    )
    .expect("payload delivered and verifies");
    out
}
