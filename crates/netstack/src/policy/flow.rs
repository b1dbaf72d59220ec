//! Deciding TCP and UDP flows by address, port, pinned names and, on 80/443, the name the
//! flow's first bytes claim.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use super::Policy;
use super::ranges::{self, Range};
use super::rule::{Rule, Target};
use crate::addr::{DNS, GATEWAY};
use crate::gate::Inspection;
use crate::sniff::{self, Sniff, http, tls};

/// The most bytes a held flow is read for a name: past both sniffers' caps (plus TLS record
/// headers), more bytes cannot help, so the flow is judged on what there is.
pub const MAX_INSPECT: usize = tls::MAX_CLIENT_HELLO + 64 + http::MAX_HEAD;

/// A flow the policy lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Connect to this address now (the gateway becomes the host's loopback).
    Allow(SocketAddr),
    /// Hold the first bytes for [`Policy::inspection`].
    Inspect,
}

/// Ports whose first bytes name the server (HTTPS's SNI, HTTP's Host).
fn named_port(port: u16) -> bool {
    port == 80 || port == 443
}

impl Policy {
    /// The verdict on a new flow to `dst`, or why it is denied.
    pub(super) fn flow(&self, dst: SocketAddr) -> Result<Verdict, String> {
        let now = Instant::now();
        let ip = ranges::canonical(dst.ip());
        let port = dst.port();
        if ip == IpAddr::V4(GATEWAY) {
            return self.host_flow(port);
        }
        if ip == IpAddr::V4(DNS) {
            return Err(format!(
                "default: the box's DNS {DNS} takes only queries on UDP port 53"
            ));
        }
        if let Some(r) = self.deny.iter().find(|r| net_matches(r, ip, port)) {
            return Err(format!("deny {r}"));
        }
        if let Some(reason) = self.pinned_denial(ip, port, now) {
            return Err(reason);
        }
        let range = ranges::classify(ip);
        if let Some(range) = range.filter(|r| !self.explicitly_opens(r, ip, port)) {
            return Err(format!("default: {}", range.name));
        }
        let by_address = !self.allowlist || self.allow.iter().any(|r| net_matches(r, ip, port));
        let by_name = || {
            self.allow
                .iter()
                .any(|r| self.pinned_for(r, ip, port, None, now))
        };
        if by_address && !(self.deny_domains && named_port(port)) {
            Ok(Verdict::Allow(dst))
        } else if by_address || (named_port(port) && by_name()) {
            Ok(Verdict::Inspect)
        } else if by_name() {
            Ok(Verdict::Allow(dst))
        } else {
            Err("default: no allow rule matches (a domain rule needs this address from the box's DNS)".into())
        }
    }

    /// The verdict on a held flow's first bytes, or why it is denied.
    pub(super) fn inspection(&self, dst: SocketAddr, first: &[u8]) -> Result<Inspection, String> {
        let now = Instant::now();
        let ip = ranges::canonical(dst.ip());
        let port = dst.port();
        let name = match sniff::sniff(first) {
            Sniff::NeedMore if first.len() < MAX_INSPECT => return Ok(Inspection::NeedMore),
            Sniff::Name(name) => Some(name),
            Sniff::NeedMore | Sniff::NoName | Sniff::Unreadable => None,
        };
        if let Some(name) = &name {
            let denied = self
                .deny
                .iter()
                .find(|r| r.port_matches(port) && r.name_matches(name));
            if let Some(r) = denied {
                return Err(format!("deny {r} (the flow names {name})"));
            }
        }
        if !self.allowlist || self.allow.iter().any(|r| net_matches(r, ip, port)) {
            return Ok(Inspection::Allow);
        }
        match name {
            Some(name)
                if self
                    .allow
                    .iter()
                    .any(|r| self.pinned_for(r, ip, port, Some(&name), now)) =>
            {
                Ok(Inspection::Allow)
            }
            Some(name) => Err(format!(
                "default: the flow names {name}, which no allow rule matches for this address"
            )),
            None => {
                Err("default: no TLS SNI or HTTP Host to check against the domain rules".into())
            }
        }
    }

    /// A flow to the gateway: the host's loopback, if a `host` rule allows the port.
    /// Only `host` rules govern it: address rules speak of the world outside, so `deny
    /// 10.0.0.0/8` does not close a `host:8080` the same policy opens.
    fn host_flow(&self, port: u16) -> Result<Verdict, String> {
        let host = |r: &&Rule| r.target == Target::Host && r.port_matches(port);
        if let Some(r) = self.deny.iter().find(host) {
            return Err(format!("deny {r}"));
        }
        if self.allow.iter().any(|r| host(&r)) {
            return Ok(Verdict::Allow(SocketAddr::new(
                Ipv4Addr::LOCALHOST.into(),
                port,
            )));
        }
        Err(format!("default: the host ({GATEWAY}) needs a `host` rule"))
    }

    /// Whether an address allow rule written inside `range` opens `ip` on `port`.
    fn explicitly_opens(&self, range: &Range, ip: IpAddr, port: u16) -> bool {
        range.explicit_allow
            && self.allowlist
            && self.allow.iter().any(|r| match r.target {
                Target::Net(net) => {
                    net.within(&range.net) && net.contains(ip) && r.port_matches(port)
                }
                _ => false,
            })
    }

    /// Why `ip` is refused on `port` for the names it is pinned to, if every one of them is
    /// denied there.
    fn pinned_denial(&self, ip: IpAddr, port: u16, now: Instant) -> Option<String> {
        let mut reason = None;
        for name in self.pins.names(ip, now) {
            let r = self.name_denied(name, port)?;
            reason.get_or_insert_with(|| {
                format!("deny {r} (the box's DNS answered {ip} for {name})")
            });
        }
        reason
    }

    /// The deny rule that refuses `name` on `port`, if any.
    fn name_denied(&self, name: &str, port: u16) -> Option<&Rule> {
        self.deny
            .iter()
            .find(|r| r.port_matches(port) && r.name_matches(name))
    }

    /// Whether domain rule `rule` allows `ip` on `port`: the address is pinned for a name the
    /// rule matches and no deny refuses (and, if given, the flow named that name).
    fn pinned_for(
        &self,
        rule: &Rule,
        ip: IpAddr,
        port: u16,
        named: Option<&str>,
        now: Instant,
    ) -> bool {
        rule.is_domain()
            && rule.port_matches(port)
            && named.is_none_or(|n| rule.name_matches(n))
            && self
                .pins
                .names(ip, now)
                .any(|n| rule.name_matches(n) && self.name_denied(n, port).is_none())
    }
}

/// Whether address rule `rule` matches `ip` on `port`.
fn net_matches(rule: &Rule, ip: IpAddr, port: u16) -> bool {
    matches!(rule.target, Target::Net(net) if net.contains(ip)) && rule.port_matches(port)
}
