//! Go's `compress/flate` encoder, replayed bit for bit.
//!
//! Docker, BuildKit and containerd write layers with Go's `compress/gzip`,
//! whose DEFLATE stream depends on every detail of Go's encoder: how the
//! matchers pick matches, where blocks are cut, how each block's coding is
//! chosen and how Huffman code lengths are tie-broken. This module repeats
//! those decisions so the same input gives the same bytes as Go 1.19's
//! encoder (checked against it in `tests/goflate.rs`).
//!
//! - [`matcher`]: levels 2..=9 (hash chains, greedy or lazy).
//! - [`fast`]: level 1 (single-probe table over 64 KiB blocks).
//! - level 0 stores 65535-byte blocks; HuffmanOnly (-2) codes 65535-byte
//!   blocks as literals.
//! - [`block_writer`], [`huffman`], [`bit_writer`]: turning tokens into
//!   blocks, for all levels.
//!
//! Every stream ends as Go's `Close` ends it: the last data block is not
//! marked final, and an empty final stored block follows.
//!
//! Go's output is the same however the input is split into `Write` calls,
//! with one theoretical exception at levels 2..=9: if a write leaves the
//! window short of full and the scan stops exactly at the slide threshold,
//! the window slides one step early. That changes the output only if the
//! step in between cuts a 2^14-token block that began in the half slid
//! out and would otherwise have been stored. `compress` gives the output
//! of one `Write` of the whole input, which is also that of any split into
//! 32 KiB writes (what `io.Copy` makes).

mod bit_writer;
mod block_writer;
mod fast;
mod huffman;
mod matcher;
mod token;

use block_writer::{BlockWriter, MAX_STORE_BLOCK_SIZE};

/// The raw DEFLATE stream Go's `flate.NewWriter(w, level)` writes for
/// `data` written in full and then closed (which is what `compress/gzip`
/// puts between its header and trailer). `None` for a level Go does not
/// have.
pub fn compress(data: &[u8], level: i32) -> Option<Vec<u8>> {
    Some(match level {
        0 => store(data),
        1 => fast::compress(data),
        -1 => matcher::compress(data, 6),
        2..=9 => matcher::compress(data, level),
        -2 => huffman_only(data),
        _ => return None,
    })
}

/// Level 0: stored blocks of 65535 bytes.
fn store(data: &[u8]) -> Vec<u8> {
    let blocks = data.len().div_ceil(MAX_STORE_BLOCK_SIZE);
    let mut w = BlockWriter::new(data.len() + 5 * blocks + 5);
    for block in data.chunks(MAX_STORE_BLOCK_SIZE) {
        w.write_stored(block);
    }
    w.write_stored_header(0, true);
    w.finish()
}

/// HuffmanOnly: each 65535-byte block as literals with its own code.
fn huffman_only(data: &[u8]) -> Vec<u8> {
    let mut w = BlockWriter::new(data.len() + 64);
    for block in data.chunks(MAX_STORE_BLOCK_SIZE) {
        w.write_block_huff(false, block);
    }
    w.write_stored_header(0, true);
    w.finish()
}
