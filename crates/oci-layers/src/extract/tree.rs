//! Directory walking that never follows a symlink, and removal of whole trees.
//!
//! Every directory is reached from the layer's root descriptor one name at a time with
//! `openat(O_NOFOLLOW | O_DIRECTORY)`, so a symlink planted by an earlier entry (or anything
//! else) can never redirect a later entry outside the layer directory.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::rc::Rc;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::path::{MAX_PATH_DEPTH, is_within};

/// Flags for opening a directory we walk through.
const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Mode of parent directories that a layer uses without listing them (as Docker makes them).
const IMPLICIT_DIR_MODE: u32 = 0o755;

/// Why a directory could not be reached.
#[derive(Debug)]
pub(crate) enum WalkError {
    /// `path[..end]` exists but is a symlink (`symlink`) or another non-directory.
    NotDir { end: usize, symlink: bool },
    /// `path[..end]` does not exist (only when not creating).
    Missing { end: usize },
    /// Any other failure, with the prefix it happened at.
    Io { end: usize, err: io::Error },
}

/// Opens directories of one layer tree, remembering the last one (entries of one directory
/// are usually adjacent in a tar, so most entries need no walk at all).
pub(crate) struct Walker {
    root: Rc<OwnedFd>,
    cached_path: Vec<u8>,
    cached: Option<Rc<OwnedFd>>,
}

impl Walker {
    /// A walker below the directory `root`.
    pub fn new(root: OwnedFd) -> Walker {
        Walker {
            root: Rc::new(root),
            cached_path: Vec::new(),
            cached: None,
        }
    }

    /// The layer root's descriptor.
    pub fn root(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    /// Forgets the remembered directory; needed whenever something is removed, since the
    /// remembered directory might be gone (or be replaced) afterwards.
    pub fn forget(&mut self) {
        self.cached = None;
    }

    /// Opens the normalised relative directory `path` (empty: the root), creating missing
    /// components with mode 0755 when `create` is set.
    pub fn dir(&mut self, path: &[u8], create: bool) -> Result<Rc<OwnedFd>, WalkError> {
        if path.is_empty() {
            return Ok(self.root.clone());
        }
        let (mut fd, mut done) = match &self.cached {
            Some(fd) if self.cached_path == path => return Ok(fd.clone()),
            Some(fd) if !self.cached_path.is_empty() && is_within(path, &self.cached_path) => {
                (fd.clone(), self.cached_path.len() + 1)
            }
            _ => (self.root.clone(), 0),
        };
        while done < path.len() {
            let end = path[done..]
                .iter()
                .position(|&b| b == b'/')
                .map_or(path.len(), |i| done + i);
            let name = &path[done..end];
            fd = Rc::new(open_dir(fd.as_fd(), name, create, end)?);
            done = end + 1;
        }
        self.cached_path.clear();
        self.cached_path.extend_from_slice(path);
        self.cached = Some(fd.clone());
        Ok(fd)
    }
}

fn open_dir(
    parent: BorrowedFd<'_>,
    name: &[u8],
    create: bool,
    end: usize,
) -> Result<OwnedFd, WalkError> {
    let io = |e: Errno| WalkError::Io { end, err: e.into() };
    match rustix::fs::openat(parent, name, DIR_FLAGS, Mode::empty()) {
        Ok(fd) => Ok(fd),
        Err(Errno::NOENT) if create => {
            match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(IMPLICIT_DIR_MODE)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(io(e)),
            }
            let fd = rustix::fs::openat(parent, name, DIR_FLAGS, Mode::empty())
                .map_err(|e| not_dir(parent, name, e, end))?;
            // mkdir's mode went through the umask; implicit directories get 0755 regardless.
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(IMPLICIT_DIR_MODE)).map_err(io)?;
            Ok(fd)
        }
        Err(Errno::NOENT) => Err(WalkError::Missing { end }),
        Err(e) => Err(not_dir(parent, name, e, end)),
    }
}

/// Turns an `openat` failure into a precise error: a symlink or other non-directory in the
/// way is reported as such, anything else as I/O.
fn not_dir(parent: BorrowedFd<'_>, name: &[u8], err: Errno, end: usize) -> WalkError {
    if matches!(err, Errno::NOTDIR | Errno::LOOP) {
        if let Ok(st) = rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            let ty = FileType::from_raw_mode(st.st_mode);
            return WalkError::NotDir {
                end,
                symlink: ty == FileType::Symlink,
            };
        }
    }
    WalkError::Io {
        end,
        err: err.into(),
    }
}

/// Removes `name` in `parent` whatever it is; a directory goes with its whole tree.
/// Symlinks are removed, never followed. Returns whether anything was there.
pub(crate) fn remove(parent: BorrowedFd<'_>, name: &[u8]) -> io::Result<bool> {
    match rustix::fs::unlinkat(parent, name, AtFlags::empty()) {
        Ok(()) => Ok(true),
        Err(Errno::NOENT) => Ok(false),
        Err(Errno::ISDIR) => remove_dir_tree(parent, name, 0).map(|()| true),
        Err(e) => Err(e.into()),
    }
}

/// Removes the directory `name` in `parent` and everything below it.
///
/// Directories we cannot read or write into (a layer may make them 0555 or 0000) are made
/// accessible first, so a non-root owner can clean up what it extracted.
fn remove_dir_tree(parent: BorrowedFd<'_>, name: &[u8], depth: usize) -> io::Result<()> {
    /// Extracted trees are at most MAX_PATH_DEPTH deep; a few levels more cover the cache's
    /// own directories around them.
    const MAX_REMOVE_DEPTH: usize = MAX_PATH_DEPTH + 8;
    match rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => return Ok(()),
        Err(Errno::NOTEMPTY | Errno::EXIST | Errno::ACCESS | Errno::PERM) => {}
        Err(e) => return Err(e.into()),
    }
    if depth > MAX_REMOVE_DEPTH {
        return Err(io::Error::other("directory tree too deep to remove"));
    }
    let dir = match rustix::fs::openat(parent, name, DIR_FLAGS, Mode::empty()) {
        Err(Errno::ACCESS) => {
            rustix::fs::chmodat(parent, name, Mode::RWXU, AtFlags::empty())?;
            rustix::fs::openat(parent, name, DIR_FLAGS, Mode::empty())?
        }
        other => other?,
    };
    let mut names = Vec::new();
    {
        let mut entries = rustix::fs::Dir::read_from(&dir)?;
        while let Some(entry) = entries.read() {
            let entry = entry?;
            let child = entry.file_name().to_bytes();
            if child != b"." && child != b".." {
                names.push(child.to_vec());
            }
        }
    }
    let mut made_writable = false;
    for child in &names {
        loop {
            match rustix::fs::unlinkat(&dir, child.as_slice(), AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(Errno::ISDIR) => remove_dir_tree(dir.as_fd(), child, depth + 1)?,
                Err(Errno::ACCESS | Errno::PERM) if !made_writable => {
                    made_writable = true;
                    rustix::fs::fchmod(&dir, Mode::RWXU)?;
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
            break;
        }
    }
    rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR)?;
    Ok(())
}

/// Removes `path` (a file, symlink or directory tree) without following symlinks inside it;
/// a missing path is not an error.
pub(crate) fn remove_path(path: &Path) -> io::Result<()> {
    let (parent, name) = match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => (parent, name),
        _ => return Err(io::Error::other("refusing to remove a root or empty path")),
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let dir = match rustix::fs::open(parent, DIR_FLAGS, Mode::empty()) {
        Ok(dir) => dir,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    remove(dir.as_fd(), OsStr::as_bytes(name)).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn walker(dir: &Path) -> Walker {
        Walker::new(rustix::fs::open(dir, DIR_FLAGS, Mode::empty()).unwrap())
    }

    #[test]
    fn walks_and_creates_without_following_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        symlink(outside.path(), tmp.path().join("link")).unwrap();
        std::fs::write(tmp.path().join("file"), b"").unwrap();
        let mut w = walker(tmp.path());
        w.dir(b"a/b/c", true).unwrap();
        assert!(tmp.path().join("a/b/c").is_dir());
        let mode = std::fs::metadata(tmp.path().join("a/b"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        w.dir(b"a/b/c/d", true).unwrap(); // below the cached directory
        assert!(matches!(
            w.dir(b"link/x", true),
            Err(WalkError::NotDir {
                end: 4,
                symlink: true
            })
        ));
        assert!(matches!(
            w.dir(b"file/x", true),
            Err(WalkError::NotDir {
                end: 4,
                symlink: false
            })
        ));
        assert!(matches!(
            w.dir(b"nope/x", false),
            Err(WalkError::Missing { end: 4 })
        ));
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn removes_trees_even_read_only_ones_and_not_through_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("keep"), b"x").unwrap();
        let top = tmp.path().join("top");
        std::fs::create_dir_all(top.join("a/b")).unwrap();
        std::fs::write(top.join("a/b/f"), b"x").unwrap();
        symlink(outside.path(), top.join("a/link")).unwrap();
        std::fs::set_permissions(top.join("a/b"), std::fs::Permissions::from_mode(0o555)).unwrap();
        std::fs::set_permissions(top.join("a"), std::fs::Permissions::from_mode(0o000)).unwrap();
        remove_path(&top).unwrap();
        assert!(!top.exists());
        assert!(outside.path().join("keep").exists());
        remove_path(&top).unwrap(); // already gone
    }
}
