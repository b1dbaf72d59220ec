//! PAX extended-header records (`LEN KEY=VALUE\n`), parsed by their length prefix.
//!
//! The `tar` crate splits records at newlines, which breaks binary values (an xattr such as
//! `security.capability` may contain `\n`); we parse the raw record bytes ourselves.

use std::ops::Range;

use rustix::fs::Timespec;

/// Most extended attributes one entry may carry.
///
/// Real layers carry a handful (capabilities, an SELinux label, ACLs); the cap bounds the
/// syscalls and bookkeeping one header can cause.
pub const MAX_XATTRS: usize = 128;

/// Largest extended attribute value, in bytes: the kernel's own `XATTR_SIZE_MAX`, so a
/// larger value could never be set anyway.
pub const MAX_XATTR_SIZE: usize = 64 * 1024;

/// Longest extended attribute name (the kernel's `XATTR_NAME_MAX`).
const MAX_XATTR_NAME: usize = 255;

/// Longest decimal length prefix of one record; more digits than any capped size needs.
const MAX_LEN_DIGITS: usize = 20;

/// Extended attributes of one entry, decoded into one reusable buffer.
#[derive(Default)]
pub(crate) struct Xattrs {
    data: Vec<u8>,
    items: Vec<(Range<usize>, Range<usize>)>,
}

impl Xattrs {
    fn clear(&mut self) {
        self.data.clear();
        self.items.clear();
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// `(name, value)` pairs in record order (a repeated name: the last one wins when set).
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.items
            .iter()
            .map(|(n, v)| (&self.data[n.clone()], &self.data[v.clone()]))
    }

    fn push(&mut self, name: impl FnOnce(&mut Vec<u8>), value: &[u8]) -> Result<(), String> {
        if self.items.len() >= MAX_XATTRS {
            return Err(format!("has more than {MAX_XATTRS} extended attributes"));
        }
        let start = self.data.len();
        name(&mut self.data);
        let name_range = start..self.data.len();
        let name_len = name_range.len();
        if name_len == 0 || name_len > MAX_XATTR_NAME || self.data[name_range.clone()].contains(&0)
        {
            return Err("has an extended attribute with an invalid name".into());
        }
        if value.len() > MAX_XATTR_SIZE {
            return Err(format!(
                "has an extended attribute over the {MAX_XATTR_SIZE}-byte limit"
            ));
        }
        let vstart = self.data.len();
        self.data.extend_from_slice(value);
        self.items.push((name_range, vstart..self.data.len()));
        Ok(())
    }
}

/// What one entry's PAX records say; byte fields are ranges into the raw record bytes.
#[derive(Default)]
pub(crate) struct Pax {
    /// `path`: the entry's name.
    pub path: Option<Range<usize>>,
    /// `linkpath`: a link's target.
    pub linkpath: Option<Range<usize>>,
    /// `mtime`, with its fraction.
    pub mtime: Option<Timespec>,
    /// `atime`, with its fraction.
    pub atime: Option<Timespec>,
    /// `uid`.
    pub uid: Option<u64>,
    /// `gid`.
    pub gid: Option<u64>,
    /// `size`, checked against what the tar parser used.
    pub size: Option<u64>,
    /// `SCHILY.xattr.*` and `LIBARCHIVE.xattr.*`.
    pub xattrs: Xattrs,
}

impl Pax {
    /// Forgets everything, keeping buffers for reuse.
    pub fn clear(&mut self) {
        self.path = None;
        self.linkpath = None;
        self.mtime = None;
        self.atime = None;
        self.uid = None;
        self.gid = None;
        self.size = None;
        self.xattrs.clear();
    }

    /// Parses `raw`, the data of one `x` header, into `self` (cleared first).
    ///
    /// An empty value unsets the field (POSIX), so the plain header's value applies.
    pub fn parse(&mut self, raw: &[u8]) -> Result<(), String> {
        self.clear();
        let mut pos = 0;
        while pos < raw.len() {
            if raw[pos..].iter().all(|&b| b == 0) {
                break; // NUL padding some writers leave after the last record
            }
            let (key, value) = record(raw, &mut pos).ok_or("has a malformed PAX record")?;
            let start = pos - 1 - value.len();
            let range = start..start + value.len();
            match key {
                b"path" => self.path = (!value.is_empty()).then_some(range),
                b"linkpath" => self.linkpath = (!value.is_empty()).then_some(range),
                b"mtime" => self.mtime = time(value, "mtime")?,
                b"atime" => self.atime = time(value, "atime")?,
                b"uid" => self.uid = number(value, "uid")?,
                b"gid" => self.gid = number(value, "gid")?,
                b"size" => self.size = number(value, "size")?,
                _ if key.starts_with(b"GNU.sparse.") => {
                    return Err("uses the GNU PAX sparse format, which is not supported".into());
                }
                _ => {
                    if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                        self.xattrs.push(|d| d.extend_from_slice(name), value)?;
                    } else if let Some(name) = key.strip_prefix(b"LIBARCHIVE.xattr.") {
                        let bad = || "has a malformed LIBARCHIVE.xattr record".to_string();
                        let decoded = base64(value).ok_or_else(bad)?;
                        let mut ok = true;
                        self.xattrs
                            .push(|d| ok = url_decode(name, d), &decoded)
                            .and_then(|()| if ok { Ok(()) } else { Err(bad()) })?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Locates the data of the PAX `x` header among the metadata blocks captured before the
/// entry's own header. The `tar` crate has already parsed (and checksummed) these blocks;
/// we re-walk them only to get at the raw records.
pub(crate) fn locate(
    capture: &[u8],
    start: u64,
    header_pos: u64,
) -> Result<Option<Range<usize>>, ()> {
    const BLOCK: usize = 512;
    let end = usize::try_from(header_pos.checked_sub(start).ok_or(())?).map_err(|_| ())?;
    // The previous entry's data was read to its end, so only its padding precedes the
    // first header.
    let pad = start.next_multiple_of(BLOCK as u64) - start;
    let mut off = usize::try_from(pad).map_err(|_| ())?;
    let mut found = None;
    while off < end {
        let block = capture.get(off..off + BLOCK).ok_or(())?;
        let size = tar::Header::from_byte_slice(block)
            .entry_size()
            .map_err(|_| ())?;
        let size = usize::try_from(size).map_err(|_| ())?;
        let data = off + BLOCK..(off + BLOCK).checked_add(size).ok_or(())?;
        if data.end > capture.len() {
            return Err(());
        }
        if block[156] == b'x' {
            found = Some(data.clone());
        }
        off = data.start + size.next_multiple_of(BLOCK);
    }
    if off == end { Ok(found) } else { Err(()) }
}

/// Reads one `LEN KEY=VALUE\n` record at `*pos`, advancing past it.
fn record<'a>(raw: &'a [u8], pos: &mut usize) -> Option<(&'a [u8], &'a [u8])> {
    let rest = &raw[*pos..];
    let space = rest
        .iter()
        .take(MAX_LEN_DIGITS + 1)
        .position(|&b| b == b' ')?;
    let len: usize = std::str::from_utf8(&rest[..space]).ok()?.parse().ok()?;
    if len <= space + 2 || len > rest.len() || rest[len - 1] != b'\n' {
        return None;
    }
    let kv = &rest[space + 1..len - 1];
    let eq = kv.iter().position(|&b| b == b'=')?;
    *pos += len;
    Some((&kv[..eq], &kv[eq + 1..]))
}

fn number(value: &[u8], key: &str) -> Result<Option<u64>, String> {
    if value.is_empty() {
        return Ok(None);
    }
    let text = std::str::from_utf8(value).ok();
    match text.and_then(|t| t.parse().ok()) {
        Some(n) => Ok(Some(n)),
        None => Err(format!("has an invalid PAX {key} record")),
    }
}

/// Parses `[-]SECONDS[.FRACTION]` into a timespec (nanosecond precision, rest truncated).
fn time(value: &[u8], key: &str) -> Result<Option<Timespec>, String> {
    if value.is_empty() {
        return Ok(None);
    }
    let bad = || format!("has an invalid PAX {key} record");
    let (negative, digits) = match value.strip_prefix(b"-") {
        Some(rest) => (true, rest),
        None => (false, value),
    };
    let (int, frac) = match digits.iter().position(|&b| b == b'.') {
        Some(i) => (&digits[..i], &digits[i + 1..]),
        None => (digits, &[][..]),
    };
    if int.is_empty() || !int.iter().chain(frac).all(u8::is_ascii_digit) {
        return Err(bad());
    }
    let secs: i64 = std::str::from_utf8(int)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    let mut nanos: i64 = 0;
    for i in 0..9 {
        nanos = nanos * 10 + frac.get(i).map_or(0, |d| i64::from(d - b'0'));
    }
    let (tv_sec, tv_nsec) = match (negative, nanos) {
        (false, _) => (secs, nanos),
        (true, 0) => (-secs, 0),
        (true, _) => (-secs - 1, 1_000_000_000 - nanos),
    };
    Ok(Some(Timespec { tv_sec, tv_nsec }))
}

/// Decodes `%XX` escapes (libarchive's encoding of xattr names) into `out`.
fn url_decode(name: &[u8], out: &mut Vec<u8>) -> bool {
    let mut i = 0;
    while i < name.len() {
        if name[i] == b'%' {
            let hex = name
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                Some(b) => out.push(b),
                None => return false,
            }
            i += 3;
        } else {
            out.push(name[i]);
            i += 1;
        }
    }
    true
}

/// Decodes standard base64 (padding optional), as libarchive writes xattr values.
fn base64(text: &[u8]) -> Option<Vec<u8>> {
    let text = text
        .strip_suffix(b"==")
        .or_else(|| text.strip_suffix(b"="))
        .unwrap_or(text);
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in text {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &str, value: &[u8]) -> Vec<u8> {
        let body_len = key.len() + value.len() + 3; // ' ', '=', '\n'
        let mut len = body_len + 1;
        while len != body_len + len.to_string().len() {
            len = body_len + len.to_string().len();
        }
        let mut out = format!("{len} {key}=").into_bytes();
        out.extend_from_slice(value);
        out.push(b'\n');
        out
    }

    #[test]
    fn binary_values_with_newlines_survive() {
        let mut raw = rec("SCHILY.xattr.security.capability", b"\x01\n\0\n\x02");
        raw.extend(rec("path", b"a/long\nname"));
        raw.extend(rec("mtime", b"1700000000.123456789"));
        let mut pax = Pax::default();
        pax.parse(&raw).unwrap();
        let x: Vec<_> = pax.xattrs.iter().collect();
        assert_eq!(x, [(&b"security.capability"[..], &b"\x01\n\0\n\x02"[..])]);
        assert_eq!(&raw[pax.path.unwrap()], b"a/long\nname");
        let t = pax.mtime.unwrap();
        assert_eq!((t.tv_sec, t.tv_nsec), (1_700_000_000, 123_456_789));
    }

    #[test]
    fn times_parse_fractions_and_signs() {
        let t = |s: &str| {
            time(s.as_bytes(), "mtime")
                .unwrap()
                .map(|t| (t.tv_sec, t.tv_nsec))
        };
        assert_eq!(t("5"), Some((5, 0)));
        assert_eq!(t("5.5"), Some((5, 500_000_000)));
        assert_eq!(t("5.1234567891"), Some((5, 123_456_789)));
        assert_eq!(t("-1.5"), Some((-2, 500_000_000)));
        assert_eq!(t("-3"), Some((-3, 0)));
        assert_eq!(t(""), None);
        for bad in ["x", ".5", "1.5x", "--1", "99999999999999999999999"] {
            assert!(time(bad.as_bytes(), "mtime").is_err(), "{bad}");
        }
    }

    #[test]
    fn libarchive_xattrs_decode() {
        let raw = rec("LIBARCHIVE.xattr.user.a%3Db", b"aGVsbG8=");
        let mut pax = Pax::default();
        pax.parse(&raw).unwrap();
        let x: Vec<_> = pax.xattrs.iter().collect();
        assert_eq!(x, [(&b"user.a=b"[..], &b"hello"[..])]);
        assert_eq!(base64(b"").unwrap(), b"");
        assert_eq!(base64(b"YQ").unwrap(), b"a");
        assert!(base64(b"Y*").is_none());
    }

    #[test]
    fn malformed_records_are_rejected() {
        let mut pax = Pax::default();
        for bad in [
            &b"5 a=b"[..],
            b"99 path=x\n",
            b"x path=x\n",
            b"6 ab\n\n",
            b"3 \n",
        ] {
            assert!(
                pax.parse(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(pax.parse(&rec("GNU.sparse.map", b"0,1")).is_err());
        let many: Vec<u8> = (0..=MAX_XATTRS)
            .flat_map(|i| rec(&format!("SCHILY.xattr.user.{i}"), b"v"))
            .collect();
        assert!(pax.parse(&many).unwrap_err().contains("more than"));
        assert!(pax.parse(&rec("SCHILY.xattr.", b"v")).is_err());
        pax.parse(&[rec("uid", b"7"), vec![0; 10]].concat())
            .unwrap();
        assert_eq!(pax.uid, Some(7));
    }
}
