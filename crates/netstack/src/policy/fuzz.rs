//! Entry points for the cargo-fuzz targets: every input the guest or upstream controls, fed
//! through the same code the stack runs. They panic only on a broken invariant.

use std::net::SocketAddr;

use super::{Policy, PolicyOptions, Rule};
use crate::dns::{Header, Query, Reply};
use crate::gate::{Dns, Gate};
use crate::sniff;

fn policy(allow: &[&str], deny: &[&str]) -> Option<Policy> {
    let parse = |rules: &[&str]| {
        rules
            .iter()
            .map(|r| r.parse::<Rule>())
            .collect::<Result<Vec<_>, _>>()
    };
    let options = PolicyOptions {
        allow: parse(allow).ok()?,
        deny: parse(deny).ok()?,
        log: None,
    };
    Policy::new(options).ok()
}

/// Feeds `data` to an allowlist policy and a default one, as a query and as a reply, then
/// checks what they wrote reads back.
#[doc(hidden)]
pub fn fuzz_dns(data: &[u8]) {
    let policies = [
        policy(
            &[
                "example.com",
                "*.example.org:443",
                "198.51.100.0/24",
                "host:8080",
            ],
            &["bad.example.org"],
        ),
        policy(&[], &["*.bad.example", "evil.example:22"]),
    ];
    for mut p in policies.into_iter().flatten() {
        match p.dns_query(data) {
            Dns::Forward(out) => assert!(Query::read(&out).is_ok(), "forwarded query unreadable"),
            Dns::Answer(out) => assert!(Header::read(&out).is_ok_and(|h| h.is_response())),
            Dns::Drop => {}
        }
        if let Some(out) = p.dns_reply(data) {
            assert!(Reply::read(&out).is_ok(), "rewritten reply unreadable");
        }
        for dst in ["198.51.100.1:443", "203.0.113.5:22", "10.0.2.2:8080"] {
            if let Ok(dst) = dst.parse::<SocketAddr>() {
                p.connect(dst);
                p.datagram(dst);
            }
        }
    }
}

/// Feeds `data` to the TLS and HTTP sniffers and to a policy's inspection.
#[doc(hidden)]
pub fn fuzz_sniff(data: &[u8]) {
    let _ = sniff::tls::server_name(data);
    let _ = sniff::http::host(data);
    if let sniff::Sniff::Name(name) = sniff::sniff(data) {
        assert!(crate::dns::name::host_text(name.as_bytes()).as_deref() == Some(name.as_str()));
    }
    let dst = SocketAddr::from(([198, 51, 100, 1], 443));
    if let Some(mut p) = policy(&["*.example.com"], &["bad.example.com"]) {
        p.inspect(dst, data);
    }
}

/// Parses `data` as a rule; a rule that parses must write itself back the same.
#[doc(hidden)]
pub fn fuzz_rule(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(rule) = text.parse::<Rule>() {
        let again: Rule = match rule.to_string().parse() {
            Ok(r) => r,
            Err(e) => panic!("{rule} does not parse back: {e}"),
        };
        assert_eq!(again, rule);
    }
}
