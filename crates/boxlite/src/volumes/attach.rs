//! Who holds a named volume: each supervisor using one holds its lock for the box's life,
//! exclusively for a read-write attach (ext4 is not a cluster filesystem: two writers, or a
//! writer and a reader, would corrupt or misread it) and shared for a read-only one (any
//! number of readers of a disk nobody writes).

use std::fs::File;
use std::path::PathBuf;

use crate::error::Result;
use crate::layout::Layout;
use crate::liveness::{self, Mode};
use crate::state::StateDb;

/// The lock file of volume `name`.
pub fn lock_path(layout: &Layout, name: &str) -> PathBuf {
    layout.locks_dir().join(format!("volume-{name}.lock"))
}

/// Takes volume `name`'s lock if nobody holds it in a conflicting way now: shared for
/// `read_only`, else exclusive. `None`: another box holds it.
pub fn try_hold(layout: &Layout, name: &str, read_only: bool) -> Result<Option<File>> {
    let mode = if read_only {
        Mode::Shared
    } else {
        Mode::Exclusive
    };
    match liveness::lock(&lock_path(layout, name), mode, std::time::Duration::ZERO) {
        Ok(file) => Ok(Some(file)),
        Err(crate::error::Error::Busy { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Takes volume `name`'s lock for a box attaching it, or the error naming the boxes that hold
/// it.
pub fn hold(layout: &Layout, db: &StateDb, name: &str, read_only: bool) -> Result<File> {
    match try_hold(layout, name, read_only)? {
        Some(file) => Ok(file),
        None if read_only => Err(super::in_use(db, name, "attached read-write")?),
        None => Err(super::in_use(db, name, "attached")?),
    }
}
