//! Domain names: on the wire (length-prefixed labels, maybe compressed) and as text.

use super::{DnsError, MAX_NAME_LEN, MAX_POINTER_HOPS};

/// The longest domain name in text form (RFC 1035 §2.3.4's 255 octets on the wire, less the
/// length bytes).
pub const MAX_TEXT_LEN: usize = 253;
/// The longest label (RFC 1035 §2.3.4).
pub const MAX_LABEL_LEN: usize = 63;

/// A domain name as the wire spells it, uncompressed, case preserved (resolvers check the case
/// of the question they sent, RFC draft 0x20), ending with the root's zero byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name {
    wire: Vec<u8>,
}

impl Name {
    /// Reads a (maybe compressed) name at `at` in `msg`; returns it and the offset past it.
    pub fn read(msg: &[u8], at: usize) -> Result<(Name, usize), DnsError> {
        let mut wire = Vec::with_capacity(32);
        let mut pos = at;
        let mut end = None;
        let mut hops = 0;
        loop {
            let len = *msg.get(pos).ok_or(DnsError::Truncated)? as usize;
            match len & 0xc0 {
                0x00 => {
                    // Room for this label and the root's zero byte.
                    if wire.len() + 1 + len + 1 > MAX_NAME_LEN {
                        return Err(DnsError::NameTooLong);
                    }
                    let label = msg.get(pos + 1..pos + 1 + len).ok_or(DnsError::Truncated)?;
                    wire.push(len as u8);
                    wire.extend_from_slice(label);
                    pos += 1 + len;
                    if len == 0 {
                        return Ok((Name { wire }, end.unwrap_or(pos)));
                    }
                }
                0xc0 => {
                    let low = *msg.get(pos + 1).ok_or(DnsError::Truncated)? as usize;
                    let target = ((len & 0x3f) << 8) | low;
                    // Only backwards: a pointer can then never loop, and the hop cap bounds the
                    // work a chain of pointers to pointers can cost.
                    hops += 1;
                    if target >= pos || hops > MAX_POINTER_HOPS {
                        return Err(DnsError::BadPointer);
                    }
                    end.get_or_insert(pos + 2);
                    pos = target;
                }
                _ => return Err(DnsError::BadLabel),
            }
        }
    }

    /// Parses a name from text (`example.com`, trailing dot optional); `None` if not a name.
    pub fn from_text(text: &str) -> Option<Name> {
        let text = text.strip_suffix('.').unwrap_or(text);
        let mut wire = Vec::with_capacity(text.len() + 2);
        if !text.is_empty() {
            for label in text.split('.') {
                if label.is_empty() || label.len() > MAX_LABEL_LEN {
                    return None;
                }
                wire.push(label.len() as u8);
                wire.extend_from_slice(label.as_bytes());
            }
        }
        wire.push(0);
        (wire.len() <= MAX_NAME_LEN).then_some(Name { wire })
    }

    /// The uncompressed wire form.
    pub fn wire(&self) -> &[u8] {
        &self.wire
    }

    /// The labels, root excluded.
    pub fn labels(&self) -> Labels<'_> {
        Labels { rest: &self.wire }
    }

    /// Whether two names are the same name (DNS compares ASCII case-insensitively).
    pub fn same(&self, other: &Name) -> bool {
        self.wire.eq_ignore_ascii_case(&other.wire)
    }

    /// The name as lowercase text for the policy, if it is a host name (see [`host_text`]).
    pub fn to_host(&self) -> Option<String> {
        let mut text = Vec::with_capacity(self.wire.len());
        for label in self.labels() {
            // A dot inside a label would make two labels of one in text.
            if label.contains(&b'.') {
                return None;
            }
            if !text.is_empty() {
                text.push(b'.');
            }
            text.extend_from_slice(label);
        }
        host_text(&text)
    }

    /// The name as printable text for logs, whatever bytes its labels hold.
    pub fn escaped(&self) -> String {
        let mut out = String::new();
        for label in self.labels() {
            if !out.is_empty() {
                out.push('.');
            }
            for &b in label {
                match b {
                    b'.' | b'\\' => out.push_str(&format!("\\{}", b as char)),
                    0x21..=0x7e => out.push(b as char),
                    _ => out.push_str(&format!("\\{b:03}")),
                }
            }
        }
        if out.is_empty() { ".".into() } else { out }
    }
}

/// An iterator over a name's labels.
#[derive(Debug)]
pub struct Labels<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Labels<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let (&len, tail) = self.rest.split_first()?;
        let label = tail.get(..len as usize).filter(|l| !l.is_empty())?;
        self.rest = &tail[len as usize..];
        Some(label)
    }
}

/// Validates a host name the guest wrote (DNS question, TLS SNI, HTTP Host) and returns it
/// lowercase without a trailing dot; `None` unless it is letters, digits, `-` and `_` in
/// labels of 1 to 63 bytes, at most 253 in all, and not an IPv4 literal (a last label of digits
/// only is an address to every URL parser, so no domain rule may match it).
pub fn host_text(raw: &[u8]) -> Option<String> {
    let raw = raw.strip_suffix(b".").unwrap_or(raw);
    if raw.is_empty() || raw.len() > MAX_TEXT_LEN {
        return None;
    }
    let mut last = &raw[..0];
    for label in raw.split(|&b| b == b'.') {
        let ok = |b: &u8| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_';
        if label.is_empty() || label.len() > MAX_LABEL_LEN || !label.iter().all(ok) {
            return None;
        }
        last = label;
    }
    if last.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // Every byte is ASCII, checked above.
    Some(String::from_utf8_lossy(raw).to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_plain_and_compressed_names() {
        let msg = b"\x07example\x03com\x00\x03www\xc0\x00";
        let (a, end) = Name::read(msg, 0).unwrap();
        assert_eq!((a.to_host().unwrap().as_str(), end), ("example.com", 13));
        let (b, end) = Name::read(msg, 13).unwrap();
        assert_eq!(
            (b.to_host().unwrap().as_str(), end),
            ("www.example.com", 19)
        );
    }

    #[test]
    fn refuses_pointer_loops_and_forward_pointers() {
        assert_eq!(Name::read(b"\xc0\x00", 0), Err(DnsError::BadPointer));
        assert_eq!(
            Name::read(b"\x01a\xc0\x04\x00", 0),
            Err(DnsError::BadPointer)
        );
        assert_eq!(Name::read(b"\x01a\xc0\x00", 0), Err(DnsError::BadPointer));
    }

    #[test]
    fn refuses_long_names_and_bad_labels() {
        let mut long = Vec::new();
        for _ in 0..5 {
            long.push(63);
            long.extend_from_slice(&[b'a'; 63]);
        }
        long.push(0);
        assert_eq!(Name::read(&long, 0), Err(DnsError::NameTooLong));
        assert_eq!(Name::read(b"\x41", 0), Err(DnsError::BadLabel));
        assert_eq!(Name::read(b"\x05ab", 0), Err(DnsError::Truncated));
    }

    #[test]
    fn host_text_accepts_only_host_names() {
        assert_eq!(
            host_text(b"Api.Example.COM.").as_deref(),
            Some("api.example.com")
        );
        assert_eq!(
            host_text(b"_srv.example.com").as_deref(),
            Some("_srv.example.com")
        );
        assert_eq!(host_text(b"1.2.3.4"), None);
        assert_eq!(host_text(b"a..b"), None);
        assert_eq!(host_text(b"a b.com"), None);
        assert_eq!(host_text(b""), None);
    }

    #[test]
    fn labels_with_dots_are_not_host_names() {
        let (name, _) = Name::read(b"\x06secret\x08good.com\x00", 0).unwrap();
        assert_eq!(name.to_host(), None);
        assert_eq!(name.escaped(), "secret.good\\.com");
    }
}
