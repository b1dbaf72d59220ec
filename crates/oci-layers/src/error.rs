//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong while importing, storing, extracting or assembling images.
///
/// Messages name the thing (image, blob, entry, path) and, where there is one, the fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error on a named path.
    #[error("{context} {path}: {source}")]
    Io {
        /// What was being done, e.g. "reading blob".
        context: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A digest string that is not `<algorithm>:<hex>` with a supported algorithm.
    #[error("invalid digest {digest:?}: {reason}")]
    InvalidDigest {
        /// The string as given.
        digest: String,
        /// Why it is not valid.
        reason: String,
    },
    /// Content whose hash is not the digest it was named by.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was being verified (blob, layer diff_id …).
        what: String,
        /// The digest it should have.
        expected: String,
        /// The digest it has.
        actual: String,
    },
    /// A media type this crate does not handle where it was found.
    #[error("{what}: unsupported media type {media_type:?}")]
    UnsupportedMediaType {
        /// What carried it (layer, manifest, config …), with the image or blob where known.
        what: String,
        /// The media type as given (shortened if very long).
        media_type: String,
    },
    /// A name or digest prefix that matches no imported image.
    #[error("no image named {name}; see `boxlite image ls`")]
    UnknownImage {
        /// The name or digest prefix as given.
        name: String,
    },
    /// A layer tar entry that cannot be extracted (safely, or at all), and why.
    #[error("entry {entry:?} {reason}")]
    Entry {
        /// The entry's name as in the tar (shortened if very long).
        entry: String,
        /// Why, e.g. "escapes the layer directory".
        reason: String,
    },
    /// A failure while extracting or caching one layer, with the layer named.
    #[error("{layer}: {source}")]
    Layer {
        /// The layer, e.g. "image foo layer 2/5 (sha256:…)".
        layer: String,
        /// What went wrong.
        #[source]
        source: Box<Error>,
    },
    /// Catch-all for a problem with a specific image, blob or input, with the details spelled out.
    #[error("{0}")]
    Invalid(String),
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with what was being done and to which path.
    pub fn io(context: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            context,
            path: path.into(),
            source,
        }
    }
}
