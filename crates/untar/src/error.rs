//! The one error type of this crate.

use std::fmt;
use std::io;

use rustix::io::Errno;

/// The filesystem operation that failed, named in [`Error::Io`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// Opening a directory (the destination or a parent of an entry).
    OpenDir,
    /// `lstat` of an existing entry.
    Stat,
    /// Creating a directory.
    CreateDir,
    /// Creating a regular file.
    CreateFile,
    /// Writing a regular file's content.
    Write,
    /// Creating a symlink.
    CreateSymlink,
    /// Creating a hard link.
    CreateLink,
    /// Creating a device node or FIFO.
    CreateNode,
    /// Removing an existing non-directory that an entry replaces.
    Remove,
    /// Changing owner and group.
    Chown,
    /// Changing permission bits.
    Chmod,
    /// Setting access and modification times.
    SetTimes,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::OpenDir => "open directory",
            Op::Stat => "stat",
            Op::CreateDir => "create directory",
            Op::CreateFile => "create file",
            Op::Write => "write",
            Op::CreateSymlink => "create symlink",
            Op::CreateLink => "create hard link",
            Op::CreateNode => "create special file",
            Op::Remove => "replace",
            Op::Chown => "change owner of",
            Op::Chmod => "change mode of",
            Op::SetTimes => "set times of",
        })
    }
}

/// Which cap an archive went past.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Limit {
    /// [`Policy::max_bytes`](crate::Policy::max_bytes): bytes of file content.
    Bytes,
    /// [`Policy::max_entries`](crate::Policy::max_entries): entries of the archive.
    Entries,
    /// [`MAX_ENTRY_METADATA`](crate::MAX_ENTRY_METADATA): tar headers between two entries.
    EntryMetadata,
}

/// The coarse class of an [`Error`], for callers that map it onto their own kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The archive is malformed or an entry would leave the destination.
    Invalid,
    /// The filesystem or the stream's source failed.
    Io,
    /// The archive went past a cap.
    Limit,
}

/// Everything that can go wrong while unpacking.
///
/// Entry names in messages are relative to the destination, decoded lossily as UTF-8.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An entry would be created (or would link) outside the destination; refused.
    #[error("entry {entry}: {why}; refusing it")]
    Escape {
        /// The entry's name.
        entry: String,
        /// How it would have left the destination.
        why: &'static str,
    },
    /// The stream is not a valid tar archive, or an entry cannot be unpacked as it is.
    #[error("{0}")]
    Invalid(String),
    /// A filesystem operation on one entry failed.
    #[error("cannot {op} {path}: {source}{}", hint(*op, source))]
    Io {
        /// What was being done.
        op: Op,
        /// The entry (or the destination) it was done to.
        path: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Reading the archive from its source failed.
    #[error("reading the archive: {0}")]
    Read(#[source] io::Error),
    /// The archive went past a cap.
    #[error("{}", limit_message(*limit, *max))]
    Limit {
        /// Which cap.
        limit: Limit,
        /// Its value.
        max: u64,
    },
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The error for `op` on `path` (an entry name, or the destination) failing with `errno`.
    pub fn io(op: Op, path: impl Into<String>, errno: Errno) -> Error {
        Error::Io {
            op,
            path: path.into(),
            source: errno.into(),
        }
    }

    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Escape { .. } | Error::Invalid(_) => ErrorKind::Invalid,
            Error::Io { .. } | Error::Read(_) => ErrorKind::Io,
            Error::Limit { .. } => ErrorKind::Limit,
        }
    }

    /// The underlying I/O error, for [`Error::Io`] and [`Error::Read`].
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            Error::Io { source, .. } | Error::Read(source) => Some(source),
            _ => None,
        }
    }
}

fn limit_message(limit: Limit, max: u64) -> String {
    match limit {
        Limit::Bytes => format!(
            "the archive holds more than {max} bytes of file content (Policy::max_bytes); \
             refusing the rest"
        ),
        Limit::Entries => format!(
            "the archive holds more than {max} entries (Policy::max_entries); refusing the rest"
        ),
        Limit::EntryMetadata => format!(
            "the archive has an entry with over {max} bytes of tar headers (long names or PAX \
             records); refusing it"
        ),
    }
}

/// The fix for the common ways an operation fails, appended to the message.
fn hint(op: Op, source: &io::Error) -> &'static str {
    let Some(errno) = source.raw_os_error().map(Errno::from_raw_os_error) else {
        return "";
    };
    match (op, errno) {
        (Op::Chown, Errno::PERM) => " (setting owners needs root; unset Policy::owners)",
        (Op::CreateNode, Errno::PERM) => {
            " (creating device nodes needs root (CAP_MKNOD); unset Policy::special_files)"
        }
        (_, Errno::NOSPC | Errno::DQUOT) => " (the destination filesystem is full)",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_operation_entry_and_fix() {
        let err = Error::io(Op::Chown, "a/b", Errno::PERM);
        let msg = err.to_string();
        assert!(msg.starts_with("cannot change owner of a/b: "), "{msg}");
        assert!(msg.contains("unset Policy::owners"), "{msg}");
        assert_eq!(err.kind(), ErrorKind::Io);
        assert_eq!(
            err.io_error().and_then(io::Error::raw_os_error),
            Some(libc_eperm())
        );
        let err = Error::Limit {
            limit: Limit::Entries,
            max: 3,
        };
        assert_eq!(err.kind(), ErrorKind::Limit);
        assert!(err.to_string().contains("more than 3 entries"), "{err}");
        let err = Error::Escape {
            entry: "../x".into(),
            why: "a name with `..` could leave the destination",
        };
        assert_eq!(err.kind(), ErrorKind::Invalid);
        assert!(err.to_string().starts_with("entry ../x: "), "{err}");
    }

    fn libc_eperm() -> i32 {
        Errno::PERM.raw_os_error()
    }
}
