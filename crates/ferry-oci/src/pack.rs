//! The packed form of a layer that travels with a rebuild recipe: its
//! segment (the uncompressed tar, then any corrections) cut by content with
//! the default chunker, each chunk compressed on its own as one raw DEFLATE
//! stream at [`LEVEL`]. Each packed chunk is one ferry chunk, so a chunk of
//! the tar that the next hop holds from another version of the layer costs
//! only its manifest entry, and a first sync costs about what the gzip blob
//! costs rather than the whole tar.
//!
//! Packing is deterministic for a given flate2 backend (miniz_oxide, pinned
//! by Cargo.lock): identical plain chunks give identical packed chunks. A
//! leaf never depends on that — [`unpack`] takes any chain of raw DEFLATE
//! streams — only dedupe does.

use ferry_chunk::{ChunkId, Chunker};
use ferry_recipe::gzip::{InflateError, inflate_raw};
use flate2::{Compress, Compression, FlushCompress, Status};

/// The DEFLATE level each chunk is packed at. Measured with miniz_oxide on
/// 10.9 MB of the fixture's code-like and text files (`pack_levels` below;
/// gzip of the whole tar at level 6: 6.11 MB): level 1 packs to 6.65 MB at
/// 73 MB/s a core, 3 to 6.35 MB at 24 MB/s, 6 to 6.28 MB at 11 MB/s, 9 to
/// 6.27 MB at 6 MB/s. Bytes cross slow links again and again, packing runs
/// once per new layer at the base (on every core): 6, within 3 % of
/// compressing the tar whole.
pub const LEVEL: u32 = 6;

/// One packed chunk: its id (BLAKE3 of `bytes`), its bytes, and how many
/// bytes of the segment it holds.
pub struct Packed {
    pub id: ChunkId,
    pub bytes: Vec<u8>,
    pub plain_len: usize,
}

/// Cuts `segment` with `chunker` and packs every chunk, on up to two
/// threads, in segment order.
pub fn pack(segment: &[u8], chunker: &Chunker) -> Vec<Packed> {
    let spans = chunker.chunk_slice(segment);
    let pieces: Vec<&[u8]> = spans
        .iter()
        .map(|s| &segment[s.offset as usize..s.end() as usize])
        .collect();
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 4);
    if threads == 1 || pieces.len() < 8 {
        return pieces.iter().map(|p| pack_one(p)).collect();
    }
    let per = pieces.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = pieces
            .chunks(per)
            .map(|part| scope.spawn(move || part.iter().map(|p| pack_one(p)).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("packing does not panic"))
            .collect()
    })
}

/// One chunk as a raw DEFLATE stream.
pub fn pack_one(plain: &[u8]) -> Packed {
    let mut compress = Compress::new(Compression::new(LEVEL), false);
    let mut out = Vec::with_capacity(plain.len() / 2 + 64);
    loop {
        if out.len() == out.capacity() {
            out.reserve(plain.len() / 4 + 1024);
        }
        let consumed = compress.total_in() as usize;
        let status = compress
            .compress_vec(&plain[consumed..], &mut out, FlushCompress::Finish)
            .expect("compressing to a growable buffer cannot fail");
        if status == Status::StreamEnd {
            break;
        }
    }
    Packed {
        id: ChunkId::of(&out),
        bytes: out,
        plain_len: plain.len(),
    }
}

/// Inflates one packed chunk (one whole raw DEFLATE stream, nothing after
/// it) onto `out`, which may grow to at most `limit` bytes.
pub fn unpack_one(packed: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), String> {
    let taken = inflate_raw(packed, out, limit).map_err(|e| match e {
        InflateError::TooLong => {
            format!("a packed chunk inflates past the {limit} bytes the recipe allows")
        }
        InflateError::Invalid(e) => format!("a packed chunk is not valid DEFLATE: {e}"),
        InflateError::Truncated => "a packed chunk's DEFLATE stream is truncated".into(),
    })?;
    if taken != packed.len() {
        return Err(format!(
            "{} bytes follow the DEFLATE stream of a packed chunk",
            packed.len() - taken
        ));
    }
    Ok(())
}

/// Inflates a segment's packed chunks in order into one buffer of at most
/// `limit` bytes.
pub fn unpack<I, E>(chunks: I, limit: usize) -> Result<Vec<u8>, E>
where
    I: IntoIterator<Item = Result<Vec<u8>, E>>,
    E: From<String>,
{
    let mut out = Vec::new();
    for chunk in chunks {
        unpack_one(&chunk?, &mut out, limit).map_err(E::from)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(len: usize) -> Vec<u8> {
        let mut files = crate::fixture::base_files(len / 2048);
        files.truncate(40);
        let mut out = Vec::new();
        for (_, bytes, _) in files {
            out.extend_from_slice(&bytes);
        }
        out
    }

    #[test]
    fn packed_chunks_inflate_to_the_segment_and_are_deterministic() {
        let segment = sample(2 << 20);
        let chunker = Chunker::default();
        let packed = pack(&segment, &chunker);
        let again = pack(&segment, &chunker);
        assert!(packed.iter().zip(&again).all(|(a, b)| a.id == b.id));
        assert_eq!(
            packed.iter().map(|p| p.plain_len).sum::<usize>(),
            segment.len()
        );
        for p in &packed {
            assert_eq!(ChunkId::of(&p.bytes), p.id);
        }
        let out: Vec<u8> =
            unpack::<_, String>(packed.iter().map(|p| Ok(p.bytes.clone())), segment.len()).unwrap();
        assert_eq!(out, segment);
    }

    #[test]
    fn hostile_packed_chunks_are_errors() {
        let segment = sample(256 << 10);
        let one = pack_one(&segment[..60_000]);
        let mut out = Vec::new();
        // Over the limit.
        let err = unpack_one(&one.bytes, &mut out, 10_000).unwrap_err();
        assert!(err.contains("past"), "{err}");
        // Truncated.
        let mut out = Vec::new();
        let err = unpack_one(&one.bytes[..one.bytes.len() / 2], &mut out, 1 << 20).unwrap_err();
        assert!(
            err.contains("truncated") || err.contains("DEFLATE"),
            "{err}"
        );
        // Trailing bytes.
        let mut tail = one.bytes.clone();
        tail.extend_from_slice(b"junk");
        let err = unpack_one(&tail, &mut Vec::new(), 1 << 20).unwrap_err();
        assert!(err.contains("follow"), "{err}");
        // Garbage.
        assert!(unpack_one(&[0xff; 100], &mut Vec::new(), 1 << 20).is_err());
        assert!(unpack_one(&[], &mut Vec::new(), 1 << 20).is_err());
        // A bomb: 16 MiB of zeros is refused at a 1 MiB limit without
        // allocating more than the limit.
        let bomb = pack_one(&vec![0u8; 16 << 20]);
        let mut out = Vec::new();
        assert!(unpack_one(&bomb.bytes, &mut out, 1 << 20).is_err());
        assert!(out.capacity() <= 1 << 20);
    }

    /// `cargo test -p ferry-oci --release pack_levels -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn pack_levels() {
        let mut files = crate::fixture::rootfs_files(8192);
        files.extend(crate::fixture::service_files(2048));
        let tar = crate::fixture::tar(&files).unwrap();
        let whole = crate::fixture::Compressor::Flate2(6).gzip(&tar).unwrap();
        println!("whole tar at level 6: {} bytes", whole.len());
        let chunker = Chunker::default();
        let spans = chunker.chunk_slice(&tar);
        for level in [1, 2, 3, 4, 6, 9] {
            let started = std::time::Instant::now();
            let mut bytes = 0;
            for s in &spans {
                let piece = &tar[s.offset as usize..s.end() as usize];
                let mut c = Compress::new(Compression::new(level), false);
                let mut out = Vec::with_capacity(piece.len() + 1024);
                c.compress_vec(piece, &mut out, FlushCompress::Finish)
                    .unwrap();
                bytes += out.len();
            }
            let secs = started.elapsed().as_secs_f64();
            println!(
                "level {level}: {bytes} bytes of {} ({:.3}), {:.0} MB/s",
                tar.len(),
                bytes as f64 / tar.len() as f64,
                tar.len() as f64 / secs / 1e6
            );
        }
    }
}
