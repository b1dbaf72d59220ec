//! The read-only base disk of an image: its rootfs as an ext4 image, built once per manifest
//! digest and shared by every box of that image.

use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use oci_layers::{Digest, Image, Store};
use rustix::io::Errno;

use super::file::{Partial, ScratchDir, TMP_INFIX, remove_tree, sync_dir};
use super::{mkfs, size};
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::liveness::{self, Mode};
use crate::state::{BaseDiskRecord, StateDb, now_ms};

/// The label of every base disk.
pub const BASE_DISK_LABEL: &str = "boxlite-base";
/// The marker xattrs oci-layers keeps on an unpacked rootfs directory; ours, not the image's.
const ROOTFS_MARKER_PREFIX: &str = "user.boxlite.rootfs";
/// How long a process waits for another's hold of an image's base-disk lock: the holder may
/// be building the disk of a large image (unpacking it and running mkfs), which takes
/// minutes, never this long unless it is stuck.
pub const BASE_DISK_LOCK_PATIENCE: Duration = Duration::from_secs(15 * 60);
/// Longest xattr name list read from the rootfs directory (the kernel's `XATTR_LIST_MAX`).
const MAX_XATTR_LIST: usize = 64 << 10;

#[cfg(test)]
/// The read-only ext4 base disk of `image` (made once per image manifest digest, cached at
/// `layout.base_disk(digest)`, shared by all boxes of that image). Returns its path.
///
/// A per-digest lock keeps two processes from building it twice or seeing half of it.
pub fn ensure_base_disk(
    store: &Store,
    layout: &Layout,
    db: &StateDb,
    image: &Image,
    progress: bool,
) -> Result<PathBuf> {
    let _lock = lock_base_disk(layout, &image.record.manifest_digest)?;
    ensure_base_disk_locked(store, layout, db, image, progress)
}

/// [`ensure_base_disk`] for a caller that holds [`lock_base_disk`] already (to keep it
/// until its box row references the disk, so an `image rm` cannot take the disk between).
pub fn ensure_base_disk_locked(
    store: &Store,
    layout: &Layout,
    db: &StateDb,
    image: &Image,
    progress: bool,
) -> Result<PathBuf> {
    let digest = &image.record.manifest_digest;
    let key = digest.to_string();
    let path = layout.base_disk(digest);
    let recorded = db.base_disk(&key)?.is_some();
    if recorded && path.is_file() {
        return Ok(path);
    }
    // A file without a record (its build was interrupted after the rename) or a record
    // without a file: build again from scratch rather than trust either half.
    remove_file_if_present(&path)?;
    let bytes = build(store, layout, image, &path, progress)?;
    let record = BaseDiskRecord {
        digest: key,
        image_name: image.record.name.clone(),
        path: path.clone(),
        size: bytes,
        created_at_ms: now_ms(),
    };
    if let Err(e) = db.put_base_disk(&record) {
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    Ok(path)
}

/// Takes the lock that guards the base disk of `digest` (held while it is built, and to be
/// held by whoever removes it), waiting up to [`BASE_DISK_LOCK_PATIENCE`] for another
/// holder; past it, [`Error::Busy`] names the lock file and its holder.
pub fn lock_base_disk(layout: &Layout, digest: &Digest) -> Result<File> {
    liveness::lock(
        &base_disk_lock(layout, digest)?,
        Mode::Exclusive,
        BASE_DISK_LOCK_PATIENCE,
    )
}

/// [`lock_base_disk`] if no one holds it now, else `None`.
pub fn try_lock_base_disk(layout: &Layout, digest: &Digest) -> Result<Option<File>> {
    liveness::try_take(&base_disk_lock(layout, digest)?)
}

/// The lock file of the base disk of `digest` (its directory made if missing).
fn base_disk_lock(layout: &Layout, digest: &Digest) -> Result<PathBuf> {
    let dir = layout.locks_dir();
    crate::home::create_private_dir(&dir)?;
    Ok(dir.join(format!(
        "base-disk-{}-{}.lock",
        digest.algorithm().name(),
        digest.hex()
    )))
}

/// The name prefix of a base-disk build's scratch tree under the home's `tmp/`, followed by
/// `<algorithm>-<hex>`.
pub const SCRATCH_PREFIX: &str = "base-";

#[cfg(test)]
/// Removes the base disk of `digest`, file and record (for `image rm`; the caller checks
/// that no box uses it). Absent already: nothing to do.
pub fn remove_base_disk(layout: &Layout, db: &StateDb, digest: &Digest) -> Result<()> {
    let _lock = lock_base_disk(layout, digest)?;
    remove_base_disk_locked(layout, db, digest)
}

/// [`remove_base_disk`] for a caller that holds [`lock_base_disk`] already.
pub fn remove_base_disk_locked(layout: &Layout, db: &StateDb, digest: &Digest) -> Result<()> {
    let path = layout.base_disk(digest);
    remove_file_if_present(&path)?;
    db.remove_base_disk(&digest.to_string())
}

/// Builds the disk at `path`; returns its size in bytes.
fn build(
    store: &Store,
    layout: &Layout,
    image: &Image,
    path: &Path,
    progress: bool,
) -> Result<u64> {
    let digest = &image.record.manifest_digest;
    let mkfs = mkfs::program()?;
    if let Some(dir) = path.parent() {
        remove_stale_temps(dir, path)?;
    }
    // One scratch tree per digest: the lock makes it ours alone, and a tree a crashed build
    // left behind is removed before this one starts.
    let scratch = ScratchDir::create(layout.tmp_dir().join(format!(
        "{SCRATCH_PREFIX}{}-{}",
        digest.algorithm().name(),
        digest.hex()
    )))?;
    let rootfs = scratch.path().join("rootfs");
    store.unpack(&digest.to_string(), &rootfs, progress)?;
    prepare_root(&rootfs)?;
    let (bytes, inodes) = size::plan(size::measure(&rootfs)?)?;
    let partial = Partial::create(path, bytes)?;
    let bytes = format_tree(&mkfs, &rootfs, &partial, bytes, inodes)?;
    partial.commit(true)?;
    Ok(bytes)
}

/// Formats `partial` as a read-only ext4 image of `tree`, `bytes` big with `inodes` inodes;
/// returns the size it ended up with.
pub(super) fn format_tree(
    mkfs: &Path,
    tree: &Path,
    partial: &Partial,
    mut bytes: u64,
    mut inodes: u64,
) -> Result<u64> {
    // The estimate is generous, but a tree of many xattrs or huge directories could beat it:
    // one retry at twice the size, then give up with mkfs's words.
    let mut retried = false;
    loop {
        let mut args = mkfs::common_args(BASE_DISK_LABEL);
        args.extend(
            [
                "-O",
                "^has_journal,^resize_inode",
                "-E",
                "root_owner=0:0",
                "-N",
                &inodes.to_string(),
                "-d",
            ]
            .map(Into::into),
        );
        args.push(tree.as_os_str().into());
        args.push(partial.path().into());
        args.push(format!("{}k", bytes / 1024).into());
        match mkfs::run(mkfs, &args, partial.target()) {
            Ok(()) => break,
            Err(e) if !retried && mkfs::ran_out_of_space(&e) => {
                retried = true;
                bytes = bytes.saturating_mul(2).min(size::MAX_BASE_DISK_BYTES);
                inodes = inodes.saturating_mul(2).min(u64::from(u32::MAX));
                partial.set_len(bytes)?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(bytes)
}

/// Makes the rootfs directory the image's root as the guest must see it: without the
/// unpacker's marker xattrs (mkfs copies the root's xattrs), mode 0755, owned by root.
fn prepare_root(rootfs: &Path) -> Result<()> {
    let mut names = vec![0u8; MAX_XATTR_LIST];
    let len = match rustix::fs::llistxattr(rootfs, &mut names[..]) {
        Ok(n) => n,
        Err(Errno::NOTSUP) => 0,
        Err(e) => {
            return Err(Error::io("listing xattrs of", rootfs, e.into()));
        }
    };
    for name in names[..len].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        if name.starts_with(ROOTFS_MARKER_PREFIX.as_bytes()) {
            match rustix::fs::lremovexattr(rootfs, name) {
                Ok(()) | Err(Errno::NODATA) => {}
                Err(e) => {
                    return Err(Error::io("removing xattrs of", rootfs, e.into()));
                }
            }
        }
    }
    std::fs::set_permissions(rootfs, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| Error::io("setting the mode of", rootfs, e))?;
    // mkfs is told root_owner=0:0 as well; chown matters only should a future mkfs copy the
    // source directory's owner, and only root can do it.
    if rustix::process::geteuid().is_root() {
        std::os::unix::fs::lchown(rootfs, Some(0), Some(0))
            .map_err(|e| Error::io("chowning", rootfs, e))?;
    }
    Ok(())
}

/// Removes temporary files a crashed build of `target` left beside it (the caller holds the
/// lock, so no live build owns them).
fn remove_stale_temps(dir: &Path, target: &Path) -> Result<()> {
    let Some(name) = target.file_name() else {
        return Ok(());
    };
    let mut prefix = name.to_os_string();
    prefix.push(TMP_INFIX);
    let prefix = prefix.as_encoded_bytes();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("listing", dir, e)),
    };
    for entry in entries.flatten() {
        if entry.file_name().as_encoded_bytes().starts_with(prefix) {
            remove_tree(&entry.path())?;
        }
    }
    Ok(())
}

/// Removes a file, syncing its directory; absent is fine.
fn remove_file_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => path.parent().map_or(Ok(()), sync_dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("removing", path, e)),
    }
}
