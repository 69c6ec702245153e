//! `ferryd`: the ferry peer daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ferryd::config::Config;

#[derive(Parser)]
#[command(name = "ferryd", version, about = "The ferry peer daemon")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a new node key and a commented configuration into DIR.
    Init {
        /// Directory for node.key and ferryd.toml (created if missing).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// base, relay or leaf.
        #[arg(long, default_value = "leaf", value_parser = ["base", "relay", "leaf"])]
        role: String,
    },
    /// Check a configuration and print what it means.
    Check {
        #[arg(long, default_value = "ferryd.toml")]
        config: PathBuf,
    },
    /// Run the node until SIGINT or SIGTERM.
    Run {
        #[arg(long, default_value = "ferryd.toml")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        // Each line also goes into the buffer `ferry logs` reads.
        .with_writer(ferryd::logbuf::tee(std::io::stderr))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match Cli::parse().command {
        Command::Init { dir, role } => ferryd::daemon::init(&dir, &role).map(|(node, path)| {
            println!("node id {}", node.to_hex());
            println!("configuration {}", path.display());
        }),
        Command::Check { config } => Config::load(&config)
            .map(|c| {
                println!(
                    "{}: role {:?}, store {}, {} peers, {} planned contacts",
                    c.path.display(),
                    c.role,
                    c.store.display(),
                    c.peers.len(),
                    c.contacts.len()
                );
            })
            .map_err(|e| e.to_string()),
        Command::Run { config } => run(config),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferryd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(path: PathBuf) -> Result<(), String> {
    let config = Config::load(&path).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime
        .block_on(ferryd::daemon::run(config))
        .map_err(|e| e.to_string())
}
