//! Hostile-input-safe extraction of one layer tar into a directory.
//!
//! The tar is parsed with the `tar` crate's `Entries`, but every file, directory, link and
//! node is created here, relative to descriptors reached without following symlinks (see
//! `tree`), so no entry can be created, or written through a link, outside the destination.
//! Everything the tar controls in size is capped by the `MAX_*` constants.

mod create;
mod entry;
mod meta;
mod path;
mod pax;
mod record;
mod stream;
mod tree;

use std::io::Read;
use std::path::Path;

use rustix::fs::{Mode, OFlags};

use crate::digest::{Algorithm, Digest};
use crate::error::{Error, Result};
use crate::spec::Compression;

pub use path::{MAX_PATH_DEPTH, MAX_PATH_LEN};
pub use pax::{MAX_XATTR_SIZE, MAX_XATTRS};
pub use stream::MAX_PAX_SIZE;
pub(crate) use tree::remove_path;

/// Most entries one layer may hold.
///
/// The same cap as the whiteout planner's, which would refuse a larger layer anyway; it
/// bounds the in-memory entry list (a hostile tar of empty entries is cheap to make).
pub const MAX_ENTRIES: usize = whiteout::MAX_ENTRIES;

/// Default for [`ExtractOptions::max_bytes`]: the most bytes one layer may unpack to.
///
/// Generous on purpose: real layers are megabytes to a few GiB uncompressed, and the largest
/// in common use (CUDA and ML framework images) stay well below 32 GiB, so 64 GiB refuses no
/// real image. It exists for hostile ones: a few KiB of gzip or zstd can decompress to
/// terabytes, and a tar's sparse entries can declare terabytes of holes, either of which
/// would otherwise fill the disk that holds the layer cache.
pub const DEFAULT_MAX_LAYER_BYTES: u64 = 64 << 30;

/// How to extract a layer.
#[derive(Clone, Debug)]
pub struct ExtractOptions {
    /// Give entries the owners recorded in the tar (needs root); otherwise everything is
    /// owned by the calling user. Defaults to whether we run as root.
    pub preserve_owner: bool,
    /// Algorithm of the diff_id computed over the uncompressed tar.
    pub diff_id_algorithm: Algorithm,
    /// Most bytes the layer may unpack to: the decompressed tar stream, and the data of its
    /// files (a sparse file's holes included), each on its own. Extraction stops with an
    /// error as soon as either passes it. Defaults to [`DEFAULT_MAX_LAYER_BYTES`].
    pub max_bytes: u64,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        ExtractOptions {
            preserve_owner: rustix::process::geteuid().is_root(),
            diff_id_algorithm: Algorithm::Sha256,
            max_bytes: DEFAULT_MAX_LAYER_BYTES,
        }
    }
}

/// Why a layer over its size limit was refused, and how to let it through: the one wording
/// of the stream's and the files' checks. `after` says where, when the stream's check found it.
fn over_limit(limit: u64, after: &str) -> String {
    format!(
        "the layer unpacks to more than {limit} bytes{after}, the limit for one layer; it is a \
         decompression bomb or an unusually large image (a trusted one can be let through by \
         raising the limit: ExtractOptions::max_bytes, Store::with_max_layer_bytes)"
    )
}

/// What extracting one layer produced.
#[derive(Clone, Debug)]
pub struct Extracted {
    /// Digest of the uncompressed tar stream (including what follows its end marker).
    pub diff_id: Digest,
    /// The layer's explicit entries, whiteout markers included; each path once, in the
    /// order of its last occurrence, and only entries that still exist at the end.
    pub entries: Vec<whiteout::LayerEntry>,
    /// Size of the uncompressed tar stream.
    pub bytes: u64,
    /// Filesystem objects created (files, directories, links, nodes, markers).
    pub files: u64,
    /// Entries not extracted: sockets, unknown types, and devices when not privileged.
    pub skipped: u64,
    /// Extended attributes not set for lack of privilege (unprivileged runs only).
    pub skipped_xattrs: u64,
}

/// Extracts the layer `blob` (compressed as `compression`) into the existing directory
/// `dest`, computing its diff_id on the way.
///
/// Nothing is ever created or written outside `dest`: names with `..`, writes through
/// symlinks and hard links to outside are rejected with an [`Error::Entry`] naming the
/// entry. A later entry replaces an earlier one at the same path. Nothing is fsynced.
/// A layer that unpacks to more than [`ExtractOptions::max_bytes`] fails as soon as it
/// passes the limit (with a file's data refused before any of it is written). On any error
/// `dest` may hold the entries made before it: extract into a fresh directory and discard it
/// on error, as the layer cache and the rootfs fallback do.
/// `blob` is read and decompressed on a second thread, overlapping with the creation of
/// entries on this one.
pub fn extract_layer(
    mut blob: impl Read + Send,
    compression: Compression,
    dest: &Path,
    opts: &ExtractOptions,
) -> Result<Extracted> {
    extract_dyn(&mut blob, compression, dest, opts)
}

fn extract_dyn(
    blob: &mut (dyn Read + Send),
    compression: Compression,
    dest: &Path,
    opts: &ExtractOptions,
) -> Result<Extracted> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let root = rustix::fs::open(dest, flags, Mode::empty())
        .map_err(|e| Error::io("opening the extraction directory", dest, e.into()))?;
    let mut extractor = entry::Extractor::new(root, opts, compression);
    let algorithm = opts.diff_id_algorithm;
    let streamed = stream::with_layer_reader(
        blob,
        compression,
        algorithm,
        opts.max_bytes,
        |reader, shared| {
            let mut archive = tar::Archive::new(reader);
            extractor.run(&mut archive, shared)?;
            archive
                .into_inner()
                .finish()
                .map_err(|e| extractor.stream_error(shared, &e, false))
        },
    );
    let (diff_id, bytes) = streamed
        .map_err(|e| Error::Invalid(format!("starting to decompress the layer: {e}")))??;
    extractor.finish(diff_id, bytes)
}

/// Streams the decompressed tar of layer `blob` (compressed as `compression`) through
/// `consume`, for a reader of its own (the EROFS base-disk writer), decompressing on a second
/// thread as [`extract_layer`] does. The stream fails past `max_bytes`; after `consume`, what
/// is left of the stream is read and the whole must hash to `diff_id`, so a damaged or
/// substituted layer is an error however `consume` fared. `what` names the layer in errors.
pub fn stream_layer<T>(
    mut blob: impl Read + Send,
    compression: Compression,
    diff_id: &Digest,
    max_bytes: u64,
    what: &str,
    consume: impl FnOnce(&mut dyn Read) -> T,
) -> Result<T> {
    let streamed = stream::with_layer_reader(
        &mut blob,
        compression,
        diff_id.algorithm(),
        max_bytes,
        |mut reader, shared| {
            let value = consume(&mut reader);
            let finished = reader.finish();
            (
                value,
                finished,
                shared.failure() == stream::Failure::TooLarge,
            )
        },
    );
    let (value, finished, too_large) =
        streamed.map_err(|e| Error::Invalid(format!("starting to decompress {what}: {e}")))?;
    if too_large {
        return Err(Error::Invalid(format!(
            "{what}: {}",
            over_limit(max_bytes, "")
        )));
    }
    let (got, _) = finished.map_err(|e| Error::Invalid(format!("reading {what}: {e}")))?;
    if &got != diff_id {
        return Err(Error::Invalid(format!(
            "{what} decompresses to {got}, not its diff_id {diff_id}: the blob is damaged or \
             not this image's layer"
        )));
    }
    Ok(value)
}
