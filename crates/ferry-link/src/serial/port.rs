//! [`SerialLink`]: engine frames over a serial port, on tokio.
//!
//! The driver glues the sans-IO parts of this module to a byte stream: a
//! serial device opened with tokio-serial ([`SerialLink::open`]) or any
//! `AsyncRead + AsyncWrite` ([`SerialLink::new`], e.g. a pseudo-terminal in
//! tests). Two tasks own the stream:
//!
//! - the **writer** takes frames from a one-frame queue, frames them with the
//!   [`Encoder`] and writes each only when the [`Pacer`] says
//!   the line is free, so the driver never writes faster than the line rate.
//!   [`SerialLink::ready`] answers when the writer would write a frame at
//!   once: a driver that polls its engine only then has the engine choose
//!   each frame just before it leaves, never a frame time ahead. On a
//!   half-duplex link the writer also follows [`Turns`]: it writes only in
//!   its own turns, marks the turn's last frame with [`END_OF_TURN`], and
//!   passes the turn with an empty frame when it has nothing (more) to send
//!   — but only once `ready` has been answering for [`WRITE_LEAD`], so that
//!   a driver that sends when ready also gets its frame into a fresh turn.
//! - the **reader** feeds whatever arrives to the streaming
//!   [`Decoder`] and queues the frames that passed the CRC
//!   for [`SerialLink::recv`]; dropped frames are only counted
//!   ([`SerialStats::decoder`]). Empty frames (turn hand-overs) never reach
//!   the application.
//!
//! The link never retransmits: the engine repairs lost frames itself. Tell
//! the engine [`SerialLinkConfig::link_properties`] when the contact comes up:
//! its MTU is [`SerialLinkConfig::max_payload`].
//!
//! ```no_run
//! # async fn run() -> Result<(), ferry_link::serial::port::SerialError> {
//! use ferry_link::serial::port::{SerialLink, SerialLinkConfig};
//!
//! let link = SerialLink::open(SerialLinkConfig::new("/dev/ttyUSB0", 9600))?;
//! link.send(b"an engine frame".to_vec()).await?;
//! while let Some(frame) = link.recv().await? {
//!     // engine.handle_frame(now, link_id, &frame)
//! #   let _ = frame;
//! }
//! # Ok(())
//! # }
//! ```

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use ferry_core::{Instant, LinkProperties};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{Mutex as AsyncMutex, Notify, mpsc, watch};
use tokio::task::JoinHandle;

use super::{
    ConfigError, Decoder, DecoderStats, END_OF_TURN, Encoder, Pacer, SerialConfig, TurnConfig,
    TurnStats, Turns,
};

/// Bits on the line per byte on a port set to 8N1: a start bit, 8 data bits
/// and a stop bit. [`SerialLink::open`] always sets 8N1.
pub const BITS_PER_BYTE: u32 = 10;

/// Received frames the link holds for [`SerialLink::recv`] before it stops
/// reading the port.
const INBOX_FRAMES: usize = 64;

/// How long before the line is free the writer may hand the next frame to
/// the port: more than the timer's granularity, so that waking up late never
/// leaves the line idle between frames. The pacer still books each frame
/// from the end of the previous one, so the long-run rate stays the line's.
pub const WRITE_LEAD: Duration = Duration::from_millis(2);

/// How to drive one serial device. Both ends of a link must agree on
/// [`framing`](Self::framing) and [`half_duplex`](Self::half_duplex) timing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SerialLinkConfig {
    /// The device, e.g. `/dev/ttyUSB0`. [`SerialLink::open`] opens it;
    /// errors name it.
    pub path: PathBuf,
    /// The port's baud rate (8N1).
    pub baud_bps: u32,
    /// The rate the writer paces to, in data bits (8 per byte) per second,
    /// when the slowest part of the link is slower than the port: an
    /// acoustic modem behind a 19200-baud port, say. `None`: the port's
    /// own data rate, `baud_bps × 8/10`.
    pub line_rate_bps: Option<u32>,
    /// Framing: the CRC and the modem's frame size.
    pub framing: SerialConfig,
    /// Take turns with the other end (a half-duplex modem); `None` for a
    /// full-duplex line.
    pub half_duplex: Option<HalfDuplex>,
}

/// Half-duplex operation: which end this is, and the turn timing both ends share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HalfDuplex {
    /// The initiator speaks first and takes the turn back when a hand-over
    /// is lost; exactly one end of a link is the initiator.
    pub initiator: bool,
    /// Turn timing (see [`Turns`]). Its `max_frame_airtime` should be
    /// [`SerialLinkConfig::frame_airtime`].
    pub turns: TurnConfig,
}

impl SerialLinkConfig {
    /// A full-duplex link on `path` at `baud_bps`, 8N1, paced to the port's
    /// rate, with the default framing (CRC-32, 256-byte modem frames).
    pub fn new(path: impl Into<PathBuf>, baud_bps: u32) -> Self {
        SerialLinkConfig {
            path: path.into(),
            baud_bps,
            line_rate_bps: None,
            framing: SerialConfig::default(),
            half_duplex: None,
        }
    }

    /// Checks that the configuration is usable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.framing.validate()?;
        self.pacer()?;
        if self.baud_bps == 0 {
            return Err(ConfigError::Pacing {
                baud_bps: 0,
                bits_per_byte: BITS_PER_BYTE,
            });
        }
        if let Some(half) = &self.half_duplex {
            half.turns.validate()?;
        }
        Ok(())
    }

    /// The largest engine frame the link carries: the MTU to give the engine.
    pub fn max_payload(&self) -> usize {
        self.framing.max_payload()
    }

    /// How long a full modem frame (`modem_mtu` bytes) takes to leave at the
    /// paced rate.
    pub fn frame_airtime(&self) -> Duration {
        self.pacer()
            .map(|pacer| pacer.airtime(self.framing.modem_mtu))
            .unwrap_or(Duration::MAX)
    }

    /// What to tell the engine when the contact comes up, for a line whose
    /// one-way delay (modem latency, propagation) is `propagation`:
    ///
    /// - `mtu`: [`max_payload`](Self::max_payload);
    /// - `rate_bps`: engine bytes per second when every frame is full, so
    ///   that `mtu × 8 / rate_bps` is a full frame's airtime;
    /// - `rtt`: a full frame each way plus `propagation` each way, plus on
    ///   a half-duplex link a turn and its guard each way (a reply may wait
    ///   for both ends' turns);
    /// - `reliable: false` (the engine repairs lost frames) and
    ///   `pipeline: true` (chunks start before the first want-list, which
    ///   on a slow line saves a round trip at the start).
    pub fn link_properties(&self, propagation: Duration) -> LinkProperties {
        let airtime = self.frame_airtime();
        let turns = self
            .half_duplex
            .map_or(Duration::ZERO, |h| h.turns.max_turn + h.turns.guard);
        let rtt = (airtime + propagation + turns).saturating_mul(2);
        let payload = self.max_payload() as u64;
        let rate_bps = (self.data_rate_bps() * payload)
            .checked_div(self.framing.modem_mtu as u64)
            .unwrap_or(0);
        LinkProperties {
            mtu: payload as u32,
            rtt,
            reliable: false,
            rate_bps,
            pipeline: true,
        }
    }

    /// Data bits per second the writer paces to.
    fn data_rate_bps(&self) -> u64 {
        match self.line_rate_bps {
            Some(rate) => u64::from(rate),
            None => u64::from(self.baud_bps) * 8 / u64::from(BITS_PER_BYTE),
        }
    }

    fn pacer(&self) -> Result<Pacer, ConfigError> {
        match self.line_rate_bps {
            Some(rate) => Pacer::new(rate, 8),
            None => Pacer::new(self.baud_bps, BITS_PER_BYTE),
        }
    }
}

/// Why a serial link failed. Every variant names the device.
#[derive(Debug, thiserror::Error)]
pub enum SerialError {
    /// The configuration cannot work.
    #[error("serial device {}: {source}", .device.display())]
    Config {
        device: PathBuf,
        source: ConfigError,
    },
    /// The device could not be opened (missing, busy, not a serial port, no
    /// permission).
    #[error("cannot open serial device {}: {source}", .device.display())]
    Open {
        device: PathBuf,
        source: tokio_serial::Error,
    },
    /// A frame larger than [`SerialLinkConfig::max_payload`]; nothing was sent.
    #[error(
        "serial device {}: a frame of {len} bytes exceeds the maximum payload of {max} bytes",
        .device.display()
    )]
    FrameTooLong {
        device: PathBuf,
        len: usize,
        max: usize,
    },
    /// An empty frame; the serial layer uses those for turn hand-overs.
    #[error("serial device {}: cannot send an empty frame", .device.display())]
    EmptyFrame { device: PathBuf },
    /// Reading or writing the device failed; the link is closed.
    #[error("serial device {}: {op} failed: {source}", .device.display())]
    Io {
        device: PathBuf,
        /// `"read"` or `"write"`.
        op: &'static str,
        source: Arc<io::Error>,
    },
    /// The link is closed.
    #[error("serial device {}: link closed", .device.display())]
    Closed { device: PathBuf },
}

/// What a [`SerialLink`] has done, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SerialStats {
    /// Engine frames written to the device.
    pub frames_sent: u64,
    /// Engine frame bytes in them.
    pub payload_bytes_sent: u64,
    /// Bytes written to the device, framing and hand-overs included.
    pub bytes_sent: u64,
    /// Engine frames handed to [`SerialLink::recv`]'s callers.
    pub frames_received: u64,
    /// Engine frame bytes in them.
    pub payload_bytes_received: u64,
    /// Bytes read from the device.
    pub bytes_received: u64,
    /// Empty turn hand-over frames sent, not counting their copies.
    pub handovers_sent: u64,
    /// Empty copies of hand-overs sent (see [`REPEATS`](super::REPEATS)).
    pub handover_copies_sent: u64,
    /// Empty frames received (turn hand-overs).
    pub handovers_received: u64,
    /// The decoder's counts: intact frames, and frames dropped by reason.
    pub decoder: DecoderStats,
    /// Turn-taking counts (all zero on a full-duplex link).
    pub turns: TurnStats,
}

/// One serial device carrying engine frames (see the [module docs](self)).
///
/// All methods take `&self`: one task may send while another receives.
/// Must be created within a tokio runtime. Dropping the link stops its tasks
/// and closes the device; frames still queued are lost (the engine repairs
/// them).
pub struct SerialLink {
    config: SerialLinkConfig,
    shared: Arc<Shared>,
    outbox: mpsc::Sender<Vec<u8>>,
    inbox: AsyncMutex<mpsc::Receiver<Result<Vec<u8>, SerialError>>>,
    tasks: [JoinHandle<()>; 2],
}

/// What the link and its tasks share.
struct Shared {
    device: PathBuf,
    stats: Mutex<SerialStats>,
    turns: Option<Mutex<Turns>>,
    /// The reader changed the turn state: the writer looks again.
    turn_changed: Notify,
    /// The writer waits for a frame: it would write one at once.
    wants_frame: watch::Sender<bool>,
    /// The write error that stopped the writer.
    fatal: OnceLock<Arc<io::Error>>,
}

impl Shared {
    fn stats(&self) -> MutexGuard<'_, SerialStats> {
        self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the turn state, if the link is half-duplex.
    fn with_turns<T>(&self, f: impl FnOnce(&mut Turns) -> T) -> Option<T> {
        self.turns
            .as_ref()
            .map(|turns| f(&mut turns.lock().unwrap_or_else(PoisonError::into_inner)))
    }

    /// Why the writer is gone: its write error, or the link was closed.
    fn closed(&self) -> SerialError {
        let device = self.device.clone();
        match self.fatal.get() {
            Some(source) => SerialError::Io {
                device,
                op: "write",
                source: source.clone(),
            },
            None => SerialError::Closed { device },
        }
    }
}

impl SerialLink {
    /// Opens the serial device at `config.path` (8N1, no flow control, at
    /// `config.baud_bps`) and starts the link. The error names the device.
    pub fn open(config: SerialLinkConfig) -> Result<SerialLink, SerialError> {
        config.validate().map_err(|source| SerialError::Config {
            device: config.path.clone(),
            source,
        })?;
        let builder = tokio_serial::new(config.path.to_string_lossy(), config.baud_bps)
            .data_bits(tokio_serial::DataBits::Eight)
            .parity(tokio_serial::Parity::None)
            .stop_bits(tokio_serial::StopBits::One)
            .flow_control(tokio_serial::FlowControl::None);
        let stream =
            tokio_serial::SerialStream::open(&builder).map_err(|source| SerialError::Open {
                device: config.path.clone(),
                source,
            })?;
        SerialLink::new(stream, config)
    }

    /// Starts a link over an open byte stream; `config.path` only names it.
    pub fn new<S>(stream: S, config: SerialLinkConfig) -> Result<SerialLink, SerialError>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let config_error = |source| SerialError::Config {
            device: config.path.clone(),
            source,
        };
        config.validate().map_err(config_error)?;
        let encoder = Encoder::new(config.framing).map_err(config_error)?;
        let decoder = Decoder::new(config.framing).map_err(config_error)?;
        let pacer = config.pacer().map_err(config_error)?;
        let clock = Clock {
            origin: tokio::time::Instant::now(),
        };
        let turns = match config.half_duplex {
            Some(half) => Some(Mutex::new(
                Turns::new(half.turns, half.initiator, clock.now()).map_err(config_error)?,
            )),
            None => None,
        };
        let shared = Arc::new(Shared {
            device: config.path.clone(),
            stats: Mutex::new(SerialStats::default()),
            turns,
            turn_changed: Notify::new(),
            wants_frame: watch::Sender::new(false),
            fatal: OnceLock::new(),
        });
        let (read, write) = tokio::io::split(stream);
        let (outbox, queued) = mpsc::channel(1);
        let (arrived, inbox) = mpsc::channel(INBOX_FRAMES);
        let writer = Writer {
            port: write,
            encoder,
            pacer,
            clock,
            shared: shared.clone(),
            queued,
        };
        let tasks = [
            tokio::spawn(writer.run()),
            tokio::spawn(read_loop(read, decoder, shared.clone(), clock, arrived)),
        ];
        Ok(SerialLink {
            config,
            shared,
            outbox,
            inbox: AsyncMutex::new(inbox),
            tasks,
        })
    }

    /// The device this link drives.
    pub fn device(&self) -> &Path {
        &self.config.path
    }

    /// The configuration the link runs with.
    pub fn config(&self) -> &SerialLinkConfig {
        &self.config
    }

    /// The largest frame [`send`](Self::send) takes: the engine's MTU.
    pub fn max_payload(&self) -> usize {
        self.config.max_payload()
    }

    /// Waits until the line (and, on a half-duplex link, the turn) is free
    /// and no frame is waiting for it: a frame [`send`](Self::send) now goes
    /// on the line at once. Poll the engine for its next frame only then, so
    /// that the engine decides as late as possible (a want-list that arrives
    /// meanwhile still shapes what it sends). Cancel-safe.
    pub async fn ready(&self) -> Result<(), SerialError> {
        let mut wants = self.shared.wants_frame.subscribe();
        // The writer says true when it stops, so this cannot hang; the
        // reservation then fails.
        let _ = wants.wait_for(|&wants| wants).await;
        match self.outbox.reserve().await {
            Ok(_permit) => Ok(()),
            Err(_) => Err(self.shared.closed()),
        }
    }

    /// Queues one engine frame; it goes on the line when the line (and, on
    /// a half-duplex link, the turn) is free. Waits while another frame is
    /// queued. A frame over [`max_payload`](Self::max_payload), or an empty
    /// one, is refused.
    pub async fn send(&self, frame: Vec<u8>) -> Result<(), SerialError> {
        let max = self.max_payload();
        if frame.len() > max {
            return Err(SerialError::FrameTooLong {
                device: self.config.path.clone(),
                len: frame.len(),
                max,
            });
        }
        if frame.is_empty() {
            return Err(SerialError::EmptyFrame {
                device: self.config.path.clone(),
            });
        }
        self.outbox
            .send(frame)
            .await
            .map_err(|_| self.shared.closed())?;
        // The writer is busy with this frame now (it says so itself once it
        // runs; this keeps `ready` from answering before it has).
        self.shared.wants_frame.send_replace(false);
        Ok(())
    }

    /// The next frame that arrived intact (CRC checked), in order.
    /// `Ok(None)` once the device reached end of file or the link failed
    /// (the failure is returned once, first). Cancel-safe.
    pub async fn recv(&self) -> Result<Option<Vec<u8>>, SerialError> {
        let next = self.inbox.lock().await.recv().await;
        match next {
            Some(Ok(frame)) => {
                let mut stats = self.shared.stats();
                stats.frames_received += 1;
                stats.payload_bytes_received += frame.len() as u64;
                Ok(Some(frame))
            }
            Some(Err(e)) => Err(e),
            None => Ok(None),
        }
    }

    /// What the link has done so far.
    pub fn stats(&self) -> SerialStats {
        let mut stats = *self.shared.stats();
        if let Some(turns) = self.shared.with_turns(|t| *t.stats()) {
            stats.turns = turns;
        }
        stats
    }
}

impl Drop for SerialLink {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The link's clock: [`Instant`]s in microseconds since the link started,
/// on tokio's clock.
#[derive(Clone, Copy)]
struct Clock {
    origin: tokio::time::Instant,
}

impl Clock {
    fn now(&self) -> Instant {
        Instant(u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX))
    }

    /// `at` on tokio's clock, `None` if too far ahead to represent.
    fn to_tokio(self, at: Instant) -> Option<tokio::time::Instant> {
        self.origin.checked_add(Duration::from_micros(at.0))
    }
}

/// The writing half of the link.
struct Writer<W> {
    port: W,
    encoder: Encoder,
    pacer: Pacer,
    clock: Clock,
    shared: Arc<Shared>,
    queued: mpsc::Receiver<Vec<u8>>,
}

impl<W: AsyncWrite + Unpin> Writer<W> {
    async fn run(mut self) {
        if let Err(e) = self.pump().await {
            tracing::warn!(device = %self.shared.device.display(), error = %e, "serial link writer stopped");
            let _ = self.shared.fatal.set(e);
        }
        // Nothing will be written any more: let `ready` see the closed queue.
        drop(self.queued);
        self.shared.wants_frame.send_replace(true);
    }

    /// Writes queued frames, and on a half-duplex link hand-overs, whenever
    /// the line and the turn allow; returns when the link is dropped.
    async fn pump(&mut self) -> Result<(), Arc<io::Error>> {
        let mut pending: Option<Vec<u8>> = None;
        // Since when the writer has been waiting for a frame, free to write it.
        let mut wanted_since: Option<Instant> = None;
        loop {
            let now = self.clock.now();
            let (turn_ok, turn_wake) = self
                .shared
                .with_turns(|turns| {
                    if turns.poll_timeout().is_some_and(|at| at <= now) {
                        turns.handle_timeout(now);
                    }
                    (turns.can_send(now), turns.poll_timeout())
                })
                .unwrap_or((true, None));
            let line_free = self.pacer.can_send(now + WRITE_LEAD);
            let line_idle = self.pacer.can_send(now);
            let free = line_free && turn_ok;
            let wants = free && pending.is_none();
            self.shared.wants_frame.send_replace(wants);
            let asked_at = if wants {
                *wanted_since.get_or_insert(now)
            } else {
                wanted_since = None;
                now
            };
            // The driver has had the lead time to answer `ready` with a frame.
            let lead_over = now >= asked_at + WRITE_LEAD;
            // A copy of the hand-over goes first, as soon as the line is free.
            let repeat = self
                .shared
                .with_turns(|turns| turns.handover_repeat(now))
                .flatten();
            if let Some(flags) = repeat.filter(|_| line_free) {
                self.write(now, flags, &[]).await?;
                wanted_since = None;
                continue;
            }
            if free {
                if pending.is_none() {
                    match self.queued.try_recv() {
                        Ok(frame) => pending = Some(frame),
                        Err(TryRecvError::Empty) => {}
                        Err(TryRecvError::Disconnected) => return Ok(()),
                    }
                }
                if let Some(frame) = pending.take() {
                    let last = self
                        .shared
                        .with_turns(|turns| turns.should_end_turn(now, false))
                        .unwrap_or(false);
                    let flags = if last { END_OF_TURN } else { 0 };
                    self.write(now, flags, &frame).await?;
                    wanted_since = None;
                    continue;
                }
                // Nothing to send. Pass the turn only once the line is idle
                // and the driver has had the lead time to come up with a
                // frame: after a frame, the line's last WRITE_LEAD; at the
                // start of a turn, when the line has long been idle, the
                // first WRITE_LEAD of the turn.
                let handover = self
                    .shared
                    .with_turns(|turns| {
                        (line_idle && lead_over && turns.should_end_turn(now, true))
                            .then(|| turns.handover_flags())
                    })
                    .flatten();
                if let Some(flags) = handover {
                    self.write(now, flags, &[]).await?;
                    wanted_since = None;
                    continue;
                }
            }
            let half_duplex = self.shared.turns.is_some();
            let busy_until = self.pacer.busy_until();
            let line_wake = if !line_free {
                Some(Instant(
                    busy_until.0.saturating_sub(WRITE_LEAD.as_micros() as u64),
                ))
            } else {
                // Half-duplex: look again for the hand-over when the line is idle.
                (!line_idle && half_duplex).then_some(busy_until)
            };
            // Half-duplex: look again for the hand-over when the lead is over.
            let lead_wake = (wants && half_duplex && !lead_over).then(|| asked_at + WRITE_LEAD);
            let wake = [line_wake, turn_wake, lead_wake]
                .into_iter()
                .flatten()
                .min()
                .and_then(|at| self.clock.to_tokio(at));
            let take_frame = free && pending.is_none();
            tokio::select! {
                frame = self.queued.recv(), if take_frame => match frame {
                    Some(frame) => pending = Some(frame),
                    None => return Ok(()),
                },
                () = self.shared.turn_changed.notified(), if half_duplex => {}
                () = tokio::time::sleep_until(wake.unwrap_or_else(tokio::time::Instant::now)),
                    if wake.is_some() => {}
            }
        }
    }

    /// Frames `payload` with `flags` and puts it on the line at `now`.
    async fn write(
        &mut self,
        now: Instant,
        flags: u8,
        payload: &[u8],
    ) -> Result<(), Arc<io::Error>> {
        self.shared.wants_frame.send_replace(false);
        let Ok(wire) = self.encoder.encode(flags, payload) else {
            // `send` checked the length; nothing else makes encoding fail.
            tracing::error!(
                len = payload.len(),
                "serial frame over the maximum reached the writer"
            );
            return Ok(());
        };
        self.port.write_all(&wire).await.map_err(Arc::new)?;
        let slot = self.pacer.send(now, wire.len());
        self.shared.with_turns(|turns| {
            turns.on_sent(now, slot.end.saturating_since(slot.start), flags);
        });
        let mut stats = self.shared.stats();
        stats.bytes_sent += wire.len() as u64;
        if payload.is_empty() && super::repeat_index(flags) > 0 {
            stats.handover_copies_sent += 1;
        } else if payload.is_empty() {
            stats.handovers_sent += 1;
        } else {
            stats.frames_sent += 1;
            stats.payload_bytes_sent += payload.len() as u64;
        }
        Ok(())
    }
}

/// The reading half of the link: decodes what arrives and queues intact
/// frames for `recv` until end of file, a read error, or the link is dropped.
async fn read_loop<R: AsyncRead + Unpin>(
    mut port: R,
    mut decoder: Decoder,
    shared: Arc<Shared>,
    clock: Clock,
    inbox: mpsc::Sender<Result<Vec<u8>, SerialError>>,
) {
    let mut buf = vec![0u8; 4096];
    let mut frames = Vec::new();
    loop {
        let n = match port.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let error = SerialError::Io {
                    device: shared.device.clone(),
                    op: "read",
                    source: Arc::new(e),
                };
                let _ = inbox.send(Err(error)).await;
                return;
            }
        };
        let now = clock.now();
        let mut input = &buf[..n];
        let mut handovers = 0;
        while let Some(outcome) = decoder.decode(&mut input) {
            match outcome {
                Ok(frame) => {
                    if shared
                        .with_turns(|turns| turns.on_received(now, frame.flags))
                        .is_some()
                    {
                        shared.turn_changed.notify_one();
                    }
                    if frame.payload.is_empty() {
                        handovers += 1;
                    } else {
                        frames.push(frame.payload);
                    }
                }
                Err(reason) => {
                    tracing::debug!(device = %shared.device.display(), %reason, "serial frame dropped");
                }
            }
        }
        {
            let mut stats = shared.stats();
            stats.bytes_received += n as u64;
            stats.handovers_received += handovers;
            stats.decoder = *decoder.stats();
        }
        for frame in frames.drain(..) {
            if inbox.send(Ok(frame)).await.is_err() {
                return;
            }
        }
    }
}
