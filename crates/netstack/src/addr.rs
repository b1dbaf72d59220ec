//! The box's network: one fixed private subnet per box, the same in every box (each box has
//! its own stack, so nothing is shared). The conventions are slirp's, which users know.

use std::net::Ipv4Addr;

/// The guest's address.
pub const GUEST: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
/// The gateway: the stack itself; `host.boxlite.internal` names it, and a flow to it reaches
/// the host's loopback when the policy allows.
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
/// The stack's DNS server.
pub const DNS: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 3);
/// The subnet's prefix length.
pub const PREFIX_LEN: u8 = 24;
/// The link MTU the guest is told to use.
pub const MTU: usize = 1500;
/// The guest's MAC address (QEMU's default for a first card).
pub const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
/// The stack's own MAC address (locally administered).
pub const GATEWAY_MAC: [u8; 6] = [0x52, 0x55, 0x0a, 0x00, 0x02, 0x02];
/// The name the box reaches the host by.
pub const HOST_NAME: &str = "host.boxlite.internal";

/// Whether `ip` is one of the stack's own addresses inside the box's subnet.
pub fn is_stack(ip: Ipv4Addr) -> bool {
    ip == GATEWAY || ip == DNS
}
