//! `ferry watch` and `ferry send --wait`: the bundles in flight at a node,
//! polled from its status.
//!
//! A bundle is *in flight* while the node receives it (bytes so far of its
//! total) or holds it for next hops that still owe custody. It is *done*
//! once delivered here or handed over (every next hop took custody). On a
//! terminal (stderr) there is one bar per bundle in flight (and, with
//! targets, one for the whole); with `--json`, or when stderr is not a
//! terminal, plain lines on stdout (JSON lines with `--json`) say what
//! changed. The closing summary goes to stdout either way.

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use ferryd::admin::{Request, request};
use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};

use crate::daemon::Common;

/// At most this many per-bundle bars at once; the rest are counted.
const MAX_BARS: usize = 8;

// A receiver learns its progress in steps (the engine reports at checkpoints),
// so the bars show bytes, not a rate or an estimate of time left.
const RECEIVING: &str = "{prefix:24!} [{bar:30}] {bytes}/{total_bytes}";
const FORWARDING: &str = "{spinner} {prefix:24!} {msg} {elapsed}";

#[derive(clap::Args)]
pub struct WatchOptions {
    /// Milliseconds between status polls.
    #[arg(long, default_value_t = 250, value_parser = clap::value_parser!(u64).range(10..))]
    pub interval: u64,
    /// Give up with an error after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
}

#[derive(clap::Args)]
pub struct WatchArgs {
    #[command(flatten)]
    common: Common,
    /// Watch these bundles (ids as `ferry send` prints them) until each is
    /// delivered here or handed over to its next hops, instead of until
    /// nothing is in flight.
    #[arg(long = "for", value_name = "BUNDLE", num_args = 1..)]
    bundles: Vec<String>,
    #[command(flatten)]
    options: WatchOptions,
}

/// A bundle to wait for.
pub struct Target {
    pub id: String,
    pub label: String,
}

/// What a bundle is doing at the watched node.
#[derive(Clone, Debug, PartialEq)]
enum State {
    Receiving {
        got: u64,
        total: u64,
    },
    /// Held for these next hops (names), which still owe custody.
    Forwarding {
        hops: Vec<String>,
        bytes: u64,
    },
    Delivered {
        bytes: u64,
    },
    HandedOver {
        bytes: u64,
    },
}

impl State {
    fn in_flight(&self) -> bool {
        matches!(self, State::Receiving { .. } | State::Forwarding { .. })
    }
}

/// One status answer, bundle by bundle: its state and its release name.
fn states(status: &Value, hop_name: &dyn Fn(&str) -> String) -> BTreeMap<String, (State, String)> {
    let mut states = BTreeMap::new();
    for b in status["bundles"].as_array().into_iter().flatten() {
        let Some(id) = b["id"].as_str() else { continue };
        let bytes = b["payload_bytes"].as_u64().unwrap_or(0);
        let hops: Vec<String> = b["pending_hops"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(hop_name)
            .collect();
        let state = if let Some([got, total]) = b["received"].as_array().map(Vec::as_slice) {
            State::Receiving {
                got: got.as_u64().unwrap_or(0),
                total: total.as_u64().unwrap_or(0),
            }
        } else if !hops.is_empty() {
            State::Forwarding { hops, bytes }
        } else if b["delivered_here"] == true {
            State::Delivered { bytes }
        } else {
            State::HandedOver { bytes }
        };
        // A file's name; a Git, OCI or admin bundle by its id and kind.
        let release = match (carries(b), b["release"].as_str()) {
            (Some(name), Some(release)) if !release.is_empty() => name,
            (Some(kind), _) => format!("{} {kind}", short_id(id)),
            (None, _) => String::new(),
        };
        // A held record says more than a progress report.
        if !matches!(state, State::Receiving { .. }) || !states.contains_key(id) {
            states.insert(id.to_string(), (state, release));
        }
    }
    for d in status["delivered"].as_array().into_iter().flatten() {
        let Some(id) = d["bundle"].as_str() else {
            continue;
        };
        let entry = states
            .entry(id.to_string())
            .or_insert((State::Delivered { bytes: 0 }, String::new()));
        if !matches!(entry.0, State::Delivered { .. }) {
            let bytes = match entry.0 {
                State::Forwarding { bytes, .. } | State::HandedOver { bytes } => bytes,
                State::Receiving { total, .. } => total,
                State::Delivered { bytes } => bytes,
            };
            entry.0 = State::Delivered { bytes };
        }
    }
    states
}

/// What a status answer's bundle carries, for people: a file's name as
/// sent (control characters escaped), or its kind in brackets (`(git)`);
/// None while only its progress is known.
pub(crate) fn carries(bundle: &Value) -> Option<String> {
    match (bundle["release"].as_str(), bundle["kind"].as_str()) {
        (Some(name), _) if !name.is_empty() => Some(name.escape_debug().to_string()),
        (_, Some(kind)) if !kind.is_empty() && kind != "file" => Some(format!("({kind})")),
        _ => None,
    }
}

/// `source/sequence@created` shortened to `source[..8]/sequence`.
fn short_id(id: &str) -> String {
    let (source, rest) = id.split_once('/').unwrap_or((id, ""));
    let sequence = rest.split('@').next().unwrap_or_default();
    format!("{}/{sequence}", &source[..source.len().min(8)])
}

pub fn watch(args: WatchArgs) -> anyhow::Result<()> {
    let targets = args
        .bundles
        .into_iter()
        .map(|id| Target {
            label: String::new(),
            id,
        })
        .collect();
    run(&args.common, targets, &args.options)
}

/// Polls the daemon until every target is done, or (without targets) until
/// nothing is in flight.
pub fn run(common: &Common, targets: Vec<Target>, options: &WatchOptions) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .context("starting the runtime")?;
    let ask = |req: Request| {
        runtime
            .block_on(request(&common.socket, &req))
            .map_err(|e| anyhow!(e))
    };
    // Node id (16 hex digits, as status prints them) → peer name.
    let names: BTreeMap<String, String> = ask(Request::Peers)
        .ok()
        .and_then(|a| a["peers"].as_array().cloned())
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let node = p["node"].as_str()?;
            Some((
                node[..node.len().min(16)].to_string(),
                p["name"].as_str()?.to_string(),
            ))
        })
        .collect();
    let hop_name = |hex: &str| names.get(hex).cloned().unwrap_or_else(|| hex.to_string());

    let plain = common.json || !std::io::stderr().is_terminal();
    let mut view = if plain {
        View::Lines {
            json: common.json,
            summarised: (Duration::ZERO, 0, 0),
        }
    } else {
        View::bars(&targets)
    };
    let started = Instant::now();
    let deadline = options.timeout.map(|s| started + Duration::from_secs(s));
    let wanted: BTreeSet<&str> = targets.iter().map(|t| t.id.as_str()).collect();
    let mut labels: BTreeMap<String, String> = targets
        .iter()
        .filter(|t| !t.label.is_empty())
        .map(|t| (t.id.clone(), t.label.clone()))
        .collect();
    let mut last: BTreeMap<String, State> = BTreeMap::new();
    loop {
        let status = ask(Request::Status)?;
        let now = states(&status, &hop_name);
        let elapsed = started.elapsed();
        for (id, (state, release)) in &now {
            if !release.is_empty() && !labels.contains_key(id) {
                labels.insert(id.clone(), release.clone());
            }
            let before = last.get(id);
            if before == Some(state) {
                continue;
            }
            // A bundle done is news only if it is watched or was seen in flight.
            let seen = before.is_some_and(State::in_flight);
            if !state.in_flight() && !seen && !wanted.contains(id.as_str()) {
                continue;
            }
            let label = labels.get(id).cloned().unwrap_or_else(|| short_id(id));
            view.change(elapsed, id, &label, before, state);
        }
        last = now
            .into_iter()
            .map(|(id, (state, _))| (id, state))
            .collect();

        let in_flight: Vec<&String> = last
            .iter()
            .filter(|(_, s)| s.in_flight())
            .map(|(id, _)| id)
            .collect();
        let done = targets
            .iter()
            .filter(|t| last.get(&t.id).is_some_and(|s| !s.in_flight()))
            .count();
        // Bytes done, and received so far of what is still arriving.
        let moved = targets
            .iter()
            .filter_map(|t| match last.get(&t.id)? {
                State::Delivered { bytes } | State::HandedOver { bytes } => Some(*bytes),
                State::Receiving { got, .. } => Some(*got),
                State::Forwarding { .. } => None,
            })
            .sum();
        let finished = if targets.is_empty() {
            in_flight.is_empty()
        } else {
            done == targets.len()
        };
        if finished {
            view.finish(elapsed, done, targets.len(), moved);
            return Ok(());
        }
        view.summary(elapsed, (done, targets.len()), in_flight.len(), moved);
        if deadline.is_some_and(|d| Instant::now() >= d) {
            view.abandon();
            let missing: Vec<String> = targets
                .iter()
                .filter(|t| last.get(&t.id).is_none_or(State::in_flight))
                .map(|t| labels.get(&t.id).cloned().unwrap_or_else(|| t.id.clone()))
                .take(5)
                .collect();
            if targets.is_empty() {
                bail!(
                    "timed out after {:.0} s with {} bundle(s) still in flight",
                    elapsed.as_secs_f64(),
                    in_flight.len()
                );
            }
            bail!(
                "timed out after {:.0} s: {done} of {} bundle(s) done; still waiting for {}",
                elapsed.as_secs_f64(),
                targets.len(),
                missing.join(", ")
            );
        }
        std::thread::sleep(Duration::from_millis(options.interval));
    }
}

/// Bars on a terminal, or lines.
enum View {
    Bars {
        multi: MultiProgress,
        total: Option<ProgressBar>,
        bars: BTreeMap<String, ProgressBar>,
    },
    Lines {
        json: bool,
        /// When the last summary line went out, and what it said.
        summarised: (Duration, usize, u64),
    },
}

/// Lines mode: a summary line at most this often, when something changed.
const SUMMARY_EVERY: Duration = Duration::from_secs(10);

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("a valid progress template")
        .progress_chars("=> ")
}

impl View {
    fn bars(targets: &[Target]) -> View {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let total = (!targets.is_empty()).then(|| {
            let bar = multi.add(ProgressBar::new(targets.len() as u64));
            bar.set_style(style(
                "{elapsed_precise} [{bar:30}] {pos}/{len} bundles done {msg}",
            ));
            bar
        });
        View::Bars {
            multi,
            total,
            bars: BTreeMap::new(),
        }
    }

    fn change(
        &mut self,
        elapsed: Duration,
        id: &str,
        label: &str,
        before: Option<&State>,
        state: &State,
    ) {
        match self {
            View::Bars { multi, total, bars } => {
                if !state.in_flight() {
                    if let Some(bar) = bars.remove(id) {
                        bar.finish_and_clear();
                    }
                    // With targets, the total bar counts what is done.
                    if total.is_none() {
                        let _ = multi.println(done_line(label, state));
                    }
                    return;
                }
                if !bars.contains_key(id) && bars.len() >= MAX_BARS {
                    return;
                }
                let receiving = style(RECEIVING);
                let forwarding = style(FORWARDING);
                let bar = bars.entry(id.to_string()).or_insert_with(|| {
                    let bar = ProgressBar::new(0);
                    bar.set_style(match state {
                        State::Receiving { .. } => receiving.clone(),
                        _ => forwarding.clone(),
                    });
                    bar.set_prefix(label.to_string());
                    let bar = multi.add(bar);
                    bar.enable_steady_tick(Duration::from_millis(200));
                    bar
                });
                match state {
                    State::Receiving { got, total } => {
                        if matches!(before, Some(State::Forwarding { .. })) {
                            bar.set_style(receiving);
                        }
                        bar.set_length(*total);
                        bar.set_position(*got);
                    }
                    State::Forwarding { hops, bytes } => {
                        if matches!(before, Some(State::Receiving { .. })) {
                            bar.set_style(forwarding);
                        }
                        bar.set_message(format!(
                            "{}: custody owed by {}",
                            HumanBytes(*bytes),
                            hops.join(", ")
                        ));
                    }
                    _ => {}
                }
            }
            View::Lines { json, .. } => {
                if let Some(line) = change_line(*json, elapsed, id, label, before, state) {
                    println!("{line}");
                }
            }
        }
    }

    fn summary(
        &mut self,
        elapsed: Duration,
        (done, of): (usize, usize),
        in_flight: usize,
        moved: u64,
    ) {
        if let View::Lines { json, summarised } = self {
            let (at, was_done, was_moved) = *summarised;
            if of == 0 || elapsed < at + SUMMARY_EVERY || (was_done, was_moved) == (done, moved) {
                return;
            }
            *summarised = (elapsed, done, moved);
            if *json {
                println!(
                    "{}",
                    json!({ "t": elapsed.as_secs_f64(), "done": done, "of": of, "bytes": moved })
                );
            } else {
                println!(
                    "{}  {done}/{of} bundles done ({}, {in_flight} in flight)",
                    stamp(elapsed),
                    HumanBytes(moved)
                );
            }
        } else if let View::Bars {
            total: Some(bar),
            bars,
            ..
        } = self
        {
            bar.set_position(done as u64);
            let hidden = in_flight.saturating_sub(bars.len());
            bar.set_message(if hidden > 0 {
                format!(
                    "({}; {in_flight} in flight, {hidden} not shown)",
                    HumanBytes(moved)
                )
            } else {
                format!("({})", HumanBytes(moved))
            });
        }
    }

    fn finish(&mut self, elapsed: Duration, done: usize, of: usize, bytes: u64) {
        let line = if of > 0 {
            format!(
                "{done}/{of} bundles ({}) delivered or handed over in {:.1} s",
                HumanBytes(bytes),
                elapsed.as_secs_f64()
            )
        } else {
            "nothing in flight".to_string()
        };
        match self {
            View::Bars { total, bars, .. } => {
                for bar in bars.values() {
                    bar.finish_and_clear();
                }
                if let Some(total) = total {
                    total.finish_and_clear();
                }
                println!("{line}");
            }
            View::Lines { json: true, .. } => println!(
                "{}",
                json!({ "t": elapsed.as_secs_f64(), "done": done, "of": of, "bytes": bytes, "finished": true })
            ),
            View::Lines { json: false, .. } => println!("{}  {line}", stamp(elapsed)),
        }
    }

    fn abandon(&mut self) {
        if let View::Bars { total, bars, .. } = self {
            for bar in bars.values().chain(total.iter()) {
                bar.abandon();
            }
        }
    }
}

fn stamp(elapsed: Duration) -> String {
    format!("[{:6.1}s]", elapsed.as_secs_f64())
}

fn done_line(label: &str, state: &State) -> String {
    match state {
        State::Delivered { bytes } => format!("{label}  delivered ({})", HumanBytes(*bytes)),
        State::HandedOver { bytes } => format!("{label}  handed over ({})", HumanBytes(*bytes)),
        _ => format!("{label}  in flight"),
    }
}

/// The line (or JSON line) for a change of `state`, if it is worth one: a
/// bundle appearing, a receive passing a quarter, custody still owed by a
/// different set of hops, a bundle done.
fn change_line(
    json: bool,
    elapsed: Duration,
    id: &str,
    label: &str,
    before: Option<&State>,
    state: &State,
) -> Option<String> {
    let quarter = |got: u64, total: u64| (got.saturating_mul(4)).checked_div(total).unwrap_or(0);
    let text = match (before, state) {
        (Some(State::Receiving { got: was, .. }), State::Receiving { got, total }) => {
            if quarter(*was, *total) == quarter(*got, *total) {
                return None;
            }
            format!(
                "{label}  received {} of {} ({} %)",
                HumanBytes(*got),
                HumanBytes(*total),
                got.saturating_mul(100).checked_div(*total).unwrap_or(0)
            )
        }
        (_, State::Receiving { got, total }) => {
            format!(
                "{label}  receiving {} of {}",
                HumanBytes(*got),
                HumanBytes(*total)
            )
        }
        (_, State::Forwarding { hops, bytes }) => format!(
            "{label}  {}: custody owed by {}",
            HumanBytes(*bytes),
            hops.join(", ")
        ),
        (_, done) => done_line(label, done),
    };
    if !json {
        return Some(format!("{}  {text}", stamp(elapsed)));
    }
    let mut value = json!({ "t": elapsed.as_secs_f64(), "bundle": id, "label": label });
    match state {
        State::Receiving { got, total } => {
            value["state"] = "receiving".into();
            value["received"] = (*got).into();
            value["total"] = (*total).into();
        }
        State::Forwarding { hops, bytes } => {
            value["state"] = "forwarding".into();
            value["pending_hops"] = json!(hops);
            value["bytes"] = (*bytes).into();
        }
        State::Delivered { bytes } => {
            value["state"] = "delivered".into();
            value["bytes"] = (*bytes).into();
        }
        State::HandedOver { bytes } => {
            value["state"] = "handed_over".into();
            value["bytes"] = (*bytes).into();
        }
    }
    Some(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(hex: &str) -> String {
        if hex == "aaaaaaaaaaaaaaaa" {
            "leaf".into()
        } else {
            hex.into()
        }
    }

    #[test]
    fn status_answers_become_states() {
        let status = json!({
            "bundles": [
                {"id": "b1", "payload_bytes": 10, "pending_hops": ["aaaaaaaaaaaaaaaa"],
                 "delivered_here": false, "received": null, "release": "a.txt"},
                {"id": "b2", "payload_bytes": 20, "pending_hops": [],
                 "delivered_here": false, "received": null, "release": "b.txt"},
                {"id": "b3", "payload_bytes": 30, "pending_hops": [],
                 "delivered_here": false, "received": [5, 30], "release": ""},
                {"id": "b4", "payload_bytes": 40, "pending_hops": [],
                 "delivered_here": true, "received": null, "release": "d"},
                {"id": "c0ffee00aa/7@123", "payload_bytes": 50, "pending_hops": [],
                 "delivered_here": true, "received": null, "release": "", "kind": "git"},
            ],
            "delivered": [{"bundle": "b4"}, {"bundle": "b5"}],
        });
        let s = states(&status, &name);
        assert_eq!(
            s["b1"].0,
            State::Forwarding {
                hops: vec!["leaf".into()],
                bytes: 10
            }
        );
        assert_eq!(s["b1"].1, "a.txt");
        assert_eq!(s["b2"].0, State::HandedOver { bytes: 20 });
        assert_eq!(s["b3"].0, State::Receiving { got: 5, total: 30 });
        assert_eq!(s["b4"].0, State::Delivered { bytes: 40 });
        assert_eq!(s["b5"].0, State::Delivered { bytes: 0 });
        assert_eq!(s["c0ffee00aa/7@123"].1, "c0ffee00/7 (git)");
        assert!(s["b1"].0.in_flight() && s["b3"].0.in_flight());
        assert!(!s["b2"].0.in_flight() && !s["b4"].0.in_flight());
    }

    #[test]
    fn lines_report_quarters_and_completion() {
        let t = Duration::from_millis(1500);
        let at = |got| State::Receiving { got, total: 100 };
        let first = change_line(false, t, "b", "x", None, &at(0)).unwrap();
        assert_eq!(first, "[   1.5s]  x  receiving 0 B of 100 B");
        assert_eq!(change_line(false, t, "b", "x", Some(&at(0)), &at(20)), None);
        let half = change_line(false, t, "b", "x", Some(&at(20)), &at(55)).unwrap();
        assert!(half.ends_with("x  received 55 B of 100 B (55 %)"), "{half}");
        let done = change_line(
            false,
            t,
            "b",
            "x",
            Some(&at(55)),
            &State::Delivered { bytes: 100 },
        )
        .unwrap();
        assert!(done.ends_with("x  delivered (100 B)"), "{done}");
        let json: Value = serde_json::from_str(
            &change_line(true, t, "b", "x", None, &State::HandedOver { bytes: 7 }).unwrap(),
        )
        .unwrap();
        assert_eq!(json["state"], "handed_over");
        assert_eq!(json["bundle"], "b");
        assert_eq!(json["bytes"], 7);
    }

    #[test]
    fn bundle_ids_are_shortened_for_labels() {
        assert_eq!(short_id("0123456789abcdef/42@1700000000000"), "01234567/42");
        assert_eq!(short_id("odd"), "odd/");
    }
}
