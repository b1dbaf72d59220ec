//! What the stack counts: atomics the stack's thread bumps and anyone may read.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of the stack's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// TCP flows open now (connecting, inspecting or established).
    pub flows_open: u64,
    /// TCP flows ever opened.
    pub tcp_flows_total: u64,
    /// Guest SYNs whose host connect is in progress now.
    pub tcp_pending: u64,
    /// UDP bindings open now (guest egress and published-port peers).
    pub udp_bindings: u64,
    /// DNS queries forwarded upstream and not yet answered.
    pub dns_pending: u64,
    /// Frames read from the guest.
    pub frames_in: u64,
    /// Frames written to the guest.
    pub frames_out: u64,
    /// Guest frames dropped as malformed or oversized.
    pub frames_dropped: u64,
    /// New flows refused because a limit was reached.
    pub flows_refused: u64,
    /// Payload bytes from the guest to host sockets.
    pub bytes_to_host: u64,
    /// Payload bytes from host sockets to the guest.
    pub bytes_to_guest: u64,
}

/// The live counters behind [`Stats`]; only the stack's thread writes them.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub flows_open: AtomicU64,
    pub tcp_flows_total: AtomicU64,
    pub tcp_pending: AtomicU64,
    pub udp_bindings: AtomicU64,
    pub dns_pending: AtomicU64,
    pub frames_in: AtomicU64,
    pub frames_out: AtomicU64,
    pub frames_dropped: AtomicU64,
    pub flows_refused: AtomicU64,
    pub bytes_to_host: AtomicU64,
    pub bytes_to_guest: AtomicU64,
}

/// Adds `n` to a counter (relaxed: counters order nothing).
pub(crate) fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Sets a gauge.
pub(crate) fn set(gauge: &AtomicU64, n: usize) {
    gauge.store(n as u64, Ordering::Relaxed);
}

impl Counters {
    /// Reads every counter.
    pub fn snapshot(&self) -> Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            flows_open: get(&self.flows_open),
            tcp_flows_total: get(&self.tcp_flows_total),
            tcp_pending: get(&self.tcp_pending),
            udp_bindings: get(&self.udp_bindings),
            dns_pending: get(&self.dns_pending),
            frames_in: get(&self.frames_in),
            frames_out: get(&self.frames_out),
            frames_dropped: get(&self.frames_dropped),
            flows_refused: get(&self.flows_refused),
            bytes_to_host: get(&self.bytes_to_host),
            bytes_to_guest: get(&self.bytes_to_guest),
        }
    }
}
