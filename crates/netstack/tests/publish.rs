//! Published ports: host connections and datagrams reach guest servers.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use common::{Guest, TestGate, start};
use netstack::{Config, Protocol, Publish, Stack};
use smoltcp::socket::tcp::State;

const GUEST_PORT: u16 = 8080;

fn published(protocol: Protocol) -> Config {
    Config {
        publish: vec![Publish {
            protocol,
            host: "127.0.0.1:0".parse().unwrap(),
            guest_port: GUEST_PORT,
        }],
        ..Config::default()
    }
}

/// Serves one connection on the guest: echoes what the host sends.
fn serve_once(guest: &mut Guest, host: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
    let h = guest.listen(GUEST_PORT);
    host.write_all(msg).unwrap();
    let mut echoed = 0;
    guest.run_until(Duration::from_secs(5), |g| {
        let s = g.tcp(h);
        while s.can_recv() && s.can_send() {
            let mut buf = [0u8; 1024];
            let n = s.recv_slice(&mut buf).unwrap();
            s.send_slice(&buf[..n]).unwrap();
            echoed += n;
        }
        if echoed == msg.len() && s.state() == State::Established {
            s.close();
        }
        echoed == msg.len() && s.send_queue() == 0
    });
    let mut got = vec![0u8; msg.len()];
    let reader = std::thread::scope(|scope| {
        let t = scope.spawn(|| host.read_exact(&mut got).map(|_| ()));
        guest.run_until(Duration::from_secs(5), |_| t.is_finished());
        t.join().unwrap()
    });
    reader.unwrap();
    got
}

#[test]
fn published_tcp_reaches_the_guest_server_and_survives_its_restart() {
    let (running, mut guest) = start(TestGate::default(), published(Protocol::Tcp));
    let host: SocketAddr = running.published()[0].host;
    assert_ne!(host.port(), 0);

    let mut conn = TcpStream::connect(host).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(
        serve_once(&mut guest, &mut conn, b"hello guest"),
        b"hello guest"
    );

    // Nothing listening in the guest: the guest's RST closes the host connection.
    let mut refused = TcpStream::connect(host).unwrap();
    refused
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let closed = guest.run_until(Duration::from_secs(5), |_| {
        let mut b = [0u8; 1];
        matches!(refused.read(&mut b), Ok(0) | Err(_) if !matches!(refused.read(&mut b), Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock))
    });
    assert!(closed);

    // The guest server back: new connections reach it again.
    let mut again = TcpStream::connect(host).unwrap();
    again
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(serve_once(&mut guest, &mut again, b"again"), b"again");
}

#[test]
fn published_udp_reaches_the_guest_and_replies_return() {
    let (running, mut guest) = start(TestGate::default(), published(Protocol::Udp));
    let host = running.published()[0].host;
    let h = guest.udp(GUEST_PORT);
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    peer.send_to(b"to guest", host).unwrap();
    let mut from = None;
    guest.run_until(Duration::from_secs(5), |g| {
        if let Ok((data, meta)) = g.udp_socket(h).recv() {
            assert_eq!(data, b"to guest");
            from = Some(meta.endpoint);
        }
        from.is_some()
    });
    let from = from.unwrap();
    guest.udp_socket(h).send_slice(b"to host", from).unwrap();
    guest.run_until(Duration::from_millis(200), |_| false);
    let mut buf = [0u8; 64];
    let (n, src) = peer.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"to host");
    assert_eq!(src, host);
}

#[test]
fn a_host_port_in_use_is_an_error_naming_it() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let config = Config {
        publish: vec![Publish {
            protocol: Protocol::Tcp,
            host: SocketAddr::from(([127, 0, 0, 1], port)),
            guest_port: 80,
        }],
        ..Config::default()
    };
    let (ours, _theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let err = Stack::start(ours, config, Box::new(TestGate::default())).unwrap_err();
    assert!(err.to_string().contains(&port.to_string()), "{err}");
}
