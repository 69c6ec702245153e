//! Random streams: one master seed, one ChaCha stream per (name, purpose).
//!
//! A stream's seed is the BLAKE3 of the master seed, the name (a link's name,
//! "workload", …) and the purpose ("loss", "jitter", …), so adding a link or
//! a purpose never changes what any other stream yields. Never seeded from
//! anything but the master seed.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// What a stream is used for; each gets its own stream per link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    Loss,
    Jitter,
    Duplicate,
    Reorder,
    BitErrors,
    Workload,
    Engine,
}

impl Purpose {
    fn name(self) -> &'static str {
        match self {
            Purpose::Loss => "loss",
            Purpose::Jitter => "jitter",
            Purpose::Duplicate => "duplicate",
            Purpose::Reorder => "reorder",
            Purpose::BitErrors => "bit-errors",
            Purpose::Workload => "workload",
            Purpose::Engine => "engine",
        }
    }
}

/// The stream for `name` and `purpose` under `master`.
pub fn stream(master: u64, name: &str, purpose: Purpose) -> ChaCha8Rng {
    ChaCha8Rng::from_seed(stream_seed(master, name, purpose))
}

/// A 64-bit seed derived the same way (for engines, which take a `u64`).
pub fn derive_u64(master: u64, name: &str, purpose: Purpose) -> u64 {
    let seed = stream_seed(master, name, purpose);
    u64::from_le_bytes(seed[..8].try_into().expect("8 bytes"))
}

fn stream_seed(master: u64, name: &str, purpose: Purpose) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_derive_key("ferry-sim 2026 random stream v1");
    hasher.update(&master.to_le_bytes());
    hasher.update(&(name.len() as u64).to_le_bytes());
    hasher.update(name.as_bytes());
    hasher.update(purpose.name().as_bytes());
    *hasher.finalize().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngCore;

    #[test]
    fn streams_differ_by_name_purpose_and_seed_and_repeat_exactly() {
        let draw = |m, n, p| stream(m, n, p).next_u64();
        assert_eq!(draw(1, "a", Purpose::Loss), draw(1, "a", Purpose::Loss));
        assert_ne!(draw(1, "a", Purpose::Loss), draw(1, "b", Purpose::Loss));
        assert_ne!(draw(1, "a", Purpose::Loss), draw(1, "a", Purpose::Jitter));
        assert_ne!(draw(1, "a", Purpose::Loss), draw(2, "a", Purpose::Loss));
    }
}
