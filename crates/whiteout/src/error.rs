//! The crate's error type.

use std::path::PathBuf;

use crate::{MAX_ENTRIES, MAX_PATH_BYTES};

/// Why a layer cannot be planned or applied; every variant names the offending entry.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The entry's path is not relative and normalised.
    #[error(
        "layer entry {path:?} is not a normalised relative path: {reason}; \
         the layer is malformed or its paths were not cleaned before planning"
    )]
    NotNormalised {
        /// The path as given.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The entry's path is longer than [`MAX_PATH_BYTES`].
    #[error("layer entry {path:?} is {len} bytes long, over the limit of {MAX_PATH_BYTES} bytes")]
    PathTooLong {
        /// The path as given.
        path: PathBuf,
        /// Its length in bytes.
        len: usize,
    },
    /// A `.wh.*` entry that cannot be obeyed.
    #[error("whiteout marker {path:?} is invalid: {reason}; the layer is malformed")]
    InvalidMarker {
        /// The marker's path.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An entry lies beneath a marker name, which can only be a plain file.
    #[error("layer entry {path:?} lies beneath the marker {marker:?}, which cannot have children")]
    UnderMarker {
        /// The entry's path.
        path: PathBuf,
        /// The marker among its ancestors.
        marker: PathBuf,
    },
    /// An entry (or marker) lies beneath a path the same layer declares as a non-directory.
    #[error(
        "layer entry {path:?} lies beneath {parent:?}, which the same layer declares \
         as a non-directory; the layer is malformed"
    )]
    UnderNonDirectory {
        /// The entry's path.
        path: PathBuf,
        /// The ancestor declared as a non-directory.
        parent: PathBuf,
    },
    /// A layer, or the stack, holds more than [`MAX_ENTRIES`] entries.
    #[error(
        "more than {MAX_ENTRIES} entries {at}; no real root filesystem is that large, \
         so the image is rejected"
    )]
    TooManyEntries {
        /// Where the limit was hit: "in one layer" or "in the merged stack".
        at: &'static str,
    },
}
