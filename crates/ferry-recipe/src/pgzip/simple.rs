//! The two levels without match search: 0 (stored blocks of up to 65535
//! bytes) and -2, Huffman-only (each 32 KiB chunk coded as literals, or
//! stored when that does not pay, with table reuse across chunks).

use super::bit_writer::BlockWriter;
use super::blocks::BlockCompressor;
use super::tokens::MAX_STORE_BLOCK_SIZE;

/// Level 0.
pub(super) struct Stored {
    w: BlockWriter,
}

impl Stored {
    pub(super) fn new(out: Vec<u8>) -> Self {
        Stored {
            w: BlockWriter::new(out, 0),
        }
    }
}

impl BlockCompressor for Stored {
    fn reset(&mut self, _dict: &[u8]) {
        self.w.reset();
    }

    fn write_and_flush(&mut self, data: &[u8]) {
        for chunk in data.chunks(MAX_STORE_BLOCK_SIZE) {
            self.w.write_stored(chunk, false);
        }
        self.w.write_stored_header(0, false);
        self.w.flush();
    }

    fn close(&mut self) {
        self.w.write_stored_header(0, true);
        self.w.flush();
    }

    fn into_output(self) -> Vec<u8> {
        self.w.sink.out
    }
}

/// Level -2.
pub(super) struct HuffmanOnly {
    w: BlockWriter,
}

impl HuffmanOnly {
    pub(super) fn new(out: Vec<u8>) -> Self {
        HuffmanOnly {
            w: BlockWriter::new(out, 10),
        }
    }
}

impl BlockCompressor for HuffmanOnly {
    fn reset(&mut self, _dict: &[u8]) {
        self.w.reset();
    }

    fn write_and_flush(&mut self, data: &[u8]) {
        let mut chunks = data.chunks(32 << 10).peekable();
        while let Some(chunk) = chunks.next() {
            self.w
                .write_block_huff(false, chunk, chunks.peek().is_none());
        }
        self.w.write_stored_header(0, false);
        self.w.flush();
    }

    fn close(&mut self) {
        self.w.write_stored_header(0, true);
        self.w.flush();
    }

    fn into_output(self) -> Vec<u8> {
        self.w.sink.out
    }
}
