//! The agent's error type.

use std::fmt;
use std::io;

/// Everything that can go wrong in the agent, sorted by what the host should do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A thing the request names does not exist (a command, a user, a group, a path).
    #[error("{0}")]
    NotFound(String),
    /// The request itself is malformed or contradicts itself.
    #[error("{0}")]
    Invalid(String),
    /// The request needs a privilege the agent does not have.
    #[error("{0}")]
    Denied(String),
    /// Something this agent cannot do where it runs (e.g. mount, unprivileged on a host).
    #[error("{0}")]
    Unsupported(String),
    /// A system call on a path (or another object: a pipe, a pty) failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done, e.g. "creating".
        op: &'static str,
        /// The path or object it was done to, as shown to the user (box paths say
        /// "in the box").
        path: String,
        /// The failure.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// An [`Error::Io`] for `op` on `path` (or the object it was done to), classifying
    /// not-found and permission errors by their errno.
    pub fn io(op: &'static str, path: impl fmt::Display, source: io::Error) -> Self {
        let path = path.to_string();
        match source.kind() {
            io::ErrorKind::NotFound => Error::NotFound(format!("{op} {path}: {source}")),
            io::ErrorKind::PermissionDenied => Error::Denied(format!("{op} {path}: {source}")),
            _ => Error::Io { op, path, source },
        }
    }

    /// The error kind sent to the host in a protocol `error` message.
    pub fn kind(&self) -> protocol::ErrorKind {
        match self {
            Error::NotFound(_) => protocol::ErrorKind::NotFound,
            Error::Invalid(_) => protocol::ErrorKind::Invalid,
            Error::Denied(_) => protocol::ErrorKind::PermissionDenied,
            Error::Unsupported(_) => protocol::ErrorKind::Unsupported,
            Error::Io { .. } => protocol::ErrorKind::Io,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::ErrorKind;

    #[test]
    fn io_errors_name_the_operation_and_the_path_and_keep_their_kinds() {
        let err = Error::io(
            "creating",
            "/etc in the box",
            io::Error::from_raw_os_error(28),
        );
        assert_eq!(err.kind(), ErrorKind::Io);
        assert!(
            err.to_string().starts_with("creating /etc in the box: "),
            "{err}"
        );
        assert!(
            matches!(&err, Error::Io { op: "creating", path, .. } if path == "/etc in the box")
        );
        let err = Error::io("opening", "/x", io::Error::from(io::ErrorKind::NotFound));
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert!(err.to_string().starts_with("opening /x: "), "{err}");
        let err = Error::io(
            "creating",
            "a pipe",
            io::Error::from(io::ErrorKind::PermissionDenied),
        );
        assert_eq!(err.kind(), ErrorKind::PermissionDenied);
        assert!(err.to_string().starts_with("creating a pipe: "), "{err}");
    }
}
