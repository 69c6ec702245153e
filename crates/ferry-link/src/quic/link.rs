//! [`QuicLink`]: one authenticated QUIC connection carrying engine frames.
//!
//! Each stream has its own task: one writer per outgoing stream (control and
//! bulk), one reader per incoming stream, and one that accepts the peer's
//! bulk streams. Writers take frames from a small queue and answer each
//! sender once its frame is in QUIC's send buffer, so a `send_*` future that
//! is dropped half-way never leaves half a frame on a stream. Readers push
//! frames into one inbox, in order per stream, bounded in bytes: while it is
//! full they stop reading and QUIC flow control holds the peer back.
//!
//! A peer that breaks the framing gets the connection closed with error code
//! [`CODE_PROTOCOL`] and a reason saying what it did; [`QuicLink::recv`]
//! returns the frames that arrived before, then the error.

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use ferry_core::NodeId;
use quinn::{Connection, ConnectionError, RecvStream, SendStream, VarInt, WriteError};
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use super::LinkError;
use super::framing::{self, BULK_OPEN, FrameError, HeaderError};

/// Application close code: closed on purpose, no error.
pub(crate) const CODE_CLOSED: u32 = 0;
/// Application close code: the peer broke the stream protocol.
pub(crate) const CODE_PROTOCOL: u32 = 1;

/// Frames a `send_*` call may queue ahead of its stream's writer.
const SEND_QUEUE: usize = 4;

/// One authenticated QUIC connection to a peer node, carrying ferry's engine
/// frames on a control stream and a bulk stream (see [the module
/// docs](super)).
///
/// All methods take `&self`: one task may send while another receives.
/// Dropping the link closes the connection at once (code 0, "link dropped");
/// frames still queued or in flight may be lost, which the engine repairs.
pub struct QuicLink {
    ctx: Arc<Ctx>,
    control: mpsc::Sender<Outgoing>,
    bulk: mpsc::Sender<Outgoing>,
    inbox: Mutex<mpsc::UnboundedReceiver<Inbound>>,
}

/// How the connection's network path is doing, since it was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PathStats {
    /// QUIC's current round-trip estimate.
    pub rtt: Duration,
    /// Congestion window, in bytes.
    pub cwnd: u64,
    /// Packets sent, and of them those declared lost (and resent).
    pub sent_packets: u64,
    pub lost_packets: u64,
    /// Times the congestion controller cut its window.
    pub congestion_events: u64,
}

/// What the link's tasks share.
struct Ctx {
    conn: Connection,
    peer: NodeId,
    max_frame: u32,
    /// Bytes of received frames not yet taken by `recv`.
    inbox_budget: Arc<Semaphore>,
    inbox_bytes: u32,
    /// The first protocol violation by the peer, which closed the link.
    fatal: OnceLock<String>,
}

/// A frame for a writer task, in one or more parts sent back to back, and
/// where to report how writing it went.
struct Outgoing {
    parts: Vec<Vec<u8>>,
    done: oneshot::Sender<Result<(), LinkError>>,
}

/// A received frame, holding its share of the inbox budget until taken.
struct Inbound {
    frame: Vec<u8>,
    _budget: OwnedSemaphorePermit,
}

impl QuicLink {
    /// Starts the link's tasks on an established connection whose control
    /// stream has been set up.
    pub(crate) fn start(
        conn: Connection,
        peer: NodeId,
        control_send: SendStream,
        control_recv: RecvStream,
        max_frame: u32,
    ) -> QuicLink {
        // Room for one frame of the largest size, or 1 MiB of small ones.
        let inbox_bytes = max_frame.max(1 << 20);
        let ctx = Arc::new(Ctx {
            conn,
            peer,
            max_frame,
            inbox_budget: Arc::new(Semaphore::new(inbox_bytes as usize)),
            inbox_bytes,
            fatal: OnceLock::new(),
        });
        // Control frames (offers, want-lists, custody signals) are small and
        // steer the bulk data: QUIC sends them first when both are waiting.
        let _ = control_send.set_priority(1);
        let (inbox_tx, inbox_rx) = mpsc::unbounded_channel();
        let (control_tx, control_rx) = mpsc::channel(SEND_QUEUE);
        let (bulk_tx, bulk_rx) = mpsc::channel(SEND_QUEUE);

        tokio::spawn(read_stream(
            ctx.clone(),
            control_recv,
            "control",
            inbox_tx.clone(),
        ));
        tokio::spawn(accept_bulk_streams(ctx.clone(), inbox_tx));
        tokio::spawn(write_control(ctx.clone(), control_send, control_rx));
        tokio::spawn(write_bulk(ctx.clone(), bulk_rx));

        tracing::debug!(peer = %peer, remote = %ctx.conn.remote_address(), "QUIC link up");
        QuicLink {
            ctx,
            control: control_tx,
            bulk: bulk_tx,
            inbox: Mutex::new(inbox_rx),
        }
    }

    /// The peer's node id, as proven in the handshake.
    pub fn peer(&self) -> NodeId {
        self.ctx.peer
    }

    /// The peer's current UDP address.
    pub fn remote_addr(&self) -> SocketAddr {
        self.ctx.conn.remote_address()
    }

    /// The largest frame this link sends or accepts.
    pub fn max_frame_len(&self) -> u32 {
        self.ctx.max_frame
    }

    /// QUIC's current estimate of the round-trip time.
    pub fn rtt(&self) -> Duration {
        self.ctx.conn.rtt()
    }

    /// Round trip, congestion window and losses of the connection's path.
    pub fn path_stats(&self) -> PathStats {
        let path = self.ctx.conn.stats().path;
        PathStats {
            rtt: path.rtt,
            cwnd: path.cwnd,
            sent_packets: path.sent_packets,
            lost_packets: path.lost_packets,
            congestion_events: path.congestion_events,
        }
    }

    /// Sends a frame on the control stream. Returns once the frame is in
    /// QUIC's send buffer (which waits while flow control says the peer is
    /// behind), not once it has arrived. Frames keep their order.
    pub async fn send_control(&self, frame: Vec<u8>) -> Result<(), LinkError> {
        self.send(&self.control, vec![frame]).await
    }

    /// Sends a frame on this side's bulk stream (opened on the first call).
    /// Same guarantees as [`send_control`](Self::send_control); bulk frames
    /// keep their order among themselves, not relative to control frames.
    pub async fn send_bulk(&self, frame: Vec<u8>) -> Result<(), LinkError> {
        self.send(&self.bulk, vec![frame]).await
    }

    /// Sends `parts`, back to back, as one frame on the bulk stream, without
    /// copying them: the peer's [`recv`](Self::recv) returns their
    /// concatenation. For senders whose frames are self-delimiting and that
    /// batch many small ones.
    pub async fn send_bulk_parts(&self, parts: Vec<Vec<u8>>) -> Result<(), LinkError> {
        self.send(&self.bulk, parts).await
    }

    async fn send(
        &self,
        queue: &mpsc::Sender<Outgoing>,
        parts: Vec<Vec<u8>>,
    ) -> Result<(), LinkError> {
        let len: usize = parts.iter().map(Vec::len).sum();
        if len > self.ctx.max_frame as usize {
            return Err(LinkError::FrameTooLarge {
                len,
                max: self.ctx.max_frame,
            });
        }
        let (done, result) = oneshot::channel();
        queue
            .send(Outgoing { parts, done })
            .await
            .map_err(|_| self.ctx.link_error())?;
        result.await.map_err(|_| self.ctx.link_error())?
    }

    /// The next frame from either stream, in arrival order (and in order
    /// within each stream). `Ok(None)` once the link was closed cleanly by
    /// either side; an error if it broke (timed out, closed by the peer with
    /// an error, or the peer broke the framing, in which case frames that
    /// arrived before the violation come first).
    ///
    /// Cancel-safe: a dropped `recv` future loses no frame.
    pub async fn recv(&self) -> Result<Option<Vec<u8>>, LinkError> {
        let mut inbox = self.inbox.lock().await;
        match inbox.recv().await {
            Some(inbound) => Ok(Some(inbound.frame)),
            None => match self.ctx.link_error() {
                LinkError::Closed { .. } => Ok(None),
                error => Err(error),
            },
        }
    }

    /// Closes the connection at once with error code 0 and `reason` (which
    /// the peer sees). Frames not yet delivered may be lost. The peer's
    /// `recv` then returns `Ok(None)`.
    pub fn close(&self, reason: &str) {
        self.ctx
            .conn
            .close(VarInt::from_u32(CODE_CLOSED), reason.as_bytes());
    }
}

impl Drop for QuicLink {
    fn drop(&mut self) {
        // The link's tasks hold the connection open; end it with the link.
        self.ctx
            .conn
            .close(VarInt::from_u32(CODE_CLOSED), b"link dropped");
    }
}

impl fmt::Debug for QuicLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuicLink")
            .field("peer", &self.ctx.peer)
            .field("remote", &self.ctx.conn.remote_address())
            .finish_non_exhaustive()
    }
}

impl Ctx {
    /// Why the link can no longer be used (or `Closed` if it ended cleanly).
    fn link_error(&self) -> LinkError {
        if let Some(reason) = self.fatal.get() {
            return LinkError::Protocol {
                peer: self.peer,
                reason: reason.clone(),
            };
        }
        match self.conn.close_reason() {
            None | Some(ConnectionError::LocallyClosed) => LinkError::Closed { peer: self.peer },
            Some(ConnectionError::ApplicationClosed(close))
                if close.error_code == VarInt::from_u32(CODE_CLOSED) =>
            {
                LinkError::Closed { peer: self.peer }
            }
            Some(source) => LinkError::ConnectionLost {
                peer: self.peer,
                source,
            },
        }
    }

    /// Closes the connection because the peer broke the stream protocol.
    fn violation(&self, reason: String) {
        tracing::warn!(
            peer = %self.peer,
            remote = %self.conn.remote_address(),
            "closing QUIC link: protocol violation: {reason}"
        );
        // Recorded before closing, so no task sees the close without the reason.
        let _ = self.fatal.set(reason.clone());
        self.conn
            .close(VarInt::from_u32(CODE_PROTOCOL), reason.as_bytes());
    }

    /// The error for a failed write on the `kind` stream.
    fn write_error(&self, kind: &str, error: WriteError) -> LinkError {
        match error {
            WriteError::Stopped(code) if self.conn.close_reason().is_none() => {
                self.violation(format!("peer stopped the {kind} stream (code {code})"));
                self.link_error()
            }
            _ => self.link_error(),
        }
    }
}

/// Reads frames from one incoming stream into the inbox until the stream
/// ends, the connection closes, the link is dropped or the peer breaks the
/// framing.
async fn read_stream(
    ctx: Arc<Ctx>,
    mut stream: RecvStream,
    kind: &'static str,
    inbox: mpsc::UnboundedSender<Inbound>,
) {
    loop {
        match framing::read_frame(&mut stream, ctx.max_frame).await {
            Ok(Some(frame)) => {
                let cost = u32::try_from(frame.len())
                    .unwrap_or(u32::MAX)
                    .clamp(1, ctx.inbox_bytes);
                let Ok(budget) = ctx.inbox_budget.clone().acquire_many_owned(cost).await else {
                    return;
                };
                let inbound = Inbound {
                    frame,
                    _budget: budget,
                };
                if inbox.send(inbound).is_err() {
                    return; // the link was dropped
                }
            }
            Ok(None) => return,
            // The connection is gone: `recv` reports why.
            Err(FrameError::Io(_)) if ctx.conn.close_reason().is_some() => return,
            Err(e) => {
                ctx.violation(format!("{kind} stream: {e}"));
                return;
            }
        }
    }
}

/// Accepts the peer's bulk streams, each read by its own task.
async fn accept_bulk_streams(ctx: Arc<Ctx>, inbox: mpsc::UnboundedSender<Inbound>) {
    while let Ok(mut stream) = ctx.conn.accept_uni().await {
        let ctx = ctx.clone();
        let inbox = inbox.clone();
        tokio::spawn(async move {
            match framing::read_header(&mut stream, BULK_OPEN).await {
                Ok(()) => read_stream(ctx, stream, "bulk", inbox).await,
                Err(HeaderError::Io(_)) if ctx.conn.close_reason().is_some() => {}
                Err(e) => ctx.violation(format!("unidirectional stream: {e}")),
            }
        });
    }
}

/// Writes queued control frames; finishes the stream when the link is dropped.
async fn write_control(ctx: Arc<Ctx>, mut stream: SendStream, mut queue: mpsc::Receiver<Outgoing>) {
    while let Some(Outgoing { parts, done }) = queue.recv().await {
        let result = write_frame(&ctx, &mut stream, "control", parts).await;
        let _ = done.send(result);
    }
    let _ = stream.finish();
}

/// Writes queued bulk frames, opening the bulk stream on the first one.
async fn write_bulk(ctx: Arc<Ctx>, mut queue: mpsc::Receiver<Outgoing>) {
    let mut stream: Option<SendStream> = None;
    while let Some(Outgoing { parts, done }) = queue.recv().await {
        if stream.is_none() {
            match open_bulk(&ctx).await {
                Ok(opened) => stream = Some(opened),
                Err(e) => {
                    let _ = done.send(Err(e));
                    continue;
                }
            }
        }
        let result = match stream.as_mut() {
            Some(stream) => write_frame(&ctx, stream, "bulk", parts).await,
            None => Err(ctx.link_error()),
        };
        let _ = done.send(result);
    }
    if let Some(mut stream) = stream {
        let _ = stream.finish();
    }
}

async fn open_bulk(ctx: &Ctx) -> Result<SendStream, LinkError> {
    let mut stream = ctx.conn.open_uni().await.map_err(|_| ctx.link_error())?;
    stream
        .write_all(&BULK_OPEN)
        .await
        .map_err(|e| ctx.write_error("bulk", e))?;
    Ok(stream)
}

/// Writes one frame (prefix, then the parts of its body) without copying
/// the body.
async fn write_frame(
    ctx: &Ctx,
    stream: &mut SendStream,
    kind: &str,
    parts: Vec<Vec<u8>>,
) -> Result<(), LinkError> {
    let len: usize = parts.iter().map(Vec::len).sum();
    let len = u32::try_from(len).map_err(|_| LinkError::FrameTooLarge {
        len,
        max: ctx.max_frame,
    })?;
    let mut chunks = Vec::with_capacity(parts.len() + 1);
    chunks.push(Bytes::copy_from_slice(&framing::prefix(len)));
    chunks.extend(parts.into_iter().map(Bytes::from));
    stream
        .write_all_chunks(&mut chunks)
        .await
        .map_err(|e| ctx.write_error(kind, e))
}
