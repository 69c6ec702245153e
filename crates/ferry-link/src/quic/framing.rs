//! Frames on a QUIC stream: a 4-byte stream header saying what the stream is,
//! then frames, each a big-endian `u32` length and that many bytes.
//!
//! The length is checked against the limit before the frame's buffer is
//! allocated, so a hostile length costs nothing. A stream that ends between
//! frames has ended cleanly; one that ends inside a prefix or a frame is
//! truncated.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt};

/// Bytes in a stream header.
pub(crate) const HEADER_LEN: usize = 4;
/// First bytes on the control stream, from the connecting side.
pub(crate) const CONTROL_OPEN: [u8; HEADER_LEN] = *b"fryC";
/// First bytes on the control stream, from the accepting side: "your
/// certificate was accepted and this is a ferry link".
pub(crate) const CONTROL_ACCEPT: [u8; HEADER_LEN] = *b"fryA";
/// First bytes on a bulk (unidirectional) stream.
pub(crate) const BULK_OPEN: [u8; HEADER_LEN] = *b"fryB";

/// Why a stream did not yield a frame.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FrameError {
    /// The length prefix is over the limit.
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    TooLarge { len: u32, max: u32 },
    /// The stream ended inside a length prefix.
    #[error("stream ended inside a frame's length prefix ({got} of 4 bytes)")]
    TruncatedPrefix { got: usize },
    /// The stream ended inside a frame.
    #[error("stream ended inside a {len}-byte frame")]
    TruncatedFrame { len: u32 },
    /// The stream failed (reset, or the connection was lost).
    #[error("stream failed: {0}")]
    Io(io::Error),
}

/// Why a stream header was not the one expected.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HeaderError {
    /// Other bytes than the header expected.
    #[error("bad stream header {got:02x?}, expected {expected:02x?}")]
    Wrong {
        got: [u8; HEADER_LEN],
        expected: [u8; HEADER_LEN],
    },
    /// The stream ended or failed before the header was complete.
    #[error("stream ended or failed before its header: {0}")]
    Io(io::Error),
}

/// The length prefix of a frame of `len` bytes (which the caller has checked
/// against the limit).
pub(crate) fn prefix(len: u32) -> [u8; 4] {
    len.to_be_bytes()
}

/// Reads the next frame: `Ok(None)` if the stream ended cleanly between frames.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(
    stream: &mut R,
    max: u32,
) -> Result<Option<Vec<u8>>, FrameError> {
    let mut prefix = [0u8; 4];
    let mut got = 0;
    while got < prefix.len() {
        let n = stream
            .read(&mut prefix[got..])
            .await
            .map_err(FrameError::Io)?;
        if n == 0 {
            return match got {
                0 => Ok(None),
                _ => Err(FrameError::TruncatedPrefix { got }),
            };
        }
        got += n;
    }
    let len = u32::from_be_bytes(prefix);
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    // `len` ≤ `max` ≤ u32::MAX fits usize on every platform ferry runs on.
    // Read into spare capacity, which is never zeroed first.
    let mut frame = Vec::with_capacity(len as usize);
    let mut body = stream.take(u64::from(len));
    while frame.len() < len as usize {
        if body.read_buf(&mut frame).await.map_err(FrameError::Io)? == 0 {
            return Err(FrameError::TruncatedFrame { len });
        }
    }
    Ok(Some(frame))
}

/// Reads a stream header and checks it is `expected`.
pub(crate) async fn read_header<R: AsyncRead + Unpin>(
    stream: &mut R,
    expected: [u8; HEADER_LEN],
) -> Result<(), HeaderError> {
    let mut got = [0u8; HEADER_LEN];
    stream.read_exact(&mut got).await.map_err(HeaderError::Io)?;
    if got != expected {
        return Err(HeaderError::Wrong { got, expected });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(frames: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for f in frames {
            out.extend_from_slice(&prefix(f.len() as u32));
            out.extend_from_slice(f);
        }
        out
    }

    #[tokio::test]
    async fn frames_round_trip() {
        let bytes = encode(&[b"hello", b"", &[7u8; 1000]]);
        let mut r = bytes.as_slice();
        assert_eq!(read_frame(&mut r, 1000).await.unwrap().unwrap(), b"hello");
        assert_eq!(read_frame(&mut r, 1000).await.unwrap().unwrap(), b"");
        assert_eq!(
            read_frame(&mut r, 1000).await.unwrap().unwrap(),
            [7u8; 1000]
        );
        assert!(read_frame(&mut r, 1000).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn length_over_limit_is_refused_before_allocating() {
        let mut r: &[u8] = &u32::MAX.to_be_bytes();
        let err = read_frame(&mut r, 16 << 20).await.unwrap_err();
        assert!(
            matches!(err, FrameError::TooLarge { len: u32::MAX, .. }),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "frame of 4294967295 bytes exceeds the 16777216-byte limit"
        );
    }

    #[tokio::test]
    async fn truncation_is_an_error() {
        let bytes = encode(&[b"hello"]);
        for cut in 1..bytes.len() {
            let mut r = &bytes[..cut];
            let err = read_frame(&mut r, 100).await.unwrap_err();
            match err {
                FrameError::TruncatedPrefix { got } => assert!(cut < 4 && got == cut),
                FrameError::TruncatedFrame { len } => assert!(cut >= 4 && len == 5),
                other => panic!("cut {cut}: {other}"),
            }
        }
    }

    #[tokio::test]
    async fn headers_are_checked() {
        let mut r: &[u8] = b"fryBrest";
        read_header(&mut r, BULK_OPEN).await.unwrap();
        let mut r: &[u8] = b"fryB";
        let err = read_header(&mut r, CONTROL_OPEN).await.unwrap_err();
        assert!(matches!(err, HeaderError::Wrong { .. }), "{err}");
        let mut r: &[u8] = b"fr";
        let err = read_header(&mut r, CONTROL_OPEN).await.unwrap_err();
        assert!(matches!(err, HeaderError::Io(_)), "{err}");
    }
}
