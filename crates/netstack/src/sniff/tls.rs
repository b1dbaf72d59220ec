//! The server name (RFC 6066 SNI) in a TLS ClientHello (RFC 8446 §4.1.2), which may span
//! several handshake records.

use super::Sniff;
use crate::dns::name::host_text;

/// The record content type of a handshake.
pub const CONTENT_HANDSHAKE: u8 = 22;
/// The handshake type of a ClientHello.
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
/// The extension type of server_name.
const EXTENSION_SERVER_NAME: u16 = 0;
/// The server_name entry type of a host name.
const NAME_TYPE_HOST: u8 = 0;
/// The largest record a peer may send in plaintext (RFC 8446 §5.1: 2^14).
const MAX_RECORD: usize = 1 << 14;
/// The largest ClientHello read: real ones are under 2 KiB even with post-quantum key
/// shares; 16 KiB leaves room for many PSK identities and bounds what the flow holds.
pub const MAX_CLIENT_HELLO: usize = 16 * 1024;
/// Bytes of a record's header.
const RECORD_HEADER: usize = 5;

/// Reads the SNI of the ClientHello at the start of `first`.
pub fn server_name(first: &[u8]) -> Sniff {
    match reassemble(first) {
        Ok(hello) => parse_hello(&hello),
        Err(s) => s,
    }
}

/// The ClientHello message body, gathered from consecutive handshake records.
fn reassemble(mut rest: &[u8]) -> Result<Vec<u8>, Sniff> {
    let mut handshake = Vec::new();
    loop {
        let Some(header) = rest.get(..RECORD_HEADER) else {
            return Err(Sniff::NeedMore);
        };
        if header[0] != CONTENT_HANDSHAKE || header[1] != 3 {
            return Err(Sniff::Unreadable);
        }
        let len = u16::from_be_bytes([header[3], header[4]]) as usize;
        if len == 0 || len > MAX_RECORD {
            return Err(Sniff::Unreadable);
        }
        let Some(payload) = rest.get(RECORD_HEADER..RECORD_HEADER + len) else {
            // Look at what there is: a bad handshake header need not wait for the record.
            let partial = &rest[RECORD_HEADER..];
            check_start(&handshake, partial)?;
            return Err(Sniff::NeedMore);
        };
        handshake.extend_from_slice(payload);
        rest = &rest[RECORD_HEADER + len..];
        check_start(&handshake, &[])?;
        if handshake.len() >= 4 {
            let body = u32::from_be_bytes([0, handshake[1], handshake[2], handshake[3]]) as usize;
            if body > MAX_CLIENT_HELLO {
                return Err(Sniff::Unreadable);
            }
            if handshake.len() >= 4 + body {
                handshake.truncate(4 + body);
                handshake.drain(..4);
                return Ok(handshake);
            }
        }
    }
}

/// Refuses early a handshake that does not start with a ClientHello.
fn check_start(done: &[u8], partial: &[u8]) -> Result<(), Sniff> {
    match done.first().or(partial.first()) {
        Some(&t) if t != HANDSHAKE_CLIENT_HELLO => Err(Sniff::Unreadable),
        _ => Ok(()),
    }
}

/// A cursor that fails on reading past the end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = tail;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A vector with a one- or two-byte length.
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()? as usize;
        self.take(n)
    }

    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()? as usize;
        self.take(n)
    }
}

fn parse_hello(body: &[u8]) -> Sniff {
    parse_fields(body).unwrap_or(Sniff::Unreadable)
}

fn parse_fields(body: &[u8]) -> Option<Sniff> {
    let mut r = Reader(body);
    let _version = r.take(2)?;
    let _random = r.take(32)?;
    let _session = r.vec8()?;
    let _suites = r.vec16()?;
    let _compression = r.vec8()?;
    if r.0.is_empty() {
        return Some(Sniff::NoName);
    }
    let mut exts = Reader(r.vec16()?);
    let mut found = None;
    while !exts.0.is_empty() {
        let kind = exts.u16()?;
        let data = exts.vec16()?;
        if kind != EXTENSION_SERVER_NAME {
            continue;
        }
        // Two server_name extensions, or two host names, are illegal (RFC 8446 §4.2, RFC
        // 6066 §3) and servers disagree on which wins: refuse.
        if found.is_some() {
            return None;
        }
        found = Some(parse_server_name(data)?);
    }
    Some(found.unwrap_or(Sniff::NoName))
}

fn parse_server_name(data: &[u8]) -> Option<Sniff> {
    let mut outer = Reader(data);
    let mut list = Reader(outer.vec16()?);
    if !outer.0.is_empty() {
        return None;
    }
    let mut host = None;
    while !list.0.is_empty() {
        let kind = list.u8()?;
        let name = list.vec16()?;
        if kind == NAME_TYPE_HOST {
            if host.is_some() {
                return None;
            }
            host = Some(host_text(name)?);
        }
    }
    Some(host.map_or(Sniff::NoName, Sniff::Name))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello `openssl s_client -servername api.example.com` (OpenSSL 3.0) sent to a
    /// listener on 127.0.0.1.
    const OPENSSL_HELLO: &[u8] = include_bytes!("fixtures/client_hello.bin");

    /// A minimal ClientHello built by hand per RFC 8446 §4.1.2 with these extensions.
    fn hello(extensions: &[u8]) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend_from_slice(&[0; 32]);
        body.push(0); // session id
        body.extend_from_slice(&[0, 2, 0x13, 0x01]); // one suite
        body.extend_from_slice(&[1, 0]); // null compression
        body.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
        body.extend_from_slice(extensions);
        let mut hs = vec![HANDSHAKE_CLIENT_HELLO, 0];
        hs.extend_from_slice(&(body.len() as u16).to_be_bytes());
        hs.extend_from_slice(&body);
        let mut rec = vec![CONTENT_HANDSHAKE, 3, 1];
        rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        rec.extend_from_slice(&hs);
        rec
    }

    fn sni(name: &[u8]) -> Vec<u8> {
        let mut entry = vec![NAME_TYPE_HOST];
        entry.extend_from_slice(&(name.len() as u16).to_be_bytes());
        entry.extend_from_slice(name);
        let mut data = (entry.len() as u16).to_be_bytes().to_vec();
        data.extend_from_slice(&entry);
        let mut ext = EXTENSION_SERVER_NAME.to_be_bytes().to_vec();
        ext.extend_from_slice(&(data.len() as u16).to_be_bytes());
        ext.extend_from_slice(&data);
        ext
    }

    #[test]
    fn reads_openssl_client_hello() {
        assert_eq!(
            server_name(OPENSSL_HELLO),
            Sniff::Name("api.example.com".into())
        );
    }

    #[test]
    fn every_prefix_of_a_hello_needs_more() {
        for n in 0..OPENSSL_HELLO.len() {
            assert_eq!(
                server_name(&OPENSSL_HELLO[..n]),
                Sniff::NeedMore,
                "prefix {n}"
            );
        }
    }

    #[test]
    fn reads_hand_built_hello_and_lowercases() {
        assert_eq!(
            server_name(&hello(&sni(b"WWW.Example.com"))),
            Sniff::Name("www.example.com".into())
        );
        assert_eq!(server_name(&hello(&[])), Sniff::NoName);
    }

    #[test]
    fn reads_hello_split_across_records() {
        let one = hello(&sni(b"split.example.com"));
        let hs = &one[5..];
        let mut two = Vec::new();
        for part in [&hs[..10], &hs[10..]] {
            two.extend_from_slice(&[CONTENT_HANDSHAKE, 3, 1]);
            two.extend_from_slice(&(part.len() as u16).to_be_bytes());
            two.extend_from_slice(part);
        }
        assert_eq!(server_name(&two), Sniff::Name("split.example.com".into()));
        assert_eq!(server_name(&two[..20]), Sniff::NeedMore);
    }

    #[test]
    fn refuses_duplicates_bad_names_and_non_tls() {
        let mut twice = sni(b"a.example.com");
        twice.extend_from_slice(&sni(b"b.example.com"));
        assert_eq!(server_name(&hello(&twice)), Sniff::Unreadable);
        assert_eq!(server_name(&hello(&sni(b"a b"))), Sniff::Unreadable);
        assert_eq!(server_name(&hello(&sni(b"10.0.0.1"))), Sniff::Unreadable);
        assert_eq!(server_name(b"GET / HTTP/1.1\r\n"), Sniff::Unreadable);
        assert_eq!(
            server_name(&[22, 3, 1, 0, 4, 2, 0, 0, 0]),
            Sniff::Unreadable
        );
    }
}
