//! The read-only base disk of an image: its root filesystem as an EROFS image written
//! straight from its layers ([`super::rootfs`]), built once per manifest digest and shared by
//! every box of that image.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use oci_layers::{Digest, Image, Store};

use super::file::{Partial, TMP_INFIX, remove_tree, sync_dir};
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::liveness::{self, Mode};
use crate::state::{BaseDiskRecord, StateDb, now_ms};

/// How long a process waits for another's hold of an image's base-disk lock: the holder may
/// be building the disk of a large image (unpacking it and running mkfs), which takes
/// minutes, never this long unless it is stuck.
pub const BASE_DISK_LOCK_PATIENCE: Duration = Duration::from_secs(15 * 60);

#[cfg(test)]
/// The read-only EROFS base disk of `image` (made once per image manifest digest, cached at
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
    let bytes = build(store, image, &path, progress)?;
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

/// Builds the disk at `path`: the image's merged root filesystem as EROFS, written straight
/// from its layers; returns its size in bytes.
fn build(store: &Store, image: &Image, path: &Path, progress: bool) -> Result<u64> {
    if let Some(dir) = path.parent() {
        remove_stale_temps(dir, path)?;
    }
    let partial = Partial::create(path, 0)?;
    let written = super::rootfs::write_rootfs(
        store,
        image,
        partial.file(),
        partial.path(),
        store.max_layer_bytes(),
        progress,
    )?;
    partial.commit(true)?;
    Ok(written.bytes)
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
