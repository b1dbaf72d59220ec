//! The egress policy: which flows and DNS names a box may reach, enforced where the guest
//! cannot dodge it.
//!
//! * **Default mode** (no `allow` rules other than `host` ones): the public internet is open;
//!   the special ranges in [`ranges`] are refused, and so is the host unless a `host` rule
//!   allows it.
//! * **Allowlist mode** (any other `allow` rule): only what a rule matches. An address or
//!   network rule lying inside a special range opens it (`allow 10.1.0.0/16`), though not
//!   loopback, "this network" or the box's own subnet; a wider one (`0.0.0.0/0`) does not.
//! * **`deny` rules** subtract from either mode; deny wins.
//! * **Domain rules** act through the box's DNS, the only resolver the guest is given: it
//!   answers only names the policy allows (NXDOMAIN otherwise), pins each address it answers
//!   to the name, and a domain rule allows a flow only to an address pinned for a name it
//!   matches — never one in a special range (no DNS rebinding onto the host's network). On
//!   ports 80 and 443 the flow's TLS SNI or HTTP Host must name a matching domain too, since
//!   one address serves many names. UDP to 80/443 that would need that check (QUIC) is
//!   refused: clients fall back to TCP. With `deny` domain rules, 80/443 are always inspected
//!   and an address pinned only for denied names is refused on the ports they deny.
//! * **`host` rules** open the host's loopback, which the box reaches at 10.0.2.2
//!   (`host.boxlite.internal`, which the DNS answers only while a `host` rule exists).

pub mod flow;
pub mod fuzz;
pub mod log;
pub mod pins;
pub mod ranges;
pub mod resolver;
pub mod rule;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::PathBuf;

pub use log::{DenialCounter, MAX_LOG_BYTES};
pub use rule::{MAX_RULE_LEN, Net, Ports, Rule, RuleError, Target};

use crate::gate::{Dns, Egress, Gate, Inspection};
use log::DenialLog;
use pins::Pins;

/// The most rules one policy holds (allow and deny together): each flow is checked against
/// every rule, so the count bounds that work.
pub const MAX_RULES: usize = 256;

/// What a box's policy is built from.
#[derive(Debug, Clone, Default)]
pub struct PolicyOptions {
    /// Rules that allow; any besides `host` rules makes the policy an allowlist.
    pub allow: Vec<Rule>,
    /// Rules that deny, over the allow rules and the defaults.
    pub deny: Vec<Rule>,
    /// The box's denial log file (see [`log`]).
    pub log: Option<PathBuf>,
}

/// Why a policy could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// More rules than [`MAX_RULES`].
    #[error(
        "{count} network rules is more than the {MAX_RULES} allowed; use networks or `*.` domains"
    )]
    TooManyRules {
        /// How many were given.
        count: usize,
    },
    /// An allow rule that could never match.
    #[error("allow rule {rule:?} can never match: {why}")]
    Unreachable {
        /// The rule.
        rule: String,
        /// Why.
        why: String,
    },
    /// The log file could not be opened.
    #[error("cannot open the network log {path:?}: {source}")]
    Log {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// A box's egress policy: the [`Gate`] its stack asks.
#[derive(Debug)]
pub struct Policy {
    allow: Vec<Rule>,
    deny: Vec<Rule>,
    /// Any allow rule besides `host` ones.
    allowlist: bool,
    /// Any deny rule naming domains: 80/443 are then inspected in every mode.
    deny_domains: bool,
    pins: Pins,
    log: DenialLog,
}

impl Policy {
    /// Builds a policy, opening its log.
    pub fn new(options: PolicyOptions) -> Result<Policy, PolicyError> {
        let PolicyOptions { allow, deny, log } = options;
        let count = allow.len() + deny.len();
        if count > MAX_RULES {
            return Err(PolicyError::TooManyRules { count });
        }
        for rule in &allow {
            if let Target::Net(net) = rule.target {
                let closed = ranges::RANGES
                    .iter()
                    .find(|r| !r.explicit_allow && net.within(&r.net));
                if let Some(range) = closed {
                    let why = range.name.to_owned();
                    return Err(PolicyError::Unreachable {
                        rule: rule.to_string(),
                        why,
                    });
                }
            }
        }
        let log = DenialLog::open(log.as_deref()).map_err(|source| PolicyError::Log {
            path: log.clone().unwrap_or_default(),
            source,
        })?;
        Ok(Policy {
            allowlist: allow.iter().any(|r| r.target != Target::Host),
            deny_domains: deny.iter().any(Rule::is_domain),
            allow,
            deny,
            pins: Pins::default(),
            log,
        })
    }

    /// A handle on the count of denied flows and queries, readable from any thread.
    pub fn denials(&self) -> DenialCounter {
        self.log.counter()
    }

    /// Whether a `host` allow rule exists: the runtime then names the gateway
    /// `host.boxlite.internal` in the guest's /etc/hosts.
    pub fn host_reachable(&self) -> bool {
        self.allow.iter().any(|r| r.target == Target::Host)
    }

    fn deny_flow(&mut self, proto: &str, dst: SocketAddr, reason: &str) -> Egress {
        self.log.deny(proto, &dst.to_string(), reason);
        Egress::Deny
    }
}

impl Gate for Policy {
    fn connect(&mut self, dst: SocketAddr) -> Egress {
        match self.flow(dst) {
            Ok(flow::Verdict::Allow(to)) => Egress::Allow(to),
            Ok(flow::Verdict::Inspect) => Egress::Inspect(dst),
            Err(reason) => self.deny_flow("tcp", dst, &reason),
        }
    }

    fn inspect(&mut self, dst: SocketAddr, first: &[u8]) -> Inspection {
        match self.inspection(dst, first) {
            Ok(verdict) => verdict,
            Err(reason) => {
                self.deny_flow("tcp", dst, &reason);
                Inspection::Deny
            }
        }
    }

    fn datagram(&mut self, dst: SocketAddr) -> Egress {
        match self.flow(dst) {
            Ok(flow::Verdict::Allow(to)) => Egress::Allow(to),
            Ok(flow::Verdict::Inspect) => {
                let why = "default: UDP to port 80/443 (QUIC) cannot show its name; use TCP";
                self.deny_flow("udp", dst, why)
            }
            Err(reason) => self.deny_flow("udp", dst, &reason),
        }
    }

    fn dns_query(&mut self, query: &[u8]) -> Dns {
        self.query(query)
    }

    fn dns_reply(&mut self, reply: &[u8]) -> Option<Vec<u8>> {
        self.reply(reply)
    }
}
