//! [`Recipe`]: how a gzip blob is made again from its segment of the
//! payload (wire form `ferry.v1.GzipRecipe`, a few dozen bytes).

use ferry_proto::v1::{self, gzip_recipe};
use prost::Message;

use crate::{RecipeError, goflate, gzip, pgzip};

/// The encoder a recipe replays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoder {
    /// Go's `compress/flate` at this level (-2..=9).
    Go { level: i8 },
    /// klauspost/pgzip at this level with blocks of this many bytes.
    Pgzip { level: i8, block_size: u32 },
    /// preflate: the plain content plus corrections rebuild the stream.
    Preflate,
}

impl std::fmt::Display for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Encoder::Go { level } => write!(f, "go-flate level {level}"),
            Encoder::Pgzip { level, block_size } => {
                write!(f, "pgzip level {level} block {} KiB", block_size / 1024)
            }
            Encoder::Preflate => f.write_str("preflate"),
        }
    }
}

/// How one gzip blob is rebuilt: the segment holds `plain_length` bytes of
/// uncompressed content, then (for [`Encoder::Preflate`]) corrections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipe {
    pub encoder: Encoder,
    /// The gzip member header, verbatim.
    pub header: Vec<u8>,
    pub plain_length: u64,
}

/// The encoder behaviour this build replays (`GzipRecipe.encoder_version`).
pub const ENCODER_VERSION: u32 = 1;

/// Longest gzip header a recipe may carry (a name or comment can be long,
/// but a recipe must stay small).
pub const MAX_HEADER: usize = 4096;

impl Recipe {
    /// The wire form.
    pub fn encode(&self) -> Vec<u8> {
        let (encoder, level, block_size) = match self.encoder {
            Encoder::Go { level } => (gzip_recipe::Encoder::Go, level, 0),
            Encoder::Pgzip { level, block_size } => {
                (gzip_recipe::Encoder::Pgzip, level, block_size)
            }
            Encoder::Preflate => (gzip_recipe::Encoder::Preflate, 0, 0),
        };
        v1::GzipRecipe {
            encoder: encoder as i32,
            level: i32::from(level),
            block_size,
            header: self.header.clone(),
            plain_length: self.plain_length,
            encoder_version: ENCODER_VERSION,
        }
        .encode_to_vec()
    }

    /// Decodes and validates a recipe read from the wire.
    pub fn decode(bytes: &[u8]) -> Result<Self, RecipeError> {
        let wire = v1::GzipRecipe::decode(bytes)
            .map_err(|e| RecipeError::Invalid(format!("not valid protobuf: {e}")))?;
        if wire.encoder_version != ENCODER_VERSION {
            return Err(RecipeError::Unsupported(format!(
                "encoder version {} (this node replays version {ENCODER_VERSION})",
                wire.encoder_version
            )));
        }
        let level = i8::try_from(wire.level)
            .ok()
            .filter(|l| (-2..=9).contains(l))
            .ok_or_else(|| RecipeError::Invalid(format!("level {} out of range", wire.level)))?;
        let encoder = match gzip_recipe::Encoder::try_from(wire.encoder) {
            Ok(gzip_recipe::Encoder::Go) => Encoder::Go { level },
            Ok(gzip_recipe::Encoder::Pgzip) if wire.block_size > 0 => Encoder::Pgzip {
                level,
                block_size: wire.block_size,
            },
            Ok(gzip_recipe::Encoder::Preflate) => Encoder::Preflate,
            _ => {
                return Err(RecipeError::Unsupported(format!(
                    "encoder {} (block size {})",
                    wire.encoder, wire.block_size
                )));
            }
        };
        if wire.header.len() > MAX_HEADER || gzip::header_len(&wire.header) != Ok(wire.header.len())
        {
            return Err(RecipeError::Invalid(
                "the gzip header is not a valid header".into(),
            ));
        }
        Ok(Recipe {
            encoder,
            header: wire.header,
            plain_length: wire.plain_length,
        })
    }

    /// The blob this recipe makes from `segment`. The caller checks its
    /// digest before trusting it; a recipe that cannot run is an error.
    pub fn rebuild(&self, segment: &[u8]) -> Result<Vec<u8>, RecipeError> {
        let split = usize::try_from(self.plain_length)
            .ok()
            .filter(|&n| n <= segment.len())
            .ok_or_else(|| {
                RecipeError::Invalid(format!(
                    "plain length {} exceeds the {}-byte segment",
                    self.plain_length,
                    segment.len()
                ))
            })?;
        let (plain, extra) = segment.split_at(split);
        self.rebuild_from(plain, extra)
    }

    /// The blob this recipe makes from `plain` and `extra` (corrections).
    pub(crate) fn rebuild_from(&self, plain: &[u8], extra: &[u8]) -> Result<Vec<u8>, RecipeError> {
        if !matches!(self.encoder, Encoder::Preflate) && !extra.is_empty() {
            return Err(RecipeError::Invalid(format!(
                "{} bytes of corrections for an encoder that takes none",
                extra.len()
            )));
        }
        let body = deflate(self.encoder, plain, extra)?;
        Ok(gzip::assemble(&self.header, &body, plain))
    }
}

/// The DEFLATE body `encoder` makes of `plain` (with `corrections` for
/// preflate).
pub(crate) fn deflate(
    encoder: Encoder,
    plain: &[u8],
    corrections: &[u8],
) -> Result<Vec<u8>, RecipeError> {
    let unsupported = || RecipeError::Unsupported(encoder.to_string());
    match encoder {
        Encoder::Go { level } => goflate::compress(plain, level.into()).ok_or_else(unsupported),
        Encoder::Pgzip { level, block_size } => {
            pgzip::compress(plain, level.into(), block_size as usize).ok_or_else(unsupported)
        }
        Encoder::Preflate => preflate_rs::recreate_whole_deflate_stream(plain, corrections)
            .map_err(|e| RecipeError::Rebuild(format!("preflate: {}", e.message()))),
    }
}
