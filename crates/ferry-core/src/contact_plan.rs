//! Contact plans: when links are expected to be up, and routing over them.
//!
//! A plan lists directed contacts (from, to, window, rate, one-way light
//! time), the same plan on every node, as in contact graph routing (CGR).
//! [`ContactPlan::route`] finds the earliest arrival at a destination by
//! Dijkstra over nodes with time-dependent edges: a bundle may wait at a
//! node for a later contact, a contact carries the bundle only if its whole
//! transmission fits in the window, and the route must arrive before the
//! bundle expires. The engine hands a bundle only to the first hop of that
//! route, so it waits for the right contact instead of going the wrong way,
//! and plans again when the contact it waited for has passed unused.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::types::{Instant, NodeId, transmission_time};

/// One expected contact from `from` to `to`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedContact {
    pub from: NodeId,
    pub to: NodeId,
    pub start: Instant,
    pub end: Instant,
    /// Bits per second; 0 means the window's length does not limit it.
    pub rate_bps: u64,
    /// One-way light time: delay from sending to arrival.
    pub owlt: Duration,
}

impl PlannedContact {
    /// `count` windows of `length`, every `period` from `first`, e.g. a
    /// satellite pass every 90 minutes.
    pub fn periodic(
        template: &PlannedContact,
        length: Duration,
        period: Duration,
        count: u32,
    ) -> Vec<PlannedContact> {
        (0..count)
            .map(|i| {
                let start = template.start + period * i;
                PlannedContact {
                    start,
                    end: start + length,
                    ..template.clone()
                }
            })
            .collect()
    }

    /// When a transmission of `bytes` that may begin at `ready` arrives at
    /// `to`, if it fits in this window.
    fn arrival(&self, ready: Instant, bytes: u64) -> Option<Instant> {
        let begin = ready.max(self.start);
        let sending = transmission_time(bytes, self.rate_bps).unwrap_or_default();
        let done = begin.saturating_add(sending);
        (done <= self.end).then(|| done.saturating_add(self.owlt))
    }
}

/// Every contact this node knows of, ordered by sender.
#[derive(Clone, Debug, Default)]
pub struct ContactPlan {
    by_sender: BTreeMap<NodeId, Vec<PlannedContact>>,
}

impl ContactPlan {
    pub fn new(contacts: impl IntoIterator<Item = PlannedContact>) -> Self {
        let mut by_sender: BTreeMap<NodeId, Vec<PlannedContact>> = BTreeMap::new();
        for contact in contacts {
            if contact.start < contact.end {
                by_sender.entry(contact.from).or_default().push(contact);
            }
        }
        for list in by_sender.values_mut() {
            list.sort_by_key(|c| (c.start, c.end, c.to));
        }
        Self { by_sender }
    }

    pub fn is_empty(&self) -> bool {
        self.by_sender.is_empty()
    }

    /// The neighbour to hand `bytes` for `destination` to, and when the
    /// route is expected to deliver, if the plan reaches it by `deadline`.
    pub fn route(
        &self,
        me: NodeId,
        destination: NodeId,
        now: Instant,
        bytes: u64,
        deadline: Instant,
    ) -> Option<(NodeId, Instant)> {
        // Earliest arrival per node, and the first hop that achieves it.
        let mut best: BTreeMap<NodeId, (Instant, Option<NodeId>)> = BTreeMap::new();
        let mut frontier: BTreeSet<(Instant, NodeId)> = BTreeSet::new();
        let mut done: BTreeSet<NodeId> = BTreeSet::new();
        best.insert(me, (now, None));
        frontier.insert((now, me));
        while let Some((at, node)) = frontier.pop_first() {
            if !done.insert(node) {
                continue;
            }
            let first_hop = best[&node].1;
            if node == destination {
                return first_hop.map(|hop| (hop, at));
            }
            for contact in self.by_sender.get(&node).into_iter().flatten() {
                if contact.end <= at || contact.to == me || done.contains(&contact.to) {
                    continue;
                }
                let Some(arrival) = contact.arrival(at, bytes) else {
                    continue;
                };
                if arrival > deadline {
                    continue;
                }
                let improves = best.get(&contact.to).is_none_or(|(t, _)| arrival < *t);
                if improves {
                    best.insert(contact.to, (arrival, first_hop.or(Some(contact.to))));
                    frontier.insert((arrival, contact.to));
                }
            }
        }
        None
    }

    /// Whether `me` has a contact to `hop` in the plan at all, and if so
    /// whether one is still to come or under way at `now`.
    pub fn contact_ahead(&self, me: NodeId, hop: NodeId, now: Instant) -> Option<bool> {
        let mut planned = false;
        for contact in self.by_sender.get(&me).into_iter().flatten() {
            if contact.to == hop {
                planned = true;
                if contact.end > now {
                    return Some(true);
                }
            }
        }
        planned.then_some(false)
    }

    /// The next end of a contact from `me` after `now`: when routes may need
    /// planning again.
    pub fn next_end(&self, me: NodeId, now: Instant) -> Option<Instant> {
        self.by_sender
            .get(&me)
            .into_iter()
            .flatten()
            .map(|c| c.end)
            .filter(|&end| end > now)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(i: u8) -> NodeId {
        NodeId([i; 32])
    }

    fn t(s: u64) -> Instant {
        Instant::from_millis(s * 1000)
    }

    fn contact(from: u8, to: u8, start: u64, end: u64) -> PlannedContact {
        PlannedContact {
            from: n(from),
            to: n(to),
            start: t(start),
            end: t(end),
            rate_bps: 8_000,
            owlt: Duration::from_secs(1),
        }
    }

    #[test]
    fn waits_for_the_contact_that_arrives_first() {
        // 1→3 is up now (and at 160 s) but 3→4 only at 1000 s; 1→2 at 100 s,
        // 2→4 at 200 s.
        let plan = ContactPlan::new([
            contact(1, 3, 0, 50),
            contact(1, 3, 160, 200),
            contact(3, 4, 1000, 1100),
            contact(1, 2, 100, 150),
            contact(2, 4, 200, 300),
        ]);
        let (hop, arrival) = plan.route(n(1), n(4), t(0), 1000, t(10_000)).unwrap();
        assert_eq!(hop, n(2));
        // 1 s of sending and 1 s of light time on each hop.
        assert_eq!(arrival, t(202));
        // Once the 1→2 window has passed, the slow way is the only one.
        let (hop, _) = plan.route(n(1), n(4), t(151), 1000, t(10_000)).unwrap();
        assert_eq!(hop, n(3));
        assert_eq!(plan.contact_ahead(n(1), n(2), t(151)), Some(false));
        assert_eq!(plan.contact_ahead(n(1), n(5), t(0)), None);
    }

    #[test]
    fn a_window_too_short_for_the_bundle_is_skipped() {
        let plan = ContactPlan::new([
            contact(1, 2, 0, 10),
            contact(1, 3, 20, 100),
            contact(3, 2, 100, 200),
        ]);
        // 100 kB at 8 kbit/s takes 100 s: neither first-hop window holds it.
        assert_eq!(plan.route(n(1), n(2), t(0), 100_000, t(1_000)), None);
        let (hop, _) = plan.route(n(1), n(2), t(0), 5_000, t(1_000)).unwrap();
        assert_eq!(hop, n(2), "5 s fits the first window");
    }

    #[test]
    fn no_route_past_the_deadline() {
        let plan = ContactPlan::new([contact(1, 2, 500, 600)]);
        assert_eq!(plan.route(n(1), n(2), t(0), 1, t(400)), None);
        assert!(plan.route(n(1), n(2), t(0), 1, t(700)).is_some());
    }

    #[test]
    fn periodic_passes() {
        let passes = PlannedContact::periodic(
            &contact(1, 2, 0, 0),
            Duration::from_secs(480),
            Duration::from_secs(5400),
            3,
        );
        assert_eq!(passes.len(), 3);
        assert_eq!(passes[2].start, t(10_800));
        assert_eq!(passes[2].end, t(11_280));
        let plan = ContactPlan::new(passes);
        assert_eq!(plan.next_end(n(1), t(500)), Some(t(5_880)));
    }
}
