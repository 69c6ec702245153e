//! A UDP impairment proxy: puts a link profile between two UDP endpoints
//! (typically two QUIC nodes in a real-process test), because kernel netem
//! is not available everywhere the tests run.
//!
//! ```text
//!  client ──▶ listen ┌───────── Proxy ─────────┐ egress ──▶ upstream
//!                    │ to_upstream: ImpairmentModel
//!  client ◀────────  │ to_client:   ImpairmentModel │ ◀──────── upstream
//!                    └─────────────────────────┘
//! ```
//!
//! [`Proxy::start`] listens on a UDP address. The first address that sends
//! to it becomes *the client*; a later datagram from another address makes
//! that one the client instead, so a restarted client reconnects. Datagrams
//! from the client go to the upstream from one socket of the proxy's own
//! (the *egress*, bound to an ephemeral port), so the upstream sees the
//! proxy as a single peer; what the upstream sends back goes to the current
//! client.
//!
//! # The model
//! Each direction applies an [`ImpairmentModel`] on its own, with its own
//! ChaCha8 stream (the seed's stream 1 towards the upstream, 2 towards the
//! client), loss state and queue. For each datagram, in order:
//!
//! 1. **Fate.** The random draws come first and always in the same number:
//!    the loss model ([`Loss`], with its Gilbert-Elliott state), whether it
//!    is duplicated, and its jitter. So the k-th datagram of a direction
//!    meets the same fate for a given seed whatever the timing; only what
//!    depends on the clock (queue drops, contact windows) varies with the OS.
//! 2. **Contact.** While the link is down, the datagram is dropped
//!    ([`DirectionStats::dropped_down`]).
//! 3. **Queue.** The line sends `rate_bps`; a datagram of `len` bytes
//!    occupies it for `len × 8 / rate_bps` after the previous one finished.
//!    If the bytes not yet sent plus this datagram would exceed
//!    `queue_limit_bytes`, it is dropped (tail drop,
//!    [`DirectionStats::dropped_queue`]).
//! 4. **Loss.** A lost datagram has still taken its turn on the line
//!    ([`DirectionStats::lost`]).
//! 5. **Delay.** It arrives `delay` plus its jitter after its serialisation
//!    ends, twice if duplicated (each copy with its own jitter). A non-zero
//!    jitter reorders datagrams.
//! 6. **Windows.** A datagram that would arrive after the contact it was
//!    sent in has ended (the schedule's window closed, or a test forced the
//!    link down meanwhile) is dropped instead, as is everything still queued.
//!
//! The schedule's clock starts at [`Proxy::start`]. [`Proxy::set_up`]
//! forces the link up or down (a scripted partition) until
//! [`Proxy::clear_override`] hands it back to the schedule. Forcing the link
//! up does not revive what a closed window already doomed.
//!
//! Each direction is one tokio task that reads its socket and sleeps until
//! the next arrival of a delay queue (a heap ordered by arrival time and
//! sequence); nothing is spawned per datagram and nothing polls.
//!
//! # Relation to the simulator
//! ferry-sim's `LinkModel` and this proxy follow the same rules where both
//! have them: serialisation at the line rate, then a fixed delay plus a
//! uniform jitter, loss decided per frame after it took the line, optional
//! duplication, and frames in flight lost when a contact ends. They differ
//! where their drivers differ: the simulator's engines only hand a wire a
//! frame once its line is free, so it needs no queue, while real senders
//! (QUIC) push whenever they like, so the proxy has a bounded queue that
//! tail-drops. The proxy also takes [`LinkProfile`]'s Gilbert-Elliott loss
//! and contact [`Schedule`] directly
//! ([`ImpairmentModel::from_profile`]). Neither the frame size (MTU) nor
//! half-duplex turn-taking of a profile is modelled here: the proxy carries
//! the datagrams it is given, both ways at once.
//!
//! # Example
//! ```no_run
//! # async fn demo(upstream: std::net::SocketAddr) -> Result<(), ferry_link::proxy::ProxyError> {
//! use ferry_link::profile::LinkProfile;
//! use ferry_link::proxy::{ImpairmentModel, Proxy};
//!
//! let lte = LinkProfile::named("lte-bush").expect("a built-in profile");
//! let model = ImpairmentModel::from_profile(lte).always_up();
//! let proxy = Proxy::start("127.0.0.1:0".parse().unwrap(), upstream, model, 42).await?;
//! // Point the client at proxy.local_addr() …
//! proxy.set_up(false); // … partition the link …
//! proxy.set_up(true); // … and heal it.
//! println!("{:?}", proxy.stats());
//! proxy.stop().await;
//! # Ok(())
//! # }
//! ```
//!
//! [`Loss`]: crate::profile::Loss
//! [`LinkProfile`]: crate::profile::LinkProfile
//! [`Schedule`]: crate::profile::Schedule

mod line;
mod model;
mod stats;

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout_at};

use line::{Control, Direction, Line, LinkState};

pub use model::{ImpairmentModel, MIN_QUEUE_BYTES, ModelError};
pub use stats::{DirectionStats, ProxyStats};

/// The largest UDP payload the proxy reads.
const MAX_DATAGRAM: usize = 65_536;

/// How long a direction pauses after an unexpected socket error, so that a
/// broken socket cannot make it spin.
const ERROR_PAUSE: Duration = Duration::from_millis(10);

/// Why a proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The model is unusable.
    #[error("invalid impairment model: {0}")]
    Model(#[from] ModelError),
    /// A UDP socket could not be bound.
    #[error("cannot bind the proxy's socket on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        source: io::Error,
    },
    /// The egress socket could not be pointed at the upstream.
    #[error("cannot connect the proxy to upstream {addr}: {source}")]
    Connect {
        /// The upstream.
        addr: SocketAddr,
        /// What the OS said.
        source: io::Error,
    },
    /// A socket's local address could not be read.
    #[error("cannot read the proxy's local address: {0}")]
    LocalAddr(io::Error),
}

/// What the tasks and the handle share.
struct Shared {
    start: Instant,
    control: Mutex<Control>,
    client: Mutex<Option<SocketAddr>>,
    stats: Mutex<ProxyStats>,
}

/// Locks, ignoring poisoning: every critical section leaves its data whole.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn since(&self) -> Duration {
        self.start.elapsed()
    }

    fn link(&self, since: Duration) -> LinkState {
        lock(&self.control).state(since)
    }

    fn generation(&self) -> u64 {
        lock(&self.control).generation()
    }

    fn client(&self) -> Option<SocketAddr> {
        *lock(&self.client)
    }

    fn learn_client(&self, peer: SocketAddr) {
        let mut client = lock(&self.client);
        if *client != Some(peer) {
            match *client {
                None => tracing::debug!(%peer, "proxy: client"),
                Some(old) => tracing::info!(%old, new = %peer, "proxy: client changed"),
            }
            *client = Some(peer);
        }
    }

    fn publish(&self, direction: Direction, now: DirectionStats) {
        let mut stats = lock(&self.stats);
        match direction {
            Direction::ToUpstream => stats.to_upstream = now,
            Direction::ToClient => stats.to_client = now,
        }
    }
}

/// A running impairment proxy; see the [module documentation](self).
///
/// Dropping it stops it (its tasks are aborted); [`Proxy::stop`] also waits
/// until its sockets are closed.
pub struct Proxy {
    local: SocketAddr,
    egress: SocketAddr,
    upstream: SocketAddr,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Proxy {
    /// Starts a proxy listening on `listen` that forwards to `upstream`
    /// through `model`, with random streams derived from `seed`. The
    /// schedule's clock starts now. Must be called inside a tokio runtime
    /// with timers and I/O enabled.
    pub async fn start(
        listen: SocketAddr,
        upstream: SocketAddr,
        model: ImpairmentModel,
        seed: u64,
    ) -> Result<Proxy, ProxyError> {
        model.validate()?;
        let front = UdpSocket::bind(listen)
            .await
            .map_err(|source| ProxyError::Bind {
                addr: listen,
                source,
            })?;
        let local = front.local_addr().map_err(ProxyError::LocalAddr)?;
        // Loopback upstreams get a loopback egress, so the address the
        // upstream sees is the one `egress_addr` reports.
        let egress_ip = match upstream.ip() {
            IpAddr::V4(ip) if ip.is_loopback() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(ip) if ip.is_loopback() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        let egress_bind = SocketAddr::new(egress_ip, 0);
        let back = UdpSocket::bind(egress_bind)
            .await
            .map_err(|source| ProxyError::Bind {
                addr: egress_bind,
                source,
            })?;
        back.connect(upstream)
            .await
            .map_err(|source| ProxyError::Connect {
                addr: upstream,
                source,
            })?;
        let egress = back.local_addr().map_err(ProxyError::LocalAddr)?;

        let shared = Arc::new(Shared {
            start: Instant::now(),
            control: Mutex::new(Control::new(model.schedule)),
            client: Mutex::new(None),
            stats: Mutex::new(ProxyStats::default()),
        });
        let front = Arc::new(front);
        let back = Arc::new(back);
        let tasks = [Direction::ToUpstream, Direction::ToClient]
            .into_iter()
            .map(|direction| {
                let line = Line::new(&model, seed, direction);
                let (from, to) = match direction {
                    Direction::ToUpstream => (front.clone(), back.clone()),
                    Direction::ToClient => (back.clone(), front.clone()),
                };
                tokio::spawn(pump(shared.clone(), line, direction, from, to))
            })
            .collect();
        tracing::debug!(%local, %egress, %upstream, seed, ?model, "proxy: started");
        Ok(Proxy {
            local,
            egress,
            upstream,
            shared,
            tasks,
        })
    }

    /// The address clients send to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The address the upstream sees the proxy at.
    pub fn egress_addr(&self) -> SocketAddr {
        self.egress
    }

    /// Where the proxy forwards to.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// The client replies go to: the last address that sent to the proxy.
    pub fn client(&self) -> Option<SocketAddr> {
        self.shared.client()
    }

    /// What both directions did so far.
    pub fn stats(&self) -> ProxyStats {
        *lock(&self.shared.stats)
    }

    /// Whether the link is up now (by the schedule or an override).
    pub fn is_up(&self) -> bool {
        self.shared.link(self.shared.since()).up
    }

    /// Forces the link up or down, whatever the schedule says, until
    /// [`Proxy::clear_override`]. Taking it down also loses everything
    /// queued or in flight.
    pub fn set_up(&self, up: bool) {
        let since = self.shared.since();
        lock(&self.shared.control).force(since, Some(up));
        tracing::debug!(up, ?since, "proxy: link forced");
    }

    /// Hands the link back to the model's schedule.
    pub fn clear_override(&self) {
        let since = self.shared.since();
        lock(&self.shared.control).force(since, None);
        tracing::debug!(?since, "proxy: link follows its schedule");
    }

    /// Stops the proxy and waits until its sockets are closed, so its
    /// listening address can be bound again.
    pub async fn stop(mut self) {
        let tasks = std::mem::take(&mut self.tasks);
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            // Cancelled is the expected outcome; a panic has been reported.
            let _ = task.await;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("local", &self.local)
            .field("egress", &self.egress)
            .field("upstream", &self.upstream)
            .finish_non_exhaustive()
    }
}

/// One direction: reads `from`, impairs, and sends on `to` when due.
async fn pump(
    shared: Arc<Shared>,
    mut line: Line,
    direction: Direction,
    from: Arc<UdpSocket>,
    to: Arc<UdpSocket>,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        // `recv_from` is cancel-safe: a timeout loses no datagram.
        let received = match line.next_deadline() {
            Some(at) => timeout_at(shared.start + at, from.recv_from(&mut buf))
                .await
                .ok(),
            None => Some(from.recv_from(&mut buf).await),
        };
        let now = shared.since();
        match received {
            None => {}
            Some(Ok((len, peer))) => {
                if direction == Direction::ToUpstream {
                    shared.learn_client(peer);
                }
                let data = buf.get(..len).unwrap_or_default().to_vec();
                line.offer(now, data, shared.link(now));
            }
            // An ICMP port unreachable from an upstream that is not (yet)
            // listening, reported on the connected egress socket.
            Some(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
                tracing::trace!(?direction, "proxy: upstream refused a datagram");
            }
            Some(Err(e)) => {
                tracing::warn!(?direction, error = %e, "proxy: receive failed");
                tokio::time::sleep(ERROR_PAUSE).await;
            }
        }
        let generation = shared.generation();
        while let Some(data) = line.pop_due(now, generation) {
            let sent = match direction {
                Direction::ToUpstream => to.send(&data).await,
                Direction::ToClient => match shared.client() {
                    Some(client) => to.send_to(&data, client).await,
                    None => Err(io::ErrorKind::NotConnected.into()),
                },
            };
            match sent {
                Ok(_) => line.sent(data.len()),
                Err(e) => {
                    tracing::trace!(?direction, error = %e, "proxy: send failed");
                    line.send_failed();
                }
            }
        }
        shared.publish(direction, line.stats());
    }
}
