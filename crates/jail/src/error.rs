//! The crate's one error type.

use std::path::PathBuf;

/// Why a jail could not be prepared. Everything that can fail is done in the parent, before
/// the child exists; a step that fails in the child fails the spawn with its `errno` (and
/// names itself on the child's standard error).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file operation on a path the jail was given failed.
    #[error("{what} {}: {source}", path.display())]
    Path {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The Landlock ruleset could not be built.
    #[error("landlock: {0}")]
    Landlock(String),
    /// A value cannot cross into the child (a NUL byte in a path or variable).
    #[error("{0}")]
    Invalid(String),
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Wraps an I/O error on `path`.
    pub(crate) fn path(
        what: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Path { what, path, source }
    }
}
