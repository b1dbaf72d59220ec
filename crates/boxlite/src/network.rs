//! A box's network, as the caller asks for it ([`NetworkOptions`]) and as it runs
//! ([`NetworkInfo`]): the options are checked here, the stack is `netstack` in the
//! supervisor.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The most `allow` plus `deny` rules a box takes: each flow is checked against all of them,
/// and real policies are a handful of hosts.
pub const MAX_RULES: usize = 256;
/// The most published ports a box takes: each is a listening host socket.
pub const MAX_PUBLISHED: usize = 64;
/// The file in a box's directory where its supervisor reports the running network.
pub const NETWORK_FILE: &str = "network.json";
/// The file in a box's directory where denied flows are logged.
pub const DENIAL_LOG: &str = "net-denials.log";

/// Whether a box has a network card.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum NetworkMode {
    /// A card on the box's own stack, egress as the rules say (the default).
    #[default]
    On,
    /// No network device at all: only the guest's loopback.
    Off,
}

impl FromStr for NetworkMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<NetworkMode> {
        match s {
            "on" | "default" => Ok(NetworkMode::On),
            "off" | "none" => Ok(NetworkMode::Off),
            other => Err(Error::option(
                "network",
                format!("{other:?}"),
                "expected on or off",
            )),
        }
    }
}

/// A published port's transport.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortProtocol {
    /// TCP (the default).
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

impl fmt::Display for PortProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PortProtocol::Tcp => "tcp",
            PortProtocol::Udp => "udp",
        })
    }
}

impl From<PortProtocol> for netstack::Protocol {
    fn from(protocol: PortProtocol) -> netstack::Protocol {
        match protocol {
            PortProtocol::Tcp => netstack::Protocol::Tcp,
            PortProtocol::Udp => netstack::Protocol::Udp,
        }
    }
}

impl From<netstack::Protocol> for PortProtocol {
    fn from(protocol: netstack::Protocol) -> PortProtocol {
        match protocol {
            netstack::Protocol::Tcp => PortProtocol::Tcp,
            netstack::Protocol::Udp => PortProtocol::Udp,
        }
    }
}

/// A host port forwarded to a port of the box: `[HOSTIP:]HOSTPORT:GUESTPORT[/tcp|/udp]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// Where the host listens: 127.0.0.1 unless asked otherwise, so a published port is not
    /// open to the network by accident (docker's default is every interface).
    pub host_ip: IpAddr,
    /// The host port; 0 picks a free one (reported in [`NetworkInfo::ports`]).
    pub host_port: u16,
    /// The box's port.
    pub guest_port: u16,
    /// TCP or UDP.
    pub protocol: PortProtocol,
}

impl PortMapping {
    /// `host_port` on 127.0.0.1 to the box's `guest_port`, over TCP.
    pub fn tcp(host_port: u16, guest_port: u16) -> PortMapping {
        PortMapping {
            host_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            host_port,
            guest_port,
            protocol: PortProtocol::Tcp,
        }
    }

    /// Where the host listens.
    pub fn host(&self) -> SocketAddr {
        SocketAddr::new(self.host_ip, self.host_port)
    }
}

impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}/{}", self.host(), self.guest_port, self.protocol)
    }
}

impl FromStr for PortMapping {
    type Err = Error;
    fn from_str(s: &str) -> Result<PortMapping> {
        let bad = |why: &str| {
            Error::option(
                "publish",
                format!("{s:?}"),
                format!("{why}: use [HOSTIP:]HOSTPORT:GUESTPORT[/tcp|/udp], e.g. 8080:80"),
            )
        };
        let (spec, protocol) = match s.rsplit_once('/') {
            Some((spec, "tcp")) => (spec, PortProtocol::Tcp),
            Some((spec, "udp")) => (spec, PortProtocol::Udp),
            Some(_) => return Err(bad("the protocol must be tcp or udp")),
            None => (s, PortProtocol::Tcp),
        };
        let (host, guest) = spec
            .rsplit_once(':')
            .ok_or_else(|| bad("a host port and a guest port are needed"))?;
        let (host_ip, host_port) = match host.rsplit_once(':') {
            Some((ip, port)) => {
                let ip = ip
                    .strip_prefix('[')
                    .and_then(|i| i.strip_suffix(']'))
                    .unwrap_or(ip);
                let ip: IpAddr = ip
                    .parse()
                    .map_err(|_| bad(&format!("{ip:?} is not an IP address")))?;
                (ip, port)
            }
            None => (IpAddr::V4(Ipv4Addr::LOCALHOST), host),
        };
        let port = |p: &str| {
            p.parse::<u16>()
                .map_err(|_| bad(&format!("{p:?} is not a port")))
        };
        let (host_port, guest_port) = (port(host_port)?, port(guest)?);
        if guest_port == 0 {
            return Err(bad("the guest port cannot be 0"));
        }
        Ok(PortMapping {
            host_ip,
            host_port,
            guest_port,
            protocol,
        })
    }
}

/// How a box reaches the network and the network reaches it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NetworkOptions {
    /// A card or none.
    #[serde(default)]
    pub mode: NetworkMode,
    /// Allowlist rules: when any is given only what one matches is reachable. A rule is an
    /// IP, a CIDR, a domain or `*.domain`, each with an optional `:PORT` or `:LOW-HIGH`, or
    /// `host[:PORT]` for the host's loopback (`host.boxlite.internal` in the box).
    #[serde(default)]
    pub allow: Vec<String>,
    /// Rules that subtract from what is otherwise reachable (the default is public internet
    /// addresses only).
    #[serde(default)]
    pub deny: Vec<String>,
    /// Host ports forwarded into the box.
    #[serde(default)]
    pub publish: Vec<PortMapping>,
}

impl NetworkOptions {
    /// No network device.
    pub fn off() -> NetworkOptions {
        NetworkOptions {
            mode: NetworkMode::Off,
            ..NetworkOptions::default()
        }
    }

    /// Adds an allowlist rule.
    pub fn allow(mut self, rule: impl Into<String>) -> NetworkOptions {
        self.allow.push(rule.into());
        self
    }

    /// Adds a deny rule.
    pub fn deny(mut self, rule: impl Into<String>) -> NetworkOptions {
        self.deny.push(rule.into());
        self
    }

    /// Publishes a port.
    pub fn publish(mut self, port: PortMapping) -> NetworkOptions {
        self.publish.push(port);
        self
    }

    /// Checks the rules and ports.
    pub fn validate(&self) -> Result<()> {
        if self.allow.len() + self.deny.len() > MAX_RULES {
            return Err(Error::option(
                "allow_net",
                format!("{} rules", self.allow.len() + self.deny.len()),
                format!("a box takes at most {MAX_RULES} allow and deny rules"),
            ));
        }
        if self.mode == NetworkMode::Off
            && !(self.allow.is_empty() && self.deny.is_empty() && self.publish.is_empty())
        {
            return Err(Error::option(
                "network",
                "off",
                "a box without a network takes no allow, deny or publish options",
            ));
        }
        // Parses every rule and refuses allow rules that could never match (loopback, the
        // box's own subnet), at create rather than at start.
        self.policy(None)?;
        if self.publish.len() > MAX_PUBLISHED {
            return Err(Error::option(
                "publish",
                format!("{} ports", self.publish.len()),
                format!("a box publishes at most {MAX_PUBLISHED} ports"),
            ));
        }
        for (i, a) in self.publish.iter().enumerate() {
            if a.guest_port == 0 {
                return Err(Error::option("publish", a, "the guest port cannot be 0"));
            }
            let twice = self.publish[..i]
                .iter()
                .any(|b| b.protocol == a.protocol && a.host_port != 0 && b.host() == a.host());
            if twice {
                return Err(Error::option(
                    "publish",
                    a,
                    "this host address and port is published twice",
                ));
            }
        }
        Ok(())
    }

    /// The policy these options ask for, its denials logged to `log`.
    pub(crate) fn policy(&self, log: Option<PathBuf>) -> Result<netstack::policy::Policy> {
        let mut options = netstack::policy::PolicyOptions::default();
        for rule in &self.allow {
            options.allow.push(parse_rule("allow_net", rule)?);
        }
        for rule in &self.deny {
            options.deny.push(parse_rule("deny_net", rule)?);
        }
        options.log = log;
        netstack::policy::Policy::new(options)
            .map_err(|e| Error::option("allow_net", "the network rules", e.to_string()))
    }
}

/// Parses one rule, naming the option it came from when it is malformed.
fn parse_rule(option: &'static str, rule: &str) -> Result<netstack::policy::Rule> {
    rule.parse::<netstack::policy::Rule>()
        .map_err(|e| Error::option(option, format!("{rule:?}"), e.to_string()))
}

/// A published port as it runs: the host address really bound (0 resolved).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedPort {
    /// Where the host listens.
    pub host: SocketAddr,
    /// The box's port.
    pub guest_port: u16,
    /// TCP or UDP.
    pub protocol: PortProtocol,
}

impl From<PortMapping> for PublishedPort {
    /// The port as asked for, before the supervisor binds it (port 0 still 0).
    fn from(port: PortMapping) -> PublishedPort {
        PublishedPort {
            host: port.host(),
            guest_port: port.guest_port,
            protocol: port.protocol,
        }
    }
}

impl fmt::Display for PublishedPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}->{}/{}", self.host, self.guest_port, self.protocol)
    }
}

/// A running box's network, as its supervisor last reported it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NetworkInfo {
    /// The box's address.
    pub address: Option<IpAddr>,
    /// Its published ports.
    pub ports: Vec<PublishedPort>,
    /// Flows and DNS queries the policy denied since the box started.
    pub denied: u64,
    /// Where each denial is logged (time, destination, rule).
    #[serde(with = "crate::pathbytes")]
    pub denial_log: PathBuf,
}

/// What the supervisor of the box in `dir` last reported, if it reported.
pub(crate) fn recorded(dir: &Path) -> Option<NetworkInfo> {
    let bytes = std::fs::read(dir.join(NETWORK_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_mappings_parse_as_docker_writes_them() {
        let p: PortMapping = "8080:80".parse().unwrap();
        assert_eq!(p, PortMapping::tcp(8080, 80));
        let p: PortMapping = "0.0.0.0:53:5353/udp".parse().unwrap();
        assert_eq!(p.host(), "0.0.0.0:53".parse().unwrap());
        assert_eq!((p.guest_port, p.protocol), (5353, PortProtocol::Udp));
        let p: PortMapping = "[::1]:0:22".parse().unwrap();
        assert_eq!(p.host(), "[::1]:0".parse().unwrap());
        for bad in [
            "80",
            "a:80",
            "8080:0",
            "8080:80/sctp",
            "1.2.3:80:80",
            "70000:80",
            "",
        ] {
            let e = bad.parse::<PortMapping>().unwrap_err().to_string();
            assert!(e.contains("publish"), "{bad}: {e}");
        }
    }

    #[test]
    fn options_are_checked() {
        let ok = NetworkOptions::default()
            .allow("example.com:443")
            .deny("10.0.0.0/8")
            .publish(PortMapping::tcp(0, 80));
        ok.validate().unwrap();
        let e = NetworkOptions::default()
            .allow("exa mple")
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("allow_net"), "{e}");
        let e = NetworkOptions::off().allow("host").validate().unwrap_err();
        assert!(e.to_string().contains("network"), "{e}");
        let twice = NetworkOptions::default()
            .publish(PortMapping::tcp(8080, 80))
            .publish(PortMapping::tcp(8080, 81));
        assert!(twice.validate().is_err());
        let zeros = NetworkOptions::default()
            .publish(PortMapping::tcp(0, 80))
            .publish(PortMapping::tcp(0, 81));
        zeros.validate().unwrap();
    }

    #[test]
    fn old_records_without_a_network_read_as_the_default() {
        let options: NetworkOptions = serde_json::from_str("{}").unwrap();
        assert_eq!(options, NetworkOptions::default());
    }
}
