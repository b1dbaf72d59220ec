//! Name lookups without the C library's resolver (a static glibc cannot load NSS modules, and
//! a `FROM scratch` image has no configuration for them): `/etc/hosts`, then an `A` query over
//! UDP to the first nameserver of `/etc/resolv.conf`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::{Failed, Outcome, classify, quote};

/// The DNS port.
const PORT: u16 = 53;
/// Record type A and class IN.
const TYPE_A: u16 = 1;
const CLASS_IN: u16 = 1;
/// The response code for a name that does not exist.
const NXDOMAIN: u8 = 3;
/// Tries before giving up (the timeout is per try).
const TRIES: usize = 2;

/// Queries the nameserver for `name`'s A records.
pub fn resolve(name: &str, timeout: Duration) -> Outcome {
    let addrs = query(name, timeout)?;
    let list: Vec<String> = addrs.iter().map(Ipv4Addr::to_string).collect();
    Ok(format!("resolved {}", list.join(",")))
}

/// The first address of `name`: from `/etc/hosts`, else from DNS.
pub fn lookup(name: &str, timeout: Duration) -> Result<IpAddr, Failed> {
    if let Some(ip) = std::fs::read_to_string("/etc/hosts")
        .ok()
        .and_then(|hosts| in_hosts(&hosts, name))
    {
        return Ok(ip);
    }
    let addrs = query(name, timeout)?;
    addrs
        .first()
        .map(|&ip| IpAddr::V4(ip))
        .ok_or_else(|| Failed("noaddress".into()))
}

/// `name`'s address in the text of an `/etc/hosts`.
fn in_hosts(hosts: &str, name: &str) -> Option<IpAddr> {
    hosts.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or("");
        let mut fields = line.split_whitespace();
        let ip: IpAddr = fields.next()?.parse().ok()?;
        fields
            .any(|alias| alias.eq_ignore_ascii_case(name))
            .then_some(ip)
    })
}

/// The first `nameserver` of the text of a `resolv.conf`.
fn nameserver(conf: &str) -> Option<IpAddr> {
    conf.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        (fields.next()? == "nameserver")
            .then(|| fields.next()?.parse().ok())
            .flatten()
    })
}

fn query(name: &str, timeout: Duration) -> Result<Vec<Ipv4Addr>, Failed> {
    let conf = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let server = nameserver(&conf).ok_or_else(|| Failed("no-nameserver".into()))?;
    let id = random_id();
    let request =
        encode(id, name).ok_or_else(|| Failed(format!("badname name={}", quote(name))))?;
    let socket = crate::udp::connected(SocketAddr::new(server, PORT), timeout)?;
    let mut buf = [0u8; 4096];
    let mut last = Failed("timeout".into());
    for _ in 0..TRIES {
        socket.send(&request).map_err(|e| Failed(classify(&e)))?;
        loop {
            match socket.recv(&mut buf) {
                // Not our answer (a late reply to an earlier try has the same id, which is fine).
                Ok(n) => match decode(id, &buf[..n]) {
                    Some(answer) => return answer,
                    None => continue,
                },
                Err(e) => {
                    last = Failed(classify(&e));
                    break;
                }
            }
        }
    }
    Err(last)
}

/// A query id from the clock and the pid: unpredictability does not matter to a probe.
fn random_id() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    (nanos ^ std::process::id().rotate_left(16)) as u16
}

/// A recursive query for `name`'s A records; `None` for a name DNS cannot carry.
fn encode(id: u16, name: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(12 + name.len() + 6);
    out.extend_from_slice(&id.to_be_bytes());
    // Flags: RD (recursion desired); one question.
    out.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return None;
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    if out.len() > 12 + 255 {
        return None;
    }
    out.extend_from_slice(&TYPE_A.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    Some(out)
}

/// The answer to query `id` in `msg`: its A records, or the failure; `None` when `msg` is not
/// a response to it.
fn decode(id: u16, msg: &[u8]) -> Option<Result<Vec<Ipv4Addr>, Failed>> {
    let u16_at = |at: usize| Some(u16::from_be_bytes([*msg.get(at)?, *msg.get(at + 1)?]));
    if u16_at(0)? != id || msg.get(2)? & 0x80 == 0 {
        return None;
    }
    let rcode = msg.get(3)? & 0x0f;
    if rcode == NXDOMAIN {
        return Some(Err(Failed("nxdomain".into())));
    }
    if rcode != 0 {
        return Some(Err(Failed(format!("rcode={rcode}"))));
    }
    let (questions, answers) = (u16_at(4)?, u16_at(6)?);
    let mut at = 12;
    for _ in 0..questions {
        at = skip_name(msg, at)? + 4;
    }
    let mut addrs = Vec::new();
    for _ in 0..answers {
        at = skip_name(msg, at)?;
        let (kind, class, len) = (u16_at(at)?, u16_at(at + 2)?, usize::from(u16_at(at + 8)?));
        let data = msg.get(at + 10..at + 10 + len)?;
        if kind == TYPE_A && class == CLASS_IN && len == 4 {
            addrs.push(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        }
        at += 10 + len;
    }
    Some(if addrs.is_empty() {
        Err(Failed("noaddress".into()))
    } else {
        Ok(addrs)
    })
}

/// The offset after the (possibly compressed) name at `at`.
fn skip_name(msg: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *msg.get(at)?;
        match len {
            0 => return Some(at + 1),
            // A pointer ends the name here.
            l if l & 0xc0 == 0xc0 => return Some(at + 2),
            l => at += 1 + usize::from(l),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn hosts_and_resolv_conf() {
        let hosts = "127.0.0.1\tlocalhost\n# 1.2.3.4 x\n10.0.2.2\thost.boxlite.internal  # gw\n";
        assert_eq!(
            in_hosts(hosts, "HOST.boxlite.internal"),
            Some("10.0.2.2".parse().unwrap())
        );
        assert_eq!(in_hosts(hosts, "x"), None);
        let conf = "search x\nnameserver  10.0.2.3\nnameserver 1.1.1.1\n";
        assert_eq!(nameserver(conf), Some("10.0.2.3".parse().unwrap()));
        assert_eq!(nameserver("domain x\n"), None);
    }

    #[test]
    fn a_query_and_its_answer() {
        let q = encode(0x1234, "ab.c.").unwrap();
        assert_eq!(&q[..4], &[0x12, 0x34, 1, 0]);
        assert_eq!(&q[12..], &[2, b'a', b'b', 1, b'c', 0, 0, 1, 0, 1]);
        assert!(encode(1, "a..b").is_none());
        // The response: the question echoed, a CNAME and an A record, names compressed.
        let mut r = q.clone();
        r[2] = 0x81;
        r[3] = 0x80;
        r[7] = 2;
        r.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 2, 0xc0, 12]);
        r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 2, 2]);
        let addrs = decode(0x1234, &r).unwrap().ok().unwrap();
        assert_eq!(addrs, [Ipv4Addr::new(10, 0, 2, 2)]);
        assert!(decode(0x4321, &r).is_none());
        r[3] = 0x83;
        let Failed(why) = decode(0x1234, &r).unwrap().unwrap_err();
        assert_eq!(why, "nxdomain");
        r[3] = 0x80;
        assert!(decode(0x1234, &r[..5]).is_none());
        assert!(decode(0x1234, &r[..r.len() - 1]).is_none());
    }
}
