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

/// Admission by a trust anchor: a node whose certificate the anchor issued
/// is admitted without a pin, both ways (the server certified, the client
/// certified); a self-signed node and one certified by another anchor are
/// refused at the handshake with the reason; a certificate for another key
/// is refused before it is ever presented.
#[tokio::test]
async fn a_node_certified_by_a_trust_anchor_is_admitted_without_a_pin() {
    use ferry_link::quic::anchor;
    let (authority, rogue) = (NodeKey::from_seed([10; 32]), NodeKey::from_seed([11; 32]));
    let anchor_cert = anchor::anchor_certificate(&authority, 3650).unwrap();
    let certified = |seed: u8, by: &NodeKey| {
        let key = NodeKey::from_seed([seed; 32]);
        let cert = anchor::admit(by, &key.public_key(), 365).unwrap();
        key.with_certificate(cert.to_vec()).unwrap()
    };
    let anchored = TrustPolicy {
        anchors: vec![anchor_cert.to_vec()],
        ..TrustPolicy::default()
    };
    let base = certified(12, &authority);
    let server = bind(&base, anchored.clone());
    let at = server.local_addr().unwrap();

    // A leaf certified by the anchor, which trusts the anchor too: admitted
    // both ways, with no node id pinned anywhere.
    let leaf = certified(13, &authority);
    let client = bind(&leaf, anchored.clone());
    let (connected, accepted) = tokio::time::timeout(GUARD, async {
        tokio::join!(client.connect(at, base.node_id()), server.accept())
    })
    .await
    .expect("hung");
    connected.expect("a certified leaf reaches a certified base");
    let link = accepted.expect("endpoint open").expect("admitted");
    assert_eq!(link.peer(), leaf.node_id());

    // Self-signed, and certified by another anchor: refused with the reason.
    for (key, why) in [
        (NodeKey::from_seed([14; 32]), "certificate does not chain"),
        (certified(15, &rogue), "certificate does not chain"),
    ] {
        let client = bind(&key, TrustPolicy::pinned([base.node_id()]));
        let (connected, accepted) = tokio::time::timeout(GUARD, async {
            tokio::join!(client.connect(at, base.node_id()), server.accept())
        })
        .await
        .expect("hung");
        let err = connected.expect_err("refused");
        assert!(err.to_string().contains("not pinned"), "{err}");
        let refused = accepted.expect("endpoint open").expect_err("refused");
        assert!(refused.to_string().contains(why), "{refused}");
    }

    // An anchor's certificate names one key; another key cannot wear it.
    let cert = anchor::admit(&authority, &NodeKey::from_seed([16; 32]).public_key(), 1).unwrap();
    assert!(
        NodeKey::from_seed([17; 32])
            .with_certificate(cert.to_vec())
            .is_err()
    );
}
