//! klauspost/pgzip over klauspost/compress's flate, replayed bit for bit.
//!
//! Replays pgzip 1.2.5 and klauspost/compress 1.15.12 (Debian's packages)
//! at every level pgzip accepts, -2 to 9, and any block size it accepts
//! (more than 16 KiB):
//! - `blocks`: pgzip's fixed-size blocks, each compressed with the
//!   previous block's 16 KiB tail as dictionary and sync-flushed;
//! - `fast` and `level1`..`level6`: the fast matchers of levels 1–6 (the
//!   default level, -1, is level 5) and the loop feeding them 64 KiB
//!   windows;
//! - `lazy`: the hash-chain matcher of levels 7–9;
//! - `simple`: level 0 (stored) and -2 (Huffman only);
//! - `bit_writer`: the choice between stored, fixed and dynamic blocks
//!   and the reuse of dynamic tables across windows;
//! - `huffman`: code-length generation with the library's tie-breaking;
//! - `tokens`: the token list and its entropy estimate.
//!
//! pgzip compresses blocks in parallel with pooled flate writers; a reused
//! writer only moves its position offsets on, so which writer takes which
//! block does not change the output. The exception would be a writer whose
//! offsets reach 2^31 in mid-block (after about 2 GB through one writer),
//! where the fast matchers rebase their tables; this replay rebases as one
//! writer reused for every block would.

mod bit_writer;
mod blocks;
mod fast;
mod huffman;
mod lazy;
mod level1;
mod level2;
mod level3;
mod level4;
mod level5;
mod level6;
mod simple;
mod tokens;

use blocks::{TAIL_SIZE, compress_blocks};
use fast::FastDeflate;

/// pgzip's default block size.
pub const DEFAULT_BLOCK_SIZE: usize = 1 << 20;

/// The raw DEFLATE stream pgzip writes between its gzip header and trailer
/// for `data` at `level` with blocks of `block_size` bytes. `None` for a
/// level or block size this replay does not cover.
pub fn compress(data: &[u8], level: i32, block_size: usize) -> Option<Vec<u8>> {
    // pgzip refuses blocks no larger than its dictionary tail.
    if block_size <= TAIL_SIZE {
        return None;
    }
    let out = Vec::with_capacity(data.len() / 2 + 64);
    let stream = match level {
        1 => compress_blocks(FastDeflate::<level1::Level1>::new(out), data, block_size),
        2 => compress_blocks(FastDeflate::<level2::Level2>::new(out), data, block_size),
        3 => compress_blocks(FastDeflate::<level3::Level3>::new(out), data, block_size),
        4 => compress_blocks(FastDeflate::<level4::Level4>::new(out), data, block_size),
        -1 | 5 => compress_blocks(FastDeflate::<level5::Level5>::new(out), data, block_size),
        6 => compress_blocks(FastDeflate::<level6::Level6>::new(out), data, block_size),
        7..=9 => compress_blocks(lazy::Lazy::new(out, level)?, data, block_size),
        0 => compress_blocks(simple::Stored::new(out), data, block_size),
        -2 => compress_blocks(simple::HuffmanOnly::new(out), data, block_size),
        _ => return None,
    };
    Some(stream)
}
