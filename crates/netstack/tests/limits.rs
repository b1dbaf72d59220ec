//! A hostile guest: SYN floods and junk frames hold only what the limits allow, and every
//! descriptor comes back. One test per file part: descriptor counts are per process.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::net::TcpListener;
use std::time::Duration;

use common::{TestGate, echo_server, gateway, open_fds, start, syn_frame};
use netstack::{Config, Limits, limits};

#[test]
fn syn_floods_are_capped_and_fds_return_to_baseline() {
    let echo = echo_server();
    // A server that never accepts: the kernel completes handshakes into its backlog.
    let sink = TcpListener::bind("127.0.0.1:0").unwrap();
    let sink_port = sink.local_addr().unwrap().port();
    std::thread::sleep(Duration::from_millis(50));
    let baseline = open_fds();

    let config = Config {
        limits: Limits {
            handshake_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(2),
            ..Limits::default()
        },
        ..Config::default()
    };
    let (running, mut guest) = start(TestGate::default(), config);
    let after_start = open_fds();
    guest.mute = true;
    let mut max_pending = 0;
    let mut max_flows = 0;
    let mut max_fds = 0;
    for i in 0..4000u32 {
        let port = 1024 + (i.wrapping_mul(2654435761) % 60000) as u16;
        guest.send_raw(&syn_frame(port, gateway(sink_port)));
        if i % 50 == 0 {
            guest.poll();
            let s = running.stats();
            max_pending = max_pending.max(s.tcp_pending);
            max_flows = max_flows.max(s.flows_open);
            max_fds = max_fds.max(open_fds());
        }
    }
    guest.run_until(Duration::from_millis(500), |g| {
        let s = running.stats();
        max_pending = max_pending.max(s.tcp_pending);
        max_flows = max_flows.max(s.flows_open);
        max_fds = max_fds.max(open_fds());
        let _ = g;
        false
    });
    let stats = running.stats();
    assert!(
        max_pending <= limits::MAX_PENDING_CONNECTS as u64,
        "{max_pending}"
    );
    assert!(max_flows <= limits::MAX_TCP_FLOWS as u64, "{max_flows}");
    // Each flow holds one descriptor; the test's own sink holds the accepted-by-kernel
    // other ends (at most its backlog).
    let bound = after_start + limits::MAX_TCP_FLOWS + limits::MAX_PENDING_CONNECTS + 4200;
    assert!(max_fds <= bound, "fds {max_fds} > {bound}");
    assert!(stats.flows_refused > 0, "{stats:?}");

    // Half-open flows time out, and then a real connection goes through.
    guest.mute = false;
    assert!(
        guest.run_until(Duration::from_secs(10), |_| running.stats().flows_open == 0),
        "{:?}",
        running.stats()
    );
    let h = guest.connect(40100, gateway(echo), 8192);
    assert_eq!(guest.exchange(h, b"still here", 10), b"still here");
    guest.tcp(h).close();
    assert!(guest.run_until(Duration::from_secs(5), |_| running.stats().flows_open == 0));

    running.stop();
    drop(guest);
    drop(sink);
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        open_fds() <= baseline,
        "fds {} > baseline {baseline}",
        open_fds()
    );
}
