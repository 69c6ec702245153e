//! The event log: every transmission, loss, delivery, custody event, contact
//! change and crash, in order, numbered by step. The log is hashed as it
//! grows (BLAKE3), so a run of millions of frames keeps no copy of it; the
//! hash is what two runs compare. Observers (the invariant checker, the
//! report) see each record once, with the network as it is after the step.

use ferry_core::{BundleId, Event, Instant, NodeId};

use crate::net::{NodeIndex, WireId};

/// Why a frame did not arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossCause {
    /// The link's loss model (Bernoulli or Gilbert-Elliott).
    Channel,
    /// Bit errors: the serial decoder's CRC rejected it.
    Corrupt,
    /// The sender's wire queue was full (drop-tail).
    QueueFull,
    /// The contact ended (or a node crashed) while it was in flight.
    ContactEnded,
    /// The receiving node was down.
    NodeDown,
}

/// One entry of the log.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    /// A frame started leaving on a wire: `len` engine bytes, `on_air` bytes
    /// including the link's framing.
    Sent {
        wire: WireId,
        dir: u8,
        len: u32,
        on_air: u32,
        bulk: bool,
    },
    Lost {
        wire: WireId,
        dir: u8,
        len: u32,
        cause: LossCause,
    },
    /// A frame (or its duplicate) reached the receiving engine.
    Arrived {
        wire: WireId,
        dir: u8,
        len: u32,
    },
    /// A half-duplex turn hand-over frame (carries no engine frame).
    Handover {
        wire: WireId,
        dir: u8,
    },
    Contact {
        wire: WireId,
        up: bool,
    },
    Crash {
        node: NodeIndex,
    },
    Restart {
        node: NodeIndex,
    },
    /// An application handed a bundle to a node.
    Submitted {
        node: NodeIndex,
        bundle: BundleId,
        payload: u64,
    },
    /// Something the engine of `node` reported.
    Engine {
        node: NodeIndex,
        event: Event,
    },
}

/// A record with its place in the run.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// 0-based position in the log.
    pub step: u64,
    pub at: Instant,
    pub record: Record,
}

/// Hashes records as they come; keeps none.
#[derive(Clone, Debug)]
pub struct EventLog {
    hasher: blake3::Hasher,
    steps: u64,
    buf: Vec<u8>,
}

impl Default for EventLog {
    fn default() -> Self {
        Self {
            hasher: blake3::Hasher::new(),
            steps: 0,
            buf: Vec::with_capacity(256),
        }
    }
}

impl EventLog {
    /// Appends a record; returns it numbered.
    pub fn push(&mut self, at: Instant, record: Record) -> Entry {
        let step = self.steps;
        self.steps += 1;
        self.buf.clear();
        encode(&mut self.buf, step, at, &record);
        self.hasher.update(&self.buf);
        Entry { step, at, record }
    }

    /// Records so far.
    pub fn len(&self) -> u64 {
        self.steps
    }

    pub fn is_empty(&self) -> bool {
        self.steps == 0
    }

    /// The hash of every record so far, hex.
    pub fn hash(&self) -> String {
        self.hasher.finalize().to_hex().to_string()
    }
}

fn put(buf: &mut Vec<u8>, v: u64) {
    buf.extend_from_slice(&v.to_le_bytes());
}

fn put_bundle(buf: &mut Vec<u8>, id: &BundleId) {
    buf.extend_from_slice(&id.to_key());
}

fn put_node(buf: &mut Vec<u8>, id: &NodeId) {
    buf.extend_from_slice(&id.0);
}

/// A fixed binary form of each record: the hash depends on nothing but
/// what happened (no formatting, no addresses, no map order).
fn encode(buf: &mut Vec<u8>, step: u64, at: Instant, record: &Record) {
    put(buf, step);
    put(buf, at.0);
    match record {
        Record::Sent {
            wire,
            dir,
            len,
            on_air,
            bulk,
        } => {
            buf.push(1);
            put(buf, *wire as u64);
            buf.extend_from_slice(&[*dir, u8::from(*bulk)]);
            put(buf, u64::from(*len) << 32 | u64::from(*on_air));
        }
        Record::Lost {
            wire,
            dir,
            len,
            cause,
        } => {
            buf.push(2);
            put(buf, *wire as u64);
            buf.extend_from_slice(&[*dir, *cause as u8]);
            put(buf, u64::from(*len));
        }
        Record::Arrived { wire, dir, len } => {
            buf.push(3);
            put(buf, *wire as u64);
            buf.push(*dir);
            put(buf, u64::from(*len));
        }
        Record::Handover { wire, dir } => {
            buf.push(4);
            put(buf, *wire as u64);
            buf.push(*dir);
        }
        Record::Contact { wire, up } => {
            buf.push(5);
            put(buf, *wire as u64);
            buf.push(u8::from(*up));
        }
        Record::Crash { node } => {
            buf.push(6);
            put(buf, *node as u64);
        }
        Record::Restart { node } => {
            buf.push(7);
            put(buf, *node as u64);
        }
        Record::Submitted {
            node,
            bundle,
            payload,
        } => {
            buf.push(8);
            put(buf, *node as u64);
            put_bundle(buf, bundle);
            put(buf, *payload);
        }
        Record::Engine { node, event } => {
            buf.push(9);
            put(buf, *node as u64);
            encode_event(buf, event);
        }
    }
}

fn encode_event(buf: &mut Vec<u8>, event: &Event) {
    match event {
        Event::Delivered { bundle, manifest } => {
            buf.push(1);
            put_bundle(buf, bundle);
            buf.extend_from_slice(manifest.as_bytes());
        }
        Event::CustodyAccepted { bundle, from } => {
            buf.push(2);
            put_bundle(buf, bundle);
            if let Some(from) = from {
                put_node(buf, from);
            }
        }
        Event::CustodyReleased { bundle } => {
            buf.push(3);
            put_bundle(buf, bundle);
        }
        Event::CustodyRefused { bundle, reason } => {
            buf.push(4);
            put_bundle(buf, bundle);
            buf.push(*reason as u8);
        }
        Event::Expired { bundle } => {
            buf.push(5);
            put_bundle(buf, bundle);
        }
        Event::DeletionReported {
            bundle,
            reporter,
            reason,
            detail,
        } => {
            buf.push(6);
            put_bundle(buf, bundle);
            put_node(buf, reporter);
            buf.push(*reason as u8);
            // Only when given, so logs of runs without details hash as before.
            if !detail.is_empty() {
                buf.extend_from_slice(&(detail.len() as u32).to_le_bytes());
                buf.extend_from_slice(detail.as_bytes());
            }
        }
        Event::Progress {
            bundle,
            received,
            total,
        } => {
            buf.push(7);
            put_bundle(buf, bundle);
            put(buf, *received);
            put(buf, *total);
        }
        Event::SessionClosed { link, reason } => {
            buf.push(8);
            put(buf, u64::from(link.0));
            buf.extend_from_slice(reason.as_bytes());
        }
        Event::StoreFailed { detail } => {
            buf.push(9);
            buf.extend_from_slice(detail.as_bytes());
        }
    }
}
