//! The one error type of this crate.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use rustix::io::Errno;

/// The operation that failed, named in every error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// `lstat` of a path.
    Stat,
    /// Opening a file or directory for reading.
    Open,
    /// Listing a directory.
    ReadDir,
    /// Reading a symlink's target.
    ReadLink,
    /// Creating a directory.
    CreateDir,
    /// Creating a regular file.
    CreateFile,
    /// Creating a symlink.
    CreateSymlink,
    /// Creating a fifo, device node or socket.
    CreateNode,
    /// Removing a file or directory.
    Remove,
    /// Changing owner and group.
    Chown,
    /// Changing permission bits.
    Chmod,
    /// Setting access and modification times.
    SetTimes,
    /// Listing extended attributes.
    ListXattrs,
    /// Reading an extended attribute.
    GetXattr,
    /// Writing an extended attribute.
    SetXattr,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Stat => "stat",
            Op::Open => "open",
            Op::ReadDir => "list directory",
            Op::ReadLink => "read symlink",
            Op::CreateDir => "create directory",
            Op::CreateFile => "create file",
            Op::CreateSymlink => "create symlink",
            Op::CreateNode => "create special file",
            Op::Remove => "remove",
            Op::Chown => "change owner of",
            Op::Chmod => "change mode of",
            Op::SetTimes => "set times of",
            Op::ListXattrs => "list extended attributes of",
            Op::GetXattr => "read",
            Op::SetXattr => "write",
        })
    }
}

/// Everything that can go wrong while copying or removing a tree.
///
/// Every variant names the path and the operation, and the message carries a fix where one exists.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A filesystem operation on one path failed.
    #[error("cannot {op} {}: {source}{}", path.display(), hint(*op, source))]
    Io {
        /// What was being done.
        op: Op,
        /// The path it was done to.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Reading or writing one extended attribute failed.
    #[error("cannot {op} extended attribute {name} of {}: {source}{}", path.display(), hint(*op, source))]
    Xattr {
        /// [`Op::GetXattr`] or [`Op::SetXattr`].
        op: Op,
        /// The file whose attribute it is.
        path: PathBuf,
        /// The attribute's name, e.g. `security.capability`.
        name: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Moving a regular file's data failed.
    #[error("cannot copy the data of {} to {}: {source}{}", src.display(), dst.display(), hint(Op::Open, source))]
    Data {
        /// The file read from.
        src: PathBuf,
        /// The file written to.
        dst: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Creating a hard link to the first copy of an inode failed.
    #[error("cannot create hard link {} to {}: {source}", link.display(), target.display())]
    Link {
        /// The path the link was to be created at.
        link: PathBuf,
        /// The first copy of the inode it was to point to.
        target: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// [`copy_tree`](crate::copy_tree) was given a source that is not a directory.
    #[error(
        "cannot copy tree {}: not a directory (copy a single entry with Copier::copy_entry)",
        path.display()
    )]
    NotADirectory {
        /// The source path.
        path: PathBuf,
    },
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The error for `op` on `path` failing with `errno`.
    pub(crate) fn io(op: Op, path: &Path, errno: Errno) -> Error {
        Error::Io {
            op,
            path: path.to_path_buf(),
            source: errno.into(),
        }
    }

    /// The errno of the underlying failure, if it came from a syscall.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Io { source, .. }
            | Error::Xattr { source, .. }
            | Error::Data { source, .. }
            | Error::Link { source, .. } => source.raw_os_error(),
            Error::NotADirectory { .. } => None,
        }
    }
}

/// A closure for `map_err` that names `op` and `path`.
pub(crate) fn at(op: Op, path: &Path) -> impl FnOnce(Errno) -> Error + '_ {
    move |errno| Error::io(op, path, errno)
}

/// The fix for the common ways an operation fails, appended to the message.
fn hint(op: Op, source: &io::Error) -> &'static str {
    let Some(errno) = source.raw_os_error().map(Errno::from_raw_os_error) else {
        return "";
    };
    match (op, errno) {
        (Op::Chown, Errno::PERM) => {
            " (changing owners needs root; run as root or set Options::preserve_owner = false)"
        }
        (Op::CreateNode, Errno::PERM) => " (creating device nodes needs root (CAP_MKNOD))",
        (Op::SetXattr, Errno::PERM) => {
            " (trusted.* and security.* attributes need root; run as root or set \
             Options::preserve_xattrs = false)"
        }
        (_, Errno::NOSPC | Errno::DQUOT) => " (the destination filesystem is full)",
        (_, Errno::NAMETOOLONG) => " (the path is longer than PATH_MAX)",
        (
            Op::CreateDir | Op::CreateFile | Op::CreateSymlink | Op::CreateNode,
            Errno::NOENT | Errno::NOTDIR,
        ) => " (create the parent directory first)",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_path_operation_and_fix() {
        let err = Error::io(Op::Chown, Path::new("/x/y"), Errno::PERM);
        let msg = err.to_string();
        assert!(msg.starts_with("cannot change owner of /x/y: "), "{msg}");
        assert!(msg.contains("preserve_owner = false"), "{msg}");
        assert_eq!(err.errno(), Some(libc::EPERM));

        let msg = Error::io(Op::CreateFile, Path::new("/a/b"), Errno::NOENT).to_string();
        assert!(msg.contains("create the parent directory first"), "{msg}");

        let msg = Error::io(Op::Stat, Path::new("/a"), Errno::IO).to_string();
        assert!(msg.starts_with("cannot stat /a: "), "{msg}");
        assert!(
            msg.ends_with("(os error 5)"),
            "no hint for plain I/O errors: {msg}"
        );
    }
}
