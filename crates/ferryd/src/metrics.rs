//! Prometheus metrics at `GET /metrics` (text exposition format 0.0.4):
//! bundles by state, custody events and retransmissions, traffic per peer,
//! each QUIC connection's round trip, window and losses, store use. Each
//! scrape asks the engine thread for a fresh snapshot.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use ferry_link::quic::PathStats;

use crate::driver::{EngineHandle, Status};
use crate::links::Registry;

#[derive(Clone)]
struct Metrics {
    engine: EngineHandle,
    /// The peers (configured and learned at runtime) that name the links.
    registry: Arc<Registry>,
}

/// Serves `/metrics` on `addr` until the task is dropped.
pub async fn serve(
    addr: SocketAddr,
    engine: EngineHandle,
    registry: Arc<Registry>,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "metrics at /metrics");
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state(Metrics { engine, registry });
    axum::serve(listener, app).await
}

async fn scrape(State(metrics): State<Metrics>) -> impl IntoResponse {
    let peers: BTreeMap<u32, String> = metrics
        .registry
        .peers()
        .into_iter()
        .map(|(link, peer)| (link.0, peer.name))
        .collect();
    match metrics.engine.status().await {
        Ok(status) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            render(&status, &peers, &metrics.registry.path_stats()),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/plain")],
            format!("engine unavailable: {e}\n"),
        ),
    }
}

/// A metric family over each peer's QUIC path: name, type, help, value.
type PathFamily = (
    &'static str,
    &'static str,
    &'static str,
    fn(&PathStats) -> u64,
);

/// The snapshot, and the QUIC path of each connected peer (by name), in
/// Prometheus' text format.
pub fn render(
    status: &Status,
    peers: &BTreeMap<u32, String>,
    paths: &[(String, PathStats)],
) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let mut states: BTreeMap<&str, u64> = BTreeMap::new();
    for b in &status.bundles {
        let state = if b.received.is_some() {
            "receiving"
        } else if !b.pending_hops.is_empty() {
            "forwarding"
        } else if b.delivered_here {
            "delivered"
        } else {
            "released"
        };
        *states.entry(state).or_default() += 1;
    }
    let states: Vec<(String, u64)> = ["receiving", "forwarding", "delivered", "released"]
        .into_iter()
        .map(|s| {
            (
                format!("{{state=\"{s}\"}}"),
                states.get(s).copied().unwrap_or(0),
            )
        })
        .collect();
    family(
        "ferry_bundles",
        "gauge",
        "Bundles this node holds, by state.",
        &states,
    );
    let c = &status.counters;
    family(
        "ferry_custody_events_total",
        "counter",
        "Custody accepted, released and refused by this node.",
        &[
            ("{event=\"accepted\"}".into(), c.custody_accepted),
            ("{event=\"released\"}".into(), c.custody_released),
            ("{event=\"refused\"}".into(), c.custody_refused),
        ],
    );
    family(
        "ferry_custody_retransmissions_total",
        "counter",
        "Offers repeated because a next hop did not answer in time.",
        &[(String::new(), c.custody_retransmissions)],
    );
    family(
        "ferry_chunk_bytes_sent_total",
        "counter",
        "Chunk bytes sent: asked for by a receiver, or pipelined ahead of its answer.",
        &[
            ("{reason=\"asked\"}".into(), c.asked_bytes),
            ("{reason=\"pipelined\"}".into(), c.speculative_bytes),
        ],
    );
    family(
        "ferry_bundles_expired_total",
        "counter",
        "Bundles whose lifetime ended at this node.",
        &[(String::new(), c.expired)],
    );
    family(
        "ferry_sessions_closed_total",
        "counter",
        "Sessions ended because of a peer's bad input.",
        &[(String::new(), c.sessions_closed)],
    );
    let peer = |link: u32| {
        peers
            .get(&link)
            .cloned()
            .unwrap_or_else(|| format!("link{link}"))
    };
    let mut up = Vec::new();
    let mut bytes = Vec::new();
    let mut frames = Vec::new();
    for l in &status.links {
        let name = peer(l.link);
        up.push((format!("{{peer=\"{name}\"}}"), u64::from(l.up)));
        for (dir, b, f) in [
            ("in", l.bytes_in, l.frames_in),
            ("out", l.bytes_out, l.frames_out),
        ] {
            let labels = format!("{{peer=\"{name}\",direction=\"{dir}\"}}");
            bytes.push((labels.clone(), b));
            frames.push((labels, f));
        }
    }
    family(
        "ferry_link_up",
        "gauge",
        "Whether the link to a peer is up.",
        &up,
    );
    family(
        "ferry_link_bytes_total",
        "counter",
        "Frame bytes exchanged with a peer.",
        &bytes,
    );
    family(
        "ferry_link_frames_total",
        "counter",
        "Frames exchanged with a peer.",
        &frames,
    );
    let quic: [PathFamily; 4] = [
        (
            "ferry_quic_packets_sent_total",
            "counter",
            "QUIC packets sent to a peer on its current connection.",
            |s| s.sent_packets,
        ),
        (
            "ferry_quic_packets_lost_total",
            "counter",
            "QUIC packets to a peer declared lost (and resent) on its current connection.",
            |s| s.lost_packets,
        ),
        (
            "ferry_quic_congestion_events_total",
            "counter",
            "Times QUIC cut its congestion window on a peer's current connection.",
            |s| s.congestion_events,
        ),
        (
            "ferry_quic_congestion_window_bytes",
            "gauge",
            "QUIC's congestion window towards a peer.",
            |s| s.cwnd,
        ),
    ];
    for (name, kind, help, value) in quic {
        let samples: Vec<(String, u64)> = paths
            .iter()
            .map(|(peer, stats)| (format!("{{peer=\"{peer}\"}}"), value(stats)))
            .collect();
        family(name, kind, help, &samples);
    }
    family(
        "ferry_store_bytes",
        "gauge",
        "Bytes the store uses on disk.",
        &[(String::new(), status.store_bytes)],
    );
    if let Some(quota) = status.store_quota {
        family(
            "ferry_store_quota_bytes",
            "gauge",
            "The store's quota.",
            &[(String::new(), quota)],
        );
    }
    let _ = writeln!(
        out,
        "# HELP ferry_quic_rtt_seconds QUIC's round-trip estimate to a peer.\n\
         # TYPE ferry_quic_rtt_seconds gauge"
    );
    for (name, stats) in paths {
        let rtt = stats.rtt.as_secs_f64();
        let _ = writeln!(out, "ferry_quic_rtt_seconds{{peer=\"{name}\"}} {rtt}");
    }
    crate::trust::render_metrics(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::{BundleStatus, LinkStatus};

    #[test]
    fn renders_bundles_links_and_store() {
        let status = Status {
            links: vec![LinkStatus {
                link: 0,
                up: true,
                frames_in: 3,
                bytes_in: 300,
                frames_out: 4,
                bytes_out: 4000,
            }],
            bundles: vec![BundleStatus {
                id: "b".into(),
                destination: "d".into(),
                payload_bytes: 10,
                pending_hops: vec!["h".into()],
                delivered_here: false,
                received: None,
                manifest: String::new(),
                kind: "file",
                release: String::new(),
            }],
            store_bytes: 1234,
            store_quota: Some(5000),
            ..Status::default()
        };
        let path = PathStats {
            rtt: std::time::Duration::from_millis(650),
            cwnd: 64_000,
            sent_packets: 900,
            lost_packets: 7,
            congestion_events: 2,
        };
        let text = render(
            &status,
            &[(0, "leaf".to_string())].into(),
            &[("leaf".to_string(), path)],
        );
        assert!(
            text.contains("ferry_bundles{state=\"forwarding\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("ferry_link_bytes_total{peer=\"leaf\",direction=\"out\"} 4000\n"));
        assert!(text.contains("ferry_link_up{peer=\"leaf\"} 1\n"));
        assert!(text.contains("ferry_store_quota_bytes 5000\n"));
        assert!(text.contains("ferry_quic_packets_lost_total{peer=\"leaf\"} 7\n"));
        assert!(text.contains("ferry_quic_congestion_window_bytes{peer=\"leaf\"} 64000\n"));
        assert!(text.contains("ferry_quic_rtt_seconds{peer=\"leaf\"} 0.65\n"));
        for family in [
            "ferry_releases_refused_total{reason=\"sealed\"}",
            "ferry_serve_refused_total",
            "ferry_handshakes_refused_total",
            "ferry_media_refused_total",
        ] {
            assert!(text.contains(family), "{family}: {text}");
        }
        // Every sample line belongs to a family announced before it.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(text.contains(&format!("# TYPE {name} ")), "{line}");
        }
    }
}
