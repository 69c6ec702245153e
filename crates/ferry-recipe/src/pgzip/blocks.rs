//! pgzip's block splitting.
//!
//! pgzip buffers input into blocks of exactly `block_size` bytes, however
//! the caller's writes are sized, and compresses each block independently
//! (in parallel) with a flate writer reset to use the last 16 KiB of the
//! previous block as its dictionary. Every block ends with a sync flush (an
//! empty stored block, `00 00 ff ff` after alignment); `Close` sends the
//! remaining bytes — possibly none, when the input length is a multiple of
//! the block size, including empty input — as a last block that is also
//! closed with an empty final block. Because blocks are cut at fixed
//! offsets and every compressor starts from the same reset state, the
//! output is deterministic.

/// Tail of the previous block used as the next block's dictionary.
pub(super) const TAIL_SIZE: usize = 16384;

/// A flate writer as pgzip drives it, one block at a time.
pub(super) trait BlockCompressor {
    /// Starts a new block with `dict` as preset history.
    fn reset(&mut self, dict: &[u8]);
    /// Compresses the block's data and sync-flushes.
    fn write_and_flush(&mut self, data: &[u8]);
    /// Ends the stream with a final empty block.
    fn close(&mut self);
    fn into_output(self) -> Vec<u8>;
}

/// Runs `data` through `c` in pgzip's blocks of `block_size` bytes.
pub(super) fn compress_blocks<C: BlockCompressor>(
    mut c: C,
    data: &[u8],
    block_size: usize,
) -> Vec<u8> {
    let mut start = 0usize;
    loop {
        let end = start.saturating_add(block_size).min(data.len());
        let block = &data[start..end];
        // The dictionary is the previous block's tail (blocks before the
        // last are always full, and full blocks exceed the tail size).
        let dict = if start >= block_size {
            &data[start - TAIL_SIZE..start]
        } else {
            &[][..]
        };
        c.reset(dict);
        c.write_and_flush(block);
        // A full block is sent on as soon as it fills; only Close sends
        // the rest, even when that is nothing.
        if block.len() < block_size {
            c.close();
            break;
        }
        start = end;
    }
    c.into_output()
}
