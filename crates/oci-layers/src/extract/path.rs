//! Turning tar entry names into relative paths that cannot leave the layer directory.

use std::borrow::Cow;

/// Longest entry name or link target accepted, in bytes.
///
/// Linux's `PATH_MAX` (and the whiteout crate's limit): longer names could not be opened by
/// path anyway, and the cap bounds what one header can make us allocate and walk.
pub const MAX_PATH_LEN: usize = whiteout::MAX_PATH_BYTES;

/// Deepest directory nesting accepted for an entry.
///
/// Real images stay within a few dozen levels; the cap bounds the recursion (and the
/// descriptors it holds open) when an entry replaces a directory tree.
pub const MAX_PATH_DEPTH: usize = 256;

/// Longest single file name, in bytes (Linux's `NAME_MAX`); longer ones cannot be created.
const MAX_NAME_LEN: usize = 255;

/// Longest entry name shown in an error message, so hostile names cannot flood a terminal.
const MAX_SHOWN_LEN: usize = 300;

/// Normalises the raw name `raw` into `out`: components joined by `/`, without empty or
/// `.` components and without a leading `/` (absolute names are taken as relative to the
/// layer root, as tar does). An empty result is the layer root itself.
///
/// Returns why the name is unacceptable: a `..` component (which could escape the layer
/// directory whatever came before it), a NUL byte, or a size over the caps.
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
            b".." => return Err("escapes the layer directory (it has a '..' component)"),
            _ if name.len() > MAX_NAME_LEN => {
                return Err("has a component longer than 255 bytes");
            }
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

/// Whether normalised `path` is `dir` itself or lies beneath it.
pub(crate) fn is_within(path: &[u8], dir: &[u8]) -> bool {
    dir.is_empty()
        || (path.starts_with(dir) && (path.len() == dir.len() || path[dir.len()] == b'/'))
}

/// An entry name as shown in messages: lossy UTF-8, shortened when very long.
pub(crate) fn shown(raw: &[u8]) -> String {
    let text: Cow<'_, str> = String::from_utf8_lossy(raw);
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
        normalise(raw.as_bytes(), &mut out).map(|()| String::from_utf8(out).unwrap())
    }

    #[test]
    fn strips_dots_slashes_and_leading_root() {
        assert_eq!(norm("./usr/bin/").unwrap(), "usr/bin");
        assert_eq!(norm("/etc//passwd").unwrap(), "etc/passwd");
        assert_eq!(norm("a/./b/.").unwrap(), "a/b");
        assert_eq!(norm("...").unwrap(), "...");
        assert_eq!(norm("./").unwrap(), "");
        assert_eq!(norm("/").unwrap(), "");
    }

    #[test]
    fn rejects_dot_dot_anywhere() {
        for bad in ["..", "../x", "a/../../x", "a/..", "/../x", "a/b/../c"] {
            assert!(norm(bad).unwrap_err().contains("escapes"), "{bad}");
        }
    }

    #[test]
    fn rejects_oversized_and_nul() {
        assert!(norm(&"a/".repeat(2100)).is_err());
        assert!(norm(&"a/".repeat(MAX_PATH_DEPTH + 1)).is_err());
        assert!(norm(&"a/".repeat(MAX_PATH_DEPTH)).is_ok());
        assert!(norm(&"n".repeat(256)).is_err());
        assert!(norm(&"n".repeat(255)).is_ok());
        assert!(norm("a\0b").is_err());
    }

    #[test]
    fn splits_and_compares() {
        assert_eq!(split_last(b"a/b/c"), (&b"a/b"[..], &b"c"[..]));
        assert_eq!(split_last(b"c"), (&b""[..], &b"c"[..]));
        assert!(is_within(b"a/b", b"a"));
        assert!(is_within(b"a", b"a"));
        assert!(!is_within(b"ab", b"a"));
        assert!(is_within(b"x", b""));
    }

    #[test]
    fn shows_long_names_shortened() {
        assert_eq!(shown(b"a\xffb"), "a\u{fffd}b");
        assert_eq!(
            shown("x".repeat(1000).as_bytes()).chars().count(),
            MAX_SHOWN_LEN + 1
        );
    }
}
