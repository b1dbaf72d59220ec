//! UDP: guest datagrams out through host sockets bound per (guest port, destination), DNS
//! through the gate, and datagrams built for the guest by hand.

use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::ops::Range;
use std::time::Instant;

use mio::Interest;
use mio::net::UdpSocket;
use smoltcp::wire::{EthernetProtocol, IpProtocol, Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr};

use crate::addr;
use crate::device::{Link, checksums};
use crate::gate::{Dns, Egress};
use crate::stack::engine::{DNS, Engine, UDP, token};
use crate::stats::bump;

/// The DNS port.
const DNS_PORT: u16 = 53;
const IPV4_HEADER_LEN: usize = 20;
const UDP_HEADER_LEN: usize = 8;

/// A guest's UDP binding: its port and one destination, over one connected host socket.
pub struct Binding {
    socket: UdpSocket,
    guest_port: u16,
    remote: SocketAddrV4,
    last: Instant,
}

/// A DNS query forwarded upstream, over its own host socket.
pub struct Query {
    socket: UdpSocket,
    guest_port: u16,
    since: Instant,
}

/// A host UDP socket connected to `to`.
fn connected(to: SocketAddr) -> std::io::Result<UdpSocket> {
    let any = match to {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let socket = UdpSocket::bind(SocketAddr::new(any, 0))?;
    socket.connect(to)?;
    Ok(socket)
}

impl Engine {
    /// A guest datagram: DNS, a reply to a published port's peer, or egress.
    pub(crate) fn guest_udp(
        &mut self,
        src: SocketAddrV4,
        dst: SocketAddrV4,
        payload: Range<usize>,
    ) {
        if *dst.ip() == addr::DNS {
            if dst.port() == DNS_PORT {
                self.guest_dns(src.port(), payload);
            }
            return;
        }
        let data = &self.link.reader.bytes()[payload];
        if *dst.ip() == addr::GATEWAY && self.peers.reply(&self.listeners, dst.port(), data) {
            return;
        }
        let key = (src.port(), dst);
        if let Some(binding) = self
            .binding_index
            .get(&key)
            .and_then(|&i| self.bindings.get_mut(i))
        {
            // A full socket buffer drops the datagram, as a congested link would.
            let _ = binding.socket.send(data);
            binding.last = Instant::now();
            return;
        }
        if self.bindings.len() + self.peers.len() >= self.limits.max_udp_bindings {
            bump(&self.counters.flows_refused, 1);
            return;
        }
        // UDP has no first bytes to hold back: only an outright allow opens a binding.
        let Egress::Allow(to) = self.gate.datagram(SocketAddr::V4(dst)) else {
            return;
        };
        let Ok(socket) = connected(to) else {
            return;
        };
        let _ = socket.send(data);
        let binding = Binding {
            socket,
            guest_port: src.port(),
            remote: dst,
            last: Instant::now(),
        };
        let index = self.bindings.insert(binding);
        self.binding_index.insert(key, index);
        let registry = self.poll.registry();
        let registered = self
            .bindings
            .get_mut(index)
            .map(|b| registry.register(&mut b.socket, token(UDP, index), Interest::READABLE));
        if !matches!(registered, Some(Ok(()))) {
            self.close_binding(index);
        }
    }

    /// A guest DNS query, through the gate.
    fn guest_dns(&mut self, guest_port: u16, payload: Range<usize>) {
        let query = &self.link.reader.bytes()[payload];
        match self.gate.dns_query(query) {
            Dns::Answer(answer) => {
                let from = SocketAddrV4::new(addr::DNS, DNS_PORT);
                inject(
                    &mut self.link,
                    &mut self.ip_ident,
                    from,
                    guest_port,
                    &answer,
                );
            }
            Dns::Forward(query) => self.forward(guest_port, &query),
            Dns::Drop => {}
        }
    }

    /// Sends a query to the first upstream from a fresh socket, so replies cannot be
    /// spoofed across queries by port.
    fn forward(&mut self, guest_port: u16, query: &[u8]) {
        let Some(&upstream) = self.upstreams.first() else {
            return;
        };
        if self.queries.len() >= self.limits.max_dns_pending {
            bump(&self.counters.flows_refused, 1);
            return;
        }
        let Ok(socket) = connected(upstream) else {
            return;
        };
        if socket.send(query).is_err() {
            return;
        }
        let index = self.queries.insert(Query {
            socket,
            guest_port,
            since: Instant::now(),
        });
        let registry = self.poll.registry();
        let registered = self
            .queries
            .get_mut(index)
            .map(|q| registry.register(&mut q.socket, token(DNS, index), Interest::READABLE));
        if !matches!(registered, Some(Ok(()))) {
            self.queries.remove(index);
        }
    }

    /// A binding's host socket has datagrams: each goes to the guest from the destination
    /// the guest addressed.
    pub(crate) fn binding_ready(&mut self, index: usize) {
        let Some(b) = self.bindings.get_mut(index) else {
            return;
        };
        loop {
            match b.socket.recv(&mut self.scratch) {
                Ok(n) => {
                    b.last = Instant::now();
                    let data = &self.scratch[..n];
                    inject(
                        &mut self.link,
                        &mut self.ip_ident,
                        b.remote,
                        b.guest_port,
                        data,
                    );
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                // An ICMP error for an earlier datagram; later ones may still be answered.
                Err(_) => {}
            }
        }
    }

    /// An upstream answered a forwarded query: through the gate to the guest, once.
    pub(crate) fn query_ready(&mut self, index: usize) {
        let Some(q) = self.queries.get_mut(index) else {
            return;
        };
        let n = match q.socket.recv(&mut self.scratch) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(_) => {
                self.queries.remove(index);
                return;
            }
        };
        let guest_port = q.guest_port;
        if let Some(reply) = self.gate.dns_reply(&self.scratch[..n]) {
            let from = SocketAddrV4::new(addr::DNS, DNS_PORT);
            inject(&mut self.link, &mut self.ip_ident, from, guest_port, &reply);
        }
        self.queries.remove(index);
    }

    /// Frees binding `index`.
    fn close_binding(&mut self, index: usize) {
        if let Some(mut b) = self.bindings.remove(index) {
            self.binding_index.remove(&(b.guest_port, b.remote));
            let _ = self.poll.registry().deregister(&mut b.socket);
        }
    }

    /// Frees idle bindings and queries that got no answer in time.
    pub(crate) fn sweep_udp(&mut self, now: Instant) {
        let idle = self.limits.udp_idle_timeout;
        for index in self.bindings.indexes() {
            if self
                .bindings
                .get(index)
                .is_some_and(|b| now.saturating_duration_since(b.last) > idle)
            {
                self.close_binding(index);
            }
        }
        let wait = self.limits.dns_timeout;
        for index in self.queries.indexes() {
            if self
                .queries
                .get(index)
                .is_some_and(|q| now.saturating_duration_since(q.since) > wait)
            {
                self.queries.remove(index);
            }
        }
        self.peers.sweep(now, idle);
    }
}

/// Sends `payload` to the guest's `dst_port` from `src`, in IPv4 fragments when it is over
/// the MTU (a large DNS answer); dropped when the guest is not keeping up, as UDP may be.
pub(crate) fn inject(
    link: &mut Link,
    ident: &mut u16,
    src: SocketAddrV4,
    dst_port: u16,
    payload: &[u8],
) {
    let udp_len = UDP_HEADER_LEN + payload.len();
    if IPV4_HEADER_LEN + udp_len > usize::from(u16::MAX) {
        return;
    }
    let udp = UdpRepr {
        src_port: src.port(),
        dst_port,
    };
    let (src_ip, dst_ip) = ((*src.ip()).into(), addr::GUEST.into());
    let caps = checksums();
    let ip = Ipv4Repr {
        src_addr: *src.ip(),
        dst_addr: addr::GUEST,
        next_header: IpProtocol::Udp,
        payload_len: udp_len,
        hop_limit: 64,
    };
    if IPV4_HEADER_LEN + udp_len <= addr::MTU {
        link.emit(EthernetProtocol::Ipv4, IPV4_HEADER_LEN + udp_len, |buf| {
            ip.emit(&mut Ipv4Packet::new_unchecked(&mut *buf), &caps);
            let mut packet = UdpPacket::new_unchecked(&mut buf[IPV4_HEADER_LEN..]);
            udp.emit(
                &mut packet,
                &src_ip,
                &dst_ip,
                payload.len(),
                |p| p.copy_from_slice(payload),
                &caps,
            );
        });
        return;
    }
    // Rare (larger than the MTU): build the datagram once, then cut it into fragments.
    let mut datagram = vec![0; udp_len];
    let mut packet = UdpPacket::new_unchecked(&mut datagram[..]);
    udp.emit(
        &mut packet,
        &src_ip,
        &dst_ip,
        payload.len(),
        |p| p.copy_from_slice(payload),
        &caps,
    );
    *ident = ident.wrapping_add(1);
    let step = (addr::MTU - IPV4_HEADER_LEN) & !7;
    for (i, chunk) in datagram.chunks(step).enumerate() {
        let offset = i * step;
        let more = offset + chunk.len() < udp_len;
        let fragment = Ipv4Repr {
            payload_len: chunk.len(),
            ..ip
        };
        link.emit(
            EthernetProtocol::Ipv4,
            IPV4_HEADER_LEN + chunk.len(),
            |buf| {
                let mut packet = Ipv4Packet::new_unchecked(&mut *buf);
                fragment.emit(&mut packet, &caps);
                packet.set_ident(*ident);
                packet.set_dont_frag(false);
                packet.set_more_frags(more);
                // Offsets are in bytes here; a datagram is under 64 KiB, so this fits.
                packet.set_frag_offset(offset as u16);
                packet.fill_checksum();
                buf[IPV4_HEADER_LEN..].copy_from_slice(chunk);
            },
        );
    }
}
