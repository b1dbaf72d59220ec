//! Applying an entry's owner, mode, extended attributes and times.
//!
//! Order matters: `chown` clears setuid/setgid bits and file capabilities, so owners come
//! first, then the mode, then xattrs (which may be `security.capability`), then times.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use rustix::fs::{AtFlags, Gid, Mode, Timespec, Timestamps, Uid, XattrFlags};
use rustix::io::Errno;

use super::pax::Xattrs;

/// Owner, permission bits and times of one entry.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Meta {
    /// Permission bits including setuid, setgid and sticky (`0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time.
    pub mtime: Timespec,
    /// Access time.
    pub atime: Timespec,
}

impl Meta {
    fn times(&self) -> Timestamps {
        Timestamps {
            last_access: self.atime,
            last_modification: self.mtime,
        }
    }

    fn mode(&self) -> Mode {
        Mode::from_raw_mode(self.mode & 0o7777)
    }
}

/// Applies metadata according to the extraction options and who we are.
pub(crate) struct Applier {
    /// Set owners from the tar (needs root); otherwise everything belongs to us.
    pub preserve_owner: bool,
    /// Whether we run as root; unprivileged runs skip xattrs only root may set.
    pub is_root: bool,
    /// Extended attributes not set because we lack the privilege (unprivileged runs only).
    pub skipped_xattrs: u64,
}

impl Applier {
    /// Owner, mode, xattrs and times of an open regular file.
    pub fn file(&mut self, fd: BorrowedFd<'_>, meta: &Meta, xattrs: &Xattrs) -> io::Result<()> {
        self.owner_fd(fd, meta)?;
        rustix::fs::fchmod(fd, meta.mode()).map_err(|e| ctx("setting the mode", e))?;
        self.xattrs(xattrs, |name, value| {
            rustix::fs::fsetxattr(fd, name, value, XattrFlags::empty())
        })?;
        rustix::fs::futimens(fd, &meta.times()).map_err(|e| ctx("setting times", e))
    }

    /// Owner and xattrs of an open directory; its mode and times come at the very end.
    pub fn dir_early(
        &mut self,
        fd: BorrowedFd<'_>,
        meta: &Meta,
        xattrs: &Xattrs,
    ) -> io::Result<()> {
        self.owner_fd(fd, meta)?;
        self.xattrs(xattrs, |name, value| {
            rustix::fs::fsetxattr(fd, name, value, XattrFlags::empty())
        })
    }

    /// Mode and times of an open directory, once nothing more is created inside it.
    pub fn dir_late(fd: BorrowedFd<'_>, meta: &Meta) -> io::Result<()> {
        rustix::fs::fchmod(fd, meta.mode()).map_err(|e| ctx("setting the mode", e))?;
        rustix::fs::futimens(fd, &meta.times()).map_err(|e| ctx("setting times", e))
    }

    /// Everything for a symlink, device or fifo just created as `name` in `parent`
    /// (`set_mode` is false for symlinks, whose mode Linux ignores).
    pub fn node(
        &mut self,
        parent: BorrowedFd<'_>,
        name: &[u8],
        meta: &Meta,
        xattrs: &Xattrs,
        set_mode: bool,
    ) -> io::Result<()> {
        if self.preserve_owner {
            rustix::fs::chownat(
                parent,
                name,
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| ctx("setting the owner", e))?;
        }
        if set_mode {
            // The node was created by us a moment ago, so the name is not a symlink that
            // chmodat could follow.
            rustix::fs::chmodat(parent, name, meta.mode(), AtFlags::empty())
                .map_err(|e| ctx("setting the mode", e))?;
        }
        if !xattrs.is_empty() {
            // No *xattrat call to set an attribute relative to a directory descriptor on
            // all kernels; the /proc path resolves the parent through its descriptor and
            // lsetxattr does not follow the final name.
            let mut path = format!("/proc/self/fd/{}/", parent.as_raw_fd()).into_bytes();
            path.extend_from_slice(name);
            self.xattrs(xattrs, |attr, value| {
                rustix::fs::lsetxattr(path.as_slice(), attr, value, XattrFlags::empty())
            })?;
        }
        rustix::fs::utimensat(parent, name, &meta.times(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| ctx("setting times", e))
    }

    fn owner_fd(&self, fd: BorrowedFd<'_>, meta: &Meta) -> io::Result<()> {
        if !self.preserve_owner {
            return Ok(());
        }
        rustix::fs::fchown(
            fd,
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
        )
        .map_err(|e| ctx("setting the owner", e))
    }

    fn xattrs(
        &mut self,
        xattrs: &Xattrs,
        mut set: impl FnMut(&[u8], &[u8]) -> rustix::io::Result<()>,
    ) -> io::Result<()> {
        for (name, value) in xattrs.iter() {
            match set(name, value) {
                Ok(()) => {}
                // Unprivileged: trusted.* and security.* need root, and some filesystems
                // lack user xattrs; the tree is still usable without them.
                Err(Errno::PERM | Errno::ACCESS | Errno::NOTSUP) if !self.is_root => {
                    self.skipped_xattrs += 1;
                }
                Err(e) => {
                    let shown = String::from_utf8_lossy(name);
                    let hint = if e == Errno::NOTSUP {
                        " (the filesystem does not support it; use one with xattr support)"
                    } else {
                        ""
                    };
                    return Err(io::Error::new(
                        io::Error::from(e).kind(),
                        format!("setting extended attribute {shown:?}: {e}{hint}"),
                    ));
                }
            }
        }
        Ok(())
    }
}

fn ctx(what: &str, e: Errno) -> io::Error {
    io::Error::new(io::Error::from(e).kind(), format!("{what}: {e}"))
}
