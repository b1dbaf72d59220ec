//! One egress rule: what it matches (an address, a network, a domain, the host) and on which
//! ports.
//!
//! Syntax (`FromStr`, and `Display` writes it back the same):
//!
//! | rule                          | matches                                              |
//! |-------------------------------|------------------------------------------------------|
//! | `198.51.100.7`, `2001:db8::1` | that address, every port                             |
//! | `10.0.0.0/8`, `fd00::/8`      | that network (host bits must be zero)                |
//! | `example.com`                 | exactly that name (not its subdomains)               |
//! | `*.example.com`               | every subdomain of example.com (not example.com)     |
//! | `host`                        | the host's loopback, reached at 10.0.2.2             |
//!
//! Each takes an optional `:PORT` or `:LOW-HIGH` (`example.com:443`, `host:8000-8999`); IPv6
//! addresses and networks take ports in brackets (`[2001:db8::1]:443`, `[fd00::/8]:53`).
//! Names are ASCII (write IDNs in punycode), case-insensitive, trailing dot optional. `host`
//! is a keyword: a one-label domain called "host" cannot be written.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::addr::HOST_NAME;
use crate::dns::name::{MAX_LABEL_LEN, MAX_TEXT_LEN};

/// The longest rule text accepted: a longest name (253) with `*.` and a port range fits.
pub const MAX_RULE_LEN: usize = 300;

/// A rule that could not be parsed: the rule's text and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid network rule {rule:?}: {reason}")]
pub struct RuleError {
    /// The rule as given (cut at [`MAX_RULE_LEN`]).
    pub rule: String,
    /// What is wrong and how to fix it.
    pub reason: String,
}

/// What a rule matches.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// An address or network.
    Net(Net),
    /// Exactly this domain (lowercase, no trailing dot).
    Domain(String),
    /// Every proper subdomain of this domain.
    Subdomains(String),
    /// The host's loopback, which the box reaches at the gateway.
    Host,
}

/// An IP network: an address and a prefix length (a bare address is a full-length prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Net {
    addr: IpAddr,
    prefix: u8,
}

/// A port range, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ports {
    /// The lowest port.
    pub low: u16,
    /// The highest port.
    pub high: u16,
}

/// One egress rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule {
    /// What it matches.
    pub target: Target,
    /// Which ports (`None`: all).
    pub ports: Option<Ports>,
}

impl Net {
    /// A network; `None` if the prefix is too long or host bits are set.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Net> {
        let net = Net { addr, prefix };
        (prefix <= net.max_prefix() && net.first() == addr).then_some(net)
    }

    /// A network written as a constant; host bits must be zero (checked by the tests).
    pub const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Net {
        Net {
            addr: IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
            prefix,
        }
    }

    /// A network written as a constant from segments.
    pub const fn v6(addr: Ipv6Addr, prefix: u8) -> Net {
        Net {
            addr: IpAddr::V6(addr),
            prefix,
        }
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    fn max_prefix(&self) -> u8 {
        if self.addr.is_ipv4() { 32 } else { 128 }
    }

    fn mask(&self) -> u128 {
        let bits = u32::from(self.max_prefix());
        let host = bits - u32::from(self.prefix);
        let all = if bits == 32 {
            u128::from(u32::MAX)
        } else {
            u128::MAX
        };
        all.checked_shl(host).unwrap_or(0) & all
    }

    fn first(&self) -> IpAddr {
        let bits = to_bits(self.addr) & self.mask();
        match self.addr {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(bits as u32)),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(bits)),
        }
    }

    /// Whether `ip` lies in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4() && to_bits(ip) & self.mask() == to_bits(self.addr)
    }

    /// Whether all of this network lies inside `outer`.
    pub fn within(&self, outer: &Net) -> bool {
        self.prefix >= outer.prefix && outer.contains(self.addr)
    }
}

fn to_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

impl Ports {
    /// Whether `port` is in the range.
    pub fn contains(&self, port: u16) -> bool {
        (self.low..=self.high).contains(&port)
    }
}

impl Rule {
    /// Whether the rule's ports include `port`.
    pub fn port_matches(&self, port: u16) -> bool {
        self.ports.is_none_or(|p| p.contains(port))
    }

    /// Whether the rule covers every port (so a deny of a name can refuse its DNS answers).
    pub fn all_ports(&self) -> bool {
        self.ports.is_none_or(|p| p.low <= 1 && p.high == u16::MAX)
    }

    /// Whether the rule's domain matches `name` (lowercase host text); false for non-domains.
    pub fn name_matches(&self, name: &str) -> bool {
        match &self.target {
            Target::Domain(d) => name == d,
            Target::Subdomains(d) => name
                .strip_suffix(d.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
            Target::Net(_) | Target::Host => false,
        }
    }

    /// Whether this is a domain rule.
    pub fn is_domain(&self) -> bool {
        matches!(self.target, Target::Domain(_) | Target::Subdomains(_))
    }
}

impl fmt::Display for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix == self.max_prefix() {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bracket =
            matches!(self.target, Target::Net(n) if n.addr.is_ipv6()) && self.ports.is_some();
        match &self.target {
            Target::Net(n) if bracket => write!(f, "[{n}]")?,
            Target::Net(n) => write!(f, "{n}")?,
            Target::Domain(d) => f.write_str(d)?,
            Target::Subdomains(d) => write!(f, "*.{d}")?,
            Target::Host => f.write_str("host")?,
        }
        match self.ports {
            Some(p) if p.low == p.high => write!(f, ":{}", p.low),
            Some(p) => write!(f, ":{}-{}", p.low, p.high),
            None => Ok(()),
        }
    }
}

impl FromStr for Rule {
    type Err = RuleError;

    fn from_str(text: &str) -> Result<Rule, RuleError> {
        let fail = |reason: String| {
            let mut rule: String = text.chars().take(MAX_RULE_LEN).collect();
            if rule.len() < text.len() {
                rule.push('…');
            }
            RuleError { rule, reason }
        };
        if text.len() > MAX_RULE_LEN {
            return Err(fail(format!("longer than {MAX_RULE_LEN} bytes")));
        }
        let text = text.trim();
        if text.is_empty() {
            return Err(fail(
                "empty; write an address, network, domain or `host`".into(),
            ));
        }
        parse(text).map_err(fail)
    }
}

fn parse(text: &str) -> Result<Rule, String> {
    // Bracketed IPv6, with or without a port.
    if let Some(rest) = text.strip_prefix('[') {
        let (inside, after) = rest
            .split_once(']')
            .ok_or("missing `]` after the IPv6 address")?;
        let ports = match after {
            "" => None,
            _ => Some(parse_ports(
                after
                    .strip_prefix(':')
                    .ok_or("expected `:PORT` after `]`")?,
            )?),
        };
        let net = parse_net(inside)?;
        if net.addr.is_ipv4() {
            return Err("brackets are for IPv6; write an IPv4 rule as `A.B.C.D:PORT`".into());
        }
        return Ok(Rule {
            target: Target::Net(net),
            ports,
        });
    }
    // Bare IPv6 (more than one colon): no port possible.
    if text.matches(':').count() > 1 {
        let net = parse_net(text).map_err(|e| format!("{e}; for a port write `[ADDR]:PORT`"))?;
        return Ok(Rule {
            target: Target::Net(net),
            ports: None,
        });
    }
    let (target, ports) = match text.split_once(':') {
        Some((t, p)) => (t, Some(parse_ports(p)?)),
        None => (text, None),
    };
    let target = if target.eq_ignore_ascii_case("host") {
        Target::Host
    } else if target.starts_with(|c: char| c.is_ascii_digit()) && looks_numeric(target) {
        Target::Net(parse_net(target)?)
    } else {
        parse_domain(target)?
    };
    Ok(Rule { target, ports })
}

/// Whether the text is digits, dots and a slash: meant as an IPv4 address or network.
fn looks_numeric(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_digit() || b == b'.' || b == b'/')
}

fn parse_net(text: &str) -> Result<Net, String> {
    let (addr, prefix) = match text.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (text, None),
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("{addr:?} is not an IP address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(p) => p
            .parse::<u8>()
            .ok()
            .filter(|&p| p <= max)
            .ok_or_else(|| format!("prefix length {p:?} is not 0 to {max}"))?,
    };
    Net::new(addr, prefix).ok_or_else(|| {
        let first = Net { addr, prefix }.first();
        format!("host bits are set; did you mean {first}/{prefix}?")
    })
}

fn parse_ports(text: &str) -> Result<Ports, String> {
    let port = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| format!("port {p:?} is not 1 to 65535"))
    };
    let ports = match text.split_once('-') {
        Some((low, high)) => Ports {
            low: port(low)?,
            high: port(high)?,
        },
        None => {
            let p = port(text)?;
            Ports { low: p, high: p }
        }
    };
    if ports.low > ports.high {
        return Err(format!("port range {text:?} is backwards; write LOW-HIGH"));
    }
    Ok(ports)
}

fn parse_domain(text: &str) -> Result<Target, String> {
    let (wild, name) = match text.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    if name.contains('*') {
        return Err("`*` may only start a rule, as `*.example.com` (subdomains)".into());
    }
    if !name.is_ascii() {
        return Err("names must be ASCII; write an international name in punycode (xn--…)".into());
    }
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if name.is_empty() || name.len() > MAX_TEXT_LEN {
        return Err(format!("a domain is 1 to {MAX_TEXT_LEN} bytes"));
    }
    for label in name.split('.') {
        let ok = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if label.is_empty() || label.len() > MAX_LABEL_LEN || !label.chars().all(ok) {
            return Err(format!(
                "{label:?} is not a domain label (1 to {MAX_LABEL_LEN} letters, digits, `-`, `_`)"
            ));
        }
    }
    if name
        .rsplit('.')
        .next()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("not an IP address, and a domain cannot end in a number".into());
    }
    if name == HOST_NAME || name.ends_with(".boxlite.internal") || name == "boxlite.internal" {
        return Err(format!(
            "{HOST_NAME} is the host: write `host` or `host:PORT`"
        ));
    }
    Ok(if wild {
        Target::Subdomains(name)
    } else {
        Target::Domain(name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(s: &str) -> Rule {
        s.parse().unwrap()
    }

    fn error(s: &str) -> RuleError {
        s.parse::<Rule>().unwrap_err()
    }

    #[test]
    fn parses_and_round_trips() {
        for s in [
            "198.51.100.7",
            "198.51.100.7:443",
            "10.0.0.0/8",
            "10.0.0.0/8:22",
            "0.0.0.0/0:1000-2000",
            "2001:db8::1",
            "[2001:db8::1]:443",
            "fd00::/8",
            "[fd00::/8]:53-54",
            "example.com",
            "example.com:443",
            "*.example.com",
            "*.example.com:80-443",
            "host",
            "host:8080",
            "host:8000-8999",
            "_dmarc.example.com",
        ] {
            let r = rule(s);
            assert_eq!(r.to_string(), s);
            assert_eq!(rule(&r.to_string()), r);
        }
    }

    #[test]
    fn normalizes_names() {
        assert_eq!(rule("Example.COM.").to_string(), "example.com");
        assert_eq!(rule("HOST:80").target, Target::Host);
        assert_eq!(rule("1.2.3.4/32").to_string(), "1.2.3.4");
        assert_eq!(rule("[::1]").to_string(), "::1");
    }

    #[test]
    fn errors_name_the_rule_and_the_fix() {
        let e = error("10.1.2.3/8");
        assert_eq!(e.rule, "10.1.2.3/8");
        assert!(e.to_string().contains("did you mean 10.0.0.0/8?"), "{e}");
        assert!(error("example.com:0").reason.contains("1 to 65535"));
        assert!(error("example.com:99999").reason.contains("1 to 65535"));
        assert!(error("host:90-80").reason.contains("backwards"));
        assert!(error("::1:65536").reason.contains("[ADDR]:PORT"));
        assert!(
            error("[1.2.3.4]:80")
                .reason
                .contains("brackets are for IPv6")
        );
        assert!(error("a.*.com").reason.contains("`*` may only start"));
        assert!(
            error("*").reason.contains("`*` may only start")
                || error("*").reason.contains("domain")
        );
        assert!(error("bücher.de").reason.contains("punycode"));
        assert!(error("1.2.3.256").reason.contains("not an IP address"));
        assert!(error("1.2.3").reason.contains("not an IP address"));
        assert!(
            error("host.boxlite.internal")
                .reason
                .contains("write `host`")
        );
        assert!(error("a..b").reason.contains("not a domain label"));
        assert!(error("10.0.0.0/33").reason.contains("0 to 32"));
        assert!(error("").reason.contains("empty"));
        let long = "a".repeat(MAX_RULE_LEN + 1);
        assert!(error(&long).reason.contains("longer than"));
    }

    #[test]
    fn subdomain_rules_skip_the_apex() {
        let r = rule("*.example.com");
        assert!(r.name_matches("a.example.com"));
        assert!(r.name_matches("a.b.example.com"));
        assert!(!r.name_matches("example.com"));
        assert!(!r.name_matches("badexample.com"));
        assert!(rule("example.com").name_matches("example.com"));
        assert!(!rule("example.com").name_matches("a.example.com"));
    }

    #[test]
    fn networks_contain_and_nest() {
        let ten = Net::v4(10, 0, 0, 0, 8);
        assert!(ten.contains("10.255.0.1".parse().unwrap()));
        assert!(!ten.contains("11.0.0.1".parse().unwrap()));
        assert!(!ten.contains("::1".parse().unwrap()));
        assert!(Net::v4(10, 1, 0, 0, 16).within(&ten));
        assert!(!Net::v4(0, 0, 0, 0, 0).within(&ten));
        assert!(Net::v4(0, 0, 0, 0, 0).contains("1.2.3.4".parse().unwrap()));
        let all6 = Net::v6(Ipv6Addr::UNSPECIFIED, 0);
        assert!(all6.contains("2001:db8::1".parse().unwrap()));
    }

    #[test]
    fn ports() {
        assert!(rule("host").all_ports());
        assert!(rule("x.com:1-65535").all_ports());
        assert!(!rule("x.com:443").all_ports());
        assert!(rule("x.com:80-90").port_matches(85));
        assert!(!rule("x.com:80-90").port_matches(91));
    }
}
