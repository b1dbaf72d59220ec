//! UDP probes: the echo server and its client.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use crate::{Failed, Outcome, classify, quote};

/// Sends every datagram on `port` (all addresses) back to its sender, forever.
pub fn echo_server(port: u16) -> Outcome {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port))
        .map_err(|e| Failed(format!("bind-failed {}", classify(&e))))?;
    let at = socket
        .local_addr()
        .map_or_else(|_| "?".into(), |a| a.to_string());
    println!("listening udp={at}");
    let mut buf = vec![0u8; 65536];
    loop {
        if let Ok((n, from)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&buf[..n], from);
        }
    }
}

/// A socket of `to`'s family, connected to it, with `timeout` on reads.
pub fn connected(to: SocketAddr, timeout: Duration) -> Result<UdpSocket, Failed> {
    let any: SocketAddr = match to {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(any).map_err(|e| Failed(classify(&e)))?;
    socket.connect(to).map_err(|e| Failed(classify(&e)))?;
    socket
        .set_read_timeout(Some(timeout))
        .map_err(|e| Failed(classify(&e)))?;
    Ok(socket)
}

/// Sends `text` to `to` and prints the first reply.
pub fn ask(to: SocketAddr, text: &str, timeout: Duration) -> Outcome {
    let socket = connected(to, timeout)?;
    socket
        .send(text.as_bytes())
        .map_err(|e| Failed(classify(&e)))?;
    let mut buf = vec![0u8; 65536];
    let n = socket.recv(&mut buf).map_err(|e| Failed(classify(&e)))?;
    Ok(format!(
        "reply={}",
        quote(&String::from_utf8_lossy(&buf[..n]))
    ))
}
