//! The box's DNS: which queries are answered, forwarded or refused, and what of a reply the
//! guest gets (and the policy pins).

use std::net::IpAddr;
use std::time::Instant;

use super::Policy;
use crate::addr::{GATEWAY, HOST_NAME};
use crate::dns::{
    self, CLASS_IN, Header, Name, Query, RCODE_FORMERR, RCODE_NOERROR, RCODE_NOTIMP,
    RCODE_NXDOMAIN, RCODE_SERVFAIL, RData, Record, Reply, TYPE_A, TYPE_CNAME, build,
};
use crate::gate::Dns;

/// Seconds the guest may cache `host.boxlite.internal`: it never changes while the box runs.
const HOST_TTL: u32 = 600;
/// The zone of names the stack answers itself; none of them leaves the box.
const LOCAL_ZONE: &str = "boxlite.internal";

impl Policy {
    /// Decides a guest's query.
    pub(super) fn query(&mut self, msg: &[u8]) -> Dns {
        let header = match Header::read(msg) {
            Ok(h) if !h.is_response() => h,
            // Unreadable, or a response aimed at us: nothing to answer.
            _ => return Dns::Drop,
        };
        if header.opcode() != 0 {
            return Dns::Answer(build::header_error(&header, RCODE_NOTIMP));
        }
        let query = match Query::read(msg) {
            Ok(q) => q,
            Err(_) => return Dns::Answer(build::header_error(&header, RCODE_FORMERR)),
        };
        let name = query.question.name.to_host();
        if let Some(local) = name.as_deref().filter(|n| is_local(n)) {
            return Dns::Answer(self.local_answer(&query, local));
        }
        match self.name_verdict(name.as_deref()) {
            Ok(()) => Dns::Forward(build::forward(&query)),
            Err(reason) => {
                self.log
                    .deny("dns", &query.question.name.escaped(), &reason);
                Dns::Answer(build::empty_answer(&query, RCODE_NXDOMAIN, false))
            }
        }
    }

    /// Filters an upstream reply and pins the addresses the guest is given.
    pub(super) fn reply(&mut self, msg: &[u8]) -> Option<Vec<u8>> {
        let reply = Reply::read(msg).ok()?;
        let qname = reply.question.name.to_host();
        let as_query = Query {
            header: reply.header,
            question: reply.question.clone(),
            edns: None,
        };
        let nxdomain = || build::empty_answer(&as_query, RCODE_NXDOMAIN, false);
        let printable = reply.question.name.escaped();
        // Local names are never forwarded, so a reply for one is not ours.
        if qname.as_deref().is_some_and(is_local) {
            return None;
        }
        if let Err(reason) = self.name_verdict(qname.as_deref()) {
            self.log.deny("dns", &printable, &reason);
            return Some(nxdomain());
        }
        let chain = chain(&reply);
        let now = Instant::now();
        // A CNAME chain into a denied name withholds the whole answer; its addresses are
        // pinned to the denied name, so a flow to them is refused too.
        for name in &chain {
            let Some(host) = name.to_host() else { continue };
            let Some(r) = self
                .deny
                .iter()
                .find(|r| r.all_ports() && r.name_matches(&host))
            else {
                continue;
            };
            let reason = format!("deny {r} (CNAME {host})");
            for (addr, ttl) in addresses(&reply, &chain) {
                self.pins.pin(addr, &host, ttl, now);
            }
            self.log.deny("dns", &printable, &reason);
            return Some(nxdomain());
        }
        if let Some(qname) = &qname {
            for (addr, ttl) in addresses(&reply, &chain) {
                self.pins.pin(addr, qname, ttl, now);
            }
        }
        let out = rebuild(&reply, &chain);
        // Names crafted to defeat compression could grow the answer past what a guest
        // reads; fail it rather than send that.
        if out.len() > dns::MAX_MESSAGE {
            return Some(build::empty_answer(&as_query, RCODE_SERVFAIL, false));
        }
        Some(out)
    }

    /// Whether the policy lets the guest resolve `name` (`None`: not a host name), or why not.
    fn name_verdict(&self, name: Option<&str>) -> Result<(), String> {
        let denied = |n: &str| {
            self.deny
                .iter()
                .find(|r| r.all_ports() && r.name_matches(n))
        };
        if let Some(r) = name.and_then(denied) {
            return Err(format!("deny {r}"));
        }
        if !self.allowlist || name.is_some_and(|n| self.allow.iter().any(|r| r.name_matches(n))) {
            return Ok(());
        }
        Err("default: no allow rule matches the name".into())
    }

    /// The stack's own answer for a name in [`LOCAL_ZONE`].
    fn local_answer(&mut self, query: &Query, name: &str) -> Vec<u8> {
        if name != HOST_NAME || !self.host_reachable() {
            let reason = if name == HOST_NAME {
                "default: the host needs a `host` rule"
            } else {
                "default: no such name in boxlite.internal"
            };
            self.log.deny("dns", name, reason);
            return build::empty_answer(query, RCODE_NXDOMAIN, true);
        }
        let q = &query.question;
        if q.qtype == TYPE_A && q.qclass == CLASS_IN {
            build::a_answer(query, GATEWAY, HOST_TTL)
        } else {
            // The name exists, with no record of that type (NODATA).
            build::empty_answer(query, RCODE_NOERROR, true)
        }
    }
}

fn is_local(name: &str) -> bool {
    name == LOCAL_ZONE
        || name
            .strip_suffix(LOCAL_ZONE)
            .is_some_and(|h| h.ends_with('.'))
}

/// The question's name and the CNAME targets reachable from it in the answer section.
fn chain(reply: &Reply) -> Vec<Name> {
    let mut chain = vec![reply.question.name.clone()];
    // Each pass adds at least one name or stops; answers are capped, so passes are too.
    loop {
        let next = reply.answers.iter().find_map(|r| match &r.data {
            RData::Names { names, .. } if r.rtype == TYPE_CNAME => {
                let target = names.first()?;
                let from_chain = chain.iter().any(|n| n.same(&r.name));
                let new = !chain.iter().any(|n| n.same(target));
                (from_chain && new).then(|| target.clone())
            }
            _ => None,
        });
        match next {
            Some(name) => chain.push(name),
            None => return chain,
        }
    }
}

fn in_chain(record: &Record, chain: &[Name]) -> bool {
    chain.iter().any(|n| n.same(&record.name))
}

/// The IN addresses the answer gives for names in the chain, with their TTLs.
fn addresses<'a>(reply: &'a Reply, chain: &'a [Name]) -> impl Iterator<Item = (IpAddr, u32)> + 'a {
    reply
        .answers
        .iter()
        .filter(|r| r.class == CLASS_IN && in_chain(r, chain))
        .filter_map(|r| match r.data {
            RData::A(a) => Some((IpAddr::V4(a), r.ttl)),
            RData::Aaaa(a) => Some((IpAddr::V6(a), r.ttl)),
            _ => None,
        })
}

/// The reply the guest gets: the question and the answers for names in the chain; the
/// authority and additional sections (which could carry names past the policy) are dropped.
fn rebuild(reply: &Reply, chain: &[Name]) -> Vec<u8> {
    let kept: Vec<&Record> = reply
        .answers
        .iter()
        .filter(|r| in_chain(r, chain))
        .collect();
    let header = Header {
        id: reply.header.id,
        flags: reply.header.flags,
        questions: 1,
        answers: kept.len() as u16,
        authority: 0,
        additional: 0,
    };
    let mut b = dns::Builder::new(header);
    b.question(&reply.question);
    for r in kept {
        b.record(r);
    }
    b.finish()
}
