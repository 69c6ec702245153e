//! The engine thread: owns `Engine<SharedStore>`, takes inputs from link
//! and admin tasks over one channel, and feeds each link's outgoing queue.
//!
//! The engine is synchronous and its store syncs to disk, so it runs on its
//! own OS thread rather than on the async runtime. The clock is the system
//! clock in microseconds since the Unix epoch. Frames leave through a
//! bounded queue per link; when a queue is full the link is skipped until
//! its writer says it has room ([`Input::Ready`]), so the engine never makes
//! frames faster than a link drains them.
//!
//! The other way, frames from links wait for room in a shared byte budget
//! ([`FRAME_BUDGET`], [`EngineHandle::send_frame`]) that the engine thread
//! gives back as it handles them: when the engine falls behind a fast link
//! (a slow disk, a slow CPU), the link readers stop reading and the
//! transport's flow control holds the sender back, instead of the backlog
//! growing in memory.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use ferry_chunk::ManifestId;
use ferry_core::{
    BundleId, Contact, Engine, Event, LinkId, LinkProperties, NodeId, PayloadKind, Routes,
    Submission, Transmit,
};
use ferry_proto::{Bytes, FrameCodec};
use ferry_store::SharedStore;
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use crate::config::now;

/// The sending half of a link's outgoing queue, and the flag its writer
/// checks to tell the engine it has room again.
pub struct Outlet {
    pub frames: mpsc::Sender<Transmit>,
    pub wants_ready: Arc<AtomicBool>,
    /// Where control frames go when the link sends them apart from bulk
    /// data (QUIC's control stream), so that a want-list or a custody
    /// signal never waits behind queued chunks. `None`: they share `frames`,
    /// in the engine's order.
    pub control: Option<mpsc::UnboundedSender<Transmit>>,
}

/// What link and admin tasks tell the engine thread.
pub enum Input {
    /// A connection for `link` is up. `generation` tells connections of one
    /// link apart: a `Down` for an older one is ignored.
    Up {
        link: LinkId,
        generation: u64,
        props: LinkProperties,
        outlet: Outlet,
    },
    Down {
        link: LinkId,
        generation: u64,
    },
    /// One or more whole frames from `link`, back to back (engine frames
    /// are self-delimiting; a link may batch them). Made by
    /// [`EngineHandle::send_frame`].
    Frame {
        link: LinkId,
        bytes: Vec<u8>,
        budget: FrameBudget,
    },
    /// The link's queue has room again.
    Ready {
        link: LinkId,
    },
    /// Bundles to take custody of, all or none ([`Engine::submit_all`]).
    Submit {
        submissions: Vec<Submission>,
        reply: oneshot::Sender<Result<Vec<BundleId>, String>>,
    },
    Status {
        reply: oneshot::Sender<Status>,
    },
    /// A link for a peer learned at runtime (an enrolled leaf): the engine
    /// knows it from now on, down until its contact begins.
    AddLink {
        reply: oneshot::Sender<LinkId>,
    },
    /// New static routes and group memberships; held bundles they concern
    /// are routed again (see [`Engine::set_routes`]).
    SetRoutes {
        routes: Routes,
        member_of: BTreeSet<String>,
    },
    /// Every bundle of `kind` delivered here from now on is also announced
    /// on `to` (its id and manifest), e.g. `Admin` bundles to discovery.
    Watch {
        kind: PayloadKind,
        to: mpsc::UnboundedSender<(BundleId, ManifestId)>,
    },
    /// Every deletion report that reaches this node from now on is also
    /// announced on `to` (e.g. a leaf's refusal of a Git release, to the
    /// publisher).
    WatchReports {
        to: mpsc::UnboundedSender<Report>,
    },
    /// Every bundle this node stops holding for next hops from now on (its
    /// custody released, or its lifetime over) is also announced on `to`.
    WatchCustodyEnds {
        to: mpsc::UnboundedSender<BundleId>,
    },
    /// Work on the engine itself, on its thread, with `now` (removable
    /// media: planning an export, importing a volume). Outputs it causes
    /// flow as after any other input.
    WithEngine(EngineWork),
    Shutdown,
}

/// See [`Input::WithEngine`].
/// A deletion report for a bundle this node sent: who, why, in words.
#[derive(Clone, Debug)]
pub struct Report {
    pub bundle: BundleId,
    pub reporter: ferry_core::NodeId,
    pub reason: ferry_core::Reason,
    pub detail: String,
}

pub type EngineWork = Box<dyn FnOnce(&mut Engine<SharedStore>, ferry_core::Instant) + Send>;

/// A snapshot for `ferry status` and `ferry bundles`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Status {
    pub node: String,
    pub links_up: Vec<u32>,
    pub links: Vec<LinkStatus>,
    pub bundles: Vec<BundleStatus>,
    /// The last [`DELIVERIES_KEPT`] bundles delivered here since the daemon
    /// started, oldest first; `counters.delivered` counts them all.
    pub delivered: Vec<Delivery>,
    pub counters: Counters,
    pub store_bytes: u64,
    pub store_quota: Option<u64>,
}

/// Traffic on one link since the daemon started.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LinkStatus {
    pub link: u32,
    pub up: bool,
    pub frames_in: u64,
    pub bytes_in: u64,
    pub frames_out: u64,
    pub bytes_out: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct BundleStatus {
    pub id: String,
    pub destination: String,
    pub payload_bytes: u64,
    pub pending_hops: Vec<String>,
    pub delivered_here: bool,
    pub received: Option<(u64, u64)>,
    /// The payload's manifest id (`ferry get` takes it); empty while only
    /// its progress is known.
    pub manifest: String,
    /// What it carries: `file` (from `ferry send`), `git`, `oci` or
    /// `admin`; empty while only its progress is known.
    pub kind: &'static str,
    /// A file's name as `ferry send` gave it (its path under the directory
    /// sent); empty for other kinds, whose release descriptions are binary.
    pub release: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Delivery {
    pub bundle: String,
    pub manifest: String,
    pub at_ms: u64,
}

/// Running totals, for metrics.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Counters {
    pub frames_in: u64,
    pub frames_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Bundles delivered to this node since the daemon started.
    pub delivered: u64,
    pub custody_accepted: u64,
    pub custody_released: u64,
    pub custody_refused: u64,
    pub expired: u64,
    pub sessions_closed: u64,
    pub store_failures: u64,
    /// Offers repeated because a next hop did not answer in time.
    pub custody_retransmissions: u64,
    /// Chunk bytes sent ahead of the receiver's answer (pipelining).
    pub speculative_bytes: u64,
    /// Chunk bytes sent because a receiver asked for them.
    pub asked_bytes: u64,
}

/// Bytes of received frames that may wait for the engine thread, all links
/// together, before link readers wait too. A frame larger than this takes
/// the whole budget.
pub const FRAME_BUDGET: u32 = 16 << 20;

/// A received frame's share of [`FRAME_BUDGET`], given back when the engine
/// thread has handled the frame.
pub struct FrameBudget {
    _permit: OwnedSemaphorePermit,
}

/// Handle for sending inputs to the engine thread.
#[derive(Clone)]
pub struct EngineHandle {
    pub inputs: Sender<Input>,
    frames: Arc<Semaphore>,
}

impl EngineHandle {
    pub fn send(&self, input: Input) {
        // The engine thread outlives every task; if it is gone, the daemon
        // is shutting down and the input does not matter.
        let _ = self.inputs.send(input);
    }

    /// Hands frames received on `link` to the engine, once they fit in
    /// [`FRAME_BUDGET`]: waits while the engine is that far behind.
    pub async fn send_frame(&self, link: LinkId, bytes: Vec<u8>) {
        let cost = u32::try_from(bytes.len())
            .unwrap_or(u32::MAX)
            .clamp(1, FRAME_BUDGET);
        // The semaphore is never closed.
        let Ok(permit) = self.frames.clone().acquire_many_owned(cost).await else {
            return;
        };
        self.send(Input::Frame {
            link,
            bytes,
            budget: FrameBudget { _permit: permit },
        });
    }

    /// Bytes of received frames waiting for the engine thread now.
    pub fn queued_frame_bytes(&self) -> u64 {
        u64::from(FRAME_BUDGET) - self.frames.available_permits() as u64
    }

    pub async fn submit(&self, submission: Submission) -> Result<BundleId, String> {
        let ids = self.submit_all(vec![submission]).await?;
        ids.into_iter()
            .next()
            .ok_or_else(|| "the engine took no bundle".to_string())
    }

    /// Hands several bundles to the engine, which takes custody of all of
    /// them in one synced write or, on a refusal, of none.
    pub async fn submit_all(&self, submissions: Vec<Submission>) -> Result<Vec<BundleId>, String> {
        let (reply, answer) = oneshot::channel();
        self.send(Input::Submit { submissions, reply });
        answer.await.map_err(|_| "the engine stopped".to_string())?
    }

    pub async fn status(&self) -> Result<Status, String> {
        let (reply, answer) = oneshot::channel();
        self.send(Input::Status { reply });
        answer.await.map_err(|_| "the engine stopped".to_string())
    }

    /// Runs `work` on the engine thread and returns its result.
    pub async fn with_engine<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Engine<SharedStore>, ferry_core::Instant) -> T + Send + 'static,
    ) -> Result<T, String> {
        let (reply, answer) = oneshot::channel();
        self.send(Input::WithEngine(Box::new(move |engine, now| {
            let _ = reply.send(work(engine, now));
        })));
        answer.await.map_err(|_| "the engine stopped".to_string())
    }

    /// A new engine link for a peer learned at runtime.
    pub async fn add_link(&self) -> Result<LinkId, String> {
        let (reply, answer) = oneshot::channel();
        self.send(Input::AddLink { reply });
        answer.await.map_err(|_| "the engine stopped".to_string())
    }
}

struct Driver {
    engine: Engine<SharedStore>,
    codec: FrameCodec,
    outlets: BTreeMap<LinkId, (u64, Outlet)>,
    blocked: BTreeSet<LinkId>,
    traffic: BTreeMap<LinkId, LinkStatus>,
    progress: BTreeMap<BundleId, (u64, u64)>,
    delivered: VecDeque<Delivery>,
    counters: Counters,
    watches: Vec<(PayloadKind, mpsc::UnboundedSender<(BundleId, ManifestId)>)>,
    report_watches: Vec<mpsc::UnboundedSender<Report>>,
    custody_watches: Vec<mpsc::UnboundedSender<BundleId>>,
}

/// How many of the latest deliveries [`Status`] lists: every status answer
/// carries them, and a leaf may run for months.
pub const DELIVERIES_KEPT: usize = 1000;

/// How `ferry bundles` names a payload kind.
fn kind_name(kind: PayloadKind) -> &'static str {
    match kind {
        PayloadKind::Blob => "file",
        PayloadKind::Git => "git",
        PayloadKind::Oci => "oci",
        PayloadKind::Admin => "admin",
    }
}

/// Starts the engine thread; it runs until [`Input::Shutdown`] or until
/// every handle is dropped.
pub fn spawn(engine: Engine<SharedStore>) -> (EngineHandle, std::thread::JoinHandle<()>) {
    let (inputs, rx) = crossbeam_channel::unbounded();
    let driver = Driver {
        engine,
        codec: FrameCodec::new(ferry_proto::HARD_MAX_FRAME),
        outlets: BTreeMap::new(),
        blocked: BTreeSet::new(),
        traffic: BTreeMap::new(),
        progress: BTreeMap::new(),
        delivered: VecDeque::new(),
        counters: Counters::default(),
        watches: Vec::new(),
        report_watches: Vec::new(),
        custody_watches: Vec::new(),
    };
    let thread = std::thread::Builder::new()
        .name("ferry-engine".into())
        .spawn(move || driver.run(rx))
        .expect("spawning a thread");
    let handle = EngineHandle {
        inputs,
        frames: Arc::new(Semaphore::new(FRAME_BUDGET as usize)),
    };
    (handle, thread)
}

impl Driver {
    fn run(mut self, rx: Receiver<Input>) {
        loop {
            let wait = self
                .engine
                .poll_timeout()
                .map_or(Duration::from_secs(3600), |at| at.saturating_since(now()));
            match rx.recv_timeout(wait) {
                Ok(Input::Shutdown) | Err(RecvTimeoutError::Disconnected) => break,
                Ok(input) => self.handle(input),
                Err(RecvTimeoutError::Timeout) => {}
            }
            // Take everything already queued before producing output.
            while let Ok(input) = rx.try_recv() {
                if matches!(input, Input::Shutdown) {
                    return;
                }
                self.handle(input);
            }
            let now = now();
            if self.engine.poll_timeout().is_some_and(|at| at <= now) {
                self.engine.handle_timeout(now);
            }
            self.transmit();
            self.events();
        }
        tracing::info!("engine stopped");
    }

    fn handle(&mut self, input: Input) {
        let now = now();
        match input {
            Input::Up {
                link,
                generation,
                props,
                outlet,
            } => {
                self.outlets.insert(link, (generation, outlet));
                self.blocked.remove(&link);
                self.engine.handle_contact(now, link, Contact::Up(props));
            }
            Input::Down { link, generation } => {
                if self
                    .outlets
                    .get(&link)
                    .is_some_and(|(g, _)| *g == generation)
                {
                    self.outlets.remove(&link);
                    self.blocked.remove(&link);
                    self.engine.handle_contact(now, link, Contact::Down);
                }
            }
            // The frame's budget is given back when this arm ends.
            Input::Frame {
                link,
                bytes,
                budget: _budget,
            } => {
                let traffic = self.traffic.entry(link).or_default();
                traffic.bytes_in += bytes.len() as u64;
                // Shared, so that chunks go from it to the store uncopied.
                let mut rest = Bytes::from(bytes);
                while !rest.is_empty() {
                    // A frame with a broken header goes to the engine whole
                    // (with what follows it), which closes the session over it.
                    let len = self.codec.frame_len(&rest).unwrap_or(rest.len());
                    traffic.frames_in += 1;
                    self.engine
                        .handle_shared_frame(now, link, &rest.split_to(len));
                }
            }
            Input::Ready { link } => {
                self.blocked.remove(&link);
            }
            Input::WithEngine(work) => work(&mut self.engine, now),
            Input::Submit { submissions, reply } => {
                let result = self
                    .engine
                    .submit_all(now, submissions)
                    .map_err(|e| e.to_string());
                let _ = reply.send(result);
            }
            Input::Status { reply } => {
                let _ = reply.send(self.status());
            }
            Input::AddLink { reply } => {
                let _ = reply.send(self.engine.add_link());
            }
            Input::SetRoutes { routes, member_of } => {
                self.engine.set_routes(now, routes);
                self.engine.set_member_of(member_of);
            }
            Input::Watch { kind, to } => self.watches.push((kind, to)),
            Input::WatchReports { to } => self.report_watches.push(to),
            Input::WatchCustodyEnds { to } => self.custody_watches.push(to),
            Input::Shutdown => {}
        }
    }

    /// Moves frames from the engine into every link queue with room.
    fn transmit(&mut self) {
        let now = now();
        let links: Vec<LinkId> = self
            .outlets
            .keys()
            .filter(|l| !self.blocked.contains(l))
            .copied()
            .collect();
        for link in links {
            loop {
                let outlet = &self.outlets[&link].1;
                let permit = match outlet.frames.try_reserve() {
                    Ok(permit) => permit,
                    Err(mpsc::error::TrySendError::Full(())) => {
                        outlet.wants_ready.store(true, Ordering::Release);
                        // The writer may have drained the queue between the
                        // failed reserve and the flag: try once more.
                        match outlet.frames.try_reserve() {
                            Ok(permit) => {
                                outlet.wants_ready.store(false, Ordering::Release);
                                permit
                            }
                            Err(_) => {
                                self.blocked.insert(link);
                                break;
                            }
                        }
                    }
                    Err(mpsc::error::TrySendError::Closed(())) => break,
                };
                let Some(transmit) = self.engine.poll_transmit_on(now, link) else {
                    break;
                };
                let traffic = self.traffic.entry(link).or_default();
                traffic.frames_out += 1;
                traffic.bytes_out += transmit.frame.len() as u64;
                match &outlet.control {
                    // Control frames are few and small: they skip the queue.
                    Some(control) if !transmit.bulk => {
                        let _ = control.send(transmit);
                    }
                    _ => permit.send(transmit),
                }
            }
        }
    }

    fn events(&mut self) {
        while let Some(event) = self.engine.poll_event() {
            match &event {
                Event::Delivered { bundle, manifest } => {
                    tracing::info!(%bundle, %manifest, "delivered");
                    self.progress.remove(bundle);
                    self.counters.delivered += 1;
                    if self.delivered.len() == DELIVERIES_KEPT {
                        self.delivered.pop_front();
                    }
                    self.delivered.push_back(Delivery {
                        bundle: bundle.to_string(),
                        manifest: manifest.to_string(),
                        at_ms: now().as_millis(),
                    });
                    if !self.watches.is_empty() {
                        let kind = self.engine.bundle(bundle).map(|r| r.header.kind);
                        self.watches.retain(|(k, to)| {
                            Some(*k) != kind || to.send((*bundle, *manifest)).is_ok()
                        });
                    }
                }
                Event::CustodyAccepted { bundle, from } => {
                    self.counters.custody_accepted += 1;
                    self.progress.remove(bundle);
                    tracing::info!(%bundle, from = ?from.map(|n| n.to_string()), "custody accepted");
                }
                Event::CustodyReleased { bundle } => {
                    self.counters.custody_released += 1;
                    tracing::info!(%bundle, "custody released");
                    self.custody_watches.retain(|to| to.send(*bundle).is_ok());
                }
                Event::CustodyRefused { bundle, reason } => {
                    self.counters.custody_refused += 1;
                    tracing::warn!(%bundle, ?reason, "custody refused");
                }
                Event::Expired { bundle } => {
                    self.counters.expired += 1;
                    tracing::warn!(%bundle, "expired");
                    self.custody_watches.retain(|to| to.send(*bundle).is_ok());
                }
                Event::DeletionReported {
                    bundle,
                    reporter,
                    reason,
                    detail,
                } => {
                    tracing::warn!(%bundle, %reporter, ?reason, %detail, "deletion reported");
                    let report = Report {
                        bundle: *bundle,
                        reporter: *reporter,
                        reason: *reason,
                        detail: detail.clone(),
                    };
                    self.report_watches
                        .retain(|to| to.send(report.clone()).is_ok());
                }
                Event::Progress {
                    bundle,
                    received,
                    total,
                } => {
                    self.progress.insert(*bundle, (*received, *total));
                }
                Event::SessionClosed { link, reason } => {
                    self.counters.sessions_closed += 1;
                    tracing::warn!(?link, %reason, "session closed");
                }
                Event::StoreFailed { detail } => {
                    self.counters.store_failures += 1;
                    tracing::error!(%detail, "store failed");
                }
            }
        }
    }

    fn status(&self) -> Status {
        let hex = |n: &NodeId| n.to_string();
        let usage = ferry_core::Store::usage(self.engine.store());
        let mut counters = self.counters.clone();
        let stats = self.engine.stats();
        counters.custody_retransmissions = stats.reoffers;
        counters.speculative_bytes = stats.speculative_bytes;
        counters.asked_bytes = stats.asked_bytes;
        // Node totals are the links' sums.
        for t in self.traffic.values() {
            counters.frames_in += t.frames_in;
            counters.bytes_in += t.bytes_in;
            counters.frames_out += t.frames_out;
            counters.bytes_out += t.bytes_out;
        }
        Status {
            node: self.engine.node().to_hex(),
            links_up: self.outlets.keys().map(|l| l.0).collect(),
            links: self
                .traffic
                .iter()
                .map(|(link, t)| LinkStatus {
                    link: link.0,
                    up: self.outlets.contains_key(link),
                    ..t.clone()
                })
                .collect(),
            store_bytes: usage.bytes,
            store_quota: usage.quota,
            bundles: self
                .engine
                .bundles()
                .map(|r| BundleStatus {
                    id: r.header.id.to_string(),
                    destination: r.header.destination.to_string(),
                    payload_bytes: r.header.payload_len,
                    pending_hops: r.pending_hops.iter().map(hex).collect(),
                    delivered_here: r.delivered,
                    received: None,
                    manifest: r.header.manifest.to_string(),
                    kind: kind_name(r.header.kind),
                    release: match r.header.kind {
                        PayloadKind::Blob => {
                            String::from_utf8_lossy(&r.header.release).into_owned()
                        }
                        _ => String::new(),
                    },
                })
                .chain(
                    self.progress
                        .iter()
                        .map(|(id, &(got, total))| BundleStatus {
                            id: id.to_string(),
                            destination: String::new(),
                            payload_bytes: total,
                            pending_hops: Vec::new(),
                            delivered_here: false,
                            received: Some((got, total)),
                            manifest: String::new(),
                            kind: "",
                            release: String::new(),
                        }),
                )
                .collect(),
            delivered: self.delivered.iter().cloned().collect(),
            counters,
        }
    }
}
