//! `goflate::compress` against the real Go encoder (`tools/gozip`), byte
//! for byte, at every level Go has.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use ferry_recipe::goflate;
use ferry_recipe::gozip::{self, Family};
use proptest::prelude::*;

/// Every level `flate.NewWriter` accepts.
const LEVELS: [i32; 12] = [-2, -1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9];

/// A small deterministic generator (xorshift64*), so inputs need no
/// dependency and every run sees the same bytes.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Go's DEFLATE body for `data` at `level`.
fn go_deflate(data: &[u8], level: i32) -> Vec<u8> {
    let member = gozip::gzip(Family::Go, level, data).expect("gozip");
    gozip::deflate_body(&member).to_vec()
}

/// Asserts ours equals `expect`, saying where they part.
fn assert_same(what: &str, level: i32, data: &[u8], ours: &[u8], expect: &[u8]) {
    if ours == expect {
        return;
    }
    let first = ours
        .iter()
        .zip(expect)
        .position(|(a, b)| a != b)
        .unwrap_or(ours.len().min(expect.len()));
    panic!(
        "{what}: level {level}, input {} bytes: output differs at byte {first} \
         (ours {} bytes, Go {} bytes)",
        data.len(),
        ours.len(),
        expect.len()
    );
}

fn check(what: &str, data: &[u8], level: i32) {
    let ours = goflate::compress(data, level).expect("a Go level");
    let expect = go_deflate(data, level);
    assert_same(what, level, data, &ours, &expect);
}

fn check_all_levels(what: &str, data: &[u8]) {
    for level in LEVELS {
        check(what, data, level);
    }
}

/// Words drawn with a skewed distribution, with punctuation and newlines.
fn text(rng: &mut Rng, n: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "the",
        "of",
        "and",
        "a",
        "to",
        "in",
        "is",
        "layer",
        "image",
        "that",
        "for",
        "it",
        "as",
        "was",
        "with",
        "be",
        "by",
        "on",
        "not",
        "he",
        "this",
        "are",
        "or",
        "his",
        "from",
        "at",
        "which",
        "but",
        "have",
        "an",
        "had",
        "they",
        "you",
        "were",
        "their",
        "one",
        "all",
        "we",
        "can",
        "her",
        "has",
        "there",
        "been",
        "if",
        "more",
        "when",
        "will",
        "would",
        "who",
        "so",
        "compression",
        "deflate",
        "gzip",
        "container",
        "registry",
        "manifest",
        "digest",
    ];
    let mut out = Vec::with_capacity(n + 16);
    while out.len() < n {
        let r = rng.below(WORDS.len() * WORDS.len());
        let w = WORDS[(r as f64).sqrt() as usize % WORDS.len()];
        out.extend_from_slice(w.as_bytes());
        out.push(match rng.below(20) {
            0 => b'\n',
            1 => b',',
            2 => b'.',
            _ => b' ',
        });
    }
    out.truncate(n);
    out
}

/// Something like a tar of this repository's sources and some system
/// binaries: 512-byte headers, file contents, zero padding.
fn tar_like(limit: usize) -> Vec<u8> {
    let mut files: Vec<std::path::PathBuf> = Vec::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    if let Ok(crates) = std::fs::read_dir(root.join("crates")) {
        for c in crates.flatten() {
            if let Ok(src) = std::fs::read_dir(c.path().join("src")) {
                files.extend(
                    src.flatten()
                        .map(|e| e.path())
                        .filter(|p| p.extension().is_some_and(|e| e == "rs")),
                );
            }
        }
    }
    files.sort();
    let mut bins: Vec<_> = std::fs::read_dir("/usr/bin")
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    bins.sort();
    // Interleave sources with a few binaries, spread over /usr/bin.
    let step = (bins.len() / 16).max(1);
    let mut out = Vec::new();
    let add = |out: &mut Vec<u8>, name: &Path, body: &[u8]| {
        let mut header = [0u8; 512];
        let name = name.to_string_lossy();
        let name = name.as_bytes();
        header[..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
        let meta = format!(
            "0000644\00001750\00001750\0{:011o}\014571234567\0",
            body.len()
        );
        header[100..100 + meta.len()].copy_from_slice(meta.as_bytes());
        header[257..263].copy_from_slice(b"ustar\0");
        out.extend_from_slice(&header);
        out.extend_from_slice(body);
        out.resize(out.len().next_multiple_of(512), 0);
    };
    let mut bin = bins.iter().step_by(step);
    for (i, f) in files.iter().enumerate() {
        if out.len() >= limit {
            break;
        }
        if let Ok(body) = std::fs::read(f) {
            add(&mut out, f, &body);
        }
        if i % 8 == 0
            && let Some(b) = bin.next()
            && let Ok(body) = std::fs::read(b)
        {
            add(&mut out, b, &body[..body.len().min(200_000)]);
        }
    }
    out.resize(out.len() + 1024, 0);
    out.truncate(limit);
    out
}

/// Runs of text, random bytes, zeros and copies of earlier stretches.
fn mixed(seed: u64, n: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let len = 1 + rng.below(40_000);
        match rng.below(5) {
            0 => out.extend(text(&mut rng, len)),
            1 => out.extend(rng.bytes(len.min(5000))),
            2 => out.resize(out.len() + len, 0),
            _ if !out.is_empty() => {
                let start = rng.below(out.len());
                let len = len.min(out.len() - start);
                out.extend_from_within(start..start + len);
                let at = out.len() - len / 2 - 1;
                out[at] ^= 0x5a;
            }
            _ => {}
        }
    }
    out.truncate(n);
    out
}

#[test]
fn unknown_levels() {
    for level in [-3, 10, 11, i32::MIN, i32::MAX] {
        assert!(goflate::compress(b"x", level).is_none());
    }
}

#[test]
fn tiny_inputs() {
    let mut rng = Rng::new(1);
    for n in [
        0usize, 1, 2, 3, 4, 5, 15, 16, 17, 18, 100, 127, 128, 129, 258, 262, 263, 300,
    ] {
        check_all_levels(&format!("random {n}"), &rng.bytes(n));
        check_all_levels(&format!("text {n}"), &text(&mut rng, n));
        check_all_levels(&format!("zeros {n}"), &vec![0u8; n]);
    }
}

#[test]
fn window_and_block_boundaries() {
    let mut rng = Rng::new(2);
    for n in [
        16383usize,
        16384,
        16385,
        16384 + 262,
        32767,
        32768,
        32769,
        65534,
        65535,
        65536,
        65537,
        65535 * 2,
        65535 * 2 + 1,
        131072,
        131073,
    ] {
        check_all_levels(&format!("random {n}"), &rng.bytes(n));
        check_all_levels(&format!("text {n}"), &text(&mut rng, n));
    }
}

#[test]
fn repetitive_inputs() {
    let mut rng = Rng::new(3);
    check_all_levels("zeros 300000", &vec![0u8; 300_000]);
    let abc: Vec<u8> = b"abc".iter().copied().cycle().take(200_001).collect();
    check_all_levels("abc", &abc);
    for period in [
        1usize, 2, 4, 7, 255, 256, 257, 4095, 4097, 32767, 32768, 32769, 40000,
    ] {
        let unit = rng.bytes(period);
        let data: Vec<u8> = unit.iter().copied().cycle().take(150_000).collect();
        check_all_levels(&format!("period {period}"), &data);
    }
    // Few distinct bytes: skewed codes, long runs, code lengths at the limit.
    let skew: Vec<u8> = (0..120_000)
        .map(|_| {
            let r = rng.next();
            (r.leading_zeros() as u8).min(30)
        })
        .collect();
    check_all_levels("skewed", &skew);
}

#[test]
fn random_inputs() {
    let mut rng = Rng::new(4);
    check_all_levels("random 100000", &rng.bytes(100_000));
    check_all_levels("random 70000", &rng.bytes(70_000));
    // Random over a small alphabet: compressible by Huffman, few matches.
    let small: Vec<u8> = (0..200_000).map(|_| b'a' + rng.below(16) as u8).collect();
    check_all_levels("alphabet 16", &small);
}

#[test]
fn text_inputs() {
    let mut rng = Rng::new(5);
    check_all_levels("text 500000", &text(&mut rng, 500_000));
}

#[test]
fn tar_of_sources_and_binaries() {
    let data = tar_like(if cfg!(debug_assertions) {
        1 << 20
    } else {
        4 << 20
    });
    check_all_levels("tar", &data);
}

#[test]
fn mixed_megabytes() {
    let n = if cfg!(debug_assertions) {
        1 << 20
    } else {
        3 << 20
    };
    check_all_levels("mixed", &mixed(6, n));
}

/// About 20 MB at levels 1, 6 and 9 (2 MB in unoptimised builds).
#[test]
fn big_input() {
    let n = if cfg!(debug_assertions) {
        2 << 20
    } else {
        20 << 20
    };
    let mut data = tar_like(n / 2);
    data.extend(mixed(7, n - data.len()));
    for level in [1, 6, 9] {
        check("big", &data, level);
    }
}

/// Go's output does not depend on how the input is split into writes:
/// checked with the real tool's `-write` size.
#[test]
fn write_size_does_not_matter() {
    let mut data = tar_like(200_000);
    data.extend(mixed(8, 200_000));
    let bin = gozip::binary().expect("gozip");
    for level in [-2, 0, 1, 2, 4, 6, 9] {
        let ours = goflate::compress(&data, level).unwrap();
        for write in [1usize, 7, 1000, 4096, 32768, 65536, 1 << 20] {
            let mut child = Command::new(bin)
                .args(["-family", "go", "-level", &level.to_string()])
                .args(["-write", &write.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("gozip");
            let mut stdin = child.stdin.take().unwrap();
            let input = data.clone();
            let feeder = std::thread::spawn(move || stdin.write_all(&input));
            let out = child.wait_with_output().expect("gozip");
            feeder.join().unwrap().unwrap();
            assert!(out.status.success());
            let what = format!("write size {write}");
            assert_same(&what, level, &data, &ours, gozip::deflate_body(&out.stdout));
        }
    }
}

/// Repeats of earlier snippets at random distances between random literals.
fn structured() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        2 => proptest::collection::vec(any::<u8>(), 0..40).prop_map(Err),
        3 => (1usize..40_000, 3usize..300, 1usize..4).prop_map(Ok),
    ];
    (proptest::collection::vec(piece, 1..400), any::<u8>()).prop_map(|(pieces, mask)| {
        let mut out = Vec::new();
        for piece in pieces {
            match piece {
                Err(literals) => out.extend(literals.iter().map(|b| b & (mask | 0x0f))),
                Ok((distance, length, times)) if !out.is_empty() => {
                    for _ in 0..times {
                        let start = out.len() - distance.min(out.len());
                        for i in 0..length {
                            let b = out[start + i % (out.len() - start)];
                            out.push(b);
                        }
                    }
                }
                Ok(_) => {}
            }
        }
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn structured_inputs(data in structured(), pick in 0usize..6) {
        let level = [1, 2, 4, 6, 9, -2][pick];
        let ours = goflate::compress(&data, level).unwrap();
        let expect = go_deflate(&data, level);
        assert_same("proptest", level, &data, &ours, &expect);
    }
}
