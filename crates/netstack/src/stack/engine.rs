//! The stack's event loop: one mio `Poll` over the guest's socket and every host socket.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::io::{self, ErrorKind};
use std::net::{SocketAddr, SocketAddrV4};
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mio::net::UnixStream;
use mio::{Events, Interest, Poll, Token};
use smoltcp::iface::{self, Interface, PollResult, SocketSet};
use smoltcp::wire::{ArpPacket, EthernetProtocol, HardwareAddress, IpCidr};

use super::peek::{Peek, peek};
use super::slab::Slab;
use super::{Config, Limits};
use crate::addr;
use crate::device::Link;
use crate::gate::Gate;
use crate::publish::{Listener, Peers};
use crate::stats::{Counters, bump, set};
use crate::tcp::{Flow, Key};
use crate::udp::{Binding, Query};

/// The guest's socket.
pub const GUEST: Token = Token(0);
/// The waker [`super::Running::stop`] rings.
pub const WAKER: Token = Token(1);
/// Published listeners: `LISTENER + index`.
const LISTENER: usize = 2;
/// A token's kind lives above this shift; its slab index below.
const KIND_SHIFT: u32 = 40;
/// TCP flows' host sockets.
pub const FLOW: usize = 1;
/// UDP bindings' host sockets.
pub const UDP: usize = 2;
/// Forwarded DNS queries' host sockets.
pub const DNS: usize = 3;

/// How often timeouts are enforced: their granularity.
const SWEEP_INTERVAL: Duration = Duration::from_millis(500);
/// Reads from the guest per turn before host sockets get their turn: fairness, and a bound
/// on how far guest frames may run ahead of the host sockets draining them.
const GUEST_READS_PER_TURN: usize = 4;

/// A token for entry `index` of slab `kind`.
pub fn token(kind: usize, index: usize) -> Token {
    Token((kind << KIND_SHIFT) | index)
}

/// Why a turn ended the loop, if it did.
#[derive(Debug, PartialEq, Eq)]
pub enum Turn {
    /// More to do.
    Continue,
    /// The guest closed its side.
    Closed,
    /// [`super::Running::stop`] asked.
    Stopped,
}

/// Everything the stack's thread owns.
pub struct Engine {
    pub(crate) poll: Poll,
    pub(crate) guest: UnixStream,
    pub(crate) iface: Interface,
    pub(crate) sockets: SocketSet<'static>,
    pub(crate) link: Link,
    pub(crate) gate: Box<dyn Gate>,
    pub(crate) limits: Limits,
    pub(crate) upstreams: Vec<SocketAddr>,
    pub(crate) counters: Arc<Counters>,
    epoch: Instant,
    pub(crate) flows: Slab<Flow>,
    pub(crate) flow_index: HashMap<Key, usize>,
    pub(crate) dirty: Vec<usize>,
    pub(crate) closing: Vec<(smoltcp::iface::SocketHandle, Instant)>,
    pub(crate) pending: usize,
    pub(crate) bindings: Slab<Binding>,
    pub(crate) binding_index: HashMap<(u16, SocketAddrV4), usize>,
    pub(crate) queries: Slab<Query>,
    pub(crate) listeners: Vec<Listener>,
    pub(crate) peers: Peers,
    pub(crate) next_port: u16,
    pub(crate) ip_ident: u16,
    /// One datagram's room, reused for every host UDP read.
    pub(crate) scratch: Box<[u8]>,
    guest_readable: bool,
    guest_writable: bool,
    next_sweep: Instant,
}

impl Engine {
    /// An engine for the guest at the other end of `guest`, serving `listeners`.
    pub fn new(
        guest: std::os::unix::net::UnixStream,
        config: Config,
        gate: Box<dyn Gate>,
        listeners: Vec<Listener>,
        counters: Arc<Counters>,
    ) -> io::Result<Self> {
        guest.set_nonblocking(true)?;
        let mut guest = UnixStream::from_std(guest);
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut guest, GUEST, Interest::READABLE | Interest::WRITABLE)?;
        let mut listeners = listeners;
        for (i, l) in listeners.iter_mut().enumerate() {
            l.register(poll.registry(), Token(LISTENER + i))?;
        }
        let mut link = Link::new(counters.clone());
        let mut cfg = iface::Config::new(HardwareAddress::Ip);
        // Initial sequence numbers the guest cannot predict from one box to the next.
        cfg.random_seed = RandomState::new().hash_one(std::process::id());
        let epoch = Instant::now();
        let mut iface = Interface::new(cfg, &mut link, smoltcp::time::Instant::ZERO);
        iface.update_ip_addrs(|ips| {
            for ip in [addr::GATEWAY, addr::DNS] {
                // Two addresses fit smoltcp's default capacity of two.
                let _ = ips.push(IpCidr::new(ip.into(), addr::PREFIX_LEN));
            }
        });
        iface.set_any_ip(true);
        // Any IP plus a default route through the gateway: the interface takes TCP to any
        // destination as its own, and the gate decides which get a host side.
        let _ = iface.routes_mut().add_default_ipv4_route(addr::GATEWAY);
        Ok(Self {
            poll,
            guest,
            iface,
            sockets: SocketSet::new(Vec::new()),
            link,
            gate,
            limits: config.limits,
            upstreams: config.dns_upstream,
            counters,
            epoch,
            flows: Slab::default(),
            flow_index: HashMap::new(),
            dirty: Vec::new(),
            closing: Vec::new(),
            pending: 0,
            bindings: Slab::default(),
            binding_index: HashMap::new(),
            queries: Slab::default(),
            listeners,
            peers: Peers::default(),
            next_port: 0,
            ip_ident: 0,
            scratch: vec![0; 65536].into_boxed_slice(),
            guest_readable: true,
            guest_writable: true,
            next_sweep: epoch + SWEEP_INTERVAL,
        })
    }

    /// Runs until the guest closes its side or `stop` is set.
    pub fn run(mut self, stop: &AtomicBool) {
        let mut events = Events::with_capacity(256);
        loop {
            match self.turn(&mut events, None) {
                Ok(Turn::Continue) => {}
                Ok(Turn::Stopped) if !stop.load(Ordering::Acquire) => {}
                Ok(_) | Err(_) => return,
            }
        }
    }

    /// The interface's clock.
    pub(crate) fn now(&self) -> smoltcp::time::Instant {
        smoltcp::time::Instant::from_micros(self.epoch.elapsed().as_micros() as i64)
    }

    /// Waits for events (at most `max_wait`), handles them, and moves every flow on.
    pub fn turn(&mut self, events: &mut Events, max_wait: Option<Duration>) -> io::Result<Turn> {
        let wait = self.wait();
        let wait = match (wait, max_wait) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match self.poll.poll(events, wait) {
            Err(e) if e.kind() == ErrorKind::Interrupted => return Ok(Turn::Continue),
            r => r?,
        }
        let mut stopped = false;
        for event in events.iter() {
            let Token(t) = event.token();
            let (kind, index) = (t >> KIND_SHIFT, t & ((1 << KIND_SHIFT) - 1));
            let readable = event.is_readable() || event.is_read_closed() || event.is_error();
            let writable = event.is_writable() || event.is_write_closed() || event.is_error();
            match (kind, event.token()) {
                (0, GUEST) => {
                    self.guest_readable |= readable;
                    self.guest_writable |= writable;
                }
                (0, WAKER) => stopped = true,
                (0, _) => self.listener_ready(index - LISTENER),
                (FLOW, _) => self.flow_ready(index, readable, writable),
                (UDP, _) => self.binding_ready(index),
                (DNS, _) => self.query_ready(index),
                _ => {}
            }
        }
        if stopped {
            return Ok(Turn::Stopped);
        }
        // Only while the frames queued for the guest have room: each guest frame may draw a
        // reply (a RST, an ICMP echo), and a guest that stops draining its side must stall
        // here rather than grow the queue without end.
        if self.guest_readable && self.link.writer.has_room() && self.read_guest()? == Turn::Closed
        {
            return Ok(Turn::Closed);
        }
        self.pump_dirty();
        self.egress()?;
        self.reap();
        if Instant::now() >= self.next_sweep {
            self.sweep();
            self.next_sweep = Instant::now() + SWEEP_INTERVAL;
        }
        self.publish_gauges();
        Ok(Turn::Continue)
    }

    /// How long the next poll may block.
    fn wait(&mut self) -> Option<Duration> {
        if (self.guest_readable && self.link.writer.has_room()) || !self.dirty.is_empty() {
            return Some(Duration::ZERO);
        }
        let now = self.now();
        let sweep = self.next_sweep.saturating_duration_since(Instant::now());
        let timer = self
            .iface
            .poll_delay(now, &self.sockets)
            .map(Duration::from);
        Some(timer.map_or(sweep, |t| t.min(sweep)))
    }

    /// Reads and handles guest frames; [`Turn::Closed`] when the guest hung up or broke the
    /// framing.
    fn read_guest(&mut self) -> io::Result<Turn> {
        for _ in 0..GUEST_READS_PER_TURN {
            match self.link.reader.fill(&mut self.guest) {
                Ok(0) => return Ok(Turn::Closed),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.guest_readable = false;
                    return Ok(Turn::Continue);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return Ok(Turn::Closed),
            }
            loop {
                match self.link.reader.next_frame() {
                    Ok(Some(frame)) => self.guest_frame(frame),
                    Ok(None) => break,
                    Err(_) => {
                        // A length past the maximum: the peer is broken, the stream unusable.
                        bump(&self.counters.frames_dropped, 1);
                        return Ok(Turn::Closed);
                    }
                }
            }
            // Drain what these frames brought before reading more.
            self.pump_dirty();
            self.egress()?;
            if !self.link.writer.has_room() {
                // The guest is not taking its frames: read on once it does.
                break;
            }
        }
        Ok(Turn::Continue)
    }

    /// Handles one guest frame.
    fn guest_frame(&mut self, frame: Range<usize>) {
        bump(&self.counters.frames_in, 1);
        let (mac, peek) = peek(self.link.reader.bytes(), frame);
        match peek {
            Peek::Malformed => bump(&self.counters.frames_dropped, 1),
            Peek::Ignore => {}
            Peek::Arp(reply) => {
                if let Some(mac) = mac {
                    self.link.learn(mac);
                }
                self.link
                    .emit(EthernetProtocol::Arp, reply.buffer_len(), |buf| {
                        reply.emit(&mut ArpPacket::new_unchecked(buf));
                    });
            }
            Peek::Ip(ip) => {
                self.link.feed(ip);
                self.ingress();
            }
            Peek::Tcp { key, syn, ip } => self.guest_tcp(key, syn, ip),
            Peek::Udp { src, dst, payload } => self.guest_udp(src, dst, payload),
        }
    }

    /// Lets the interface process the packet the link was just fed.
    pub(crate) fn ingress(&mut self) {
        let now = self.now();
        self.iface
            .poll_ingress_single(now, &mut self.link, &mut self.sockets);
    }

    /// Sends what the sockets have for the guest, as far as the guest's socket takes it.
    fn egress(&mut self) -> io::Result<()> {
        loop {
            let now = self.now();
            let result = self
                .iface
                .poll_egress(now, &mut self.link, &mut self.sockets);
            let full = !self.link.writer.has_room();
            if (full || result == PollResult::None) && !self.flush()? {
                return Ok(());
            }
            if result == PollResult::None {
                return Ok(());
            }
        }
    }

    /// Writes queued frames to the guest; false when its socket is full.
    fn flush(&mut self) -> io::Result<bool> {
        if !self.guest_writable {
            return Ok(false);
        }
        match self.link.writer.flush(&mut self.guest) {
            Ok(true) => Ok(true),
            Ok(false) => {
                self.guest_writable = false;
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Publishes the gauges for [`super::Running::stats`].
    fn publish_gauges(&self) {
        set(&self.counters.flows_open, self.flows.len());
        set(&self.counters.tcp_pending, self.pending);
        set(
            &self.counters.udp_bindings,
            self.bindings.len() + self.peers.len(),
        );
        set(&self.counters.dns_pending, self.queries.len());
    }

    /// Enforces every timeout.
    fn sweep(&mut self) {
        let now = Instant::now();
        self.sweep_flows(now);
        self.sweep_udp(now);
    }
}
