//! Streaming FastCDC v2020 with the BLAKE3 chunk id computed in the same pass,
//! spread over the available cores.
//!
//! # Why parallel chunking gives serial results
//!
//! A FastCDC v2020 cut depends only on the position of the previous cut and
//! on the bytes that follow it (the gear hash is reset at every chunk start
//! and the masks depend on the distance from it). So two scans over the same
//! bytes that ever land on the same cut position agree on every boundary from
//! there on.
//!
//! A block is therefore split into pieces that are scanned (and their chunks
//! hashed) on several threads at once, each piece pretending that its first
//! byte is a cut. Piece 0 starts at a true cut, so its boundaries are true.
//! The merge, in piece order, takes the true boundaries so far and, if the
//! last one is not a boundary the next piece also found, keeps cutting
//! serially from it until it lands on one (usually within one or two chunks);
//! from that boundary on the next piece's chunks are true and are taken as
//! they are. The result is exactly the serial chunking, whatever the thread
//! timing or the number of threads: only the amount of wasted work varies.
//!
//! Within a thread the same trick is applied once more, for a different
//! reason: see `Chunker::scan` and `LANES`.
//!
//! The catch-up is serial, so input with long stretches that contain no
//! content-defined cut point at all (say megabytes of zeros, cut every
//! `max_size` bytes from wherever the stretch was entered) is chunked at
//! serial speed over those stretches; the result is still exact.

use std::io::{self, Read};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use crossbeam_channel::{Receiver, Sender};
use fastcdc::v2020;

use crate::config::{ChunkerConfig, ConfigError};
use crate::id::ChunkId;

/// One chunk of a stream: where it is, how long it is, and its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChunkSpan {
    /// Offset of the chunk's first byte in the stream.
    pub offset: u64,
    /// Length in bytes; never 0, at most the configured `max_size`.
    pub len: u32,
    /// BLAKE3 of the chunk's bytes.
    pub id: ChunkId,
}

impl ChunkSpan {
    /// Offset one past the chunk's last byte.
    pub fn end(&self) -> u64 {
        self.offset + u64::from(self.len)
    }
}

/// What [`Chunker::chunk_reader`] went through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChunkStats {
    /// Bytes read (and chunked).
    pub bytes: u64,
    /// Chunks handed to the sink.
    pub chunks: u64,
}

/// Why [`Chunker::chunk_reader`] stopped early.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError<E> {
    /// Reading the input failed (other than with `ErrorKind::Interrupted`,
    /// which is retried).
    #[error("reading the input failed: {0}")]
    Read(#[source] io::Error),
    /// The sink returned this error; no further chunk was passed to it.
    #[error("the chunk sink failed: {0}")]
    Sink(#[source] E),
}

/// New bytes read per block by [`Chunker::chunk_reader`]. At most three
/// blocks are alive at once (one read, one chunked, one in the sink).
const BLOCK_SIZE: usize = 8 << 20;
/// The first read is this small, so that small inputs cost small buffers.
const FIRST_READ: usize = 64 << 10;
/// Upper bound on the bytes one thread scans between two merge points; the
/// parallel split uses smaller pieces on small blocks so that all threads
/// get work and the last piece does not leave one thread idle for long.
const MAX_PIECE: usize = 4 << 20;
/// Below this, a piece is not worth a thread hand-off.
const MIN_PIECE: usize = 256 << 10;
/// Independent gear-hash chains one thread runs interleaved (see
/// `Chunker::scan`). Two gave about +20..30 % on the cut-point search on a
/// 2-core x86-64 VM; three and four measured slower than two there.
const LANES: usize = 2;
/// A piece is split into lanes only if every lane gets at least this many
/// times `max_size` bytes: each lane seam costs up to a chunk or two of serial
/// catch-up, like a piece seam.
const MIN_LANE_CHUNKS: usize = 4;

/// Content-defined chunker: FastCDC v2020 with normalisation level 1 and the
/// default gear table, so its boundaries are exactly those of
/// `fastcdc::v2020::FastCDC::new(data, min, avg, max)` over the whole input.
#[derive(Debug, Clone)]
pub struct Chunker {
    config: ChunkerConfig,
    min: usize,
    avg: usize,
    max: usize,
    mask_s: u64,
    mask_l: u64,
    threads: usize,
    /// See BLOCK_SIZE, MIN_PIECE and MAX_PIECE; fields so that unit tests can
    /// exercise block carries and piece merges on small inputs.
    block_size: usize,
    min_piece: usize,
    max_piece: usize,
}

impl Default for Chunker {
    fn default() -> Self {
        Self::with_valid_config(ChunkerConfig::DEFAULT)
    }
}

/// The chunks one thread found in one piece of a block.
struct Piece {
    spans: Vec<ChunkSpan>,
    /// Where the scan stopped: the end of its last chunk.
    end: usize,
}

/// One gear-hash chain of `Chunker::scan_lanes`, looking for the end of the
/// chunk that starts at `start`. Byte pairs `next..seg_end` are still to be
/// tested with `mask` (first byte of a pair: `mask_ls`, as the hash is kept
/// shifted by one there; see `fastcdc::v2020::cut`).
#[derive(Debug, Clone, Copy)]
struct Lane {
    start: usize,
    next: usize,
    seg_end: usize,
    /// Where the chunk ends if the hash never matches.
    chunk_end: usize,
    /// Whether `mask` is already the loose mask (the last segment).
    loose: bool,
    hash: u64,
    mask: u64,
    mask_ls: u64,
}

impl Lane {
    /// A lane whose chunk ends at `pos` with nothing left to test.
    fn idle(pos: usize) -> Self {
        Self {
            start: pos,
            next: pos,
            seg_end: pos,
            chunk_end: pos,
            loose: true,
            hash: 0,
            mask: 0,
            mask_ls: 0,
        }
    }

    /// Called when `next == seg_end`: moves on to the loose segment, or
    /// returns the cut if there is none left.
    fn next_segment(&mut self, mask_l: u64) -> Option<usize> {
        if !self.loose {
            self.loose = true;
            self.mask = mask_l;
            self.mask_ls = mask_l << 1;
            self.seg_end = self.start + (self.chunk_end - self.start) / 2 * 2;
            if self.next < self.seg_end {
                return None;
            }
        }
        Some(self.chunk_end)
    }
}

/// Advances all lanes by the same number of byte pairs, one pair of each
/// lane per iteration, until a lane's hash matches its mask (returns the
/// lane and the cut) or a lane reaches the end of its segment (returns
/// `None`). Within a lane the steps are exactly those of
/// `fastcdc::v2020::cut`, so the cuts are too.
///
/// The lanes' chains are independent, so the CPU overlaps their latencies;
/// that is the point of interleaving them (see `Chunker::scan`).
#[inline]
#[allow(
    clippy::needless_range_loop,
    reason = "every lane is indexed by the same pair number, in lockstep"
)]
fn step_lanes(
    data: &[u8],
    lanes: &mut [Lane; LANES],
    gear: &[u64; 256],
    gear_ls: &[u64; 256],
) -> Option<(usize, usize)> {
    let pairs = lanes
        .iter()
        .map(|lane| (lane.seg_end - lane.next) / 2)
        .min()
        .unwrap_or(0);
    // Slices of exactly `pairs` pairs each, so that indexing them by a
    // pair number below `pairs` needs no bounds check.
    let src: [&[[u8; 2]]; LANES] =
        std::array::from_fn(|k| &data[lanes[k].next..][..2 * pairs].as_chunks::<2>().0[..pairs]);
    let mut hash: [u64; LANES] = std::array::from_fn(|k| lanes[k].hash);
    let mask: [u64; LANES] = std::array::from_fn(|k| lanes[k].mask);
    let mask_ls: [u64; LANES] = std::array::from_fn(|k| lanes[k].mask_ls);
    for i in 0..pairs {
        for k in 0..LANES {
            let [a, b] = src[k][i];
            // fastcdc computes `h = (h << 2) + gear_ls[a]`, tests it, then
            // `h += gear[b]`. Adding the two table entries first gives the
            // same value (wrapping addition is associative) while leaving
            // only one shift-add on the chain from one pair to the next.
            let shifted = hash[k] << 2;
            let first = shifted.wrapping_add(gear_ls[a as usize]);
            let second = shifted.wrapping_add(gear_ls[a as usize].wrapping_add(gear[b as usize]));
            let cut = if first & mask_ls[k] == 0 {
                Some(2 * i)
            } else if second & mask[k] == 0 {
                Some(2 * i + 1)
            } else {
                None
            };
            if let Some(at) = cut {
                // Lanes before `k` already took pair `i`, the others did not.
                for (j, lane) in lanes.iter_mut().enumerate() {
                    lane.next += 2 * i + if j < k { 2 } else { 0 };
                    lane.hash = hash[j];
                }
                return Some((k, lanes[k].next - 2 * i + at));
            }
            hash[k] = second;
        }
    }
    for (lane, hash) in lanes.iter_mut().zip(hash) {
        lane.next += 2 * pairs;
        lane.hash = hash;
    }
    None
}

/// A block handed to the chunking thread. `buf[start..end]` is the carried
/// tail of the previous block followed by the newly read bytes; `base` is the
/// stream offset of `buf[start]`.
struct Job {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
    base: u64,
}

/// A chunked block: `spans` carry stream offsets, and `buf[job.start + consumed
/// .. job.end]` is the tail to carry over into the next block.
struct Done {
    job: Job,
    spans: Vec<ChunkSpan>,
    consumed: usize,
}

impl Chunker {
    /// A chunker using every available core (see [`Chunker::with_threads`]).
    pub fn new(config: ChunkerConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self::with_valid_config(config))
    }

    fn with_valid_config(config: ChunkerConfig) -> Self {
        let avg = config.avg_size as usize;
        let (mask_s, mask_l) = v2020::select_masks(avg, v2020::Normalization::Level1);
        Self {
            config,
            min: config.min_size as usize,
            avg,
            max: config.max_size as usize,
            mask_s,
            mask_l,
            threads: thread::available_parallelism().map_or(1, NonZeroUsize::get),
            block_size: BLOCK_SIZE,
            min_piece: MIN_PIECE,
            max_piece: MAX_PIECE,
        }
    }

    /// Shrinks blocks and pieces so that small test inputs span many of each.
    #[cfg(test)]
    fn with_sizes(mut self, block_size: usize, min_piece: usize, max_piece: usize) -> Self {
        assert!(block_size > 0 && min_piece > 0 && min_piece <= max_piece);
        self.block_size = block_size;
        self.min_piece = min_piece;
        self.max_piece = max_piece;
        self
    }

    /// Uses at most `threads` threads per block (at least one). The output
    /// never depends on it; 1 makes chunking fully serial on the caller's
    /// thread (except that [`Chunker::chunk_reader`] still reads and chunks
    /// on different threads).
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// The configuration in use.
    pub fn config(&self) -> ChunkerConfig {
        self.config
    }

    /// Number of threads a block is spread over.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Chunks an in-memory buffer (its end is the end of the object) and
    /// computes every chunk's id, using up to [`Chunker::threads`] threads.
    /// Offsets are relative to `data`.
    pub fn chunk_slice(&self, data: &[u8]) -> Vec<ChunkSpan> {
        let (spans, consumed) = self.chunk_block(data, true);
        debug_assert_eq!(consumed, data.len());
        spans
    }

    /// Chunks everything `reader` yields, passing each chunk with its bytes to
    /// `sink` in stream order, on the caller's thread.
    ///
    /// Memory stays bounded by three blocks of a few MiB whatever the input
    /// size. While `sink` works on one block's chunks, the next block is
    /// already being chunked and hashed on other threads, and the caller's
    /// thread reads the block after it before calling `sink` again. `reader`
    /// is only used on the caller's thread, so it need not be `Send`.
    /// Reads failing with `ErrorKind::Interrupted` are retried.
    ///
    /// Boundaries and ids are exactly those of [`Chunker::chunk_slice`] over
    /// the whole input. On error, the sink has seen a prefix of the chunks.
    pub fn chunk_reader<R: Read, E>(
        &self,
        mut reader: R,
        mut sink: impl FnMut(ChunkSpan, &[u8]) -> Result<(), E>,
    ) -> Result<ChunkStats, ChunkError<E>> {
        // Every buffer keeps `head` bytes in front of the block for the tail
        // carried over from the previous one (always shorter than max_size).
        let head = self.max;
        let mut first = vec![0u8; head + FIRST_READ.min(self.block_size)];
        let (mut filled, mut eof) =
            fill(&mut reader, &mut first[head..]).map_err(ChunkError::Read)?;
        if !eof {
            first.resize(head + self.block_size, 0);
            let (more, at_eof) =
                fill(&mut reader, &mut first[head + filled..]).map_err(ChunkError::Read)?;
            filled += more;
            eof = at_eof;
        }
        let first = Job {
            buf: first,
            start: head,
            end: head + filled,
            eof,
            base: 0,
        };
        if eof {
            // The whole input fits one block: no pipeline needed.
            let (spans, _) = self.chunk_block(&first.buf[first.start..first.end], true);
            let mut stats = ChunkStats::default();
            deliver(&first, &spans, &mut sink, &mut stats)?;
            return Ok(stats);
        }
        thread::scope(|scope| {
            let (job_tx, job_rx) = crossbeam_channel::bounded::<Job>(1);
            let (done_tx, done_rx) = crossbeam_channel::bounded::<Done>(1);
            scope.spawn(move || {
                for job in job_rx {
                    let (mut spans, consumed) =
                        self.chunk_block(&job.buf[job.start..job.end], job.eof);
                    for span in &mut spans {
                        span.offset += job.base;
                    }
                    if done_tx
                        .send(Done {
                            job,
                            spans,
                            consumed,
                        })
                        .is_err()
                    {
                        break;
                    }
                }
            });
            // Returning drops both channel ends, which stops the worker after
            // at most the block it is on; the scope then joins it.
            self.pipeline(&mut reader, &mut sink, first, job_tx, done_rx)
        })
    }

    /// The caller's side of [`Chunker::chunk_reader`]: reads block n+1 while
    /// block n is chunked, hands block n+1 over, then feeds block n to the sink.
    fn pipeline<R: Read, E>(
        &self,
        reader: &mut R,
        sink: &mut impl FnMut(ChunkSpan, &[u8]) -> Result<(), E>,
        first: Job,
        jobs: Sender<Job>,
        done: Receiver<Done>,
    ) -> Result<ChunkStats, ChunkError<E>> {
        const WORKER_GONE: &str = "the chunking thread panicked";
        let head = self.max;
        let mut stats = ChunkStats::default();
        let mut spare: Vec<Vec<u8>> = Vec::new();
        let mut eof = first.eof;
        jobs.send(first).expect(WORKER_GONE);
        loop {
            let next = if eof {
                None
            } else {
                let mut buf = spare
                    .pop()
                    .unwrap_or_else(|| vec![0u8; head + self.block_size]);
                let (filled, at_eof) = fill(reader, &mut buf[head..]).map_err(ChunkError::Read)?;
                eof = at_eof;
                Some((buf, filled, at_eof))
            };
            let Done {
                job,
                spans,
                consumed,
            } = done.recv().expect(WORKER_GONE);
            if let Some((mut buf, filled, at_eof)) = next {
                let tail = &job.buf[job.start + consumed..job.end];
                debug_assert!(
                    tail.len() < head,
                    "a tail of max_size bytes or more would have been cut"
                );
                let start = head - tail.len();
                buf[start..head].copy_from_slice(tail);
                let base = job.base + consumed as u64;
                jobs.send(Job {
                    buf,
                    start,
                    end: head + filled,
                    eof: at_eof,
                    base,
                })
                .expect(WORKER_GONE);
            }
            deliver(&job, &spans, sink, &mut stats)?;
            if job.eof {
                return Ok(stats);
            }
            spare.push(job.buf);
        }
    }

    /// Chunks `data`, which starts at a true cut. If `eof`, `data` ends the
    /// object and is chunked to its end; otherwise chunking stops before the
    /// first chunk whose boundary could depend on bytes past `data` (fewer
    /// than `max_size` bytes left). Returns the spans, with offsets relative
    /// to `data`, and where they end.
    fn chunk_block(&self, data: &[u8], eof: bool) -> (Vec<ChunkSpan>, usize) {
        let len = data.len();
        let pieces = if self.threads < 2 || len < 2 * self.min_piece {
            1
        } else {
            // Aim for two pieces per thread (each seam costs a chunk or two of
            // serial work), within MIN_PIECE..=MAX_PIECE.
            let piece = (len / (2 * self.threads)).clamp(self.min_piece, self.max_piece);
            len.div_ceil(piece).max(2)
        };
        if pieces == 1 {
            let piece = self.scan(data, 0, len, eof);
            return (piece.spans, piece.end);
        }
        let step = len / pieces;
        let bounds = |k: usize| if k == pieces { len } else { k * step };

        // Threads take pieces in order from a shared counter. The caller's
        // thread merges them, in order, as soon as there is no piece left to
        // take, so that the merge overlaps with the other threads' last pieces.
        let next = AtomicUsize::new(0);
        let take = || {
            let k = next.fetch_add(1, Ordering::Relaxed);
            (k < pieces).then(|| (k, self.scan(data, bounds(k), bounds(k + 1), eof)))
        };
        thread::scope(|scope| {
            let (scanned_tx, scanned_rx) = crossbeam_channel::unbounded::<(usize, Piece)>();
            for _ in 1..self.threads.min(pieces) {
                let scanned_tx = scanned_tx.clone();
                scope.spawn(move || {
                    while let Some(scanned) = take() {
                        if scanned_tx.send(scanned).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(scanned_tx);
            let mut slots: Vec<Option<Piece>> = (0..pieces).map(|_| None).collect();
            while let Some((k, piece)) = take() {
                slots[k] = Some(piece);
            }
            let mut get = |k: usize| loop {
                if let Some(piece) = slots[k].take() {
                    return piece;
                }
                // Only fails if a helper panicked; the scope then re-raises that panic.
                let (j, piece) = scanned_rx.recv().expect("a chunking thread panicked");
                slots[j] = Some(piece);
            };

            let Piece {
                mut spans,
                end: mut pos,
            } = self.join(data, eof, get(0), (1..pieces).map(get));
            // Normally a no-op: the last piece stopped where serial chunking stops.
            while let Some(span) = self.next_chunk(data, pos, eof) {
                pos += span.len as usize;
                spans.push(span);
            }
            (spans, pos)
        })
    }

    /// Chunks `data` from `from` (taken to be a cut) until a chunk ends at or
    /// past `until` (sometimes a few chunks further), or chunking must stop
    /// (see `chunk_block`).
    ///
    /// # Why one thread scans several lanes at once
    ///
    /// The gear hash is one long dependency chain (each step needs the
    /// previous hash), so a single scan is bound by the latency of that chain,
    /// not by the CPU's throughput. Big pieces are therefore split into
    /// `LANES` sub-regions ("lanes") whose independent chains advance in the
    /// same loop, one step of each per iteration, so that the CPU overlaps
    /// their latencies (see `step_lanes`). Each lane pretends its first byte
    /// is a cut, and the lanes are then joined exactly like the pieces of a
    /// block (see the module docs and `join`).
    fn scan(&self, data: &[u8], from: usize, until: usize, eof: bool) -> Piece {
        let lane_len = (until - from) / LANES;
        if LANES < 2 || lane_len < MIN_LANE_CHUNKS * self.max {
            let mut piece = Piece {
                spans: Vec::with_capacity((until - from) / self.avg + 2),
                end: from,
            };
            self.scan_serial(data, until, eof, &mut piece);
            return piece;
        }
        let bounds: [usize; LANES] = std::array::from_fn(|k| from + k * lane_len);
        let ends: [usize; LANES] =
            std::array::from_fn(|k| bounds.get(k + 1).copied().unwrap_or(until));
        let mut pieces = self.scan_lanes(data, bounds, ends, eof).into_iter();
        let first = pieces.next().expect("LANES > 0");
        self.join(data, eof, first, pieces)
    }

    /// Serially chunks `data` from `piece.end` (taken to be a cut) until a
    /// chunk ends at or past `until`, or chunking must stop, adding the chunks
    /// to `piece`.
    fn scan_serial(&self, data: &[u8], until: usize, eof: bool, piece: &mut Piece) {
        while piece.end < until {
            let Some(span) = self.next_chunk(data, piece.end, eof) else {
                break;
            };
            piece.end += span.len as usize;
            piece.spans.push(span);
        }
    }

    /// Chunks each `bounds[k]..ends[k]` of `data` as `scan_serial` would (every
    /// `bounds[k]` taken to be a cut), running the lanes' hash chains
    /// interleaved until one lane is done, then finishing the others serially
    /// (they are then within a few chunks of their ends, as all lanes advance
    /// by the same number of bytes per step).
    fn scan_lanes(
        &self,
        data: &[u8],
        bounds: [usize; LANES],
        ends: [usize; LANES],
        eof: bool,
    ) -> [Piece; LANES] {
        let mut pieces: [Piece; LANES] = std::array::from_fn(|k| Piece {
            spans: Vec::with_capacity((ends[k] - bounds[k]) / self.avg + 2),
            end: bounds[k],
        });
        if bounds.iter().zip(&ends).any(|(start, end)| start >= end) {
            // An empty lane has nothing to interleave: `scan_serial` leaves it empty.
            return self.finish_lanes(data, ends, eof, pieces);
        }
        let mut lanes: [Lane; LANES] = std::array::from_fn(|k| Lane::idle(bounds[k]));
        for (lane, piece) in lanes.iter_mut().zip(&pieces) {
            match self.lane_at(data, piece.end, eof) {
                Some(started) => *lane = started,
                // Only near the end of `data`: finish everything serially.
                None => return self.finish_lanes(data, ends, eof, pieces),
            }
        }
        let (gear, gear_ls) = v2020::get_gear_with_seed(0);
        let gear: &[u64; 256] = gear.as_ref().try_into().expect("256 gear entries");
        let gear_ls: &[u64; 256] = gear_ls.as_ref().try_into().expect("256 gear entries");
        loop {
            let (k, cut) = match step_lanes(data, &mut lanes, gear, gear_ls) {
                Some(found) => found,
                None => {
                    // A lane reached the end of its mask segment.
                    let k = lanes
                        .iter()
                        .position(|lane| lane.next == lane.seg_end)
                        .expect("step_lanes stops at a segment end");
                    match lanes[k].next_segment(self.mask_l) {
                        Some(cut) => (k, cut),
                        None => continue,
                    }
                }
            };
            let start = lanes[k].start;
            pieces[k].spans.push(self.span(data, start, cut - start));
            pieces[k].end = cut;
            if cut >= ends[k] {
                return self.finish_lanes(data, ends, eof, pieces);
            }
            match self.lane_at(data, cut, eof) {
                Some(lane) => lanes[k] = lane,
                None => return self.finish_lanes(data, ends, eof, pieces),
            }
        }
    }

    /// Finishes every lane piece serially from its last cut.
    fn finish_lanes(
        &self,
        data: &[u8],
        ends: [usize; LANES],
        eof: bool,
        mut pieces: [Piece; LANES],
    ) -> [Piece; LANES] {
        for (piece, &end) in pieces.iter_mut().zip(&ends) {
            self.scan_serial(data, end, eof, piece);
        }
        pieces
    }

    /// A lane about to look for the end of the chunk that starts at the cut
    /// `pos`; `None` where `next_chunk` would return `None`. Mirrors
    /// `fastcdc::v2020::cut`: no cut before `min_size`, the strict mask
    /// up to `avg_size`, the loose mask after it, and a cut at `max_size` (or
    /// at the end of `data`) if the hash never matched; candidates are tested
    /// in pairs of bytes.
    fn lane_at(&self, data: &[u8], pos: usize, eof: bool) -> Option<Lane> {
        let rest = data.len() - pos;
        if rest == 0 || (!eof && rest < self.max) {
            return None;
        }
        let remaining = rest.min(self.max);
        if remaining <= self.min {
            // The whole rest is one chunk: an empty loose segment.
            return Some(Lane {
                chunk_end: pos + remaining,
                ..Lane::idle(pos)
            });
        }
        let center = self.avg.min(remaining);
        Some(Lane {
            start: pos,
            next: pos + self.min,
            seg_end: pos + center / 2 * 2,
            chunk_end: pos + remaining,
            loose: false,
            hash: 0,
            mask: self.mask_s,
            mask_ls: self.mask_s << 1,
        })
    }

    /// The span of the chunk `data[pos..pos + len]`, hashed.
    fn span(&self, data: &[u8], pos: usize, len: usize) -> ChunkSpan {
        ChunkSpan {
            offset: pos as u64,
            // len <= max_size <= 16 MiB.
            len: len as u32,
            id: ChunkId::of(&data[pos..pos + len]),
        }
    }

    /// Joins pieces scanned from increasing starting points of `data`, the
    /// first of which starts at a true cut, into the true chunking from there
    /// (see the module docs): the result ends where the last piece ends, or a
    /// little past it, or earlier if chunking had to stop.
    fn join(
        &self,
        data: &[u8],
        eof: bool,
        first: Piece,
        rest: impl IntoIterator<Item = Piece>,
    ) -> Piece {
        let Piece {
            mut spans,
            end: mut pos,
        } = first;
        'pieces: for piece in rest {
            // `pos` is a true cut. Cut serially from it until it is a cut the
            // piece also found, or until it is past everything the piece found.
            while pos < piece.end {
                if let Ok(i) = piece
                    .spans
                    .binary_search_by_key(&(pos as u64), |span| span.offset)
                {
                    spans.extend_from_slice(&piece.spans[i..]);
                    pos = piece.end;
                    continue 'pieces;
                }
                match self.next_chunk(data, pos, eof) {
                    Some(span) => {
                        pos += span.len as usize;
                        spans.push(span);
                    }
                    None => break 'pieces,
                }
            }
        }
        Piece { spans, end: pos }
    }

    /// The chunk of `data` starting at the cut `pos`, hashed; `None` if `pos`
    /// is the end of `data`, or if `data` is not the end of the object and
    /// fewer than `max_size` bytes are left (the cut could depend on later bytes).
    #[inline]
    fn next_chunk(&self, data: &[u8], pos: usize, eof: bool) -> Option<ChunkSpan> {
        let rest = data.len() - pos;
        if rest == 0 || (!eof && rest < self.max) {
            return None;
        }
        // A window of max_size bytes gives the same cut as the whole rest:
        // FastCDC never looks further.
        let window = &data[pos..pos + rest.min(self.max)];
        let (_, len) = v2020::cut(
            window,
            self.min,
            self.avg,
            self.max,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
        );
        Some(self.span(data, pos, len))
    }
}

/// Passes a chunked block's spans and bytes to the sink.
fn deliver<E>(
    job: &Job,
    spans: &[ChunkSpan],
    sink: &mut impl FnMut(ChunkSpan, &[u8]) -> Result<(), E>,
    stats: &mut ChunkStats,
) -> Result<(), ChunkError<E>> {
    for &span in spans {
        // The span lies inside the block, whose bytes start at `job.base`.
        let from = job.start + (span.offset - job.base) as usize;
        sink(span, &job.buf[from..from + span.len as usize]).map_err(ChunkError::Sink)?;
        stats.chunks += 1;
        stats.bytes += u64::from(span.len);
    }
    Ok(())
}

/// Reads until `buf` is full or the reader is exhausted, retrying interrupted
/// reads. Returns the bytes read and whether the end of the input was reached.
fn fill(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<(usize, bool)> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => return Ok((filled, true)),
            Ok(n) if n <= buf.len() - filled => filled += n,
            Ok(n) => {
                return Err(io::Error::other(format!(
                    "reader claims {n} bytes read into a {}-byte buffer",
                    buf.len() - filled
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((filled, false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_common::{ShortReads, serial_fastcdc as serial, test_data};
    use proptest::prelude::*;
    use proptest::test_runner::{Config, RngSeed};

    fn checked(spans: &[ChunkSpan], data: &[u8], seed: u64) -> Vec<(u64, u32)> {
        for span in spans {
            let bytes = &data[span.offset as usize..span.end() as usize];
            assert_eq!(
                span.id,
                ChunkId::of(bytes),
                "wrong id at offset {} (seed {seed})",
                span.offset
            );
        }
        spans.iter().map(|span| (span.offset, span.len)).collect()
    }

    fn config() -> impl Strategy<Value = ChunkerConfig> {
        prop_oneof![
            Just(ChunkerConfig::DEFAULT),
            Just(ChunkerConfig::new(64, 256, 1024).unwrap()),
            (32u32..=1024, 0u32..2048, 0u32..4096).prop_map(|(min, extra_avg, extra_max)| {
                let min_size = 2 * min;
                let avg_size = min_size.max(256) + 2 * extra_avg;
                let max_size = avg_size.max(1024) + 2 * extra_max;
                ChunkerConfig::new(min_size, avg_size, max_size).unwrap()
            }),
        ]
    }

    proptest! {
        #![proptest_config(Config {
            cases: 96,
            rng_seed: RngSeed::Fixed(0x6665_7272_7963),
            failure_persistence: None,
            ..Config::default()
        })]

        /// Tiny blocks and pieces, so that every input spans many of both and
        /// every merge and carry path runs.
        #[test]
        fn parallel_and_streaming_equal_serial_fastcdc(
            config in config(),
            kind in 0u8..4,
            seed in any::<u64>(),
            len in 0usize..300_000,
            threads in 1usize..5,
            block_size in 1usize..40_000,
            min_piece in 1usize..20_000,
        ) {
            let data = test_data(kind, seed, len);
            let expected = serial(&data, config);
            let chunker = Chunker::new(config).unwrap().with_threads(threads).with_sizes(block_size, min_piece, 4 * min_piece);

            let sliced = chunker.chunk_slice(&data);
            prop_assert_eq!(&checked(&sliced, &data, seed), &expected);

            let mut streamed = Vec::new();
            let reader = ShortReads::new(&data, seed ^ 1, 1 + (seed % 70_000) as usize);
            let stats = chunker.chunk_reader(reader, |span, bytes| {
                assert_eq!(bytes, &data[span.offset as usize..span.end() as usize]);
                streamed.push(span);
                Ok::<_, ()>(())
            }).unwrap();
            prop_assert_eq!(&streamed, &sliced);
            prop_assert_eq!(stats, ChunkStats { bytes: len as u64, chunks: sliced.len() as u64 });
        }
    }

    /// The serial chunking of `data` from `from` (taken to be a cut) that
    /// `scan_serial` would give up to `until`.
    fn serial_from(
        data: &[u8],
        config: ChunkerConfig,
        from: usize,
        until: usize,
        eof: bool,
    ) -> Vec<(u64, u32)> {
        let max = config.max_size as usize;
        let mut pos = from;
        serial(&data[from..], config)
            .into_iter()
            .map(|(offset, len)| (offset + from as u64, len))
            .take_while(|&(offset, len)| {
                let keep = pos < until && (eof || data.len() - offset as usize >= max);
                pos = (offset + u64::from(len)) as usize;
                keep
            })
            .collect()
    }

    proptest! {
        #![proptest_config(Config {
            cases: 128,
            rng_seed: RngSeed::Fixed(0x006c_616e_6573),
            failure_persistence: None,
            ..Config::default()
        })]

        /// Each lane of `scan_lanes` equals serial chunking from its own first
        /// byte, wherever the lanes start and end, and `scan` joins its lanes
        /// into the serial chunking from its start.
        #[test]
        fn lanes_equal_serial_fastcdc_from_their_starts(
            config in config(),
            kind in 0u8..4,
            seed in any::<u64>(),
            len in 0usize..200_000,
            mut at in proptest::collection::vec(0.0f64..=1.0, LANES + 1),
            eof in any::<bool>(),
        ) {
            let data = test_data(kind, seed, len);
            let chunker = Chunker::new(config).unwrap();
            at.sort_by(f64::total_cmp);
            let at: Vec<usize> = at.iter().map(|f| (f * len as f64) as usize).collect();
            let bounds: [usize; LANES] = std::array::from_fn(|k| at[k]);
            let ends: [usize; LANES] = std::array::from_fn(|k| at[k + 1]);
            for (k, piece) in chunker.scan_lanes(&data, bounds, ends, eof).iter().enumerate() {
                let expected = serial_from(&data, config, bounds[k], ends[k], eof);
                prop_assert_eq!(&checked(&piece.spans, &data, seed), &expected, "lane {}", k);
                let end = expected.last().map_or(bounds[k], |&(offset, len)| (offset + u64::from(len)) as usize);
                prop_assert_eq!(piece.end, end, "lane {}", k);
            }

            let (from, until) = (at[0], at[LANES]);
            let piece = chunker.scan(&data, from, until, eof);
            let all = serial_from(&data, config, from, len, eof);
            prop_assert!(all.starts_with(&checked(&piece.spans, &data, seed)));
            let end = piece.spans.last().map_or(from, |span| span.end() as usize);
            prop_assert_eq!(piece.end, end);
            // It stopped because it got to `until` or because chunking must stop.
            prop_assert!(piece.end >= until || piece.spans.len() == all.len());
        }
    }

    #[test]
    fn default_sizes_on_several_blocks_equal_serial_fastcdc() {
        // Big enough for three reader blocks and many pieces per block.
        for (kind, seed) in [(0u8, 1u64), (2, 2), (1, 3)] {
            let data = test_data(kind, seed, 3 * BLOCK_SIZE + 12_345);
            let expected = serial(&data, ChunkerConfig::DEFAULT);
            for threads in [1, 2, 3] {
                let chunker = Chunker::default().with_threads(threads);
                let sliced = chunker.chunk_slice(&data);
                assert_eq!(
                    checked(&sliced, &data, seed),
                    expected,
                    "chunk_slice, {threads} threads, seed {seed}"
                );
                let mut streamed = Vec::new();
                chunker
                    .chunk_reader(&data[..], |span, _| {
                        streamed.push(span);
                        Ok::<_, ()>(())
                    })
                    .unwrap();
                assert_eq!(
                    streamed, sliced,
                    "chunk_reader, {threads} threads, seed {seed}"
                );
            }
        }
    }

    #[test]
    fn read_and_sink_errors_stop_the_stream() {
        struct Failing(usize);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::other("disk on fire"));
                }
                let n = buf.len().min(self.0);
                buf[..n].fill(7);
                self.0 -= n;
                Ok(n)
            }
        }
        let chunker = Chunker::default().with_sizes(100_000, 10_000, 40_000);
        // The read error comes in the middle of the pipeline.
        let mut seen = 0u64;
        let err = chunker
            .chunk_reader(Failing(1_000_000), |span, _| {
                seen = span.end();
                Ok::<_, ()>(())
            })
            .unwrap_err();
        assert!(
            matches!(err, ChunkError::Read(ref e) if e.to_string() == "disk on fire"),
            "{err:?}"
        );
        assert!(seen <= 1_000_000);

        let data = test_data(0, 9, 1_000_000);
        let mut calls = 0;
        let err = chunker
            .chunk_reader(&data[..], |_, _| {
                calls += 1;
                if calls == 30 { Err("full") } else { Ok(()) }
            })
            .unwrap_err();
        assert!(matches!(err, ChunkError::Sink("full")), "{err}");
        assert_eq!(calls, 30);
    }

    #[test]
    fn empty_input_gives_no_chunks() {
        let chunker = Chunker::default();
        assert!(chunker.chunk_slice(&[]).is_empty());
        let stats = chunker.chunk_reader(io::empty(), |_, _| Err(())).unwrap();
        assert_eq!(stats, ChunkStats::default());
    }
}
