//! Serial links: one task per peer reached over a serial line (an acoustic
//! or satellite modem, `[peer.serial]`), which opens the device, pumps
//! frames between it and the engine thread, and opens it again when it
//! fails.
//!
//! A serial line has no connection: the link is up while the device is
//! open. Each opening is a new generation of the peer's link: the engine
//! hears [`Input::Up`] with the line's [`LinkProperties`](ferry_core::LinkProperties)
//! (its MTU is what one modem frame carries), and [`Input::Down`] when the
//! device fails, reaches end of file or is closed. A device that cannot be
//! opened is tried again after 1 s, doubling up to a minute, with a warning
//! naming it each time; the rest of the node runs on meanwhile.
//!
//! The engine picks each frame as late as possible. The link's outgoing
//! queue holds one frame, and while a frame is on the line (or, on a
//! half-duplex link, while the other end holds the turn) the writer keeps
//! that one slot reserved itself. The engine, finding the queue full, waits
//! for [`Input::Ready`], which the writer sends when
//! [`SerialLink::ready`] says the next frame would leave at once. So a
//! want-list that arrives while a frame is on the air still shapes the next.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ferry_core::{LinkId, NodeId, Transmit};
use ferry_link::identity::NodeKey;
use ferry_link::serial::CrcKind;
use ferry_link::serial::port::{SerialError, SerialLink};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::{Peer, SerialPeer};
use crate::driver::{EngineHandle, Input, Outlet};

/// First wait before opening a device again.
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// Longest wait; a link that stayed up this long retries from the first.
const LAST_RETRY: Duration = Duration::from_secs(60);
/// How often the line's counters are logged (at debug).
const STATS_EVERY: Duration = Duration::from_secs(60);

/// The tasks driving this node's serial peers.
pub struct SerialLinks {
    tasks: Vec<JoinHandle<()>>,
}

impl SerialLinks {
    /// Starts one task for each peer in `links` that has a serial line.
    /// A line with `crc = "mac"` authenticates its frames with the key this
    /// node (`key`) and the peer derive from their node keys. Must be called
    /// within a tokio runtime.
    pub fn start(
        links: &BTreeMap<NodeId, (LinkId, Peer)>,
        key: &NodeKey,
        engine: &EngineHandle,
    ) -> SerialLinks {
        let tasks = links
            .values()
            .filter_map(|(link, peer)| {
                let mut serial = peer.serial.clone()?;
                if let Some(public) = serial.peer_key {
                    // Validated with the configuration.
                    let link_key = key.serial_link_key(&public)?;
                    serial.link.framing.crc = CrcKind::Mac(link_key);
                }
                let name = peer.name.clone();
                Some(tokio::spawn(keep_open(*link, name, serial, engine.clone())))
            })
            .collect();
        SerialLinks { tasks }
    }

    /// Stops every task and closes the devices.
    pub async fn stop(self) {
        for task in &self.tasks {
            task.abort();
        }
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Opens `serial`'s device, runs the link until it ends, and again, forever.
async fn keep_open(link: LinkId, peer: String, serial: SerialPeer, engine: EngineHandle) {
    let device = serial.link.path.display().to_string();
    let mut backoff = FIRST_RETRY;
    let mut generation = 0u64;
    loop {
        match SerialLink::open(serial.link.clone()) {
            Ok(port) => {
                generation += 1;
                let props = serial.link_properties();
                tracing::info!(
                    peer = %peer,
                    %device,
                    baud = serial.link.baud_bps,
                    line_rate = ?serial.link.line_rate_bps,
                    mtu = props.mtu,
                    rtt = ?props.rtt,
                    half_duplex = serial.link.half_duplex.is_some(),
                    check = ?serial.link.framing.crc,
                    "serial link up"
                );
                let opened = tokio::time::Instant::now();
                let (frames, queue) = mpsc::channel(1);
                let wants_ready = Arc::new(AtomicBool::new(false));
                let pump = Pump {
                    link,
                    peer: &peer,
                    port: &port,
                    engine: &engine,
                    wants_ready: wants_ready.clone(),
                    slot: frames.downgrade(),
                };
                engine.send(Input::Up {
                    link,
                    generation,
                    props,
                    outlet: Outlet {
                        frames,
                        wants_ready,
                        // One line, paced: frames go in the engine's order.
                        control: None,
                    },
                });
                let reason = pump.run(queue).await;
                engine.send(Input::Down { link, generation });
                let stats = port.stats();
                drop(port);
                if opened.elapsed() >= LAST_RETRY {
                    backoff = FIRST_RETRY;
                }
                tracing::warn!(
                    peer = %peer,
                    %device,
                    %reason,
                    frames_sent = stats.frames_sent,
                    frames_received = stats.frames_received,
                    frames_dropped = stats.decoder.dropped(),
                    retry_in = ?backoff,
                    "serial link down"
                );
            }
            Err(e) => {
                tracing::warn!(peer = %peer, %device, error = %e, retry_in = ?backoff, "cannot open serial device");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(LAST_RETRY);
    }
}

/// One opening of a device, attached to the engine.
struct Pump<'a> {
    link: LinkId,
    peer: &'a str,
    port: &'a SerialLink,
    engine: &'a EngineHandle,
    wants_ready: Arc<AtomicBool>,
    /// The outlet's queue, to hold its one slot while the line is busy.
    slot: mpsc::WeakSender<Transmit>,
}

impl Pump<'_> {
    /// Moves frames both ways until the device fails or the engine drops
    /// the outlet; returns why it stopped.
    async fn run(&self, queue: mpsc::Receiver<Transmit>) -> String {
        tokio::select! {
            reason = self.write(queue) => reason,
            reason = self.read() => reason,
            never = self.log_stats() => never,
        }
    }

    /// Logs the line's counters now and then: what the link's traffic
    /// metrics do not show (framing, frames lost to CRC errors, turns).
    async fn log_stats(&self) -> String {
        let mut every = tokio::time::interval(STATS_EVERY);
        every.tick().await;
        loop {
            every.tick().await;
            let stats = self.port.stats();
            tracing::debug!(
                peer = %self.peer,
                bytes_sent = stats.bytes_sent,
                bytes_received = stats.bytes_received,
                frames_sent = stats.frames_sent,
                frames_received = stats.frames_received,
                frames_dropped = stats.decoder.dropped(),
                dropped_crc = stats.decoder.dropped_crc,
                turns = stats.turns.turns,
                turn_timeouts = stats.turns.timeouts,
                handovers_sent = stats.handovers_sent,
                "serial line"
            );
        }
    }

    async fn write(&self, mut queue: mpsc::Receiver<Transmit>) -> String {
        let mut held = self.hold_slot();
        loop {
            if let Err(e) = self.port.ready().await {
                return e.to_string();
            }
            // The next frame would leave at once: let the engine choose it.
            drop(held);
            if self.wants_ready.swap(false, Ordering::AcqRel) {
                self.engine.send(Input::Ready { link: self.link });
            }
            let Some(transmit) = queue.recv().await else {
                return "the engine closed the link".into();
            };
            held = self.hold_slot();
            match self.port.send(transmit.frame).await {
                Ok(()) => {}
                // The engine keeps to the MTU it was given; if it did not,
                // the frame is lost and repaired like any other.
                Err(e @ (SerialError::FrameTooLong { .. } | SerialError::EmptyFrame { .. })) => {
                    tracing::error!(peer = %self.peer, error = %e, "engine frame not sent");
                }
                Err(e) => return e.to_string(),
            }
        }
    }

    /// Takes the outlet's one slot, unless the engine got there first.
    fn hold_slot(&self) -> Option<mpsc::OwnedPermit<Transmit>> {
        self.slot.upgrade()?.try_reserve_owned().ok()
    }

    async fn read(&self) -> String {
        loop {
            match self.port.recv().await {
                Ok(Some(bytes)) => self.engine.send_frame(self.link, bytes).await,
                Ok(None) => return "the device reached end of file".into(),
                Err(e) => return e.to_string(),
            }
        }
    }
}
