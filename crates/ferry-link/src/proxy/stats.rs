//! [`ProxyStats`]: what happened to the datagrams crossing a proxy.

/// What one direction of the proxy did with its datagrams.
///
/// Every datagram that came in, plus every duplicate made, is accounted for
/// exactly once:
///
/// `datagrams_in + duplicated = delivered + lost + dropped_queue +
/// dropped_down + send_errors + in_flight`
///
/// (see [`DirectionStats::accounted`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirectionStats {
    /// Datagrams received from this direction's sender.
    pub datagrams_in: u64,
    /// Their payload bytes.
    pub bytes_in: u64,
    /// Datagrams sent on to the receiver (a duplicate counts again).
    pub delivered: u64,
    /// Their payload bytes.
    pub bytes_delivered: u64,
    /// Lost to the loss model (after taking their turn on the line).
    pub lost: u64,
    /// Tail-dropped because the queue was full.
    pub dropped_queue: u64,
    /// Dropped because the link was down when they came, or went down while
    /// they were queued or in flight.
    pub dropped_down: u64,
    /// Datagrams the model delivered twice.
    pub duplicated: u64,
    /// Datagrams the OS refused to send on (or, towards the client, with no
    /// client known).
    pub send_errors: u64,
    /// Datagrams (copies) queued or in flight inside the proxy right now.
    pub in_flight: u64,
}

impl DirectionStats {
    /// Whether every datagram is accounted for (the identity in the type's
    /// documentation holds).
    pub fn accounted(&self) -> bool {
        self.datagrams_in + self.duplicated
            == self.delivered
                + self.lost
                + self.dropped_queue
                + self.dropped_down
                + self.send_errors
                + self.in_flight
    }

    /// Whether nothing is left inside the proxy and every datagram is
    /// accounted for.
    pub fn settled(&self) -> bool {
        self.in_flight == 0 && self.accounted()
    }
}

/// Both directions of a [`Proxy`](super::Proxy).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// From the client to the upstream.
    pub to_upstream: DirectionStats,
    /// From the upstream back to the client.
    pub to_client: DirectionStats,
}
