//! What one guest may hold on the host: every number bounds memory or descriptors.

use std::time::Duration;

/// Most TCP flows open at once. Each holds one host descriptor and two buffers of
/// [`TCP_BUFFER`] (zeroed on demand, so idle ones cost little): 512 bounds a flood at 512 fds
/// and 128 MiB, while being far above what a build or a browser-less workload opens.
pub const MAX_TCP_FLOWS: usize = 512;
/// Most guest SYNs whose host connect is in progress. A connect to a black hole holds an fd
/// for [`CONNECT_TIMEOUT`]; 64 such cost little, and a real workload rarely has more in
/// flight (the guest retransmits a dropped SYN a second later).
pub const MAX_PENDING_CONNECTS: usize = 64;
/// Each direction's buffer per TCP flow: 128 KiB covers the bandwidth-delay product of a
/// local hop at tens of Gbit/s and a WAN path at ~100 Mbit/s x 10 ms.
pub const TCP_BUFFER: usize = 128 * 1024;
/// How long a host connect may take: near Linux's own SYN retries for a first attempt, and
/// shorter than the guest's, so the guest sees a reset rather than its own timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a guest-side handshake may stay half-open: a real guest completes one in a
/// round trip; a SYN flood's never complete and must give their slots back.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a reset socket waits for its RST to reach the guest before it is freed anyway:
/// a guest that takes no frames would otherwise keep every aborted flow's buffers. The RST
/// is a courtesy; the guest's next segment for that flow draws another from the interface.
pub const CLOSING_TIMEOUT: Duration = Duration::from_secs(2);
/// Most UDP bindings (guest port, destination) at once, each one host descriptor: a
/// resolver or a QUIC client needs a handful; 256 bounds a port scan.
pub const MAX_UDP_BINDINGS: usize = 256;
/// How long an unused UDP binding lives: conntrack's default for unreplied UDP is 30 s;
/// 60 s keeps slow request/response protocols bound.
pub const UDP_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Most DNS queries forwarded upstream and unanswered, one descriptor each: a resolver
/// sends a few per name; 64 allows a parallel burst.
pub const MAX_DNS_PENDING: usize = 64;
/// How long a forwarded query waits: glibc's resolver gives up after 5 s per try.
pub const DNS_TIMEOUT: Duration = Duration::from_secs(5);
/// Most bytes held for inspection: a TLS ClientHello (with its SNI) or HTTP request head
/// fits in 16 KiB; a flow that needs more to decide is refused.
pub const MAX_INSPECT_BYTES: usize = 16 * 1024;
/// How long a held flow may take to send enough to decide: clients send their first bytes
/// at once; servers-speak-first protocols never will, and must not hold a slot forever.
pub const INSPECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The caps on what one guest may hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// See [`MAX_TCP_FLOWS`].
    pub max_tcp_flows: usize,
    /// See [`MAX_PENDING_CONNECTS`].
    pub max_pending_connects: usize,
    /// See [`TCP_BUFFER`].
    pub tcp_buffer: usize,
    /// See [`CONNECT_TIMEOUT`].
    pub connect_timeout: Duration,
    /// See [`HANDSHAKE_TIMEOUT`].
    pub handshake_timeout: Duration,
    /// See [`MAX_UDP_BINDINGS`].
    pub max_udp_bindings: usize,
    /// See [`UDP_IDLE_TIMEOUT`].
    pub udp_idle_timeout: Duration,
    /// See [`MAX_DNS_PENDING`].
    pub max_dns_pending: usize,
    /// See [`DNS_TIMEOUT`].
    pub dns_timeout: Duration,
    /// See [`MAX_INSPECT_BYTES`].
    pub max_inspect_bytes: usize,
    /// See [`INSPECT_TIMEOUT`].
    pub inspect_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_tcp_flows: MAX_TCP_FLOWS,
            max_pending_connects: MAX_PENDING_CONNECTS,
            tcp_buffer: TCP_BUFFER,
            connect_timeout: CONNECT_TIMEOUT,
            handshake_timeout: HANDSHAKE_TIMEOUT,
            max_udp_bindings: MAX_UDP_BINDINGS,
            udp_idle_timeout: UDP_IDLE_TIMEOUT,
            max_dns_pending: MAX_DNS_PENDING,
            dns_timeout: DNS_TIMEOUT,
            max_inspect_bytes: MAX_INSPECT_BYTES,
            inspect_timeout: INSPECT_TIMEOUT,
        }
    }
}
