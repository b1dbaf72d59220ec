//! Extended attributes: every namespace the caller may read (`user.*`, `trusted.*`, `security.*`
//! including `security.capability`, `system.posix_acl_*`), copied name by name.
//!
//! A destination filesystem that refuses an attribute with `EOPNOTSUPP` (no support for that
//! namespace) is skipped and counted; every other failure is an error, so a `user.*` attribute is
//! never lost silently where the filesystem supports it.

use std::cell::RefCell;
use std::ffi::{CStr, CString};
use std::os::fd::BorrowedFd;
use std::path::Path;

use rustix::fs::XattrFlags;
use rustix::io::Errno;

use crate::error::{Error, Op, Result};

/// Most bytes a name list can have: the kernel's `XATTR_LIST_MAX`. A buffer this size never gets
/// `ERANGE`, and a source cannot make us allocate more.
const LIST_MAX: usize = 65_536;
/// Largest attribute value: the kernel's `XATTR_SIZE_MAX`, for the same reasons as [`LIST_MAX`].
const VALUE_MAX: usize = 65_536;

thread_local! {
    /// Per-thread buffers: most files have no attributes, so copying them allocates nothing.
    static BUFFERS: RefCell<(Vec<u8>, Vec<u8>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// How to reach an inode: an open descriptor (regular files) or a path that is never followed.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Node<'a> {
    /// A descriptor opened for reading or writing.
    Fd(BorrowedFd<'a>, &'a Path),
    /// A path; `l*xattr` calls, so a final symlink is not followed.
    Path(&'a Path),
}

impl Node<'_> {
    fn path(&self) -> &Path {
        match self {
            Node::Fd(_, path) | Node::Path(path) => path,
        }
    }

    fn list(&self, buf: &mut [u8]) -> rustix::io::Result<usize> {
        match self {
            Node::Fd(fd, _) => rustix::fs::flistxattr(fd, buf),
            Node::Path(path) => rustix::fs::llistxattr(*path, buf),
        }
    }

    fn get(&self, name: &CStr, buf: &mut [u8]) -> rustix::io::Result<usize> {
        match self {
            Node::Fd(fd, _) => rustix::fs::fgetxattr(fd, name, buf),
            Node::Path(path) => rustix::fs::lgetxattr(*path, name, buf),
        }
    }

    fn set(&self, name: &CStr, value: &[u8]) -> rustix::io::Result<()> {
        match self {
            Node::Fd(fd, _) => rustix::fs::fsetxattr(fd, name, value, XattrFlags::empty()),
            Node::Path(path) => rustix::fs::lsetxattr(*path, name, value, XattrFlags::empty()),
        }
    }
}

/// A source's attributes held in memory, for directories whose metadata is applied later.
#[derive(Clone, Debug, Default)]
pub(crate) struct Saved(Vec<(CString, Vec<u8>)>);

/// Copies all attributes of `src` to `dst`; returns how many the destination refused as unsupported.
pub(crate) fn copy(src: Node<'_>, dst: Node<'_>) -> Result<u64> {
    BUFFERS.with_borrow_mut(|(list, value)| {
        let mut skipped = 0;
        for_each(src, list, value, |name, value| {
            skipped += set(dst, name, value)?;
            Ok(())
        })?;
        Ok(skipped)
    })
}

/// Reads all attributes of `src` into memory.
pub(crate) fn save(src: Node<'_>) -> Result<Saved> {
    BUFFERS.with_borrow_mut(|(list, value)| {
        let mut saved = Vec::new();
        for_each(src, list, value, |name, value| {
            saved.push((name.to_owned(), value.to_vec()));
            Ok(())
        })?;
        Ok(Saved(saved))
    })
}

/// Writes saved attributes to `dst`; returns how many the destination refused as unsupported.
pub(crate) fn restore(saved: &Saved, dst: Node<'_>) -> Result<u64> {
    let mut skipped = 0;
    for (name, value) in &saved.0 {
        skipped += set(dst, name, value)?;
    }
    Ok(skipped)
}

/// Calls `each(name, value)` for every attribute of `src`.
fn for_each(
    src: Node<'_>,
    list: &mut Vec<u8>,
    value: &mut Vec<u8>,
    mut each: impl FnMut(&CStr, &[u8]) -> Result<()>,
) -> Result<()> {
    list.resize(LIST_MAX, 0);
    let len = match src.list(list) {
        Ok(len) => len,
        // The source filesystem has no attributes at all.
        Err(Errno::OPNOTSUPP) => 0,
        Err(e) => return Err(Error::io(Op::ListXattrs, src.path(), e)),
    };
    if len == 0 {
        return Ok(());
    }
    value.resize(VALUE_MAX, 0);
    for raw in list[..len].split_inclusive(|&b| b == 0) {
        let Ok(name) = CStr::from_bytes_with_nul(raw) else {
            // The kernel terminates every name; a fragment without NUL cannot name anything.
            continue;
        };
        match src.get(name, value) {
            Ok(n) => each(name, &value[..n])?,
            // Removed since it was listed.
            Err(Errno::NODATA) => {}
            Err(e) => return Err(xattr_error(Op::GetXattr, src.path(), name, e)),
        }
    }
    Ok(())
}

/// Sets one attribute; `Ok(1)` when the destination does not support its namespace.
fn set(dst: Node<'_>, name: &CStr, value: &[u8]) -> Result<u64> {
    match dst.set(name, value) {
        Ok(()) => Ok(0),
        Err(Errno::OPNOTSUPP) => Ok(1),
        Err(e) => Err(xattr_error(Op::SetXattr, dst.path(), name, e)),
    }
}

fn xattr_error(op: Op, path: &Path, name: &CStr, errno: Errno) -> Error {
    Error::Xattr {
        op,
        path: path.to_path_buf(),
        name: name.to_string_lossy().into_owned(),
        source: errno.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &Path, name: &str) -> Option<Vec<u8>> {
        let mut buf = vec![0; VALUE_MAX];
        let n = rustix::fs::lgetxattr(path, name, &mut buf[..]).ok()?;
        buf.truncate(n);
        Some(buf)
    }

    #[test]
    fn copies_user_attributes_including_empty_and_large_values() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, b"").unwrap();
        std::fs::write(&b, b"").unwrap();
        let big = vec![7u8; 4000];
        rustix::fs::lsetxattr(&a, "user.empty", b"", XattrFlags::empty()).unwrap();
        rustix::fs::lsetxattr(&a, "user.big", &big, XattrFlags::empty()).unwrap();
        rustix::fs::lsetxattr(&a, "user.x", b"1\0binary", XattrFlags::empty()).unwrap();

        let skipped = copy(Node::Path(&a), Node::Path(&b)).unwrap();
        assert_eq!(skipped, 0);
        assert_eq!(get(&b, "user.empty").unwrap(), b"");
        assert_eq!(get(&b, "user.big").unwrap(), big);
        assert_eq!(get(&b, "user.x").unwrap(), b"1\0binary");

        let saved = save(Node::Path(&a)).unwrap();
        assert_eq!(saved.0.len(), 3);
        let c = dir.path().join("c");
        std::fs::create_dir(&c).unwrap();
        assert_eq!(restore(&saved, Node::Path(&c)).unwrap(), 0);
        assert_eq!(get(&c, "user.big").unwrap(), big);
    }

    #[test]
    fn refused_attribute_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::write(&a, b"").unwrap();
        rustix::fs::lsetxattr(&a, "user.keep", b"v", XattrFlags::empty()).unwrap();
        // user.* is not allowed on symlinks: EPERM, which must not be swallowed.
        let link = dir.path().join("l");
        std::os::unix::fs::symlink("a", &link).unwrap();
        let err = copy(Node::Path(&a), Node::Path(&link)).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("user.keep") && msg.contains("/l"), "{msg}");
    }
}
