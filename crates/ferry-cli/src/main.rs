//! `ferry`: the operator's command. Thin over the library crates; every
//! subcommand lives in its own module.

mod cat;
mod daemon;
mod git;
mod ingest;
mod key;
mod media;
mod oci;
mod proxy;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ferry",
    version,
    about = "Store-and-forward GitOps sync over intermittent links"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Chunk a file, a directory tree or stdin into a store and print a JSON summary.
    Ingest(ingest::Args),
    /// Reassemble an object from a store by manifest id, verifying every chunk, to stdout.
    Cat(cat::Args),
    /// Free chunks that no manifest references.
    Gc {
        /// Store directory.
        #[arg(long)]
        store: PathBuf,
    },
    /// What the running daemon holds and moves.
    Status(daemon::Common),
    /// The daemon's peers: node id, transport and address, profile, link up or
    /// down, traffic.
    Peers(daemon::Common),
    /// Bundles held by the running daemon, and those delivered to it.
    Bundles(daemon::Common),
    /// Show the bundles in flight (progress bars on a terminal) until none is,
    /// or until the bundles named with --for are delivered or handed over.
    Watch(watch::WatchArgs),
    /// Hand a file or directory to the running daemon to send.
    Send(daemon::SendArgs),
    /// Write what the running daemon holds to files, verified: an object by
    /// manifest id, a delivered file by name, or every delivered file.
    Get(daemon::GetArgs),
    /// The daemon's recent log lines; --follow keeps printing new ones.
    Logs(daemon::LogsArgs),
    /// Write the bundles held for an air-gapped site to removable media:
    /// only what its last receipts say it lacks.
    Export(media::ExportArgs),
    /// Import volumes (or receipts) carried in: every record verified, each
    /// rejected one reported, the valid rest kept.
    Import(media::ImportArgs),
    /// Write this node's receipts (custody signals and what it holds) for
    /// the medium going back.
    ExportReceipts(media::ReceiptsArgs),
    /// Git repositories as releases: `ferry git publish REPO --to ENDPOINT`.
    #[command(subcommand)]
    Git(git::GitCommand),
    /// Container images: publish an image layout's tags, export a leaf's images.
    #[command(subcommand)]
    Oci(oci::OciCommand),
    /// Publisher keys: new, show, rotate, revoke.
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// Run the UDP impairment proxy (a link profile between a QUIC client and
    /// its upstream) until SIGINT or SIGTERM, then print its counters.
    Proxy(proxy::ProxyArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Ingest(args) => ingest::run(args),
        Command::Cat(args) => cat::run(args),
        Command::Gc { store } => gc(store),
        Command::Status(common) => daemon::status(common),
        Command::Peers(common) => daemon::peers(common),
        Command::Bundles(common) => daemon::bundles(common),
        Command::Watch(args) => watch::watch(args),
        Command::Send(args) => daemon::send(args),
        Command::Get(args) => daemon::get(args),
        Command::Logs(args) => daemon::logs(args),
        Command::Proxy(args) => proxy::run(args),
        Command::Export(args) => media::export(args),
        Command::Import(args) => media::import(args),
        Command::ExportReceipts(args) => media::export_receipts(args),
        Command::Git(command) => git::run(command),
        Command::Oci(command) => oci::run(command),
        Command::Key(command) => key::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferry: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn gc(path: PathBuf) -> anyhow::Result<()> {
    let mut store = ferry_store::RocksStore::open(&path, ferry_store::StoreConfig::default())?;
    let report = store.gc()?;
    println!(
        "{}",
        serde_json::json!({
            "live_manifests": report.live_manifests,
            "chunks_kept": report.chunks_kept,
            "chunks_freed": report.chunks_freed,
            "bytes_before": report.bytes_before,
            "bytes_after": report.bytes_after,
        })
    );
    Ok(())
}
