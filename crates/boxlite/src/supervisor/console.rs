//! The box's console log, written by the supervisor alone: the guest's serial console (read
//! from the VM's end of a socket pair) and the main command's output. A guest that writes
//! forever must not fill the host's disk, so the log is capped: past its limit the file
//! becomes `console.log.1` (replacing an older one) and a new one starts, so at most twice
//! the limit is ever kept.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::io::AsyncReadExt;

use crate::error::{Error, Result};

/// The default limit of one console log file: a boot and a long run of a chatty program fit
/// many times over, and two of them are small beside a box's disk.
pub const DEFAULT_CONSOLE_LOG_LIMIT: u64 = 16 << 20;

/// The smallest limit accepted: a boot's messages fit.
pub const MIN_CONSOLE_LOG_LIMIT: u64 = 64 << 10;

/// How much of the console the pump reads at once.
const PUMP_CHUNK: usize = 64 << 10;

/// A capped, rotated log shared by everything that writes to the box's console.
#[derive(Clone)]
pub struct ConsoleLog {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    path: PathBuf,
    limit: u64,
    file: Option<File>,
    len: u64,
    /// How many times the log was rotated by this supervisor.
    rotations: u64,
}

/// A place in the log: what a boot error quotes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    rotations: u64,
    offset: u64,
}

impl ConsoleLog {
    /// The log at `path`, appended to, rotated past `limit` bytes.
    pub fn open(path: &Path, limit: u64) -> Result<ConsoleLog> {
        let limit = limit.max(MIN_CONSOLE_LOG_LIMIT);
        let file = open_append(path)?;
        let len = file.metadata().map_or(0, |m| m.len());
        Ok(ConsoleLog {
            inner: Arc::new(Mutex::new(Inner {
                path: path.to_path_buf(),
                limit,
                file: Some(file),
                len,
                rotations: 0,
            })),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while writing leaves at worst a short write: the log is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `bytes`, rotating as the limit requires; errors are dropped (a log that
    /// cannot be written must not stop the box).
    pub fn append(&self, mut bytes: &[u8]) {
        let mut inner = self.lock();
        while !bytes.is_empty() {
            if inner.len >= inner.limit && inner.rotate().is_err() {
                return;
            }
            let room = usize::try_from(inner.limit - inner.len).unwrap_or(usize::MAX);
            let (now, later) = bytes.split_at(room.min(bytes.len()));
            let Some(file) = inner.file.as_mut() else {
                return;
            };
            if file.write_all(now).is_err() {
                return;
            }
            inner.len += now.len() as u64;
            bytes = later;
        }
    }

    /// Where the log ends now.
    pub fn mark(&self) -> Mark {
        let inner = self.lock();
        Mark {
            rotations: inner.rotations,
            offset: inner.len,
        }
    }

    /// Where in the current file `mark` is (0 when the log rotated since).
    pub fn offset_of(&self, mark: Mark) -> u64 {
        if self.lock().rotations == mark.rotations {
            mark.offset
        } else {
            0
        }
    }

    /// Copies what `console` (the supervisor's end of the serial console) delivers into the
    /// log until the VM closes it.
    pub async fn pump(self, console: std::os::unix::net::UnixStream) {
        if console.set_nonblocking(true).is_err() {
            return;
        }
        let Ok(mut console) = tokio::net::UnixStream::from_std(console) else {
            return;
        };
        let mut buf = vec![0u8; PUMP_CHUNK];
        loop {
            match console.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let log = self.clone();
                    let chunk = buf[..n].to_vec();
                    // A file write: off the supervisor's one async thread.
                    let _ = tokio::task::spawn_blocking(move || log.append(&chunk)).await;
                }
            }
        }
    }
}

impl Inner {
    /// Moves the full file aside as `<path>.1` and starts a new one.
    fn rotate(&mut self) -> Result<()> {
        self.file = None;
        let old = rotated(&self.path);
        std::fs::rename(&self.path, &old).map_err(|e| Error::io("rotating", &self.path, e))?;
        self.file = Some(open_append(&self.path)?);
        self.len = 0;
        self.rotations += 1;
        Ok(())
    }
}

/// Where a rotated console log goes.
pub fn rotated(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".1");
    PathBuf::from(name)
}

fn open_append(path: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(crate::home::PRIVATE_FILE_MODE)
        .open(path)
        .map_err(|e| Error::io("opening", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_rotates_once_past_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        let log = ConsoleLog::open(&path, MIN_CONSOLE_LOG_LIMIT).unwrap();
        let start = log.mark();
        assert_eq!(log.offset_of(start), 0);
        log.append(b"boot\n");
        let mark = log.mark();
        assert_eq!(log.offset_of(mark), 5);
        // Five limits' worth in odd-sized pieces: two files remain, neither over the limit.
        let piece = vec![b'x'; 10_000];
        for _ in 0..(5 * MIN_CONSOLE_LOG_LIMIT as usize / piece.len()) {
            log.append(&piece);
        }
        let len = |p: &Path| std::fs::metadata(p).unwrap().len();
        assert!(len(&path) <= MIN_CONSOLE_LOG_LIMIT);
        assert_eq!(len(&rotated(&path)), MIN_CONSOLE_LOG_LIMIT);
        assert!(!dir.path().join("console.log.2").exists());
        assert_eq!(log.offset_of(mark), 0);
        // A piece larger than the limit is split, not written whole.
        log.append(&vec![b'y'; 3 * MIN_CONSOLE_LOG_LIMIT as usize]);
        assert!(len(&path) <= MIN_CONSOLE_LOG_LIMIT);
        assert_eq!(len(&rotated(&path)), MIN_CONSOLE_LOG_LIMIT);
    }
}
