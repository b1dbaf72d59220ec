//! The special-purpose address ranges the default policy refuses (RFC 6890 and its IANA
//! registries), each with the name a denial is logged under.
//!
//! The documentation ranges (TEST-NET-1/2/3: 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24;
//! 2001:db8::/32) are deliberately *public* here: nothing routes them on the internet, so
//! allowing them opens nothing, and tests stand a "public" server at 198.51.100.x inside a
//! network namespace.

use std::net::{IpAddr, Ipv6Addr};

use super::rule::Net;

/// A special-purpose range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// The network.
    pub net: Net,
    /// What it is, as logged: "private range 10.0.0.0/8".
    pub name: &'static str,
    /// Whether an explicit address or network allow rule inside it may open it; loopback and
    /// "this network" may not (`host` rules reach the host), nor the box's own subnet.
    pub explicit_allow: bool,
}

const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8, name: &'static str, open: bool) -> Range {
    Range {
        net: Net::v4(a, b, c, d, prefix),
        name,
        explicit_allow: open,
    }
}

const fn v6(segs: [u16; 8], prefix: u8, name: &'static str, open: bool) -> Range {
    let [a, b, c, d, e, f, g, h] = segs;
    Range {
        net: Net::v6(Ipv6Addr::new(a, b, c, d, e, f, g, h), prefix),
        name,
        explicit_allow: open,
    }
}

/// The ranges, most specific first (the first match names a denial).
pub const RANGES: &[Range] = &[
    v4(10, 0, 2, 0, 24, "the box's own subnet 10.0.2.0/24", false),
    v4(0, 0, 0, 0, 8, "\"this network\" 0.0.0.0/8", false),
    v4(
        127,
        0,
        0,
        0,
        8,
        "loopback 127.0.0.0/8 (use a `host` rule)",
        false,
    ),
    v4(10, 0, 0, 0, 8, "private range 10.0.0.0/8", true),
    v4(172, 16, 0, 0, 12, "private range 172.16.0.0/12", true),
    v4(192, 168, 0, 0, 16, "private range 192.168.0.0/16", true),
    v4(100, 64, 0, 0, 10, "carrier-grade NAT 100.64.0.0/10", true),
    v4(
        169,
        254,
        169,
        254,
        32,
        "cloud metadata service 169.254.169.254",
        true,
    ),
    v4(169, 254, 0, 0, 16, "link-local 169.254.0.0/16", true),
    v4(
        192,
        0,
        0,
        0,
        24,
        "IETF protocol assignments 192.0.0.0/24",
        true,
    ),
    v4(198, 18, 0, 0, 15, "benchmarking 198.18.0.0/15", true),
    v4(224, 0, 0, 0, 4, "multicast 224.0.0.0/4", true),
    v4(255, 255, 255, 255, 32, "broadcast 255.255.255.255", true),
    v4(240, 0, 0, 0, 4, "reserved 240.0.0.0/4", true),
    v6([0, 0, 0, 0, 0, 0, 0, 0], 128, "unspecified ::", false),
    v6(
        [0, 0, 0, 0, 0, 0, 0, 1],
        128,
        "loopback ::1 (use a `host` rule)",
        false,
    ),
    v6(
        [0x64, 0xff9b, 1, 0, 0, 0, 0, 0],
        48,
        "local-use NAT64 64:ff9b:1::/48",
        true,
    ),
    v6(
        [0x100, 0, 0, 0, 0, 0, 0, 0],
        64,
        "discard-only 100::/64",
        true,
    ),
    v6(
        [0xfc00, 0, 0, 0, 0, 0, 0, 0],
        7,
        "unique local fc00::/7",
        true,
    ),
    v6(
        [0xfe80, 0, 0, 0, 0, 0, 0, 0],
        10,
        "link-local fe80::/10",
        true,
    ),
    v6(
        [0xfec0, 0, 0, 0, 0, 0, 0, 0],
        10,
        "site-local fec0::/10",
        true,
    ),
    v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, "multicast ff00::/8", true),
];

/// The address as the flow will really reach it: IPv4-mapped (`::ffff:a.b.c.d`) and
/// well-known NAT64 (`64:ff9b::a.b.c.d`) addresses are their IPv4 address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let s = v6.segments();
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let [_, _, _, _, _, _, _, _, _, _, _, _, a, b, c, d] = v6.octets();
                return IpAddr::V4([a, b, c, d].into());
            }
            ip
        }
        IpAddr::V4(_) => ip,
    }
}

/// The special range `ip` lies in, if any (`ip` canonical).
pub fn classify(ip: IpAddr) -> Option<&'static Range> {
    RANGES.iter().find(|r| r.net.contains(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(ip: &str) -> Option<&'static str> {
        classify(canonical(ip.parse().unwrap())).map(|r| r.name)
    }

    #[test]
    fn constants_have_no_host_bits() {
        for r in RANGES {
            let s = r.net.to_string();
            let (addr, prefix) = s.split_once('/').unwrap_or((&s, ""));
            let prefix = prefix
                .parse()
                .unwrap_or(if addr.contains(':') { 128 } else { 32 });
            assert_eq!(
                Net::new(addr.parse().unwrap(), prefix),
                Some(r.net),
                "{}",
                r.name
            );
        }
    }

    #[test]
    fn classifies_special_ranges() {
        assert_eq!(name("10.1.2.3"), Some("private range 10.0.0.0/8"));
        assert_eq!(name("10.0.2.99"), Some("the box's own subnet 10.0.2.0/24"));
        assert_eq!(name("172.31.255.255"), Some("private range 172.16.0.0/12"));
        assert_eq!(name("192.168.1.1"), Some("private range 192.168.0.0/16"));
        assert_eq!(
            name("127.0.0.1"),
            Some("loopback 127.0.0.0/8 (use a `host` rule)")
        );
        assert_eq!(
            name("169.254.169.254"),
            Some("cloud metadata service 169.254.169.254")
        );
        assert_eq!(name("169.254.1.1"), Some("link-local 169.254.0.0/16"));
        assert_eq!(
            name("100.100.100.100"),
            Some("carrier-grade NAT 100.64.0.0/10")
        );
        assert_eq!(name("0.0.0.0"), Some("\"this network\" 0.0.0.0/8"));
        assert_eq!(name("224.0.0.251"), Some("multicast 224.0.0.0/4"));
        assert_eq!(name("255.255.255.255"), Some("broadcast 255.255.255.255"));
        assert_eq!(name("198.19.0.1"), Some("benchmarking 198.18.0.0/15"));
        assert_eq!(name("250.0.0.1"), Some("reserved 240.0.0.0/4"));
        assert_eq!(name("::1"), Some("loopback ::1 (use a `host` rule)"));
        assert_eq!(name("fe80::1"), Some("link-local fe80::/10"));
        assert_eq!(name("fd12::1"), Some("unique local fc00::/7"));
        assert_eq!(name("::ffff:10.0.0.1"), Some("private range 10.0.0.0/8"));
        assert_eq!(
            name("64:ff9b::7f00:1"),
            Some("loopback 127.0.0.0/8 (use a `host` rule)")
        );
    }

    #[test]
    fn public_and_documentation_ranges_are_public() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "198.51.100.7",
            "192.0.2.1",
            "203.0.113.9",
            "100.63.255.255",
            "172.32.0.1",
            "2606:4700::1111",
            "2001:db8::1",
            "64:ff9b::808:808",
        ] {
            assert_eq!(name(ip), None, "{ip}");
        }
    }
}
