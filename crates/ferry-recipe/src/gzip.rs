//! One gzip member (RFC 1952) taken apart: its header verbatim, its DEFLATE
//! body, and the trailer checked against the inflated content.

use flate2::{Crc, Decompress, FlushDecompress, Status};

const FHCRC: u8 = 0x02;
const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;
const RESERVED: u8 = 0xe0;

/// A blob that is exactly one gzip member, nothing before or after it.
pub struct Member<'a> {
    pub header: &'a [u8],
    pub body: &'a [u8],
    pub plain: Vec<u8>,
}

/// Why a blob is not a single gzip member this crate can work with. Not an
/// error for the caller: such a blob travels as it is.
pub type NotGzip = String;

/// Splits `blob` into header, DEFLATE body and trailer, inflating the body
/// (at most `max_plain` bytes) and checking the trailer's CRC-32 and size.
pub fn parse(blob: &[u8], max_plain: u64) -> Result<Member<'_>, NotGzip> {
    let header_len = header_len(blob)?;
    let rest = &blob[header_len..];
    let limit = usize::try_from(max_plain).unwrap_or(usize::MAX);
    let mut plain = Vec::with_capacity(rest.len().saturating_mul(3).min(limit));
    let body_len = inflate_raw(rest, &mut plain, limit).map_err(|e| match e {
        InflateError::TooLong => format!("inflates to more than {max_plain} bytes"),
        InflateError::Invalid(e) => format!("DEFLATE body: {e}"),
        InflateError::Truncated => "DEFLATE body is truncated".into(),
    })?;
    let trailer = &rest[body_len..];
    if trailer.len() != 8 {
        return Err(if trailer.len() < 8 {
            "gzip trailer is truncated".into()
        } else {
            format!("{} bytes follow the first gzip member", trailer.len() - 8)
        });
    }
    let mut crc = Crc::new();
    crc.update(&plain);
    let want_crc = u32::from_le_bytes(trailer[..4].try_into().expect("4 bytes"));
    let want_size = u32::from_le_bytes(trailer[4..].try_into().expect("4 bytes"));
    if crc.sum() != want_crc || plain.len() as u32 != want_size {
        return Err("gzip trailer does not match the content".into());
    }
    Ok(Member {
        header: &blob[..header_len],
        body: &rest[..body_len],
        plain,
    })
}

/// Why [`inflate_raw`] stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InflateError {
    /// The output would pass the limit.
    TooLong,
    /// Not valid DEFLATE.
    Invalid(String),
    /// The input ends before the stream does.
    Truncated,
}

/// Inflates the raw DEFLATE stream at the start of `input`, appending to
/// `out` but never letting it pass `limit` bytes (memory grows with the
/// output, not with what a hostile stream claims). Returns how many bytes
/// of `input` the stream took; what follows is the caller's.
pub fn inflate_raw(input: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<usize, InflateError> {
    let mut inflate = Decompress::new(false);
    loop {
        if out.len() == out.capacity() {
            if out.len() >= limit {
                return Err(InflateError::TooLong);
            }
            let more = out.len().max(64 << 10).min(limit - out.len());
            out.reserve_exact(more);
        }
        let consumed = inflate.total_in() as usize;
        let before = (inflate.total_in(), inflate.total_out());
        let status = inflate
            .decompress_vec(&input[consumed..], out, FlushDecompress::None)
            .map_err(|e| InflateError::Invalid(e.to_string()))?;
        if out.len() > limit {
            return Err(InflateError::TooLong);
        }
        match status {
            Status::StreamEnd => return Ok(inflate.total_in() as usize),
            Status::Ok | Status::BufError => {
                let stuck = (inflate.total_in(), inflate.total_out()) == before;
                let input_done = inflate.total_in() as usize >= input.len();
                if (input_done || stuck) && out.len() < out.capacity() {
                    return Err(InflateError::Truncated);
                }
            }
        }
    }
}

/// Length of the member header at the start of `blob`.
pub fn header_len(blob: &[u8]) -> Result<usize, NotGzip> {
    if blob.len() < 10 || blob[0] != 0x1f || blob[1] != 0x8b || blob[2] != 8 {
        return Err("not a gzip member with DEFLATE content".into());
    }
    let flags = blob[3];
    if flags & RESERVED != 0 {
        return Err("gzip header sets reserved flags".into());
    }
    let mut at = 10;
    let need = |at: usize| -> Result<(), NotGzip> {
        if at > blob.len() {
            Err("gzip header is truncated".into())
        } else {
            Ok(())
        }
    };
    if flags & FEXTRA != 0 {
        need(at + 2)?;
        at += 2 + usize::from(u16::from_le_bytes([blob[at], blob[at + 1]]));
        need(at)?;
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            let end = blob[at.min(blob.len())..]
                .iter()
                .position(|&b| b == 0)
                .ok_or("gzip header string is not terminated")?;
            at += end + 1;
        }
    }
    if flags & FHCRC != 0 {
        at += 2;
        need(at)?;
    }
    Ok(at)
}

/// A whole member: `header`, then `body`, then the trailer for `plain`.
pub fn assemble(header: &[u8], body: &[u8], plain: &[u8]) -> Vec<u8> {
    let mut crc = Crc::new();
    crc.update(plain);
    let mut blob = Vec::with_capacity(header.len() + body.len() + 8);
    blob.extend_from_slice(header);
    blob.extend_from_slice(body);
    blob.extend_from_slice(&crc.sum().to_le_bytes());
    blob.extend_from_slice(&(plain.len() as u32).to_le_bytes());
    blob
}
