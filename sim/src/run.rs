//! Running a scenario: builds the network, follows the contact schedules,
//! releases the workload, injects faults, samples a time series, and checks
//! the invariants on every step. Produces a [`Report`].

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::rc::Rc;
use std::time::Duration;

use ferry_chunk::{ChunkId, Chunker, ChunkerConfig};
use ferry_core::mem_store::ChunkPool;
use ferry_core::{
    BundleId, EngineConfig, Event, Instant, MemStore, NodeId, Routes, Store, Submission,
};
use rand::{Rng, RngCore};
use rand_chacha::ChaCha8Rng;

use crate::invariants::{Checker, Expected};
use crate::log::{Entry, Record};
use crate::net::{Net, NodeIndex, Observer, WireId};
use crate::payload::put_spans;
use crate::report::{Report, Sample, build_report};
use crate::scenario::{FaultKind, Scenario, Source, node_id};
use crate::seed::{Purpose, derive_u64, stream};

/// What happened to one bundle, as the report needs it.
#[derive(Clone, Debug)]
pub struct BundleInfo {
    pub workload: usize,
    pub version: u32,
    pub submitted: Instant,
    pub payload: u64,
    /// Bytes of chunks no earlier version had: what must cross a link.
    pub new_bytes: u64,
    pub destinations: BTreeSet<NodeIndex>,
    /// (node, when, hop count)
    pub deliveries: Vec<(NodeIndex, Instant, u32)>,
}

/// Everything the observer gathers from the log during a run.
#[derive(Default)]
pub struct Tally {
    pub checker: Checker,
    pub bundles: BTreeMap<BundleId, BundleInfo>,
    /// Wire of each ordered node pair.
    pub wire_of: BTreeMap<(NodeIndex, NodeIndex), WireId>,
    pub node_ids: BTreeMap<NodeId, NodeIndex>,
    /// When each node took custody of each bundle.
    pub custody_at: BTreeMap<(BundleId, NodeIndex), Instant>,
    /// Per wire: (start, end, useful bytes) of each bundle that crossed it.
    pub crossings: BTreeMap<WireId, Vec<(Instant, Instant, u64, u64)>>,
    /// Per wire: contact changes (time, up).
    pub contacts: BTreeMap<WireId, Vec<(Instant, bool)>>,
    pub custody_transfers: u64,
    pub refusals: u64,
    pub expired: u64,
    pub crashes: u64,
    pub deliveries: u64,
}

struct Watch(Rc<RefCell<Tally>>);

impl Observer for Watch {
    fn observe(&mut self, net: &Net, entry: &Entry) -> Result<(), String> {
        let mut t = self.0.borrow_mut();
        t.checker.check(net, entry)?;
        match &entry.record {
            Record::Contact { wire, up } => {
                t.contacts.entry(*wire).or_default().push((entry.at, *up));
            }
            Record::Crash { .. } => t.crashes += 1,
            Record::Engine { node, event } => match event {
                Event::CustodyAccepted { bundle, from } => {
                    t.custody_at.insert((*bundle, *node), entry.at);
                    if let Some(from) = from
                        && let Some(&prev) = t.node_ids.get(from)
                    {
                        t.custody_transfers += 1;
                        let start = t.custody_at.get(&(*bundle, prev)).copied();
                        let wire = t.wire_of.get(&(prev, *node)).copied();
                        let info = t.bundles.get(bundle).map(|b| (b.payload, b.new_bytes));
                        if let (Some(start), Some(wire), Some((payload, new))) = (start, wire, info)
                        {
                            t.crossings
                                .entry(wire)
                                .or_default()
                                .push((start, entry.at, payload, new));
                        }
                    }
                }
                Event::CustodyRefused { .. } => t.refusals += 1,
                Event::Expired { .. } => t.expired += 1,
                Event::Delivered { bundle, .. } => {
                    t.deliveries += 1;
                    let hops = if net.is_running(*node) {
                        net.engine(*node)
                            .bundle(bundle)
                            .map_or(0, |r| r.header.hop_count)
                    } else {
                        0
                    };
                    if let Some(b) = t.bundles.get_mut(bundle) {
                        b.deliveries.push((*node, entry.at, hops));
                    }
                }
                _ => {}
            },
            _ => {}
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Action {
    Sample,
    Schedule(WireId),
    Release(usize, u32),
    Crash(NodeIndex),
    Wipe(NodeIndex),
    Restart(NodeIndex),
    Cut(WireId),
    Heal(WireId),
}

/// A workload's current version and what its chunks were.
struct WorkloadState {
    rng: ChaCha8Rng,
    data: Vec<u8>,
    known: BTreeSet<ChunkId>,
}

/// Knobs a caller may turn on a scenario without editing it.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Stop after this much simulated time (shorter runs in tests).
    pub duration: Option<Duration>,
    /// Show progress on stderr.
    pub progress: bool,
    /// Check custody durability on every n-th acceptance (1 = each; 0 = 1).
    pub durability_every: u64,
    /// Print the event log to stderr as it is made.
    pub trace: bool,
}

/// The outcome of a run: the report, the time series, per-delivery latency.
pub struct Outcome {
    pub report: Report,
    pub samples: Vec<Sample>,
    pub latencies: Vec<f64>,
}

/// Runs `scenario` with `seed`. An invariant violation is an error naming
/// the seed and the step.
pub fn run(scenario: &Scenario, seed: u64, options: &Options) -> Result<Outcome, String> {
    let wall = std::time::Instant::now();
    let duration = options.duration.unwrap_or(scenario.duration);
    let mut net = Net::new(seed);
    net.keep_events(false);
    net.set_trace(options.trace);
    let start = net.now;
    let pool = ChunkPool::new();
    let ids: Vec<NodeId> = scenario.nodes.iter().map(|n| node_id(&n.name)).collect();

    // Routes: breadth-first from every node; the commonest next hop is the default.
    let mut adjacency = vec![Vec::new(); scenario.nodes.len()];
    for l in &scenario.links {
        adjacency[l.a].push(l.b);
        adjacency[l.b].push(l.a);
    }
    let mut groups: BTreeMap<String, BTreeSet<NodeId>> = BTreeMap::new();
    for (i, n) in scenario.nodes.iter().enumerate() {
        for g in &n.groups {
            groups.entry(g.clone()).or_default().insert(ids[i]);
        }
    }
    let plan = contact_plan(scenario, &ids, start, duration);
    for (i, n) in scenario.nodes.iter().enumerate() {
        let mut config = EngineConfig::new(ids[i], derive_u64(seed, &n.name, Purpose::Engine));
        config.routes = routes(i, &adjacency, &ids);
        config.routes.groups = groups.clone();
        config.member_of = n.groups.clone();
        if scenario
            .links
            .iter()
            .any(|l| l.plan && (l.a == i || l.b == i))
        {
            config.contact_plan = plan.clone();
        }
        let store = n
            .quota
            .map_or_else(MemStore::new, MemStore::with_quota)
            .with_pool(pool.clone());
        net.add_node(config, store);
    }
    let tally = Rc::new(RefCell::new(Tally::default()));
    {
        let mut t = tally.borrow_mut();
        t.checker.durability_every = options.durability_every.max(1);
        for (i, id) in ids.iter().enumerate() {
            t.node_ids.insert(*id, i);
        }
    }
    for (w, l) in scenario.links.iter().enumerate() {
        let wire = net.add_named_wire(l.a, l.b, l.model.clone(), &l.name);
        debug_assert_eq!(wire, w);
        let mut t = tally.borrow_mut();
        t.wire_of.insert((l.a, l.b), wire);
        t.wire_of.insert((l.b, l.a), wire);
    }
    net.set_observer(Box::new(Watch(tally.clone())));

    // The script: what the run does at which time.
    let mut script: BinaryHeap<Reverse<(Instant, u64, Action)>> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut push = |script: &mut BinaryHeap<_>, at: Instant, action: Action| {
        seq += 1;
        script.push(Reverse((at, seq, action)));
    };
    let end = start + duration;
    push(&mut script, start, Action::Sample);
    for w in 0..scenario.links.len() {
        push(&mut script, start, Action::Schedule(w));
    }
    for (i, w) in scenario.workloads.iter().enumerate() {
        let first = u32::from(w.preload);
        for v in first..w.versions + first {
            let at = start + w.first + w.every * (v - first);
            if at <= end {
                push(&mut script, at, Action::Release(i, v));
            }
        }
    }
    for f in &scenario.faults {
        let at = start + f.at;
        let back = f.lasting.map(|d| at + d);
        match &f.kind {
            FaultKind::Crash(nodes) | FaultKind::Wipe(nodes) => {
                for &n in nodes {
                    let wipe = matches!(f.kind, FaultKind::Wipe(_));
                    push(
                        &mut script,
                        at,
                        if wipe {
                            Action::Wipe(n)
                        } else {
                            Action::Crash(n)
                        },
                    );
                    if let Some(back) = back {
                        push(&mut script, back, Action::Restart(n));
                    }
                }
            }
            FaultKind::Cut(wires) => {
                for &w in wires {
                    push(&mut script, at, Action::Cut(w));
                    if let Some(back) = back {
                        push(&mut script, back, Action::Heal(w));
                    }
                }
            }
        }
    }

    let chunker = Chunker::new(ChunkerConfig::DEFAULT)
        .expect("default chunker")
        .with_threads(1);
    let mut workloads: Vec<WorkloadState> = scenario
        .workloads
        .iter()
        .map(|w| WorkloadState {
            rng: stream(seed, &w.name, Purpose::Workload),
            data: Vec::new(),
            known: BTreeSet::new(),
        })
        .collect();
    // Version 0 of a preloaded workload is already at the source and at
    // every destination: the leaves were provisioned with it.
    for (i, w) in scenario.workloads.iter().enumerate() {
        if !w.preload {
            continue;
        }
        let state = &mut workloads[i];
        next_version(&w.source, state, 0).map_err(|e| format!("workload {}: {e}", w.name))?;
        let spans = chunker.chunk_slice(&state.data);
        state.known.extend(spans.iter().map(|s| s.id));
        for n in on_the_way(&adjacency, w.from, &w.destinations) {
            put_spans(net.engine_mut(n).store_mut(), &spans, &state.data)
                .map_err(|e| format!("preloading {} at {}: {e}", w.name, scenario.nodes[n].name))?;
        }
    }

    let mut scheduled_up = vec![false; scenario.links.len()];
    let mut cuts = vec![0u32; scenario.links.len()];
    let mut samples = Vec::new();
    let mut reoffers_before_crash = 0u64;
    let progress = options.progress.then(|| {
        let bar = indicatif::ProgressBar::new(duration.as_secs().max(1));
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {msg} [{bar:30}] {pos}/{len} simulated s ({elapsed})",
            )
            .expect("valid template"),
        );
        bar.set_message(scenario.name.clone());
        bar
    });
    let mut last_bytes: Vec<u64> = vec![0; scenario.links.len()];
    let mut wanted = 0u64;

    while let Some(Reverse((at, _, action))) = script.pop() {
        if at > end {
            break;
        }
        net.run_until(at);
        if let Some(why) = net.halted() {
            return Err(why.to_string());
        }
        match action {
            Action::Sample => {
                samples.push(sample(
                    &net,
                    &tally.borrow(),
                    start,
                    &mut last_bytes,
                    wanted,
                ));
                if let Some(bar) = &progress {
                    bar.set_position(at.saturating_since(start).as_secs());
                }
                if at + scenario.sample <= end {
                    push(&mut script, at + scenario.sample, Action::Sample);
                }
            }
            Action::Schedule(w) => {
                let since = at.saturating_since(start);
                let (up, next) = scenario.links[w].contacts.at(since);
                scheduled_up[w] = up;
                let effective = up && cuts[w] == 0;
                if effective != net.is_up(w) {
                    net.set_up(w, effective);
                }
                if let Some(next) = next {
                    push(&mut script, start + next, Action::Schedule(w));
                }
            }
            Action::Cut(w) | Action::Heal(w) => {
                if matches!(action, Action::Cut(_)) {
                    cuts[w] += 1;
                } else {
                    cuts[w] = cuts[w].saturating_sub(1);
                }
                let effective = scheduled_up[w] && cuts[w] == 0;
                if effective != net.is_up(w) {
                    net.set_up(w, effective);
                }
            }
            Action::Crash(n) | Action::Wipe(n) => {
                if net.is_running(n) {
                    reoffers_before_crash += net.engine(n).stats().reoffers;
                }
                if matches!(action, Action::Wipe(_)) {
                    net.wipe(n);
                } else {
                    net.crash(n);
                }
            }
            Action::Restart(n) => net.restart(n),
            Action::Release(i, v) => {
                let w = &scenario.workloads[i];
                let state = &mut workloads[i];
                next_version(&w.source, state, v)
                    .map_err(|e| format!("workload {}: {e}", w.name))?;
                let spans = chunker.chunk_slice(&state.data);
                let new_bytes: u64 = spans
                    .iter()
                    .filter(|s| !state.known.contains(&s.id))
                    .map(|s| u64::from(s.len))
                    .sum();
                state.known.extend(spans.iter().map(|s| s.id));
                if !net.is_running(w.from) {
                    continue;
                }
                let manifest =
                    put_spans(net.engine_mut(w.from).store_mut(), &spans, &state.data)
                        .map_err(|e| format!("workload {}: storing version {v}: {e}", w.name))?;
                let now = net.now;
                let submitted = net.engine_mut(w.from).submit(
                    now,
                    Submission {
                        destination: w.to.clone(),
                        lifetime: w.lifetime,
                        priority: w.priority,
                        kind: w.kind,
                        manifest,
                        release: format!("{}@{v}", w.name).into_bytes(),
                        signature: Vec::new(),
                    },
                );
                let bundle = match submitted {
                    Ok(id) => id,
                    Err(e) => {
                        return Err(format!("workload {}: submitting version {v}: {e}", w.name));
                    }
                };
                wanted += w.destinations.len() as u64;
                {
                    let mut t = tally.borrow_mut();
                    t.checker.expect(
                        bundle,
                        Expected {
                            manifest,
                            destinations: w.destinations.clone(),
                        },
                    );
                    t.bundles.insert(
                        bundle,
                        BundleInfo {
                            workload: i,
                            version: v,
                            submitted: now,
                            payload: state.data.len() as u64,
                            new_bytes,
                            destinations: w.destinations.clone(),
                            deliveries: Vec::new(),
                        },
                    );
                }
                net.log(Record::Submitted {
                    node: w.from,
                    bundle,
                    payload: state.data.len() as u64,
                });
            }
        }
        if let Some(why) = net.halted() {
            return Err(why.to_string());
        }
    }
    net.run_until(end);
    if let Some(why) = net.halted() {
        return Err(why.to_string());
    }
    samples.push(sample(
        &net,
        &tally.borrow(),
        start,
        &mut last_bytes,
        wanted,
    ));
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    tally.borrow().checker.finish(&net)?;
    let reoffers = reoffers_before_crash
        + (0..net.node_count())
            .filter(|&n| net.is_running(n))
            .map(|n| net.engine(n).stats().reoffers)
            .sum::<u64>();
    drop(net.take_observer());
    let tally = Rc::try_unwrap(tally)
        .map_err(|_| "the observer still holds the tally".to_string())?
        .into_inner();
    let (report, latencies) = build_report(
        scenario,
        seed,
        &net,
        &tally,
        &samples,
        reoffers,
        start,
        duration,
        wall.elapsed(),
    );
    Ok(Outcome {
        report,
        samples,
        latencies,
    })
}

/// Makes version `v` of a workload from the previous one.
fn next_version(source: &Source, state: &mut WorkloadState, v: u32) -> Result<(), String> {
    match source {
        Source::Files(path) => {
            if state.data.is_empty() {
                state.data = read_files(path)?;
            }
        }
        Source::Generated {
            size,
            change,
            edits,
        } => {
            if state.data.is_empty() {
                state.data = vec![0; *size as usize];
                state.rng.fill_bytes(&mut state.data);
            }
            if v > 0 && *change > 0 {
                let each = (*change / u64::from(*edits)).max(1) as usize;
                for _ in 0..*edits {
                    let len = each.min(state.data.len());
                    let at = state.rng.random_range(0..=state.data.len() - len);
                    state.rng.fill_bytes(&mut state.data[at..at + len]);
                }
            }
        }
    }
    Ok(())
}

/// A file's bytes, or every file under a directory in path order.
fn read_files(path: &std::path::Path) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut queue = VecDeque::from([path.to_path_buf()]);
    while let Some(p) = queue.pop_front() {
        if p.is_dir() {
            let mut entries: Vec<_> = std::fs::read_dir(&p)
                .map_err(|e| format!("{}: {e}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            entries.sort();
            queue.extend(entries);
        } else {
            out.extend(std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?);
        }
    }
    if out.is_empty() {
        return Err(format!("{} holds no bytes", path.display()));
    }
    Ok(out)
}

/// The source, the destinations and every node on a shortest path between
/// them: where a provisioned version 0 already is.
fn on_the_way(
    adjacency: &[Vec<NodeIndex>],
    from: NodeIndex,
    destinations: &BTreeSet<NodeIndex>,
) -> BTreeSet<NodeIndex> {
    let mut parent = vec![usize::MAX; adjacency.len()];
    parent[from] = from;
    let mut queue = VecDeque::from([from]);
    while let Some(x) = queue.pop_front() {
        for &n in &adjacency[x] {
            if parent[n] == usize::MAX {
                parent[n] = x;
                queue.push_back(n);
            }
        }
    }
    let mut nodes = BTreeSet::from([from]);
    for &d in destinations {
        let mut at = d;
        while parent[at] != usize::MAX && nodes.insert(at) {
            at = parent[at];
        }
    }
    nodes
}

fn routes(me: NodeIndex, adjacency: &[Vec<NodeIndex>], ids: &[NodeId]) -> Routes {
    // Breadth-first: the first hop towards every other node.
    let mut first = vec![usize::MAX; adjacency.len()];
    let mut queue = VecDeque::new();
    first[me] = me;
    for &n in &adjacency[me] {
        if first[n] == usize::MAX {
            first[n] = n;
            queue.push_back(n);
        }
    }
    while let Some(x) = queue.pop_front() {
        for &n in &adjacency[x] {
            if first[n] == usize::MAX {
                first[n] = first[x];
                queue.push_back(n);
            }
        }
    }
    let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
    for (n, &hop) in first.iter().enumerate() {
        if n != me && hop != usize::MAX {
            *counts.entry(hop).or_default() += 1;
        }
    }
    let default = counts
        .iter()
        .max_by_key(|(hop, c)| (**c, Reverse(**hop)))
        .map(|(hop, _)| *hop);
    let next_hop = first
        .iter()
        .enumerate()
        .filter(|&(n, &hop)| n != me && hop != usize::MAX && Some(hop) != default)
        .map(|(n, &hop)| (ids[n], ids[hop]))
        .collect();
    Routes {
        next_hop,
        default_hop: default.map(|d| ids[d]),
        groups: BTreeMap::new(),
    }
}

/// The contact plan of links marked `plan`: each window, both directions.
fn contact_plan(
    scenario: &Scenario,
    ids: &[NodeId],
    start: Instant,
    duration: Duration,
) -> ferry_core::ContactPlan {
    let mut contacts = Vec::new();
    for l in scenario.links.iter().filter(|l| l.plan) {
        let mut t = Duration::ZERO;
        while t < duration {
            let (up, next) = l.contacts.at(t);
            let next = next.unwrap_or(duration).max(t + Duration::from_millis(1));
            if up {
                for (from, to) in [(l.a, l.b), (l.b, l.a)] {
                    contacts.push(ferry_core::PlannedContact {
                        from: ids[from],
                        to: ids[to],
                        start: start + t,
                        end: start + next.min(duration),
                        rate_bps: l.model.rate_bps,
                        owlt: l.model.delay,
                    });
                }
            }
            t = next;
        }
    }
    ferry_core::ContactPlan::new(contacts)
}

fn sample(net: &Net, tally: &Tally, start: Instant, last_bytes: &mut [u64], wanted: u64) -> Sample {
    let mut bytes_now = Vec::with_capacity(last_bytes.len());
    for (w, last) in last_bytes.iter_mut().enumerate() {
        let s = net.stats(w);
        let total = s.bytes[0] + s.bytes[1];
        bytes_now.push(total - *last);
        *last = total;
    }
    let mut held_bytes = 0u64;
    let mut max_bytes = 0u64;
    let mut bundles = 0u64;
    for n in 0..net.node_count() {
        if let Some(store) = net.store(n) {
            let used = store.usage().bytes;
            held_bytes += used;
            max_bytes = max_bytes.max(used);
        }
        if net.is_running(n) {
            bundles += net
                .engine(n)
                .bundles()
                .filter(|b| !b.pending_hops.is_empty())
                .count() as u64;
        }
    }
    let links_up = (0..net.wire_count()).filter(|&w| net.is_up(w)).count() as u64;
    Sample {
        t_s: net.now.saturating_since(start).as_secs_f64(),
        created: tally.bundles.len() as u64,
        wanted,
        delivered: tally.deliveries,
        links_up,
        store_bytes_avg: held_bytes as f64 / net.node_count().max(1) as f64,
        store_bytes_max: max_bytes,
        bundles_forwarding: bundles,
        bytes_since_last: bytes_now,
    }
}
