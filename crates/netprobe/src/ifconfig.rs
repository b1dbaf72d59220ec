//! `ifconfig`: every interface (name, flags, MTU, MAC, IPv4 addresses) and the default route,
//! one line each, from sysfs, `getifaddrs` and `/proc/net/route`.

use std::collections::BTreeMap;
use std::ffi::CStr;
use std::net::Ipv4Addr;

use crate::{Failed, Outcome};

/// The interface flags worth naming (linux/if.h).
const FLAGS: &[(u32, &str)] = &[
    (libc::IFF_UP as u32, "up"),
    (libc::IFF_LOOPBACK as u32, "loopback"),
    (libc::IFF_RUNNING as u32, "running"),
    (libc::IFF_BROADCAST as u32, "broadcast"),
    (libc::IFF_MULTICAST as u32, "multicast"),
];

/// Lines `iface NAME flags=… mtu=N mac=… inet=A/P,…` and `route default via=GW dev=NAME`
/// (or `route default none`); the result line is `interfaces=N`.
pub fn show() -> Outcome {
    let dir = std::fs::read_dir("/sys/class/net")
        .map_err(|e| Failed(format!("error reason=sysfs:{}", e.kind())))?;
    let mut names: Vec<String> = dir
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    let addrs = ipv4_addresses();
    for name in &names {
        let read = |f: &str| {
            std::fs::read_to_string(format!("/sys/class/net/{name}/{f}"))
                .map(|s| s.trim().to_owned())
                .unwrap_or_default()
        };
        let bits = u32::from_str_radix(read("flags").trim_start_matches("0x"), 16).unwrap_or(0);
        let flags: Vec<&str> = FLAGS
            .iter()
            .filter(|(bit, _)| bits & bit != 0)
            .map(|&(_, n)| n)
            .collect();
        let inet = addrs.get(name).map(|a| a.join(",")).unwrap_or_default();
        println!(
            "iface {name} flags={} mtu={} mac={} inet={inet}",
            flags.join(","),
            read("mtu"),
            read("address")
        );
    }
    let routes = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    match default_route(&routes) {
        Some((dev, gw)) => println!("route default via={gw} dev={dev}"),
        None => println!("route default none"),
    }
    Ok(format!("interfaces={}", names.len()))
}

/// Each interface's IPv4 addresses as `ADDR/PREFIX`.
fn ipv4_addresses() -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs(3) writes a list head to `list`, freed below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return out;
    }
    let mut at = list;
    while !at.is_null() {
        // SAFETY: `at` is a node of the list getifaddrs returned, not yet freed.
        let node = unsafe { &*at };
        at = node.ifa_next;
        let (addr, mask) = (node.ifa_addr, node.ifa_netmask);
        // SAFETY: a non-null ifa_addr points to a sockaddr of the family it names.
        if addr.is_null() || i32::from(unsafe { (*addr).sa_family }) != libc::AF_INET {
            continue;
        }
        // SAFETY: an AF_INET address (and its netmask, when there is one) is a sockaddr_in.
        let ip = unsafe { (*addr.cast::<libc::sockaddr_in>()).sin_addr.s_addr };
        let prefix = if mask.is_null() {
            32
        } else {
            // SAFETY: as above.
            unsafe { (*mask.cast::<libc::sockaddr_in>()).sin_addr.s_addr }.count_ones()
        };
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { CStr::from_ptr(node.ifa_name) }
            .to_string_lossy()
            .into_owned();
        out.entry(name)
            .or_default()
            .push(format!("{}/{prefix}", Ipv4Addr::from(u32::from_be(ip))));
    }
    // SAFETY: `list` came from getifaddrs and is freed once; no node is used after.
    unsafe { libc::freeifaddrs(list) };
    out
}

/// The default route's interface and gateway in the text of `/proc/net/route` (an address is
/// its four bytes read as a host-order, here little-endian, number, in hex).
fn default_route(table: &str) -> Option<(String, Ipv4Addr)> {
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (dev, dest, gw, mask) = (f.first()?, f.get(1)?, f.get(2)?, f.get(7)?);
        if *dest != "00000000" || *mask != "00000000" {
            return None;
        }
        let gw = u32::from_str_radix(gw, 16).ok()?;
        Some(((*dev).to_owned(), Ipv4Addr::from(gw.to_le_bytes())))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_route_from_proc_net_route() {
        let table = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                     eth0\t0002000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                     eth0\t00000000\t0202000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n";
        assert_eq!(
            default_route(table),
            Some(("eth0".into(), Ipv4Addr::new(10, 0, 2, 2)))
        );
        assert_eq!(default_route("Iface\n"), None);
    }
}
