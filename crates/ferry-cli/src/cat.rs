//! `ferry cat`: reassemble an object from a store, verified, to stdout.

use std::path::PathBuf;

use anyhow::{Context, anyhow};
use ferry_chunk::ManifestId;
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
    store
        .read_object(&manifest, std::io::BufWriter::new(stdout))
        .with_context(|| format!("reassembling manifest {id}"))
}

fn parse_manifest_id(text: &str) -> anyhow::Result<ManifestId> {
    ManifestId::from_hex(text)
        .ok_or_else(|| anyhow!("{text:?} is not a manifest id (64 hex digits)"))
}
