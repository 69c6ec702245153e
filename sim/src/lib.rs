//! ferry-sim: runs real `ferry-core` engines on a virtual clock, joined by
//! simulated links with bandwidth, latency, loss (Bernoulli or
//! Gilbert-Elliott), duplication, reordering, bit errors, queue limits,
//! half-duplex turns and contact windows, and lets any node crash and
//! restart. Scenarios (TOML) describe topology, links, workload and faults;
//! a run yields a report, a time series, plots and an event-log hash.
//!
//! It is not a model of the protocol: each node is an `Engine<MemStore>`, the
//! same engine the daemon drives, and serial links run ferry-link's real
//! framing and turn-taking. Everything random comes from one seed, with a
//! separate ChaCha stream per link and purpose, so a run is reproducible.
//! Never reads the wall clock except to show progress.

mod chain;
pub mod invariants;
pub mod log;
mod model;
mod net;
mod payload;
pub mod plot;
pub mod report;
pub mod run;
pub mod scenario;
pub mod seed;
pub mod sweep;

pub use chain::Chain;
pub use ferry_link::profile::{LinkProfile, Loss, PROFILES, Schedule};
pub use log::{Entry, LossCause, Record};
pub use model::{HalfDuplex, LinkModel, QueueLimit};
pub use net::{Net, NodeIndex, Observer, Transmission, WireId, WireStats};
pub use payload::{put_object, put_spans};

/// Writes a run's summary.txt, report.json, timeseries.csv and plots
/// (delivery.svg, utilisation.svg, latency_cdf.svg) into `dir`.
pub fn write_outputs(
    dir: &std::path::Path,
    scenario: &scenario::Scenario,
    outcome: &run::Outcome,
) -> Result<(), String> {
    let write = |name: &str, text: &str| {
        std::fs::write(dir.join(name), text)
            .map_err(|e| format!("writing {}: {e}", dir.join(name).display()))
    };
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    write("summary.txt", &report::summary(scenario, &outcome.report))?;
    write(
        "report.json",
        &serde_json::to_string_pretty(&outcome.report).map_err(|e| e.to_string())?,
    )?;
    write(
        "timeseries.csv",
        &report::timeseries_csv(scenario, &outcome.samples),
    )?;
    plot::run_plots(
        dir,
        &outcome.samples,
        &report::utilisation(scenario, &outcome.samples),
        &outcome.latencies,
    )
}
