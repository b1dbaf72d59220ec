//! TCP flows: a guest connection terminated by a smoltcp socket, joined to a host socket.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, SocketAddrV4};
use std::ops::Range;
use std::time::Instant;

use mio::Interest;
use mio::net::TcpStream;
use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp::{self, State};
use smoltcp::wire::IpListenEndpoint;

use crate::gate::{Egress, Inspection};
use crate::stack::CLOSING_TIMEOUT;
use crate::stack::engine::{Engine, FLOW, token};
use crate::stats::{Counters, bump};

/// A flow's name: the guest's end and the far end, as the guest sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    /// The guest's address and port.
    pub guest: SocketAddrV4,
    /// The address and port the guest talks to.
    pub remote: SocketAddrV4,
}

/// Where a flow is in its life.
pub enum Phase {
    /// The host connect is in progress; the guest's SYN waits, unanswered.
    Connecting {
        /// The guest's SYN, fed to the interface once the host side exists.
        syn: Vec<u8>,
    },
    /// The guest side is up; its first bytes wait for the gate.
    Inspecting {
        /// Where to connect when the gate allows.
        to: SocketAddr,
    },
    /// The gate allowed a held flow; its host connect is in progress.
    Dialing,
    /// Both sides exist: bytes flow.
    Open,
}

/// One TCP flow.
pub struct Flow {
    /// Its name.
    pub key: Key,
    /// Where it is.
    pub phase: Phase,
    /// The host socket.
    pub host: Option<TcpStream>,
    /// The guest side's smoltcp socket.
    pub socket: Option<SocketHandle>,
    /// When the current phase began: timeouts count from it.
    pub since: Instant,
    /// Whether it waits in the dirty list.
    pub dirty: bool,
    readable: bool,
    writable: bool,
    host_eof: bool,
    host_shut: bool,
    /// Guest bytes held back (inspection) that the host gets before any others.
    held: Vec<u8>,
    held_at: usize,
}

/// Whether a flow lives on.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It does.
    Keep,
    /// It is over: free it.
    Done,
}

impl Flow {
    fn new(key: Key, phase: Phase, host: Option<TcpStream>, socket: Option<SocketHandle>) -> Self {
        Self {
            key,
            phase,
            host,
            socket,
            since: Instant::now(),
            dirty: false,
            readable: false,
            writable: false,
            host_eof: false,
            host_shut: false,
            held: Vec::new(),
            held_at: 0,
        }
    }

    /// Whether the host connect finished: `None` while it is in progress.
    fn connected(&self) -> Option<io::Result<()>> {
        let host = self.host.as_ref()?;
        match host.take_error() {
            Ok(Some(e)) | Err(e) => return Some(Err(e)),
            Ok(None) => {}
        }
        match host.peer_addr() {
            Ok(_) => Some(Ok(())),
            Err(e) if e.kind() == ErrorKind::NotConnected => None,
            Err(e) => Some(Err(e)),
        }
    }

    /// Moves bytes both ways as far as buffers allow, and passes on FINs.
    fn pump(&mut self, sock: &mut tcp::Socket, counters: &Counters) -> Verdict {
        let Some(host) = self.host.as_mut() else {
            return Verdict::Done;
        };
        // Guest to host: held bytes first, then straight from the socket's receive buffer.
        while self.writable && self.held_at < self.held.len() {
            match host.write(&self.held[self.held_at..]) {
                Ok(n) => {
                    self.held_at += n;
                    bump(&counters.bytes_to_host, n as u64);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => self.writable = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return reset(sock),
            }
        }
        let held_out = self.held_at == self.held.len();
        if held_out && !self.held.is_empty() {
            self.held = Vec::new();
            self.held_at = 0;
        }
        while held_out && self.writable && sock.can_recv() {
            match sock.recv(|buf| match host.write(buf) {
                Ok(n) => (n, Ok(n)),
                Err(e) => (0, Err(e)),
            }) {
                Ok(Ok(n)) => bump(&counters.bytes_to_host, n as u64),
                Ok(Err(e)) if e.kind() == ErrorKind::WouldBlock => self.writable = false,
                Ok(Err(e)) if e.kind() == ErrorKind::Interrupted => {}
                Ok(Err(_)) | Err(_) => return reset(sock),
            }
        }
        let guest_fin = matches!(
            sock.state(),
            State::CloseWait | State::LastAck | State::Closing | State::TimeWait
        );
        if guest_fin && held_out && !sock.can_recv() && !self.host_shut {
            self.host_shut = true;
            let _ = host.shutdown(Shutdown::Write);
        }
        // Host to guest: read straight into the socket's send buffer, only what it has room
        // for; the rest waits in the host kernel, which closes the host's window.
        while self.readable && !self.host_eof && sock.can_send() {
            match sock.send(|buf| match host.read(buf) {
                Ok(n) => (n, Ok(n)),
                Err(e) => (0, Err(e)),
            }) {
                Ok(Ok(0)) => {
                    self.host_eof = true;
                    sock.close();
                }
                Ok(Ok(n)) => bump(&counters.bytes_to_guest, n as u64),
                Ok(Err(e)) if e.kind() == ErrorKind::WouldBlock => self.readable = false,
                Ok(Err(e)) if e.kind() == ErrorKind::Interrupted => {}
                Ok(Err(_)) | Err(_) => return reset(sock),
            }
        }
        match sock.state() {
            State::Closed | State::Listen => Verdict::Done,
            State::TimeWait if self.host_shut => Verdict::Done,
            _ => Verdict::Keep,
        }
    }
}

/// Resets the guest side (the RST goes out with the next egress).
fn reset(sock: &mut tcp::Socket) -> Verdict {
    sock.abort();
    Verdict::Done
}

impl Engine {
    /// A guest TCP segment: a new flow's SYN goes to the gate; others to their flow.
    pub(crate) fn guest_tcp(&mut self, key: Key, syn: bool, ip: Range<usize>) {
        if let Some(&index) = self.flow_index.get(&key) {
            let Some(flow) = self.flows.get(index) else {
                return;
            };
            // No socket yet: the host connect is in progress and this is a retransmitted
            // SYN (or a stray); the guest retries.
            let Some(handle) = flow.socket else {
                return;
            };
            self.link.feed(ip);
            self.ingress();
            let sock = self.sockets.get_mut::<tcp::Socket>(handle);
            if sock.state() == State::Listen {
                // A RST in SYN-RECEIVED puts a socket back to listening: it must not take
                // another flow's SYN.
                sock.close();
            }
            self.mark_dirty(index);
            return;
        }
        if !syn {
            // No flow: the interface answers with a RST.
            self.link.feed(ip);
            self.ingress();
            return;
        }
        if self.tcp_held() >= self.limits.max_tcp_flows {
            bump(&self.counters.flows_refused, 1);
            self.link.feed(ip);
            self.ingress();
            return;
        }
        match self.gate.connect(SocketAddr::V4(key.remote)) {
            Egress::Deny => {
                self.link.feed(ip);
                self.ingress();
            }
            Egress::Allow(to) => self.dial(key, to, ip),
            Egress::Inspect(to) => {
                let handle = self.listen(key);
                self.link.feed(ip);
                self.ingress();
                let flow = Flow::new(key, Phase::Inspecting { to }, None, Some(handle));
                let index = self.add_flow(flow);
                self.mark_dirty(index);
            }
        }
    }

    /// Starts the host connect for a guest SYN, holding the SYN.
    fn dial(&mut self, key: Key, to: SocketAddr, ip: Range<usize>) {
        if self.pending >= self.limits.max_pending_connects {
            // Dropped, not queued: the guest retransmits when there may be room.
            bump(&self.counters.flows_refused, 1);
            return;
        }
        let Ok(host) = TcpStream::connect(to) else {
            self.link.feed(ip);
            self.ingress();
            return;
        };
        let syn = self.link.reader.bytes()[ip].to_vec();
        let index = self.add_flow(Flow::new(key, Phase::Connecting { syn }, Some(host), None));
        self.pending += 1;
        if self.register(index).is_err() {
            self.connect_failed(index);
        }
    }

    /// Registers flow `index`'s host socket.
    fn register(&mut self, index: usize) -> io::Result<()> {
        let registry = self.poll.registry();
        let Some(host) = self.flows.get_mut(index).and_then(|f| f.host.as_mut()) else {
            return Ok(());
        };
        registry.register(
            host,
            token(FLOW, index),
            Interest::READABLE | Interest::WRITABLE,
        )
    }

    /// A smoltcp socket listening on exactly the guest's destination.
    fn listen(&mut self, key: Key) -> SocketHandle {
        let mut sock = self.new_socket();
        let local = IpListenEndpoint {
            addr: Some((*key.remote.ip()).into()),
            port: key.remote.port(),
        };
        // Port 0 is the one endpoint `listen` refuses; the SYN then meets no socket: a RST.
        let _ = sock.listen(local);
        self.sockets.add(sock)
    }

    /// A smoltcp socket with the configured buffers.
    pub(crate) fn new_socket(&self) -> tcp::Socket<'static> {
        let size = self.limits.tcp_buffer;
        // `vec![0; n]` is calloc: pages are committed only as the window fills them.
        let rx = tcp::SocketBuffer::new(vec![0; size]);
        let tx = tcp::SocketBuffer::new(vec![0; size]);
        let mut sock = tcp::Socket::new(rx, tx);
        // The host side already coalesces; Nagle here would only add latency.
        sock.set_nagle_enabled(false);
        sock
    }

    /// Adds a flow.
    pub(crate) fn add_flow(&mut self, flow: Flow) -> usize {
        let key = flow.key;
        let index = self.flows.insert(flow);
        self.flow_index.insert(key, index);
        bump(&self.counters.tcp_flows_total, 1);
        index
    }

    /// Adds a flow that is already open on the host side (a published port's).
    pub(crate) fn add_open_flow(
        &mut self,
        key: Key,
        host: TcpStream,
        socket: SocketHandle,
    ) -> io::Result<()> {
        let index = self.add_flow(Flow::new(key, Phase::Open, Some(host), Some(socket)));
        let result = self.register(index);
        if result.is_err() {
            self.finish(index);
        }
        result
    }

    /// Queues flow `index` to be moved on this turn.
    pub(crate) fn mark_dirty(&mut self, index: usize) {
        if let Some(flow) = self.flows.get_mut(index)
            && !flow.dirty
        {
            flow.dirty = true;
            self.dirty.push(index);
        }
    }

    /// A host socket's readiness.
    pub(crate) fn flow_ready(&mut self, index: usize, readable: bool, writable: bool) {
        if let Some(flow) = self.flows.get_mut(index) {
            flow.readable |= readable;
            flow.writable |= writable;
            self.mark_dirty(index);
        }
    }

    /// Moves every dirty flow on.
    pub(crate) fn pump_dirty(&mut self) {
        while !self.dirty.is_empty() {
            let mut list = std::mem::take(&mut self.dirty);
            for &index in &list {
                if let Some(flow) = self.flows.get_mut(index) {
                    flow.dirty = false;
                    self.advance(index);
                }
            }
            list.clear();
            if self.dirty.is_empty() {
                self.dirty = list;
            }
        }
    }

    /// Moves flow `index` through its phases and pumps it.
    fn advance(&mut self, index: usize) {
        let Some(flow) = self.flows.get_mut(index) else {
            return;
        };
        // Two syscalls: only while a connect is in flight.
        let connecting = matches!(flow.phase, Phase::Connecting { .. } | Phase::Dialing);
        let connected = if connecting { flow.connected() } else { None };
        match &mut flow.phase {
            Phase::Connecting { syn } => match connected {
                None => return,
                Some(Err(_)) => return self.connect_failed(index),
                Some(Ok(())) => {
                    let syn = std::mem::take(syn);
                    self.pending -= 1;
                    let key = flow.key;
                    let handle = self.listen(key);
                    self.link.feed_held(&syn);
                    self.ingress();
                    let Some(flow) = self.flows.get_mut(index) else {
                        return;
                    };
                    flow.socket = Some(handle);
                    flow.phase = Phase::Open;
                    flow.since = Instant::now();
                }
            },
            Phase::Inspecting { to } => {
                let to = *to;
                return self.inspect(index, to);
            }
            Phase::Dialing => match connected {
                None => return,
                Some(Err(_)) => return self.abort(index),
                Some(Ok(())) => {
                    flow.phase = Phase::Open;
                    flow.since = Instant::now();
                }
            },
            Phase::Open => {}
        }
        let Some(flow) = self.flows.get_mut(index) else {
            return;
        };
        let Some(handle) = flow.socket else {
            return;
        };
        let sock = self.sockets.get_mut::<tcp::Socket>(handle);
        if flow.pump(sock, &self.counters) == Verdict::Done {
            self.finish(index);
        }
    }

    /// Collects a held flow's first bytes and asks the gate about them.
    fn inspect(&mut self, index: usize, to: SocketAddr) {
        let Some(flow) = self.flows.get_mut(index) else {
            return;
        };
        let Some(handle) = flow.socket else {
            return;
        };
        let sock = self.sockets.get_mut::<tcp::Socket>(handle);
        let cap = self.limits.max_inspect_bytes;
        let before = flow.held.len();
        while flow.held.len() < cap && sock.can_recv() {
            let room = cap - flow.held.len();
            let got = sock.recv(|buf| {
                let n = buf.len().min(room);
                flow.held.extend_from_slice(&buf[..n]);
                (n, n)
            });
            if got.is_err() {
                break;
            }
        }
        let state = sock.state();
        if matches!(state, State::Closed | State::Listen) {
            return self.finish(index);
        }
        // Still in its handshake: nothing to inspect yet (the sweep times it out).
        if state == State::SynReceived {
            return;
        }
        let guest_done = !sock.may_recv();
        if flow.held.len() == before && !guest_done {
            return;
        }
        let dst = SocketAddr::V4(flow.key.remote);
        match self.gate.inspect(dst, &flow.held) {
            Inspection::Allow => {}
            Inspection::Deny => return self.abort(index),
            Inspection::NeedMore if flow.held.len() >= cap || guest_done => {
                return self.abort(index);
            }
            Inspection::NeedMore => return,
        }
        let Ok(host) = TcpStream::connect(to) else {
            return self.abort(index);
        };
        flow.host = Some(host);
        flow.phase = Phase::Dialing;
        flow.since = Instant::now();
        if self.register(index).is_err() {
            self.abort(index);
        }
    }

    /// The host connect for flow `index` failed: the guest's held SYN meets no socket,
    /// so the interface answers it with a RST.
    fn connect_failed(&mut self, index: usize) {
        self.pending -= 1;
        if let Some(Flow {
            phase: Phase::Connecting { syn },
            ..
        }) = self.flows.get_mut(index)
        {
            let syn = std::mem::take(syn);
            self.finish(index);
            self.link.feed_held(&syn);
            self.ingress();
        }
    }

    /// Resets flow `index`'s guest side and frees it.
    pub(crate) fn abort(&mut self, index: usize) {
        if let Some(handle) = self.flows.get(index).and_then(|f| f.socket) {
            self.sockets.get_mut::<tcp::Socket>(handle).abort();
        }
        self.finish(index);
    }

    /// Frees flow `index`: its host socket now, its smoltcp socket once any RST is out.
    pub(crate) fn finish(&mut self, index: usize) {
        let Some(mut flow) = self.flows.remove(index) else {
            return;
        };
        self.flow_index.remove(&flow.key);
        if let Some(mut host) = flow.host.take() {
            let _ = self.poll.registry().deregister(&mut host);
        }
        if let Some(handle) = flow.socket {
            let sock = self.sockets.get_mut::<tcp::Socket>(handle);
            if sock.state() == State::Closed && sock.remote_endpoint().is_some() {
                self.closing.push((handle, Instant::now()));
            } else {
                self.sockets.remove(handle);
            }
        }
    }

    /// Frees the sockets whose RST went out, and those that waited [`CLOSING_TIMEOUT`] for
    /// it (a guest that takes no frames must not keep their buffers forever).
    pub(crate) fn reap(&mut self) {
        let sockets = &mut self.sockets;
        let now = Instant::now();
        self.closing.retain(|&(handle, since)| {
            let sent = sockets
                .get::<tcp::Socket>(handle)
                .remote_endpoint()
                .is_none();
            let done = sent || now.saturating_duration_since(since) > CLOSING_TIMEOUT;
            if done {
                sockets.remove(handle);
            }
            !done
        });
    }

    /// Flows plus sockets still waiting to send their RST: both hold buffers, so both count
    /// against [`Limits::max_tcp_flows`](crate::Limits).
    pub(crate) fn tcp_held(&self) -> usize {
        self.flows.len() + self.closing.len()
    }

    /// Ends flows stuck connecting, inspecting or half-open past their timeouts.
    pub(crate) fn sweep_flows(&mut self, now: Instant) {
        for index in self.flows.indexes() {
            let Some(flow) = self.flows.get(index) else {
                continue;
            };
            let age = now.saturating_duration_since(flow.since);
            let limits = &self.limits;
            let half_open = flow.socket.is_some_and(|h| {
                matches!(
                    self.sockets.get::<tcp::Socket>(h).state(),
                    State::SynSent | State::SynReceived
                )
            });
            match flow.phase {
                Phase::Connecting { .. } if age > limits.connect_timeout => {
                    self.connect_failed(index)
                }
                Phase::Dialing if age > limits.connect_timeout => self.abort(index),
                Phase::Inspecting { .. } if age > limits.inspect_timeout => self.abort(index),
                _ if half_open && age > limits.handshake_timeout => self.abort(index),
                _ => {}
            }
        }
    }
}
