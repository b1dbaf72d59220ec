//! Inode metadata: reading it once per source entry and applying owner, mode and times.
//!
//! The order matters and is fixed by [`apply_fd`] / [`apply_path`]: owner first (chown clears
//! setuid/setgid and `security.capability`), then extended attributes, then the mode, then
//! the times (anything written after `utimensat` would move mtime again).

use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use rustix::fs::{AtFlags, CWD, FileType, Gid, Mode, Stat, Timespec, Timestamps, Uid};

use crate::error::{Error, Op, Result, at};

/// The kind of a filesystem entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Dir,
    File,
    Symlink,
    Fifo,
    CharDevice,
    BlockDevice,
    Socket,
}

/// What this crate needs from `struct stat`, with portable integer types.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Meta {
    pub(crate) dev: u64,
    pub(crate) ino: u64,
    pub(crate) nlink: u64,
    /// The whole `st_mode`: file type and permission bits.
    pub(crate) mode: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) rdev: u64,
    pub(crate) size: u64,
    /// Allocated 512-byte blocks; fewer than `size` needs means the file has holes.
    pub(crate) blocks: u64,
    pub(crate) atime: Timespec,
    pub(crate) mtime: Timespec,
}

impl Meta {
    /// Converts a `stat` result.
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)] // field types differ per arch
    pub(crate) fn from_stat(st: &Stat) -> Meta {
        Meta {
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            nlink: st.st_nlink as u64,
            mode: st.st_mode as u32,
            uid: st.st_uid as u32,
            gid: st.st_gid as u32,
            rdev: st.st_rdev as u64,
            size: u64::try_from(st.st_size).unwrap_or(0),
            blocks: u64::try_from(st.st_blocks).unwrap_or(0),
            atime: Timespec {
                tv_sec: st.st_atime as i64,
                tv_nsec: st.st_atime_nsec as _,
            },
            mtime: Timespec {
                tv_sec: st.st_mtime as i64,
                tv_nsec: st.st_mtime_nsec as _,
            },
        }
    }

    /// `lstat(path)`: never follows a final symlink.
    pub(crate) fn lstat(path: &Path) -> Result<Meta> {
        let st =
            rustix::fs::statat(CWD, path, AtFlags::SYMLINK_NOFOLLOW).map_err(at(Op::Stat, path))?;
        Ok(Meta::from_stat(&st))
    }

    /// The entry's kind.
    pub(crate) fn kind(&self) -> Kind {
        match FileType::from_raw_mode(self.mode) {
            FileType::Directory => Kind::Dir,
            FileType::Symlink => Kind::Symlink,
            FileType::Fifo => Kind::Fifo,
            FileType::CharacterDevice => Kind::CharDevice,
            FileType::BlockDevice => Kind::BlockDevice,
            FileType::Socket => Kind::Socket,
            // Anything unknown is treated as data; opening it with O_NOFOLLOW|O_NONBLOCK is safe.
            _ => Kind::File,
        }
    }

    /// Permission bits including setuid, setgid and sticky.
    pub(crate) fn perm(&self) -> Mode {
        Mode::from_raw_mode(self.mode & 0o7777)
    }

    /// The access and modification times to restore.
    pub(crate) fn times(&self) -> Timestamps {
        Timestamps {
            last_access: self.atime,
            last_modification: self.mtime,
        }
    }

    fn owner(&self) -> (Option<Uid>, Option<Gid>) {
        // -1 means "leave unchanged" to chown and is never a real inode's owner.
        let uid = (self.uid != u32::MAX).then(|| Uid::from_raw(self.uid));
        let gid = (self.gid != u32::MAX).then(|| Gid::from_raw(self.gid));
        (uid, gid)
    }
}

/// What [`apply_fd`] and [`apply_path`] restore besides times.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Preserve {
    pub(crate) owner: bool,
    /// False for symlinks, whose mode Linux neither stores nor lets anyone change.
    pub(crate) mode: bool,
}

/// Restores owner, mode and times on an open regular file; `xattrs` runs between owner and mode.
pub(crate) fn apply_fd(
    fd: BorrowedFd<'_>,
    path: &Path,
    meta: &Meta,
    preserve: Preserve,
    xattrs: impl FnOnce() -> Result<()>,
) -> Result<()> {
    if preserve.owner {
        let (uid, gid) = meta.owner();
        rustix::fs::fchown(fd, uid, gid).map_err(at(Op::Chown, path))?;
    }
    xattrs()?;
    if preserve.mode {
        rustix::fs::fchmod(fd, meta.perm()).map_err(at(Op::Chmod, path))?;
    }
    rustix::fs::futimens(fd.as_fd(), &meta.times()).map_err(at(Op::SetTimes, path))
}

/// Restores owner, mode and times on `path` without following it if it is a symlink.
pub(crate) fn apply_path(
    path: &Path,
    meta: &Meta,
    preserve: Preserve,
    xattrs: impl FnOnce() -> Result<()>,
) -> Result<()> {
    if preserve.owner {
        let (uid, gid) = meta.owner();
        rustix::fs::chownat(CWD, path, uid, gid, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(at(Op::Chown, path))?;
    }
    xattrs()?;
    if preserve.mode {
        // Only reached for non-symlinks, which this crate created itself, so following is moot;
        // Linux's fchmodat has no working AT_SYMLINK_NOFOLLOW anyway.
        rustix::fs::chmodat(CWD, path, meta.perm(), AtFlags::empty())
            .map_err(at(Op::Chmod, path))?;
    }
    rustix::fs::utimensat(CWD, path, &meta.times(), AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| Error::io(Op::SetTimes, path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lstat_reports_kind_perm_and_times_without_following() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"abc").unwrap();
        let link = dir.path().join("l");
        std::os::unix::fs::symlink("l", &link).unwrap();

        let m = Meta::lstat(&file).unwrap();
        assert_eq!(m.kind(), Kind::File);
        assert_eq!(m.size, 3);
        assert_eq!(Meta::lstat(&link).unwrap().kind(), Kind::Symlink);
        assert_eq!(Meta::lstat(dir.path()).unwrap().kind(), Kind::Dir);
        let err = Meta::lstat(&dir.path().join("missing")).unwrap_err();
        assert_eq!(err.errno(), Some(libc::ENOENT));
    }

    #[test]
    fn apply_path_sets_mode_and_nanosecond_times() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"abc").unwrap();
        let mut m = Meta::lstat(&file).unwrap();
        m.mode = (m.mode & !0o7777) | 0o640;
        m.mtime = Timespec {
            tv_sec: 1_000_000_000,
            tv_nsec: 123_456_789,
        };
        m.atime = Timespec {
            tv_sec: 900_000_000,
            tv_nsec: 1,
        };
        let preserve = Preserve {
            owner: false,
            mode: true,
        };
        apply_path(&file, &m, preserve, || Ok(())).unwrap();
        let got = Meta::lstat(&file).unwrap();
        assert_eq!(got.mode & 0o7777, 0o640);
        assert_eq!(
            (got.mtime.tv_sec, got.mtime.tv_nsec),
            (1_000_000_000, 123_456_789)
        );
        assert_eq!((got.atime.tv_sec, got.atime.tv_nsec), (900_000_000, 1));
    }
}
