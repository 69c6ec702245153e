//! `ferry-sim`: run a scenario, or sweep one across seeds and parameters.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ferry_sim::run::Options;
use ferry_sim::scenario::{Scenario, Span};
use ferry_sim::sweep::{Axis, parse_seeds};

#[derive(Parser)]
#[command(
    name = "ferry-sim",
    version,
    about = "Runs ferry's engine on a virtual clock through simulated links"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one scenario; write summary.txt, report.json, timeseries.csv and plots.
    Run {
        /// The scenario file (TOML), e.g. sim/scenarios/bush.toml.
        file: PathBuf,
        /// Master seed (default: the scenario's `seed`).
        #[arg(long)]
        seed: Option<u64>,
        /// Output directory (default: target/sim/NAME).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print the JSON report to stdout.
        #[arg(long)]
        json: bool,
        /// Print nothing but errors (and the JSON with --json).
        #[arg(long)]
        quiet: bool,
        /// Simulate only this long (e.g. 6h) instead of the scenario's duration.
        #[arg(long, value_parser = parse_span)]
        duration: Option<Span>,
        /// Print the event log to stderr as it is made (long).
        #[arg(long)]
        trace: bool,
    },
    /// Run one scenario across seeds and a parameter grid into one CSV and plot.
    Sweep {
        file: PathBuf,
        /// Seeds, e.g. 1..10 (inclusive) or 1,2,3.
        #[arg(long, default_value = "1..3")]
        seeds: String,
        /// NAME=v1,v2,… with NAME one of loss, rtt, mtu, duty; repeatable.
        #[arg(long = "param")]
        params: Vec<String>,
        /// Output directory (default: target/sim/NAME-sweep).
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long)]
        quiet: bool,
        #[arg(long, value_parser = parse_span)]
        duration: Option<Span>,
    },
}

fn parse_span(text: &str) -> Result<Span, String> {
    humantime::parse_duration(text)
        .map(Span)
        .map_err(|e| format!("{text:?}: {e}"))
}

fn main() -> ExitCode {
    match main_inner() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferry-sim: {e}");
            ExitCode::FAILURE
        }
    }
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))
}

fn main_inner() -> Result<(), String> {
    match Cli::parse().command {
        Command::Run {
            file,
            seed,
            out,
            json,
            quiet,
            duration,
            trace,
        } => {
            let scenario = Scenario::load(&file).map_err(|e| e.to_string())?;
            let seed = seed.unwrap_or(scenario.seed);
            let dir = out.unwrap_or_else(|| Path::new("target/sim").join(&scenario.name));
            let options = Options {
                duration: duration.map(|d| d.0),
                progress: !quiet && std::io::stderr().is_terminal(),
                durability_every: 1,
                trace,
            };
            let outcome = ferry_sim::run::run(&scenario, seed, &options)?;
            ferry_sim::write_outputs(&dir, &scenario, &outcome)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&outcome.report).map_err(|e| e.to_string())?
                );
            }
            if !quiet {
                let text = ferry_sim::report::summary(&scenario, &outcome.report);
                if json {
                    eprint!("{text}");
                    eprintln!("outputs in {}", dir.display());
                } else {
                    print!("{text}");
                    println!("outputs in {}", dir.display());
                }
            }
            Ok(())
        }
        Command::Sweep {
            file,
            seeds,
            params,
            out,
            quiet,
            duration,
        } => {
            let scenario = Scenario::load(&file).map_err(|e| e.to_string())?;
            let seeds = parse_seeds(&seeds)?;
            let axes = params
                .iter()
                .map(|p| p.parse::<Axis>())
                .collect::<Result<Vec<_>, _>>()?;
            let dir = out.unwrap_or_else(|| {
                Path::new("target/sim").join(format!("{}-sweep", scenario.name))
            });
            let options = Options {
                duration: duration.map(|d| d.0),
                progress: false,
                durability_every: 1,
                trace: false,
            };
            let bar =
                (!quiet && std::io::stderr().is_terminal()).then(|| indicatif::ProgressBar::new(0));
            let points =
                ferry_sim::sweep::sweep(&scenario, &seeds, &axes, &options, |done, total| {
                    if let Some(bar) = &bar {
                        bar.set_length(total as u64);
                        bar.set_position(done as u64);
                    }
                })?;
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("creating {}: {e}", dir.display()))?;
            let csv = ferry_sim::sweep::csv(&axes, &points);
            write(&dir.join("sweep.csv"), &csv)?;
            let x = axes.first().map_or("run", |a| a.param.name());
            ferry_sim::plot::lines(
                &dir.join("sweep.svg"),
                &format!("{}: sweep over {x}", scenario.name),
                x,
                "ratio (mean over seeds)",
                &ferry_sim::sweep::plot_series(&axes, &points),
            )?;
            if !quiet {
                print!("{csv}");
                println!("outputs in {}", dir.display());
            }
            Ok(())
        }
    }
}
