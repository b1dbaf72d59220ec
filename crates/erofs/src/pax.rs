//! PAX extended-header records (`LEN KEY=VALUE\n`), parsed by their length prefix.
//!
//! The `tar` crate splits records at newlines, which breaks binary values (a
//! `security.capability` may contain `\n`), so the raw records are parsed here.

use crate::{MAX_XATTR_VALUE, MAX_XATTRS};

/// Longest extended attribute name accepted from a record: the kernel's `XATTR_NAME_MAX`.
const MAX_XATTR_NAME: usize = 255;

/// Most digits of one record's length prefix; more than any capped size needs.
const MAX_LEN_DIGITS: usize = 20;

/// What one entry's PAX records say.
#[derive(Default, Debug)]
pub(crate) struct Pax {
    /// `path`: the entry's name.
    pub path: Option<Vec<u8>>,
    /// `linkpath`: a link's target.
    pub linkpath: Option<Vec<u8>>,
    /// `mtime`: seconds and nanoseconds.
    pub mtime: Option<(i64, u32)>,
    /// `uid`.
    pub uid: Option<u64>,
    /// `gid`.
    pub gid: Option<u64>,
    /// `size`, checked against what the tar parser used.
    pub size: Option<u64>,
    /// `SCHILY.xattr.*` and `LIBARCHIVE.xattr.*` as (full name, value), in record order.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Pax {
    /// Forgets everything.
    pub fn clear(&mut self) {
        *self = Pax::default();
    }

    /// Parses `raw`, the data of one `x` header, into `self` (cleared first).
    pub fn parse(&mut self, raw: &[u8]) -> Result<(), String> {
        self.clear();
        let mut pos = 0;
        while pos < raw.len() {
            // Writers may pad the data with NULs after the last record.
            if raw[pos..].iter().all(|&b| b == 0) {
                break;
            }
            let (key, value) =
                record(raw, &mut pos).ok_or_else(|| "has a malformed PAX record".to_string())?;
            match key {
                b"path" => self.path = (!value.is_empty()).then(|| value.to_vec()),
                b"linkpath" => self.linkpath = (!value.is_empty()).then(|| value.to_vec()),
                b"mtime" => self.mtime = time(value)?,
                b"uid" => self.uid = number(value, "uid")?,
                b"gid" => self.gid = number(value, "gid")?,
                b"size" => self.size = number(value, "size")?,
                _ if key.starts_with(b"GNU.sparse.") => {
                    return Err("uses the GNU PAX sparse format, which is not supported".into());
                }
                _ => {
                    if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                        self.push_xattr(name.to_vec(), value.to_vec())?;
                    } else if let Some(name) = key.strip_prefix(b"LIBARCHIVE.xattr.") {
                        let bad = || "has a malformed LIBARCHIVE.xattr record".to_string();
                        let name = url_decode(name).ok_or_else(bad)?;
                        let value = base64(value).ok_or_else(bad)?;
                        self.push_xattr(name, value)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn push_xattr(&mut self, name: Vec<u8>, value: Vec<u8>) -> Result<(), String> {
        if self.xattrs.len() >= MAX_XATTRS {
            return Err(format!("has more than {MAX_XATTRS} extended attributes"));
        }
        if name.is_empty() || name.len() > MAX_XATTR_NAME || name.contains(&0) {
            return Err("has an extended attribute with an invalid name".into());
        }
        if value.len() > MAX_XATTR_VALUE {
            return Err(format!(
                "has an extended attribute over the {MAX_XATTR_VALUE}-byte limit"
            ));
        }
        self.xattrs.push((name, value));
        Ok(())
    }
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
    match std::str::from_utf8(value).ok().and_then(|t| t.parse().ok()) {
        Some(n) => Ok(Some(n)),
        None => Err(format!("has an invalid PAX {key} record")),
    }
}

/// Parses `[-]SECONDS[.FRACTION]` (nanosecond precision, the rest truncated).
fn time(value: &[u8]) -> Result<Option<(i64, u32)>, String> {
    if value.is_empty() {
        return Ok(None);
    }
    let bad = || "has an invalid PAX mtime record".to_string();
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
    let mut nanos: u32 = 0;
    for i in 0..9 {
        nanos = nanos * 10 + frac.get(i).map_or(0, |d| u32::from(d - b'0'));
    }
    Ok(Some(match (negative, nanos) {
        (false, _) => (secs, nanos),
        (true, 0) => (-secs, 0),
        (true, _) => (-secs - 1, 1_000_000_000 - nanos),
    }))
}

/// Decodes `%XX` escapes (libarchive's encoding of xattr names).
fn url_decode(name: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(name.len());
    let mut i = 0;
    while i < name.len() {
        if name[i] == b'%' {
            let hex = std::str::from_utf8(name.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(name[i]);
            i += 1;
        }
    }
    Some(out)
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
        let body = key.len() + value.len() + 3;
        let mut len = body + 1;
        while len != body + len.to_string().len() {
            len = body + len.to_string().len();
        }
        let mut out = format!("{len} {key}=").into_bytes();
        out.extend_from_slice(value);
        out.push(b'\n');
        out
    }

    #[test]
    fn binary_values_and_fractions_survive() {
        let mut raw = rec("SCHILY.xattr.security.capability", b"\x01\n\0\n\x02");
        raw.extend(rec("path", b"a/long\nname"));
        raw.extend(rec("mtime", b"1700000000.123456789"));
        raw.extend(rec("LIBARCHIVE.xattr.user.a%3Db", b"aGVsbG8="));
        let mut pax = Pax::default();
        pax.parse(&raw).unwrap();
        assert_eq!(
            pax.xattrs[0],
            (b"security.capability".to_vec(), b"\x01\n\0\n\x02".to_vec())
        );
        assert_eq!(pax.xattrs[1], (b"user.a=b".to_vec(), b"hello".to_vec()));
        assert_eq!(pax.path.as_deref(), Some(&b"a/long\nname"[..]));
        assert_eq!(pax.mtime, Some((1_700_000_000, 123_456_789)));
        assert_eq!(time(b"-1.5").unwrap(), Some((-2, 500_000_000)));
    }

    #[test]
    fn malformed_records_are_refused() {
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
        assert!(pax.parse(&rec("mtime", b"1.x")).is_err());
        let many: Vec<u8> = (0..=MAX_XATTRS)
            .flat_map(|i| rec(&format!("SCHILY.xattr.user.{i}"), b"v"))
            .collect();
        assert!(pax.parse(&many).unwrap_err().contains("more than"));
        pax.parse(&[rec("uid", b"7"), vec![0; 10]].concat())
            .unwrap();
        assert_eq!(pax.uid, Some(7));
    }
}
