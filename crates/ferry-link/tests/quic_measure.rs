//! Goodput of a QUIC link through an impairing relay (rate, delay, random
//! loss, a bottleneck queue of one RTT), BBR against Cubic, for the design
//! brief's QUIC link profiles. A measurement, not a check: it takes about three
//! minutes and prints a table, so it is ignored by default. Run with
//!
//! ```text
//! cargo test -p ferry-link --test quic_measure -- --ignored --nocapture
//! ```
#![cfg(feature = "quic")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ferry_link::identity::NodeKey;
use ferry_link::quic::{Congestion, QuicEndpoint, TransportProfile, TrustPolicy};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// One direction of the relay: a bottleneck of `rate_bps` with a queue of at
/// most `queue` of transmission time, then `delay`, with Bernoulli `loss`.
struct Lane {
    rate_bps: u64,
    delay: Duration,
    loss: f64,
    queue: Duration,
    next_free: Instant,
    rng: ChaCha8Rng,
    out: mpsc::UnboundedSender<(Instant, Vec<u8>, SocketAddr)>,
    drops: Arc<Drops>,
}

/// Packets the relay dropped: at random, and because the queue was full.
#[derive(Default)]
struct Drops {
    random: AtomicU64,
    queue_full: AtomicU64,
}

impl Lane {
    fn push(&mut self, packet: Vec<u8>, to: SocketAddr) {
        if self.rng.random::<f64>() < self.loss {
            self.drops.random.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let now = Instant::now();
        let start = self.next_free.max(now);
        if start - now > self.queue {
            self.drops.queue_full.fetch_add(1, Ordering::Relaxed);
            return; // tail drop: the bottleneck's buffer is full
        }
        let serialise =
            Duration::from_nanos(packet.len() as u64 * 8 * 1_000_000_000 / self.rate_bps);
        self.next_free = start + serialise;
        let _ = self.out.send((self.next_free + self.delay, packet, to));
    }
}

/// Starts a relay between a client (whoever writes first) and `server`;
/// returns its address and its drop counters.
async fn relay(
    server: SocketAddr,
    rate_bps: u64,
    rtt: Duration,
    loss: f64,
) -> (SocketAddr, Arc<Drops>) {
    let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = socket.local_addr().unwrap();
    let drops = Arc::new(Drops::default());
    let mut lanes = Vec::new();
    for seed in 0..2 {
        let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>, SocketAddr)>();
        let sender = socket.clone();
        tokio::spawn(async move {
            while let Some((at, packet, to)) = rx.recv().await {
                tokio::time::sleep_until(at).await;
                let _ = sender.send_to(&packet, to).await;
            }
        });
        lanes.push(Lane {
            rate_bps,
            delay: rtt / 2,
            loss,
            queue: rtt,
            next_free: Instant::now(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            out: tx,
            drops: drops.clone(),
        });
    }
    tokio::spawn(async move {
        let mut client = None;
        let mut buf = vec![0u8; 65536];
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                return;
            };
            if from == server {
                if let Some(client) = client {
                    lanes[1].push(buf[..n].to_vec(), client);
                }
            } else {
                client = Some(from);
                lanes[0].push(buf[..n].to_vec(), server);
            }
        }
    });
    (addr, drops)
}

/// Sends `bytes` of bulk frames through an impaired path; returns goodput as
/// a fraction of rate × (1 − loss), and the relay's drops.
async fn goodput(
    rate_bps: u64,
    rtt: Duration,
    loss: f64,
    congestion: Congestion,
    bytes: usize,
) -> (f64, Arc<Drops>) {
    let (a, b) = (NodeKey::from_seed([1; 32]), NodeKey::from_seed([2; 32]));
    let mut profile = TransportProfile::for_link(rate_bps, rtt);
    profile.congestion = congestion;
    let local = SocketAddr::from(([127, 0, 0, 1], 0));
    let ea = QuicEndpoint::bind(
        local,
        &a,
        TrustPolicy::pinned([b.node_id()]),
        profile.clone(),
    )
    .unwrap();
    let eb = QuicEndpoint::bind(local, &b, TrustPolicy::pinned([a.node_id()]), profile).unwrap();
    let (via, drops) = relay(eb.local_addr().unwrap(), rate_bps, rtt, loss).await;
    let (la, lb) = tokio::join!(ea.connect(via, b.node_id()), eb.accept());
    let (la, lb) = (la.unwrap(), lb.unwrap().unwrap());

    let frame = 16 << 10;
    let frames = bytes / frame;
    let start = Instant::now();
    let send = async {
        for _ in 0..frames {
            la.send_bulk(vec![0x5a; frame]).await.unwrap();
        }
    };
    let recv = async {
        for _ in 0..frames {
            lb.recv().await.unwrap().unwrap();
        }
        start.elapsed()
    };
    let (_, took) = tokio::join!(send, recv);
    let bits = (frames * frame * 8) as f64;
    let limit = rate_bps as f64 * (1.0 - loss);
    (bits / took.as_secs_f64() / limit, drops)
}

#[tokio::test]
#[ignore = "a three-minute measurement; run with --ignored --nocapture"]
async fn bbr_against_cubic_on_lossy_long_paths() {
    // name, rate, RTT, loss, bytes
    let profiles = [
        ("lte-bush", 2_000_000, 80, 0.01, 3 << 20),
        ("geo-sat", 512_000, 650, 0.005, 3 << 20),
    ];
    println!("profile   controller  goodput/limit  random drops  queue-full drops");
    for (name, rate, rtt_ms, loss, bytes) in profiles {
        for congestion in [Congestion::Bbr, Congestion::Cubic] {
            let (ratio, drops) =
                goodput(rate, Duration::from_millis(rtt_ms), loss, congestion, bytes).await;
            let random = drops.random.load(Ordering::Relaxed);
            let queue_full = drops.queue_full.load(Ordering::Relaxed);
            println!("{name:9} {congestion:11?} {ratio:13.2}  {random:12}  {queue_full:16}");
        }
    }
}
