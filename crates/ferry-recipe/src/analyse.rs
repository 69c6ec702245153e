//! Finding a recipe for a blob: inflate it, then replay candidate encoders
//! (cheapest test first: a prefix of the output) until one makes the same
//! bytes, else let preflate describe the stream with corrections.

use std::time::{Duration, Instant};

use crate::gzip;
use crate::recipe::{self, Encoder, MAX_HEADER, Recipe};

/// Bounds on the work one blob may cost.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest uncompressed content analysed; bigger blobs travel as they are.
    pub max_plain: u64,
    /// Largest corrections preflate may need, per mille of the blob; more
    /// means the stream is too unlike any encoder preflate models.
    pub max_corrections_per_mille: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_plain: 2 << 30,
            max_corrections_per_mille: 50,
        }
    }
}

/// A recipe found and verified: `recipe.rebuild(&segment)` gave the blob.
#[derive(Debug)]
pub struct Analysis {
    pub recipe: Recipe,
    /// The uncompressed content, then any corrections.
    pub segment: Vec<u8>,
    /// How long the verifying rebuild took (what a leaf will spend).
    pub rebuild_time: Duration,
    /// Encoders tried before this one.
    pub rejected: usize,
}

/// What became of a blob.
#[derive(Debug)]
pub enum Outcome {
    Found(Analysis),
    /// No recipe: the blob travels as it is, for this reason.
    AsIs(String),
}

/// The output a probe compares: how much input, and how many trailing bytes
/// of the probe's output may differ from the real stream (the blocks still
/// open when the probe's input ended).
fn probe(encoder: Encoder) -> (usize, usize) {
    match encoder {
        Encoder::Pgzip { block_size, .. } => {
            let block = block_size as usize;
            (4 * block, block + (64 << 10))
        }
        _ => (4 << 20, 256 << 10),
    }
}

/// The encoders worth trying for a header, most likely first.
fn candidates(header: &[u8]) -> Vec<Encoder> {
    let os = header[9];
    let xfl = header[8];
    let mut list = Vec::new();
    // Go's and pgzip's writers say "unknown OS" (255); anything else came
    // from another encoder and goes straight to preflate.
    if os == 255 {
        let hinted: &[i8] = match xfl {
            2 => &[9],
            4 => &[1],
            _ => &[-1, 2, 3, 4, 5, 7, 8, -2, 0],
        };
        for &level in hinted {
            for block_size in [1 << 20, 256 << 10, 512 << 10] {
                list.push(Encoder::Pgzip { level, block_size });
            }
            list.push(Encoder::Go { level });
        }
    }
    list
}

/// Finds and verifies a recipe for `blob`, or says why there is none.
pub fn analyse(blob: &[u8], limits: &Limits) -> Outcome {
    let member = match gzip::parse(blob, limits.max_plain) {
        Ok(member) => member,
        Err(reason) => return Outcome::AsIs(reason),
    };
    if member.header.len() > MAX_HEADER {
        return Outcome::AsIs(format!("gzip header of {} bytes", member.header.len()));
    }
    let mut rejected = 0;
    for encoder in candidates(member.header) {
        let (probe_len, slack) = probe(encoder);
        if member.plain.len() > probe_len {
            let Ok(trial) = recipe::deflate(encoder, &member.plain[..probe_len], &[]) else {
                continue;
            };
            let agree = trial.len().saturating_sub(slack);
            if member.body.len() < agree || trial[..agree] != member.body[..agree] {
                rejected += 1;
                continue;
            }
        }
        if let Some(found) = verify(encoder, &member, blob, Vec::new()) {
            return Outcome::Found(Analysis { rejected, ..found });
        }
        rejected += 1;
    }
    match preflate(&member, blob, limits) {
        Ok(found) => Outcome::Found(Analysis { rejected, ..found }),
        Err(reason) => Outcome::AsIs(reason),
    }
}

fn preflate(member: &gzip::Member<'_>, blob: &[u8], limits: &Limits) -> Result<Analysis, String> {
    let config = preflate_rs::PreflateConfig {
        plain_text_limit: usize::try_from(limits.max_plain).unwrap_or(usize::MAX),
        // verify() below rebuilds the whole blob anyway.
        verify_compression: false,
        ..Default::default()
    };
    let (result, _) = preflate_rs::preflate_whole_deflate_stream(member.body, &config)
        .map_err(|e| format!("no encoder matched, and preflate failed: {}", e.message()))?;
    if result.compressed_size != member.body.len() {
        return Err("preflate did not take the whole DEFLATE body".into());
    }
    let limit = blob.len() as u64 * limits.max_corrections_per_mille / 1000;
    if result.corrections.len() as u64 > limit {
        return Err(format!(
            "no encoder matched, and preflate needs {} bytes of corrections (limit {limit})",
            result.corrections.len()
        ));
    }
    verify(Encoder::Preflate, member, blob, result.corrections)
        .ok_or_else(|| "preflate's rebuild differs from the blob".to_string())
}

/// Rebuilds the whole blob with `encoder` and keeps the recipe only if the
/// bytes are the same.
fn verify(
    encoder: Encoder,
    member: &gzip::Member<'_>,
    blob: &[u8],
    corrections: Vec<u8>,
) -> Option<Analysis> {
    let recipe = Recipe {
        encoder,
        header: member.header.to_vec(),
        plain_length: member.plain.len() as u64,
    };
    let started = Instant::now();
    let rebuilt = recipe.rebuild_from(&member.plain, &corrections).ok()?;
    let rebuild_time = started.elapsed();
    if rebuilt != blob {
        return None;
    }
    let mut segment = Vec::with_capacity(member.plain.len() + corrections.len());
    segment.extend_from_slice(&member.plain);
    segment.extend_from_slice(&corrections);
    Some(Analysis {
        recipe,
        segment,
        rebuild_time,
        rejected: 0,
    })
}
