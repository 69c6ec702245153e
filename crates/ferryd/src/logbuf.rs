//! The daemon's recent log lines, for `ferry logs`.
//!
//! [`LogBuffer`] keeps the last [`CAPACITY`] lines and hands every new line
//! to followers. `ferryd run` adds [`layer`] to its subscriber next to the
//! stderr layer: the same formatter writes each event a second time, without
//! colours, into the process-wide buffer ([`LogBuffer::global`]), so a line
//! from `ferry logs` reads exactly as the daemon's stderr does. A process
//! that does not add the layer (a test or bench embedding [`crate::daemon::Node`])
//! simply has an empty buffer.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};

use tokio::sync::broadcast;
use tracing_subscriber::fmt::MakeWriter;

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

/// A `tracing_subscriber` layer formatting events as the stderr layer does
/// (no colours) into [`LogBuffer::global`].
pub fn layer<S>() -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(LogBuffer::global().clone())
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
        let text = String::from_utf8_lossy(&self.bytes);
        for line in text.lines() {
            self.buffer.push(line);
        }
    }
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
    fn formats_events_as_the_fmt_layer_does() {
        let buffer = LogBuffer::new(10);
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(buffer.clone()),
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(peer = "leaf", "link up");
            tracing::warn!("two\nlines");
        });
        let lines = buffer.tail(10);
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines[0].contains(" INFO "), "{}", lines[0]);
        assert!(lines[0].ends_with("link up peer=\"leaf\""), "{}", lines[0]);
        assert!(lines[1].contains(" WARN ") && lines[1].ends_with("two"));
        assert_eq!(lines[2], "lines");
    }
}
