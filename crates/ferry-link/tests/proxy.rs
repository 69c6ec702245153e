//! The UDP impairment proxy on loopback: rate and delay, Bernoulli and
//! Gilbert-Elliott loss, forced partitions, tail drops, contact schedules,
//! replies, and reproducibility for a seed.
//!
//! Senders pace themselves below the line rate where a test counts losses,
//! so the only drops are the model's; where a test measures time, it checks
//! lower bounds the model guarantees and generous upper bounds.
#![cfg(feature = "proxy")]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_link::profile::{LinkProfile, Loss, Schedule};
use ferry_link::proxy::{ImpairmentModel, Proxy, ProxyError, ProxyStats};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

const MS: Duration = Duration::from_millis(1);

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().expect("an address")
}

/// A datagram of `len` bytes (at least 4) starting with its sequence number.
fn datagram(seq: u32, len: usize) -> Vec<u8> {
    let mut d = vec![0xa5; len.max(4)];
    d[..4].copy_from_slice(&seq.to_be_bytes());
    d
}

fn seq_of(d: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(d.get(..4)?.try_into().ok()?))
}

/// An upstream that records what arrives, and when.
struct Sink {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<(u32, Instant)>>>,
    task: JoinHandle<()>,
}

impl Sink {
    async fn bind() -> Sink {
        let socket = UdpSocket::bind(loopback()).await.expect("bind the sink");
        let addr = socket.local_addr().expect("sink address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0; 65_536];
            while let Ok((n, _)) = socket.recv_from(&mut buf).await {
                if let Some(seq) = seq_of(&buf[..n]) {
                    record.lock().unwrap().push((seq, Instant::now()));
                }
            }
        });
        Sink { addr, seen, task }
    }

    fn seqs(&self) -> Vec<u32> {
        self.seen.lock().unwrap().iter().map(|(s, _)| *s).collect()
    }

    /// Waits until `n` datagrams arrived (then a little longer, to catch any
    /// extra), and returns their sequence numbers in arrival order.
    async fn expect(&self, n: u64, seed: u64) -> Vec<u32> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while (self.seqs().len() as u64) < n {
            assert!(
                Instant::now() < deadline,
                "seed {seed}: {} of {n} datagrams arrived",
                self.seqs().len()
            );
            tokio::time::sleep(5 * MS).await;
        }
        tokio::time::sleep(50 * MS).await;
        let seqs = self.seqs();
        assert_eq!(
            seqs.len() as u64,
            n,
            "seed {seed}: more datagrams than delivered"
        );
        seqs
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn client_of(proxy: &Proxy) -> UdpSocket {
    let socket = UdpSocket::bind(loopback()).await.expect("bind a client");
    socket
        .connect(proxy.local_addr())
        .await
        .expect("connect to the proxy");
    socket
}

/// Sends datagrams `seqs` of `len` bytes, `burst` at a time with `gap`
/// between bursts.
async fn send_paced(
    socket: &UdpSocket,
    seqs: std::ops::Range<u32>,
    len: usize,
    burst: usize,
    gap: Duration,
) {
    let seqs: Vec<u32> = seqs.collect();
    for chunk in seqs.chunks(burst) {
        for &seq in chunk {
            socket.send(&datagram(seq, len)).await.expect("send");
        }
        tokio::time::sleep(gap).await;
    }
}

/// Waits until the proxy has read `n` datagrams from the client and nothing
/// towards the upstream is left inside it.
async fn settle(proxy: &Proxy, n: u64, seed: u64) -> ProxyStats {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let stats = proxy.stats();
        let up = stats.to_upstream;
        if up.datagrams_in == n && up.settled() {
            return stats;
        }
        assert!(
            Instant::now() < deadline,
            "seed {seed}: proxy did not settle on {n} datagrams: {stats:?}"
        );
        tokio::time::sleep(5 * MS).await;
    }
}

/// Mean length of the runs of consecutive lost datagrams among `0..n`.
fn mean_loss_run(arrived: &[u32], n: u32) -> f64 {
    let arrived: BTreeSet<u32> = arrived.iter().copied().collect();
    let (mut lost, mut runs, mut previous) = (0u32, 0u32, false);
    for seq in 0..n {
        let l = !arrived.contains(&seq);
        lost += u32::from(l);
        runs += u32::from(l && !previous);
        previous = l;
    }
    f64::from(lost) / f64::from(runs.max(1))
}

#[tokio::test]
async fn rate_and_delay_are_enforced_in_order() {
    let seed = 1;
    let sink = Sink::bind().await;
    let model = ImpairmentModel::new(1_000_000, 40 * MS).with_queue_limit(1 << 20);
    let proxy = Proxy::start(loopback(), sink.addr, model, seed)
        .await
        .unwrap();
    let client = client_of(&proxy).await;
    let first_sent = Instant::now();
    // 200 kB offered at about 80 Mbit/s to a 1 Mbit/s line.
    send_paced(&client, 0..200, 1000, 10, MS).await;
    let stats = settle(&proxy, 200, seed).await;
    assert_eq!(stats.to_upstream.delivered, 200, "seed {seed}: {stats:?}");
    assert_eq!(stats.to_upstream.bytes_delivered, 200_000);
    let seqs = sink.expect(200, seed).await;
    assert_eq!(
        seqs,
        (0..200).collect::<Vec<_>>(),
        "seed {seed}: out of order"
    );
    let last = sink.seen.lock().unwrap().last().unwrap().1;
    let took = last - first_sent;
    // 200 × 8 ms on the line, then 20 ms one way.
    let least = 200 * 8 * MS + 20 * MS;
    assert!(took >= least, "seed {seed}: took {took:?}, under {least:?}");
    assert!(
        took < least + Duration::from_secs(3),
        "seed {seed}: took {took:?}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn bernoulli_loss_matches_its_probability() {
    let seed = 2;
    let n = 5000;
    let sink = Sink::bind().await;
    let model = ImpairmentModel::new(20_000_000, 10 * MS).with_loss(Loss::Bernoulli(0.1));
    let proxy = Proxy::start(loopback(), sink.addr, model, seed)
        .await
        .unwrap();
    let client = client_of(&proxy).await;
    // 20 × 100 B every 2 ms: at most 8 Mbit/s, under the line rate.
    send_paced(&client, 0..n, 100, 20, 2 * MS).await;
    let stats = settle(&proxy, u64::from(n), seed).await.to_upstream;
    assert_eq!(
        (stats.dropped_queue, stats.dropped_down, stats.send_errors),
        (0, 0, 0),
        "seed {seed}: {stats:?}"
    );
    assert_eq!(stats.lost + stats.delivered, u64::from(n), "seed {seed}");
    let loss = stats.lost as f64 / f64::from(n);
    assert!(
        (0.07..=0.13).contains(&loss),
        "seed {seed}: measured loss {loss}"
    );
    let seqs = sink.expect(stats.delivered, seed).await;
    assert_eq!(
        u64::from(n) - seqs.len() as u64,
        stats.lost,
        "seed {seed}: what arrived disagrees with the stats"
    );
    // Independent losses come one at a time.
    let run = mean_loss_run(&seqs, n);
    assert!(run < 1.5, "seed {seed}: mean loss run {run}");
}

#[tokio::test]
async fn gilbert_elliott_loses_in_bursts() {
    let seed = 3;
    let n = 3000;
    let sink = Sink::bind().await;
    let loss = Loss::GilbertElliott {
        p: 0.05,
        r: 0.25,
        h: 0.1,
        k: 1.0,
    };
    let model = ImpairmentModel::new(20_000_000, 10 * MS).with_loss(loss);
    let proxy = Proxy::start(loopback(), sink.addr, model, seed)
        .await
        .unwrap();
    let client = client_of(&proxy).await;
    send_paced(&client, 0..n, 100, 20, 2 * MS).await;
    let stats = settle(&proxy, u64::from(n), seed).await.to_upstream;
    assert_eq!(
        stats.lost + stats.delivered,
        u64::from(n),
        "seed {seed}: {stats:?}"
    );
    let seqs = sink.expect(stats.delivered, seed).await;
    let rate = stats.lost as f64 / f64::from(n);
    assert!(
        (rate - loss.mean()).abs() < 0.06,
        "seed {seed}: loss {rate}, model mean {}",
        loss.mean()
    );
    let run = mean_loss_run(&seqs, n);
    assert!(run > 2.0, "seed {seed}: mean loss run {run}");
}

#[tokio::test]
async fn a_forced_partition_drops_everything_until_healed() {
    let seed = 4;
    let sink = Sink::bind().await;
    let model = ImpairmentModel::new(10_000_000, 200 * MS);
    let proxy = Proxy::start(loopback(), sink.addr, model, seed)
        .await
        .unwrap();
    let client = client_of(&proxy).await;
    assert!(proxy.is_up());
    // In flight (100 ms one way) when the partition starts …
    send_paced(&client, 0..10, 500, 10, 20 * MS).await;
    proxy.set_up(false);
    assert!(!proxy.is_up());
    // … and sent during it.
    send_paced(&client, 10..20, 500, 5, 5 * MS).await;
    let stats = settle(&proxy, 20, seed).await.to_upstream;
    assert_eq!(
        (stats.delivered, stats.dropped_down),
        (0, 20),
        "seed {seed}: {stats:?}"
    );
    tokio::time::sleep(50 * MS).await;
    assert!(sink.seqs().is_empty(), "seed {seed}: {:?}", sink.seqs());

    proxy.set_up(true);
    send_paced(&client, 20..30, 500, 10, MS).await;
    let stats = settle(&proxy, 30, seed).await.to_upstream;
    assert_eq!(
        (stats.delivered, stats.dropped_down),
        (10, 20),
        "seed {seed}: {stats:?}"
    );
    assert_eq!(
        sink.expect(10, seed).await,
        (20..30).collect::<Vec<_>>(),
        "seed {seed}"
    );
}

#[tokio::test]
async fn a_full_queue_drops_the_tail() {
    let seed = 5;
    let sink = Sink::bind().await;
    // 80 ms per 1000 B; room for ten of them.
    let model = ImpairmentModel::new(100_000, Duration::ZERO).with_queue_limit(10_000);
    let proxy = Proxy::start(loopback(), sink.addr, model, seed)
        .await
        .unwrap();
    let client = client_of(&proxy).await;
    for seq in 0..40 {
        client.send(&datagram(seq, 1000)).await.unwrap();
    }
    let stats = settle(&proxy, 40, seed).await.to_upstream;
    assert!(
        (28..=30).contains(&stats.dropped_queue),
        "seed {seed}: {stats:?}"
    );
    assert_eq!(stats.delivered + stats.dropped_queue, 40, "seed {seed}");
    let seqs = sink.expect(stats.delivered, seed).await;
    assert_eq!(
        seqs[..10],
        (0..10).collect::<Vec<_>>(),
        "seed {seed}: not the tail"
    );
}

#[tokio::test]
async fn replies_reach_the_client_and_a_restarted_client_takes_over() {
    let seed = 6;
    // An upstream that echoes, remembering who it talked to.
    let echo = UdpSocket::bind(loopback()).await.unwrap();
    let echo_addr = echo.local_addr().unwrap();
    let peers = Arc::new(Mutex::new(BTreeSet::new()));
    let seen = peers.clone();
    let echo_task = tokio::spawn(async move {
        let mut buf = vec![0; 65_536];
        while let Ok((n, peer)) = echo.recv_from(&mut buf).await {
            seen.lock().unwrap().insert(peer);
            let _ = echo.send_to(&buf[..n], peer).await;
        }
    });
    let model = ImpairmentModel::new(10_000_000, 20 * MS);
    let proxy = Proxy::start(loopback(), echo_addr, model, seed)
        .await
        .unwrap();

    async fn round_trips(client: &UdpSocket, seqs: std::ops::Range<u32>) -> Vec<u32> {
        let mut replies = Vec::new();
        let mut buf = vec![0; 2048];
        for seq in seqs {
            client.send(&datagram(seq, 200)).await.unwrap();
            let n = tokio::time::timeout(Duration::from_secs(5), client.recv(&mut buf))
                .await
                .expect("a reply in time")
                .unwrap();
            replies.push(seq_of(&buf[..n]).unwrap());
        }
        replies
    }

    let a = client_of(&proxy).await;
    assert_eq!(round_trips(&a, 0..20).await, (0..20).collect::<Vec<_>>());
    assert_eq!(proxy.client(), Some(a.local_addr().unwrap()));
    // The upstream sees one peer: the proxy's egress socket.
    assert_eq!(
        *peers.lock().unwrap(),
        BTreeSet::from([proxy.egress_addr()])
    );

    // A restarted client (new port) takes the replies over.
    let b = client_of(&proxy).await;
    assert_eq!(
        round_trips(&b, 100..105).await,
        (100..105).collect::<Vec<_>>()
    );
    assert_eq!(proxy.client(), Some(b.local_addr().unwrap()));
    let mut buf = [0; 2048];
    assert!(
        tokio::time::timeout(100 * MS, a.recv(&mut buf))
            .await
            .is_err(),
        "seed {seed}: the old client still gets replies"
    );
    let stats = proxy.stats();
    assert_eq!(stats.to_upstream.delivered, 25, "seed {seed}: {stats:?}");
    assert_eq!(stats.to_client.delivered, 25, "seed {seed}: {stats:?}");
    assert!(stats.to_client.settled(), "seed {seed}: {stats:?}");
    assert_eq!(
        *peers.lock().unwrap(),
        BTreeSet::from([proxy.egress_addr()])
    );
    proxy.stop().await;
    echo_task.abort();
}

#[tokio::test]
async fn the_same_seed_loses_the_same_datagrams() {
    let n = 1000;
    let model = ImpairmentModel::new(20_000_000, 4 * MS)
        .with_loss(Loss::Bernoulli(0.2))
        .with_duplicate(0.05);
    let mut runs = Vec::new();
    for seed in [7, 7, 8] {
        let sink = Sink::bind().await;
        let proxy = Proxy::start(loopback(), sink.addr, model.clone(), seed)
            .await
            .unwrap();
        let client = client_of(&proxy).await;
        send_paced(&client, 0..n, 100, 20, 2 * MS).await;
        let stats = settle(&proxy, u64::from(n), seed).await;
        let mut seqs = sink.expect(stats.to_upstream.delivered, seed).await;
        seqs.sort_unstable();
        runs.push((stats.to_upstream, seqs));
        proxy.stop().await;
    }
    assert_eq!(runs[0], runs[1], "seed 7 twice gave different results");
    assert_ne!(
        runs[0].1, runs[2].1,
        "seeds 7 and 8 lost the same datagrams"
    );
    assert!(runs[0].0.duplicated > 0, "seed 7: {:?}", runs[0].0);
}

#[tokio::test]
async fn a_schedule_opens_and_closes_the_link() {
    let seed = 9;
    let sink = Sink::bind().await;
    let model = ImpairmentModel::new(10_000_000, 10 * MS).with_schedule(Schedule::Periodic {
        up: 300 * MS,
        period: 600 * MS,
    });
    let proxy = Proxy::start(loopback(), sink.addr, model, seed)
        .await
        .unwrap();
    let client = client_of(&proxy).await;
    // One datagram every 10 ms for 1.2 s: two windows of 300 ms up.
    let mut tick = tokio::time::interval(10 * MS);
    for seq in 0..120 {
        tick.tick().await;
        client.send(&datagram(seq, 100)).await.unwrap();
    }
    let stats = settle(&proxy, 120, seed).await.to_upstream;
    assert_eq!(
        stats.delivered + stats.dropped_down,
        120,
        "seed {seed}: {stats:?}"
    );
    assert!(
        (40..=80).contains(&stats.delivered),
        "seed {seed}: {stats:?}"
    );
    let seqs = sink.expect(stats.delivered, seed).await;
    // The down window shows as a gap of about 30 datagrams.
    let widest = seqs.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    assert!(
        (15..=45).contains(&widest),
        "seed {seed}: widest gap {widest}"
    );
}

#[tokio::test]
async fn bad_models_and_busy_addresses_are_refused() {
    let upstream = loopback();
    let lte = ImpairmentModel::from_profile(LinkProfile::named("lte-bush").unwrap());
    let err = Proxy::start(
        loopback(),
        upstream,
        lte.clone().with_loss(Loss::Bernoulli(1.5)),
        0,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ProxyError::Model(_)), "{err}");
    let err = Proxy::start(loopback(), upstream, lte.clone().with_rate(0), 0)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("rate"), "{err}");

    let taken = UdpSocket::bind(loopback()).await.unwrap();
    let err = Proxy::start(taken.local_addr().unwrap(), upstream, lte, 0)
        .await
        .unwrap_err();
    assert!(matches!(err, ProxyError::Bind { .. }), "{err}");
}
