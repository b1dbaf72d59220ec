//! Advisory whole-file locks (`flock(2)`) that serialise processes sharing one image home.
//!
//! A lock is held by an open file description, so it is released when the [`FileLock`] is
//! dropped, and also when the process dies — no stale lock files to clean up.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};
use rustix::io::Errno;

use crate::error::{Error, Result};

/// A held `flock` on a file; released on drop.
#[derive(Debug)]
pub struct FileLock {
    file: File,
    path: PathBuf,
}

impl FileLock {
    /// Takes an exclusive lock on `path` (created if missing), waiting for other holders.
    pub fn exclusive(path: &Path) -> Result<FileLock> {
        Self::acquire(path, FlockOperation::LockExclusive)
    }

    /// Takes a shared lock on `path` (created if missing), waiting for an exclusive holder.
    pub fn shared(path: &Path) -> Result<FileLock> {
        Self::acquire(path, FlockOperation::LockShared)
    }

    /// Takes an exclusive lock without waiting; `Ok(None)` if another holder has it.
    pub fn try_exclusive(path: &Path) -> Result<Option<FileLock>> {
        match Self::acquire(path, FlockOperation::NonBlockingLockExclusive) {
            Ok(lock) => Ok(Some(lock)),
            Err(Error::Io { source, .. })
                if source.raw_os_error() == Some(Errno::WOULDBLOCK.raw_os_error()) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The locked file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn acquire(path: &Path, op: FlockOperation) -> Result<FileLock> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| Error::io("opening lock file", path, e))?;
        loop {
            match flock(&file, op) {
                Ok(()) => break,
                // A signal interrupted the wait; the lock was not taken, so wait again.
                Err(Errno::INTR) => continue,
                Err(e) => return Err(Error::io("locking", path, e.into())),
            }
        }
        Ok(FileLock {
            file,
            path: path.to_path_buf(),
        })
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // Closing the file releases the lock anyway; unlocking first makes the release
        // independent of other descriptors that may share the open file description.
        let _ = flock(&self.file, FlockOperation::Unlock);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_excludes_and_releases_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let held = FileLock::exclusive(&path).unwrap();
        assert_eq!(held.path(), path);
        // A second open file description conflicts even within one process.
        assert!(FileLock::try_exclusive(&path).unwrap().is_none());
        drop(held);
        assert!(FileLock::try_exclusive(&path).unwrap().is_some());
    }

    #[test]
    fn shared_locks_coexist_but_exclude_writers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let a = FileLock::shared(&path).unwrap();
        let b = FileLock::shared(&path).unwrap();
        assert!(FileLock::try_exclusive(&path).unwrap().is_none());
        drop(a);
        assert!(FileLock::try_exclusive(&path).unwrap().is_none());
        drop(b);
        assert!(FileLock::try_exclusive(&path).unwrap().is_some());
    }

    #[test]
    fn exclusive_waits_for_holder_in_another_thread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let held = FileLock::exclusive(&path).unwrap();
        let p = path.clone();
        let waiter = std::thread::spawn(move || {
            let start = std::time::Instant::now();
            let _l = FileLock::exclusive(&p).unwrap();
            start.elapsed()
        });
        std::thread::sleep(std::time::Duration::from_millis(200));
        drop(held);
        let waited = waiter.join().unwrap();
        assert!(
            waited >= std::time::Duration::from_millis(150),
            "{waited:?}"
        );
    }

    #[test]
    fn missing_directory_is_a_named_error() {
        let err = FileLock::exclusive(Path::new("/nonexistent-dir-xyz/lock")).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent-dir-xyz/lock"),
            "{err}"
        );
    }
}
