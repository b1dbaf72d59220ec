//! The one error type of this crate.

use std::io;

/// Which cap a layer (or a merged image's layers together) went past.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Limit {
    /// [`MAX_LAYERS`](crate::MAX_LAYERS): layers of a merged image.
    Layers,
    /// [`MAX_ENTRIES`](crate::MAX_ENTRIES): entries of the layer.
    Entries,
    /// [`MAX_ENTRY_METADATA`](crate::MAX_ENTRY_METADATA): tar headers between two entries.
    EntryMetadata,
    /// [`MAX_METADATA_BYTES`](crate::MAX_METADATA_BYTES): metadata kept in memory.
    Metadata,
    /// [`MAX_DIR_ENTRIES`](crate::MAX_DIR_ENTRIES): entries of one directory.
    DirEntries,
    /// [`Options::max_data_bytes`](crate::Options::max_data_bytes): bytes of file data.
    DataBytes,
    /// EROFS block addresses are 32 bits: an image of 4 KiB blocks holds at most 16 TiB.
    ImageSize,
}

/// The coarse class of an [`Error`], for callers that map it onto their own kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The archive is malformed, or an entry cannot be represented as it is.
    Invalid,
    /// The layer went past a cap.
    Limit,
    /// Reading the stream or writing the image failed.
    Io,
}

/// Everything that can go wrong while writing a layer's image.
///
/// Entry names in messages are decoded lossily as UTF-8 and shortened when very long.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The stream is not a valid (or is a truncated) tar archive.
    #[error("the layer is not a valid tar archive{after}: {why}")]
    Invalid {
        /// Where: empty, or " (in entry …)" / " (after entry …)".
        after: String,
        /// What the parser said.
        why: String,
    },
    /// One entry is refused; the whole layer with it.
    #[error("layer entry {entry:?} {reason}; the layer is malformed or hostile")]
    Entry {
        /// The entry's name.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The layer went past a cap.
    #[error("{}", limit_message(*limit, *max))]
    Limit {
        /// Which cap.
        limit: Limit,
        /// Its value.
        max: u64,
    },
    /// Reading the layer from its source failed.
    #[error("reading the layer: {0}")]
    Read(#[source] io::Error),
    /// Writing the image failed.
    #[error("writing the image: {0}")]
    Write(#[source] io::Error),
    /// [`verify`](crate::verify) found the image malformed.
    #[error("the image is malformed: {0}")]
    Corrupt(String),
    /// One layer of a merged image failed (see [`Merger::add_layer`](crate::Merger::add_layer)).
    #[error("layer {index} of the image (0 = bottom): {source}")]
    Layer {
        /// Its index, 0 for the bottom layer.
        index: usize,
        /// What went wrong in it.
        source: Box<Error>,
    },
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Invalid { .. } | Error::Entry { .. } | Error::Corrupt(_) => ErrorKind::Invalid,
            Error::Limit { .. } => ErrorKind::Limit,
            Error::Read(_) | Error::Write(_) => ErrorKind::Io,
            Error::Layer { source, .. } => source.kind(),
        }
    }

    /// The error itself, without the [`Error::Layer`] that names its layer.
    pub fn innermost(&self) -> &Error {
        match self {
            Error::Layer { source, .. } => source.innermost(),
            other => other,
        }
    }

    /// The error for going past `limit`, whose value is `max`.
    pub(crate) fn limit(limit: Limit, max: impl TryInto<u64>) -> Error {
        Error::Limit {
            limit,
            max: max.try_into().unwrap_or(u64::MAX),
        }
    }
}

fn limit_message(limit: Limit, max: u64) -> String {
    match limit {
        Limit::Layers => format!("the image has more than {max} layers (MAX_LAYERS)"),
        Limit::Entries => format!(
            "the layer holds more than {max} entries (MAX_ENTRIES; a merged image's layers \
             count together)"
        ),
        Limit::EntryMetadata => format!(
            "a layer entry has more than {max} bytes of tar headers, long names and PAX records \
             (MAX_ENTRY_METADATA)"
        ),
        Limit::Metadata => format!(
            "the layer's names, links and xattrs need more than {max} bytes of memory \
             (MAX_METADATA_BYTES; a merged image's layers count together)"
        ),
        Limit::DirEntries => {
            format!("a directory of the layer holds more than {max} entries (MAX_DIR_ENTRIES)")
        }
        Limit::DataBytes => format!(
            "the layer holds more than {max} bytes of file data (Options::max_data_bytes; a \
             merged image's layers count together); it is a decompression bomb or an unusually \
             large image"
        ),
        Limit::ImageSize => {
            format!("the image would need more than {max} blocks, the most EROFS can address")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_messages() {
        let e = Error::limit(Limit::Entries, 3usize);
        assert_eq!(e.kind(), ErrorKind::Limit);
        assert!(e.to_string().contains("more than 3 entries"), "{e}");
        let e = Error::Entry {
            entry: "a/../b".into(),
            reason: "has a `..` component".into(),
        };
        assert_eq!(e.kind(), ErrorKind::Invalid);
        assert!(
            e.to_string().starts_with("layer entry \"a/../b\" has"),
            "{e}"
        );
        assert_eq!(Error::Write(io::Error::other("x")).kind(), ErrorKind::Io);
        let e = Error::Layer {
            index: 2,
            source: Box::new(Error::limit(Limit::DataBytes, 9u64)),
        };
        assert_eq!(e.kind(), ErrorKind::Limit);
        assert!(e.to_string().starts_with("layer 2 of the image"), "{e}");
        assert!(matches!(e.innermost(), Error::Limit { .. }));
    }
}
