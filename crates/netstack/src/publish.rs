//! Published ports: host listeners whose connections and datagrams reach a guest port from
//! the gateway.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, ErrorKind};
use std::net::{SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, UdpSocket};
use mio::{Interest, Registry, Token};

use crate::addr;
use crate::error::{Error, Result};
use crate::stack::engine::Engine;
use crate::stats::bump;
use crate::tcp::Key;
use crate::udp::inject;

/// First of the gateway ports published flows come from: the IANA dynamic range.
const FIRST_PORT: u16 = 49152;

/// A transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// A host address whose traffic goes to a guest port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publish {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The host address to listen on (port 0: any free port).
    pub host: SocketAddr,
    /// The guest port it reaches.
    pub guest_port: u16,
}

/// A published port as bound: `host` is the actual address.
pub type Published = Publish;

/// A bound published port.
pub enum Listener {
    /// A TCP listener.
    Tcp(TcpListener, u16),
    /// A UDP socket.
    Udp(UdpSocket, u16),
}

impl Listener {
    /// Registers it for readiness.
    pub(crate) fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        match self {
            Listener::Tcp(l, _) => registry.register(l, token, Interest::READABLE),
            Listener::Udp(s, _) => registry.register(s, token, Interest::READABLE),
        }
    }
}

/// Binds every published port, or says which one cannot be.
pub(crate) fn bind(publish: &[Publish]) -> Result<(Vec<Listener>, Vec<Published>)> {
    let mut listeners = Vec::with_capacity(publish.len());
    let mut bound = Vec::with_capacity(publish.len());
    for p in publish {
        let fail = |source| Error::Publish {
            protocol: p.protocol,
            addr: p.host,
            source,
        };
        let (listener, host) = match p.protocol {
            Protocol::Tcp => {
                let l = TcpListener::bind(p.host).map_err(fail)?;
                let host = l.local_addr().map_err(fail)?;
                (Listener::Tcp(l, p.guest_port), host)
            }
            Protocol::Udp => {
                let s = UdpSocket::bind(p.host).map_err(fail)?;
                let host = s.local_addr().map_err(fail)?;
                (Listener::Udp(s, p.guest_port), host)
            }
        };
        listeners.push(listener);
        bound.push(Published { host, ..*p });
    }
    Ok((listeners, bound))
}

/// A host peer of a published UDP port, seen from the guest as a gateway port.
struct Peer {
    listener: usize,
    addr: SocketAddr,
    last: Instant,
}

/// The published UDP ports' peers, both ways.
#[derive(Default)]
pub struct Peers {
    by_port: HashMap<u16, Peer>,
    by_addr: HashMap<(usize, SocketAddr), u16>,
}

impl Peers {
    /// How many peers there are.
    pub fn len(&self) -> usize {
        self.by_port.len()
    }

    /// Sends a guest datagram to gateway port `port` on to its peer; false when `port`
    /// has none.
    pub(crate) fn reply(&mut self, listeners: &[Listener], port: u16, data: &[u8]) -> bool {
        let Some(peer) = self.by_port.get_mut(&port) else {
            return false;
        };
        if let Some(Listener::Udp(s, _)) = listeners.get(peer.listener) {
            peer.last = Instant::now();
            let _ = s.send_to(data, peer.addr);
        }
        true
    }

    /// Forgets peers idle for `idle`.
    pub(crate) fn sweep(&mut self, now: Instant, idle: Duration) {
        let by_addr = &mut self.by_addr;
        self.by_port.retain(|_, p| {
            let keep = now.saturating_duration_since(p.last) <= idle;
            if !keep {
                by_addr.remove(&(p.listener, p.addr));
            }
            keep
        });
    }
}

impl Engine {
    /// A published listener is ready.
    pub(crate) fn listener_ready(&mut self, index: usize) {
        match self.listeners.get(index) {
            Some(Listener::Tcp(..)) => self.accept(index),
            Some(Listener::Udp(..)) => self.published_datagrams(index),
            None => {}
        }
    }

    /// Accepts host connections; each becomes a connection from the gateway to the guest.
    fn accept(&mut self, index: usize) {
        loop {
            let Some(Listener::Tcp(listener, guest_port)) = self.listeners.get(index) else {
                return;
            };
            let guest_port = *guest_port;
            let host = match listener.accept() {
                Ok((host, _)) => host,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                // A connection that died before accept, or out of descriptors: try later.
                Err(e) if e.kind() == ErrorKind::ConnectionAborted => continue,
                Err(_) => return,
            };
            if self.tcp_held() >= self.limits.max_tcp_flows {
                bump(&self.counters.flows_refused, 1);
                continue;
            }
            let guest = SocketAddrV4::new(addr::GUEST, guest_port);
            let Some(port) = self.free_port(|e, p| {
                e.flow_index.contains_key(&Key {
                    guest,
                    remote: SocketAddrV4::new(addr::GATEWAY, p),
                })
            }) else {
                continue;
            };
            let remote = SocketAddrV4::new(addr::GATEWAY, port);
            let mut sock = self.new_socket();
            let cx = self.iface.context();
            if sock
                .connect(cx, (addr::GUEST, guest_port), (addr::GATEWAY, port))
                .is_err()
            {
                continue;
            }
            let handle = self.sockets.add(sock);
            if self
                .add_open_flow(Key { guest, remote }, host, handle)
                .is_err()
            {
                continue;
            }
        }
    }

    /// Datagrams to a published UDP port: each host peer gets a gateway port of its own.
    fn published_datagrams(&mut self, index: usize) {
        loop {
            let Some(Listener::Udp(socket, guest_port)) = self.listeners.get(index) else {
                return;
            };
            let guest_port = *guest_port;
            let (n, from) = match socket.recv_from(&mut self.scratch) {
                Ok(got) => got,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => continue,
            };
            let port = match self.peers.by_addr.get(&(index, from)) {
                Some(&port) => port,
                None => {
                    if self.bindings.len() + self.peers.len() >= self.limits.max_udp_bindings {
                        bump(&self.counters.flows_refused, 1);
                        continue;
                    }
                    let Some(port) = self.free_port(|e, p| e.peers.by_port.contains_key(&p)) else {
                        continue;
                    };
                    self.peers.by_addr.insert((index, from), port);
                    let peer = Peer {
                        listener: index,
                        addr: from,
                        last: Instant::now(),
                    };
                    self.peers.by_port.insert(port, peer);
                    port
                }
            };
            if let Some(peer) = self.peers.by_port.get_mut(&port) {
                peer.last = Instant::now();
            }
            let src = SocketAddrV4::new(addr::GATEWAY, port);
            inject(
                &mut self.link,
                &mut self.ip_ident,
                src,
                guest_port,
                &self.scratch[..n],
            );
        }
    }

    /// A gateway port `taken` says is free, from the dynamic range, round robin.
    fn free_port(&mut self, taken: impl Fn(&Self, u16) -> bool) -> Option<u16> {
        let span = u16::MAX - FIRST_PORT + 1;
        for _ in 0..span {
            self.next_port = (self.next_port + 1) % span;
            let port = FIRST_PORT + self.next_port;
            if !taken(self, port) {
                return Some(port);
            }
        }
        None
    }
}
