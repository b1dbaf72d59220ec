//! Whether a box's supervisor is alive, told by a lock it holds for its whole life.
//!
//! A pid can be reused and a state row can lie after a crash; a `flock` cannot: the kernel
//! drops it when the holder dies, however it dies. The supervisor holds the box's lock file
//! exclusively; anyone else probes it with a shared, non-blocking attempt.

use std::fs::{File, OpenOptions};
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::fs::FlockOperation;
use rustix::io::Errno;

use crate::error::{Error, Result};

/// How long a starting supervisor retries for its lock: a prober holds it (shared) for
/// microseconds, so anything longer means another live supervisor.
const TAKE_PATIENCE: Duration = Duration::from_secs(2);

/// Takes the lock at `path` for the life of the returned file, or `None` if another
/// process keeps it for longer than [`TAKE_PATIENCE`].
pub fn take(path: &Path) -> Result<Option<File>> {
    let file = open(path)?;
    let deadline = Instant::now() + TAKE_PATIENCE;
    loop {
        match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(Some(file)),
            Err(Errno::WOULDBLOCK) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(Errno::WOULDBLOCK) => return Ok(None),
            Err(e) => return Err(Error::io("locking", path, e.into())),
        }
    }
}

/// Whether some process holds the lock at `path` (a missing file: nobody).
pub fn is_held(path: &Path) -> Result<bool> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io("opening", path, e)),
    };
    match rustix::fs::flock(&file, FlockOperation::NonBlockingLockShared) {
        Ok(()) => Ok(false),
        Err(Errno::WOULDBLOCK) => Ok(true),
        Err(e) => Err(Error::io("probing", path, e.into())),
    }
}

/// Waits up to `patience` for the lock at `path` to be free; whether it is.
pub async fn wait_free(path: &Path, patience: Duration) -> Result<bool> {
    // A patience past what an Instant can hold (`stop -t` with a huge value) waits forever.
    let deadline = Instant::now().checked_add(patience);
    loop {
        if !is_held(path)? {
            return Ok(true);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(false);
        }
        // A probe is one open and flock: cheap enough to poll often, and a stop's latency
        // is this interval.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn open(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .read(true)
        .open(path)
        .map_err(|e| Error::io("opening", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_while_the_file_lives() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        assert!(!is_held(&path).unwrap());
        let held = take(&path).unwrap().unwrap();
        assert!(is_held(&path).unwrap());
        drop(held);
        assert!(!is_held(&path).unwrap());
    }
}
