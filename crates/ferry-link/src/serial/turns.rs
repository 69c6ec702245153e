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
//! 2. **Hand-over:** a waiting end that receives [`END_OF_TURN`] at `r` holds
//!    the turn from `r + g` (the guard covers the modem's turnaround and the
//!    jitter of `p`).
//! 3. **Lost hand-over, tie-break by role.** Only one end, the *initiator*,
//!    ever takes the turn unprompted:
//!    - the initiator, having ended its turn at `e`, takes the turn back at
//!      `e + 2T + 2p + 2g` if it hears nothing;
//!    - the other end (the *responder*) never times out on its own: it takes
//!      the turn only on [`END_OF_TURN`], or at `r + T + g` after hearing
//!      at `r` a frame of the initiator's turn whose [`END_OF_TURN`] it missed;
//!    - either end, waiting, that hears a frame of the other's turn at `r`
//!      waits until `r + T + g` (that turn began before `r - p`, so it is over
//!      and its last bit has arrived by then).
//!
//!    Why this never makes both talk at once: the responder's turn after a
//!    missed hand-over spans `[r + T + g, r + 2T + g]` and has reached the
//!    initiator by `r + 2T + g + p`, while the initiator, whose turn ended
//!    after `r - p`, waits until at least `r + 2T + p + 2g`; after a
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
    Waiting {
        /// Take the turn unprompted here.
        deadline: Option<Instant>,
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
        matches!(self.state, State::Holding { .. })
    }

    pub fn stats(&self) -> &TurnStats {
        &self.stats
    }

    /// Whether a frame of up to `max_frame_airtime` may start at `now` (or as
    /// soon as our previous frame has left) and still end within the turn.
    pub fn can_send(&self, now: Instant) -> bool {
        match self.state {
            State::Holding { start, end, .. } => {
                now >= start && now.max(self.busy_until) + self.config.max_frame_airtime <= end
            }
            State::Waiting { .. } => false,
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
            now.max(self.busy_until) + 2 * self.config.max_frame_airtime > end
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
        if let State::Holding { sent, .. } = &mut self.state {
            *sent = true;
            if flags & END_OF_TURN != 0 {
                self.stats.idle_handovers += u64::from(flags & IDLE != 0);
                self.wait_after(self.busy_until);
            }
        }
    }

    /// A frame carrying `flags` arrived intact at `now`.
    pub fn on_received(&mut self, now: Instant, flags: u8) {
        self.touch(now);
        self.idle_rounds = match flags & IDLE {
            0 => 0,
            _ => self.idle_rounds.saturating_add(1),
        };
        let end_of_turn = flags & END_OF_TURN != 0;
        let heard = State::Waiting {
            deadline: Some(now + self.config.heard_timeout()),
        };
        match self.state {
            State::Waiting { .. } if end_of_turn => self.take(now + self.config.guard, false),
            State::Waiting { .. } => self.state = heard,
            // A conflict: the initiator keeps the turn, the responder yields.
            State::Holding { .. } if !self.initiator && !end_of_turn => self.state = heard,
            State::Holding { .. } => {}
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
            State::Waiting { deadline } => deadline,
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.touch(now);
        match self.state {
            State::Waiting {
                deadline: Some(deadline),
            } if now >= deadline => self.take(now, true),
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
        self.state = State::Holding {
            start,
            end: start + self.config.max_turn,
            idle_until: start + self.config.idle_hold(self.idle_rounds),
            sent: false,
        };
    }

    /// Our turn ended with our last transmission leaving at `end`.
    fn wait_after(&mut self, end: Instant) {
        let deadline = self
            .initiator
            .then(|| end + self.config.initiator_timeout());
        self.state = State::Waiting { deadline };
    }
}
