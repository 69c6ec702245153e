//! Half-duplex turn-taking for two ends sharing one medium.
//!
//! An acoustic modem cannot hear while it talks, so the two ends of a link
//! take turns. Write `T` for [`TurnConfig::max_turn`], `F` for
//! [`TurnConfig::max_frame_airtime`], `p` for [`TurnConfig::propagation`] and
//! `g` for [`TurnConfig::guard`]. The rules:
//!
//! 1. **A turn lasts at most `T`** of wall time from its start; every frame of
//!    the turn finishes leaving by then. The holder sends while it has data
//!    and marks its last frame with [`END_OF_TURN`]; [`Turns::should_end_turn`]
//!    says which frame that is. A holder with nothing (more) to send passes
//!    the turn with one empty frame carrying [`Turns::handover_flags`].
//! 2. **Hand-over, repeated:** the frame ending a turn is followed at once by
//!    [`REPEATS`] empty copies (each at most `F / 2` of airtime, each starting
//!    at most `F / 2` after the previous one ends), numbered in the
//!    [`REPEAT_MASK`] bits of their flags (the first, possibly carrying data,
//!    is number 0). One lost frame no longer loses the hand-over: losing all
//!    of them takes a burst. A waiting end that receives copy `i` at `r`
//!    holds the turn from `r + g + (REPEATS - i) × F` (the copies still to
//!    come have left by then; the guard covers the modem's turnaround and the
//!    jitter of `p`), or sooner if a later copy arrives. The copies fit in
//!    the turn: its last data frame leaves room for them.
//! 3. **Lost hand-over, tie-break by role.** Only one end, the *initiator*,
//!    ever takes the turn unprompted:
//!    - the initiator, having ended its turn at `e`, takes the turn back at
//!      `e + 2T + 2p + 2g` if it hears nothing;
//!    - the other end (the *responder*) never times out on its own: it takes
//!      the turn only on [`END_OF_TURN`], or at `r + T + g` after hearing
//!      at `r` the first frame of the initiator's turn whose [`END_OF_TURN`]
//!      it missed;
//!    - either end, waiting, that hears frames of the other's turn, the first
//!      at `r`, waits until `r + T + g` (that turn began before `r - p`, so
//!      it is over and its last bit has arrived by then). Timing from the
//!      first frame heard since our own turn, not the last, means a lost
//!      hand-over after a full turn costs about a guard, not a turn.
//!
//!    Why this never makes both talk at once: the responder's turn after a
//!    missed hand-over spans `[r + T + g, r + 2T + g]` and has reached the
//!    initiator by `r + 2T + g + p`, while the initiator, whose turn ended
//!    after `r - p` (`r` is a frame of it), waits until at least
//!    `r + 2T + p + 2g`; after a
//!    hand-over that did arrive the responder is done, and heard, by
//!    `e + T + 2p + g`. The responder cannot time out again before the
//!    initiator has spoken. So the initiator's timeout is the shorter one and
//!    the responder's is unbounded until it hears the initiator.
//! 4. **Conflicts** (only after a restart: the initiator starts as if it had
//!    just ended a turn, the responder starts waiting): if both hold the turn,
//!    the initiator keeps it and the responder yields on hearing it.
//! 5. **Idle back-off:** a hand-over frame from a turn that sent nothing else
//!    carries [`IDLE`]. An end that receives the turn with `IDLE` and has
//!    nothing to send keeps it quietly for [`TurnConfig::idle_initial`],
//!    doubling with each consecutive idle hand-over up to
//!    [`TurnConfig::idle_max`] (which fits inside a turn), before handing it
//!    back. Data sent or received resets the back-off; data that turns up
//!    while holding an idle turn is sent at once.
//!
//! `p` must bound the delay from the end of a transmission to its delivery to
//! [`Turns::on_received`]; `g` must cover how much earlier than `p` a frame
//! may arrive, plus the modem's switch from listening to talking.

use std::time::Duration;

use ferry_core::Instant;

use super::ConfigError;

/// Flag bit: the last frame of the sender's turn.
pub const END_OF_TURN: u8 = 0x01;
/// Flag bit (with [`END_OF_TURN`]): the sender had nothing to send this turn.
pub const IDLE: u8 = 0x02;
/// Flag bits (with [`END_OF_TURN`]): which copy of the hand-over this is,
/// 0 (the frame that ended the turn) to [`REPEATS`].
pub const REPEAT_MASK: u8 = 0x0c;
const REPEAT_SHIFT: u32 = 2;
/// Empty copies of [`END_OF_TURN`] sent after the frame that ends a turn.
pub const REPEATS: u8 = 2;

/// The copy number carried in `flags` (see [`REPEAT_MASK`]).
pub fn repeat_index(flags: u8) -> u8 {
    ((flags & REPEAT_MASK) >> REPEAT_SHIFT).min(REPEATS)
}

/// Timing of one half-duplex link; both ends must use the same values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TurnConfig {
    /// Longest turn, wall time from its start to the end of its last frame.
    pub max_turn: Duration,
    /// Airtime of the longest frame (e.g. [`Pacer::airtime`](super::Pacer::airtime)
    /// of `modem_mtu`).
    pub max_frame_airtime: Duration,
    /// Upper bound of the one-way delay, end of transmission to delivery.
    pub propagation: Duration,
    /// Turnaround margin; also absorbs how much the delay varies.
    pub guard: Duration,
    /// First idle hold after an idle hand-over.
    pub idle_initial: Duration,
    /// Longest idle hold; `idle_max + max_frame_airtime <= max_turn`.
    pub idle_max: Duration,
}

impl TurnConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_frame_airtime.is_zero() {
            return Err(ConfigError::Turns("max_frame_airtime must be positive"));
        }
        if self.idle_max + self.max_frame_airtime > self.max_turn {
            return Err(ConfigError::Turns(
                "idle_max + max_frame_airtime exceeds max_turn",
            ));
        }
        // A turn must fit one frame and the hand-over's copies after it, or
        // `can_send` is never true and the link never sends.
        if self.max_frame_airtime * (1 + u32::from(REPEATS)) > self.max_turn {
            return Err(ConfigError::Turns(
                "max_turn is shorter than a frame plus the hand-over's copies (3 × max_frame_airtime)",
            ));
        }
        Ok(())
    }

    /// How long the initiator waits after its own turn before taking the turn
    /// back unprompted: `2T + 2p + 2g`.
    pub fn initiator_timeout(&self) -> Duration {
        2 * (self.max_turn + self.propagation + self.guard)
    }

    /// How long a waiting end waits after hearing the other's turn: `T + g`.
    pub fn heard_timeout(&self) -> Duration {
        self.max_turn + self.guard
    }

    /// The quiet hold before the `rounds`-th consecutive idle hand-over.
    fn idle_hold(&self, rounds: u32) -> Duration {
        match rounds {
            0 => Duration::ZERO,
            n => {
                let factor = 1u32.checked_shl(n - 1).unwrap_or(u32::MAX);
                self.idle_initial.saturating_mul(factor).min(self.idle_max)
            }
        }
    }
}

/// Counters for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TurnStats {
    /// Turns taken, by hand-over or by timeout.
    pub turns: u64,
    /// Turns taken by timeout (a hand-over was lost).
    pub timeouts: u64,
    /// Turns that ran out without the driver sending [`END_OF_TURN`].
    pub expired: u64,
    /// Idle hand-overs sent.
    pub idle_handovers: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Holding {
        /// May transmit from here.
        start: Instant,
        /// Every frame must have left by here.
        end: Instant,
        /// An idle hand-over waits until here.
        idle_until: Instant,
        /// A frame was sent this turn.
        sent: bool,
    },
    /// The turn's last frame has gone; its empty copies follow.
    Closing {
        /// The number of the next copy.
        next: u8,
        /// The turn sent nothing but its hand-over.
        idle: bool,
        /// The previous copy has left by here.
        prev_end: Instant,
    },
    Waiting {
        /// Take the turn unprompted here.
        deadline: Option<Instant>,
        /// The first frame of the other end's turn heard since ours ended.
        heard: Option<Instant>,
    },
}

/// One end's turn-taking state machine (sans-IO: time is passed in).
///
/// A driver loop, on every event:
///
/// ```text
/// turns.handle_timeout(now) when poll_timeout() is due;
/// on each frame received: turns.on_received(now, frame.flags);
/// while turns.can_send(now) and the line is free:
///     if there is a frame:   flags = if turns.should_end_turn(now, false) { END_OF_TURN } else { 0 }
///     elif turns.should_end_turn(now, true): send an empty frame with flags = turns.handover_flags()
///     else: break
///     turns.on_sent(now, airtime, flags)
/// sleep until poll_timeout(), the line is free, or new input
/// ```
#[derive(Clone, Debug)]
pub struct Turns {
    config: TurnConfig,
    initiator: bool,
    state: State,
    /// Our own transmissions occupy the line until here.
    busy_until: Instant,
    /// Consecutive idle hand-overs received.
    idle_rounds: u32,
    /// The latest `now` seen by a mutating call.
    last_now: Instant,
    stats: TurnStats,
}

impl Turns {
    /// Starts waiting: the initiator as if it had just ended a turn (so it
    /// speaks first, after [`TurnConfig::initiator_timeout`]), the responder
    /// for the initiator.
    pub fn new(config: TurnConfig, initiator: bool, now: Instant) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Turns {
            config,
            initiator,
            state: State::Waiting {
                deadline: initiator.then(|| now + config.initiator_timeout()),
                heard: None,
            },
            busy_until: now,
            idle_rounds: 0,
            last_now: now,
            stats: TurnStats::default(),
        })
    }

    pub fn config(&self) -> &TurnConfig {
        &self.config
    }

    pub fn is_initiator(&self) -> bool {
        self.initiator
    }

    pub fn holds_turn(&self) -> bool {
        matches!(self.state, State::Holding { .. } | State::Closing { .. })
    }

    /// Room at the end of a turn for the hand-over's copies.
    fn copies_room(&self) -> Duration {
        self.config.max_frame_airtime * u32::from(REPEATS)
    }

    /// Whether a copy of the hand-over is to go now, and its flags: an
    /// empty frame, sent before anything else. Drivers check this first.
    pub fn handover_repeat(&self, now: Instant) -> Option<u8> {
        match self.state {
            State::Closing {
                next,
                idle,
                prev_end,
            } if now.max(self.busy_until) < prev_end + self.config.max_frame_airtime / 2 => {
                let idle = if idle { IDLE } else { 0 };
                Some(END_OF_TURN | idle | (next << REPEAT_SHIFT))
            }
            _ => None,
        }
    }

    pub fn stats(&self) -> &TurnStats {
        &self.stats
    }

    /// Whether a frame of up to `max_frame_airtime` may start at `now` (or as
    /// soon as our previous frame has left) and still end within the turn.
    pub fn can_send(&self, now: Instant) -> bool {
        match self.state {
            State::Holding { start, end, .. } => {
                now >= start
                    && now.max(self.busy_until) + self.config.max_frame_airtime + self.copies_room()
                        <= end
            }
            State::Closing { .. } | State::Waiting { .. } => false,
        }
    }

    /// With a frame to send (`queue_empty == false`): whether it must be the
    /// last of the turn, i.e. carry [`END_OF_TURN`], because no frame would fit
    /// after it. With nothing to send: whether to send the empty hand-over
    /// frame now (at once if this turn sent anything, else after the idle
    /// hold). False whenever [`can_send`](Self::can_send) is.
    pub fn should_end_turn(&self, now: Instant, queue_empty: bool) -> bool {
        let State::Holding {
            end,
            idle_until,
            sent,
            ..
        } = self.state
        else {
            return false;
        };
        if !self.can_send(now) {
            false
        } else if queue_empty {
            sent || now >= idle_until
        } else {
            now.max(self.busy_until) + 2 * self.config.max_frame_airtime + self.copies_room() > end
        }
    }

    /// The flags of the empty hand-over frame: [`END_OF_TURN`], plus [`IDLE`]
    /// if this turn sent nothing else.
    pub fn handover_flags(&self) -> u8 {
        match self.state {
            State::Holding { sent: false, .. } => END_OF_TURN | IDLE,
            _ => END_OF_TURN,
        }
    }

    /// A frame of `airtime` carrying `flags` was handed to the line at `now`
    /// (it starts when our previous frame has left).
    pub fn on_sent(&mut self, now: Instant, airtime: Duration, flags: u8) {
        self.touch(now);
        self.busy_until = now.max(self.busy_until) + airtime;
        if flags & IDLE == 0 {
            self.idle_rounds = 0;
        }
        match &mut self.state {
            State::Holding { sent, .. } => {
                *sent = true;
                if flags & END_OF_TURN != 0 {
                    self.stats.idle_handovers += u64::from(flags & IDLE != 0);
                    self.close(1, flags & IDLE != 0);
                }
            }
            State::Closing { next, idle, .. } => {
                let (next, idle) = (*next + 1, *idle);
                self.close(next, idle);
            }
            State::Waiting { .. } => {}
        }
    }

    /// The hand-over's copy `next - 1` has been sent: the next, or wait.
    fn close(&mut self, next: u8, idle: bool) {
        if next > REPEATS {
            self.wait_after(self.busy_until);
        } else {
            self.state = State::Closing {
                next,
                idle,
                prev_end: self.busy_until,
            };
        }
    }

    /// A frame carrying `flags` arrived intact at `now`.
    pub fn on_received(&mut self, now: Instant, flags: u8) {
        self.touch(now);
        let end_of_turn = flags & END_OF_TURN != 0;
        // Data resets the idle back-off; an idle hand-over counts once, when
        // its first copy to arrive hands us the turn.
        if !end_of_turn || flags & IDLE == 0 {
            self.idle_rounds = 0;
        } else if matches!(self.state, State::Waiting { .. }) {
            self.idle_rounds = self.idle_rounds.saturating_add(1);
        }
        // The copies of the hand-over still to come have left by then.
        let to_come = u32::from(REPEATS - repeat_index(flags));
        let take_at = now + self.config.guard + self.config.max_frame_airtime * to_come;
        let heard_timeout = self.config.heard_timeout();
        let heard = |first: Instant| State::Waiting {
            deadline: Some(first + heard_timeout),
            heard: Some(first),
        };
        match self.state {
            State::Waiting { .. } if end_of_turn => self.take(take_at, false),
            State::Waiting { heard: first, .. } => self.state = heard(first.unwrap_or(now)),
            // A later copy of the hand-over that made us take the turn.
            State::Holding {
                start, sent: false, ..
            } if end_of_turn && take_at < start && now < start => {
                self.stats.turns -= 1;
                self.take(take_at, false);
            }
            // A conflict: the initiator keeps the turn, the responder yields.
            State::Holding { .. } | State::Closing { .. } if !self.initiator && !end_of_turn => {
                self.state = heard(now)
            }
            State::Holding { .. } | State::Closing { .. } => {}
        }
    }

    /// The next instant at which [`handle_timeout`](Self::handle_timeout)
    /// must be called: the turn may start, the idle hold ends, the turn
    /// expires, or the wait times out.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Holding {
                start,
                end,
                idle_until,
                sent,
            } => {
                let upcoming = [Some(start), (!sent).then_some(idle_until)]
                    .into_iter()
                    .flatten()
                    .filter(|&t| t > self.last_now);
                Some(upcoming.fold(end, Instant::min))
            }
            State::Closing { prev_end, .. } => Some(prev_end + self.config.max_frame_airtime / 2),
            State::Waiting { deadline, .. } => deadline,
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.touch(now);
        match self.state {
            State::Waiting {
                deadline: Some(deadline),
                ..
            } if now >= deadline => self.take(now, true),
            // Too late for the remaining copies: the turn ends without them.
            State::Closing { prev_end, .. }
                if now >= prev_end + self.config.max_frame_airtime / 2 =>
            {
                self.wait_after(prev_end.max(self.busy_until));
            }
            State::Holding { end, .. } if now >= end => {
                self.stats.expired += 1;
                self.wait_after(end.max(self.busy_until));
            }
            _ => {}
        }
    }

    fn touch(&mut self, now: Instant) {
        self.last_now = self.last_now.max(now);
    }

    fn take(&mut self, start: Instant, by_timeout: bool) {
        self.stats.turns += 1;
        self.stats.timeouts += u64::from(by_timeout);
        let end = start + self.config.max_turn;
        // An idle hold leaves room for the hand-over and its copies.
        let latest = end
            .saturating_since(start)
            .saturating_sub(self.config.max_frame_airtime + self.copies_room());
        self.state = State::Holding {
            start,
            end,
            idle_until: start + self.config.idle_hold(self.idle_rounds).min(latest),
            sent: false,
        };
    }

    /// Our turn ended with our last transmission leaving at `end`.
    fn wait_after(&mut self, end: Instant) {
        let deadline = self
            .initiator
            .then(|| end + self.config.initiator_timeout());
        self.state = State::Waiting {
            deadline,
            heard: None,
        };
    }
}
