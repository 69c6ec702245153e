//! The invariant checker: reads the event log as it grows and fails the run
//! at the first step that breaks one of the engine's promises:
//!
//! - every frame fits its link's MTU;
//! - custody is signalled only once the bundle record is durable (a crash at
//!   that instant would keep it);
//! - custody is never dropped: from submission until every destination has
//!   it (or it expires) some node holds the bundle, and a node that crashes
//!   holding custody still holds it after its restart;
//! - a bundle is delivered only to its destinations, once each, whole (its
//!   manifest is the one submitted and every chunk is in the store).
//!
//! It reads the network only through shared references; it never changes
//! a run.

use std::collections::{BTreeMap, BTreeSet};

use ferry_chunk::ManifestId;
use ferry_core::{BundleId, Cf, Event, Store};

use crate::log::{Entry, Record};
use crate::net::{Net, NodeIndex};

/// What the driver of a run expects of a bundle.
#[derive(Clone, Debug)]
pub struct Expected {
    pub manifest: ManifestId,
    pub destinations: BTreeSet<NodeIndex>,
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct Checker {
    expected: BTreeMap<BundleId, Expected>,
    holders: BTreeMap<BundleId, BTreeSet<NodeIndex>>,
    delivered: BTreeMap<BundleId, BTreeSet<NodeIndex>>,
    expired: BTreeSet<BundleId>,
    /// Bundles held by each crashed node when it went down.
    held_at_crash: BTreeMap<NodeIndex, Vec<BundleId>>,
    /// Check durability of custody only on every n-th acceptance (1 = all).
    pub durability_every: u64,
    accepted: u64,
}

impl Checker {
    pub fn new() -> Self {
        Self {
            durability_every: 1,
            ..Self::default()
        }
    }

    /// Registers a bundle the driver submitted, and where it must arrive.
    pub fn expect(&mut self, bundle: BundleId, expected: Expected) {
        self.expected.insert(bundle, expected);
    }

    /// Bundles delivered at every destination.
    pub fn complete(&self) -> usize {
        self.expected
            .iter()
            .filter(|(id, e)| {
                self.delivered
                    .get(id)
                    .is_some_and(|d| e.destinations.is_subset(d))
            })
            .count()
    }

    fn done(&self, bundle: &BundleId) -> bool {
        self.expired.contains(bundle)
            || self.expected.get(bundle).is_some_and(|e| {
                self.delivered
                    .get(bundle)
                    .is_some_and(|d| e.destinations.is_subset(d))
            })
    }

    /// Checks one entry; `Err` names what broke.
    pub fn check(&mut self, net: &Net, entry: &Entry) -> Result<(), String> {
        match &entry.record {
            Record::Sent { wire, len, .. } => {
                let mtu = net.model(*wire).engine_mtu().max(ferry_core::mtu::MIN_MTU);
                if *len > mtu {
                    return Err(format!(
                        "a frame of {len} bytes on wire {wire} exceeds its {mtu}-byte MTU"
                    ));
                }
            }
            Record::Crash { node } => {
                let held = self
                    .holders
                    .iter()
                    .filter(|(_, h)| h.contains(node))
                    .map(|(id, _)| *id)
                    .collect();
                self.held_at_crash.insert(*node, held);
            }
            Record::Restart { node } => {
                for id in self.held_at_crash.remove(node).unwrap_or_default() {
                    let kept = net
                        .store(*node)
                        .is_some_and(|s| matches!(s.get(Cf::Bundles, &id.to_key()), Ok(Some(_))));
                    if !kept && !self.done(&id) {
                        return Err(format!(
                            "custody dropped: node {node} held bundle {id} when it went down \
                             and has no record of it after its restart"
                        ));
                    }
                }
            }
            Record::Engine { node, event } => self.check_event(net, *node, event)?,
            _ => {}
        }
        Ok(())
    }

    fn check_event(&mut self, net: &Net, node: NodeIndex, event: &Event) -> Result<(), String> {
        match event {
            Event::CustodyAccepted { bundle, .. } => {
                self.accepted += 1;
                if self.accepted.is_multiple_of(self.durability_every.max(1))
                    && let Some(store) = net.store(node)
                {
                    let mut after_crash = store.clone();
                    after_crash.crash();
                    if !matches!(after_crash.get(Cf::Bundles, &bundle.to_key()), Ok(Some(_))) {
                        return Err(format!(
                            "node {node} signalled custody of bundle {bundle} before its record \
                             was synced"
                        ));
                    }
                }
                self.holders.entry(*bundle).or_default().insert(node);
            }
            Event::CustodyReleased { bundle } => {
                let holders = self.holders.entry(*bundle).or_default();
                holders.remove(&node);
                if holders.is_empty() && !self.done(bundle) {
                    return Err(format!(
                        "custody dropped: node {node} released bundle {bundle} and no node holds \
                         it, while destinations still lack it"
                    ));
                }
            }
            Event::Expired { bundle } => {
                self.expired.insert(*bundle);
                if let Some(h) = self.holders.get_mut(bundle) {
                    h.remove(&node);
                }
            }
            Event::Delivered { bundle, manifest } => {
                if !self.delivered.entry(*bundle).or_default().insert(node) {
                    return Err(format!("bundle {bundle} delivered twice at node {node}"));
                }
                if let Some(expected) = self.expected.get(bundle) {
                    if !expected.destinations.contains(&node) {
                        return Err(format!(
                            "bundle {bundle} delivered at node {node}, not a destination"
                        ));
                    }
                    if expected.manifest != *manifest {
                        return Err(format!(
                            "bundle {bundle} delivered at node {node} with manifest {manifest}, \
                             submitted with {}",
                            expected.manifest
                        ));
                    }
                }
                let store = net.store(node).ok_or("a delivering node has a store")?;
                let whole = match store.get_manifest(*manifest) {
                    Ok(Some(m)) => m
                        .entries()
                        .iter()
                        .all(|e| matches!(store.has_chunk(e.id), Ok(true))),
                    _ => false,
                };
                if !whole {
                    return Err(format!(
                        "bundle {bundle} delivered at node {node} without every chunk stored"
                    ));
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// At the end of a run: every bundle still travelling is held by a node
    /// whose store has its record.
    pub fn finish(&self, net: &Net) -> Result<(), String> {
        for id in self.expected.keys() {
            if self.done(id) {
                continue;
            }
            let held = self.holders.get(id).into_iter().flatten().any(|&n| {
                net.store(n)
                    .is_some_and(|s| matches!(s.get(Cf::Bundles, &id.to_key()), Ok(Some(_))))
            });
            if !held {
                return Err(format!(
                    "seed {}, end of run (step {}): custody dropped: bundle {id} is undelivered \
                     and no node holds it",
                    net.seed(),
                    net.log_len()
                ));
            }
        }
        Ok(())
    }
}
