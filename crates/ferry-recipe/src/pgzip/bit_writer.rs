//! klauspost's `huffmanBitWriter`: how each chunk of tokens becomes a
//! stored, fixed-Huffman or dynamic-Huffman block, including its habit of
//! keeping a dynamic table open across chunks (the block's end-of-block
//! code is "owed" and only written when a new block starts) when the
//! estimated cost of a new table, plus a penalty, is not lower.

use super::huffman::{HCode, HuffmanEncoder};
use super::tokens::{
    END_BLOCK, LENGTH_BASE, LENGTH_CODES, LENGTH_EXTRA_BITS, LENGTH_SHIFT, MATCH_TYPE,
    MAX_STORE_BLOCK_SIZE, OFFSET_BASE, OFFSET_EXTRA_BITS, Tokens,
};

const LITERAL_COUNT: usize = 286;
const OFFSET_CODE_COUNT: usize = 30;
const CODEGEN_CODE_COUNT: usize = 19;
const BAD_CODE: u8 = 255;
/// Below this many tokens the fixed code is considered.
const MAX_PREDEFINED_TOKENS: usize = 250;
const CODEGEN_ORDER: [usize; 19] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];

/// LSB-first bit output into a byte vector.
pub(super) struct BitSink {
    pub(super) out: Vec<u8>,
    bits: u64,
    nbits: u32,
}

impl BitSink {
    pub(super) fn new(out: Vec<u8>) -> Self {
        BitSink {
            out,
            bits: 0,
            nbits: 0,
        }
    }

    #[inline(always)]
    pub(super) fn write_bits(&mut self, value: u32, nb: u32) {
        self.bits |= u64::from(value) << self.nbits;
        self.nbits += nb;
        if self.nbits >= 48 {
            self.spill();
        }
    }

    #[inline(always)]
    pub(super) fn write_code(&mut self, c: HCode) {
        self.write_bits(u32::from(c.code), u32::from(c.len));
    }

    #[inline(always)]
    fn spill(&mut self) {
        self.out.extend_from_slice(&self.bits.to_le_bytes()[..6]);
        self.bits >>= 48;
        self.nbits -= 48;
    }

    /// Pads with zero bits to a byte boundary and moves everything out.
    pub(super) fn align(&mut self) {
        while self.nbits > 0 {
            self.out.push(self.bits as u8);
            self.bits >>= 8;
            self.nbits = self.nbits.saturating_sub(8);
        }
        self.bits = 0;
    }

    /// Raw bytes; the bit position must be on a byte boundary.
    pub(super) fn write_bytes(&mut self, bytes: &[u8]) {
        debug_assert_eq!(self.nbits % 8, 0, "write_bytes with unfinished bits");
        self.align();
        self.out.extend_from_slice(bytes);
    }
}

/// The block writer with its reusable tables.
pub(super) struct BlockWriter {
    pub(super) sink: BitSink,
    /// The open block is a literal-only (Huffman-only) block.
    last_huffman: bool,
    /// Header size in bits of the open block; nonzero means a table is open
    /// and its end-of-block code is still owed.
    last_header: usize,
    log_new_table_penalty: u32,
    literal_enc: HuffmanEncoder,
    tmp_lit_enc: HuffmanEncoder,
    offset_enc: HuffmanEncoder,
    codegen_enc: HuffmanEncoder,
    fixed_lit: HuffmanEncoder,
    fixed_off: HuffmanEncoder,
    /// Offset code with only symbol 0, for literal-only blocks.
    huff_offset: HuffmanEncoder,
    literal_freq: [u16; 256 + 32],
    offset_freq: [u16; 32],
    codegen_freq: [u16; CODEGEN_CODE_COUNT],
    codegen: [u8; LITERAL_COUNT + OFFSET_CODE_COUNT + 1],
}

impl BlockWriter {
    pub(super) fn new(out: Vec<u8>, log_new_table_penalty: u32) -> Self {
        let mut huff_offset = HuffmanEncoder::new(OFFSET_CODE_COUNT);
        let mut freq = [0u16; OFFSET_CODE_COUNT];
        freq[0] = 1;
        huff_offset.generate(&freq, 15);
        BlockWriter {
            sink: BitSink::new(out),
            last_huffman: false,
            last_header: 0,
            log_new_table_penalty,
            literal_enc: HuffmanEncoder::new(LITERAL_COUNT),
            tmp_lit_enc: HuffmanEncoder::new(LITERAL_COUNT),
            offset_enc: HuffmanEncoder::new(OFFSET_CODE_COUNT),
            codegen_enc: HuffmanEncoder::new(CODEGEN_CODE_COUNT),
            fixed_lit: HuffmanEncoder::fixed_literal(),
            fixed_off: HuffmanEncoder::fixed_offset(),
            huff_offset,
            literal_freq: [0; 256 + 32],
            offset_freq: [0; 32],
            codegen_freq: [0; CODEGEN_CODE_COUNT],
            codegen: [0; LITERAL_COUNT + OFFSET_CODE_COUNT + 1],
        }
    }

    /// Forget any open table (the writer is handed a new destination).
    pub(super) fn reset(&mut self) {
        self.sink.align();
        self.last_header = 0;
        self.last_huffman = false;
    }

    fn write_owed_eob(&mut self) {
        if self.last_header > 0 {
            self.sink
                .write_code(self.literal_enc.codes[END_BLOCK as usize]);
            self.last_header = 0;
        }
    }

    /// Ends any open block and pads to a byte boundary.
    pub(super) fn flush(&mut self) {
        self.write_owed_eob();
        self.sink.align();
    }

    /// A stored block header; an empty final block is written as an empty
    /// fixed-Huffman block instead (10 bits, not 5 bytes).
    pub(super) fn write_stored_header(&mut self, length: usize, eof: bool) {
        self.write_owed_eob();
        if length == 0 && eof {
            self.write_fixed_header(eof);
            self.sink.write_bits(0, 7);
            self.flush();
            return;
        }
        self.sink.write_bits(u32::from(eof), 3);
        self.flush();
        self.sink.write_bits(length as u32, 16);
        self.sink.write_bits(u32::from(!(length as u16)), 16);
    }

    pub(super) fn write_stored(&mut self, input: &[u8], eof: bool) {
        self.write_stored_header(input.len(), eof);
        self.sink.write_bytes(input);
    }

    fn write_fixed_header(&mut self, eof: bool) {
        self.write_owed_eob();
        self.sink.write_bits(if eof { 3 } else { 2 }, 3);
    }

    /// Run-length codes for the concatenated literal and offset code
    /// lengths (RFC 1951 3.2.7) into `self.codegen`, counting each code in
    /// `self.codegen_freq`.
    fn generate_codegen(&mut self, num_literals: usize, num_offsets: usize, huff_only: bool) {
        self.codegen_freq = [0; CODEGEN_CODE_COUNT];
        let lit = &self.literal_enc;
        let off = if huff_only {
            &self.huff_offset
        } else {
            &self.offset_enc
        };
        let codegen = &mut self.codegen;
        let freq = &mut self.codegen_freq;
        for (dst, c) in codegen[..num_literals].iter_mut().zip(&lit.codes) {
            *dst = c.len;
        }
        let offsets = &mut codegen[num_literals..num_literals + num_offsets];
        for (dst, c) in offsets.iter_mut().zip(&off.codes) {
            *dst = c.len;
        }
        codegen[num_literals + num_offsets] = BAD_CODE;

        let mut size = codegen[0];
        let mut count: i32 = 1;
        let mut out = 0;
        let mut in_index = 1;
        while size != BAD_CODE {
            let next_size = codegen[in_index];
            in_index += 1;
            if next_size == size {
                count += 1;
                continue;
            }
            if size != 0 {
                codegen[out] = size;
                out += 1;
                freq[size as usize] += 1;
                count -= 1;
                while count >= 3 {
                    let n = count.min(6);
                    codegen[out] = 16;
                    codegen[out + 1] = (n - 3) as u8;
                    out += 2;
                    freq[16] += 1;
                    count -= n;
                }
            } else {
                while count >= 11 {
                    let n = count.min(138);
                    codegen[out] = 18;
                    codegen[out + 1] = (n - 11) as u8;
                    out += 2;
                    freq[18] += 1;
                    count -= n;
                }
                if count >= 3 {
                    codegen[out] = 17;
                    codegen[out + 1] = (count - 3) as u8;
                    out += 2;
                    freq[17] += 1;
                    count = 0;
                }
            }
            count -= 1;
            while count >= 0 {
                codegen[out] = size;
                out += 1;
                freq[size as usize] += 1;
                count -= 1;
            }
            size = next_size;
            count = 1;
        }
        codegen[out] = BAD_CODE;
    }

    fn num_codegens(&self) -> usize {
        let mut n = CODEGEN_CODE_COUNT;
        while n > 4 && self.codegen_freq[CODEGEN_ORDER[n - 1]] == 0 {
            n -= 1;
        }
        n
    }

    fn header_size(&self) -> (usize, usize) {
        let n = self.num_codegens();
        let f = &self.codegen_freq;
        let size = 3
            + 5
            + 5
            + 4
            + 3 * n
            + self.codegen_enc.bit_length(f)
            + usize::from(f[16]) * 2
            + usize::from(f[17]) * 3
            + usize::from(f[18]) * 7;
        (size, n)
    }

    fn extra_bit_size(&self) -> usize {
        let lengths: usize = self.literal_freq[257..LITERAL_COUNT]
            .iter()
            .enumerate()
            .map(|(i, &n)| usize::from(n) * usize::from(LENGTH_EXTRA_BITS[i & 31]))
            .sum();
        let offsets: usize = self.offset_freq[..OFFSET_CODE_COUNT]
            .iter()
            .enumerate()
            .map(|(i, &n)| usize::from(n) * usize::from(OFFSET_EXTRA_BITS[i & 31]))
            .sum();
        lengths + offsets
    }

    fn fixed_size(&self, extra_bits: usize) -> usize {
        3 + self.fixed_lit.bit_length(&self.literal_freq)
            + self.fixed_off.bit_length(&self.offset_freq)
            + extra_bits
    }

    fn can_reuse(&self, t: &Tokens) -> bool {
        let off = &self.offset_enc.codes;
        if t.off_hist[..OFFSET_CODE_COUNT]
            .iter()
            .zip(off)
            .any(|(&v, c)| v != 0 && c.is_zero())
        {
            return false;
        }
        let lit = &self.literal_enc.codes;
        if t.extra_hist[..LITERAL_COUNT - 256]
            .iter()
            .zip(&lit[256..LITERAL_COUNT])
            .any(|(&v, c)| v != 0 && c.is_zero())
        {
            return false;
        }
        !t.lit_hist
            .iter()
            .zip(&lit[..256])
            .any(|(&v, c)| v != 0 && c.is_zero())
    }

    /// Copies the token histograms into the frequency tables and returns
    /// how many literal/length and offset codes the header must describe:
    /// all of them when the table may be reused by later chunks.
    fn index_tokens(&mut self, t: &Tokens, filled: bool) -> (usize, usize) {
        self.literal_freq[..256].copy_from_slice(&t.lit_hist);
        self.literal_freq[256..].copy_from_slice(&t.extra_hist);
        self.offset_freq = t.off_hist;
        if t.len() == 0 {
            return (0, 0);
        }
        if filled {
            return (LITERAL_COUNT, OFFSET_CODE_COUNT);
        }
        let mut num_literals = self.literal_freq.len();
        while self.literal_freq[num_literals - 1] == 0 {
            num_literals -= 1;
        }
        let mut num_offsets = self.offset_freq.len();
        while num_offsets > 0 && self.offset_freq[num_offsets - 1] == 0 {
            num_offsets -= 1;
        }
        if num_offsets == 0 {
            // A dynamic block needs at least one offset code.
            self.offset_freq[0] = 1;
            num_offsets = 1;
        }
        (num_literals, num_offsets)
    }

    fn write_dynamic_header(
        &mut self,
        num_literals: usize,
        num_offsets: usize,
        num_codegens: usize,
        eof: bool,
    ) {
        let s = &mut self.sink;
        s.write_bits(if eof { 5 } else { 4 }, 3);
        s.write_bits((num_literals - 257) as u32, 5);
        s.write_bits((num_offsets - 1) as u32, 5);
        s.write_bits((num_codegens - 4) as u32, 4);
        for &sym in &CODEGEN_ORDER[..num_codegens] {
            s.write_bits(u32::from(self.codegen_enc.codes[sym].len), 3);
        }
        let mut i = 0;
        loop {
            let word = self.codegen[i];
            i += 1;
            if word == BAD_CODE {
                break;
            }
            s.write_code(self.codegen_enc.codes[word as usize]);
            let extra = match word {
                16 => 2,
                17 => 3,
                18 => 7,
                _ => continue,
            };
            s.write_bits(u32::from(self.codegen[i]), extra);
            i += 1;
        }
    }

    fn write_fixed_block(&mut self, tokens: &mut Tokens, eof: bool, sync: bool) {
        self.write_fixed_header(eof);
        if !sync {
            tokens.add_eob();
        }
        write_tokens(
            &mut self.sink,
            &tokens.toks,
            &self.fixed_lit.codes,
            &self.fixed_off.codes,
        );
    }

    /// A chunk of tokens as a dynamic block — or, when cheaper, a fixed or
    /// stored block, or a continuation of the open table. `input` is the
    /// chunk's raw bytes (for the stored option).
    pub(super) fn write_block_dynamic(
        &mut self,
        tokens: &mut Tokens,
        eof: bool,
        input: Option<&[u8]>,
        sync: bool,
    ) {
        let sync = sync || eof;
        if sync {
            tokens.add_eob();
        }
        // A literal-only table cannot be reused for matches.
        if (self.last_huffman || eof) && self.last_header > 0 {
            self.write_owed_eob();
            self.last_huffman = false;
        }
        if self.last_header > 0 && !self.can_reuse(tokens) {
            self.write_owed_eob();
        }

        let (num_literals, num_offsets) = self.index_tokens(tokens, !sync);
        let stored = input.filter(|i| i.len() <= MAX_STORE_BLOCK_SIZE);
        let stored_size = stored.map(|i| (i.len() + 5) * 8);
        let mut extra_bits = 0;
        if stored.is_some() || self.last_header > 0 {
            extra_bits = self.extra_bit_size();
        }
        let fits_stored = |size: usize| stored_size.is_some_and(|s| s <= size);

        if self.last_header > 0 {
            // New table estimate (previous header size as its header cost,
            // plus a penalty) against the cost with the open table.
            let mut new_size = self.last_header + tokens.estimated_bits();
            new_size += usize::from(self.literal_enc.codes[END_BLOCK as usize].len)
                + (new_size >> self.log_new_table_penalty);
            let reuse_size = self.literal_enc.bit_length(&self.literal_freq)
                + self.offset_enc.bit_length(&self.offset_freq)
                + extra_bits;
            let size = if new_size < reuse_size {
                self.write_owed_eob();
                new_size
            } else {
                reuse_size
            };
            if tokens.len() < MAX_PREDEFINED_TOKENS && self.fixed_size(extra_bits) + 7 < size {
                if fits_stored(size) {
                    self.write_stored(stored.unwrap_or_default(), eof);
                    return;
                }
                self.write_fixed_block(tokens, eof, sync);
                return;
            }
            if fits_stored(size) {
                self.write_stored(stored.unwrap_or_default(), eof);
                return;
            }
        }

        if self.last_header == 0 {
            self.literal_freq[END_BLOCK as usize] = 1;
            self.literal_enc
                .generate(&self.literal_freq[..LITERAL_COUNT], 15);
            self.offset_enc
                .generate(&self.offset_freq[..OFFSET_CODE_COUNT], 15);
            self.generate_codegen(num_literals, num_offsets, false);
            self.codegen_enc.generate(&self.codegen_freq, 7);
            let (header, num_codegens) = self.header_size();
            let size = header
                + self.literal_enc.bit_length(&self.literal_freq)
                + self.offset_enc.bit_length(&self.offset_freq)
                + extra_bits;
            if tokens.len() < MAX_PREDEFINED_TOKENS {
                let pre_size = self.fixed_size(extra_bits);
                if pre_size <= size {
                    if fits_stored(pre_size) {
                        self.write_stored(stored.unwrap_or_default(), eof);
                        return;
                    }
                    self.write_fixed_block(tokens, eof, sync);
                    return;
                }
            }
            if fits_stored(size) {
                self.write_stored(stored.unwrap_or_default(), eof);
                return;
            }
            self.write_dynamic_header(num_literals, num_offsets, num_codegens, eof);
            if !sync {
                self.last_header = self.header_size().0;
            }
            self.last_huffman = false;
        }
        if sync {
            self.last_header = 0;
        }
        write_tokens(
            &mut self.sink,
            &tokens.toks,
            &self.literal_enc.codes,
            &self.offset_enc.codes,
        );
    }

    /// A chunk coded as literals only (no match search was worth it), or
    /// stored when its byte histogram is nearly flat or the estimate says
    /// coding does not pay.
    pub(super) fn write_block_huff(&mut self, eof: bool, input: &[u8], sync: bool) {
        self.literal_freq = [0; 256 + 32];
        if !self.last_huffman {
            self.offset_freq = [0; 32];
        }
        const NUM_LITERALS: usize = END_BLOCK as usize + 1;
        // Assumed header size of a new table: 70 bytes.
        const GUESS_HEADER_BITS: usize = 70 * 8;
        for &b in input {
            self.literal_freq[b as usize] += 1;
        }
        let storable = input.len() <= MAX_STORE_BLOCK_SIZE;
        let stored_size = (input.len() + 5) * 8;
        if storable && input.len() > 1024 {
            // Quick check for incompressible content.
            let mut abs = 0f64;
            let avg = input.len() as f64 / 256.0;
            let max = (input.len() * 2) as f64;
            for &v in &self.literal_freq[..256] {
                let diff = f64::from(v) - avg;
                abs += diff * diff;
                if abs > max {
                    break;
                }
            }
            if abs < max {
                self.write_stored(input, eof);
                return;
            }
        }
        self.literal_freq[END_BLOCK as usize] = 1;
        self.tmp_lit_enc
            .generate(&self.literal_freq[..NUM_LITERALS], 15);
        let mut est_bits = self
            .tmp_lit_enc
            .can_reuse_bits(&self.literal_freq[..NUM_LITERALS])
            .unwrap_or(i32::MAX as usize);
        if est_bits < i32::MAX as usize {
            est_bits += self.last_header;
            if self.last_header == 0 {
                est_bits += GUESS_HEADER_BITS;
            }
            est_bits += est_bits >> self.log_new_table_penalty;
        }
        if storable && stored_size <= est_bits {
            self.write_stored(input, eof);
            return;
        }
        if self.last_header > 0 {
            let reuse_size = self
                .literal_enc
                .can_reuse_bits(&self.literal_freq[..256])
                .unwrap_or(i32::MAX as usize);
            if est_bits < reuse_size {
                self.write_owed_eob();
            }
        }
        if self.last_header == 0 {
            std::mem::swap(&mut self.literal_enc, &mut self.tmp_lit_enc);
            self.generate_codegen(NUM_LITERALS, 1, true);
            self.codegen_enc.generate(&self.codegen_freq, 7);
            let num_codegens = self.num_codegens();
            self.write_dynamic_header(NUM_LITERALS, 1, num_codegens, eof);
            self.last_huffman = true;
            self.last_header = self.header_size().0;
        }
        let codes = &self.literal_enc.codes[..256];
        let sink = &mut self.sink;
        for &b in input {
            sink.write_code(codes[b as usize]);
        }
        if eof || sync {
            sink.write_code(self.literal_enc.codes[END_BLOCK as usize]);
            self.last_header = 0;
            self.last_huffman = false;
        }
    }
}

/// Writes `tokens` with the given codes; a trailing end-of-block marker is
/// written with the literal code's symbol 256.
fn write_tokens(sink: &mut BitSink, tokens: &[u32], lit: &[HCode], off: &[HCode]) {
    let (body, eob) = match tokens.split_last() {
        Some((&END_BLOCK, body)) => (body, true),
        _ => (tokens, false),
    };
    let lengths = &lit[257..];
    for &t in body {
        if t < MATCH_TYPE {
            sink.write_code(lit[t as usize]);
            continue;
        }
        let xlength = (t >> LENGTH_SHIFT) & 0xff;
        let lc = usize::from(LENGTH_CODES[xlength as usize]);
        sink.write_code(lengths[lc]);
        let extra = LENGTH_EXTRA_BITS[lc];
        if extra > 0 {
            sink.write_bits(xlength - u32::from(LENGTH_BASE[lc]), u32::from(extra));
        }
        let oc = ((t >> 16) & 31) as usize;
        sink.write_code(off[oc]);
        let extra = OFFSET_EXTRA_BITS[oc];
        if oc >= 4 {
            sink.write_bits((t & 0xffff) - OFFSET_BASE[oc], u32::from(extra));
        }
    }
    if eob {
        sink.write_code(lit[END_BLOCK as usize]);
    }
}
