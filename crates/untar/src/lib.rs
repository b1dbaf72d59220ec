//! Unpacks a tar stream beneath a directory, treating the stream as hostile.
//!
//! Every entry is created relative to a descriptor of the destination directory, and every
//! lookup below it is an `openat2` with `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`: a name with
//! `..`, a directory reached through a symlink that leads elsewhere (absolute symlinks
//! included), or a hard link to something outside the destination is refused instead of
//! written outside it. Absolute entry names are taken relative to the destination (as `tar`
//! does by default). Symlinked parents that stay beneath the destination are followed, so
//! merged-`/usr` trees unpack as they do with `tar`.
//!
//! An existing file is replaced by an entry of the same name; an existing directory is kept
//! (and merged into) when the entry is a directory, and is an error otherwise. Directories get
//! their final mode and time in a last pass, once their contents are in place (so a read-only
//! directory can still be filled). Extended attributes are not restored.
//!
//! What else is restored is the [`Policy`]'s choice: [`Policy::guest`] is the box agent's
//! upload (owners when root, set-id bits, device nodes and FIFOs), [`Policy::host`] is for a
//! stream a guest sent the host (no special files, no set-id bits, no owners, capped bytes
//! and entries). Sizes the stream controls are capped by the `MAX_*` constants whatever the
//! policy.
//!
//! ```no_run
//! let archive = std::fs::File::open("/tmp/from-the-box.tar")?;
//! let report = untar::unpack_into("/tmp/out".as_ref(), archive, &untar::Policy::host())?;
//! for name in &report.special_names {
//!     eprintln!("skipped special file {name:?}");
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod meter;
mod policy;
mod unpack;

#[cfg(test)]
mod testutil;

pub use error::{Error, ErrorKind, Limit, Op, Result};
pub use policy::{HOST_MAX_BYTES, HOST_MAX_ENTRIES, Policy};
pub use unpack::{MAX_REPORTED_NAMES, Report, unpack, unpack_into};

/// The longest entry name or link target accepted: Linux's `PATH_MAX`, as nothing longer can
/// be created or looked up in one call anyway.
pub const MAX_PATH_LEN: usize = 4096;

/// The kernel's `XATTR_SIZE_MAX`: no extended attribute value can be larger, so a PAX record
/// carrying one needs no more.
const XATTR_SIZE_MAX: usize = 64 * 1024;

/// Most bytes the tar parser may read between two entries: block padding, headers, GNU long
/// name and long link entries, the PAX header and GNU sparse maps.
///
/// The `tar` crate buffers long names and PAX headers whole, so without a cap an archive
/// could make it hold gigabytes in memory. One value serves every user of this crate: it is
/// sized for the image extractor (`oci-layers`), which restores extended attributes from PAX
/// records and so needs the most: 1 MiB of PAX records for paths and the like, plus two
/// values of the largest size the kernel accepts (an ACL and a capability, say), plus a long
/// name and a long link target of [`MAX_PATH_LEN`] each, plus 64 KiB for headers, padding and
/// sparse maps. Real archives use a few KiB; the unpacker here, which ignores extended
/// attributes, is as safe with the larger cap (about 1.2 MiB, once per entry).
pub const MAX_ENTRY_METADATA: usize =
    1024 * 1024 + 2 * XATTR_SIZE_MAX + 2 * MAX_PATH_LEN + 64 * 1024;

/// Most bytes of directory paths kept for the final pass that restores directory modes and
/// times; past it, later directories keep the mode they were created with (the archive's,
/// plus owner `rwx`) and their time. Bounds memory for archives with millions of directories.
pub const MAX_PENDING_DIR_BYTES: usize = 16 * 1024 * 1024;
