//! Deterministic test data shared by the integration tests.

#![allow(dead_code)]

use ferry_chunk::ChunkerConfig;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

/// `len` pseudo-random bytes from `seed`.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut data);
    data
}

/// Random bytes, zeros, random bytes with zero runs, or a short repeating
/// pattern, by `kind` modulo 4.
pub fn test_data(kind: u8, seed: u64, len: usize) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut data = vec![0u8; len];
    match kind % 4 {
        0 => rng.fill_bytes(&mut data),
        1 => {}
        2 => {
            let mut pos = 0;
            while pos < len {
                let run = (rng.next_u32() as usize % 20_000 + 1).min(len - pos);
                if rng.next_u32().is_multiple_of(2) {
                    rng.fill_bytes(&mut data[pos..pos + run]);
                }
                pos += run;
            }
        }
        _ => {
            let mut pattern = vec![0u8; rng.next_u32() as usize % 100 + 1];
            rng.fill_bytes(&mut pattern);
            for (byte, p) in data.iter_mut().zip(pattern.iter().cycle()) {
                *byte = *p;
            }
        }
    }
    data
}

/// Boundaries from the serial reference, `fastcdc::v2020::FastCDC`.
pub fn serial_fastcdc(data: &[u8], config: ChunkerConfig) -> Vec<(u64, u32)> {
    let (min, avg, max) = (
        config.min_size as usize,
        config.avg_size as usize,
        config.max_size as usize,
    );
    fastcdc::v2020::FastCDC::new(data, min, avg, max)
        .map(|c| (c.offset as u64, c.length as u32))
        .collect()
}

/// A reader that returns short reads of random sizes (1..=max_read bytes)
/// and, now and then, `ErrorKind::Interrupted`.
pub struct ShortReads<'a> {
    data: &'a [u8],
    rng: ChaCha8Rng,
    max_read: usize,
}

impl<'a> ShortReads<'a> {
    pub fn new(data: &'a [u8], seed: u64, max_read: usize) -> Self {
        Self {
            data,
            rng: ChaCha8Rng::seed_from_u64(seed),
            max_read: max_read.max(1),
        }
    }
}

impl std::io::Read for ShortReads<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.rng.next_u32().is_multiple_of(8) {
            return Err(std::io::ErrorKind::Interrupted.into());
        }
        let n = (self.rng.next_u32() as usize % self.max_read + 1)
            .min(buf.len())
            .min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}
