//! Block framing: how Go turns a block of tokens (or of plain bytes) into
//! a stored, fixed-Huffman or dynamic-Huffman DEFLATE block.
//!
//! Three entry points, as in Go:
//!
//! - [`BlockWriter::write_block`] (levels 2..=9) prices the block three
//!   ways (fixed codes, dynamic codes including the header, and stored if
//!   the block's input is still in the window and at most 65535 bytes) and
//!   takes the cheapest; fixed wins a tie with dynamic, and stored must be
//!   strictly cheaper than the Huffman choice.
//! - [`BlockWriter::write_block_dynamic`] (level 1) always uses dynamic
//!   codes unless stored is cheaper than the dynamic size plus a sixteenth,
//!   where that size leaves out the length and distance extra bits.
//! - [`BlockWriter::write_block_huff`] (level 1 for poorly matching input,
//!   and HuffmanOnly) codes the bytes as literals with a dynamic literal
//!   code over 257 symbols and a dummy one-symbol distance code, or stores
//!   them on the same sixteenth rule.
//!
//! The dynamic header's code-length sequence is run-length coded with
//! Go's exact choice of repeat codes, and the code-length code is trimmed
//! in RFC order down to at least four entries.

use super::bit_writer::BitWriter;
use super::huffman::{HCode, HuffmanEncoder};
use super::token::{
    self, END_BLOCK_MARKER, LENGTH_BASE, LENGTH_CODES_START, LENGTH_EXTRA_BITS, MAX_NUM_LIT,
    OFFSET_BASE, OFFSET_CODE_COUNT, OFFSET_EXTRA_BITS, Token,
};

/// The largest stored block.
pub(crate) const MAX_STORE_BLOCK_SIZE: usize = 65535;

const CODEGEN_CODE_COUNT: usize = 19;
/// End marker of the run-length coded code lengths.
const BAD_CODE: u8 = 255;

/// The order code-length code lengths are sent in.
const CODEGEN_ORDER: [usize; CODEGEN_CODE_COUNT] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];

/// Which of the writer's codes a block is written with.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Codes {
    Fixed,
    Dynamic,
}

/// Writes DEFLATE blocks into a bit stream.
pub(crate) struct BlockWriter {
    pub(crate) out: BitWriter,
    literal_freq: [i32; MAX_NUM_LIT],
    offset_freq: [i32; OFFSET_CODE_COUNT],
    /// Run-length coded code lengths, ending in [`BAD_CODE`].
    codegen: Vec<u8>,
    /// Scratch copy of the code lengths being run-length coded.
    code_lengths: Vec<u8>,
    codegen_freq: [i32; CODEGEN_CODE_COUNT],
    literal_encoding: HuffmanEncoder,
    offset_encoding: HuffmanEncoder,
    codegen_encoding: HuffmanEncoder,
    fixed_literal: HuffmanEncoder,
    fixed_offset: HuffmanEncoder,
    /// The distance code of Huffman-only blocks: symbol 0, one bit.
    huff_offset: HuffmanEncoder,
}

impl BlockWriter {
    pub(crate) fn new(capacity: usize) -> Self {
        let mut huff_offset = HuffmanEncoder::new(OFFSET_CODE_COUNT);
        let mut one = [0i32; OFFSET_CODE_COUNT];
        one[0] = 1;
        huff_offset.generate(&one, 15);
        BlockWriter {
            out: BitWriter::new(capacity),
            literal_freq: [0; MAX_NUM_LIT],
            offset_freq: [0; OFFSET_CODE_COUNT],
            codegen: vec![0; MAX_NUM_LIT + OFFSET_CODE_COUNT + 1],
            code_lengths: vec![0; MAX_NUM_LIT + OFFSET_CODE_COUNT + 1],
            codegen_freq: [0; CODEGEN_CODE_COUNT],
            literal_encoding: HuffmanEncoder::new(MAX_NUM_LIT),
            offset_encoding: HuffmanEncoder::new(OFFSET_CODE_COUNT),
            codegen_encoding: HuffmanEncoder::new(CODEGEN_CODE_COUNT),
            fixed_literal: HuffmanEncoder::fixed_literal(),
            fixed_offset: HuffmanEncoder::fixed_offset(),
            huff_offset,
        }
    }

    /// The compressed stream.
    pub(crate) fn finish(self) -> Vec<u8> {
        self.out.finish()
    }

    /// A stored block header: three header bits, padding to a byte, then
    /// the length and its complement.
    pub(crate) fn write_stored_header(&mut self, length: usize, eof: bool) {
        self.out.write_bits(u32::from(eof), 3);
        self.out.align();
        self.out.write_bits(length as u32, 16);
        self.out.write_bits(u32::from(!(length as u16)), 16);
    }

    /// A whole stored block (never the last one).
    pub(crate) fn write_stored(&mut self, input: &[u8]) {
        self.write_stored_header(input.len(), false);
        self.out.write_bytes(input);
    }

    /// The cheapest of fixed, dynamic and (if `input` is given and short
    /// enough) stored for `tokens`, which cover `input`.
    pub(crate) fn write_block(&mut self, tokens: &[Token], eof: bool, input: Option<&[u8]>) {
        let (num_literals, num_offsets) = self.index_tokens(tokens);

        let stored_size = stored_size(input);
        let mut extra_bits = 0usize;
        if stored_size.is_some() {
            // The length and distance extra bits cost the same either way,
            // so they only matter next to the stored size. (Counts past the
            // last used symbol are zero.)
            extra_bits =
                extra_bit_count(&self.literal_freq[LENGTH_CODES_START..], &LENGTH_EXTRA_BITS)
                    + extra_bit_count(&self.offset_freq, &OFFSET_EXTRA_BITS);
        }

        let mut codes = Codes::Fixed;
        let mut size = 3
            + self.fixed_literal.bit_length(&self.literal_freq)
            + self.fixed_offset.bit_length(&self.offset_freq)
            + extra_bits;

        self.generate_codegen(num_literals, num_offsets, false);
        self.codegen_encoding.generate(&self.codegen_freq, 7);
        let (dynamic_size, num_codegens) = self.dynamic_size(false, extra_bits);
        if dynamic_size < size {
            size = dynamic_size;
            codes = Codes::Dynamic;
        }

        if let (Some(stored), Some(input)) = (stored_size, input)
            && stored < size
        {
            self.write_stored_header(input.len(), eof);
            self.out.write_bytes(input);
            return;
        }

        match codes {
            Codes::Fixed => {
                self.out.write_bits(if eof { 3 } else { 2 }, 3);
                write_tokens(
                    &mut self.out,
                    tokens,
                    &self.fixed_literal.codes,
                    &self.fixed_offset.codes,
                );
            }
            Codes::Dynamic => {
                self.write_dynamic_header(num_literals, num_offsets, num_codegens, eof);
                write_tokens(
                    &mut self.out,
                    tokens,
                    &self.literal_encoding.codes,
                    &self.offset_encoding.codes,
                );
            }
        }
    }

    /// `tokens` with dynamic codes, or `input` stored if that saves more
    /// than the sixteenth Go asks of compression.
    pub(crate) fn write_block_dynamic(&mut self, tokens: &[Token], eof: bool, input: &[u8]) {
        let (num_literals, num_offsets) = self.index_tokens(tokens);
        self.generate_codegen(num_literals, num_offsets, false);
        self.codegen_encoding.generate(&self.codegen_freq, 7);
        let (size, num_codegens) = self.dynamic_size(false, 0);

        if let Some(stored) = stored_size(Some(input))
            && stored < size + (size >> 4)
        {
            self.write_stored_header(input.len(), eof);
            self.out.write_bytes(input);
            return;
        }
        self.write_dynamic_header(num_literals, num_offsets, num_codegens, eof);
        write_tokens(
            &mut self.out,
            tokens,
            &self.literal_encoding.codes,
            &self.offset_encoding.codes,
        );
    }

    /// `input` as literals only, with a dynamic literal code, or stored on
    /// the same sixteenth rule as [`Self::write_block_dynamic`].
    pub(crate) fn write_block_huff(&mut self, eof: bool, input: &[u8]) {
        self.literal_freq = [0; MAX_NUM_LIT];
        for &b in input {
            self.literal_freq[usize::from(b)] += 1;
        }
        self.literal_freq[END_BLOCK_MARKER] = 1;
        const NUM_LITERALS: usize = END_BLOCK_MARKER + 1;
        // Only symbol 0 has a code in the dummy distance code, so the rest
        // of the distance counts never add to the size.
        self.offset_freq[0] = 1;
        const NUM_OFFSETS: usize = 1;

        self.literal_encoding.generate(&self.literal_freq, 15);
        self.generate_codegen(NUM_LITERALS, NUM_OFFSETS, true);
        self.codegen_encoding.generate(&self.codegen_freq, 7);
        let (size, num_codegens) = self.dynamic_size(true, 0);

        if let Some(stored) = stored_size(Some(input))
            && stored < size + (size >> 4)
        {
            self.write_stored_header(input.len(), eof);
            self.out.write_bytes(input);
            return;
        }
        self.write_dynamic_header(NUM_LITERALS, NUM_OFFSETS, num_codegens, eof);
        let codes = &self.literal_encoding.codes;
        for &b in input {
            let c = codes[usize::from(b)];
            self.out.write_bits(u32::from(c.code), u32::from(c.len));
        }
        let c = codes[END_BLOCK_MARKER];
        self.out.write_bits(u32::from(c.code), u32::from(c.len));
    }

    /// Counts the symbols of `tokens` plus the end-of-block marker, builds
    /// the dynamic codes for them, and returns how many literal/length and
    /// distance code lengths the header has to send. A block without
    /// matches still counts one distance symbol 0, so that its distance
    /// code can be described.
    fn index_tokens(&mut self, tokens: &[Token]) -> (usize, usize) {
        self.literal_freq = [0; MAX_NUM_LIT];
        self.offset_freq = [0; OFFSET_CODE_COUNT];
        for &t in tokens {
            if token::is_literal(t) {
                self.literal_freq[t as usize] += 1;
            } else {
                self.literal_freq[LENGTH_CODES_START + token::length_code(token::xlength(t))] += 1;
                self.offset_freq[token::offset_code(token::xoffset(t))] += 1;
            }
        }
        self.literal_freq[END_BLOCK_MARKER] += 1;

        let mut num_literals = MAX_NUM_LIT;
        while self.literal_freq[num_literals - 1] == 0 {
            num_literals -= 1;
        }
        let mut num_offsets = OFFSET_CODE_COUNT;
        while num_offsets > 0 && self.offset_freq[num_offsets - 1] == 0 {
            num_offsets -= 1;
        }
        if num_offsets == 0 {
            self.offset_freq[0] = 1;
            num_offsets = 1;
        }
        self.literal_encoding.generate(&self.literal_freq, 15);
        self.offset_encoding.generate(&self.offset_freq, 15);
        (num_literals, num_offsets)
    }

    /// Run-length codes the literal/length code lengths followed by the
    /// distance code lengths into `codegen` (symbols 0..=18, each of 16, 17
    /// and 18 followed by its repeat count) and counts the symbols.
    fn generate_codegen(&mut self, num_literals: usize, num_offsets: usize, huff_only: bool) {
        self.codegen_freq = [0; CODEGEN_CODE_COUNT];
        let offsets = if huff_only {
            &self.huff_offset
        } else {
            &self.offset_encoding
        };
        let lengths = &mut self.code_lengths;
        for (l, c) in lengths
            .iter_mut()
            .zip(&self.literal_encoding.codes[..num_literals])
        {
            *l = c.len as u8;
        }
        for (l, c) in lengths[num_literals..]
            .iter_mut()
            .zip(&offsets.codes[..num_offsets])
        {
            *l = c.len as u8;
        }
        lengths[num_literals + num_offsets] = BAD_CODE;

        let codegen = &mut self.codegen;
        let freq = &mut self.codegen_freq;
        let mut out = 0;
        let mut push = |codegen: &mut Vec<u8>, v: u8| {
            codegen[out] = v;
            out += 1;
        };
        let mut size = lengths[0];
        let mut count: i32 = 1;
        let mut i = 1;
        while size != BAD_CODE {
            let next = lengths[i];
            i += 1;
            if next == size {
                count += 1;
                continue;
            }
            if size != 0 {
                push(codegen, size);
                freq[usize::from(size)] += 1;
                count -= 1;
                while count >= 3 {
                    let n = count.min(6);
                    push(codegen, 16);
                    push(codegen, (n - 3) as u8);
                    freq[16] += 1;
                    count -= n;
                }
            } else {
                while count >= 11 {
                    let n = count.min(138);
                    push(codegen, 18);
                    push(codegen, (n - 11) as u8);
                    freq[18] += 1;
                    count -= n;
                }
                if count >= 3 {
                    push(codegen, 17);
                    push(codegen, (count - 3) as u8);
                    freq[17] += 1;
                    count = 0;
                }
            }
            while count > 0 {
                push(codegen, size);
                freq[usize::from(size)] += 1;
                count -= 1;
            }
            size = next;
            count = 1;
        }
        push(codegen, BAD_CODE);
    }

    /// Bits of a dynamic block (header included) and how many code-length
    /// code lengths its header sends.
    fn dynamic_size(&self, huff_only: bool, extra_bits: usize) -> (usize, usize) {
        let mut num_codegens = CODEGEN_CODE_COUNT;
        while num_codegens > 4 && self.codegen_freq[CODEGEN_ORDER[num_codegens - 1]] == 0 {
            num_codegens -= 1;
        }
        let header = 3
            + 5
            + 5
            + 4
            + 3 * num_codegens
            + self.codegen_encoding.bit_length(&self.codegen_freq)
            + self.codegen_freq[16] as usize * 2
            + self.codegen_freq[17] as usize * 3
            + self.codegen_freq[18] as usize * 7;
        let offsets = if huff_only {
            &self.huff_offset
        } else {
            &self.offset_encoding
        };
        let size = header
            + self.literal_encoding.bit_length(&self.literal_freq)
            + offsets.bit_length(&self.offset_freq)
            + extra_bits;
        (size, num_codegens)
    }

    fn write_dynamic_header(
        &mut self,
        num_literals: usize,
        num_offsets: usize,
        num_codegens: usize,
        eof: bool,
    ) {
        let out = &mut self.out;
        out.write_bits(if eof { 5 } else { 4 }, 3);
        out.write_bits((num_literals - 257) as u32, 5);
        out.write_bits((num_offsets - 1) as u32, 5);
        out.write_bits((num_codegens - 4) as u32, 4);
        let codes = &self.codegen_encoding.codes;
        for &symbol in &CODEGEN_ORDER[..num_codegens] {
            out.write_bits(u32::from(codes[symbol].len), 3);
        }
        let mut i = 0;
        loop {
            let symbol = self.codegen[i];
            i += 1;
            if symbol == BAD_CODE {
                break;
            }
            let c = codes[usize::from(symbol)];
            out.write_bits(u32::from(c.code), u32::from(c.len));
            let extra = match symbol {
                16 => 2,
                17 => 3,
                18 => 7,
                _ => continue,
            };
            out.write_bits(u32::from(self.codegen[i]), extra);
            i += 1;
        }
    }
}

/// Extra bits taken by symbols counted `freq` times with `extra` bits each.
fn extra_bit_count(freq: &[i32], extra: &[u8]) -> usize {
    freq.iter()
        .zip(extra)
        .map(|(&f, &x)| f as usize * usize::from(x))
        .sum()
}

/// Bits of `input` as one stored block, if it fits in one.
fn stored_size(input: Option<&[u8]>) -> Option<usize> {
    match input {
        Some(input) if input.len() <= MAX_STORE_BLOCK_SIZE => Some((input.len() + 5) * 8),
        _ => None,
    }
}

/// The tokens and the end-of-block marker in the given codes.
fn write_tokens(out: &mut BitWriter, tokens: &[Token], literals: &[HCode], offsets: &[HCode]) {
    for &t in tokens {
        if token::is_literal(t) {
            let c = literals[t as usize];
            out.write_bits(u32::from(c.code), u32::from(c.len));
            continue;
        }
        let length = token::xlength(t);
        let lc = token::length_code(length);
        let c = literals[LENGTH_CODES_START + lc];
        out.write_bits(u32::from(c.code), u32::from(c.len));
        let extra = u32::from(LENGTH_EXTRA_BITS[lc]);
        if extra > 0 {
            out.write_bits(length - LENGTH_BASE[lc], extra);
        }
        let offset = token::xoffset(t);
        let oc = token::offset_code(offset);
        let c = offsets[oc];
        out.write_bits(u32::from(c.code), u32::from(c.len));
        let extra = u32::from(OFFSET_EXTRA_BITS[oc]);
        if extra > 0 {
            out.write_bits(offset - OFFSET_BASE[oc], extra);
        }
    }
    let c = literals[END_BLOCK_MARKER];
    out.write_bits(u32::from(c.code), u32::from(c.len));
}
