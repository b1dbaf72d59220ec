//! A first look at each guest frame, before the interface sees it: what it is and whom
//! it is for, so the stack can decide on new flows and handle ARP and UDP itself.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::ops::Range;

use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol, IpProtocol,
    Ipv4Packet, TcpPacket, UdpPacket,
};

use crate::addr;
use crate::device::ETH_HEADER_LEN;
use crate::tcp::Key;

/// What a guest frame is.
#[derive(Debug, PartialEq, Eq)]
pub enum Peek {
    /// An ARP request for one of the stack's addresses; the reply to send.
    Arp(ArpRepr),
    /// A TCP segment; `syn` when it opens a connection (SYN without ACK).
    Tcp {
        /// The flow it belongs to.
        key: Key,
        /// Whether it is a SYN without ACK.
        syn: bool,
        /// The IP packet.
        ip: Range<usize>,
    },
    /// A UDP datagram.
    Udp {
        /// Its source.
        src: SocketAddrV4,
        /// Its destination.
        dst: SocketAddrV4,
        /// The payload.
        payload: Range<usize>,
    },
    /// Another IPv4 packet from the guest, for the interface (ICMP).
    Ip(Range<usize>),
    /// A well-formed frame not for the stack.
    Ignore,
    /// A frame that does not parse.
    Malformed,
}

/// Looks at the frame at `frame` of `buf`; with the sender's MAC when it parsed that far.
pub fn peek(buf: &[u8], frame: Range<usize>) -> (Option<EthernetAddress>, Peek) {
    let Some(bytes) = buf.get(frame.clone()) else {
        return (None, Peek::Malformed);
    };
    let Ok(eth) = EthernetFrame::new_checked(bytes) else {
        return (None, Peek::Malformed);
    };
    let mac = Some(eth.src_addr());
    let dst = eth.dst_addr();
    if dst != EthernetAddress(addr::GATEWAY_MAC) && !dst.is_broadcast() {
        return (mac, Peek::Ignore);
    }
    let at = frame.start + ETH_HEADER_LEN;
    let peek = match eth.ethertype() {
        EthernetProtocol::Arp => arp(eth.payload()),
        EthernetProtocol::Ipv4 => ipv4(eth.payload(), at),
        _ => Peek::Ignore,
    };
    (mac, peek)
}

fn arp(bytes: &[u8]) -> Peek {
    let Ok(packet) = ArpPacket::new_checked(bytes) else {
        return Peek::Malformed;
    };
    let Ok(repr) = ArpRepr::parse(&packet) else {
        return Peek::Malformed;
    };
    match repr {
        ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            source_hardware_addr,
            source_protocol_addr,
            target_protocol_addr,
            ..
        } if addr::is_stack(target_protocol_addr) && source_hardware_addr.is_unicast() => {
            Peek::Arp(ArpRepr::EthernetIpv4 {
                operation: ArpOperation::Reply,
                source_hardware_addr: EthernetAddress(addr::GATEWAY_MAC),
                source_protocol_addr: target_protocol_addr,
                target_hardware_addr: source_hardware_addr,
                target_protocol_addr: source_protocol_addr,
            })
        }
        _ => Peek::Ignore,
    }
}

fn ipv4(bytes: &[u8], at: usize) -> Peek {
    let Ok(packet) = Ipv4Packet::new_checked(bytes) else {
        return Peek::Malformed;
    };
    if packet.version() != 4 {
        return Peek::Malformed;
    }
    let (src, dst) = (packet.src_addr(), packet.dst_addr());
    // Only the guest's own address: a spoofed source would make the stack answer nobody.
    // Fragments are dropped: the guest's stack sends within the MTU it was given.
    if src != addr::GUEST || packet.more_frags() || packet.frag_offset() != 0 {
        return Peek::Ignore;
    }
    let header = usize::from(packet.header_len());
    let total = usize::from(packet.total_len());
    let ip = at..at + total;
    let payload = &bytes[header..total];
    let payload_at = at + header;
    match packet.next_header() {
        IpProtocol::Tcp => {
            let Ok(tcp) = TcpPacket::new_checked(payload) else {
                return Peek::Malformed;
            };
            if !unicast(dst) {
                return Peek::Ignore;
            }
            let key = Key {
                guest: SocketAddrV4::new(src, tcp.src_port()),
                remote: SocketAddrV4::new(dst, tcp.dst_port()),
            };
            let syn = tcp.syn() && !tcp.ack() && !tcp.rst();
            Peek::Tcp { key, syn, ip }
        }
        IpProtocol::Udp => {
            let Ok(udp) = UdpPacket::new_checked(payload) else {
                return Peek::Malformed;
            };
            if !unicast(dst) {
                return Peek::Ignore;
            }
            let len = usize::from(udp.len());
            Peek::Udp {
                src: SocketAddrV4::new(src, udp.src_port()),
                dst: SocketAddrV4::new(dst, udp.dst_port()),
                payload: payload_at + 8..payload_at + len,
            }
        }
        _ => Peek::Ip(ip),
    }
}

/// Whether `ip` names one host (not the subnet's broadcast, a multicast group or nothing).
fn unicast(ip: Ipv4Addr) -> bool {
    let broadcast = u32::from(addr::GATEWAY) | (u32::MAX >> addr::PREFIX_LEN);
    !(ip.is_broadcast() || ip.is_multicast() || ip.is_unspecified() || u32::from(ip) == broadcast)
}
