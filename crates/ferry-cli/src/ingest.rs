//! `ferry ingest`: chunk a file, a tree or stdin into a store; print a JSON summary.

use std::fs::File;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use ferry_chunk::{Chunker, ChunkerConfig};
use ferry_store::{Ingest, RocksStore, Source, StoreConfig};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use ferryd::units::parse_size;

#[derive(clap::Args)]
pub struct Args {
    /// Store directory (created if missing).
    #[arg(long)]
    store: PathBuf,
    /// Refuse to grow the store past this size, e.g. 20G.
    #[arg(long, value_parser = parse_size)]
    quota: Option<u64>,
    /// Smallest chunk, e.g. 4K.
    #[arg(long, value_parser = parse_size, default_value = "4K")]
    min_chunk: u64,
    /// Average chunk, e.g. 16K.
    #[arg(long, value_parser = parse_size, default_value = "16K")]
    avg_chunk: u64,
    /// Largest chunk, e.g. 64K.
    #[arg(long, value_parser = parse_size, default_value = "64K")]
    max_chunk: u64,
    /// A file, a directory (every regular file below it), or `-` for stdin.
    path: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let config = ChunkerConfig {
        min_size: to_u32(args.min_chunk, "--min-chunk")?,
        avg_size: to_u32(args.avg_chunk, "--avg-chunk")?,
        max_size: to_u32(args.max_chunk, "--max-chunk")?,
    };
    let chunker = Chunker::new(config).context("invalid chunk sizes")?;
    let sources = sources(&args.path)?;
    let store = RocksStore::open(
        &args.store,
        StoreConfig {
            quota_bytes: args.quota,
            ..StoreConfig::default()
        },
    )?;

    let progress = progress_bar(
        sources.iter().map(|s| s.len).sum(),
        args.path == Path::new("-"),
    );
    let mut ingest = Ingest::new(&store, chunker);
    let mut single_manifest = None;
    let mut failure = None;
    for source in &sources {
        let name = source.path.display().to_string();
        progress.set_message(name.clone());
        let added = if source.path == Path::new("-") {
            ingest
                .add("stdin", std::io::stdin().lock(), |n| progress.inc(n))
                .map_err(anyhow::Error::from)
        } else {
            File::open(&source.path)
                .with_context(|| format!("cannot read {name}"))
                .and_then(|file| Ok(ingest.add(&name, file, |n| progress.inc(n))?))
        };
        match added {
            Ok(id) => single_manifest = Some(id),
            Err(e) => {
                failure = Some(e.context(format!("ingest of {name} stopped")));
                break;
            }
        }
    }
    // Whatever was ingested completely is made durable, even after an error.
    let stats = ingest.finish().context("cannot make the ingest durable")?;
    if let Some(e) = failure {
        progress.abandon();
        return Err(e.context(format!(
            "{} earlier source(s) were stored completely",
            stats.manifests
        )));
    }
    progress.finish_and_clear();

    let mut summary = serde_json::json!({
        "bytes": stats.bytes,
        "chunks": stats.chunks,
        "unique_chunks": stats.unique_chunks,
        "new_bytes": stats.new_bytes,
        "new_chunks": stats.new_chunks,
        "manifests": stats.manifests,
        "seconds": started.elapsed().as_secs_f64(),
    });
    if let (1, Some(id)) = (sources.len(), single_manifest) {
        summary["manifest"] = id.to_string().into();
    }
    println!("{summary}");
    Ok(())
}

/// The files to ingest, or stdin for `-`.
fn sources(path: &Path) -> anyhow::Result<Vec<Source>> {
    if path == Path::new("-") {
        return Ok(vec![Source {
            path: path.to_path_buf(),
            len: 0,
        }]);
    }
    ferry_store::sources(path).map_err(anyhow::Error::msg)
}

fn progress_bar(total: u64, streaming: bool) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = if streaming {
        ProgressBar::new_spinner()
    } else {
        ProgressBar::new(total)
    };
    let template = if streaming {
        "{spinner} {bytes} ({bytes_per_sec}) {msg}"
    } else {
        "{bar:30} {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta}) {wide_msg}"
    };
    bar.set_style(ProgressStyle::with_template(template).expect("static template"));
    bar.set_draw_target(ProgressDrawTarget::stderr_with_hz(4));
    bar
}

fn to_u32(value: u64, flag: &str) -> anyhow::Result<u32> {
    u32::try_from(value).with_context(|| format!("{flag} {value} is too large"))
}
