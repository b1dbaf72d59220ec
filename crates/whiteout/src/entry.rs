//! Layer entries and the path form they must have.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::Error;

/// Longest entry path accepted, in bytes.
///
/// Linux's `PATH_MAX`: no extractor could create a longer path anyway, and the cap keeps
/// the per-entry walk over ancestors (at most `MAX_PATH_BYTES / 2` of them) bounded.
pub const MAX_PATH_BYTES: usize = 4096;

/// Whether an entry is a directory; every other file type behaves alike here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A directory: merges with a lower directory at the same path.
    Dir,
    /// Anything else (file, symlink, device, …): replaces what is below it.
    NonDir,
}

/// One explicit entry of a layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerEntry {
    /// Relative and normalised: no leading `/`, no `.` or `..` components, not empty.
    pub path: PathBuf,
    /// What the entry is.
    pub kind: EntryKind,
}

impl LayerEntry {
    /// An entry of the given kind.
    pub fn new(path: impl Into<PathBuf>, kind: EntryKind) -> Self {
        Self {
            path: path.into(),
            kind,
        }
    }

    /// A directory entry.
    pub fn dir(path: impl Into<PathBuf>) -> Self {
        Self::new(path, EntryKind::Dir)
    }

    /// A non-directory entry (also the kind every marker must have).
    pub fn non_dir(path: impl Into<PathBuf>) -> Self {
        Self::new(path, EntryKind::NonDir)
    }
}

/// Checks that `path` is relative and normalised, and returns it rebuilt from its names.
///
/// Repeated and trailing slashes (`a//b/`, as tar writes directories) are harmless and
/// dropped; `.` and `..` are rejected rather than resolved, since resolving them is the
/// extractor's security decision, not ours.
pub(crate) fn normalise(path: &Path) -> Result<PathBuf, Error> {
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() > MAX_PATH_BYTES {
        return Err(Error::PathTooLong {
            path: path.to_owned(),
            len: bytes.len(),
        });
    }
    let bad = |reason| {
        Err(Error::NotNormalised {
            path: path.to_owned(),
            reason,
        })
    };
    if bytes.starts_with(b"/") {
        return bad("it is absolute");
    }
    let mut out = PathBuf::with_capacity(bytes.len());
    for name in bytes.split(|&b| b == b'/').filter(|name| !name.is_empty()) {
        match name {
            b"." => return bad("it has a '.' component"),
            b".." => return bad("it has a '..' component"),
            _ => out.push(std::ffi::OsStr::from_bytes(name)),
        }
    }
    if out.as_os_str().is_empty() {
        return bad("it is empty (the layer root itself is not an entry; skip `./`)");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejects(path: &str) {
        assert!(
            matches!(normalise(Path::new(path)), Err(Error::NotNormalised { .. })),
            "{path:?} was accepted"
        );
    }

    #[test]
    fn clean_paths_pass_unchanged() {
        assert_eq!(
            normalise(Path::new("a/b.c/d")).unwrap(),
            Path::new("a/b.c/d")
        );
        assert_eq!(normalise(Path::new("...")).unwrap(), Path::new("..."));
    }

    #[test]
    fn redundant_slashes_are_dropped() {
        let clean = normalise(Path::new("a//b/")).unwrap();
        assert_eq!(clean.as_os_str(), "a/b");
    }

    #[test]
    fn absolute_paths_are_rejected() {
        rejects("/a");
        rejects("//a");
    }

    #[test]
    fn dot_components_are_rejected() {
        rejects("./a");
        rejects("a/./b");
        rejects("a/.");
        rejects("../a");
        rejects("a/../b");
        rejects("a/..");
    }

    #[test]
    fn the_root_itself_is_rejected() {
        rejects("");
        rejects("/");
        rejects(".");
        rejects("./");
    }

    #[test]
    fn overlong_paths_are_rejected_by_name() {
        let long = "a/".repeat(MAX_PATH_BYTES / 2) + "b";
        let err = normalise(Path::new(&long)).unwrap_err();
        assert!(matches!(err, Error::PathTooLong { len, .. } if len == long.len()));
        let fits = "a/".repeat(MAX_PATH_BYTES / 2 - 1) + "b";
        assert!(normalise(Path::new(&fits)).is_ok());
    }
}
