//! How big a base disk must be for a tree: data blocks, inodes and ext4's own metadata.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The filesystem block size the disks are made with.
pub const BLOCK: u64 = 4096;
/// The inode size the disks are made with.
const INODE_SIZE: u64 = 256;
/// The smallest base disk: below this ext4's fixed metadata dominates.
pub const MIN_BASE_DISK_BYTES: u64 = 64 << 20;
/// The largest base disk (16 TiB, ext4's limit with 4 KiB blocks and 32-bit block numbers):
/// an image that unpacks to more is not one to boot.
pub const MAX_BASE_DISK_BYTES: u64 = 16 << 40;
/// Blocks per ext4 block group with 4 KiB blocks (one bitmap block covers 32768).
const BLOCKS_PER_GROUP: u64 = 32768;
/// Symlink targets shorter than this live in the inode itself ("fast" symlinks).
const FAST_SYMLINK_MAX: u64 = 60;
/// Inodes mke2fs reserves (bad blocks, root, journal, resize …) plus lost+found.
const RESERVED_INODES: u64 = 16;
/// Fixed slack: superblock copies, group descriptors, lost+found, rounding.
const FIXED_SLACK_BYTES: u64 = 8 << 20;
/// Proportional slack for extent and htree index blocks the estimate does not count, as a
/// divisor of the data size (1/32 ≈ 3 %).
const SLACK_DIVISOR: u64 = 32;

/// What a tree needs, counted by [`measure`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Distinct inodes (hardlinks counted once), the root included.
    pub inodes: u64,
    /// Data blocks of files, directories, long symlinks and external xattr blocks.
    pub blocks: u64,
}

/// Walks `root` without following symlinks and counts what its ext4 copy needs.
pub fn measure(root: &Path) -> Result<Usage> {
    let mut usage = Usage::default();
    let mut seen = HashSet::new();
    let mut stack: Vec<PathBuf> = vec![root.to_path_buf()];
    usage.inodes = 1;
    while let Some(dir) = stack.pop() {
        let mut dirent_bytes = 24; // "." and ".."
        let entries = std::fs::read_dir(&dir).map_err(|e| Error::io("listing", &dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("listing", &dir, e))?;
            let path = entry.path();
            let meta =
                std::fs::symlink_metadata(&path).map_err(|e| Error::io("reading", &path, e))?;
            let name_len = entry.file_name().len() as u64;
            // An ext4 dirent: 8 bytes of header, then the name padded to 4 bytes.
            dirent_bytes += 8 + name_len.div_ceil(4) * 4;
            if meta.nlink() > 1 && !meta.is_dir() && !seen.insert((meta.dev(), meta.ino())) {
                continue;
            }
            usage.inodes += 1;
            usage.blocks += has_xattrs(&path) as u64;
            let kind = meta.file_type();
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() {
                usage.blocks += meta.len().div_ceil(BLOCK);
            } else if kind.is_symlink() && meta.len() >= FAST_SYMLINK_MAX {
                usage.blocks += 1;
            }
        }
        // Directory blocks are filled to about three quarters once hashed (htree).
        usage.blocks += 1 + dirent_bytes.div_ceil(BLOCK * 3 / 4);
    }
    Ok(usage)
}

/// Whether `path` has extended attributes (which may need a block of their own).
fn has_xattrs(path: &Path) -> bool {
    rustix::fs::llistxattr(path, &mut [0u8; 0][..]).is_ok_and(|n| n > 0)
}

/// The disk for `usage`: (bytes, inodes), bytes a whole number of MiB.
pub fn plan(usage: Usage) -> Result<(u64, u64)> {
    let inodes = usage
        .inodes
        .saturating_add(RESERVED_INODES)
        .saturating_add(usage.inodes / 16);
    let data = usage.blocks.saturating_mul(BLOCK);
    let groups = usage.blocks.div_ceil(BLOCKS_PER_GROUP) + 1;
    // Per group: block and inode bitmaps plus a descriptor block, at most.
    let metadata = inodes
        .saturating_mul(INODE_SIZE)
        .saturating_add(groups.saturating_mul(3 * BLOCK));
    let bytes = data
        .saturating_add(metadata)
        .saturating_add(data / SLACK_DIVISOR)
        .saturating_add(FIXED_SLACK_BYTES)
        .max(MIN_BASE_DISK_BYTES);
    let mib = 1 << 20;
    let bytes = bytes.div_ceil(mib).saturating_mul(mib);
    if bytes > MAX_BASE_DISK_BYTES || inodes > u64::from(u32::MAX) {
        return Err(Error::InvalidInput(format!(
            "the image unpacks to {} MiB in {} files, more than a base disk holds ({} GiB, \
             2^32 files)",
            data >> 20,
            usage.inodes,
            MAX_BASE_DISK_BYTES >> 30
        )));
    }
    Ok((bytes, inodes))
}
