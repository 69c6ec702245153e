//! One direction of the proxy on a clock it is given (sans-IO): the fate of
//! each datagram, the serialisation queue and the delay queue.
//!
//! Times are offsets from the proxy's start. The async side feeds datagrams
//! in with [`Line::offer`], sleeps until [`Line::next_deadline`] and sends
//! what [`Line::pop_due`] hands back.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::model::ImpairmentModel;
use super::stats::DirectionStats;
use crate::profile::{LossState, Schedule};

/// Which way a datagram crosses the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    ToUpstream,
    ToClient,
}

impl Direction {
    /// The ChaCha stream of this direction under the proxy's seed.
    fn stream(self) -> u64 {
        match self {
            Direction::ToUpstream => 1,
            Direction::ToClient => 2,
        }
    }
}

/// Whether the link is up at some moment, and what a datagram sent then
/// needs to stay deliverable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LinkState {
    pub up: bool,
    /// Bumped whenever the link is forced down; a datagram sent under an
    /// older generation is dropped.
    pub generation: u64,
    /// The end of the schedule's current up window (None: no end in sight,
    /// or the link is forced up); a datagram that would arrive at or after
    /// it is dropped.
    pub window_end: Option<Duration>,
}

/// The link's contact state: its schedule and a test's override.
#[derive(Clone, Debug)]
pub(crate) struct Control {
    schedule: Schedule,
    forced: Option<bool>,
    generation: u64,
}

impl Control {
    pub fn new(schedule: Schedule) -> Self {
        Self {
            schedule,
            forced: None,
            generation: 0,
        }
    }

    /// The link at `since` after the start.
    pub fn state(&self, since: Duration) -> LinkState {
        match self.forced {
            Some(up) => LinkState {
                up,
                generation: self.generation,
                window_end: None,
            },
            None => {
                let (up, next) = self.schedule.at(since);
                LinkState {
                    up,
                    generation: self.generation,
                    window_end: if up { next } else { None },
                }
            }
        }
    }

    /// Forces the link up or down (`Some`) or hands it back to the schedule
    /// (`None`); if that takes the link down, everything in flight is lost.
    pub fn force(&mut self, since: Duration, forced: Option<bool>) {
        let was_up = self.state(since).up;
        self.forced = forced;
        if was_up && !self.state(since).up {
            self.generation += 1;
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }
}

/// What [`Line::offer`] did with a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Offer {
    /// The link was down.
    Down,
    /// The queue was full.
    QueueFull,
    /// It took its turn on the line and was lost.
    Lost,
    /// It will arrive (twice if `copies` is 2) unless the link goes down.
    Queued { copies: u8 },
}

/// A datagram waiting for its arrival time.
struct Pending {
    at: Duration,
    seq: u64,
    generation: u64,
    window_end: Option<Duration>,
    data: Vec<u8>,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// The random draws for one datagram, made before anything else so that
/// the k-th datagram's fate depends only on the seed and k.
struct Fate {
    lost: bool,
    copies: u8,
    jitter: [Duration; 2],
}

/// One direction of the link.
pub(crate) struct Line {
    model: ImpairmentModel,
    rng: ChaCha8Rng,
    loss: LossState,
    /// When the line finishes sending what it has accepted.
    busy_until: Duration,
    /// The link state the backlog was accepted under.
    busy_generation: u64,
    busy_window_end: Option<Duration>,
    queue: BinaryHeap<Reverse<Pending>>,
    seq: u64,
    stats: DirectionStats,
}

impl Line {
    pub fn new(model: &ImpairmentModel, seed: u64, direction: Direction) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(direction.stream());
        Self {
            model: model.clone(),
            rng,
            loss: LossState::default(),
            busy_until: Duration::ZERO,
            busy_generation: 0,
            busy_window_end: None,
            queue: BinaryHeap::new(),
            seq: 0,
            stats: DirectionStats::default(),
        }
    }

    fn draw(&mut self) -> Fate {
        let lost = self.loss.lose(&self.model.loss, &mut self.rng);
        let copies = if self.rng.random_bool(self.model.duplicate.clamp(0.0, 1.0)) {
            2
        } else {
            1
        };
        let mut jitter = [Duration::ZERO; 2];
        let max = u64::try_from(self.model.jitter.as_nanos()).unwrap_or(u64::MAX);
        if max > 0 {
            for j in &mut jitter {
                *j = Duration::from_nanos(self.rng.random_range(0..max));
            }
        }
        Fate {
            lost,
            copies,
            jitter,
        }
    }

    /// A datagram came in at `now` while the link was in state `link`.
    pub fn offer(&mut self, now: Duration, data: Vec<u8>, link: LinkState) -> Offer {
        let len = data.len();
        self.stats.datagrams_in += 1;
        self.stats.bytes_in += len as u64;
        let fate = self.draw();
        if !link.up {
            self.stats.dropped_down += 1;
            return Offer::Down;
        }
        // A backlog accepted in an earlier contact was dropped with it; the
        // line starts empty.
        let backlog_lost = self.busy_generation != link.generation
            || self.busy_window_end.is_some_and(|end| now >= end);
        if backlog_lost || self.busy_until < now {
            self.busy_until = now;
        }
        self.busy_generation = link.generation;
        self.busy_window_end = link.window_end;
        let backlog = self.model.bytes_in(self.busy_until - now);
        if backlog.saturating_add(len as u64) > self.model.queue_limit_bytes {
            self.stats.dropped_queue += 1;
            return Offer::QueueFull;
        }
        let done = self.busy_until + self.model.serialisation(len);
        self.busy_until = done;
        if fate.lost {
            self.stats.lost += 1;
            return Offer::Lost;
        }
        if fate.copies == 2 {
            self.stats.duplicated += 1;
        }
        let mut data = Some(data);
        for copy in 0..fate.copies {
            let data = if copy + 1 == fate.copies {
                data.take().unwrap_or_default()
            } else {
                data.clone().unwrap_or_default()
            };
            self.seq += 1;
            self.queue.push(Reverse(Pending {
                at: done + self.model.delay + fate.jitter[usize::from(copy)],
                seq: self.seq,
                generation: link.generation,
                window_end: link.window_end,
                data,
            }));
        }
        Offer::Queued {
            copies: fate.copies,
        }
    }

    /// When the next datagram is due.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.queue.peek().map(|Reverse(p)| p.at)
    }

    /// The next datagram due at `now`, given the link's generation now;
    /// those whose contact ended on the way are dropped.
    pub fn pop_due(&mut self, now: Duration, generation: u64) -> Option<Vec<u8>> {
        while self.queue.peek().is_some_and(|Reverse(p)| p.at <= now) {
            let Reverse(p) = self.queue.pop()?;
            if p.generation != generation || p.window_end.is_some_and(|end| p.at >= end) {
                self.stats.dropped_down += 1;
                continue;
            }
            return Some(p.data);
        }
        None
    }

    /// A datagram from [`Line::pop_due`] was sent.
    pub fn sent(&mut self, len: usize) {
        self.stats.delivered += 1;
        self.stats.bytes_delivered += len as u64;
    }

    /// A datagram from [`Line::pop_due`] could not be sent.
    pub fn send_failed(&mut self) {
        self.stats.send_errors += 1;
    }

    pub fn stats(&self) -> DirectionStats {
        DirectionStats {
            in_flight: self.queue.len() as u64,
            ..self.stats
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Loss;

    const MS: Duration = Duration::from_millis(1);

    fn up() -> LinkState {
        LinkState {
            up: true,
            generation: 0,
            window_end: None,
        }
    }

    fn drain(line: &mut Line, until: Duration, generation: u64) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(d) = line.pop_due(until, generation) {
            line.sent(d.len());
            out.push(d);
        }
        out
    }

    #[test]
    fn rate_then_delay() {
        let model = ImpairmentModel::new(1_000_000, 40 * MS);
        let mut line = Line::new(&model, 1, Direction::ToUpstream);
        for i in 0..3u8 {
            assert_eq!(
                line.offer(Duration::ZERO, vec![i; 1000], up()),
                Offer::Queued { copies: 1 }
            );
        }
        // 8 ms on the line each, then 20 ms one way.
        assert_eq!(line.next_deadline(), Some(28 * MS));
        assert_eq!(line.pop_due(27 * MS, 0), None);
        assert_eq!(drain(&mut line, 28 * MS, 0), vec![vec![0; 1000]]);
        assert_eq!(line.next_deadline(), Some(36 * MS));
        assert_eq!(drain(&mut line, 44 * MS, 0).len(), 2);
        // An idle line starts fresh.
        line.offer(100 * MS, vec![0; 1000], up());
        assert_eq!(line.next_deadline(), Some(128 * MS));
        drain(&mut line, 200 * MS, 0);
        assert!(line.stats().settled());
        assert_eq!(line.stats().delivered, 4);
    }

    #[test]
    fn a_full_queue_drops_the_tail() {
        let model = ImpairmentModel::new(1_000_000, Duration::ZERO).with_queue_limit(2500);
        let mut line = Line::new(&model, 1, Direction::ToUpstream);
        let offers: Vec<_> = (0..3)
            .map(|_| line.offer(Duration::ZERO, vec![0; 1000], up()))
            .collect();
        assert_eq!(
            offers,
            [
                Offer::Queued { copies: 1 },
                Offer::Queued { copies: 1 },
                Offer::QueueFull
            ]
        );
        // After 8 ms the first has left the queue.
        assert_eq!(
            line.offer(8 * MS, vec![0; 1000], up()),
            Offer::Queued { copies: 1 }
        );
        assert_eq!(line.stats().dropped_queue, 1);
        assert!(line.stats().accounted());
    }

    #[test]
    fn windows_drop_what_comes_while_down_and_what_is_in_flight() {
        let model = ImpairmentModel::new(1_000_000, 40 * MS).with_schedule(Schedule::Periodic {
            up: 100 * MS,
            period: 200 * MS,
        });
        let mut control = Control::new(model.schedule);
        let mut line = Line::new(&model, 1, Direction::ToUpstream);
        // Sent at 50 ms: arrives at 78 ms, inside the window.
        line.offer(50 * MS, vec![1; 1000], control.state(50 * MS));
        // Sent at 90 ms: would arrive at 118 ms, after the window closed.
        line.offer(90 * MS, vec![2; 1000], control.state(90 * MS));
        assert_eq!(
            line.offer(150 * MS, vec![3; 1000], control.state(150 * MS)),
            Offer::Down
        );
        let g = control.generation();
        assert_eq!(drain(&mut line, 150 * MS, g), vec![vec![1; 1000]]);
        // The next window starts with an empty line.
        line.offer(200 * MS, vec![4; 1000], control.state(200 * MS));
        assert_eq!(line.next_deadline(), Some(228 * MS));
        assert_eq!(drain(&mut line, 300 * MS, g), vec![vec![4; 1000]]);
        let s = line.stats();
        assert_eq!((s.delivered, s.dropped_down), (2, 2));
        assert!(s.settled());

        // Forcing the link down loses what is in flight; forcing it up
        // ignores the schedule.
        line.offer(210 * MS, vec![5; 1000], control.state(210 * MS));
        control.force(220 * MS, Some(false));
        assert_eq!(
            line.offer(230 * MS, vec![6; 1000], control.state(230 * MS)),
            Offer::Down
        );
        control.force(240 * MS, Some(true));
        line.offer(350 * MS, vec![7; 1000], control.state(350 * MS));
        assert_eq!(
            drain(&mut line, 400 * MS, control.generation()),
            vec![vec![7; 1000]]
        );
        // Handing the link back to a schedule that says down is going down.
        control.force(500 * MS, None);
        assert!(!control.state(500 * MS).up);
        assert_eq!(control.generation(), 2);
        assert_eq!(line.stats().dropped_down, 4);
        assert!(line.stats().settled());
    }

    #[test]
    fn fates_follow_the_seed_and_the_direction() {
        let model = ImpairmentModel::new(1_000_000_000, Duration::ZERO)
            .with_loss(Loss::Bernoulli(0.3))
            .with_duplicate(0.1)
            .with_jitter(5 * MS);
        let run = |seed, direction| {
            let mut line = Line::new(&model, seed, direction);
            (0..1000)
                .map(|i| line.offer(i * MS, vec![0; 100], up()))
                .collect::<Vec<_>>()
        };
        let a = run(7, Direction::ToUpstream);
        assert_eq!(a, run(7, Direction::ToUpstream));
        assert_ne!(a, run(7, Direction::ToClient));
        assert_ne!(a, run(8, Direction::ToUpstream));
        let lost = a.iter().filter(|o| **o == Offer::Lost).count();
        let twice = a
            .iter()
            .filter(|o| **o == Offer::Queued { copies: 2 })
            .count();
        assert!((240..360).contains(&lost), "lost {lost}");
        assert!((40..110).contains(&twice), "duplicated {twice}");
    }

    #[test]
    fn jitter_reorders_within_its_range() {
        let model = ImpairmentModel::new(1_000_000_000, 20 * MS).with_jitter(10 * MS);
        let mut line = Line::new(&model, 3, Direction::ToClient);
        for i in 0..200u32 {
            line.offer(
                Duration::from_micros(u64::from(i) * 100),
                i.to_be_bytes().to_vec(),
                up(),
            );
        }
        let mut arrivals = Vec::new();
        while let Some(at) = line.next_deadline() {
            assert!(at >= 10 * MS && at < 10 * MS + 20 * MS + 10 * MS, "{at:?}");
            let d = line.pop_due(at, 0).unwrap();
            arrivals.push(u32::from_be_bytes(d.try_into().unwrap()));
        }
        assert_eq!(arrivals.len(), 200);
        assert!(arrivals.windows(2).any(|w| w[0] > w[1]), "no reordering");
    }
}
