//! The stack's side of the guest's link: a smoltcp [`Device`] over the frame stream.
//!
//! The interface runs on `Medium::Ip`: the link strips and adds Ethernet headers and the
//! stack answers ARP itself, so the guest's MAC is never in a neighbor cache that expires
//! (an expiry costs a dropped segment and a retransmit) and the stack claims only its own
//! two addresses.

use std::ops::Range;
use std::sync::Arc;

use smoltcp::phy::{self, Checksum, ChecksumCapabilities, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, EthernetFrame, EthernetProtocol};

use crate::addr;
use crate::frames::{Reader, Writer};
use crate::stats::{Counters, bump};

/// The Ethernet header's length.
pub const ETH_HEADER_LEN: usize = 14;

/// Where the next packet the interface receives comes from.
enum Rx {
    None,
    Read(Range<usize>),
    Held,
}

/// The frame stream's two directions, as the interface sees them.
pub struct Link {
    /// Frames from the guest.
    pub reader: Reader,
    /// Frames to the guest.
    pub writer: Writer,
    rx: Rx,
    held: Vec<u8>,
    guest_mac: EthernetAddress,
    counters: Arc<Counters>,
}

impl Link {
    /// A link with nothing read or queued.
    pub(crate) fn new(counters: Arc<Counters>) -> Self {
        Self {
            reader: Reader::default(),
            writer: Writer::default(),
            rx: Rx::None,
            held: Vec::new(),
            guest_mac: EthernetAddress(addr::GUEST_MAC),
            counters,
        }
    }

    /// Learns the guest's MAC from a frame it sent, so replies reach a card with another one.
    pub fn learn(&mut self, mac: EthernetAddress) {
        if mac.is_unicast() {
            self.guest_mac = mac;
        }
    }

    /// Makes the interface's next receive the IP packet at `range` of the reader's buffer.
    pub fn feed(&mut self, range: Range<usize>) {
        self.rx = Rx::Read(range);
    }

    /// Makes the interface's next receive a copy of `packet` (a held SYN).
    pub fn feed_held(&mut self, packet: &[u8]) {
        self.held.clear();
        self.held.extend_from_slice(packet);
        self.rx = Rx::Held;
    }

    /// Queues a frame of `ethertype` with a `len`-byte payload `fill` writes; false (and
    /// nothing queued) when the guest is not keeping up.
    pub fn emit(
        &mut self,
        ethertype: EthernetProtocol,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> bool {
        if !self.writer.has_room() {
            return false;
        }
        write_frame(&mut self.writer, self.guest_mac, ethertype, len, fill);
        bump(&self.counters.frames_out, 1);
        true
    }
}

/// Queues one Ethernet frame from the gateway to the guest.
fn write_frame<R>(
    writer: &mut Writer,
    guest_mac: EthernetAddress,
    ethertype: EthernetProtocol,
    len: usize,
    fill: impl FnOnce(&mut [u8]) -> R,
) -> R {
    writer.push_with(ETH_HEADER_LEN + len, |buf| {
        let mut frame = EthernetFrame::new_unchecked(&mut *buf);
        frame.set_dst_addr(guest_mac);
        frame.set_src_addr(EthernetAddress(addr::GATEWAY_MAC));
        frame.set_ethertype(ethertype);
        fill(&mut buf[ETH_HEADER_LEN..])
    })
}

/// One received IP packet.
pub struct RxToken<'a>(&'a [u8]);

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }
}

/// Room for one IP packet to the guest.
pub struct TxToken<'a> {
    writer: &'a mut Writer,
    guest_mac: EthernetAddress,
    counters: &'a Counters,
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        bump(&self.counters.frames_out, 1);
        write_frame(self.writer, self.guest_mac, EthernetProtocol::Ipv4, len, f)
    }
}

impl Device for Link {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        let packet = match std::mem::replace(&mut self.rx, Rx::None) {
            Rx::None => return None,
            Rx::Read(range) => self.reader.bytes().get(range)?,
            Rx::Held => &self.held[..],
        };
        // A reply (an ACK, a RST) may overshoot the high-water mark by one frame: bounded.
        let tx = TxToken {
            writer: &mut self.writer,
            guest_mac: self.guest_mac,
            counters: &self.counters,
        };
        Some((RxToken(packet), tx))
    }

    fn transmit(&mut self, _: Instant) -> Option<TxToken<'_>> {
        self.writer.has_room().then(|| TxToken {
            writer: &mut self.writer,
            guest_mac: self.guest_mac,
            counters: &self.counters,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = addr::MTU;
        caps.checksum = checksums();
        caps
    }
}

/// Checksums the stack computes but does not verify: the guest's frames come over a local
/// socket that cannot corrupt them, and a guest using checksum offload sends partial ones.
pub fn checksums() -> ChecksumCapabilities {
    let mut caps = ChecksumCapabilities::default();
    caps.ipv4 = Checksum::Tx;
    caps.udp = Checksum::Tx;
    caps.tcp = Checksum::Tx;
    caps.icmpv4 = Checksum::Tx;
    caps
}
