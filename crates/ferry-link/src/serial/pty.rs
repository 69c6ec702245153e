//! Test and benchmark support: pseudo-terminals and an impaired serial line
//! between them.
//!
//! A [`PtyPair`] is a pseudo-terminal in raw mode: its *near* end is the
//! terminal device (`/dev/pts/N`, what a program opens as its serial port)
//! and its *far* end is the master, where the other side of the "cable"
//! is. Both ends are [`PtyStream`]s: async byte streams.
//!
//! A [`LineRelay`] joins the far ends of two pairs, so that whatever one
//! near end writes arrives at the other near end as if it had crossed a
//! serial line with a modem on it: paced to the baud rate, delayed, with
//! whole frames (delimited by `0x00`) lost and bits flipped at random, per
//! direction, from a seeded generator ([`Impairment`]).
//!
//! ```text
//! SerialLink A ── near A │ far A ══ LineRelay ══ far B │ near B ── SerialLink B
//! ```
//!
//! Not part of the supported API: it exists for ferry-link's tests and the
//! serial benchmark.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::codec::DELIMITER;

/// One pseudo-terminal in raw mode: no echo, no line editing, no character
/// translation; bytes pass unchanged both ways.
#[derive(Debug)]
pub struct PtyPair {
    near: PtyStream,
    far: PtyStream,
    path: PathBuf,
}

impl PtyPair {
    /// Opens a pseudo-terminal. Must be called within a tokio runtime (the
    /// ends register with its reactor).
    ///
    /// Both descriptors are close-on-exec: a child process (a daemon under
    /// test that opens [`path`](Self::path)) does not inherit them, so
    /// closing the far end here is a hang-up it sees.
    pub fn open() -> io::Result<PtyPair> {
        let (master, slave) = open_pty()?;
        let mut termios = tcgetattr(&slave)?;
        cfmakeraw(&mut termios);
        tcsetattr(&slave, SetArg::TCSANOW, &termios)?;
        let mut termios = tcgetattr(&master)?;
        cfmakeraw(&mut termios);
        tcsetattr(&master, SetArg::TCSANOW, &termios)?;
        let path = nix::unistd::ttyname(&slave)?;
        Ok(PtyPair {
            near: PtyStream::new(slave)?,
            far: PtyStream::new(master)?,
            path,
        })
    }

    /// The near end's device path (`/dev/pts/N`): a serial port to open.
    /// Keep the pair (or its near end) alive while it is open elsewhere:
    /// when no descriptor of the near end is left, the far end reads EOF.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The two ends: (near, far).
    pub fn into_streams(self) -> (PtyStream, PtyStream) {
        (self.near, self.far)
    }
}

/// A new pseudo-terminal, (master, slave), both close-on-exec from the
/// start (no other thread's child can inherit them).
#[cfg(target_os = "linux")]
fn open_pty() -> io::Result<(OwnedFd, OwnedFd)> {
    use nix::sys::stat::Mode;
    let flags = OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
    let master = nix::pty::posix_openpt(flags)?;
    nix::pty::grantpt(&master)?;
    nix::pty::unlockpt(&master)?;
    let name = nix::pty::ptsname_r(&master)?;
    let slave = nix::fcntl::open(Path::new(&name), flags, Mode::empty())?;
    Ok((master.into(), slave))
}

/// A new pseudo-terminal, (master, slave), made close-on-exec just after
/// opening.
#[cfg(not(target_os = "linux"))]
fn open_pty() -> io::Result<(OwnedFd, OwnedFd)> {
    use nix::fcntl::FdFlag;
    let pty = nix::pty::openpty(None, None)?;
    for fd in [&pty.master, &pty.slave] {
        fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    }
    Ok((pty.master, pty.slave))
}

/// One end of a [`PtyPair`] as an async byte stream.
///
/// Reading returns EOF once the other end is closed (Linux reports that as
/// `EIO`, which is mapped to EOF here).
#[derive(Debug)]
pub struct PtyStream {
    fd: AsyncFd<OwnedFd>,
}

impl PtyStream {
    fn new(fd: OwnedFd) -> io::Result<Self> {
        let flags = OFlag::from_bits_retain(fcntl(&fd, FcntlArg::F_GETFL)?);
        fcntl(&fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        // SAFETY: an `OwnedFd` owns an open descriptor and returns that same
        // descriptor for as long as it lives, which is as long as the `AsyncFd`.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(|e| e.into_parts().1)?;
        Ok(PtyStream { fd })
    }
}

impl AsyncRead for PtyStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.fd.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match guard
                .try_io(|fd| nix::unistd::read(fd.get_ref().as_fd(), unfilled).map_err(io_error))
            {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                // The other end is closed: end of stream.
                Ok(Err(e)) if e.raw_os_error() == Some(Errno::EIO as i32) => {
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for PtyStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.fd.poll_write_ready(cx))?;
            match guard.try_io(|fd| nix::unistd::write(fd.get_ref().as_fd(), buf).map_err(io_error))
            {
                Ok(result) => return Poll::Ready(result),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn io_error(errno: Errno) -> io::Error {
    io::Error::from_raw_os_error(errno as i32)
}

/// What the line does to the bytes going one way.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Impairment {
    /// Line rate in bits per second; each byte takes 10 bits (8N1), so bytes
    /// leave no faster than `baud_bps / 10` per second.
    pub baud_bps: u32,
    /// Probability that a whole frame (every byte up to and including the
    /// next `0x00`) is lost. It still takes its time on the line.
    pub frame_loss: f64,
    /// Probability that any one bit of a frame that is not lost is flipped.
    pub bit_error_rate: f64,
    /// Fixed delay added to every byte after it has left the line.
    pub delay: Duration,
}

impl Impairment {
    /// A clean line: pacing only.
    pub fn clean(baud_bps: u32) -> Self {
        Impairment {
            baud_bps,
            frame_loss: 0.0,
            bit_error_rate: 0.0,
            delay: Duration::ZERO,
        }
    }

    /// Time one byte takes on the line (10 bits), rounded up to the nanosecond.
    pub fn byte_time(&self) -> Duration {
        Duration::from_nanos(10_000_000_000u64.div_ceil(u64::from(self.baud_bps.max(1))))
    }
}

/// One direction of a [`LineRelay`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From the first stream given to [`LineRelay::start`] to the second.
    AToB,
    /// From the second to the first.
    BToA,
}

/// What one direction of a [`LineRelay`] has done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Bytes put on the line (lost frames included).
    pub bytes_in: u64,
    /// Bytes delivered at the far end.
    pub bytes_out: u64,
    /// Frames that started on the line (each `0x00` ends one).
    pub frames: u64,
    /// Frames lost whole.
    pub frames_dropped: u64,
    /// Frames delivered with at least one bit flipped.
    pub frames_corrupted: u64,
    /// Bits flipped in all.
    pub bits_flipped: u64,
}

/// Most bytes a direction holds on its "line" before it stops reading, like
/// a serial driver's transmit buffer; the writer then waits.
const MAX_BACKLOG: usize = 4096;

/// Joins two [`PtyStream`]s (normally the far ends of two [`PtyPair`]s)
/// through an impaired serial line, one task per direction. Dropping the
/// relay stops it.
pub struct LineRelay {
    directions: [Arc<Shared>; 2],
    tasks: [JoinHandle<()>; 2],
}

struct Shared {
    impairment: Mutex<Impairment>,
    stats: Mutex<RelayStats>,
}

impl LineRelay {
    /// Starts relaying between `a` and `b`. Each direction draws from its
    /// own ChaCha stream of `seed`, in byte order, so the same bytes meet
    /// the same losses and errors whatever the timing. Must be called within
    /// a tokio runtime.
    pub fn start(
        a: PtyStream,
        b: PtyStream,
        a_to_b: Impairment,
        b_to_a: Impairment,
        seed: u64,
    ) -> LineRelay {
        let shared = |impairment| {
            Arc::new(Shared {
                impairment: Mutex::new(impairment),
                stats: Mutex::new(RelayStats::default()),
            })
        };
        let directions = [shared(a_to_b), shared(b_to_a)];
        let (a_read, a_write) = tokio::io::split(a);
        let (b_read, b_write) = tokio::io::split(b);
        let rng = |stream| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(stream);
            rng
        };
        let tasks = [
            tokio::spawn(relay(a_read, b_write, directions[0].clone(), rng(0))),
            tokio::spawn(relay(b_read, a_write, directions[1].clone(), rng(1))),
        ];
        LineRelay { directions, tasks }
    }

    fn shared(&self, direction: Direction) -> &Shared {
        match direction {
            Direction::AToB => &self.directions[0],
            Direction::BToA => &self.directions[1],
        }
    }

    /// What `direction` has done so far.
    pub fn stats(&self, direction: Direction) -> RelayStats {
        *self
            .shared(direction)
            .stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes what `direction` does, from the next frame that starts on
    /// its line (the pacing and delay of bytes already read stay as they were).
    pub fn set_impairment(&self, direction: Direction, impairment: Impairment) {
        *self
            .shared(direction)
            .impairment
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = impairment;
    }
}

impl Drop for LineRelay {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The state of one direction's line.
struct Line {
    rng: ChaCha8Rng,
    impairment: Impairment,
    /// Inside a frame (since its first byte, until its delimiter).
    in_frame: bool,
    /// The current frame is lost.
    dropping: bool,
    /// The current frame has had a bit flipped.
    corrupted: bool,
    /// Error-free bits left before the next flipped one.
    clean_bits: u64,
    /// When the line finishes sending the last byte booked on it.
    free_at: Instant,
    /// Bytes on their way, each with the instant it reaches the far end.
    backlog: VecDeque<(Instant, u8)>,
}

impl Line {
    /// Books `bytes` read at `now` on the line.
    fn carry(&mut self, now: Instant, bytes: &[u8], shared: &Shared) {
        let mut stats = shared.stats.lock().unwrap_or_else(PoisonError::into_inner);
        stats.bytes_in += bytes.len() as u64;
        for &byte in bytes {
            if !self.in_frame {
                self.start_frame(shared);
                stats.frames += 1;
                stats.frames_dropped += u64::from(self.dropping);
            }
            let leaves = self.free_at.max(now) + self.impairment.byte_time();
            self.free_at = leaves;
            let end_of_frame = byte == DELIMITER;
            if !self.dropping {
                let flipped = self.flip(byte);
                stats.bits_flipped += u64::from((flipped ^ byte).count_ones());
                if flipped != byte && !self.corrupted {
                    self.corrupted = true;
                    stats.frames_corrupted += 1;
                }
                self.backlog
                    .push_back((leaves + self.impairment.delay, flipped));
            }
            if end_of_frame {
                self.in_frame = false;
            }
        }
    }

    fn start_frame(&mut self, shared: &Shared) {
        let impairment = *shared
            .impairment
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let new_rate = impairment.bit_error_rate != self.impairment.bit_error_rate;
        self.impairment = impairment;
        if new_rate {
            self.clean_bits = self.draw_clean_bits();
        }
        self.in_frame = true;
        self.corrupted = false;
        self.dropping =
            impairment.frame_loss > 0.0 && self.rng.random_bool(impairment.frame_loss.min(1.0));
    }

    /// Flips the bits of `byte` that the error process hits.
    fn flip(&mut self, mut byte: u8) -> u8 {
        let mut bit = 0u64;
        while bit.saturating_add(self.clean_bits) < 8 {
            bit += self.clean_bits;
            byte ^= 1 << bit;
            bit += 1;
            self.clean_bits = self.draw_clean_bits();
        }
        self.clean_bits -= 8 - bit;
        byte
    }

    /// Bits until the next error: geometric with the bit error rate.
    fn draw_clean_bits(&mut self) -> u64 {
        let p = self.impairment.bit_error_rate;
        if p <= 0.0 {
            return u64::MAX;
        }
        if p >= 1.0 {
            return 0;
        }
        let u: f64 = 1.0 - self.rng.random::<f64>(); // (0, 1]
        let gap = u.ln() / (1.0 - p).ln();
        if gap >= u64::MAX as f64 {
            u64::MAX
        } else {
            gap as u64
        }
    }
}

/// One direction: read what the sender writes, put it on the line, and
/// write each byte to the receiver when it arrives.
async fn relay<R, W>(mut from: R, mut to: W, shared: Arc<Shared>, rng: ChaCha8Rng)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let impairment = *shared
        .impairment
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let mut line = Line {
        rng,
        impairment,
        in_frame: false,
        dropping: false,
        corrupted: false,
        clean_bits: 0,
        free_at: Instant::now(),
        backlog: VecDeque::new(),
    };
    line.clean_bits = line.draw_clean_bits();
    let mut buf = vec![0u8; 1024];
    let mut out = Vec::new();
    let mut open = true;
    loop {
        let next = line.backlog.front().map(|&(at, _)| at);
        if !open && next.is_none() {
            return;
        }
        let room = MAX_BACKLOG
            .saturating_sub(line.backlog.len())
            .min(buf.len());
        tokio::select! {
            read = from.read(&mut buf[..room]), if open && room > 0 => match read {
                Ok(0) | Err(_) => open = false,
                Ok(n) => line.carry(Instant::now(), &buf[..n], &shared),
            },
            () = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {
                let now = Instant::now();
                out.clear();
                while let Some(&(at, byte)) = line.backlog.front() {
                    if at > now {
                        break;
                    }
                    out.push(byte);
                    line.backlog.pop_front();
                }
                if to.write_all(&out).await.is_err() {
                    return;
                }
                shared
                    .stats
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .bytes_out += out.len() as u64;
            }
        }
    }
}
