//! Writes an uncompressed EROFS filesystem image straight from one OCI layer's tar stream.
//!
//! A guest kernel mounts each layer's image read-only and merges the layers with overlayfs,
//! so no host inode is ever created per file of the image. OCI whiteouts become what
//! overlayfs reads in a lower layer: `.wh.NAME` a character device 0:0 named `NAME`,
//! `.wh..wh..opq` the xattr `trusted.overlay.opaque=y` on its directory.
//!
//! The tar stream is hostile. Entry names are normalised as the layer extractor does
//! (`./` and repeated slashes dropped, absolute names taken relative to the layer root) and
//! an entry whose name or hard link target has a `..` component is an error, as is one
//! beneath a non-directory of the layer: the image is all-or-nothing, so the caller never
//! gets a layer with entries silently missing. Every size the stream controls is capped by
//! a `MAX_*` constant or an [`Options`] field.
//!
//! Within the layer, entries behave as when extracted in order into an empty directory: a
//! later entry replaces an earlier one at the same path (a directory replacing a directory
//! keeps its children and takes the new metadata), parent directories the layer does not
//! list are made (mode 0755, owned by root), hard links share one inode.
//!
//! File data is written to `out` as it is read, block-aligned, in a data area from the
//! second block on; directories, inodes and xattrs are kept in memory (bounded by
//! [`MAX_METADATA_BYTES`]) and written after it, then the superblock. The caller
//! decompresses the layer (gzip, zstd) before handing it over, and writes to a temporary
//! path it renames into place on success: on error `out` holds a partial image.
//!
//! **Merged mode** ([`Merger`], [`write_merged`]) writes one image of a whole layer stack
//! instead, read from the layers' tar streams bottom first: the root filesystem a container
//! sees, for a guest that mounts one disk and no overlay. Each layer is read as above, then
//! stacked as the `whiteout` crate's rules (the OCI image spec's, which the rootfs
//! assembly follows) say. The image equals overlayfs of the layers' own images but for two
//! things overlayfs cannot know: a directory a layer only implies keeps the lower one's
//! metadata (overlayfs shows the implied one's), and link counts are those of the merged
//! tree (overlayfs shows the lower inode's).
//!
//! - a layer's entry replaces what the layers below left at its path (a non-directory the
//!   whole subtree there), except that a directory over a directory merges: both sets of
//!   children, and the upper directory's metadata (all of it, xattrs included, as overlayfs
//!   shows it) unless the layer only implies the directory, which then keeps the lower one's;
//! - `.wh.NAME` removes `NAME` of the layers below, `.wh..wh..opq` every lower child of its
//!   directory; neither touches the layer's own entries, before or after the marker in the
//!   stream, and neither leaves anything in the image (nothing lies below it);
//! - a hard link may name a file of an earlier layer, unless the layer's markers or
//!   entries read before it hide that path (as extracting in order into one directory
//!   resolves it); the names share the inode, and its link count is that of the final tree.
//!
//! What a later entry or layer replaces or removes was already written: its data stays in
//! the image unreachable, counted in [`Summary::dead_bytes`]. The caps hold for all layers
//! together, and there are at most [`MAX_LAYERS`].
//!
//! ```no_run
//! let tar = std::fs::File::open("/tmp/layer.tar")?;
//! let out = std::fs::File::create("/tmp/layer.erofs.tmp")?;
//! let summary = erofs::write_layer(tar, &out, &erofs::Options::default())?;
//! std::fs::rename("/tmp/layer.erofs.tmp", "/tmp/layer.erofs")?;
//! eprintln!("{} files, {} bytes of image", summary.files, summary.image_bytes);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod archive;
mod error;
mod image;
mod layout;
mod merged;
mod ondisk;
mod options;
mod output;
mod path;
mod pax;
mod source;
mod tree;
mod verify;

pub use error::{Error, ErrorKind, Limit, Result};
pub use merged::{Merger, write_merged};
pub use options::{DEFAULT_MAX_DATA_BYTES, Options, Summary};
pub use verify::{Census, verify};

use std::fs::File;
use std::io::Read;

/// Most layers a merged image may have. Real images stay below 128 (Docker refuses to build
/// a deeper image than 125, its overlay and AUFS drivers' historical stack limit); the
/// guest's overlayfs, which the per-layer images need, mounts at most 500 lowers
/// (`OVL_MAX_STACK`). The cap is that 500: merged mode refuses no stack that could boot
/// layer by layer, and each layer costs only a root node and a merge pass over its own
/// entries, so the entry and memory caps, which count all layers together, bound the rest.
pub const MAX_LAYERS: usize = 500;

/// Most entries one layer (or a merged image's layers together) may hold, the whiteout
/// planner's cap: no real root filesystem
/// comes near it, and it bounds the in-memory tree a flood of empty entries could build.
pub const MAX_ENTRIES: usize = whiteout::MAX_ENTRIES;

/// Longest entry name or hard link target accepted, in bytes: Linux's `PATH_MAX`, as in the
/// layer extractor; nothing longer could be looked up in the guest anyway.
pub const MAX_PATH_LEN: usize = 4096;

/// Longest file name (one path component): EROFS's and Linux's `NAME_MAX`.
pub const MAX_NAME_LEN: usize = 255;

/// Deepest nesting of an entry, as in the layer extractor: real images stay within a few
/// dozen levels, and it bounds the walk each entry costs.
pub const MAX_PATH_DEPTH: usize = 256;

/// Longest symlink target: `PATH_MAX` less its NUL, the most the guest kernel reads back
/// (it reads a symlink into one page).
pub const MAX_SYMLINK_LEN: usize = 4095;

/// Most extended attributes one entry may carry; real layers carry a handful
/// (capabilities, an SELinux label, ACLs).
pub const MAX_XATTRS: usize = 128;

/// Largest extended attribute value: EROFS stores its size in 16 bits (one byte short of
/// the kernel's `XATTR_SIZE_MAX`).
pub const MAX_XATTR_VALUE: usize = u16::MAX as usize;

/// Most bytes of extended attributes one inode may carry as stored (names, values, headers):
/// two values of the largest size, as [`MAX_ENTRY_METADATA`] allows per entry, with room to
/// spare. EROFS counts an inode's xattr area in 4-byte units in 16 bits, so it could hold
/// 256 KiB; no real file needs a fraction of that.
pub const MAX_INODE_XATTR_BYTES: usize = 2 * MAX_XATTR_VALUE + 4096;

/// Most bytes the tar parser may read between two entries (padding, headers, GNU long names,
/// PAX records), the same reasoning and value as the `untar` crate's: 1 MiB of PAX records,
/// two xattr values of the kernel's largest size, a long name and a long link target, and
/// 64 KiB for headers. The `tar` crate buffers long names and PAX headers whole, so without
/// a cap one entry could make it hold gigabytes.
pub const MAX_ENTRY_METADATA: usize = 1024 * 1024 + 2 * 64 * 1024 + 2 * MAX_PATH_LEN + 64 * 1024;

/// Most entries one directory may hold. The largest real directories (a package cache, a
/// font directory) hold tens of thousands; each directory's blocks are built in memory when
/// the image is written, so this bounds that buffer (about 270 MiB at worst).
pub const MAX_DIR_ENTRIES: usize = 1 << 20;

/// Most bytes of metadata kept in memory until the image is written: names, symlink
/// targets, xattrs and per-inode bookkeeping (estimated), replaced entries included. A real
/// root filesystem needs tens of MiB; the cap stops a hostile layer from exhausting memory
/// within [`MAX_ENTRIES`] (4 million long names would otherwise need gigabytes).
pub const MAX_METADATA_BYTES: usize = 512 << 20;

/// Writes the EROFS image of the uncompressed layer tar `tar` to `out`.
///
/// `out` should be a new, empty file: the image is written at offsets `0..image_bytes`
/// (with positional writes, so `out`'s cursor is left alone) and `out` is then truncated to
/// that size. Nothing is fsynced. On error `out` holds a partial image; write to a temporary
/// path and rename on success. The result is deterministic for a given stream and options.
pub fn write_layer<R: Read>(tar: R, out: &File, options: &Options) -> Result<Summary> {
    archive::write(tar, out, options)
}
