//! The discrete-event network: nodes, wires between them, and the event loop.
//!
//! Everything that will happen is an entry in one heap ordered by (time,
//! sequence): frame arrivals, engine timers, a wire direction falling free,
//! half-duplex turn timers. A step pops every entry due at `now`, feeds the
//! engines, then pumps only the nodes touched. Nothing here reads the clock
//! or an unseeded random generator.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Duration;

use ferry_core::{Contact, Engine, EngineConfig, Event, Instant, LinkId, MemStore};
use ferry_link::profile::LossState;
use ferry_link::serial::{Decoder, END_OF_TURN, Encoder, Turns};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::log::{Entry, EventLog, LossCause, Record};
use crate::model::LinkModel;
use crate::seed::{Purpose, stream};

/// One frame put on a wire, kept when [`Net::record_transmissions`] is on.
#[derive(Clone, Debug)]
pub struct Transmission {
    pub wire: WireId,
    /// 0 = from ends[0] towards ends[1].
    pub dir: usize,
    /// Contact generation: it changes whenever the wire goes up or down.
    pub generation: u64,
    pub sent: Instant,
    /// When the first copy arrives; None if the wire lost it.
    pub arrives: Option<Instant>,
    pub frame: Vec<u8>,
}

pub type NodeIndex = usize;
pub type WireId = usize;

/// Bytes and frames that entered a wire, per direction (`a→b`, `b→a`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WireStats {
    pub frames: [u64; 2],
    /// Bytes on the air, the link's framing included.
    pub bytes: [u64; 2],
    /// Frames lost to the channel (loss model and bit errors).
    pub lost: [u64; 2],
    /// Frames dropped at the tail of a full queue.
    pub dropped: [u64; 2],
    /// Frames larger than the link's MTU: a protocol bug, always zero.
    pub oversize: [u64; 2],
}

/// Sees every log entry once, with the network as it is after the step.
/// An error halts the run (see [`Net::halted`]).
pub trait Observer {
    fn observe(&mut self, net: &Net, entry: &Entry) -> Result<(), String>;
}

struct Node {
    config: EngineConfig,
    engine: Option<Engine<MemStore>>,
    /// Where the store waits while the node is down.
    parked: Option<MemStore>,
    events: Vec<(Instant, Event)>,
    /// (wire, direction in which this node sends).
    ends: Vec<(WireId, usize)>,
    /// The engine timer entered in the heap.
    timer: Option<Instant>,
    dirty: bool,
    pump: bool,
}

#[derive(Default)]
struct Direction {
    /// The air carries a frame until here.
    busy_until: Instant,
    free_armed: Option<Instant>,
    loss: LossState,
    /// Queue-limit model: frames waiting for the air, and when the host may
    /// hand over the next one.
    queue: VecDeque<(Vec<u8>, bool)>,
    ingress_at: Instant,
    /// Decoder at the receiving end of this direction (serial framing).
    decoder: Option<Decoder>,
    /// Turn state of the sending end of this direction (half-duplex).
    turns: Option<Turns>,
    turn_armed: Option<Instant>,
    /// Half-duplex: a frame taken from the engine to learn whether it is the
    /// last of the turn.
    lookahead: Option<(Vec<u8>, bool)>,
}

struct Rngs {
    loss: ChaCha8Rng,
    jitter: ChaCha8Rng,
    duplicate: ChaCha8Rng,
    reorder: ChaCha8Rng,
    bits: ChaCha8Rng,
}

struct Wire {
    ends: [(NodeIndex, LinkId); 2],
    model: LinkModel,
    up: bool,
    generation: u64,
    dirs: [Direction; 2],
    rng: Rngs,
    encoder: Option<Encoder>,
    stats: WireStats,
}

enum What {
    Arrival {
        wire: WireId,
        dir: usize,
        generation: u64,
        bytes: Vec<u8>,
        record: Option<usize>,
    },
    Timer(NodeIndex),
    Free(WireId, usize),
    Turn(WireId, usize),
}

struct Due {
    at: Instant,
    seq: u64,
    what: What,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// A network of engines on a virtual clock.
pub struct Net {
    pub now: Instant,
    seed: u64,
    nodes: Vec<Node>,
    wires: Vec<Wire>,
    heap: BinaryHeap<Reverse<Due>>,
    seq: u64,
    dirty: Vec<NodeIndex>,
    transmissions: Option<Vec<Transmission>>,
    keep_events: bool,
    log: EventLog,
    pending: Vec<(Instant, Record)>,
    observer: Option<Box<dyn Observer>>,
    halt: Option<String>,
    trace: bool,
}

impl Net {
    pub fn new(seed: u64) -> Self {
        Self {
            now: Instant::from_millis(1_700_000_000_000),
            seed,
            nodes: Vec::new(),
            wires: Vec::new(),
            heap: BinaryHeap::new(),
            seq: 0,
            dirty: Vec::new(),
            transmissions: None,
            keep_events: true,
            log: EventLog::default(),
            pending: Vec::new(),
            observer: None,
            halt: None,
            trace: false,
        }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Whether each node's events are kept for [`Net::events`] (on by
    /// default; long runs turn it off and read the log instead).
    pub fn keep_events(&mut self, keep: bool) {
        self.keep_events = keep;
    }

    /// Prints every log entry to stderr as it is made.
    pub fn set_trace(&mut self, on: bool) {
        self.trace = on;
    }

    /// Hands every log entry to `observer` from now on.
    pub fn set_observer(&mut self, observer: Box<dyn Observer>) {
        self.observer = Some(observer);
    }

    pub fn take_observer(&mut self) -> Option<Box<dyn Observer>> {
        self.observer.take()
    }

    /// Why the run stopped early: the observer's error, with the step.
    pub fn halted(&self) -> Option<&str> {
        self.halt.as_deref()
    }

    /// The event log's hash so far.
    pub fn event_log_hash(&self) -> String {
        self.log.hash()
    }

    /// Entries in the event log so far.
    pub fn log_len(&self) -> u64 {
        self.log.len()
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub fn wire_count(&self) -> usize {
        self.wires.len()
    }

    pub fn add_node(&mut self, config: EngineConfig, store: MemStore) -> NodeIndex {
        let engine = Engine::new(config.clone(), store).expect("a fresh MemStore opens");
        self.nodes.push(Node {
            config,
            engine: Some(engine),
            parked: None,
            events: Vec::new(),
            ends: Vec::new(),
            timer: None,
            dirty: false,
            pump: false,
        });
        let index = self.nodes.len() - 1;
        self.touch(index, true);
        index
    }

    /// Joins two nodes; the wire starts down (see [`Net::set_up`]). Its random
    /// streams are named `wire<index>`.
    pub fn add_wire(&mut self, a: NodeIndex, b: NodeIndex, model: LinkModel) -> WireId {
        let name = format!("wire{}", self.wires.len());
        self.add_named_wire(a, b, model, &name)
    }

    /// Joins two nodes with random streams derived from `name`, so that no
    /// other wire's streams depend on this one.
    pub fn add_named_wire(
        &mut self,
        a: NodeIndex,
        b: NodeIndex,
        model: LinkModel,
        name: &str,
    ) -> WireId {
        let la = self.engine_mut(a).add_link();
        let lb = self.engine_mut(b).add_link();
        let id = self.wires.len();
        let rng = Rngs {
            loss: stream(self.seed, name, Purpose::Loss),
            jitter: stream(self.seed, name, Purpose::Jitter),
            duplicate: stream(self.seed, name, Purpose::Duplicate),
            reorder: stream(self.seed, name, Purpose::Reorder),
            bits: stream(self.seed, name, Purpose::BitErrors),
        };
        let encoder = model
            .serial
            .map(|s| Encoder::new(s).expect("LinkModel::validate checked the framing"));
        let mut dirs = [Direction::default(), Direction::default()];
        for d in &mut dirs {
            d.decoder = model.serial.map(|s| Decoder::new(s).expect("validated"));
            d.busy_until = self.now;
        }
        self.wires.push(Wire {
            ends: [(a, la), (b, lb)],
            model,
            up: false,
            generation: 0,
            dirs,
            rng,
            encoder,
            stats: WireStats::default(),
        });
        self.nodes[a].ends.push((id, 0));
        self.nodes[b].ends.push((id, 1));
        id
    }

    pub fn engine(&self, node: NodeIndex) -> &Engine<MemStore> {
        self.nodes[node].engine.as_ref().expect("node is up")
    }

    /// The node's engine; the node is pumped before the next step.
    pub fn engine_mut(&mut self, node: NodeIndex) -> &mut Engine<MemStore> {
        self.touch(node, true);
        self.nodes[node].engine.as_mut().expect("node is up")
    }

    /// The node's store, whether it runs or is down (parked).
    pub fn store(&self, node: NodeIndex) -> Option<&MemStore> {
        let n = &self.nodes[node];
        n.engine.as_ref().map(Engine::store).or(n.parked.as_ref())
    }

    pub fn is_running(&self, node: NodeIndex) -> bool {
        self.nodes[node].engine.is_some()
    }

    pub fn stats(&self, wire: WireId) -> WireStats {
        self.wires[wire].stats
    }

    pub fn model(&self, wire: WireId) -> &LinkModel {
        &self.wires[wire].model
    }

    pub fn ends(&self, wire: WireId) -> [NodeIndex; 2] {
        let [(a, _), (b, _)] = self.wires[wire].ends;
        [a, b]
    }

    pub fn is_up(&self, wire: WireId) -> bool {
        self.wires[wire].up
    }

    /// Keeps every frame sent from now on (see [`Net::transmissions`]).
    pub fn record_transmissions(&mut self) {
        self.transmissions.get_or_insert_with(Vec::new);
    }

    /// Frames sent since [`Net::record_transmissions`], in order.
    pub fn transmissions(&self) -> &[Transmission] {
        self.transmissions.as_deref().unwrap_or_default()
    }

    /// Events a node reported so far, with when (see [`Net::keep_events`]).
    pub fn events(&self, node: NodeIndex) -> &[(Instant, Event)] {
        &self.nodes[node].events
    }

    /// Logs a record made by the driver of the run (e.g. a submission).
    pub fn log(&mut self, record: Record) {
        self.pending.push((self.now, record));
        self.publish();
    }

    /// Starts or ends a contact on a wire. Frames in flight are lost at its end.
    pub fn set_up(&mut self, wire: WireId, up: bool) {
        let now = self.now;
        let w = &mut self.wires[wire];
        w.generation += 1;
        w.up = up;
        let turns = w.model.turn_config();
        for dir in 0..2 {
            let d = &mut w.dirs[dir];
            d.busy_until = now;
            d.ingress_at = now;
            let lost = d.queue.drain(..).chain(d.lookahead.take());
            for (frame, _) in lost {
                self.pending.push((
                    now,
                    Record::Lost {
                        wire,
                        dir: dir as u8,
                        len: frame.len() as u32,
                        cause: LossCause::ContactEnded,
                    },
                ));
            }
            if let Some(decoder) = d.decoder.as_mut() {
                decoder.reset();
            }
            d.turns = match (up, turns) {
                (true, Some(config)) => Some(Turns::new(config, dir == 0, now).expect("validated")),
                _ => None,
            };
            d.turn_armed = None;
        }
        self.pending.push((now, Record::Contact { wire, up }));
        let ends = w.ends;
        let contact = if up {
            Contact::Up(w.model.properties())
        } else {
            Contact::Down
        };
        for (node, link) in ends {
            if let Some(engine) = self.nodes[node].engine.as_mut() {
                engine.handle_contact(now, link, contact.clone());
            }
            self.touch(node, true);
        }
        self.flush();
    }

    /// Power cut: the node's RAM is gone, its store keeps what was synced.
    pub fn crash(&mut self, node: NodeIndex) {
        if let Some(engine) = self.nodes[node].engine.take() {
            let mut store = engine.into_store();
            store.crash();
            self.nodes[node].parked = Some(store);
            self.nodes[node].timer = None;
            let now = self.now;
            for i in 0..self.nodes[node].ends.len() {
                let (wire, dir) = self.nodes[node].ends[i];
                let d = &mut self.wires[wire].dirs[dir];
                for (frame, _) in d.queue.drain(..).chain(d.lookahead.take()) {
                    self.pending.push((
                        now,
                        Record::Lost {
                            wire,
                            dir: dir as u8,
                            len: frame.len() as u32,
                            cause: LossCause::NodeDown,
                        },
                    ));
                }
                d.turns = None;
            }
            self.pending.push((now, Record::Crash { node }));
            self.publish();
        }
    }

    /// Like [`Net::crash`], but the disk is lost too: the node comes back
    /// with an empty store. A custodian must never suffer this; the
    /// invariant checker is expected to object.
    pub fn wipe(&mut self, node: NodeIndex) {
        self.crash(node);
        if let Some(store) = self.nodes[node].parked.as_mut() {
            *store = MemStore::new();
        }
    }

    /// Restarts a crashed node from its store; its wires that are up start
    /// fresh contacts.
    pub fn restart(&mut self, node: NodeIndex) {
        let Some(store) = self.nodes[node].parked.take() else {
            return;
        };
        let engine = Engine::new(self.nodes[node].config.clone(), store)
            .expect("a crashed MemStore reopens");
        self.nodes[node].engine = Some(engine);
        self.pending.push((self.now, Record::Restart { node }));
        // The engine forgot its links; add them back in wire order.
        let mut ends = self.nodes[node].ends.clone();
        ends.sort();
        for &(wire, dir) in &ends {
            let link = self.nodes[node]
                .engine
                .as_mut()
                .expect("just started")
                .add_link();
            self.wires[wire].ends[dir].1 = link;
        }
        self.touch(node, true);
        for (wire, _) in ends {
            if self.wires[wire].up {
                self.set_up(wire, true);
            }
        }
        self.flush();
    }

    /// Runs until `deadline` or until nothing is left to happen.
    pub fn run_until(&mut self, deadline: Instant) {
        self.flush();
        while let Some(next) = self.next_event() {
            if next > deadline || self.halt.is_some() {
                break;
            }
            self.now = self.now.max(next);
            self.step();
        }
        self.now = self.now.max(deadline);
    }

    /// Runs while `keep_going` holds (checked after each step) and events
    /// remain before `deadline`; true if `keep_going` turned false.
    pub fn run_while(
        &mut self,
        deadline: Instant,
        mut keep_going: impl FnMut(&Net) -> bool,
    ) -> bool {
        self.flush();
        while keep_going(self) {
            match self.next_event() {
                Some(next) if next <= deadline && self.halt.is_none() => {
                    self.now = self.now.max(next);
                    self.step();
                }
                _ => return false,
            }
        }
        true
    }

    /// When the next entry is due, if any.
    pub fn next_event(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(d)| d.at)
    }

    fn schedule(&mut self, at: Instant, what: What) {
        self.seq += 1;
        self.heap.push(Reverse(Due {
            at,
            seq: self.seq,
            what,
        }));
    }

    fn touch(&mut self, node: NodeIndex, pump: bool) {
        let n = &mut self.nodes[node];
        n.pump |= pump;
        if !n.dirty {
            n.dirty = true;
            self.dirty.push(node);
        }
    }

    fn step(&mut self) {
        let now = self.now;
        while self.heap.peek().is_some_and(|Reverse(d)| d.at <= now) {
            let Reverse(due) = self.heap.pop().expect("peeked");
            match due.what {
                What::Arrival {
                    wire,
                    dir,
                    generation,
                    bytes,
                    record,
                } => self.arrive(wire, dir, generation, bytes, record),
                What::Timer(node) => {
                    let n = &mut self.nodes[node];
                    if n.timer != Some(due.at) {
                        continue;
                    }
                    n.timer = None;
                    if let Some(engine) = n.engine.as_mut() {
                        // Timers are armed lazily: the engine's may have moved later.
                        let due_now = engine.poll_timeout().is_some_and(|t| t <= now);
                        if due_now {
                            engine.handle_timeout(now);
                        }
                        self.touch(node, due_now);
                    }
                }
                What::Free(wire, dir) => {
                    let d = &mut self.wires[wire].dirs[dir];
                    if d.free_armed == Some(due.at) {
                        d.free_armed = None;
                    }
                    self.pump_dir(wire, dir);
                }
                What::Turn(wire, dir) => {
                    let d = &mut self.wires[wire].dirs[dir];
                    if d.turn_armed != Some(due.at) {
                        continue;
                    }
                    d.turn_armed = None;
                    self.pump_dir(wire, dir);
                }
            }
        }
        self.flush();
    }

    fn arrive(
        &mut self,
        wire: WireId,
        dir: usize,
        generation: u64,
        bytes: Vec<u8>,
        record: Option<usize>,
    ) {
        let now = self.now;
        let w = &mut self.wires[wire];
        let lost = |cause| Record::Lost {
            wire,
            dir: dir as u8,
            len: bytes.len() as u32,
            cause,
        };
        if generation != w.generation || !w.up {
            self.pending.push((now, lost(LossCause::ContactEnded)));
            return;
        }
        let (node, link) = w.ends[1 - dir];
        if self.nodes[node].engine.is_none() {
            self.pending.push((now, lost(LossCause::NodeDown)));
            return;
        }
        if let Some(i) = record
            && let Some(log) = self.transmissions.as_mut()
        {
            let first = &mut log[i].arrives;
            *first = Some(first.map_or(now, |t| t.min(now)));
        }
        let Some(decoder) = w.dirs[dir].decoder.as_mut() else {
            if self.trace {
                eprintln!(
                    "         {now:?} wire {wire} dir {dir}: {}",
                    describe(&bytes)
                );
            }
            let engine = self.nodes[node].engine.as_mut().expect("running");
            engine.handle_frame(now, link, &bytes);
            self.pending.push((
                now,
                Record::Arrived {
                    wire,
                    dir: dir as u8,
                    len: bytes.len() as u32,
                },
            ));
            self.touch(node, true);
            return;
        };
        for outcome in decoder.decode_all(&bytes) {
            match outcome {
                Ok(frame) => {
                    if let Some(turns) = w.dirs[1 - dir].turns.as_mut() {
                        turns.on_received(now, frame.flags);
                    }
                    if frame.payload.is_empty() {
                        self.pending.push((
                            now,
                            Record::Handover {
                                wire,
                                dir: dir as u8,
                            },
                        ));
                    } else {
                        if self.trace {
                            eprintln!(
                                "         {now:?} wire {wire} dir {dir} flags {}: {}",
                                frame.flags,
                                describe(&frame.payload)
                            );
                        }
                        let engine = self.nodes[node].engine.as_mut().expect("running");
                        engine.handle_frame(now, link, &frame.payload);
                        self.pending.push((
                            now,
                            Record::Arrived {
                                wire,
                                dir: dir as u8,
                                len: frame.payload.len() as u32,
                            },
                        ));
                    }
                }
                Err(_) => {
                    w.stats.lost[dir] += 1;
                    self.pending.push((now, lost(LossCause::Corrupt)));
                }
            }
        }
        self.touch(node, true);
    }

    /// Pumps every touched node: frames onto its free wires, its events into
    /// the log, its timer into the heap.
    fn flush(&mut self) {
        let now = self.now;
        while let Some(node) = self.dirty.pop() {
            let n = &mut self.nodes[node];
            n.dirty = false;
            let pump = std::mem::take(&mut n.pump);
            if n.engine.is_none() {
                continue;
            }
            if pump {
                for i in 0..self.nodes[node].ends.len() {
                    let (wire, dir) = self.nodes[node].ends[i];
                    self.pump_dir(wire, dir);
                }
            }
            let n = &mut self.nodes[node];
            let engine = n.engine.as_mut().expect("running");
            while let Some(event) = engine.poll_event() {
                if self.keep_events {
                    n.events.push((now, event.clone()));
                }
                self.pending.push((now, Record::Engine { node, event }));
            }
            // Only an earlier timer goes into the heap; a later one is
            // armed when the earlier entry comes due and finds nothing to do.
            if let Some(t) = engine.poll_timeout() {
                let at = t.max(now);
                if n.timer.is_none_or(|armed| at < armed) {
                    n.timer = Some(at);
                    self.schedule(at, What::Timer(node));
                }
            }
        }
        self.publish();
    }

    /// Hashes pending records into the log and shows them to the observer.
    fn publish(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let mut observer = self.observer.take();
        let mut pending = std::mem::take(&mut self.pending);
        for (at, record) in pending.drain(..) {
            let entry = self.log.push(at, record);
            if self.trace {
                eprintln!("{:>8} {:?} {:?}", entry.step, entry.at, entry.record);
            }
            if let Some(obs) = observer.as_mut()
                && self.halt.is_none()
                && let Err(why) = obs.observe(self, &entry)
            {
                self.halt = Some(format!("seed {}, step {}: {why}", self.seed, entry.step));
            }
        }
        // Keep the buffer's allocation for the next step.
        if self.pending.is_empty() {
            self.pending = pending;
        }
        self.observer = observer;
    }

    fn arm_free(&mut self, wire: WireId, dir: usize, at: Instant) {
        let d = &mut self.wires[wire].dirs[dir];
        if d.free_armed.is_some_and(|t| t <= at && t > self.now) {
            return;
        }
        d.free_armed = Some(at);
        self.schedule(at, What::Free(wire, dir));
    }

    fn arm_turn(&mut self, wire: WireId, dir: usize) {
        let d = &mut self.wires[wire].dirs[dir];
        let Some(at) = d.turns.as_ref().and_then(Turns::poll_timeout) else {
            return;
        };
        let at = at.max(self.now);
        if d.turn_armed != Some(at) {
            d.turn_armed = Some(at);
            self.schedule(at, What::Turn(wire, dir));
        }
    }

    /// Sends from one end of a wire as far as the line, the queue and the
    /// turn allow.
    fn pump_dir(&mut self, wire: WireId, dir: usize) {
        let now = self.now;
        let w = &self.wires[wire];
        if !w.up {
            return;
        }
        let (node, link) = w.ends[dir];
        if self.nodes[node].engine.is_none() {
            return;
        }
        let half_duplex = w.model.half_duplex.is_some();
        let queue = w.model.queue;
        if half_duplex {
            self.touch(node, false);
            return self.pump_turns(wire, dir, node, link);
        }
        if let Some(limit) = queue {
            self.touch(node, false);
            // The host hands frames over at its own rate; the air drains them.
            let mut host_waits = false;
            loop {
                let w = &mut self.wires[wire];
                let d = &mut w.dirs[dir];
                if d.busy_until <= now
                    && let Some((frame, bulk)) = d.queue.pop_front()
                {
                    self.transmit(wire, dir, frame, bulk, 0);
                    continue;
                }
                if d.ingress_at > now {
                    host_waits = true;
                    break;
                }
                let engine = self.nodes[node].engine.as_mut().expect("running");
                let Some(t) = engine.poll_transmit_on(now, link) else {
                    break;
                };
                let w = &mut self.wires[wire];
                let d = &mut w.dirs[dir];
                d.ingress_at = now
                    + ferry_core::transmission_time(t.frame.len() as u64, limit.ingress_bps)
                        .unwrap_or_default();
                if d.queue.len() >= limit.frames {
                    w.stats.dropped[dir] += 1;
                    self.pending.push((
                        now,
                        Record::Lost {
                            wire,
                            dir: dir as u8,
                            len: t.frame.len() as u32,
                            cause: LossCause::QueueFull,
                        },
                    ));
                } else {
                    d.queue.push_back((t.frame, t.bulk));
                }
            }
            let d = &self.wires[wire].dirs[dir];
            let air = (!d.queue.is_empty()).then_some(d.busy_until);
            let host = host_waits.then_some(d.ingress_at);
            if let Some(wake) = air.into_iter().chain(host).min() {
                self.arm_free(wire, dir, wake);
            }
            return;
        }
        let busy = self.wires[wire].dirs[dir].busy_until;
        if busy > now {
            self.arm_free(wire, dir, busy);
            return;
        }
        let engine = self.nodes[node].engine.as_mut().expect("running");
        let sent = engine.poll_transmit_on(now, link);
        // Whatever the engine did, its timer may have moved (the last piece
        // of a handle arms its re-offer): look at the node after the step.
        self.touch(node, false);
        if let Some(t) = sent {
            let done = self.transmit(wire, dir, t.frame, t.bulk, 0);
            self.arm_free(wire, dir, done);
        }
    }

    fn pump_turns(&mut self, wire: WireId, dir: usize, node: NodeIndex, link: LinkId) {
        let now = self.now;
        let d = &mut self.wires[wire].dirs[dir];
        if d.busy_until > now {
            let at = d.busy_until;
            self.arm_free(wire, dir, at);
            return;
        }
        let Some(turns) = d.turns.as_mut() else {
            return;
        };
        if turns.poll_timeout().is_some_and(|t| t <= now) {
            turns.handle_timeout(now);
        }
        if let Some(flags) = turns.handover_repeat(now) {
            // A copy of the hand-over, before anything else.
            let done = self.transmit(wire, dir, Vec::new(), false, flags);
            let d = &mut self.wires[wire].dirs[dir];
            let turns = d.turns.as_mut().expect("checked above");
            turns.on_sent(now, done.saturating_since(now), flags);
            self.arm_free(wire, dir, done);
            self.arm_turn(wire, dir);
            return;
        }
        if !turns.can_send(now) {
            self.arm_turn(wire, dir);
            return;
        }
        let engine = self.nodes[node].engine.as_mut().expect("running");
        let frame = d.lookahead.take().or_else(|| {
            engine
                .poll_transmit_on(now, link)
                .map(|t| (t.frame, t.bulk))
        });
        let (bytes, bulk, flags) = match frame {
            Some((frame, bulk)) => {
                let next = engine
                    .poll_transmit_on(now, link)
                    .map(|t| (t.frame, t.bulk));
                let last = next.is_none() || turns.should_end_turn(now, false);
                d.lookahead = next;
                (frame, bulk, if last { END_OF_TURN } else { 0 })
            }
            None if turns.should_end_turn(now, true) => (Vec::new(), false, turns.handover_flags()),
            None => {
                self.arm_turn(wire, dir);
                return;
            }
        };
        let done = self.transmit(wire, dir, bytes, bulk, flags);
        let d = &mut self.wires[wire].dirs[dir];
        let turns = d.turns.as_mut().expect("checked above");
        turns.on_sent(now, done.saturating_since(now), flags);
        self.arm_free(wire, dir, done);
        self.arm_turn(wire, dir);
    }

    /// Puts one engine frame on the air now; returns when it has left.
    fn transmit(
        &mut self,
        wire: WireId,
        dir: usize,
        mut frame: Vec<u8>,
        bulk: bool,
        flags: u8,
    ) -> Instant {
        let now = self.now;
        let w = &mut self.wires[wire];
        let len = frame.len();
        let engine_mtu = w.model.engine_mtu().max(ferry_core::mtu::MIN_MTU) as usize;
        if len > engine_mtu {
            w.stats.oversize[dir] += 1;
        }
        let on_air = match &w.encoder {
            Some(encoder) => match encoder.encode(flags, &frame) {
                Ok(bytes) => bytes,
                Err(_) => {
                    // Too long for the modem: it never leaves.
                    self.pending.push((
                        now,
                        Record::Lost {
                            wire,
                            dir: dir as u8,
                            len: len as u32,
                            cause: LossCause::Corrupt,
                        },
                    ));
                    return now;
                }
            },
            None if self.transmissions.is_some() => frame.clone(),
            None => std::mem::take(&mut frame),
        };
        let done = now + w.model.airtime(on_air.len());
        let d = &mut w.dirs[dir];
        d.busy_until = done;
        w.stats.frames[dir] += 1;
        w.stats.bytes[dir] += on_air.len() as u64;
        self.pending.push((
            now,
            Record::Sent {
                wire,
                dir: dir as u8,
                len: len as u32,
                on_air: on_air.len() as u32,
                bulk,
            },
        ));
        let record = self.transmissions.as_mut().map(|log| {
            log.push(Transmission {
                wire,
                dir,
                generation: w.generation,
                sent: now,
                arrives: None,
                frame,
            });
            log.len() - 1
        });
        let lost_to = |cause| Record::Lost {
            wire,
            dir: dir as u8,
            len: len as u32,
            cause,
        };
        if d.loss.lose(&w.model.loss, &mut w.rng.loss) {
            w.stats.lost[dir] += 1;
            self.pending.push((now, lost_to(LossCause::Channel)));
            return done;
        }
        let mut on_air = on_air;
        if w.model.bit_error_rate > 0.0
            && flip_bits(&mut on_air, w.model.bit_error_rate, &mut w.rng.bits)
            && w.encoder.is_none()
        {
            // No CRC of ours on this link: the lower layer drops it.
            w.stats.lost[dir] += 1;
            self.pending.push((now, lost_to(LossCause::Corrupt)));
            return done;
        }
        let copies = if w.model.duplicate > 0.0 && w.rng.duplicate.random_bool(w.model.duplicate) {
            2
        } else {
            1
        };
        let generation = w.generation;
        let mut arrivals = Vec::with_capacity(copies);
        for copy in 0..copies {
            let mut at = done + w.model.delay;
            if !w.model.jitter.is_zero() {
                at = at
                    + Duration::from_nanos(
                        w.rng
                            .jitter
                            .random_range(0..w.model.jitter.as_nanos() as u64),
                    );
            }
            if w.model.reorder > 0.0 && w.rng.reorder.random_bool(w.model.reorder) {
                at = at + w.model.delay.max(Duration::from_millis(1));
            }
            let bytes = if copy + 1 == copies {
                std::mem::take(&mut on_air)
            } else {
                on_air.clone()
            };
            arrivals.push((at, bytes));
        }
        for (at, bytes) in arrivals {
            self.schedule(
                at,
                What::Arrival {
                    wire,
                    dir,
                    generation,
                    bytes,
                    record,
                },
            );
        }
        done
    }
}

/// Flips each bit with probability `ber`; true if any was flipped.
fn flip_bits(bytes: &mut [u8], ber: f64, rng: &mut ChaCha8Rng) -> bool {
    let bits = bytes.len() as u64 * 8;
    if ber >= 1.0 {
        bytes.iter_mut().for_each(|b| *b = !*b);
        return !bytes.is_empty();
    }
    // Gaps between flipped bits are geometric.
    let ln_keep = (1.0 - ber).ln();
    let mut pos = 0u64;
    let mut any = false;
    loop {
        let u: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
        let gap = (u.ln() / ln_keep).floor();
        if !gap.is_finite() || gap >= (bits - pos) as f64 {
            return any;
        }
        pos += gap as u64;
        bytes[(pos / 8) as usize] ^= 1 << (pos % 8);
        any = true;
        pos += 1;
        if pos >= bits {
            return any;
        }
    }
}

/// A short description of a frame for traces: its body kind.
fn describe(bytes: &[u8]) -> String {
    let codec = ferry_proto::FrameCodec::new(ferry_proto::HARD_MAX_FRAME);
    match codec.decode_exact(bytes) {
        Ok(frame) => frame.body.map_or("empty".into(), |b| body_name(&b)),
        Err(e) => format!("undecodable ({e})"),
    }
}

fn body_name(body: &ferry_proto::v1::frame::Body) -> String {
    use ferry_proto::v1::frame::Body;
    match body {
        Body::Chunk(c) => format!(
            "Chunk(handle {} index {} offset {} len {}{})",
            c.handle,
            c.chunk_index,
            c.offset,
            c.data.len(),
            if c.checkpoint { " checkpoint" } else { "" }
        ),
        other => {
            let text = format!("{other:?}");
            text.chars().take(160).collect()
        }
    }
}
