//! Half-duplex turns: two ends simulated on a virtual clock over a channel
//! with propagation delay, jitter and bursty loss, driven by a seeded RNG.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Duration;

use ferry_core::Instant;
use ferry_link::serial::{
    ConfigError, END_OF_TURN, IDLE, Pacer, REPEAT_MASK, REPEATS, TurnConfig, Turns, repeat_index,
};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Acoustic modem: 5 kbit/s 8N1, 256-byte frames, 1 s one way.
const MTU: usize = 256;
/// An empty hand-over frame with CRC-16: COBS(flags | CRC) and the delimiter.
const HANDOVER_LEN: usize = 5;
const SECOND: Duration = Duration::from_secs(1);

fn pacer() -> Pacer {
    Pacer::new(5000, 10).unwrap()
}

fn config() -> TurnConfig {
    TurnConfig {
        max_turn: 8 * SECOND,
        max_frame_airtime: pacer().airtime(MTU),
        propagation: SECOND,
        guard: Duration::from_millis(200),
        idle_initial: Duration::from_millis(500),
        idle_max: 6 * SECOND,
    }
}

#[derive(Clone, Copy, Debug)]
enum Load {
    Idle,
    Saturated,
    /// A frame every 0..2×mean ms.
    Random {
        mean_ms: u64,
    },
}

#[derive(Clone, Copy, Debug)]
struct Channel {
    /// Loss outside bursts.
    loss: f64,
    /// Chance per frame of a burst starting (inside, 60 % loss; 30 % chance per frame it ends).
    burst: f64,
    /// Extra loss of END_OF_TURN frames.
    eot_loss: f64,
    /// Frames arrive up to this much earlier than `propagation`.
    jitter: Duration,
}

const CLEAN: Channel = Channel {
    loss: 0.0,
    burst: 0.0,
    eot_loss: 0.0,
    jitter: Duration::ZERO,
};

#[derive(Clone, Copy, Debug)]
struct Tx {
    start: Instant,
    end: Instant,
    delay: Duration,
    flags: u8,
    len: usize,
}

struct Side {
    turns: Turns,
    pacer: Pacer,
    load: Load,
    queue: VecDeque<usize>,
    next_data: Option<Instant>,
    sent: Vec<Tx>,
    in_burst: bool,
}

struct Sim {
    now: Instant,
    sides: [Side; 2],
    /// (arrival, sequence, to, flags)
    arrivals: BinaryHeap<Reverse<(Instant, u64, usize, u8)>>,
    seq: u64,
    rng: ChaCha8Rng,
    channel: Channel,
    /// Stop generating data from here.
    data_until: Instant,
}

impl Sim {
    fn new(seed: u64, loads: [Load; 2], channel: Channel) -> Sim {
        let now = Instant::from_millis(1_000_000);
        let side = |initiator, load| Side {
            turns: Turns::new(config(), initiator, now).unwrap(),
            pacer: pacer(),
            load,
            queue: VecDeque::new(),
            next_data: matches!(load, Load::Random { .. }).then_some(now),
            sent: Vec::new(),
            in_burst: false,
        };
        Sim {
            now,
            sides: [side(true, loads[0]), side(false, loads[1])],
            arrivals: BinaryHeap::new(),
            seq: 0,
            rng: ChaCha8Rng::seed_from_u64(seed),
            channel,
            data_until: Instant(u64::MAX),
        }
    }

    fn next_event(&self) -> Instant {
        let arrival = self.arrivals.peek().map(|Reverse((at, ..))| *at);
        let sides = self.sides.iter().flat_map(|s| {
            let line = (s.turns.holds_turn() && s.pacer.busy_until() > self.now)
                .then(|| s.pacer.busy_until());
            [
                s.turns.poll_timeout(),
                s.next_data.filter(|&t| t < self.data_until),
                line,
            ]
        });
        arrival
            .into_iter()
            .chain(sides.flatten())
            .min()
            .expect("something is always pending")
    }

    fn step(&mut self) {
        let now = self.next_event().max(self.now);
        self.now = now;
        while let Some(&Reverse((at, _, to, flags))) = self.arrivals.peek()
            && at <= now
        {
            self.arrivals.pop();
            self.sides[to].turns.on_received(now, flags);
        }
        for i in 0..2 {
            self.generate(i);
            let side = &mut self.sides[i];
            if side.turns.poll_timeout().is_some_and(|t| t <= now) {
                side.turns.handle_timeout(now);
                let next = side.turns.poll_timeout();
                assert!(
                    next.is_none_or(|t| t > now),
                    "timeout {next:?} still due at {now:?}"
                );
            }
            self.drive(i);
        }
    }

    fn generate(&mut self, i: usize) {
        let side = &mut self.sides[i];
        match side.load {
            Load::Idle => {}
            Load::Saturated => {
                while side.queue.len() < 2 {
                    side.queue.push_back(self.rng.random_range(8..=MTU));
                }
            }
            Load::Random { mean_ms } => {
                while let Some(at) = side
                    .next_data
                    .filter(|&t| t <= self.now && t < self.data_until)
                {
                    side.queue.push_back(self.rng.random_range(8..=MTU));
                    let gap = self.rng.random_range(0..=2 * mean_ms);
                    side.next_data = Some(at + Duration::from_millis(gap));
                }
            }
        }
    }

    /// The driver loop a real daemon runs.
    fn drive(&mut self, i: usize) {
        let now = self.now;
        let side = &mut self.sides[i];
        while side.pacer.can_send(now)
            && (side.turns.can_send(now) || side.turns.handover_repeat(now).is_some())
        {
            let (len, flags) = if let Some(flags) = side.turns.handover_repeat(now) {
                (HANDOVER_LEN, flags)
            } else if let Some(&len) = side.queue.front() {
                let last = side.turns.should_end_turn(now, false);
                side.queue.pop_front();
                (len, if last { END_OF_TURN } else { 0 })
            } else if side.turns.should_end_turn(now, true) {
                (HANDOVER_LEN, side.turns.handover_flags())
            } else {
                break;
            };
            let slot = side.pacer.send(now, len);
            side.turns
                .on_sent(now, slot.end.saturating_since(slot.start), flags);
            let jitter = self
                .rng
                .random_range(0..=self.channel.jitter.as_micros() as u64);
            let delay = config().propagation - Duration::from_micros(jitter);
            side.sent.push(Tx {
                start: slot.start,
                end: slot.end,
                delay,
                flags,
                len,
            });
            let lost = if side.in_burst {
                side.in_burst = !self.rng.random_bool(0.3);
                self.rng.random_bool(0.6)
            } else {
                side.in_burst = self.rng.random_bool(self.channel.burst);
                self.rng.random_bool(self.channel.loss)
            } || (flags & END_OF_TURN != 0
                && self.rng.random_bool(self.channel.eot_loss));
            if !lost {
                self.seq += 1;
                self.arrivals
                    .push(Reverse((slot.end + delay, self.seq, 1 - i, flags)));
            }
        }
    }

    fn run_until(&mut self, until: Instant) {
        while self.now < until {
            self.step();
        }
    }

    /// No end ever starts a frame before every frame of the other end has
    /// finished arriving: the medium is never shared.
    fn assert_never_overlapped(&self) {
        let mut all: Vec<(Instant, usize, Tx)> = (0..2)
            .flat_map(|i| self.sides[i].sent.iter().map(move |tx| (tx.start, i, *tx)))
            .collect();
        all.sort_by_key(|&(start, side, _)| (start, side));
        let mut heard_until = [Instant::ZERO; 2];
        for (start, side, tx) in all {
            assert!(
                heard_until[1 - side] <= start,
                "side {side} starts {tx:?} while side {}'s frame arrives until {:?}",
                1 - side,
                heard_until[1 - side]
            );
            heard_until[side] = heard_until[side].max(tx.end + tx.delay);
        }
    }

    fn airtime(&self, i: usize, data_only: bool) -> Duration {
        let side = &self.sides[i];
        side.sent
            .iter()
            .filter(|tx| !data_only || tx.flags & IDLE == 0 && tx.len != HANDOVER_LEN)
            .map(|tx| tx.end.saturating_since(tx.start))
            .sum()
    }
}

fn load() -> impl Strategy<Value = Load> {
    prop_oneof![
        Just(Load::Idle),
        Just(Load::Saturated),
        (100u64..5000).prop_map(|mean_ms| Load::Random { mean_ms }),
    ]
}

fn channel() -> impl Strategy<Value = Channel> {
    (0.0..0.5f64, 0.0..0.05f64, 0.0..0.5f64, 0u64..=200).prop_map(
        |(loss, burst, eot_loss, jitter)| Channel {
            loss,
            burst,
            eot_loss,
            jitter: Duration::from_millis(jitter),
        },
    )
}

#[test]
fn config_is_validated() {
    let now = Instant::ZERO;
    let zero_frame = TurnConfig {
        max_frame_airtime: Duration::ZERO,
        ..config()
    };
    assert!(matches!(
        Turns::new(zero_frame, true, now),
        Err(ConfigError::Turns(_))
    ));
    let long_idle = TurnConfig {
        idle_max: 8 * SECOND,
        ..config()
    };
    assert!(matches!(
        Turns::new(long_idle, false, now),
        Err(ConfigError::Turns(_))
    ));
    // A turn with room for one frame but not for the hand-over's copies
    // would never send anything: refused.
    let c = config();
    let cramped = TurnConfig {
        max_turn: c.max_frame_airtime * 3 - Duration::from_millis(1),
        idle_max: Duration::ZERO,
        idle_initial: Duration::ZERO,
        ..c
    };
    assert!(matches!(
        Turns::new(cramped, true, now),
        Err(ConfigError::Turns(_))
    ));
    // Exactly three frames' airtime is enough: the holder can send at once.
    let tight = TurnConfig {
        max_turn: c.max_frame_airtime * 3,
        ..cramped
    };
    let mut turns = Turns::new(tight, true, now).unwrap();
    let start = turns
        .poll_timeout()
        .expect("the initiator takes the first turn");
    turns.handle_timeout(start);
    assert!(turns.holds_turn() && turns.can_send(start), "{tight:?}");
}

/// The hand-over rules, step by step.
#[test]
fn hand_over_and_timeouts() {
    let c = config();
    let t0 = Instant::from_millis(10_000);
    let mut initiator = Turns::new(c, true, t0).unwrap();
    let mut responder = Turns::new(c, false, t0).unwrap();
    assert_eq!(initiator.poll_timeout(), Some(t0 + c.initiator_timeout()));
    assert_eq!(responder.poll_timeout(), None);

    // The initiator speaks first, after its timeout, and passes an idle turn.
    let t1 = t0 + c.initiator_timeout();
    initiator.handle_timeout(t1);
    assert!(initiator.holds_turn() && initiator.can_send(t1));
    assert!(initiator.should_end_turn(t1, true));
    assert_eq!(initiator.handover_flags(), END_OF_TURN | IDLE);
    let tick = Duration::from_millis(10);
    initiator.on_sent(t1, tick, END_OF_TURN | IDLE);
    // Two empty copies of the hand-over follow at once, then it waits.
    for copy in 1..=REPEATS {
        let at = t1 + tick * u32::from(copy);
        assert!(initiator.holds_turn() && !initiator.can_send(at));
        let flags = initiator.handover_repeat(at).expect("a copy is due");
        assert_eq!(flags, END_OF_TURN | IDLE | (copy << 2));
        assert_eq!(repeat_index(flags), copy);
        initiator.on_sent(at, tick, flags);
    }
    assert!(!initiator.holds_turn());
    let e = t1 + tick * u32::from(1 + REPEATS);
    assert_eq!(initiator.poll_timeout(), Some(e + c.initiator_timeout()));

    // The responder, told by the first copy, would take the turn once the
    // other copies have left; the last copy arrives and it takes it a guard
    // later, and holds it idle.
    let r0 = t1 + tick + c.propagation;
    responder.on_received(r0, END_OF_TURN | IDLE);
    assert!(responder.holds_turn() && !responder.can_send(r0));
    let to_come = c.max_frame_airtime * u32::from(REPEATS);
    assert_eq!(responder.poll_timeout(), Some(r0 + c.guard + to_come));
    let r = e + c.propagation;
    responder.on_received(r, END_OF_TURN | IDLE | (REPEATS << 2));
    assert_eq!(responder.poll_timeout(), Some(r + c.guard));
    assert_eq!(responder.stats().turns, 1);
    let start = r + c.guard;
    responder.handle_timeout(start);
    assert!(responder.can_send(start) && !responder.should_end_turn(start, true));
    assert_eq!(responder.poll_timeout(), Some(start + c.idle_initial));
    // Data that turns up meanwhile goes at once; a frame fits until T - F.
    assert!(!responder.should_end_turn(start, false));
    let last_start = start + (c.max_turn - 2 * c.max_frame_airtime - to_come);
    assert!(!responder.should_end_turn(last_start, false));
    assert!(responder.should_end_turn(last_start + Duration::from_micros(1), false));
    responder.on_sent(start, c.max_frame_airtime, 0);
    assert_eq!(responder.handover_flags(), END_OF_TURN);

    // Its hand-over is lost; the initiator heard the data frame at `h`.
    let h = start + c.max_frame_airtime + c.propagation;
    initiator.on_received(h, 0);
    assert_eq!(initiator.poll_timeout(), Some(h + c.heard_timeout()));
    // The responder, never told, lets the turn expire and waits unprompted.
    responder.handle_timeout(start + c.max_turn);
    assert!(!responder.holds_turn() && responder.poll_timeout().is_none());
    assert_eq!(responder.stats().expired, 1);
    initiator.handle_timeout(h + c.heard_timeout());
    assert!(initiator.holds_turn());
    assert_eq!(initiator.stats().timeouts, 2);

    // A responder holding the turn yields when it hears the initiator.
    let mut confused = Turns::new(c, false, t0).unwrap();
    confused.on_received(t0, END_OF_TURN);
    confused.on_received(t0 + SECOND, 0);
    assert!(!confused.holds_turn());
    assert_eq!(
        confused.poll_timeout(),
        Some(t0 + SECOND + c.heard_timeout())
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever the loads and losses, the two ends never talk at once.
    #[test]
    fn never_talk_at_once(seed in any::<u64>(), loads in [load(), load()], channel in channel()) {
        let mut sim = Sim::new(seed, loads, channel);
        for _ in 0..5000 {
            sim.step();
        }
        sim.assert_never_overlapped();
        // Both ends got to talk.
        prop_assert!(sim.sides.iter().all(|s| s.turns.stats().turns > 0));
    }

    /// Two busy ends share the link, losses or not, and every queued frame
    /// goes out once the load stops.
    #[test]
    fn no_starvation(seed in any::<u64>(), channel in channel(), mean_ms in 1500u64..8000) {
        let mut sim = Sim::new(seed, [Load::Saturated; 2], channel);
        let start = sim.now;
        sim.run_until(start + 3600 * SECOND);
        sim.assert_never_overlapped();
        let (a, b) = (sim.airtime(0, true), sim.airtime(1, true));
        let share = a.as_secs_f64() / (a + b).as_secs_f64();
        prop_assert!((0.25..=0.75).contains(&share), "initiator's share {share:.2} ({a:?} vs {b:?})");
        // Throughput stays near what the loss and turnarounds allow.
        prop_assert!((a + b).as_secs_f64() > 0.4 * 3600.0, "{a:?} + {b:?} of data in an hour");

        let random = Load::Random { mean_ms };
        let mut sim = Sim::new(seed, [random; 2], channel);
        sim.data_until = sim.now + 1800 * SECOND;
        sim.run_until(sim.data_until + 600 * SECOND);
        sim.assert_never_overlapped();
        for side in &sim.sides {
            prop_assert!(side.queue.is_empty(), "{} frames never sent", side.queue.len());
        }
    }

    /// An idle link slows to one hand-over per `idle_max` or so on each end,
    /// and keeps handing over.
    #[test]
    fn idle_link_settles(seed in any::<u64>(), lossy in any::<bool>()) {
        let channel = if lossy { Channel { loss: 0.05, burst: 0.01, eot_loss: 0.0, jitter: 100 * Duration::from_millis(1) } } else { CLEAN };
        let mut sim = Sim::new(seed, [Load::Idle; 2], channel);
        let start = sim.now;
        let settled = start + 120 * SECOND;
        sim.run_until(start + 3600 * SECOND);
        sim.assert_never_overlapped();
        let c = config();
        let copies = 1 + u32::from(REPEATS);
        let period = 2 * (c.idle_max + pacer().airtime(HANDOVER_LEN) * copies + c.propagation + c.guard);
        for (i, side) in sim.sides.iter().enumerate() {
            let late: Vec<_> = side.sent.iter().filter(|tx| tx.start >= settled).collect();
            prop_assert!(late.iter().all(|tx| tx.flags & !REPEAT_MASK == END_OF_TURN | IDLE && tx.len == HANDOVER_LEN));
            // One hand-over is its first frame and its copies.
            let late: Vec<_> = late.into_iter().filter(|tx| tx.flags & REPEAT_MASK == 0).collect();
            if lossy {
                // A lost hand-over is recovered by a timeout, which may come
                // sooner than idle_max; on average the idle link stays slow.
                let span = settled.saturating_since(start);
                let horizon = Duration::from_secs(3600) - span;
                let most = horizon.as_millis() as u64 / (c.idle_max.as_millis() as u64 / 2) + 1;
                prop_assert!(late.len() as u64 <= most, "side {i}: {} hand-overs", late.len());
            } else {
                for pair in late.windows(2) {
                    let gap = pair[1].start.saturating_since(pair[0].start);
                    prop_assert!(gap >= c.idle_max, "side {i}: hand-overs {gap:?} apart");
                    prop_assert_eq!(gap, period, "side {}", i);
                }
            }
            // Still alive: at least one hand-over every few periods, even with loss.
            let period_ms = period.as_millis() as u64;
            let minimum = if lossy { 3_400_000 / (5 * period_ms) } else { 3_400_000 / period_ms };
            prop_assert!(late.len() as u64 >= minimum, "side {i}: {} hand-overs", late.len());
        }
    }
}
