//! Turning tar entry names into normalised paths inside the layer.

use crate::{MAX_NAME_LEN, MAX_PATH_DEPTH, MAX_PATH_LEN};

/// Longest entry name shown in an error message, so hostile names cannot flood a terminal.
const MAX_SHOWN_LEN: usize = 300;

/// Normalises the raw name `raw` into `out`, as the layer extractor does: components joined
/// by `/`, without empty or `.` components and without a leading `/` (absolute names are
/// relative to the layer root, as tar takes them). An empty result is the root itself.
///
/// Returns why the name is refused: a `..` component (whatever precedes it, since in a tar
/// it could mean leaving the layer), a NUL byte, or a size over the caps.
pub(crate) fn normalise(raw: &[u8], out: &mut Vec<u8>) -> Result<(), &'static str> {
    out.clear();
    if raw.len() > MAX_PATH_LEN {
        return Err("is longer than the 4096-byte path limit");
    }
    if raw.contains(&0) {
        return Err("contains a NUL byte");
    }
    let mut depth = 0;
    for name in raw.split(|&b| b == b'/') {
        match name {
            b"" | b"." => continue,
            b".." => return Err("has a `..` component, which could leave the layer"),
            _ if name.len() > MAX_NAME_LEN => return Err("has a component over 255 bytes"),
            _ => {}
        }
        depth += 1;
        if depth > MAX_PATH_DEPTH {
            return Err("is nested deeper than 256 directories");
        }
        if !out.is_empty() {
            out.push(b'/');
        }
        out.extend_from_slice(name);
    }
    Ok(())
}

/// Splits a normalised, non-empty path into its parent (possibly empty) and its last name.
pub(crate) fn split_last(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

/// The names of a normalised path (none for the root).
pub(crate) fn names(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.split(|&b| b == b'/').filter(|n| !n.is_empty())
}

/// A name as shown in messages: lossy UTF-8, shortened when very long.
pub(crate) fn shown(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    if text.chars().count() <= MAX_SHOWN_LEN {
        return text.into_owned();
    }
    let mut out: String = text.chars().take(MAX_SHOWN_LEN).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(raw: &str) -> Result<String, &'static str> {
        let mut out = Vec::new();
        normalise(raw.as_bytes(), &mut out).map(|()| String::from_utf8_lossy(&out).into_owned())
    }

    #[test]
    fn strips_dots_slashes_and_root() {
        assert_eq!(norm("./usr/bin/"), Ok("usr/bin".into()));
        assert_eq!(norm("/etc//passwd"), Ok("etc/passwd".into()));
        assert_eq!(norm("a/./b/."), Ok("a/b".into()));
        assert_eq!(norm("..."), Ok("...".into()));
        assert_eq!(norm("./"), Ok(String::new()));
    }

    #[test]
    fn refuses_dot_dot_nul_and_oversize() {
        for bad in ["..", "../x", "a/../b", "/../x", "a/.."] {
            assert!(norm(bad).is_err(), "{bad}");
        }
        assert!(norm("a\0b").is_err());
        assert!(norm(&"n".repeat(256)).is_err());
        assert!(norm(&"n".repeat(255)).is_ok());
        assert!(norm(&"a/".repeat(MAX_PATH_DEPTH + 1)).is_err());
        assert!(norm(&"a".repeat(MAX_PATH_LEN + 1)).is_err());
    }

    #[test]
    fn splits_and_shows() {
        assert_eq!(split_last(b"a/b/c"), (&b"a/b"[..], &b"c"[..]));
        assert_eq!(split_last(b"c"), (&b""[..], &b"c"[..]));
        assert_eq!(names(b"a/b").collect::<Vec<_>>(), [b"a", b"b"]);
        assert_eq!(names(b"").count(), 0);
        assert_eq!(shown(&[b'x'; 1000]).chars().count(), MAX_SHOWN_LEN + 1);
    }
}
