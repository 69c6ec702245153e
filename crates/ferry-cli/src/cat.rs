//! `ferry cat`: reassemble an object from a store, verified, to stdout.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, anyhow};
use ferry_chunk::{ManifestId, Reassembler};
use ferry_store::{RocksStore, StoreConfig};

#[derive(clap::Args)]
pub struct Args {
    /// Store directory.
    #[arg(long)]
    store: PathBuf,
    /// Manifest id (hex), as printed by `ferry ingest`.
    manifest: String,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let id = parse_manifest_id(&args.manifest)?;
    let store = RocksStore::open(&args.store, StoreConfig::default())?;
    let manifest = store
        .get_manifest(id)?
        .ok_or_else(|| anyhow!("manifest {id} is not in {}", args.store.display()))?;
    let stdout = std::io::stdout().lock();
    let mut out = Reassembler::new(&manifest, std::io::BufWriter::new(stdout));
    for (index, chunk_id) in manifest.entries().iter().map(|entry| entry.id).enumerate() {
        let bytes = store.get_chunk(chunk_id)?.ok_or_else(|| {
            anyhow!("chunk {index} ({chunk_id}) of manifest {id} is missing from the store")
        })?;
        out.push(&bytes)
            .with_context(|| format!("reassembling manifest {id}"))?;
    }
    out.finish()
        .with_context(|| format!("reassembling manifest {id}"))?
        .flush()?;
    Ok(())
}

fn parse_manifest_id(text: &str) -> anyhow::Result<ManifestId> {
    ManifestId::from_hex(text)
        .ok_or_else(|| anyhow!("{text:?} is not a manifest id (64 hex digits)"))
}
