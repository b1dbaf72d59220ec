//! The host an HTTP/1.x request names (RFC 9112): the Host header, or the target's authority
//! in absolute or CONNECT form, which a server or proxy would use instead.

use super::Sniff;
use crate::dns::name::host_text;

/// The longest request head read: 8 KiB is the common server limit (nginx, Node), so longer
/// heads would be refused upstream anyway, and it bounds what the flow holds.
pub const MAX_HEAD: usize = 8 * 1024;
/// The longest method: real ones are short; bounds how long a non-HTTP flow can look like one.
const MAX_METHOD: usize = 16;

/// Reads the host of the request head at the start of `first`.
pub fn host(first: &[u8]) -> Sniff {
    let window = &first[..first.len().min(MAX_HEAD)];
    let Some(end) = window.windows(4).position(|w| w == b"\r\n\r\n") else {
        if first.len() >= MAX_HEAD || !plausible(window) {
            return Sniff::Unreadable;
        }
        return Sniff::NeedMore;
    };
    // The head with its last line's CRLF, so every line ends the same way.
    parse_head(&window[..end + 2]).unwrap_or(Sniff::Unreadable)
}

fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether a partial head can still become a request: a method of token bytes, then a space.
fn plausible(partial: &[u8]) -> bool {
    let method = partial
        .iter()
        .position(|&b| b == b' ')
        .unwrap_or(partial.len());
    method <= MAX_METHOD
        && partial[..method].iter().all(|&b| is_token(b))
        && (method > 0 || partial.is_empty())
}

fn parse_head(head: &[u8]) -> Option<Sniff> {
    // The head ends in LF, so the last piece is empty.
    let mut lines = head.strip_suffix(b"\n")?.split(|&b| b == b'\n');
    let request = lines.next()?.strip_suffix(b"\r")?;
    let target_host = request_target(request)?;
    let mut host_header = None;
    for line in lines {
        // Every line ends in CRLF, and a bare CR or LF inside one is refused: servers that
        // split on bare LF would see headers this reader does not.
        let line = line.strip_suffix(b"\r")?;
        if line.contains(&b'\r') || line.first().is_some_and(|&b| b == b' ' || b == b'\t') {
            return None;
        }
        let colon = line.iter().position(|&b| b == b':')?;
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if name.is_empty() || !name.iter().all(|&b| is_token(b)) {
            return None;
        }
        if name.eq_ignore_ascii_case(b"host") {
            if host_header.is_some() {
                return None;
            }
            host_header = Some(value.trim_ascii());
        }
    }
    let header = host_header.map(authority_host);
    match (target_host, header) {
        (Some(t), Some(h)) if t != h => None,
        (Some(t), _) => Some(t),
        (None, Some(h)) => Some(h),
        (None, None) => Some(Sniff::NoName),
    }
}

/// The request line's host, when its target is absolute (`http://h/…`) or CONNECT's `h:port`;
/// `Some(None)` for origin and asterisk forms; `None` if the line is no HTTP/1.x request.
fn request_target(line: &[u8]) -> Option<Option<Sniff>> {
    let mut parts = line.split(|&b| b == b' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some()
        || method.is_empty()
        || method.len() > MAX_METHOD
        || !method.iter().all(|&b| is_token(b))
        || !(version == b"HTTP/1.1" || version == b"HTTP/1.0")
    {
        return None;
    }
    if method == b"CONNECT" {
        return Some(Some(authority_host(target)));
    }
    if target.starts_with(b"/") || target == b"*" {
        return Some(None);
    }
    let scheme = target.iter().position(|&b| b == b':')?;
    let rest = target[scheme..].strip_prefix(b"://")?;
    let end = rest
        .iter()
        .position(|&b| b"/?#".contains(&b))
        .unwrap_or(rest.len());
    let authority = &rest[..end];
    if authority.contains(&b'@') {
        return None;
    }
    Some(Some(authority_host(authority)))
}

/// The host of `host[:port]` or `[v6]:port`: a name, or no name for an address literal.
fn authority_host(authority: &[u8]) -> Sniff {
    if authority.starts_with(b"[") {
        return Sniff::NoName;
    }
    let host = match authority.iter().rposition(|&b| b == b':') {
        Some(colon) if authority[colon + 1..].iter().all(u8::is_ascii_digit) => &authority[..colon],
        Some(_) => return Sniff::Unreadable,
        None => authority,
    };
    let is_v4 = std::str::from_utf8(host).is_ok_and(|h| h.parse::<std::net::Ipv4Addr>().is_ok());
    match host_text(host) {
        Some(name) => Sniff::Name(name),
        None if is_v4 => Sniff::NoName,
        None => Sniff::Unreadable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Sniff {
        Sniff::Name(s.into())
    }

    #[test]
    fn reads_host_header() {
        let req = b"GET /x HTTP/1.1\r\nUser-Agent: t\r\nHost: Example.COM:8080\r\n\r\nbody";
        assert_eq!(host(req), name("example.com"));
        assert_eq!(host(b"GET / HTTP/1.0\r\n\r\n"), Sniff::NoName);
        assert_eq!(
            host(b"GET / HTTP/1.1\r\nHost: 198.51.100.1\r\n\r\n"),
            Sniff::NoName
        );
    }

    #[test]
    fn partial_heads_need_more() {
        let req = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";
        for n in 0..req.len() - 1 {
            assert_eq!(host(&req[..n]), Sniff::NeedMore, "prefix {n}");
        }
        assert_eq!(host(req), name("example.com"));
    }

    #[test]
    fn absolute_and_connect_targets_win_or_must_agree() {
        assert_eq!(
            host(b"GET http://a.example/ HTTP/1.1\r\n\r\n"),
            name("a.example")
        );
        let both = b"GET http://a.example/ HTTP/1.1\r\nHost: b.example\r\n\r\n";
        assert_eq!(host(both), Sniff::Unreadable);
        assert_eq!(
            host(b"CONNECT c.example:443 HTTP/1.1\r\nHost: c.example:443\r\n\r\n"),
            name("c.example")
        );
    }

    #[test]
    fn refuses_smuggling_shapes_and_non_http() {
        let two = b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n";
        assert_eq!(host(two), Sniff::Unreadable);
        assert_eq!(
            host(b"GET / HTTP/1.1\r\nX: a\nHost: b.example\r\n\r\n"),
            Sniff::Unreadable
        );
        assert_eq!(
            host(b"GET / HTTP/1.1\r\n Host: b.example\r\n\r\n"),
            Sniff::Unreadable
        );
        assert_eq!(
            host(b"GET / HTTP/1.1\r\nHost : b.example\r\n\r\n"),
            Sniff::Unreadable
        );
        assert_eq!(host(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), Sniff::Unreadable);
        assert_eq!(host(b"\x00\x01binary"), Sniff::Unreadable);
        assert_eq!(host(b"SSH-2.0-OpenSSH_9.6\r\n"), Sniff::Unreadable);
    }

    #[test]
    fn heads_over_the_cap_are_refused() {
        let mut req = b"GET / HTTP/1.1\r\nX: ".to_vec();
        req.resize(MAX_HEAD, b'a');
        assert_eq!(host(&req), Sniff::Unreadable);
    }
}
