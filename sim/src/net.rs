//! The discrete-event network: nodes, wires between them, and the event loop.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use ferry_core::{
    Contact, Engine, EngineConfig, Event, Instant, LinkId, LinkProperties, MemStore,
    transmission_time,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How a wire treats frames, in each direction alike.
#[derive(Clone, Debug)]
pub struct LinkModel {
    pub rate_bps: u64,
    /// One-way latency.
    pub delay: Duration,
    /// Extra random delay in [0, jitter): reorders frames.
    pub jitter: Duration,
    pub mtu: u32,
    /// Bernoulli loss probability per frame.
    pub loss: f64,
    /// Probability a delivered frame arrives twice.
    pub duplicate: f64,
    /// Tell the engines the link never loses frames (QUIC-like).
    pub reliable: bool,
    /// Let senders push chunks before the want-list returns.
    pub pipeline: bool,
}

impl LinkModel {
    /// A clean link with the given rate and round-trip time.
    pub fn new(rate_bps: u64, rtt: Duration, mtu: u32) -> Self {
        Self {
            rate_bps,
            delay: rtt / 2,
            jitter: Duration::ZERO,
            mtu,
            loss: 0.0,
            duplicate: 0.0,
            reliable: false,
            pipeline: false,
        }
    }

    fn serialisation(&self, bytes: usize) -> Duration {
        transmission_time(bytes as u64, self.rate_bps.max(1)).unwrap_or_default()
    }

    fn properties(&self) -> LinkProperties {
        LinkProperties {
            mtu: self.mtu,
            rtt: self.delay * 2 + self.jitter,
            reliable: self.reliable,
            rate_bps: self.rate_bps,
            pipeline: self.pipeline,
        }
    }
}

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
    pub bytes: [u64; 2],
    pub lost: [u64; 2],
    /// Frames larger than the link's MTU: a protocol bug, always zero.
    pub oversize: [u64; 2],
}

struct Node {
    config: EngineConfig,
    engine: Option<Engine<MemStore>>,
    /// Where the store waits while the node is down.
    parked: Option<MemStore>,
    events: Vec<(Instant, Event)>,
}

struct Wire {
    ends: [(NodeIndex, LinkId); 2],
    model: LinkModel,
    up: bool,
    busy_until: [Instant; 2],
    rng: ChaCha8Rng,
    stats: WireStats,
}

struct Arrival {
    at: Instant,
    seq: u64,
    wire: WireId,
    /// Direction: 0 = towards ends[1], 1 = towards ends[0].
    dir: usize,
    frame: Vec<u8>,
    /// Contact generation the frame was sent in; frames in flight when a
    /// contact ends are lost.
    generation: u64,
}

impl PartialEq for Arrival {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Arrival {}
impl PartialOrd for Arrival {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Arrival {
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
    generations: Vec<u64>,
    queue: BinaryHeap<Reverse<Arrival>>,
    seq: u64,
    transmissions: Option<Vec<Transmission>>,
}

impl Net {
    pub fn new(seed: u64) -> Self {
        Self {
            now: Instant::from_millis(1_700_000_000_000),
            seed,
            nodes: Vec::new(),
            wires: Vec::new(),
            generations: Vec::new(),
            queue: BinaryHeap::new(),
            seq: 0,
            transmissions: None,
        }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn add_node(&mut self, config: EngineConfig, store: MemStore) -> NodeIndex {
        let engine = Engine::new(config.clone(), store).expect("a fresh MemStore opens");
        self.nodes.push(Node {
            config,
            engine: Some(engine),
            parked: None,
            events: Vec::new(),
        });
        self.nodes.len() - 1
    }

    /// Joins two nodes; the wire starts down (see [`Net::set_up`]).
    pub fn add_wire(&mut self, a: NodeIndex, b: NodeIndex, model: LinkModel) -> WireId {
        let la = self.engine_mut(a).add_link();
        let lb = self.engine_mut(b).add_link();
        let id = self.wires.len() as u64;
        // One random stream per wire, derived from the master seed.
        let rng = ChaCha8Rng::seed_from_u64(
            self.seed ^ (id.wrapping_add(1)).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        );
        self.wires.push(Wire {
            ends: [(a, la), (b, lb)],
            model,
            up: false,
            busy_until: [self.now; 2],
            rng,
            stats: WireStats::default(),
        });
        self.generations.push(0);
        self.wires.len() - 1
    }

    pub fn engine(&self, node: NodeIndex) -> &Engine<MemStore> {
        self.nodes[node].engine.as_ref().expect("node is up")
    }

    pub fn engine_mut(&mut self, node: NodeIndex) -> &mut Engine<MemStore> {
        self.nodes[node].engine.as_mut().expect("node is up")
    }

    pub fn is_running(&self, node: NodeIndex) -> bool {
        self.nodes[node].engine.is_some()
    }

    pub fn stats(&self, wire: WireId) -> WireStats {
        self.wires[wire].stats
    }

    /// Keeps every frame sent from now on (see [`Net::transmissions`]).
    pub fn record_transmissions(&mut self) {
        self.transmissions.get_or_insert_with(Vec::new);
    }

    /// Frames sent since [`Net::record_transmissions`], in order.
    pub fn transmissions(&self) -> &[Transmission] {
        self.transmissions.as_deref().unwrap_or_default()
    }

    /// Events a node reported so far, with when.
    pub fn events(&self, node: NodeIndex) -> &[(Instant, Event)] {
        &self.nodes[node].events
    }

    /// Starts or ends a contact on a wire. Frames in flight are lost at its end.
    pub fn set_up(&mut self, wire: WireId, up: bool) {
        let now = self.now;
        self.generations[wire] += 1;
        let w = &mut self.wires[wire];
        w.up = up;
        w.busy_until = [now; 2];
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
        }
        self.pump();
    }

    /// Power cut: the node's RAM is gone, its store keeps what was synced.
    pub fn crash(&mut self, node: NodeIndex) {
        if let Some(engine) = self.nodes[node].engine.take() {
            let mut store = engine.into_store();
            store.crash();
            self.nodes[node].parked = Some(store);
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
        // The engine forgot its links; add them back in wire order.
        for wire in 0..self.wires.len() {
            for end in 0..2 {
                if self.wires[wire].ends[end].0 == node {
                    let link = self.engine_mut(node).add_link();
                    self.wires[wire].ends[end].1 = link;
                }
            }
        }
        for wire in 0..self.wires.len() {
            if self.wires[wire].up && self.wires[wire].ends.iter().any(|(n, _)| *n == node) {
                self.set_up(wire, true);
            }
        }
    }

    /// Runs until `deadline` or until nothing is left to happen.
    pub fn run_until(&mut self, deadline: Instant) {
        self.pump();
        while let Some(next) = self.next_event() {
            if next > deadline {
                break;
            }
            self.now = self.now.max(next);
            self.step();
        }
        self.now = self.now.max(deadline);
    }

    /// Runs until `done` holds (checked after each step) or `deadline`.
    pub fn run_while(
        &mut self,
        deadline: Instant,
        mut keep_going: impl FnMut(&Net) -> bool,
    ) -> bool {
        self.pump();
        while keep_going(self) {
            match self.next_event() {
                Some(next) if next <= deadline => {
                    self.now = self.now.max(next);
                    self.step();
                }
                _ => return false,
            }
        }
        true
    }

    fn next_event(&self) -> Option<Instant> {
        let arrivals = self.queue.peek().map(|Reverse(a)| a.at);
        let timers = self
            .nodes
            .iter()
            .filter_map(|n| n.engine.as_ref()?.poll_timeout());
        let busy = self
            .wires
            .iter()
            .filter(|w| w.up)
            .flat_map(|w| w.busy_until.into_iter())
            .filter(|&t| t > self.now);
        arrivals.into_iter().chain(timers).chain(busy).min()
    }

    fn step(&mut self) {
        let now = self.now;
        while self.queue.peek().is_some_and(|Reverse(a)| a.at <= now) {
            let Reverse(arrival) = self.queue.pop().expect("peeked");
            if arrival.generation != self.generations[arrival.wire] {
                continue;
            }
            let (node, link) = self.wires[arrival.wire].ends[1 - arrival.dir];
            if let Some(engine) = self.nodes[node].engine.as_mut() {
                engine.handle_frame(now, link, &arrival.frame);
            }
        }
        for node in &mut self.nodes {
            if let Some(engine) = node.engine.as_mut()
                && engine.poll_timeout().is_some_and(|t| t <= now)
            {
                engine.handle_timeout(now);
            }
        }
        self.pump();
    }

    /// Moves frames from engines onto free wire directions, and collects events.
    fn pump(&mut self) {
        let now = self.now;
        for wire_id in 0..self.wires.len() {
            if !self.wires[wire_id].up {
                continue;
            }
            for dir in 0..2 {
                if self.wires[wire_id].busy_until[dir] > now {
                    continue;
                }
                let (node, link) = self.wires[wire_id].ends[dir];
                let Some(engine) = self.nodes[node].engine.as_mut() else {
                    continue;
                };
                let Some(transmit) = engine.poll_transmit_on(now, link) else {
                    continue;
                };
                let generation = self.generations[wire_id];
                let w = &mut self.wires[wire_id];
                let len = transmit.frame.len();
                let done = now + w.model.serialisation(len);
                w.busy_until[dir] = done;
                w.stats.frames[dir] += 1;
                w.stats.bytes[dir] += len as u64;
                if len > w.model.mtu.max(ferry_core::mtu::MIN_MTU) as usize {
                    w.stats.oversize[dir] += 1;
                }
                let record = self.transmissions.as_mut().map(|log| {
                    log.push(Transmission {
                        wire: wire_id,
                        dir,
                        generation,
                        sent: now,
                        arrives: None,
                        frame: transmit.frame.clone(),
                    });
                    log.len() - 1
                });
                if w.rng.random_bool(w.model.loss.clamp(0.0, 1.0)) {
                    w.stats.lost[dir] += 1;
                    continue;
                }
                let copies = if w.rng.random_bool(w.model.duplicate.clamp(0.0, 1.0)) {
                    2
                } else {
                    1
                };
                for _ in 0..copies {
                    let jitter = if w.model.jitter.is_zero() {
                        Duration::ZERO
                    } else {
                        Duration::from_nanos(
                            w.rng.random_range(0..w.model.jitter.as_nanos() as u64),
                        )
                    };
                    self.seq += 1;
                    let at = done + w.model.delay + jitter;
                    if let Some(i) = record {
                        let first = &mut self.transmissions.as_mut().expect("recording")[i].arrives;
                        *first = Some(first.map_or(at, |t| t.min(at)));
                    }
                    self.queue.push(Reverse(Arrival {
                        at,
                        seq: self.seq,
                        wire: wire_id,
                        dir,
                        frame: transmit.frame.clone(),
                        generation,
                    }));
                }
            }
        }
        for node in &mut self.nodes {
            if let Some(engine) = node.engine.as_mut() {
                while let Some(event) = engine.poll_event() {
                    node.events.push((now, event));
                }
            }
        }
    }
}
