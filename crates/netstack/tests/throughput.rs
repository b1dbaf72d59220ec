//! Rough numbers (run with `--release -- --ignored --nocapture`): the guest here is smoltcp
//! in the test's thread, so this bounds the stack from below, not against passt.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::{TestGate, echo_server, gateway, start};
use netstack::Config;
use smoltcp::socket::tcp::State;

#[test]
#[ignore]
fn guest_to_host_throughput_and_connect_rate() {
    let sink = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = sink.local_addr().unwrap().port();
    let total: usize = 256 << 20;
    let reader = std::thread::spawn(move || {
        let (mut c, _) = sink.accept().unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0;
        while let Ok(k) = c.read(&mut buf) {
            if k == 0 {
                break;
            }
            n += k;
        }
        n
    });
    let (running, mut guest) = start(TestGate::default(), Config::default());
    let h = guest.connect(40000, gateway(port), 256 * 1024);
    let chunk = vec![0x5au8; 64 * 1024];
    let mut sent = 0;
    let t = Instant::now();
    guest.run_until(Duration::from_secs(120), |g| {
        let s = g.tcp(h);
        while sent < total && s.can_send() {
            sent += s
                .send_slice(&chunk[..chunk.len().min(total - sent)])
                .unwrap();
        }
        if sent == total && s.send_queue() == 0 && s.state() == State::Established {
            s.close();
        }
        sent == total && s.send_queue() == 0
    });
    guest.run_until(Duration::from_secs(5), |_| reader.is_finished());
    let got = reader.join().unwrap();
    let secs = t.elapsed().as_secs_f64();
    eprintln!(
        "guest->host: {} MiB in {secs:.2}s = {:.0} Mbit/s",
        got >> 20,
        got as f64 * 8.0 / secs / 1e6
    );
    assert_eq!(got, total);

    let echo = echo_server();
    let t = Instant::now();
    for i in 0..1000u16 {
        let h = guest.connect(20000 + i, gateway(echo), 4096);
        guest.run_until(Duration::from_secs(5), |g| {
            g.tcp(h).state() == State::Established
        });
        g_close(&mut guest, h);
    }
    eprintln!(
        "1000 connect/close: {:.0} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    drop(running);
}

fn g_close(guest: &mut common::Guest, h: smoltcp::iface::SocketHandle) {
    guest.tcp(h).close();
    guest.run_until(Duration::from_secs(5), |g| {
        matches!(g.tcp(h).state(), State::TimeWait | State::Closed)
    });
    guest.sockets.remove(h);
}
