//! The policy through its [`Gate`]: modes, rules, DNS and inspection together.

use std::net::{Ipv4Addr, SocketAddr};

use proptest::prelude::*;

use super::*;
use crate::dns::{
    Builder, CLASS_IN, FLAG_QR, FLAG_RA, FLAG_RD, Header, Name, Query, Question, RData, Record,
    Reply, TYPE_A, TYPE_AAAA, TYPE_CNAME,
};

fn rules(list: &[&str]) -> Vec<Rule> {
    list.iter().map(|r| r.parse().unwrap()).collect()
}

fn policy(allow: &[&str], deny: &[&str]) -> Policy {
    Policy::new(PolicyOptions {
        allow: rules(allow),
        deny: rules(deny),
        log: None,
    })
    .unwrap()
}

fn at(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn name(s: &str) -> Name {
    Name::from_text(s).unwrap()
}

fn query(qname: &str, qtype: u16) -> Vec<u8> {
    let header = Header {
        id: 0x1234,
        flags: FLAG_RD,
        questions: 1,
        answers: 0,
        authority: 0,
        additional: 0,
    };
    let mut b = Builder::new(header);
    b.question(&Question {
        name: name(qname),
        qtype,
        qclass: CLASS_IN,
    });
    b.finish()
}

fn a(owner: &str, ip: [u8; 4]) -> Record {
    Record {
        name: name(owner),
        rtype: TYPE_A,
        class: CLASS_IN,
        ttl: 30,
        data: RData::A(ip.into()),
    }
}

fn cname(owner: &str, target: &str) -> Record {
    let data = RData::Names {
        head: vec![],
        names: vec![name(target)],
        tail: vec![],
    };
    Record {
        name: name(owner),
        rtype: TYPE_CNAME,
        class: CLASS_IN,
        ttl: 30,
        data,
    }
}

fn reply(qname: &str, answers: &[Record]) -> Vec<u8> {
    let header = Header {
        id: 0x1234,
        flags: FLAG_QR | FLAG_RD | FLAG_RA,
        questions: 1,
        answers: answers.len() as u16,
        authority: 0,
        additional: 0,
    };
    let mut b = Builder::new(header);
    b.question(&Question {
        name: name(qname),
        qtype: TYPE_A,
        qclass: CLASS_IN,
    });
    for r in answers {
        b.record(r);
    }
    b.finish()
}

fn rcode(answer: &Dns) -> u8 {
    match answer {
        Dns::Answer(msg) => Header::read(msg).unwrap().rcode(),
        other => panic!("not an answer: {other:?}"),
    }
}

/// A ClientHello naming `host` (see sniff::tls's tests for the layout).
fn client_hello(host: &str) -> Vec<u8> {
    let mut sni = vec![0, 0];
    let list_len = host.len() as u16 + 3;
    sni.extend_from_slice(&(list_len + 2).to_be_bytes());
    sni.extend_from_slice(&list_len.to_be_bytes());
    sni.push(0);
    sni.extend_from_slice(&(host.len() as u16).to_be_bytes());
    sni.extend_from_slice(host.as_bytes());
    let mut body = vec![3, 3];
    body.extend_from_slice(&[0; 32]);
    body.extend_from_slice(&[0, 0, 2, 0x13, 0x01, 1, 0]);
    body.extend_from_slice(&(sni.len() as u16).to_be_bytes());
    body.extend_from_slice(&sni);
    let mut msg = vec![22, 3, 1];
    msg.extend_from_slice(&(body.len() as u16 + 4).to_be_bytes());
    msg.extend_from_slice(&[1, 0]);
    msg.extend_from_slice(&(body.len() as u16).to_be_bytes());
    msg.extend_from_slice(&body);
    msg
}

#[test]
fn default_mode_opens_public_and_refuses_special_ranges() {
    let mut p = policy(&[], &[]);
    assert_eq!(
        p.connect(at("198.51.100.7:443")),
        Egress::Allow(at("198.51.100.7:443"))
    );
    assert_eq!(
        p.datagram(at("1.1.1.1:53")),
        Egress::Allow(at("1.1.1.1:53"))
    );
    for dst in [
        "10.1.2.3:22",
        "172.16.0.1:80",
        "192.168.1.1:80",
        "127.0.0.1:80",
        "169.254.169.254:80",
        "100.64.0.1:80",
        "0.0.0.0:80",
        "224.0.0.1:5353",
        "255.255.255.255:67",
        "10.0.2.15:22",
        "10.0.2.3:53",
        "10.0.2.2:8080",
        "[::1]:80",
        "[fe80::1]:80",
        "[::ffff:192.168.0.1]:80",
    ] {
        assert_eq!(p.connect(at(dst)), Egress::Deny, "{dst}");
    }
    assert_eq!(p.denials().get(), 15);
}

#[test]
fn allow_rules_make_an_allowlist() {
    let mut p = policy(&["198.51.100.0/24:443"], &[]);
    assert_eq!(
        p.connect(at("198.51.100.7:443")),
        Egress::Allow(at("198.51.100.7:443"))
    );
    assert_eq!(p.connect(at("198.51.100.7:80")), Egress::Deny);
    assert_eq!(p.connect(at("203.0.113.1:443")), Egress::Deny);
    assert_eq!(
        p.datagram(at("198.51.100.7:443")),
        Egress::Allow(at("198.51.100.7:443"))
    );
}

#[test]
fn explicit_rules_inside_a_range_open_it_and_wider_ones_do_not() {
    let mut p = policy(&["10.1.0.0/16", "0.0.0.0/0"], &[]);
    assert_eq!(
        p.connect(at("10.1.2.3:5432")),
        Egress::Allow(at("10.1.2.3:5432"))
    );
    assert_eq!(p.connect(at("10.2.0.1:5432")), Egress::Deny);
    assert_eq!(p.connect(at("169.254.169.254:80")), Egress::Deny);
    assert_eq!(p.connect(at("8.8.8.8:53")), Egress::Allow(at("8.8.8.8:53")));
}

#[test]
fn rules_that_can_never_match_are_refused() {
    let build = |allow: &[&str]| {
        Policy::new(PolicyOptions {
            allow: rules(allow),
            ..Default::default()
        })
    };
    let e = build(&["127.0.0.1:8080"]).unwrap_err();
    assert!(e.to_string().contains("use a `host` rule"), "{e}");
    assert!(build(&["10.0.2.0/25"]).is_err());
    assert!(build(&["0.0.0.0/0"]).is_ok());
    let many: Vec<String> = (0..=MAX_RULES)
        .map(|i| format!("198.51.100.{}", i % 250))
        .collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert!(matches!(
        build(&many),
        Err(PolicyError::TooManyRules { .. })
    ));
}

#[test]
fn deny_wins_in_both_modes() {
    let mut p = policy(
        &["198.51.100.0/24"],
        &["198.51.100.7", "198.51.100.0/24:25"],
    );
    assert_eq!(p.connect(at("198.51.100.7:443")), Egress::Deny);
    assert_eq!(p.connect(at("198.51.100.8:25")), Egress::Deny);
    assert_eq!(
        p.connect(at("198.51.100.8:443")),
        Egress::Allow(at("198.51.100.8:443"))
    );
    let mut p = policy(&[], &["203.0.113.0/24"]);
    assert_eq!(p.connect(at("203.0.113.9:443")), Egress::Deny);
    assert_eq!(
        p.connect(at("198.51.100.8:443")),
        Egress::Allow(at("198.51.100.8:443"))
    );
}

#[test]
fn host_rules_open_the_hosts_loopback_by_port() {
    let mut p = policy(&[], &[]);
    assert!(!p.host_reachable());
    assert_eq!(p.connect(at("10.0.2.2:8080")), Egress::Deny);
    let mut p = policy(&["host:8080", "host:9000-9100"], &["host:9050"]);
    assert!(p.host_reachable());
    assert_eq!(
        p.connect(at("10.0.2.2:8080")),
        Egress::Allow(at("127.0.0.1:8080"))
    );
    assert_eq!(
        p.connect(at("10.0.2.2:9001")),
        Egress::Allow(at("127.0.0.1:9001"))
    );
    assert_eq!(
        p.datagram(at("10.0.2.2:9100")),
        Egress::Allow(at("127.0.0.1:9100"))
    );
    assert_eq!(p.connect(at("10.0.2.2:9050")), Egress::Deny);
    assert_eq!(p.connect(at("10.0.2.2:8081")), Egress::Deny);
    // A host rule alone keeps the default mode.
    assert_eq!(
        p.connect(at("198.51.100.1:22")),
        Egress::Allow(at("198.51.100.1:22"))
    );
    let mut p = policy(&["host"], &[]);
    assert_eq!(
        p.connect(at("10.0.2.2:1")),
        Egress::Allow(at("127.0.0.1:1"))
    );
}

#[test]
fn dns_forwards_allowed_names_and_refuses_denied_ones() {
    let mut p = policy(&[], &["evil.example", "*.bad.example"]);
    let Dns::Forward(out) = p.dns_query(&query("good.example", TYPE_A)) else {
        panic!()
    };
    let q = Query::read(&out).unwrap();
    assert_eq!(
        (q.header.id, q.question.name.to_host().as_deref()),
        (0x1234, Some("good.example"))
    );
    assert_eq!(q.header.flags, FLAG_RD);
    assert_eq!(
        rcode(&p.dns_query(&query("EVIL.example", TYPE_A))),
        crate::dns::RCODE_NXDOMAIN
    );
    assert_eq!(
        rcode(&p.dns_query(&query("x.bad.example", TYPE_AAAA))),
        crate::dns::RCODE_NXDOMAIN
    );
    assert!(matches!(
        p.dns_query(&query("bad.example", TYPE_A)),
        Dns::Forward(_)
    ));
    assert_eq!(p.denials().get(), 2);
}

#[test]
fn allowlist_dns_answers_only_matching_names() {
    let mut p = policy(&["*.example.com:443"], &[]);
    assert!(matches!(
        p.dns_query(&query("api.example.com", TYPE_A)),
        Dns::Forward(_)
    ));
    assert_eq!(
        rcode(&p.dns_query(&query("example.com", TYPE_A))),
        crate::dns::RCODE_NXDOMAIN
    );
    assert_eq!(
        rcode(&p.dns_query(&query("exfil.attacker.example", TYPE_A))),
        crate::dns::RCODE_NXDOMAIN
    );
}

#[test]
fn host_name_is_answered_locally_only_with_a_host_rule() {
    let mut p = policy(&["host:8080"], &[]);
    let Dns::Answer(msg) = p.dns_query(&query("host.boxlite.internal", TYPE_A)) else {
        panic!()
    };
    let r = Reply::read(&msg).unwrap();
    assert_eq!(r.answers[0].data, RData::A(Ipv4Addr::new(10, 0, 2, 2)));
    assert_eq!(
        rcode(&p.dns_query(&query("host.boxlite.internal", TYPE_AAAA))),
        0
    );
    assert_eq!(
        rcode(&p.dns_query(&query("other.boxlite.internal", TYPE_A))),
        3
    );
    let mut p = policy(&[], &[]);
    assert_eq!(
        rcode(&p.dns_query(&query("host.boxlite.internal", TYPE_A))),
        3
    );
}

#[test]
fn malformed_queries_are_dropped_or_refused() {
    let mut p = policy(&[], &[]);
    assert_eq!(p.dns_query(b"\x12"), Dns::Drop);
    assert_eq!(p.dns_query(&reply("a.example", &[])), Dns::Drop);
    let mut bad = query("a.example", TYPE_A);
    bad.truncate(bad.len() - 3);
    assert_eq!(rcode(&p.dns_query(&bad)), crate::dns::RCODE_FORMERR);
    let mut update = query("a.example", TYPE_A);
    update[2] |= 5 << 3;
    assert_eq!(rcode(&p.dns_query(&update)), crate::dns::RCODE_NOTIMP);
    assert_eq!(p.dns_reply(b"\x00\x01\x80"), None);
}

#[test]
fn domain_rules_allow_only_pinned_addresses() {
    let mut p = policy(&["example.com"], &[]);
    assert_eq!(p.connect(at("198.51.100.7:22")), Egress::Deny);
    let out = p
        .dns_reply(&reply(
            "example.com",
            &[a("example.com", [198, 51, 100, 7])],
        ))
        .unwrap();
    assert_eq!(Reply::read(&out).unwrap().answers.len(), 1);
    assert_eq!(
        p.connect(at("198.51.100.7:22")),
        Egress::Allow(at("198.51.100.7:22"))
    );
    assert_eq!(p.connect(at("198.51.100.8:22")), Egress::Deny);
    assert_eq!(p.datagram(at("198.51.100.7:443")), Egress::Deny);
    assert_eq!(
        p.connect(at("198.51.100.7:443")),
        Egress::Inspect(at("198.51.100.7:443"))
    );
    let dst = at("198.51.100.7:443");
    let hello = client_hello("example.com");
    assert_eq!(p.inspect(dst, &hello[..20]), Inspection::NeedMore);
    assert_eq!(p.inspect(dst, &hello), Inspection::Allow);
    assert_eq!(
        p.inspect(dst, &client_hello("other.example")),
        Inspection::Deny
    );
    let dst = at("198.51.100.7:80");
    assert_eq!(
        p.inspect(dst, b"GET / HTTP/1.1\r\nHost: exam"),
        Inspection::NeedMore
    );
    assert_eq!(
        p.inspect(dst, b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"),
        Inspection::Allow
    );
    assert_eq!(
        p.inspect(dst, b"GET / HTTP/1.1\r\nHost: other.example\r\n\r\n"),
        Inspection::Deny
    );
    assert_eq!(p.inspect(dst, b"GET / HTTP/1.0\r\n\r\n"), Inspection::Deny);
}

#[test]
fn domain_rules_never_reach_special_ranges() {
    let mut p = policy(&["example.com"], &[]);
    p.dns_reply(&reply(
        "example.com",
        &[a("example.com", [169, 254, 169, 254])],
    ))
    .unwrap();
    assert_eq!(p.connect(at("169.254.169.254:8080")), Egress::Deny);
}

#[test]
fn replies_keep_only_the_questions_chain_and_refuse_unasked_names() {
    let mut p = policy(&["www.example.com"], &[]);
    let answers = [
        cname("www.example.com", "edge.cdn.example"),
        a("edge.cdn.example", [198, 51, 100, 9]),
        a("unrelated.example", [198, 51, 100, 10]),
    ];
    let out = p.dns_reply(&reply("www.example.com", &answers)).unwrap();
    assert_eq!(Reply::read(&out).unwrap().answers, answers[..2].to_vec());
    assert_eq!(
        p.connect(at("198.51.100.9:22")),
        Egress::Allow(at("198.51.100.9:22"))
    );
    assert_eq!(p.connect(at("198.51.100.10:22")), Egress::Deny);
    let out = p
        .dns_reply(&reply(
            "other.example",
            &[a("other.example", [198, 51, 100, 11])],
        ))
        .unwrap();
    assert_eq!(
        Header::read(&out).unwrap().rcode(),
        crate::dns::RCODE_NXDOMAIN
    );
    assert_eq!(p.connect(at("198.51.100.11:22")), Egress::Deny);
}

#[test]
fn a_chain_into_a_denied_name_withholds_and_pins_it_denied() {
    let mut p = policy(&[], &["evil.example"]);
    let answers = [
        cname("good.example", "evil.example"),
        a("evil.example", [203, 0, 113, 66]),
    ];
    let out = p.dns_reply(&reply("good.example", &answers)).unwrap();
    assert_eq!(
        Header::read(&out).unwrap().rcode(),
        crate::dns::RCODE_NXDOMAIN
    );
    assert_eq!(p.connect(at("203.0.113.66:22")), Egress::Deny);
    // Shared with an allowed name, the address is open again (SNI still guards 80/443).
    p.dns_reply(&reply(
        "fine.example",
        &[a("fine.example", [203, 0, 113, 66])],
    ))
    .unwrap();
    assert_eq!(
        p.connect(at("203.0.113.66:22")),
        Egress::Allow(at("203.0.113.66:22"))
    );
}

#[test]
fn deny_domains_inspect_80_and_443_in_default_mode() {
    let mut p = policy(&[], &["evil.example", "*.tracker.example:443"]);
    let dst = at("198.51.100.20:443");
    assert_eq!(p.connect(dst), Egress::Inspect(dst));
    assert_eq!(
        p.connect(at("198.51.100.20:22")),
        Egress::Allow(at("198.51.100.20:22"))
    );
    assert_eq!(p.datagram(dst), Egress::Deny);
    assert_eq!(
        p.inspect(dst, &client_hello("evil.example")),
        Inspection::Deny
    );
    assert_eq!(
        p.inspect(dst, &client_hello("a.tracker.example")),
        Inspection::Deny
    );
    assert_eq!(
        p.inspect(dst, &client_hello("fine.example")),
        Inspection::Allow
    );
    assert_eq!(
        p.inspect(dst, b"\x16\x03\x01\x00\x02\x05\x00"),
        Inspection::Allow
    );
    let http = at("198.51.100.20:80");
    assert_eq!(
        p.inspect(http, b"GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n"),
        Inspection::Deny
    );
    // Subdomain rules on port 443 only: the name still resolves.
    assert!(matches!(
        p.dns_query(&query("a.tracker.example", TYPE_A)),
        Dns::Forward(_)
    ));
}

#[test]
fn denials_are_counted_and_logged_one_line_each() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("box-net.log");
    let options = PolicyOptions {
        deny: rules(&["evil.example"]),
        log: Some(path.clone()),
        ..Default::default()
    };
    let mut p = Policy::new(options).unwrap();
    let counter = p.denials();
    p.connect(at("10.9.8.7:22"));
    p.dns_query(&query("evil.example", TYPE_A));
    p.datagram(at("10.0.2.2:53"));
    assert_eq!(counter.get(), 3);
    let text = std::fs::read_to_string(&path).unwrap();
    let tails: Vec<&str> = text.lines().map(|l| l.split_once(' ').unwrap().1).collect();
    assert_eq!(
        tails,
        [
            "tcp 10.9.8.7:22 default: private range 10.0.0.0/8",
            "dns evil.example deny evil.example",
            "udp 10.0.2.2:53 default: the host (10.0.2.2) needs a `host` rule",
        ]
    );
}

#[test]
fn fuzz_entry_points_take_known_inputs() {
    crate::policy::fuzz::fuzz_dns(&query("example.com", TYPE_A));
    crate::policy::fuzz::fuzz_dns(&reply(
        "example.com",
        &[a("example.com", [198, 51, 100, 1])],
    ));
    crate::policy::fuzz::fuzz_sniff(&client_hello("a.example.com"));
    crate::policy::fuzz::fuzz_rule(b"*.example.com:80-443");
}

proptest! {
    #[test]
    fn arbitrary_dns_never_panics(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        crate::policy::fuzz::fuzz_dns(&data);
    }

    #[test]
    fn mutated_replies_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let answers = [cname("www.example.com", "example.com"), a("example.com", [198, 51, 100, 1])];
        let mut msg = reply("www.example.com", &answers);
        for (i, b) in flips {
            let n = msg.len();
            msg[i % n] = b;
        }
        crate::policy::fuzz::fuzz_dns(&msg);
    }

    #[test]
    fn arbitrary_first_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        crate::policy::fuzz::fuzz_sniff(&data);
    }

    #[test]
    fn mutated_hellos_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let mut msg = client_hello("api.example.com");
        for (i, b) in flips {
            let n = msg.len();
            msg[i % n] = b;
        }
        crate::policy::fuzz::fuzz_sniff(&msg);
    }

    #[test]
    fn arbitrary_rules_never_panic_and_round_trip(text in "\\PC{0,40}") {
        crate::policy::fuzz::fuzz_rule(text.as_bytes());
    }

    #[test]
    fn rule_shaped_text_round_trips(
        text in "(\\*\\.)?[a-z0-9-]{1,10}(\\.[a-z]{1,5}){0,3}(:[0-9]{1,5}(-[0-9]{1,5})?)?|[0-9]{1,3}(\\.[0-9]{1,3}){3}(/[0-9]{1,2})?(:[0-9]{1,5})?"
    ) {
        crate::policy::fuzz::fuzz_rule(text.as_bytes());
    }
}
