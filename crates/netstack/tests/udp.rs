//! UDP and DNS through the stack.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::net::{SocketAddr, SocketAddrV4};
use std::time::Duration;

use common::{TestGate, gateway, start, udp_server};
use netstack::{Config, addr};
use smoltcp::wire::IpEndpoint;

fn ask(
    guest: &mut common::Guest,
    port: u16,
    to: SocketAddrV4,
    msg: &[u8],
) -> Option<(Vec<u8>, IpEndpoint)> {
    let h = guest.udp(port);
    guest
        .udp_socket(h)
        .send_slice(msg, IpEndpoint::new((*to.ip()).into(), to.port()))
        .unwrap();
    let mut got = None;
    guest.run_until(Duration::from_secs(5), |g| {
        if let Ok((data, meta)) = g.udp_socket(h).recv() {
            got = Some((data.to_vec(), meta.endpoint));
        }
        got.is_some()
    });
    got
}

#[test]
fn udp_round_trip_comes_back_from_the_destination() {
    let port = udp_server(b"echo:");
    let (running, mut guest) = start(TestGate::default(), Config::default());
    let (data, from) = ask(&mut guest, 5000, gateway(port), b"ping").unwrap();
    assert_eq!(data, b"echo:ping");
    assert_eq!(from, IpEndpoint::new(addr::GATEWAY.into(), port));
    // Over the MTU: the reply arrives in fragments the guest reassembles.
    let big = udp_server(Box::leak(vec![7u8; 4000].into_boxed_slice()));
    let (data, _) = ask(&mut guest, 5001, gateway(big), b"big").unwrap();
    assert_eq!(data.len(), 4003);
    assert_eq!(running.stats().udp_bindings, 2);
}

#[test]
fn dns_is_forwarded_upstream_or_answered_by_the_gate() {
    let upstream = udp_server(b"upstream:");
    let config = Config {
        dns_upstream: vec![SocketAddr::from(([127, 0, 0, 1], upstream))],
        ..Config::default()
    };
    let (running, mut guest) = start(TestGate::default(), config);
    let dns = SocketAddrV4::new(addr::DNS, 53);
    let (data, from) = ask(&mut guest, 5300, dns, b"query").unwrap();
    assert_eq!(data, b"via-gate:upstream:query");
    assert_eq!(from, IpEndpoint::new(addr::DNS.into(), 53));
    let (data, _) = ask(&mut guest, 5301, dns, b"local name").unwrap();
    assert_eq!(data, b"answered");
    assert!(guest.run_until(Duration::from_secs(1), |_| running.stats().dns_pending == 0));
}

#[test]
fn dns_without_upstreams_is_dropped() {
    let (_running, mut guest) = start(TestGate::default(), Config::default());
    let h = guest.udp(5302);
    let dns = IpEndpoint::new(addr::DNS.into(), 53);
    guest.udp_socket(h).send_slice(b"query", dns).unwrap();
    let got = guest.run_until(Duration::from_millis(500), |g| g.udp_socket(h).can_recv());
    assert!(!got);
}
