//! TCP through the stack: a real guest stack against real host servers.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::Duration;

use common::{TestGate, closed_port, echo_server, gateway, start};
use netstack::Config;
use smoltcp::socket::tcp::State;

#[test]
fn echo_round_trip() {
    let port = echo_server();
    let (running, mut guest) = start(TestGate::default(), Config::default());
    let h = guest.connect(40000, gateway(port), 65536);
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let got = guest.exchange(h, &data, data.len());
    assert_eq!(got.len(), data.len());
    assert!(got == data);
    // Half-close: the guest's FIN reaches the server, whose close reaches the guest.
    guest.tcp(h).close();
    assert!(guest.run_until(Duration::from_secs(5), |g| matches!(
        g.tcp(h).state(),
        State::TimeWait | State::Closed
    )));
    let stats = running.stats();
    assert_eq!(stats.bytes_to_host, data.len() as u64);
    assert_eq!(stats.bytes_to_guest, data.len() as u64);
    assert_eq!(stats.tcp_flows_total, 1);
    assert!(guest.run_until(Duration::from_secs(5), |_| running.stats().flows_open == 0));
}

#[test]
fn refused_connect_resets_the_guest() {
    let port = closed_port();
    let (running, mut guest) = start(TestGate::default(), Config::default());
    let h = guest.connect(40001, gateway(port), 4096);
    assert!(guest.run_until(Duration::from_secs(5), |g| g.tcp(h).state()
        == State::Closed));
    assert_eq!(running.stats().flows_open, 0);
}

#[test]
fn denied_connect_resets_the_guest() {
    let port = echo_server();
    let gate = TestGate {
        deny: [port].into(),
        ..TestGate::default()
    };
    let (running, mut guest) = start(gate, Config::default());
    let h = guest.connect(40002, gateway(port), 4096);
    assert!(guest.run_until(Duration::from_secs(5), |g| g.tcp(h).state()
        == State::Closed));
    assert_eq!(running.stats().tcp_flows_total, 0);
}

#[test]
fn inspected_flows_pass_or_reset_on_their_first_bytes() {
    let port = echo_server();
    let gate = TestGate {
        inspect: [port].into(),
        ..TestGate::default()
    };
    let (_running, mut guest) = start(gate, Config::default());
    let ok = guest.connect(40003, gateway(port), 4096);
    // Sent in two pieces: the gate needs the whole line.
    let got = guest.exchange(ok, b"GET /", 0);
    guest.run_until(Duration::from_millis(300), |_| false);
    assert!(got.is_empty());
    assert_eq!(
        guest.tcp(ok).recv_queue(),
        0,
        "held bytes reached the host early"
    );
    assert_eq!(guest.tcp(ok).state(), State::Established);
    let got = guest.exchange(ok, b" HTTP/1.1\r\n", 16);
    assert_eq!(got, b"GET / HTTP/1.1\r\n");

    let bad = guest.connect(40004, gateway(port), 4096);
    guest.exchange(bad, b"POST /\n", 1);
    assert!(
        guest.run_until(Duration::from_secs(5), |g| g.tcp(bad).state()
            == State::Closed)
    );
}

#[test]
fn two_hundred_concurrent_connections_complete() {
    let port = echo_server();
    let (running, mut guest) = start(TestGate::default(), Config::default());
    let handles: Vec<_> = (0..200u16)
        .map(|i| guest.connect(41000 + i, gateway(port), 8192))
        .collect();
    let msg = |i: usize| format!("hello from {i}\n").into_bytes();
    let mut sent = vec![false; handles.len()];
    let mut got = vec![Vec::new(); handles.len()];
    let done = guest.run_until(Duration::from_secs(30), |g| {
        let mut all = true;
        for (i, &h) in handles.iter().enumerate() {
            let s = g.tcp(h);
            if !sent[i] && s.can_send() {
                s.send_slice(&msg(i)).unwrap();
                sent[i] = true;
            }
            while s.can_recv() {
                s.recv(|b| {
                    got[i].extend_from_slice(b);
                    (b.len(), ())
                })
                .unwrap();
            }
            if got[i].len() == msg(i).len() && s.is_open() && s.state() == State::Established {
                s.close();
            }
            all &= got[i].len() == msg(i).len();
        }
        all
    });
    assert!(done, "not all 200 connections echoed");
    for (i, g) in got.iter().enumerate() {
        assert_eq!(g, &msg(i));
    }
    assert_eq!(running.stats().tcp_flows_total, 200);
    assert!(guest.run_until(Duration::from_secs(10), |_| running.stats().flows_open == 0));
}
