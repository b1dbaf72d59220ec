//! The agent's error type.

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
    /// A system call failed; `what` names the operation and the object.
    #[error("{what}: {source}")]
    Io {
        /// The operation and the object it was applied to.
        what: String,
        /// The failure.
        source: io::Error,
    },
}

impl Error {
    /// An [`Error::Io`] for `what`, classifying not-found and permission errors by their errno.
    pub fn io(what: impl Into<String>, source: io::Error) -> Self {
        let what = what.into();
        match source.kind() {
            io::ErrorKind::NotFound => Error::NotFound(format!("{what}: {source}")),
            io::ErrorKind::PermissionDenied => Error::Denied(format!("{what}: {source}")),
            _ => Error::Io { what, source },
        }
    }

    /// The error kind sent to the host in a protocol `error` message.
    pub fn kind(&self) -> protocol::ErrorKind {
        match self {
            Error::NotFound(_) => protocol::ErrorKind::NotFound,
            Error::Invalid(_) => protocol::ErrorKind::Invalid,
            Error::Denied(_) => protocol::ErrorKind::PermissionDenied,
            Error::Io { .. } => protocol::ErrorKind::Io,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
