//! The box's network, configured by the agent itself: no DHCP client and no program from the
//! image (a `FROM scratch` image has none), so every box gets the same network however bare.
//!
//! Loopback always comes up. With `boxlite.net` ([`crate::cmdline::NetConfig`]) the network
//! card gets its address, netmask, MTU and the default route; without it the card stays down,
//! so a box without a network has nothing but `lo`. Everything happens in the agent's own
//! network namespace, which every command shares (they are chrooted, not namespaced), before
//! any command runs.
//!
//! Configured with the classic `SIOCSIF*` and `SIOCADDRT` ioctls rather than rtnetlink: each
//! is one fixed-size struct and one call with a plain errno, with no messages to build or
//! replies to parse; the box's subnet is IPv4 only, which is all these ioctls cover.
//!
//! The card is the first Ethernet interface in `/sys/class/net` (by name): a box has exactly
//! one, and looking it up by type keeps working whatever the host sets its MAC address to.

use std::ffi::CString;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::cmdline::NetConfig;
use crate::error::{Error, Result};

/// Where the kernel lists network interfaces.
const SYS_CLASS_NET: &str = "/sys/class/net";
/// `/sys/class/net/*/type` of an Ethernet card (`ARPHRD_ETHER`).
const ARPHRD_ETHER: &str = "1";

/// Brings `lo` up and, when `net` is given, configures the network card.
pub fn configure(net: Option<&NetConfig>) -> Result<()> {
    let socket = control_socket()?;
    let loopback = Ipv4Addr::LOCALHOST;
    set_address(&socket, "lo", loopback, Ipv4Addr::new(255, 0, 0, 0))?;
    set_up(&socket, "lo")?;
    let Some(net) = net else {
        return Ok(());
    };
    let name = card(SYS_CLASS_NET)?;
    // IPv4 only: without this the kernel gives the card an IPv6 link-local address and sends
    // router solicitations the box's network never answers.
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "1");
    set_address(&socket, &name, net.address, net.netmask())?;
    let mut req = ifreq(&name)?;
    req.ifr_ifru.ifru_mtu = libc::c_int::from(net.mtu);
    ioctl(
        &socket,
        libc::SIOCSIFMTU,
        &mut req,
        "setting the MTU of",
        &name,
    )?;
    set_up(&socket, &name)?;
    add_default_route(&socket, &name, net.gateway)
}

/// The first Ethernet interface listed in `dir` (a `/sys/class/net`), by name.
pub fn card(dir: &str) -> Result<String> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io("listing", dir, e))?;
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| {
            std::fs::read_to_string(e.path().join("type")).is_ok_and(|t| t.trim() == ARPHRD_ETHER)
        })
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    names.into_iter().next().ok_or_else(|| {
        Error::NotFound(format!(
            "boxlite.net is set but there is no network card in {dir} (the host must attach \
             a virtio-net device)"
        ))
    })
}

fn control_socket() -> Result<OwnedFd> {
    // SAFETY: socket(2) with constant arguments touches no memory; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(Error::io(
            "opening",
            "a socket to configure the network",
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: `fd` was just returned by socket(2) and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// An `ifreq` naming interface `name`, the rest zeroed.
fn ifreq(name: &str) -> Result<libc::ifreq> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(Error::Invalid(format!("{name:?} is not an interface name")));
    }
    // SAFETY: ifreq is plain data (arrays, integers, a union of those and a pointer), for
    // which all-zero bytes are a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (to, &from) in req.ifr_name.iter_mut().zip(bytes) {
        *to = from as libc::c_char;
    }
    Ok(req)
}

/// `ip` as a `sockaddr` (an `AF_INET` `sockaddr_in`, the form the ioctls take).
fn sockaddr(ip: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr are both 16 bytes of plain data; the kernel reads
    // the family and then the fields of the sockaddr_in.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

fn set_address(socket: &OwnedFd, name: &str, ip: Ipv4Addr, mask: Ipv4Addr) -> Result<()> {
    let mut req = ifreq(name)?;
    req.ifr_ifru.ifru_addr = sockaddr(ip);
    ioctl(
        socket,
        libc::SIOCSIFADDR,
        &mut req,
        "setting the address of",
        name,
    )?;
    req.ifr_ifru.ifru_netmask = sockaddr(mask);
    ioctl(
        socket,
        libc::SIOCSIFNETMASK,
        &mut req,
        "setting the netmask of",
        name,
    )
}

/// Sets `IFF_UP` on `name`, keeping its other flags.
fn set_up(socket: &OwnedFd, name: &str) -> Result<()> {
    let mut req = ifreq(name)?;
    ioctl(
        socket,
        libc::SIOCGIFFLAGS,
        &mut req,
        "reading the flags of",
        name,
    )?;
    // SAFETY: SIOCGIFFLAGS filled in the union's flags member.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    req.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    ioctl(socket, libc::SIOCSIFFLAGS, &mut req, "bringing up", name)
}

/// The kernel's `struct rtentry` (linux/route.h), which the libc crate lacks for glibc.
#[repr(C)]
struct RtEntry {
    rt_pad1: libc::c_ulong,
    rt_dst: libc::sockaddr,
    rt_gateway: libc::sockaddr,
    rt_genmask: libc::sockaddr,
    rt_flags: libc::c_ushort,
    rt_pad2: libc::c_short,
    rt_pad3: libc::c_ulong,
    rt_pad4: *mut libc::c_void,
    rt_metric: libc::c_short,
    rt_dev: *mut libc::c_char,
    rt_mtu: libc::c_ulong,
    rt_window: libc::c_ulong,
    rt_irtt: libc::c_ushort,
}

fn add_default_route(socket: &OwnedFd, name: &str, gateway: Ipv4Addr) -> Result<()> {
    let dev = CString::new(name)
        .map_err(|_| Error::Invalid(format!("{name:?} is not an interface name")))?;
    let mut route = RtEntry {
        rt_pad1: 0,
        rt_dst: sockaddr(Ipv4Addr::UNSPECIFIED),
        rt_gateway: sockaddr(gateway),
        rt_genmask: sockaddr(Ipv4Addr::UNSPECIFIED),
        rt_flags: libc::RTF_UP | libc::RTF_GATEWAY,
        rt_pad2: 0,
        rt_pad3: 0,
        rt_pad4: std::ptr::null_mut(),
        // 0: the kernel's default priority (it subtracts one from any other value).
        rt_metric: 0,
        // Read only by the kernel; the route is bound to the card, not to whichever
        // interface reaches the gateway.
        rt_dev: dev.as_ptr().cast_mut(),
        rt_mtu: 0,
        rt_window: 0,
        rt_irtt: 0,
    };
    ioctl(
        socket,
        libc::SIOCADDRT,
        &mut route,
        "adding the default route via",
        format_args!("{gateway} on {name}"),
    )
}

/// Runs one configuration ioctl on `socket` with `arg`, naming what failed.
fn ioctl<T>(
    socket: &OwnedFd,
    request: libc::c_ulong,
    arg: &mut T,
    op: &'static str,
    what: impl std::fmt::Display,
) -> Result<()> {
    // SAFETY: every request passed here takes a pointer to the struct type `T` it is called
    // with (ifreq for SIOC[GS]IF*, rtentry for SIOCADDRT), which lives across the call; the
    // kernel copies it in (and for SIOCGIFFLAGS out) and keeps no reference.
    let rc = unsafe { libc::ioctl(socket.as_raw_fd(), request, std::ptr::from_mut(arg)) };
    if rc < 0 {
        return Err(Error::io(op, what, std::io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_card_is_the_first_ethernet_interface() {
        let dir = tempfile::tempdir().unwrap();
        for (name, kind) in [("lo", "772"), ("eth1", "1"), ("eth0", "1"), ("sit0", "776")] {
            std::fs::create_dir(dir.path().join(name)).unwrap();
            std::fs::write(dir.path().join(name).join("type"), format!("{kind}\n")).unwrap();
        }
        let path = dir.path().to_str().unwrap();
        assert_eq!(card(path).unwrap(), "eth0");
        for name in ["eth0", "eth1"] {
            std::fs::remove_dir_all(dir.path().join(name)).unwrap();
        }
        let err = card(path).unwrap_err().to_string();
        assert!(err.contains("no network card"), "{err}");
    }

    #[test]
    fn names_and_addresses_are_encoded_for_the_kernel() {
        let req = ifreq("eth0").unwrap();
        assert_eq!(
            req.ifr_name[..5],
            [b'e', b't', b'h', b'0', 0].map(|b| b as libc::c_char)
        );
        assert!(ifreq("").is_err() && ifreq("a-name-far-too-long").is_err());
        let sa = sockaddr(Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(sa.sa_family, libc::AF_INET as libc::sa_family_t);
        assert_eq!(
            sa.sa_data[2..6],
            [10, 0, 2, 15].map(|b: u8| b as libc::c_char)
        );
        // linux/route.h on x86_64.
        assert_eq!(std::mem::size_of::<RtEntry>(), 120);
    }
}
