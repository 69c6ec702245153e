//! QUIC links on loopback: frames both ways, trust refusals, frame limits,
//! back-pressure and clean close. Every wait is on an event; timeouts are only
//! guards against a hung test.
#![cfg(feature = "quic")]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use ferry_core::NodeId;
use ferry_link::identity::NodeKey;
use ferry_link::quic::{LinkError, QuicEndpoint, QuicLink, TransportProfile, TrustPolicy};

/// How long any one test step may take before the test fails.
const GUARD: Duration = Duration::from_secs(60);

async fn guard<T>(step: impl Future<Output = T>) -> T {
    tokio::time::timeout(GUARD, step)
        .await
        .expect("test step hung")
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Loopback: fast and short.
fn profile() -> TransportProfile {
    TransportProfile::for_link(1_000_000_000, Duration::from_millis(1))
}

fn key(seed: u8) -> NodeKey {
    NodeKey::from_seed([seed; 32])
}

fn endpoint(key: &NodeKey, policy: TrustPolicy) -> QuicEndpoint {
    endpoint_with(key, policy, profile())
}

fn endpoint_with(key: &NodeKey, policy: TrustPolicy, profile: TransportProfile) -> QuicEndpoint {
    QuicEndpoint::bind(loopback(), key, policy, profile).expect("bind")
}

fn addr(endpoint: &QuicEndpoint) -> SocketAddr {
    endpoint.local_addr().expect("local addr")
}

/// `client` connects to `server`, which accepts: both results.
async fn connect_pair(
    client: &QuicEndpoint,
    server: &QuicEndpoint,
    expected: NodeId,
) -> (Result<QuicLink, LinkError>, Result<QuicLink, LinkError>) {
    let (connected, accepted) =
        guard(async { tokio::join!(client.connect(addr(server), expected), server.accept()) })
            .await;
    (connected, accepted.expect("server endpoint open"))
}

/// Two nodes that pin each other, and a link between them.
async fn linked_pair(
    client_profile: TransportProfile,
    server_profile: TransportProfile,
) -> (QuicEndpoint, QuicEndpoint, QuicLink, QuicLink) {
    let (a, b) = (key(1), key(2));
    let ea = endpoint_with(&a, TrustPolicy::pinned([b.node_id()]), client_profile);
    let eb = endpoint_with(&b, TrustPolicy::pinned([a.node_id()]), server_profile);
    let (la, lb) = connect_pair(&ea, &eb, b.node_id()).await;
    let (la, lb) = (la.expect("connect"), lb.expect("accept"));
    assert_eq!(la.peer(), b.node_id());
    assert_eq!(lb.peer(), a.node_id());
    assert_eq!(la.remote_addr(), addr(&eb));
    assert_eq!(lb.remote_addr(), addr(&ea));
    (ea, eb, la, lb)
}

const SMALL_FRAMES: u32 = 10_000;
const BIG_FRAME: usize = 4 << 20;
/// The bulk sequence number carried by the 4 MiB frame.
const BIG_SEQ: u32 = SMALL_FRAMES / 2;

/// A frame: kind tag, sender tag, sequence number, then bytes derived from
/// all three, of a length that varies with the sequence number.
fn frame(kind: u8, sender: u8, seq: u32) -> Vec<u8> {
    let body = if kind == b'B' && seq == BIG_SEQ {
        BIG_FRAME
    } else {
        (seq % 200) as usize
    };
    let mut f = vec![kind, sender];
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend((0..body).map(|i| (i as u32 ^ seq ^ u32::from(sender)) as u8));
    f
}

/// Sends SMALL_FRAMES control frames and SMALL_FRAMES + 1 bulk frames (one of
/// them 4 MiB), interleaved.
async fn send_all(link: &QuicLink, sender: u8) {
    for seq in 0..SMALL_FRAMES {
        link.send_control(frame(b'C', sender, seq))
            .await
            .expect("send control");
        link.send_bulk(frame(b'B', sender, seq))
            .await
            .expect("send bulk");
    }
    link.send_bulk(frame(b'B', sender, SMALL_FRAMES))
        .await
        .expect("send bulk");
}

/// Receives everything `send_all(sender)` sends and checks it: intact, and in
/// order within each kind of stream.
async fn recv_all(link: &QuicLink, sender: u8) {
    let (mut next_control, mut next_bulk) = (0u32, 0u32);
    while next_control < SMALL_FRAMES || next_bulk <= SMALL_FRAMES {
        let got = link.recv().await.expect("recv").expect("link open");
        assert!(got.len() >= 6, "short frame");
        let seq = u32::from_be_bytes([got[2], got[3], got[4], got[5]]);
        let next = match got[0] {
            b'C' => &mut next_control,
            b'B' => &mut next_bulk,
            other => panic!("unknown kind {other}"),
        };
        assert_eq!(seq, *next, "kind {} out of order", got[0] as char);
        assert!(got == frame(got[0], sender, seq), "frame {seq} corrupted");
        *next += 1;
    }
}

#[tokio::test]
async fn pinned_nodes_exchange_control_and_bulk_frames_both_ways() {
    let (_ea, _eb, la, lb) = linked_pair(profile(), profile()).await;
    guard(async {
        tokio::join!(
            send_all(&la, 1),
            send_all(&lb, 2),
            recv_all(&la, 2),
            recv_all(&lb, 1)
        )
    })
    .await;

    // A clean close: the peer's recv ends with None, and so does ours.
    la.close("done");
    assert!(guard(lb.recv()).await.expect("clean close").is_none());
    assert!(guard(la.recv()).await.expect("clean close").is_none());
    assert!(matches!(
        guard(la.send_control(vec![1])).await,
        Err(LinkError::Closed { .. })
    ));
}

#[tokio::test]
async fn dropping_a_link_closes_it_cleanly() {
    let (_ea, _eb, la, lb) = linked_pair(profile(), profile()).await;
    guard(la.send_bulk(b"last words".to_vec())).await.unwrap();
    assert_eq!(guard(lb.recv()).await.unwrap().unwrap(), b"last words");
    drop(la);
    assert!(guard(lb.recv()).await.expect("clean close").is_none());
}

#[tokio::test]
async fn unknown_client_is_refused_at_the_handshake_on_both_sides() {
    let (a, b, stranger) = (key(1), key(2), key(3));
    let ea = endpoint(&a, TrustPolicy::pinned([b.node_id()]));
    // The stranger would talk to anyone; `a` does not pin it.
    let es = endpoint(&stranger, TrustPolicy::allow_any());

    let (connected, accepted) = connect_pair(&es, &ea, a.node_id()).await;
    let refused = format!("peer {}: node id not pinned", stranger.node_id());
    let accept_err = accepted
        .expect_err("a must refuse the stranger")
        .to_string();
    assert!(accept_err.contains(&refused), "accept: {accept_err}");
    let connect_err = connected.expect_err("the stranger must fail").to_string();
    assert!(connect_err.contains(&refused), "connect: {connect_err}");

    // `a` goes on accepting the nodes it pins.
    let eb = endpoint(&b, TrustPolicy::pinned([a.node_id()]));
    let (connected, accepted) = connect_pair(&eb, &ea, a.node_id()).await;
    let (lb, la) = (connected.unwrap(), accepted.unwrap());
    guard(lb.send_control(b"hello".to_vec())).await.unwrap();
    assert_eq!(guard(la.recv()).await.unwrap().unwrap(), b"hello");
}

#[tokio::test]
async fn unknown_server_is_refused_at_the_handshake_on_both_sides() {
    let (a, b, stranger) = (key(1), key(2), key(3));
    let ea = endpoint(&a, TrustPolicy::pinned([b.node_id()]));
    let es = endpoint(&stranger, TrustPolicy::allow_any());

    // `a` is asked to reach the stranger by its id, but does not pin it.
    let (connected, accepted) = connect_pair(&ea, &es, stranger.node_id()).await;
    let refused = format!("peer {}: node id not pinned", stranger.node_id());
    let connect_err = connected
        .expect_err("a must refuse the stranger")
        .to_string();
    assert!(connect_err.contains(&refused), "connect: {connect_err}");
    let accept_err = accepted.expect_err("the stranger must fail").to_string();
    assert!(accept_err.contains(&refused), "accept: {accept_err}");
}

#[tokio::test]
async fn client_expecting_one_node_refuses_another() {
    let (a, b, c) = (key(1), key(2), key(3));
    // `a` admits both, but asks for `b` at `c`'s address.
    let ea = endpoint(&a, TrustPolicy::pinned([b.node_id(), c.node_id()]));
    let ec = endpoint(&c, TrustPolicy::pinned([a.node_id()]));

    let (connected, accepted) = connect_pair(&ea, &ec, b.node_id()).await;
    let err = connected.expect_err("wrong node").to_string();
    let expected = format!("peer {}: expected node {}", c.node_id(), b.node_id());
    assert!(err.contains(&expected), "connect: {err}");
    assert!(accepted.is_err());
}

#[tokio::test]
async fn frame_over_the_limit_is_refused() {
    let mut small = profile();
    small.max_frame_len = 1 << 20;
    let (_ea, _eb, la, lb) = linked_pair(profile(), small).await;

    // The receiver's own limit: refused before sending, link unharmed.
    let err = lb.send_bulk(vec![0; (1 << 20) + 1]).await.unwrap_err();
    assert!(
        matches!(err, LinkError::FrameTooLarge { len, max } if len == (1 << 20) + 1 && max == 1 << 20),
        "{err}"
    );

    // From the sender (whose limit is 16 MiB): frames before the violation
    // arrive, then the receiver closes the connection with the reason.
    guard(la.send_bulk(b"before".to_vec())).await.unwrap();
    let _ = guard(la.send_bulk(vec![0; 2 << 20])).await;
    assert_eq!(guard(lb.recv()).await.unwrap().unwrap(), b"before");
    let reason = "bulk stream: frame of 2097152 bytes exceeds the 1048576-byte limit";
    let err = guard(lb.recv()).await.expect_err("violation");
    assert!(matches!(err, LinkError::Protocol { .. }), "{err}");
    assert!(err.to_string().contains(reason), "{err}");
    // Sticky, and the sender learns why.
    assert!(guard(lb.recv()).await.is_err());
    let err = guard(la.recv()).await.expect_err("closed with an error");
    assert!(matches!(err, LinkError::ConnectionLost { .. }), "{err}");
    assert!(err.to_string().contains(reason), "{err}");
}

#[tokio::test]
async fn a_receiver_that_does_not_read_holds_the_sender_back() {
    let (_ea, _eb, la, lb) = linked_pair(profile(), profile()).await;
    let frame_len = 64 << 10;
    let frames = 1024; // 64 MiB, far more than windows and inbox hold
    let sent = std::sync::atomic::AtomicUsize::new(0);
    let sender = async {
        for _ in 0..frames {
            la.send_bulk(vec![7; frame_len]).await.unwrap();
            sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    };
    tokio::pin!(sender);
    // With nobody reading, the sender must stall well short of the end.
    assert!(
        tokio::time::timeout(Duration::from_millis(500), &mut sender)
            .await
            .is_err(),
        "sender finished though nobody read"
    );
    let held = sent.load(std::sync::atomic::Ordering::Relaxed) * frame_len;
    // Inbox budget (16 MiB) + stream window (1 MiB) + send window (2 MiB) + slack.
    assert!(
        held <= 24 << 20,
        "{held} bytes accepted with nobody reading"
    );

    let receiver = async {
        for _ in 0..frames {
            assert_eq!(lb.recv().await.unwrap().unwrap().len(), frame_len);
        }
    };
    guard(async { tokio::join!(sender, receiver) }).await;
}

/// Collects `warn` events as text: message and fields.
#[derive(Clone, Default)]
struct Warnings(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl tracing::Subscriber for Warnings {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        *metadata.level() <= tracing::Level::WARN
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        struct Text(String);
        impl tracing::field::Visit for Text {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0 += &format!(" {}={:?}", field.name(), value);
            }
        }
        let mut text = Text(String::new());
        event.record(&mut text);
        self.0.lock().unwrap().push(text.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[tokio::test]
async fn refusals_are_logged_with_node_id_and_remote_address() {
    let warnings = Warnings::default();
    let _guard = tracing::subscriber::set_default(warnings.clone());
    let (a, b, stranger) = (key(1), key(2), key(3));
    let ea = endpoint(&a, TrustPolicy::pinned([b.node_id()]));
    let es = endpoint(&stranger, TrustPolicy::allow_any());

    // Refused by `a` as a server, then as a client.
    let (connected, accepted) = connect_pair(&es, &ea, a.node_id()).await;
    assert!(connected.is_err() && accepted.is_err());
    let (connected, accepted) = connect_pair(&ea, &es, stranger.node_id()).await;
    assert!(connected.is_err() && accepted.is_err());

    let logged = warnings.0.lock().unwrap().clone();
    let refusals: Vec<_> = logged
        .iter()
        .filter(|w| w.contains("refused QUIC peer"))
        .collect();
    assert_eq!(refusals.len(), 2, "{logged:?}");
    for warning in refusals {
        assert!(
            warning.contains(&format!("peer={}", stranger.node_id())),
            "{warning}"
        );
        assert!(
            warning.contains(&format!("remote={}", addr(&es))),
            "{warning}"
        );
    }
}

/// A peer that starts a handshake and then goes silent does not hold up the
/// next peer: each [`Accepting`](ferry_link::quic::Accepting) handshakes on
/// its own.
#[tokio::test]
async fn a_stalled_handshake_holds_up_no_other_connection() {
    let (server_key, silent_key, good_key) = (key(3), key(4), key(5));
    let server_id = server_key.node_id();
    let server = endpoint(
        &server_key,
        TrustPolicy::pinned([silent_key.node_id(), good_key.node_id()]),
    );
    // Passes the silent client's first datagram (its Initial) to the server
    // and drops everything after, both ways: the handshake can only stall.
    let hole = tokio::net::UdpSocket::bind(loopback()).await.unwrap();
    let hole_addr = hole.local_addr().unwrap();
    let server_addr = addr(&server);
    let forwarder = tokio::spawn(async move {
        let mut buf = vec![0; 65_536];
        let (n, _) = hole.recv_from(&mut buf).await.unwrap();
        hole.send_to(&buf[..n], server_addr).await.unwrap();
        while hole.recv_from(&mut buf).await.is_ok() {}
    });
    let silent = endpoint(&silent_key, TrustPolicy::pinned([server_id]));
    let silent_connect = tokio::spawn(async move { silent.connect(hole_addr, server_id).await });
    let stalled = guard(server.incoming()).await.expect("endpoint open");
    assert_eq!(stalled.remote_addr(), hole_addr);
    let stalled = tokio::spawn(stalled.establish());

    let good = endpoint(&good_key, TrustPolicy::pinned([server_id]));
    let (connected, accepted) = guard(async {
        tokio::join!(good.connect(server_addr, server_id), async {
            server
                .incoming()
                .await
                .expect("endpoint open")
                .establish()
                .await
        })
    })
    .await;
    assert_eq!(connected.expect("good peer connects").peer(), server_id);
    assert_eq!(
        accepted.expect("good peer accepted").peer(),
        good_key.node_id()
    );
    // The silent handshake waits for its idle timeout (at least 30 s).
    assert!(!stalled.is_finished(), "the silent handshake cannot finish");
    stalled.abort();
    silent_connect.abort();
    forwarder.abort();
}
