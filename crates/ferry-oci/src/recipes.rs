//! Rebuild recipes at the base: which gzip layers travel as their packed
//! content plus a recipe ([`crate::pack`], `ferry_recipe`), what was found
//! for each blob already (so a watch that publishes again costs an inflate
//! and packing, not another search), and the blobs a leaf could not rebuild
//! (never again sent with a recipe; kept on disk when [`Recipes::persistent`]).

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use crate::Digest;

/// Corrections a preflate recipe may carry, per mille of the blob: the
/// base's analysis refuses more, and the leaf refuses a segment that
/// inflates past the recipe's plain length plus this.
pub const MAX_CORRECTIONS_PER_MILLE: u64 = 50;

/// Whether `media_type` names a gzip-compressed layer.
pub fn is_gzip_layer(media_type: &str) -> bool {
    media_type.ends_with("+gzip") || media_type.ends_with(".tar.gzip")
}

/// The most a recipe's segment may inflate to for a blob of `size` bytes
/// whose recipe says `plain_length`.
pub fn max_segment(plain_length: u64, size: u64) -> u64 {
    plain_length.saturating_add(size.saturating_mul(MAX_CORRECTIONS_PER_MILLE) / 1000)
}

/// What is known about one blob.
#[derive(Debug, Clone)]
pub(crate) enum Known {
    /// A verified recipe (wire form) and the corrections its segment ends with.
    Recipe {
        recipe: Vec<u8>,
        corrections: Vec<u8>,
        rebuild_time: Duration,
    },
    /// Travels as it is, for this reason.
    AsIs(String),
}

/// How gzip layers are staged (see the module docs).
pub struct Recipes {
    /// Look for recipes at all.
    pub enabled: bool,
    /// The largest gzip blob analysed (it is held in memory, with its
    /// content); bigger ones travel as they are.
    pub max_blob: u64,
    pub limits: ferry_recipe::Limits,
    known: Mutex<BTreeMap<Digest, Known>>,
    never: Mutex<BTreeSet<Digest>>,
    dir: Option<PathBuf>,
}

/// Entries kept in memory before the cache starts over.
const MAX_KNOWN: usize = 4096;

impl Default for Recipes {
    fn default() -> Self {
        Recipes {
            enabled: true,
            max_blob: 1 << 30,
            limits: ferry_recipe::Limits {
                max_plain: 4 << 30,
                max_corrections_per_mille: MAX_CORRECTIONS_PER_MILLE,
            },
            known: Mutex::default(),
            never: Mutex::default(),
            dir: None,
        }
    }
}

impl Recipes {
    /// Every blob travels as it is.
    pub fn disabled() -> Self {
        Recipes {
            enabled: false,
            ..Recipes::default()
        }
    }

    /// Recipes whose never-list lives in `dir/never.json`.
    pub fn persistent(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("never.json");
        let never: BTreeSet<Digest> = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeSet::new(),
            Err(e) => return Err(e),
        };
        Ok(Recipes {
            never: Mutex::new(never),
            dir: Some(dir.to_owned()),
            ..Recipes::default()
        })
    }

    /// Whether `digest` must travel as it is (a leaf could not rebuild it).
    pub fn is_never(&self, digest: &Digest) -> bool {
        lock(&self.never).contains(digest)
    }

    /// Marks `digests` as never to be sent with a recipe again; durable
    /// (written atomically) when the recipes are persistent. Returns
    /// whether any was new.
    pub fn never_again(&self, digests: &[Digest]) -> io::Result<bool> {
        let mut never = lock(&self.never);
        let before = never.len();
        never.extend(digests.iter().copied());
        if never.len() == before {
            return Ok(false);
        }
        if let Some(dir) = &self.dir {
            let path = dir.join("never.json");
            let tmp = dir.join("never.json.tmp");
            let bytes = serde_json::to_vec_pretty(&*never).expect("digests serialize");
            let mut file = std::fs::File::create(&tmp)?;
            io::Write::write_all(&mut file, &bytes)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(true)
    }

    pub(crate) fn known(&self, digest: &Digest) -> Option<Known> {
        lock(&self.known).get(digest).cloned()
    }

    pub(crate) fn remember(&self, digest: Digest, known: Known) {
        let mut map = lock(&self.known);
        if map.len() >= MAX_KNOWN {
            map.clear();
        }
        map.insert(digest, known);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How one layer was staged.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LayerReport {
    pub digest: Digest,
    pub media_type: String,
    /// The recipe's encoder (`preflate`, `go-flate level -1`, ...), or
    /// `as is: <reason>`.
    pub recipe: String,
    /// Whether a recipe is used.
    pub rebuilt: bool,
    /// Bytes of the compressed blob.
    pub blob_bytes: u64,
    /// Bytes of its payload segment (packed chunks, or the blob itself).
    pub segment_bytes: u64,
    /// Bytes of that segment in chunks the store did not hold: what will
    /// cross the next link at most.
    pub new_bytes: u64,
    /// The uncompressed content (0 without a recipe).
    pub plain_bytes: u64,
    /// What a leaf spends rebuilding it (the base's verifying rebuild).
    pub rebuild_ms: f64,
    /// The recipe (or the reason for none) was known from an earlier
    /// publish: no search this time.
    pub cached: bool,
}

impl std::fmt::Display for LayerReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {} B gzip, {} B new of {} B to send",
            self.digest, self.recipe, self.blob_bytes, self.new_bytes, self.segment_bytes
        )?;
        if self.rebuilt {
            write!(
                f,
                ", {} B plain, rebuild {:.0} ms",
                self.plain_bytes, self.rebuild_ms
            )?;
        }
        if self.cached {
            f.write_str(" (known)")?;
        }
        Ok(())
    }
}
