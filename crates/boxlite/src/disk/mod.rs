//! Disks: the read-only base disk of an image (EROFS, written straight from the image's layers
//! by crate `erofs`), and the writable disks of boxes and named volumes (sparse ext4 made with
//! `mkfs.ext4`).
//!
//! Every disk is built under a temporary name beside its final path and renamed into place
//! only once complete and synced, so a crash or an error never leaves a half disk where a
//! reader looks.

mod base;
mod file;
mod mkfs;
mod rootfs;
#[cfg(test)]
mod tests;

use std::path::Path;

pub use base::{
    SCRATCH_PREFIX, ensure_base_disk_locked, lock_base_disk, remove_base_disk_locked,
    try_lock_base_disk,
};
#[cfg(test)]
pub use base::{ensure_base_disk, remove_base_disk};
pub use file::{ScratchDir, remove_tree, sync_dir};

use crate::error::{Error, Result};
use crate::options::{MAX_DISK_SIZE_MIB, MIN_DISK_SIZE_MIB};

/// The label of every box disk (so the guest can find it by label).
pub const BOX_DISK_LABEL: &str = "boxlite-box";

/// Creates the writable disk of a box: a sparse file of `size_mib` MiB formatted ext4, at
/// `path` (built at a temporary name beside it, then renamed; an existing `path` is never
/// replaced).
pub fn create_box_disk(path: &Path, size_mib: u64) -> Result<()> {
    if !(MIN_DISK_SIZE_MIB..=MAX_DISK_SIZE_MIB).contains(&size_mib) {
        return Err(Error::InvalidInput(format!(
            "disk size {size_mib} MiB: use {MIN_DISK_SIZE_MIB} MiB to {} GiB",
            MAX_DISK_SIZE_MIB >> 10
        )));
    }
    create_ext4_disk(path, size_mib, BOX_DISK_LABEL)
}

/// Creates a sparse ext4 disk of `size_mib` MiB labelled `label` at `path` (built at a
/// temporary name beside it, then renamed; an existing `path` is never replaced).
pub fn create_ext4_disk(path: &Path, size_mib: u64, label: &str) -> Result<()> {
    let mkfs = mkfs::program()?;
    let partial = file::Partial::create(path, size_mib << 20)?;
    let mut args = mkfs::common_args(label);
    // Lazy init leaves inode tables and the journal to be zeroed on first use (and on a
    // sparse file, discarding already made them zero), so formatting writes a few MiB of
    // metadata, not the size of the disk.
    args.extend(
        [
            "-E",
            "lazy_itable_init=1,lazy_journal_init=1,root_owner=0:0",
        ]
        .map(Into::into),
    );
    args.push(partial.path().into());
    mkfs::run(&mkfs, &args, path)?;
    partial.commit(false)?;
    Ok(())
}
