//! `ferry export | import | export-receipts`: removable media for air-gapped
//! sites, through the running daemon (which reads and writes the files).

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, anyhow, bail};
use ferryd::admin::{Request, request, stream};
use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::daemon::Common;

#[derive(clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    common: Common,
    /// The site: a peer name, a node id, or group:NAME.
    #[arg(long)]
    to: String,
    /// The volume file (with several volumes: PATH.1-of-N, PATH.2-of-N…).
    #[arg(long)]
    out: PathBuf,
    /// Split into volumes of at most this size (e.g. 4.7G for a DVD).
    #[arg(long, value_parser = ferryd::units::parse_size)]
    max_size: Option<u64>,
    /// Everything the bundles need, whatever the site's receipts say it holds.
    #[arg(long)]
    full: bool,
}

#[derive(clap::Args)]
pub struct ImportArgs {
    #[command(flatten)]
    common: Common,
    /// Volume or receipts files, imported in the order given.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

#[derive(clap::Args)]
pub struct ReceiptsArgs {
    #[command(flatten)]
    common: Common,
    /// Where to write the receipts.
    #[arg(long)]
    out: PathBuf,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .context("starting the runtime")
}

fn absolute(path: &std::path::Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))
}

pub fn export(args: ExportArgs) -> anyhow::Result<()> {
    let req = Request::Export {
        to: args.to,
        out: absolute(&args.out)?,
        max_bytes: args.max_size,
        full: args.full,
    };
    let bar = if std::io::stderr().is_terminal() && !args.common.json {
        ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_message("exporting");
    let mut done = None;
    let mut error = None;
    runtime()?
        .block_on(stream(&args.common.socket, &req, |line| {
            if let Some(total) = line["planned"]["chunk_bytes"].as_u64() {
                bar.set_length(total);
            }
            if let Some(n) = line["progress"].as_u64() {
                bar.set_position(n);
            }
            if let Some(e) = line["error"].as_str() {
                error = Some(e.to_string());
                return false;
            }
            if !line["done"].is_null() {
                done = Some(line["done"].clone());
                return false;
            }
            true
        }))
        .map_err(|e| anyhow!(e))?;
    bar.finish_and_clear();
    if let Some(e) = error {
        bail!(e);
    }
    let done = done.ok_or_else(|| anyhow!("ferryd stopped before the export finished"))?;
    if args.common.json {
        println!("{}", serde_json::to_string_pretty(&done)?);
        return Ok(());
    }
    let n = |key: &str| done[key].as_u64().unwrap_or(0);
    for (file, bytes) in done["files"]
        .as_array()
        .into_iter()
        .flatten()
        .zip(done["volume_bytes"].as_array().into_iter().flatten())
    {
        println!(
            "wrote     {}  ({})",
            file.as_str().unwrap_or("?"),
            HumanBytes(bytes.as_u64().unwrap_or(0))
        );
    }
    println!(
        "inside    {} bundle(s) for {} ({} of payload), {} manifest(s), {} chunk(s) ({})",
        n("bundles"),
        done["target"].as_str().unwrap_or("?"),
        HumanBytes(n("payload_bytes")),
        n("manifests"),
        n("chunks"),
        HumanBytes(n("chunk_bytes")),
    );
    println!(
        "left out {} chunk(s) ({}) the site's receipts say it holds",
        n("skipped_chunks"),
        HumanBytes(n("skipped_bytes"))
    );
    let full = n("full_bytes").max(1);
    println!(
        "saved     {} against a full export of {} ({:.1} %)",
        HumanBytes(n("saved_bytes")),
        HumanBytes(n("full_bytes")),
        100.0 * n("saved_bytes") as f64 / full as f64
    );
    Ok(())
}

pub fn import(args: ImportArgs) -> anyhow::Result<()> {
    let rt = runtime()?;
    let mut failed = false;
    for path in &args.paths {
        let req = Request::Import {
            path: absolute(path)?,
        };
        let report = rt
            .block_on(request(&args.common.socket, &req))
            .map_err(|e| anyhow!(e))?;
        if args.common.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print_report(&report);
        }
        let problems = report["problems"].as_array().map_or(0, Vec::len);
        failed |= problems > 0;
    }
    if failed {
        bail!("some records were rejected (see above); the valid rest was kept");
    }
    Ok(())
}

fn print_report(r: &serde_json::Value) {
    let v = &r["volume"];
    let n = |key: &str| r[key].as_u64().unwrap_or(0);
    let len = |key: &str| r[key].as_array().map_or(0, Vec::len);
    println!(
        "{}: {} volume {} of {} from {}, {} record(s) read",
        r["file"].as_str().unwrap_or("?"),
        v["contents"].as_str().unwrap_or("?"),
        v["index"],
        v["count"],
        &v["source"].as_str().unwrap_or("?")[..16.min(v["source"].as_str().unwrap_or("?").len())],
        n("records"),
    );
    if v["contents"] == "receipts" {
        println!("  released  custody of {} bundle(s)", len("released"));
    } else {
        println!(
            "  chunks    {} stored ({}), {} already here",
            n("chunks_stored"),
            HumanBytes(n("bytes_stored")),
            n("chunks_present")
        );
        println!(
            "  bundles   {} taken into custody ({} delivered here), {} already held, {} incomplete, {} refused",
            len("accepted"),
            len("delivered"),
            len("already_held"),
            len("incomplete"),
            len("refused"),
        );
    }
    for d in r["delivered"].as_array().into_iter().flatten() {
        println!(
            "  delivered {}  manifest {}",
            d["bundle"].as_str().unwrap_or("?"),
            d["manifest"].as_str().unwrap_or("?")
        );
    }
    for i in r["incomplete"].as_array().into_iter().flatten() {
        println!(
            "  waiting   {}  {} chunk(s) missing (another volume or trip completes it)",
            i["bundle"].as_str().unwrap_or("?"),
            i["missing_chunks"]
        );
    }
    for f in r["refused"].as_array().into_iter().flatten() {
        println!(
            "  refused   {}  {}",
            f["bundle"].as_str().unwrap_or("?"),
            f["reason"].as_str().unwrap_or("?")
        );
    }
    for p in r["problems"].as_array().into_iter().flatten() {
        println!(
            "  REJECTED  record {} at byte {} ({}): {}",
            p["record"],
            p["offset"],
            p["kind"].as_str().unwrap_or("?"),
            p["reason"].as_str().unwrap_or("?")
        );
    }
}

pub fn export_receipts(args: ReceiptsArgs) -> anyhow::Result<()> {
    let req = Request::ExportReceipts {
        out: absolute(&args.out)?,
    };
    let answer = runtime()?
        .block_on(request(&args.common.socket, &req))
        .map_err(|e| anyhow!(e))?;
    if args.common.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    println!(
        "wrote {} ({}): custody of {} bundle(s), {} whole manifest(s), {} further chunk(s)",
        answer["file"].as_str().unwrap_or("?"),
        HumanBytes(answer["bytes"].as_u64().unwrap_or(0)),
        answer["bundles"],
        answer["manifests"],
        answer["chunks"]
    );
    Ok(())
}
