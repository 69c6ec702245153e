//! The daemon's recent log lines, for `ferry logs`.
//!
//! [`LogBuffer`] keeps the last [`CAPACITY`] lines and hands every new line
//! to followers. `ferryd run` formats each event once and writes it both to
//! stderr and, through [`tee`], into the process-wide buffer
//! ([`LogBuffer::global`]) with any colour codes taken out, so a line from
//! `ferry logs` reads exactly as the daemon's stderr does. A process that
//! does not tee its log (a test or bench embedding [`crate::daemon::Node`])
//! simply has an empty buffer.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};

use tokio::sync::broadcast;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::writer::MakeWriterExt;

/// Lines kept for `ferry logs`.
pub const CAPACITY: usize = 1000;

/// Lines a follower may fall behind before it is told it missed some.
const FOLLOW_BACKLOG: usize = 1024;

/// The last [`CAPACITY`] log lines and a channel of new ones.
#[derive(Clone)]
pub struct LogBuffer {
    inner: Arc<Inner>,
}

struct Inner {
    capacity: usize,
    lines: Mutex<VecDeque<Arc<str>>>,
    new_lines: broadcast::Sender<Arc<str>>,
}

static GLOBAL: LazyLock<LogBuffer> = LazyLock::new(|| LogBuffer::new(CAPACITY));

impl LogBuffer {
    /// An empty buffer keeping the last `capacity` lines (at least one).
    pub fn new(capacity: usize) -> Self {
        let (new_lines, _) = broadcast::channel(FOLLOW_BACKLOG);
        Self {
            inner: Arc::new(Inner {
                capacity: capacity.max(1),
                lines: Mutex::new(VecDeque::new()),
                new_lines,
            }),
        }
    }

    /// The process's buffer: the one [`layer`] writes to and the admin API
    /// reads.
    pub fn global() -> &'static LogBuffer {
        &GLOBAL
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Arc<str>>> {
        // Every critical section leaves the queue whole.
        self.inner
            .lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends one line (without its newline), dropping the oldest beyond
    /// the capacity, and hands it to followers.
    pub fn push(&self, line: &str) {
        let line: Arc<str> = Arc::from(line);
        let mut lines = self.lock();
        if lines.len() == self.inner.capacity {
            lines.pop_front();
        }
        lines.push_back(line.clone());
        // Sent under the lock, so that `follow` sees each line exactly once.
        // No follower is not an error.
        let _ = self.inner.new_lines.send(line);
    }

    /// The last `n` lines, oldest first.
    pub fn tail(&self, n: usize) -> Vec<String> {
        let lines = self.lock();
        let skip = lines.len().saturating_sub(n);
        lines.iter().skip(skip).map(|l| l.to_string()).collect()
    }

    /// The last `n` lines and a receiver of every line pushed after them:
    /// nothing is missed or repeated between the two.
    pub fn follow(&self, n: usize) -> (Vec<String>, broadcast::Receiver<Arc<str>>) {
        let lines = self.lock();
        let receiver = self.inner.new_lines.subscribe();
        let skip = lines.len().saturating_sub(n);
        let tail = lines.iter().skip(skip).map(|l| l.to_string()).collect();
        (tail, receiver)
    }
}

/// `writer` and, beside it, [`LogBuffer::global`]: for a `fmt` layer whose
/// every line should also reach `ferry logs`.
pub fn tee<W>(writer: W) -> impl for<'a> MakeWriter<'a> + 'static
where
    W: for<'a> MakeWriter<'a> + 'static,
{
    writer.and(LogBuffer::global().clone())
}

impl<'a> MakeWriter<'a> for LogBuffer {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter {
            buffer: self.clone(),
            bytes: Vec::new(),
        }
    }
}

/// Collects one formatted event; its lines go into the buffer when the
/// formatter drops it.
pub struct LineWriter {
    buffer: LogBuffer,
    bytes: Vec<u8>,
}

impl io::Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        let text = strip_ansi(&String::from_utf8_lossy(&self.bytes));
        for line in text.lines() {
            self.buffer.push(line);
        }
    }
}

/// `text` without ANSI escape sequences (the colours a terminal gets):
/// `ESC [`, parameter and intermediate bytes, one final byte in `@`..=`~`.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn keeps_the_last_lines_in_order() {
        let buffer = LogBuffer::new(3);
        for i in 0..5 {
            buffer.push(&format!("line {i}"));
        }
        assert_eq!(buffer.tail(10), ["line 2", "line 3", "line 4"]);
        assert_eq!(buffer.tail(1), ["line 4"]);
        assert!(buffer.tail(0).is_empty());
    }

    #[test]
    fn a_follower_gets_each_later_line_once() {
        let buffer = LogBuffer::new(10);
        buffer.push("before");
        let (tail, mut rx) = buffer.follow(5);
        assert_eq!(tail, ["before"]);
        buffer.push("after");
        assert_eq!(&*rx.try_recv().unwrap(), "after");
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn coloured_lines_are_kept_as_plain_ones() {
        // The same events through a coloured and a plain formatter (no
        // timestamps, which would differ) give the same lines.
        let coloured = LogBuffer::new(10);
        let plain = LogBuffer::new(10);
        let subscriber = tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .without_time()
                    .with_ansi(true)
                    .with_writer(coloured.clone()),
            )
            .with(
                tracing_subscriber::fmt::layer()
                    .without_time()
                    .with_ansi(false)
                    .with_writer(plain.clone()),
            );
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(peer = "leaf", "link up");
            tracing::warn!("two\nlines");
        });
        let lines = plain.tail(10);
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines[0].starts_with(" INFO "), "{}", lines[0]);
        assert!(lines[0].ends_with("link up peer=\"leaf\""), "{}", lines[0]);
        assert_eq!(lines[2], "lines");
        assert_eq!(coloured.tail(10), lines);
    }

    #[test]
    fn escape_sequences_are_stripped() {
        assert_eq!(
            strip_ansi("\x1b[2m2026\x1b[0m \x1b[32m INFO\x1b[0m x"),
            "2026  INFO x"
        );
        assert_eq!(strip_ansi("no escapes"), "no escapes");
        assert_eq!(strip_ansi("cut \x1b[3"), "cut ");
    }
}
