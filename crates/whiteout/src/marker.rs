//! Recognising whiteout and opaque markers by file name.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

/// Prefix of a whiteout marker: `.wh.NAME` hides `NAME` of the lower layers.
pub const WHITEOUT_PREFIX: &str = ".wh.";

/// Name of the opaque marker: the directory holding it hides its lower children.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// What a marker's file name asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Marker<'a> {
    /// `.wh.NAME`: hide the sibling `NAME` (with its subtree) of the lower layers.
    Whiteout(&'a OsStr),
    /// `.wh..wh..opq`: hide every lower child of the directory holding the marker.
    Opaque,
}

/// Classifies one file name; every name starting with `.wh.` is a marker, never content.
///
/// This is only syntax: `.wh.` yields `Whiteout("")`. [`crate::LayerPlan::new`] rejects
/// invalid markers, and ignores AUFS metadata (`.wh..wh.plnk`, …) with all beneath it.
pub fn parse_marker(name: &OsStr) -> Option<Marker<'_>> {
    let bytes = name.as_bytes();
    if bytes == OPAQUE_MARKER.as_bytes() {
        return Some(Marker::Opaque);
    }
    bytes
        .strip_prefix(WHITEOUT_PREFIX.as_bytes())
        .map(|hidden| Marker::Whiteout(OsStr::from_bytes(hidden)))
}

/// Whether a marker is AUFS bookkeeping (`.wh..wh.plnk`, `.wh..wh.aufs`, …) rather than
/// a whiteout.
///
/// Docker-era layers sometimes carry these; they would hide a `.wh.*` name, which can
/// never exist in a result, so ignoring them (and anything beneath them) is exact.
pub(crate) fn is_aufs_metadata(marker: Marker<'_>) -> bool {
    matches!(marker, Marker::Whiteout(hidden) if hidden.as_bytes().starts_with(WHITEOUT_PREFIX.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(name: &str) -> Option<Marker<'_>> {
        parse_marker(OsStr::new(name))
    }

    #[test]
    fn plain_names_are_not_markers() {
        for name in ["foo", ".wh", "wh.foo", ".whfoo", "..wh.foo", "a.wh.b", ""] {
            assert_eq!(parse(name), None, "{name:?}");
        }
    }

    #[test]
    fn whiteout_names_its_hidden_sibling() {
        assert_eq!(parse(".wh.foo"), Some(Marker::Whiteout(OsStr::new("foo"))));
        assert_eq!(
            parse(".wh..bashrc"),
            Some(Marker::Whiteout(OsStr::new(".bashrc")))
        );
    }

    #[test]
    fn opaque_marker_is_recognised_exactly() {
        assert_eq!(parse(OPAQUE_MARKER), Some(Marker::Opaque));
        assert_eq!(
            parse(".wh..wh..opq2"),
            Some(Marker::Whiteout(OsStr::new(".wh..opq2")))
        );
    }

    #[test]
    fn degenerate_whiteouts_still_parse_as_markers() {
        assert_eq!(parse(".wh."), Some(Marker::Whiteout(OsStr::new(""))));
        assert_eq!(parse(".wh.."), Some(Marker::Whiteout(OsStr::new("."))));
        assert_eq!(parse(".wh..."), Some(Marker::Whiteout(OsStr::new(".."))));
    }

    #[test]
    fn non_utf8_names_are_handled_as_bytes() {
        let name = OsStr::from_bytes(b".wh.\xff\xfe");
        assert_eq!(
            parse_marker(name),
            Some(Marker::Whiteout(OsStr::from_bytes(b"\xff\xfe")))
        );
    }

    #[test]
    fn aufs_metadata_is_told_apart_from_whiteouts() {
        let aufs = |name: &str| parse(name).is_some_and(is_aufs_metadata);
        assert!(aufs(".wh..wh.plnk"));
        assert!(aufs(".wh..wh.aufs"));
        assert!(!aufs(OPAQUE_MARKER));
        assert!(!aufs(".wh.foo"));
        assert!(!aufs(".wh..foo"));
    }
}
