//! Crash consistency of boxes' directories: what a `create` or `rm` killed at any step
//! leaves is found and removed by the next [`Runtime::open`](crate::Runtime::open), and
//! nothing a live process is working on is ever touched.
//!
//! Every decision rests on a box's lock (`supervisor.lock` in its directory), which whoever
//! works on the box holds — its creator, its supervisor, its remover:
//! - `create` makes the box's directory and takes its lock while holding
//!   [`Layout::boxes_lock`] shared (so a sweep never sees the directory unlocked), records
//!   the box *incomplete* (it holds the name; nothing else sees it), makes the disk, marks
//!   the row complete and lets the lock go.
//! - `rm` takes the box's lock (a start racing it waits, then finds no box), removes the
//!   row, renames the directory into the trash ([`Layout::trash_dir`], same filesystem),
//!   lets the lock go and deletes the directory there.
//! - [`recover`] (at open) takes [`Layout::boxes_lock`] exclusively and, for each directory
//!   under `boxes/` without a complete row whose lock it can take now, removes the
//!   incomplete row and moves the directory to the trash; then it empties the trash.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::failpoint;
use crate::layout::{BOX_DIR_ID_LEN, BoxPaths, Layout};
use crate::liveness::{self, Mode};
use crate::state::StateDb;

/// How long making a box's directory waits for a sweep: a sweep holds the lock for one
/// listing and a few renames.
const BOXES_LOCK_PATIENCE: Duration = Duration::from_secs(30);

/// Random bytes in a trash entry's name, after the box directory's own.
const TRASH_NONCE_BYTES: usize = 8;

/// Makes box directory `paths` (which must not exist) and takes the box's lock, which the
/// creator holds until the box's row is complete.
pub fn make_box_dir(layout: &Layout, paths: &BoxPaths) -> Result<File> {
    let locks = layout.locks_dir();
    crate::home::create_private_dir(&locks)?;
    let _making = liveness::lock(&layout.boxes_lock(), Mode::Shared, BOXES_LOCK_PATIENCE)?;
    std::fs::DirBuilder::new()
        .mode(crate::home::PRIVATE_DIR_MODE)
        .create(paths.dir())
        .map_err(|e| Error::io("creating", paths.dir(), e))?;
    match liveness::try_take(&paths.supervisor_lock()) {
        Ok(Some(lock)) => Ok(lock),
        // Nobody else knows the directory yet, so nobody else can hold its lock.
        Ok(None) => Err(Error::Host(format!(
            "{}: the lock of a directory made a moment ago is held",
            paths.dir().display()
        ))),
        Err(e) => {
            let _ = std::fs::remove_dir_all(paths.dir());
            Err(e)
        }
    }
}

/// Removes what crashed creates and removals left: incomplete boxes whose creator is gone,
/// directories under `boxes/` that no box owns, and the trash. Best effort past the
/// listing: an entry that cannot be removed now is left for the next open.
pub fn recover(layout: &Layout, db: &StateDb) -> Result<()> {
    for dir in [layout.locks_dir(), layout.trash_dir()] {
        crate::home::create_private_dir(&dir)?;
    }
    sweep(layout, db)?;
    empty_trash(layout);
    Ok(())
}

/// Moves every directory under `boxes/` without a complete box, and not held, to the trash.
fn sweep(layout: &Layout, db: &StateDb) -> Result<()> {
    // A create between making its directory and locking it holds this shared: skip the
    // sweep then rather than wait, the next open does it.
    let Ok(_sweeping) = liveness::lock(&layout.boxes_lock(), Mode::Exclusive, Duration::ZERO)
    else {
        return Ok(());
    };
    let owners = owners(db)?;
    let boxes = layout.boxes_dir();
    let entries = match std::fs::read_dir(&boxes) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("listing", &boxes, e)),
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str().filter(|n| is_box_dir_name(n)) else {
            continue;
        };
        if entry.file_type().is_ok_and(|t| t.is_dir())
            && !matches!(owners.get(name), Some((_, false)))
        {
            // Moved only: the trash is emptied once creates may go on.
            let _ = sweep_dir(layout, db, name);
        }
    }
    // Incomplete rows whose directory is gone (made by hand, or lost): a creator makes the
    // directory before the row, so theirs is dead.
    for (short, (id, incomplete)) in &owners {
        if *incomplete && !boxes.join(short).exists() {
            let _ = db.remove_incomplete_box(id);
        }
    }
    Ok(())
}

/// Moves the box directory named `short` to the trash, with its incomplete row, if its lock
/// is free and, looked at again under it, no complete box owns it; where it went.
fn sweep_dir(layout: &Layout, db: &StateDb, short: &str) -> Result<Option<PathBuf>> {
    let paths = layout.box_dir(short);
    let Some(_lock) = liveness::try_take(&paths.supervisor_lock())? else {
        // Its creator, supervisor or remover is at work.
        return Ok(None);
    };
    match owners(db)?.get(short) {
        Some((_, false)) => return Ok(None),
        Some((id, true)) => {
            db.remove_incomplete_box(id)?;
        }
        None => {}
    }
    to_trash(layout, paths.dir())
}

/// Removes incomplete box `id` and its directory if its creator is gone (its lock is free);
/// whether it did. For a name held by a creator that died since the last open.
pub fn reclaim(layout: &Layout, db: &StateDb, id: &str) -> Result<bool> {
    if db.box_completeness(id)? != Some(true) {
        return Ok(false);
    }
    let paths = layout.box_dir(id);
    if !paths.dir().exists() {
        return db.remove_incomplete_box(id);
    }
    let short = id.get(..BOX_DIR_ID_LEN).unwrap_or(id);
    let Some(moved) = sweep_dir(layout, db, short)? else {
        return Ok(db.box_completeness(id)?.is_none());
    };
    delete_tree(&moved, None)?;
    Ok(true)
}

/// Removes `dir` (a box's directory whose row is gone, its lock held by the caller): renames
/// it into the trash, then deletes it there.
pub fn discard(layout: &Layout, dir: &Path) -> Result<()> {
    match to_trash(layout, dir)? {
        Some(moved) => delete_tree(&moved, None),
        None => Ok(()),
    }
}

/// Renames `dir` into the trash under a fresh name; where it went (`None`: it was gone).
pub fn to_trash(layout: &Layout, dir: &Path) -> Result<Option<PathBuf>> {
    let trash = layout.trash_dir();
    crate::home::create_private_dir(&trash)?;
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}", random_hex::<TRASH_NONCE_BYTES>()?));
    let target = trash.join(name);
    match std::fs::rename(dir, &target) {
        Ok(()) => Ok(Some(target)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("moving to the trash", dir, e)),
    }
}

/// Deletes a box directory in the trash, one entry after another (another process emptying
/// the trash may be deleting it too: what is gone already is fine). `abort_at`: see
/// [`failpoint`].
pub fn delete_tree(dir: &Path, abort_at: Option<&str>) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("listing", dir, e)),
    };
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("listing", dir, e)),
        };
        let path = entry.path();
        let removed = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        match removed {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("removing", &path, e)),
        }
        failpoint::hit(abort_at, failpoint::RM_PARTIAL);
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("removing", dir, e)),
    }
}

/// Deletes everything in the trash (best effort).
fn empty_trash(layout: &Layout) {
    let Ok(entries) = std::fs::read_dir(layout.trash_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            let _ = delete_tree(&path, None);
        } else {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// Every row by its directory's name: the id, and whether the row is incomplete.
fn owners(db: &StateDb) -> Result<HashMap<String, (String, bool)>> {
    Ok(db
        .all_box_ids()?
        .into_iter()
        .filter_map(|(id, incomplete)| {
            let short = id.get(..BOX_DIR_ID_LEN)?.to_string();
            Some((short, (id, incomplete)))
        })
        .collect())
}

/// Whether `name` is what the runtime names a box directory ([`BOX_DIR_ID_LEN`] lowercase
/// hex digits): anything else under `boxes/` is not ours to remove.
fn is_box_dir_name(name: &str) -> bool {
    name.len() == BOX_DIR_ID_LEN && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `N` bytes from the kernel's random source, as hex.
pub fn random_hex<const N: usize>() -> Result<String> {
    let mut bytes = [0u8; N];
    let mut filled = 0;
    while filled < bytes.len() {
        filled +=
            rustix::rand::getrandom(&mut bytes[filled..], rustix::rand::GetRandomFlags::empty())
                .map_err(|e| Error::io("reading random bytes from", "getrandom", e.into()))?;
    }
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::BoxOptions;
    use crate::state::BoxRecord;

    fn id(n: u8) -> String {
        format!("{n:02x}").repeat(32)
    }

    fn record(id: &str, name: &str) -> BoxRecord {
        BoxRecord::created(
            id.to_string(),
            name.to_string(),
            "sha256:aaaa".into(),
            BoxOptions::new("alpine"),
            1,
        )
    }

    fn home() -> (tempfile::TempDir, Layout, StateDb) {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        std::fs::create_dir_all(layout.boxes_dir()).unwrap();
        let db = StateDb::open(&layout.state_db()).unwrap();
        (dir, layout, db)
    }

    /// A box directory with a disk-like file in it, as a create leaves it.
    fn make_dir(layout: &Layout, id: &str) -> PathBuf {
        let dir = layout.box_dir(id).dir().to_path_buf();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("disk.ext4"), b"disk").unwrap();
        dir
    }

    fn trash_is_empty(layout: &Layout) -> bool {
        std::fs::read_dir(layout.trash_dir())
            .unwrap()
            .next()
            .is_none()
    }

    #[test]
    fn open_removes_what_dead_processes_left_and_nothing_else() {
        let (_tmp, layout, db) = home();
        // A complete box: kept.
        let kept = make_dir(&layout, &id(1));
        db.insert_box(&record(&id(1), "kept")).unwrap();
        // A directory without a row (a create killed before its row, an rm after its row).
        let orphan = make_dir(&layout, &id(2));
        // An incomplete box whose creator is gone.
        let dead = make_dir(&layout, &id(3));
        db.insert_incomplete_box(&record(&id(3), "dead")).unwrap();
        // An incomplete box whose creator is at work (holds the lock).
        let live = make_dir(&layout, &id(4));
        db.insert_incomplete_box(&record(&id(4), "live")).unwrap();
        let creator = liveness::take(&layout.box_dir(&id(4)).supervisor_lock())
            .unwrap()
            .unwrap();
        // An incomplete row without a directory.
        db.insert_incomplete_box(&record(&id(5), "lost")).unwrap();
        // Not a box directory's name: not ours.
        let stranger = layout.boxes_dir().join("notes");
        std::fs::create_dir(&stranger).unwrap();
        // A half-deleted directory in the trash.
        let trashed = layout.trash_dir().join("0606060606060606.ab");
        std::fs::create_dir_all(trashed.join("sub")).unwrap();
        std::fs::write(trashed.join("console.log"), b"x").unwrap();

        recover(&layout, &db).unwrap();

        assert!(kept.join("disk.ext4").exists());
        assert!(!orphan.exists());
        assert!(!dead.exists());
        assert_eq!(db.box_completeness(&id(3)).unwrap(), None);
        assert!(live.exists());
        assert_eq!(db.box_completeness(&id(4)).unwrap(), Some(true));
        assert_eq!(db.box_completeness(&id(5)).unwrap(), None);
        assert!(stranger.exists());
        assert!(trash_is_empty(&layout));

        // Once its creator is gone, the next open removes it too.
        drop(creator);
        recover(&layout, &db).unwrap();
        assert!(!live.exists());
        assert_eq!(db.all_box_ids().unwrap(), [(id(1), false)]);
    }

    #[test]
    fn a_sweep_waits_for_no_create_between_its_directory_and_its_lock() {
        let (_tmp, layout, db) = home();
        std::fs::create_dir_all(layout.locks_dir()).unwrap();
        let orphan = make_dir(&layout, &id(2));
        // As a create holds it from making its directory to locking it.
        let making = liveness::lock(&layout.boxes_lock(), Mode::Shared, Duration::ZERO).unwrap();
        recover(&layout, &db).unwrap();
        assert!(orphan.exists());
        drop(making);
        recover(&layout, &db).unwrap();
        assert!(!orphan.exists());
    }

    #[test]
    fn a_made_directory_is_locked_until_its_creator_lets_go() {
        let (_tmp, layout, db) = home();
        let paths = layout.box_dir(&id(1));
        let creating = make_box_dir(&layout, &paths).unwrap();
        assert!(liveness::is_held(&paths.supervisor_lock()).unwrap());
        recover(&layout, &db).unwrap();
        assert!(paths.dir().exists());
        // Made twice: refused.
        assert!(make_box_dir(&layout, &paths).is_err());
        drop(creating);
        recover(&layout, &db).unwrap();
        assert!(!paths.dir().exists());
    }

    #[test]
    fn a_dead_creators_name_is_reclaimed_a_live_ones_is_not() {
        let (_tmp, layout, db) = home();
        make_dir(&layout, &id(1));
        db.insert_incomplete_box(&record(&id(1), "web")).unwrap();
        let creator = liveness::take(&layout.box_dir(&id(1)).supervisor_lock())
            .unwrap()
            .unwrap();
        assert!(!reclaim(&layout, &db, &id(1)).unwrap());
        drop(creator);
        assert!(reclaim(&layout, &db, &id(1)).unwrap());
        assert!(!layout.box_dir(&id(1)).dir().exists());
        assert!(trash_is_empty(&layout));
        db.insert_box(&record(&id(2), "web")).unwrap();
        // A complete box is never reclaimed.
        make_dir(&layout, &id(2));
        assert!(!reclaim(&layout, &db, &id(2)).unwrap());
        assert!(layout.box_dir(&id(2)).dir().exists());
    }

    #[test]
    fn discard_moves_then_deletes_and_tolerates_a_missing_directory() {
        let (_tmp, layout, _db) = home();
        let dir = make_dir(&layout, &id(1));
        discard(&layout, &dir).unwrap();
        assert!(!dir.exists());
        assert!(trash_is_empty(&layout));
        discard(&layout, &dir).unwrap();
    }
}
