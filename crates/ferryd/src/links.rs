//! QUIC links: dialling configured peers with backoff, accepting them, and
//! pumping frames between each connection and the engine thread.
//!
//! One connection per peer at a time. A side dials the peers it has an
//! address for, and not while a connection to that peer is up. When both
//! sides dial at once, each keeps the connection dialled by the node with
//! the smaller id and closes the other, so both keep the same one.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use ferry_core::{LinkId, LinkProperties, NodeId};
use ferry_link::quic::{PathStats, QuicEndpoint, QuicLink};
use tokio::sync::{Notify, mpsc};

use crate::config::Peer;
use crate::discovery::Enrolment;
use crate::driver::{EngineHandle, Input, Outlet};

/// Bulk frames queued per link between the engine and the connection:
/// about a second at the profile's rate in chunks of the default average size,
/// between 16 and 512. Enough that the engine thread runs ahead of a fast
/// link; little enough that on a slow one the engine still decides late
/// what goes next (an expedited bundle, a want-list's answer).
fn queue_len(rate_bps: u64) -> usize {
    let chunk = u64::from(ferry_chunk::ChunkerConfig::DEFAULT.avg_size);
    usize::try_from(rate_bps / 8 / chunk)
        .unwrap_or(usize::MAX)
        .clamp(16, 512)
}

/// Largest frame the engine makes for a QUIC link (it carries whole chunks).
const QUIC_MTU: u32 = 1 << 20;
/// Queued bulk frames sent together, up to about this many bytes.
const BATCH: usize = 1 << 20;

struct Live {
    generation: u64,
    dialled_by: NodeId,
    link: Arc<QuicLink>,
}

/// The connections up now, by peer.
pub struct Registry {
    me: NodeId,
    /// Configured peers, and those learned at runtime ([`Registry::add_peer`]).
    links: Mutex<BTreeMap<NodeId, (LinkId, Peer)>>,
    /// Decides about a node that completed the handshake but is no peer.
    enrolment: OnceLock<Arc<Enrolment>>,
    live: Mutex<BTreeMap<NodeId, Live>>,
    next_generation: Mutex<u64>,
    gone: Notify,
    engine: EngineHandle,
}

impl Registry {
    pub fn new(
        me: NodeId,
        links: BTreeMap<NodeId, (LinkId, Peer)>,
        engine: EngineHandle,
    ) -> Arc<Self> {
        Arc::new(Self {
            me,
            links: Mutex::new(links),
            enrolment: OnceLock::new(),
            live: Mutex::new(BTreeMap::new()),
            next_generation: Mutex::new(0),
            gone: Notify::new(),
            engine,
        })
    }

    /// Lets `enrolment` decide about nodes that are not peers (set once).
    pub fn set_enrolment(&self, enrolment: Arc<Enrolment>) {
        let _ = self.enrolment.set(enrolment);
    }

    /// A peer learned at runtime, with its engine link.
    pub fn add_peer(&self, link: LinkId, peer: Peer) {
        self.links
            .lock()
            .expect("not poisoned")
            .insert(peer.node, (link, peer));
    }

    /// The engine link and configuration of `node`, if it is a peer.
    /// Every peer, configured or learned, with its engine link.
    pub fn peers(&self) -> Vec<(LinkId, Peer)> {
        self.links
            .lock()
            .expect("not poisoned")
            .values()
            .cloned()
            .collect()
    }

    /// The QUIC path of each peer connected now, by peer name.
    pub fn path_stats(&self) -> Vec<(String, PathStats)> {
        let names: BTreeMap<NodeId, String> = self
            .peers()
            .into_iter()
            .map(|(_, peer)| (peer.node, peer.name))
            .collect();
        self.live
            .lock()
            .expect("not poisoned")
            .iter()
            .map(|(node, live)| {
                let name = names.get(node).cloned().unwrap_or_else(|| node.to_string());
                (name, live.link.path_stats())
            })
            .collect()
    }

    pub fn peer(&self, node: NodeId) -> Option<(LinkId, Peer)> {
        self.links.lock().expect("not poisoned").get(&node).cloned()
    }

    fn connected(&self, peer: NodeId) -> bool {
        self.live.lock().expect("not poisoned").contains_key(&peer)
    }

    /// Takes a fresh connection to `peer`, dialled by `dialled_by`, and runs
    /// it until it ends. Returns at once if a connection already up wins.
    pub async fn run(self: &Arc<Self>, link: QuicLink, dialled_by: NodeId) {
        let link = Arc::new(link);
        let peer = link.peer();
        let known = match (self.peer(peer), self.enrolment.get()) {
            (Some(known), _) => Some(known),
            (None, Some(enrolment)) => enrolment.enrol(self, peer, link.remote_addr()).await,
            (None, None) => None,
        };
        let Some((link_id, config)) = known else {
            // The trust policy admits configured peers and those that may enrol.
            link.close("not a peer of this node");
            return;
        };
        let generation = {
            let mut next = self.next_generation.lock().expect("not poisoned");
            *next += 1;
            *next
        };
        {
            let mut live = self.live.lock().expect("not poisoned");
            if let Some(old) = live.get(&peer) {
                let keep_old = old.dialled_by < dialled_by
                    || (old.dialled_by == dialled_by && old.generation > generation);
                if keep_old {
                    tracing::debug!(peer = %config.name, "duplicate connection closed");
                    link.close("duplicate connection");
                    return;
                }
                old.link.close("replaced by a newer connection");
            }
            live.insert(
                peer,
                Live {
                    generation,
                    dialled_by,
                    link: link.clone(),
                },
            );
        }
        tracing::info!(peer = %config.name, node = %peer, remote = %link.remote_addr(), "link up");
        self.pump(link_id, generation, &config, link).await;
        {
            let mut live = self.live.lock().expect("not poisoned");
            if live.get(&peer).is_some_and(|l| l.generation == generation) {
                live.remove(&peer);
            }
        }
        self.engine.send(Input::Down {
            link: link_id,
            generation,
        });
        self.gone.notify_waiters();
        tracing::info!(peer = %config.name, "link down");
    }

    async fn pump(&self, link_id: LinkId, generation: u64, peer: &Peer, link: Arc<QuicLink>) {
        let profile = peer.profile;
        let (frames, mut queue) = mpsc::channel(queue_len(profile.rate_bps));
        let (control, mut control_queue) = mpsc::unbounded_channel();
        let wants_ready = Arc::new(AtomicBool::new(false));
        self.engine.send(Input::Up {
            link: link_id,
            generation,
            props: LinkProperties {
                mtu: QUIC_MTU,
                rtt: profile.rtt,
                reliable: true,
                rate_bps: profile.rate_bps,
                // Long round trips: send chunks before the want-list returns.
                pipeline: profile.rtt >= Duration::from_millis(300),
            },
            outlet: Outlet {
                frames,
                wants_ready: wants_ready.clone(),
                control: Some(control),
            },
        });
        let engine = self.engine.clone();
        // Control frames have their own stream and their own task, so a
        // want-list or custody signal never waits behind chunks.
        let control_writer = async {
            while let Some(transmit) = control_queue.recv().await {
                if let Err(e) = link.send_control(transmit.frame).await {
                    tracing::warn!(peer = %peer.name, error = %e, "send failed");
                    break;
                }
            }
        };
        let writer = async {
            // Engine frames are self-delimiting: bulk frames already queued
            // go out together as one QUIC frame (up to BATCH bytes, not
            // copied), which saves a task hand-off per chunk.
            while let Some(transmit) = queue.recv().await {
                let mut len = transmit.frame.len();
                let mut batch = vec![transmit.frame];
                while len < BATCH {
                    let Ok(t) = queue.try_recv() else { break };
                    len += t.frame.len();
                    batch.push(t.frame);
                }
                if let Err(e) = link.send_bulk_parts(batch).await {
                    tracing::warn!(peer = %peer.name, error = %e, "send failed");
                    break;
                }
                if wants_ready.swap(false, Ordering::AcqRel) {
                    engine.send(Input::Ready { link: link_id });
                }
            }
        };
        let reader = async {
            loop {
                match link.recv().await {
                    // A batch of frames: the engine thread splits it.
                    // (While the engine is far behind, this waits, and
                    // QUIC's flow control holds the peer back.)
                    Ok(Some(bytes)) => engine.send_frame(link_id, bytes).await,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(peer = %peer.name, error = %e, "link failed");
                        break;
                    }
                }
            }
        };
        tokio::select! {
            () = writer => {}
            () = control_writer => {}
            () = reader => {}
        }
        link.close("link ended");
    }

    /// Dials `peer` at `addr` whenever no connection to it is up, backing
    /// off from one second to a minute while it fails.
    pub async fn dial(
        self: Arc<Self>,
        endpoint: Arc<QuicEndpoint>,
        peer: NodeId,
        addr: SocketAddr,
    ) {
        let name = self.peer(peer).map_or(String::new(), |(_, p)| p.name);
        let mut backoff = Duration::from_secs(1);
        loop {
            while self.connected(peer) {
                let gone = self.gone.notified();
                if !self.connected(peer) {
                    break;
                }
                gone.await;
            }
            match endpoint.connect(addr, peer).await {
                Ok(link) => {
                    backoff = Duration::from_secs(1);
                    self.run(link, self.me).await;
                }
                Err(e) => {
                    tracing::warn!(peer = %name, %addr, error = %e, retry_in = ?backoff, "cannot connect");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                }
            }
        }
    }

    /// Accepts connections until the endpoint closes. Each handshake runs
    /// in its own task, so a peer that stalls its handshake or set-up holds
    /// up no other.
    pub async fn accept(self: Arc<Self>, endpoint: Arc<QuicEndpoint>) {
        while let Some(accepting) = endpoint.incoming().await {
            let registry = self.clone();
            tokio::spawn(async move {
                let remote = accepting.remote_addr();
                match accepting.establish().await {
                    Ok(link) => {
                        let peer = link.peer();
                        registry.run(link, peer).await;
                    }
                    Err(e) => {
                        tracing::warn!(%remote, error = %e, "refused an incoming connection");
                    }
                }
            });
        }
    }
}
