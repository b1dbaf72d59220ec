//! The guest side of the tests: a real smoltcp TCP/IP stack at 10.0.2.15 on the other end
//! of the stack's socket pair, plus helpers for host servers and descriptor counts.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::{HashSet, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, SocketAddrV4, TcpListener, UdpSocket};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use netstack::{Config, Dns, Egress, Gate, Inspection, Running, Stack, addr};
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::socket::{tcp, udp};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr};

/// A gate for tests: every destination port maps to the same port on 127.0.0.1, except
/// those it denies or inspects.
#[derive(Default, Clone)]
pub struct TestGate {
    pub deny: HashSet<u16>,
    pub inspect: HashSet<u16>,
}

impl Gate for TestGate {
    fn connect(&mut self, dst: SocketAddr) -> Egress {
        let to = SocketAddr::from(([127, 0, 0, 1], dst.port()));
        if self.deny.contains(&dst.port()) {
            Egress::Deny
        } else if self.inspect.contains(&dst.port()) {
            Egress::Inspect(to)
        } else {
            Egress::Allow(to)
        }
    }

    /// Allows a first line starting with "GET", denies any other.
    fn inspect(&mut self, _: SocketAddr, first: &[u8]) -> Inspection {
        if !first.contains(&b'\n') {
            Inspection::NeedMore
        } else if first.starts_with(b"GET") {
            Inspection::Allow
        } else {
            Inspection::Deny
        }
    }

    fn datagram(&mut self, dst: SocketAddr) -> Egress {
        self.connect(dst)
    }

    fn dns_query(&mut self, query: &[u8]) -> Dns {
        if query.starts_with(b"local") {
            Dns::Answer(b"answered".to_vec())
        } else {
            Dns::Forward(query.to_vec())
        }
    }

    fn dns_reply(&mut self, reply: &[u8]) -> Option<Vec<u8>> {
        Some([b"via-gate:", reply].concat())
    }
}

/// The guest's network card: frames over the stream.
#[derive(Default)]
struct Card {
    rx: VecDeque<Vec<u8>>,
    tx: Vec<u8>,
}

struct Rx(Vec<u8>);
struct Tx<'a>(&'a mut Vec<u8>);

impl phy::RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0; len];
        let r = f(&mut frame);
        self.0.extend_from_slice(&(len as u32).to_be_bytes());
        self.0.extend_from_slice(&frame);
        r
    }
}

impl Device for Card {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _: smoltcp::time::Instant) -> Option<(Rx, Tx<'_>)> {
        let frame = self.rx.pop_front()?;
        Some((Rx(frame), Tx(&mut self.tx)))
    }

    fn transmit(&mut self, _: smoltcp::time::Instant) -> Option<Tx<'_>> {
        Some(Tx(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = addr::MTU + 14;
        caps
    }
}

/// The guest: a smoltcp interface at 10.0.2.15 on the stack's socket pair.
pub struct Guest {
    stream: UnixStream,
    inbuf: Vec<u8>,
    card: Card,
    pub iface: Interface,
    pub sockets: SocketSet<'static>,
    epoch: Instant,
    /// While set, frames from the stack are read and thrown away (a SYN flooder's card).
    pub mute: bool,
    pub frames_seen: usize,
}

impl Guest {
    pub fn new(stream: UnixStream) -> Self {
        stream.set_nonblocking(true).unwrap();
        let mut card = Card::default();
        let hw = HardwareAddress::Ethernet(EthernetAddress(addr::GUEST_MAC));
        let mut iface = Interface::new(
            IfaceConfig::new(hw),
            &mut card,
            smoltcp::time::Instant::ZERO,
        );
        iface.update_ip_addrs(|ips| {
            ips.push(IpCidr::new(addr::GUEST.into(), addr::PREFIX_LEN))
                .unwrap();
        });
        iface
            .routes_mut()
            .add_default_ipv4_route(addr::GATEWAY)
            .unwrap();
        Self {
            stream,
            inbuf: Vec::new(),
            card,
            iface,
            sockets: SocketSet::new(Vec::new()),
            epoch: Instant::now(),
            mute: false,
            frames_seen: 0,
        }
    }

    fn now(&self) -> smoltcp::time::Instant {
        smoltcp::time::Instant::from_micros(self.epoch.elapsed().as_micros() as i64)
    }

    /// Writes a raw frame (behind its length) to the stack.
    pub fn send_raw(&mut self, frame: &[u8]) {
        self.card
            .tx
            .extend_from_slice(&(frame.len() as u32).to_be_bytes());
        self.card.tx.extend_from_slice(frame);
        self.flush();
    }

    /// Writes raw bytes to the stream, framing and all.
    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.card.tx.extend_from_slice(bytes);
        self.flush();
    }

    fn flush(&mut self) {
        while !self.card.tx.is_empty() {
            match self.stream.write(&self.card.tx) {
                Ok(n) => {
                    self.card.tx.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    // Let the stack's answers out so it can read ours.
                    self.read();
                    std::thread::sleep(Duration::from_micros(100));
                }
                Err(_) => {
                    self.card.tx.clear();
                    return;
                }
            }
        }
    }

    fn read(&mut self) -> bool {
        let mut buf = [0u8; 65536];
        let mut any = false;
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    any = true;
                    self.inbuf.extend_from_slice(&buf[..n]);
                }
                Err(_) => break,
            }
        }
        while self.inbuf.len() >= 4 {
            let len = u32::from_be_bytes(self.inbuf[..4].try_into().unwrap()) as usize;
            if self.inbuf.len() < 4 + len {
                break;
            }
            let frame = self.inbuf[4..4 + len].to_vec();
            self.inbuf.drain(..4 + len);
            self.frames_seen += 1;
            if !self.mute {
                self.card.rx.push_back(frame);
            }
        }
        any
    }

    /// One round: frames in, the interface, frames out.
    pub fn poll(&mut self) -> bool {
        let got = self.read();
        let now = self.now();
        self.iface.poll(now, &mut self.card, &mut self.sockets);
        self.flush();
        got
    }

    /// Polls until `done` or `timeout`; whether `done` came.
    pub fn run_until(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut(&mut Self) -> bool,
    ) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if done(self) {
                return true;
            }
            if !self.poll() {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        done(self)
    }

    /// A TCP socket connecting from `local_port` to `dst`.
    pub fn connect(&mut self, local_port: u16, dst: SocketAddrV4, buffer: usize) -> SocketHandle {
        let mut sock = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; buffer]),
            tcp::SocketBuffer::new(vec![0; buffer]),
        );
        let cx = self.iface.context();
        sock.connect(cx, (*dst.ip(), dst.port()), local_port)
            .unwrap();
        self.sockets.add(sock)
    }

    /// A TCP socket listening on `port`.
    pub fn listen(&mut self, port: u16) -> SocketHandle {
        let mut sock = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 65536]),
            tcp::SocketBuffer::new(vec![0; 65536]),
        );
        sock.listen(port).unwrap();
        self.sockets.add(sock)
    }

    /// A UDP socket bound to `port`.
    pub fn udp(&mut self, port: u16) -> SocketHandle {
        let meta = || vec![udp::PacketMetadata::EMPTY; 16];
        let mut sock = udp::Socket::new(
            udp::PacketBuffer::new(meta(), vec![0; 65536]),
            udp::PacketBuffer::new(meta(), vec![0; 65536]),
        );
        sock.bind(port).unwrap();
        self.sockets.add(sock)
    }

    pub fn tcp(&mut self, h: SocketHandle) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(h)
    }

    pub fn udp_socket(&mut self, h: SocketHandle) -> &mut udp::Socket<'static> {
        self.sockets.get_mut::<udp::Socket>(h)
    }

    /// Sends `data` on a connected socket and reads until `want` bytes came back, or the
    /// peer closed; what came back.
    pub fn exchange(&mut self, h: SocketHandle, data: &[u8], want: usize) -> Vec<u8> {
        let mut sent = 0;
        let mut got = Vec::new();
        self.run_until(Duration::from_secs(10), |g| {
            let s = g.tcp(h);
            if s.can_send() && sent < data.len() {
                sent += s.send_slice(&data[sent..]).unwrap();
            }
            while s.can_recv() {
                s.recv(|b| {
                    got.extend_from_slice(b);
                    (b.len(), ())
                })
                .unwrap();
            }
            let closed = !s.may_recv() && s.state() != tcp::State::SynSent;
            (sent == data.len() && got.len() >= want) || closed
        });
        got
    }
}

/// Starts a stack with `gate` and `config`, and its guest.
pub fn start(gate: impl Gate, config: Config) -> (Running, Guest) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let running = Stack::start(ours, config, Box::new(gate)).unwrap();
    (running, Guest::new(theirs))
}

/// A TCP echo server on 127.0.0.1; its port. Each connection echoes until EOF, then closes.
pub fn echo_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 || conn.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

/// A UDP server on 127.0.0.1 answering each datagram with `prefix` + it; its port.
pub fn udp_server(prefix: &'static [u8]) -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&[prefix, &buf[..n]].concat(), from);
        }
    });
    port
}

/// A port on 127.0.0.1 nothing listens on.
pub fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// This process's open descriptors.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// The gateway's `port`, where the test gate maps to 127.0.0.1.
pub fn gateway(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(addr::GATEWAY, port)
}

/// A guest SYN from `src_port` to `dst`, as a whole Ethernet frame.
pub fn syn_frame(src_port: u16, dst: SocketAddrV4) -> Vec<u8> {
    use smoltcp::wire::{
        EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, Ipv4Repr, TcpPacket,
    };
    let mut frame = vec![0u8; 14 + 20 + 20];
    let mut eth = EthernetFrame::new_unchecked(&mut frame[..]);
    eth.set_dst_addr(EthernetAddress(addr::GATEWAY_MAC));
    eth.set_src_addr(EthernetAddress(addr::GUEST_MAC));
    eth.set_ethertype(EthernetProtocol::Ipv4);
    let ip = Ipv4Repr {
        src_addr: addr::GUEST,
        dst_addr: *dst.ip(),
        next_header: IpProtocol::Tcp,
        payload_len: 20,
        hop_limit: 64,
    };
    ip.emit(
        &mut Ipv4Packet::new_unchecked(&mut frame[14..34]),
        &smoltcp::phy::ChecksumCapabilities::default(),
    );
    let mut tcp = TcpPacket::new_unchecked(&mut frame[34..]);
    tcp.set_src_port(src_port);
    tcp.set_dst_port(dst.port());
    tcp.set_seq_number(smoltcp::wire::TcpSeqNumber(i32::from(src_port) * 7919));
    tcp.set_ack_number(smoltcp::wire::TcpSeqNumber(0));
    tcp.set_header_len(20);
    tcp.clear_flags();
    tcp.set_syn(true);
    tcp.set_window_len(65535);
    tcp.fill_checksum(&addr::GUEST.into(), &(*dst.ip()).into());
    frame
}
