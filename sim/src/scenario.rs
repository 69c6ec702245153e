//! Scenario files: topology, links, workload, faults and duration, in TOML.
//!
//! Parsing rejects unknown keys and impossible values (negative rates,
//! probabilities outside [0, 1], unknown profiles, links to unknown nodes)
//! with the file, the line and the reason. Nothing here runs anything.

use std::collections::BTreeSet;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ferry_link::profile::{LinkProfile, Loss, PROFILES, Schedule};
use ferry_link::serial::{CrcKind, SerialConfig};
use serde::Deserialize;
use toml::Spanned;

use crate::model::{HalfDuplex, LinkModel, QueueLimit};

/// A scenario that could not be read, with where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioError {
    pub file: PathBuf,
    /// 1-based; 0 when the error has no place in the file.
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: {}", self.file.display(), self.line, self.reason)
        } else {
            write!(f, "{}: {}", self.file.display(), self.reason)
        }
    }
}

impl std::error::Error for ScenarioError {}

/// A duration written as humantime text ("650ms", "20m", "7d").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span(pub Duration);

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text)
            .map(Span)
            .map_err(|e| serde::de::Error::custom(format!("{text:?} is not a duration ({e})")))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    name: String,
    #[serde(default)]
    description: String,
    duration: Span,
    #[serde(default = "one")]
    seed: u64,
    /// Time-series sampling interval.
    sample: Option<Span>,
    #[serde(default, rename = "node")]
    nodes: Vec<Spanned<NodeSpec>>,
    #[serde(default, rename = "link")]
    links: Vec<Spanned<LinkSpec>>,
    #[serde(default, rename = "workload")]
    workloads: Vec<Spanned<WorkloadSpec>>,
    #[serde(default, rename = "fault")]
    faults: Vec<Spanned<FaultSpec>>,
}

fn one() -> u64 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeSpec {
    name: String,
    #[serde(default = "one_usize")]
    count: usize,
    #[serde(default)]
    groups: Vec<String>,
    /// Store quota in bytes.
    quota: Option<u64>,
}

fn one_usize() -> usize {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GeSpec {
    p: f64,
    r: f64,
    h: f64,
    k: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueueSpec {
    frames: usize,
    ingress_bps: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HalfDuplexSpec {
    max_turn: Option<Span>,
    guard: Option<Span>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkSpec {
    name: Option<String>,
    from: Spanned<String>,
    to: Spanned<String>,
    profile: Spanned<String>,
    rate_bps: Option<u64>,
    rtt: Option<Span>,
    jitter: Option<Span>,
    mtu: Option<u32>,
    loss: Option<f64>,
    gilbert_elliott: Option<GeSpec>,
    duplicate: Option<f64>,
    reorder: Option<f64>,
    bit_error_rate: Option<f64>,
    queue: Option<QueueSpec>,
    serial: Option<bool>,
    crc: Option<String>,
    half_duplex: Option<Spanned<HalfDuplexSpec>>,
    pipeline: Option<bool>,
    reliable: Option<bool>,
    // Contact schedule; the profile's when none is given.
    always_up: Option<bool>,
    up: Option<Span>,
    outage: Option<Span>,
    period: Option<Span>,
    phase: Option<Span>,
    #[serde(default)]
    stagger: bool,
    windows: Option<Vec<(Span, Span)>>,
    /// Tell the engines the contact plan (periodic and window schedules).
    #[serde(default)]
    plan: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkloadSpec {
    name: String,
    from: Spanned<String>,
    to: Spanned<String>,
    #[serde(default = "blob")]
    kind: String,
    size: Option<u64>,
    #[serde(default)]
    change: u64,
    #[serde(default = "one_u32")]
    edits: u32,
    /// Real files: a file, or a directory read in path order.
    path: Option<PathBuf>,
    first: Option<Span>,
    every: Option<Span>,
    #[serde(default = "one_u32")]
    versions: u32,
    #[serde(default)]
    preload: bool,
    lifetime: Option<Span>,
    #[serde(default)]
    priority: Option<String>,
}

fn blob() -> String {
    "blob".into()
}
fn one_u32() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultSpec {
    at: Span,
    crash: Option<String>,
    wipe: Option<String>,
    isolate: Option<String>,
    cut: Option<String>,
    /// Back after this long; never when absent.
    #[serde(rename = "for")]
    lasting: Option<Span>,
}

/// A node, expanded from `[[node]]` (`count` > 1 gives `name-0`, `name-1`, …).
#[derive(Clone, Debug)]
pub struct NodeDef {
    pub name: String,
    pub groups: BTreeSet<String>,
    pub quota: Option<u64>,
}

/// When a link is up.
#[derive(Clone, Debug, PartialEq)]
pub enum Contacts {
    /// A repeating schedule, shifted by `phase`.
    Schedule { schedule: Schedule, phase: Duration },
    /// Explicit windows (start, end) from the start of the run.
    Windows(Vec<(Duration, Duration)>),
}

impl Contacts {
    /// Up or down at `t`, and when that next changes.
    pub fn at(&self, t: Duration) -> (bool, Option<Duration>) {
        match self {
            Contacts::Schedule { schedule, phase } => {
                // Shift by phase: the schedule's origin is `phase` before 0.
                let period = match schedule {
                    Schedule::Always => return (true, None),
                    Schedule::Periodic { period, .. } | Schedule::Outages { period, .. } => *period,
                };
                let p = period.as_nanos().max(1);
                let offset = Duration::from_nanos(((p - phase.as_nanos() % p) % p) as u64);
                let (up, next) = schedule.at(t + offset);
                (up, next.map(|n| n - offset))
            }
            Contacts::Windows(windows) => {
                for &(start, end) in windows {
                    if t < start {
                        return (false, Some(start));
                    }
                    if t < end {
                        return (true, Some(end));
                    }
                }
                (false, None)
            }
        }
    }
}

/// One wire, expanded from `[[link]]`.
#[derive(Clone, Debug)]
pub struct LinkDef {
    pub name: String,
    pub a: usize,
    pub b: usize,
    pub profile: &'static str,
    pub model: LinkModel,
    pub contacts: Contacts,
    pub plan: bool,
}

/// Where a workload's payload comes from.
#[derive(Clone, Debug)]
pub enum Source {
    /// Random bytes of `size`; each later version replaces `change` bytes
    /// in `edits` places.
    Generated { size: u64, change: u64, edits: u32 },
    /// Real files, concatenated in path order; every version is the same.
    Files(PathBuf),
}

/// One `[[workload]]`: a stream of releases from one node.
#[derive(Clone, Debug)]
pub struct WorkloadDef {
    pub name: String,
    pub from: usize,
    /// A group name, or a node's name.
    pub to: ferry_core::Endpoint,
    pub destinations: BTreeSet<usize>,
    pub kind: ferry_core::PayloadKind,
    pub source: Source,
    pub first: Duration,
    pub every: Duration,
    pub versions: u32,
    pub preload: bool,
    pub lifetime: Duration,
    pub priority: ferry_core::Priority,
}

#[derive(Clone, Debug, PartialEq)]
pub enum FaultKind {
    Crash(Vec<usize>),
    Wipe(Vec<usize>),
    /// These wires go down.
    Cut(Vec<usize>),
}

#[derive(Clone, Debug)]
pub struct FaultDef {
    pub at: Duration,
    pub kind: FaultKind,
    pub lasting: Option<Duration>,
}

/// A scenario, checked and expanded.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub file: PathBuf,
    pub duration: Duration,
    pub seed: u64,
    pub sample: Duration,
    pub nodes: Vec<NodeDef>,
    pub links: Vec<LinkDef>,
    pub workloads: Vec<WorkloadDef>,
    pub faults: Vec<FaultDef>,
}

fn line_of(text: &str, span: &Range<usize>) -> usize {
    text[..span.start.min(text.len())].matches('\n').count() + 1
}

/// The line within a table's `span` of the key a reason starts with
/// ("loss = 1.5 is …" → the `loss` line), else the table's first line.
fn key_line(text: &str, span: &Range<usize>, reason: &str) -> usize {
    let first = line_of(text, span);
    let key: String = reason
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    // The table runs from its span to the next table header.
    let body = text.get(span.start..).unwrap_or("");
    if !key.is_empty() {
        for (i, line) in body.lines().enumerate() {
            let line = line.trim_start();
            if i > 0 && line.starts_with('[') {
                break;
            }
            if let Some(rest) = line.strip_prefix(key.as_str())
                && rest.trim_start().starts_with(['=', '.'])
            {
                return first + i;
            }
        }
    }
    first
}

impl Scenario {
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
            file: path.into(),
            line: 0,
            reason: format!("cannot read the scenario: {e}"),
        })?;
        Scenario::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Scenario, ScenarioError> {
        let err = |span: &Range<usize>, reason: String| ScenarioError {
            file: path.into(),
            line: key_line(text, span, &reason),
            reason,
        };
        let file: File = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            err(&span, e.message().to_string())
        })?;
        let nowhere = 0..0;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        if file.duration.0.is_zero() {
            return Err(err(&nowhere, "duration must be positive".into()));
        }

        // Nodes.
        let mut nodes = Vec::new();
        let mut sets: Vec<(String, Vec<usize>)> = Vec::new();
        for spec in &file.nodes {
            let span = spec.span();
            let n = spec.get_ref();
            if n.count == 0 {
                return Err(err(
                    &span,
                    format!("node {:?}: count must be at least 1", n.name),
                ));
            }
            if n.name.is_empty() || sets.iter().any(|(name, _)| *name == n.name) {
                return Err(err(
                    &span,
                    format!("node name {:?} is empty or repeated", n.name),
                ));
            }
            let start = nodes.len();
            for i in 0..n.count {
                let name = if n.count == 1 {
                    n.name.clone()
                } else {
                    format!(
                        "{}-{i:0width$}",
                        n.name,
                        width = (n.count - 1).to_string().len()
                    )
                };
                nodes.push(NodeDef {
                    name,
                    groups: n.groups.iter().cloned().collect(),
                    quota: n.quota,
                });
            }
            sets.push((n.name.clone(), (start..nodes.len()).collect()));
        }
        let names: Vec<String> = sets.iter().map(|(n, _)| n.clone()).collect();
        let lookup = |name: &Spanned<String>| -> Result<Vec<usize>, ScenarioError> {
            sets.iter()
                .find(|(n, _)| n == name.get_ref())
                .map(|(_, v)| v.clone())
                .or_else(|| {
                    nodes
                        .iter()
                        .position(|d| d.name == *name.get_ref())
                        .map(|i| vec![i])
                })
                .ok_or_else(|| {
                    err(
                        &name.span(),
                        format!(
                            "unknown node {:?}; nodes are: {}",
                            name.get_ref(),
                            names.join(", ")
                        ),
                    )
                })
        };

        // Links.
        let mut links = Vec::new();
        for spec in &file.links {
            let span = spec.span();
            let l = spec.get_ref();
            let profile = LinkProfile::named(l.profile.get_ref()).ok_or_else(|| {
                err(
                    &l.profile.span(),
                    format!(
                        "unknown link profile {:?}; known profiles: {}",
                        l.profile.get_ref(),
                        PROFILES
                            .iter()
                            .map(|p| p.name)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })?;
            let from = lookup(&l.from)?;
            let to = lookup(&l.to)?;
            if from.len() > to.len() {
                return Err(err(
                    &span,
                    format!(
                        "link from {:?} ({} nodes) to {:?} ({} nodes): the first side may not \
                         be larger; each node of `to` joins one node of `from`",
                        l.from.get_ref(),
                        from.len(),
                        l.to.get_ref(),
                        to.len()
                    ),
                ));
            }
            let model = link_model(profile, l).map_err(|reason| err(&span, reason))?;
            let base = contacts(profile, l).map_err(|reason| err(&span, reason))?;
            let name = l
                .name
                .clone()
                .unwrap_or_else(|| format!("{}-{}", l.from.get_ref(), l.to.get_ref()));
            for (j, &b) in to.iter().enumerate() {
                let a = from[j * from.len() / to.len()];
                if a == b {
                    return Err(err(
                        &span,
                        format!("link joins node {:?} to itself", nodes[a].name),
                    ));
                }
                let mut contacts = base.clone();
                if l.stagger
                    && let Contacts::Schedule { schedule, phase } = &mut contacts
                    && let Schedule::Periodic { period, .. } | Schedule::Outages { period, .. } =
                        schedule
                {
                    *phase += *period * j as u32 / to.len() as u32;
                }
                links.push(LinkDef {
                    name: if to.len() == 1 {
                        name.clone()
                    } else {
                        format!("{name}/{}", nodes[b].name)
                    },
                    a,
                    b,
                    profile: profile.name,
                    model: model.clone(),
                    contacts,
                    plan: l.plan,
                });
            }
        }

        // Workloads.
        let mut workloads = Vec::new();
        for spec in &file.workloads {
            let span = spec.span();
            let w = spec.get_ref();
            let from = lookup(&w.from)?;
            if from.len() != 1 {
                return Err(err(
                    &w.from.span(),
                    format!("workload {:?}: `from` must be one node", w.name),
                ));
            }
            let group_members: BTreeSet<usize> = nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| n.groups.contains(w.to.get_ref()))
                .map(|(i, _)| i)
                .collect();
            let (to, destinations) = if group_members.is_empty() {
                let to = lookup(&w.to)?;
                if to.len() != 1 {
                    return Err(err(
                        &w.to.span(),
                        format!(
                            "workload {:?}: `to` names {} nodes; name one node or a group",
                            w.name,
                            to.len()
                        ),
                    ));
                }
                (
                    ferry_core::Endpoint::Node(node_id(&nodes[to[0]].name)),
                    to.into_iter().collect(),
                )
            } else {
                (
                    ferry_core::Endpoint::Group(w.to.get_ref().clone()),
                    group_members,
                )
            };
            let kind = match w.kind.as_str() {
                "git" => ferry_core::PayloadKind::Git,
                "oci" => ferry_core::PayloadKind::Oci,
                "blob" => ferry_core::PayloadKind::Blob,
                other => {
                    return Err(err(
                        &span,
                        format!("workload kind {other:?} is not git, oci or blob"),
                    ));
                }
            };
            let priority = match w.priority.as_deref().unwrap_or("normal") {
                "bulk" => ferry_core::Priority::Bulk,
                "normal" => ferry_core::Priority::Normal,
                "expedited" => ferry_core::Priority::Expedited,
                other => {
                    return Err(err(
                        &span,
                        format!("priority {other:?} is not bulk, normal or expedited"),
                    ));
                }
            };
            let source = match (&w.path, w.size) {
                (Some(_), Some(_)) => {
                    return Err(err(
                        &span,
                        "a workload has `size` or `path`, not both".into(),
                    ));
                }
                (Some(files), None) => {
                    let full = dir.join(files);
                    let _ = full.metadata().map_err(|e| {
                        err(&span, format!("workload path {}: {e}", full.display()))
                    })?;
                    Source::Files(full)
                }
                (None, Some(size)) => {
                    if size == 0 || w.change > size {
                        return Err(err(
                            &span,
                            format!(
                                "workload {:?}: size must be positive and change at most size",
                                w.name
                            ),
                        ));
                    }
                    Source::Generated {
                        size,
                        change: w.change,
                        edits: w.edits.max(1),
                    }
                }
                (None, None) => return Err(err(&span, "a workload needs `size` or `path`".into())),
            };
            if w.versions == 0 {
                return Err(err(&span, "versions must be at least 1".into()));
            }
            workloads.push(WorkloadDef {
                name: w.name.clone(),
                from: from[0],
                to,
                destinations,
                kind,
                source,
                first: w.first.map_or(Duration::from_secs(60), |s| s.0),
                every: w.every.map_or(Duration::from_secs(86_400), |s| s.0),
                versions: w.versions,
                preload: w.preload,
                lifetime: w.lifetime.map_or(Duration::from_secs(30 * 86_400), |s| s.0),
                priority,
            });
        }

        // Faults.
        let mut faults = Vec::new();
        for spec in &file.faults {
            let span = spec.span();
            let f = spec.get_ref();
            let named = |name: &str| lookup(&Spanned::new(span.clone(), name.to_string()));
            let given = [&f.crash, &f.wipe, &f.isolate, &f.cut]
                .iter()
                .filter(|x| x.is_some())
                .count();
            if given != 1 {
                return Err(err(
                    &span,
                    "a fault is exactly one of crash, wipe, isolate or cut".into(),
                ));
            }
            let kind = if let Some(n) = &f.crash {
                FaultKind::Crash(named(n)?)
            } else if let Some(n) = &f.wipe {
                FaultKind::Wipe(named(n)?)
            } else if let Some(n) = &f.isolate {
                let ns: BTreeSet<usize> = named(n)?.into_iter().collect();
                FaultKind::Cut(
                    links
                        .iter()
                        .enumerate()
                        .filter(|(_, l)| ns.contains(&l.a) || ns.contains(&l.b))
                        .map(|(i, _)| i)
                        .collect(),
                )
            } else {
                let n = f.cut.as_ref().expect("one given");
                let wires: Vec<usize> = links
                    .iter()
                    .enumerate()
                    .filter(|(_, l)| l.name == *n || l.name.starts_with(&format!("{n}/")))
                    .map(|(i, _)| i)
                    .collect();
                if wires.is_empty() {
                    return Err(err(&span, format!("cut: no link is named {n:?}")));
                }
                FaultKind::Cut(wires)
            };
            faults.push(FaultDef {
                at: f.at.0,
                kind,
                lasting: f.lasting.map(|s| s.0),
            });
        }

        Ok(Scenario {
            name: file.name,
            description: file.description,
            file: path.into(),
            duration: file.duration.0,
            seed: file.seed,
            sample: file
                .sample
                .map_or(file.duration.0 / 200, |s| s.0)
                .max(Duration::from_millis(1)),
            nodes,
            links,
            workloads,
            faults,
        })
    }
}

/// A node's id: derived from its name, so it is stable across runs.
pub fn node_id(name: &str) -> ferry_core::NodeId {
    let hash = blake3::derive_key("ferry-sim 2026 node id v1", name.as_bytes());
    ferry_core::NodeId(hash)
}

fn probability(name: &str, v: f64) -> Result<f64, String> {
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{name} = {v} is not a probability in [0, 1]"))
    }
}

fn link_model(profile: &LinkProfile, l: &LinkSpec) -> Result<LinkModel, String> {
    let mut m = LinkModel::from_profile(profile);
    if let Some(rate) = l.rate_bps {
        if rate == 0 {
            return Err("rate_bps must be positive".into());
        }
        m.rate_bps = rate;
    }
    if let Some(rtt) = l.rtt {
        m.delay = rtt.0 / 2;
    }
    if let Some(j) = l.jitter {
        m.jitter = j.0;
    }
    if let Some(mtu) = l.mtu {
        m.mtu = mtu;
        if let Some(s) = m.serial.as_mut() {
            s.modem_mtu = mtu as usize;
        }
    }
    match (l.loss, &l.gilbert_elliott) {
        (Some(_), Some(_)) => return Err("give loss or gilbert_elliott, not both".into()),
        (Some(p), None) => m.loss = Loss::Bernoulli(probability("loss", p)?),
        (None, Some(g)) => {
            m.loss = Loss::GilbertElliott {
                p: probability("gilbert_elliott.p", g.p)?,
                r: probability("gilbert_elliott.r", g.r)?,
                h: probability("gilbert_elliott.h", g.h)?,
                k: probability("gilbert_elliott.k", g.k)?,
            }
        }
        (None, None) => {}
    }
    if let Some(p) = l.duplicate {
        m.duplicate = probability("duplicate", p)?;
    }
    if let Some(p) = l.reorder {
        m.reorder = probability("reorder", p)?;
    }
    if let Some(p) = l.bit_error_rate {
        m.bit_error_rate = probability("bit_error_rate", p)?;
    }
    if let Some(q) = &l.queue {
        m.queue = Some(QueueLimit {
            frames: q.frames,
            ingress_bps: q.ingress_bps,
        });
    }
    match l.serial {
        Some(false) => m.serial = None,
        Some(true) if m.serial.is_none() => {
            m.serial = Some(SerialConfig {
                modem_mtu: m.mtu as usize,
                ..SerialConfig::default()
            })
        }
        _ => {}
    }
    if let Some(crc) = &l.crc {
        let kind = match crc.as_str() {
            "crc16" => CrcKind::Crc16,
            "crc32" => CrcKind::Crc32,
            other => return Err(format!("crc {other:?} is not crc16 or crc32")),
        };
        match m.serial.as_mut() {
            Some(s) => s.crc = kind,
            None => return Err("crc needs serial framing".into()),
        }
    }
    if let Some(h) = &l.half_duplex {
        let h = h.get_ref();
        let mut half = m.half_duplex.unwrap_or(HalfDuplex {
            max_turn: Duration::from_secs(60),
            guard: Duration::from_millis(250),
        });
        if let Some(t) = h.max_turn {
            half.max_turn = t.0;
        }
        if let Some(g) = h.guard {
            half.guard = g.0;
        }
        m.half_duplex = Some(half);
    }
    if let Some(p) = l.pipeline {
        m.pipeline = p;
    }
    if let Some(r) = l.reliable {
        m.reliable = r;
    }
    m.validate()?;
    Ok(m)
}

fn contacts(profile: &LinkProfile, l: &LinkSpec) -> Result<Contacts, String> {
    let phase = l.phase.map_or(Duration::ZERO, |p| p.0);
    let kinds = [
        l.always_up.is_some(),
        l.up.is_some(),
        l.outage.is_some(),
        l.windows.is_some(),
    ]
    .iter()
    .filter(|&&b| b)
    .count();
    if kinds > 1 {
        return Err("give one of always_up, up (+ period), outage (+ period) or windows".into());
    }
    let period = || {
        l.period
            .map(|p| p.0)
            .filter(|p| !p.is_zero())
            .ok_or("up and outage need a positive period".to_string())
    };
    let schedule = if l.always_up == Some(true) {
        Schedule::Always
    } else if let Some(up) = l.up {
        let period = period()?;
        if up.0 > period {
            return Err("up is longer than period".into());
        }
        Schedule::Periodic { up: up.0, period }
    } else if let Some(outage) = l.outage {
        let period = period()?;
        if outage.0 > period {
            return Err("outage is longer than period".into());
        }
        Schedule::Outages {
            outage: outage.0,
            period,
        }
    } else if let Some(windows) = &l.windows {
        let mut last = Duration::ZERO;
        let mut out = Vec::new();
        for &(start, end) in windows {
            if start.0 >= end.0 || start.0 < last {
                return Err(
                    "windows must be [start, end] pairs, ascending and not overlapping".into(),
                );
            }
            last = end.0;
            out.push((start.0, end.0));
        }
        return Ok(Contacts::Windows(out));
    } else {
        if l.period.is_some() {
            return Err("period needs up or outage".into());
        }
        profile.schedule
    };
    Ok(Contacts::Schedule { schedule, phase })
}
