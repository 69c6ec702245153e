//! The pack encoding on the wire: a pack body re-coded so that small,
//! per-commit packs cost fewer bytes than git's own format.
//!
//! git compresses every object of a pack with its own zlib stream (2 bytes
//! of header, 4 of checksum, and a cold dictionary for each), and names an
//! `OFS_DELTA` base by its byte distance, which depends on those compressed
//! sizes. The re-coding inflates every object, names `OFS_DELTA` bases by
//! object count instead, and deflates the whole sequence as one stream. The
//! leaf reverses it into an ordinary pack (objects zlib-compressed again),
//! which `git index-pack` then checks object by object; the object ids do
//! not depend on compression, so nothing is lost.
//!
//! Layout of the decoded stream, per object in pack order: git's object
//! header (type, inflated size), then for `OFS_DELTA` the distance in
//! objects as LEB128, for `REF_DELTA` the base's 20-byte id (type 5, not a
//! git type: a `REF_DELTA` whose base id is 40 hex digits, used for commits
//! re-coded as deltas), then exactly `size` inflated bytes.

use std::io::{Read, Write};

use flate2::{Compression, Decompress, FlushDecompress, Status};

/// Which encoding a release's payload uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PackEncoding {
    /// The pack body as git wrote it.
    Raw = 0,
    /// Objects inflated, `OFS_DELTA` by object distance, one deflate stream.
    Deflated = 1,
}

#[derive(Debug, thiserror::Error)]
pub enum PackCodeError {
    #[error("pack object {index}: {reason}")]
    Malformed { index: u32, reason: &'static str },
    #[error("pack encoding: {0}")]
    Io(#[from] std::io::Error),
}

const COMMIT: u8 = 1;
/// Not a git type: a `REF_DELTA` whose base id is written as 40 hex digits.
const REF_DELTA_HEX: u8 = 5;
const OFS_DELTA: u8 = 6;
const REF_DELTA: u8 = 7;

fn malformed(index: u32, reason: &'static str) -> PackCodeError {
    PackCodeError::Malformed { index, reason }
}

/// Reads git's object header at `at`: (type, size, header length).
fn object_header(buf: &[u8], index: u32) -> Result<(u8, u64, usize), PackCodeError> {
    let mut i = 0;
    let mut c = *buf.first().ok_or(malformed(index, "truncated header"))?;
    let kind = (c >> 4) & 7;
    let mut size = u64::from(c & 0x0f);
    let mut shift = 4;
    while c & 0x80 != 0 {
        i += 1;
        c = *buf.get(i).ok_or(malformed(index, "truncated header"))?;
        if shift > 57 {
            return Err(malformed(index, "size too large"));
        }
        size |= u64::from(c & 0x7f) << shift;
        shift += 7;
    }
    Ok((kind, size, i + 1))
}

fn write_object_header(out: &mut Vec<u8>, kind: u8, mut size: u64) {
    let mut c = (kind << 4) | (size & 0x0f) as u8;
    size >>= 4;
    while size > 0 {
        out.push(c | 0x80);
        c = (size & 0x7f) as u8;
        size >>= 7;
    }
    out.push(c);
}

fn write_leb128(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// git's `OFS_DELTA` distance encoding.
fn read_ofs(buf: &[u8], index: u32) -> Result<(u64, usize), PackCodeError> {
    let mut i = 0;
    let mut c = *buf
        .first()
        .ok_or(malformed(index, "truncated delta base"))?;
    let mut ofs = u64::from(c & 0x7f);
    while c & 0x80 != 0 {
        i += 1;
        c = *buf.get(i).ok_or(malformed(index, "truncated delta base"))?;
        if ofs > (u64::MAX >> 8) {
            return Err(malformed(index, "delta base offset too large"));
        }
        ofs = ((ofs + 1) << 7) | u64::from(c & 0x7f);
    }
    Ok((ofs, i + 1))
}

fn write_ofs(out: &mut Vec<u8>, mut ofs: u64) {
    let mut buf = vec![(ofs & 0x7f) as u8];
    ofs >>= 7;
    while ofs > 0 {
        ofs -= 1;
        buf.push(0x80 | (ofs & 0x7f) as u8);
        ofs >>= 7;
    }
    buf.reverse();
    out.extend_from_slice(&buf);
}

/// Inflates the zlib stream at `body[at..]`, which must hold `size` bytes,
/// onto `out`; returns the compressed bytes consumed.
fn inflate_at(
    body: &[u8],
    at: usize,
    size: u64,
    index: u32,
    plain: &mut Vec<u8>,
) -> Result<usize, PackCodeError> {
    let before = plain.len();
    let size_usize = usize::try_from(size).map_err(|_| malformed(index, "object too large"))?;
    if size_usize > body.len().saturating_mul(1100).max(1 << 20) {
        return Err(malformed(
            index,
            "inflated size out of proportion to the pack",
        ));
    }
    let mut inflate = Decompress::new(true);
    loop {
        let done = plain.len() - before;
        plain.reserve(size_usize.saturating_sub(done) + 64);
        let (in_before, out_before) = (inflate.total_in(), inflate.total_out());
        let input = body
            .get(at + in_before as usize..)
            .ok_or(malformed(index, "truncated zlib stream"))?;
        let status = inflate
            .decompress_vec(input, plain, FlushDecompress::Finish)
            .map_err(|_| malformed(index, "corrupt zlib stream"))?;
        if status == Status::StreamEnd {
            break;
        }
        if plain.len() - before > size_usize {
            return Err(malformed(index, "inflated size differs from the header"));
        }
        if inflate.total_in() == in_before && inflate.total_out() == out_before {
            return Err(malformed(index, "truncated zlib stream"));
        }
    }
    if (plain.len() - before) as u64 != size {
        return Err(malformed(index, "inflated size differs from the header"));
    }
    Ok(inflate.total_in() as usize)
}

/// A git delta (as `REF_DELTA` data) that turns `src` into `dst`: copies of
/// runs of at least 8 bytes found in `src`, literal inserts otherwise.
pub fn delta(src: &[u8], dst: &[u8]) -> Vec<u8> {
    const BLOCK: usize = 8;
    let mut out = Vec::with_capacity(dst.len() / 2 + 16);
    for mut v in [src.len() as u64, dst.len() as u64] {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    let mut index: std::collections::HashMap<&[u8], usize> = std::collections::HashMap::new();
    for j in (0..src.len().saturating_sub(BLOCK - 1)).rev() {
        index.insert(&src[j..j + BLOCK], j);
    }
    let mut literal: Vec<u8> = Vec::new();
    let flush = |out: &mut Vec<u8>, literal: &mut Vec<u8>| {
        for part in literal.chunks(127) {
            out.push(part.len() as u8);
            out.extend_from_slice(part);
        }
        literal.clear();
    };
    let mut i = 0;
    while i < dst.len() {
        let found = (i + BLOCK <= dst.len())
            .then(|| index.get(&dst[i..i + BLOCK]).copied())
            .flatten();
        let Some(j) = found else {
            literal.push(dst[i]);
            i += 1;
            continue;
        };
        let mut len = BLOCK;
        while i + len < dst.len()
            && j + len < src.len()
            && dst[i + len] == src[j + len]
            && len < 0xff_ffff
        {
            len += 1;
        }
        flush(&mut out, &mut literal);
        let mut cmd = 0x80u8;
        let mut args = Vec::with_capacity(7);
        for k in 0..4 {
            let b = (j >> (8 * k)) as u8;
            if b != 0 {
                cmd |= 1 << k;
                args.push(b);
            }
        }
        for k in 0..3 {
            let b = (len >> (8 * k)) as u8;
            if b != 0 {
                cmd |= 0x10 << k;
                args.push(b);
            }
        }
        out.push(cmd);
        out.extend_from_slice(&args);
        i += len;
    }
    flush(&mut out, &mut literal);
    out
}

/// Re-codes a pack body (no header, no trailer) of `objects` objects.
/// `bases` are commits the receiver holds (id, raw content): a commit of the
/// pack travels as a delta against the closest of them when that is shorter.
pub fn encode(
    body: &[u8],
    objects: u32,
    bases: &[(crate::Oid, Vec<u8>)],
) -> Result<Vec<u8>, PackCodeError> {
    let mut plain = Vec::with_capacity(body.len() * 3);
    // `objects` comes from the wire: every object takes at least a header
    // byte, so the plain stream's length bounds what is worth reserving.
    let mut starts: Vec<u64> = Vec::with_capacity((objects as usize).min(plain.len()));
    let mut at = 0usize;
    for index in 0..objects {
        starts.push(at as u64);
        let (kind, size, len) = object_header(&body[at..], index)?;
        if kind == OFS_DELTA || kind == REF_DELTA {
            write_object_header(&mut plain, kind, size);
        }
        at += len;
        match kind {
            OFS_DELTA => {
                let (ofs, len) = read_ofs(&body[at..], index)?;
                let base = (starts[index as usize])
                    .checked_sub(ofs)
                    .ok_or(malformed(index, "delta base before the pack"))?;
                let base_index = starts
                    .binary_search(&base)
                    .map_err(|_| malformed(index, "delta base is not an object start"))?;
                write_leb128(&mut plain, u64::from(index) - base_index as u64);
                at += len;
            }
            REF_DELTA => {
                let id = body
                    .get(at..at + 20)
                    .ok_or(malformed(index, "truncated base id"))?;
                plain.extend_from_slice(id);
                at += 20;
            }
            1..=4 => {}
            _ => return Err(malformed(index, "unknown object type")),
        }
        if kind == COMMIT && !bases.is_empty() {
            let mut raw = Vec::new();
            at += inflate_at(body, at, size, index, &mut raw)?;
            let best = bases
                .iter()
                .map(|(id, base)| (id, delta(base, &raw)))
                .min_by_key(|(_, d)| d.len())
                .filter(|(_, d)| d.len() + 20 < raw.len());
            match best {
                Some((id, d)) => {
                    // The base id in hex: the commit's `parent <hex>` line,
                    // right after, then costs a back-reference.
                    write_object_header(&mut plain, REF_DELTA_HEX, d.len() as u64);
                    plain.extend_from_slice(id.to_hex().as_bytes());
                    plain.extend_from_slice(&d);
                }
                None => {
                    write_object_header(&mut plain, kind, size);
                    plain.extend_from_slice(&raw);
                }
            }
            continue;
        }
        if kind != OFS_DELTA && kind != REF_DELTA {
            write_object_header(&mut plain, kind, size);
        }
        at += inflate_at(body, at, size, index, &mut plain)?;
    }
    if at != body.len() {
        return Err(malformed(objects, "bytes after the last object"));
    }
    let mut out = flate2::write::DeflateEncoder::new(Vec::new(), Compression::best());
    out.write_all(&plain)?;
    Ok(out.finish()?)
}

/// Reverses [`encode`]: writes an ordinary pack body of `objects` objects.
pub fn decode(encoded: impl Read, objects: u32, out: &mut Vec<u8>) -> Result<(), PackCodeError> {
    let mut plain = Vec::new();
    flate2::read::DeflateDecoder::new(encoded)
        .take(2 << 30)
        .read_to_end(&mut plain)?;
    // `objects` comes from the wire: every object takes at least a header
    // byte, so the plain stream's length bounds what is worth reserving.
    let mut starts: Vec<u64> = Vec::with_capacity((objects as usize).min(plain.len()));
    let mut at = 0usize;
    for index in 0..objects {
        starts.push(out.len() as u64);
        let (kind, size, len) = object_header(&plain[at..], index)?;
        write_object_header(
            out,
            if kind == REF_DELTA_HEX {
                REF_DELTA
            } else {
                kind
            },
            size,
        );
        at += len;
        match kind {
            OFS_DELTA => {
                let mut distance = 0u64;
                let mut shift = 0;
                loop {
                    let c = *plain
                        .get(at)
                        .ok_or(malformed(index, "truncated delta base"))?;
                    at += 1;
                    if shift > 63 {
                        return Err(malformed(index, "delta base distance too large"));
                    }
                    distance |= u64::from(c & 0x7f) << shift;
                    shift += 7;
                    if c & 0x80 == 0 {
                        break;
                    }
                }
                if distance == 0 || distance > u64::from(index) {
                    return Err(malformed(index, "delta base is not an earlier object"));
                }
                let base = starts[(u64::from(index) - distance) as usize];
                write_ofs(out, starts[index as usize] - base);
            }
            REF_DELTA => {
                let id = plain
                    .get(at..at + 20)
                    .ok_or(malformed(index, "truncated base id"))?;
                out.extend_from_slice(id);
                at += 20;
            }
            REF_DELTA_HEX => {
                let id = plain
                    .get(at..at + 40)
                    .and_then(|h| crate::Oid::from_hex(std::str::from_utf8(h).ok()?))
                    .ok_or(malformed(index, "truncated or bad base id"))?;
                out.extend_from_slice(&id.0);
                at += 40;
            }
            1..=4 => {}
            _ => return Err(malformed(index, "unknown object type")),
        }
        let data = usize::try_from(size)
            .ok()
            .and_then(|s| plain.get(at..at.checked_add(s)?))
            .ok_or(malformed(index, "truncated object data"))?;
        let mut z = flate2::write::ZlibEncoder::new(&mut *out, Compression::default());
        z.write_all(data)?;
        z.finish()?;
        at += data.len();
    }
    if at != plain.len() {
        return Err(malformed(objects, "bytes after the last object"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_survive_their_encoding() {
        for ofs in [0u64, 1, 127, 128, 16_511, 16_512, 1 << 40] {
            let mut buf = Vec::new();
            write_ofs(&mut buf, ofs);
            assert_eq!(read_ofs(&buf, 0).unwrap(), (ofs, buf.len()), "{ofs}");
        }
        for size in [0u64, 15, 16, 1 << 20, u64::from(u32::MAX)] {
            let mut buf = Vec::new();
            write_object_header(&mut buf, 3, size);
            assert_eq!(object_header(&buf, 0).unwrap(), (3, size, buf.len()));
        }
    }

    /// git's patch-delta, to check [`delta`].
    fn apply(src: &[u8], d: &[u8]) -> Vec<u8> {
        let mut i = 0;
        let mut varint = || {
            let (mut v, mut shift) = (0usize, 0);
            loop {
                let c = d[i];
                i += 1;
                v |= usize::from(c & 0x7f) << shift;
                shift += 7;
                if c & 0x80 == 0 {
                    return v;
                }
            }
        };
        assert_eq!(varint(), src.len());
        let len = varint();
        let mut out = Vec::new();
        while i < d.len() {
            let cmd = d[i];
            i += 1;
            if cmd & 0x80 != 0 {
                let (mut off, mut size) = (0usize, 0usize);
                for k in 0..4 {
                    if cmd & (1 << k) != 0 {
                        off |= usize::from(d[i]) << (8 * k);
                        i += 1;
                    }
                }
                for k in 0..3 {
                    if cmd & (0x10 << k) != 0 {
                        size |= usize::from(d[i]) << (8 * k);
                        i += 1;
                    }
                }
                out.extend_from_slice(&src[off..off + size]);
            } else {
                out.extend_from_slice(&d[i..i + usize::from(cmd)]);
                i += usize::from(cmd);
            }
        }
        assert_eq!(out.len(), len);
        out
    }

    #[test]
    fn a_delta_rebuilds_its_target() {
        let src = b"tree 0123456789abcdef\nparent 1111\nauthor Ops Bot <ops@example.com> 1700000000 +0000\ncommitter Ops Bot <ops@example.com> 1700000000 +0000\n\nDeploy change 1\n".to_vec();
        let dst = b"tree fedcba9876543210\nparent 2222\nauthor Ops Bot <ops@example.com> 1700000600 +0000\ncommitter Ops Bot <ops@example.com> 1700000600 +0000\n\nDeploy change 2\n".to_vec();
        let d = delta(&src, &dst);
        assert!(d.len() < dst.len() / 2, "{} of {}", d.len(), dst.len());
        assert_eq!(apply(&src, &d), dst);
        let long: Vec<u8> = (0..1000u32).flat_map(|i| i.to_le_bytes()).collect();
        assert_eq!(
            apply(&long, &delta(&long, &long[100..3000])),
            &long[100..3000]
        );
        assert_eq!(apply(b"", &delta(b"", &long)), long);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut rng = 0x1234_5678_u64;
        for len in 0..200usize {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1);
                    (rng >> 33) as u8
                })
                .collect();
            let _ = encode(&bytes, 3, &[]);
            let _ = decode(bytes.as_slice(), 3, &mut Vec::new());
            let coded = {
                let mut e = flate2::write::DeflateEncoder::new(Vec::new(), Compression::fast());
                e.write_all(&bytes).unwrap();
                e.finish().unwrap()
            };
            let _ = decode(coded.as_slice(), 3, &mut Vec::new());
        }
    }
}
