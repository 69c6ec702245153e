//! A running endpoint admits a node pinned after it started: the same
//! socket refuses the node, then (once pinned through its `SharedTrust`)
//! completes a handshake with it, on real loopback QUIC.
#![cfg(feature = "quic")]

use std::net::SocketAddr;
use std::time::Duration;

use ferry_link::identity::NodeKey;
use ferry_link::quic::{QuicEndpoint, TransportProfile, TrustPolicy};

const GUARD: Duration = Duration::from_secs(60);

fn bind(key: &NodeKey, policy: TrustPolicy) -> QuicEndpoint {
    QuicEndpoint::bind(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        key,
        policy,
        TransportProfile::for_link(1_000_000_000, Duration::from_millis(1)),
    )
    .expect("bind")
}

#[tokio::test]
async fn a_node_pinned_while_the_endpoint_runs_is_admitted_without_a_restart() {
    let (base, leaf) = (NodeKey::from_seed([1; 32]), NodeKey::from_seed([2; 32]));
    let server = bind(&base, TrustPolicy::default());
    let client = bind(&leaf, TrustPolicy::pinned([base.node_id()]));
    let at = server.local_addr().unwrap();

    let (connected, accepted) = tokio::time::timeout(GUARD, async {
        tokio::join!(client.connect(at, base.node_id()), server.accept())
    })
    .await
    .expect("hung");
    let err = connected.expect_err("an unknown node is refused");
    assert!(err.to_string().contains("node id not pinned"), "{err}");
    assert!(accepted.expect("endpoint open").is_err());

    let trust = server.trust();
    assert!(!trust.admits(&leaf.node_id()));
    assert!(trust.pin(leaf.node_id()));
    let (connected, accepted) = tokio::time::timeout(GUARD, async {
        tokio::join!(client.connect(at, base.node_id()), server.accept())
    })
    .await
    .expect("hung");
    let client_link = connected.expect("admitted once pinned");
    let server_link = accepted.expect("endpoint open").expect("admitted");
    assert_eq!(server_link.peer(), leaf.node_id());
    client_link.send_control(b"hello".to_vec()).await.unwrap();
    let got = tokio::time::timeout(GUARD, server_link.recv())
        .await
        .expect("hung")
        .unwrap();
    assert_eq!(got.as_deref(), Some(&b"hello"[..]));

    // Unpinned again: the next handshake is refused, the link up stays up.
    assert!(trust.unpin(&leaf.node_id()));
    let (connected, _) = tokio::time::timeout(GUARD, async {
        tokio::join!(client.connect(at, base.node_id()), server.accept())
    })
    .await
    .expect("hung");
    assert!(connected.is_err());
    client_link
        .send_control(b"still here".to_vec())
        .await
        .unwrap();
    let got = tokio::time::timeout(GUARD, server_link.recv())
        .await
        .expect("hung")
        .unwrap();
    assert_eq!(got.as_deref(), Some(&b"still here"[..]));
}
