//! Whether a box's supervisor is alive, told by a lock it holds for its whole life; and the
//! runtime's other file locks, each wait with a deadline.
//!
//! A pid can be reused and a state row can lie after a crash; a `flock` cannot: the kernel
//! drops it when the holder dies, however it dies. The supervisor holds the box's lock file
//! exclusively (so do a box's creator while it makes the box, and its remover while it
//! removes it); anyone else probes it with a shared, non-blocking attempt. Whoever takes a
//! lock exclusively writes its pid into the file, so that a wait that runs out can say who
//! holds it, and a signal can be checked against it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::fs::FlockOperation;
use rustix::io::Errno;
use rustix::process::{Pid, PidfdFlags, Signal};

use crate::error::{Error, Result};

/// How long a starting supervisor (or a remover) retries for a box's lock: a prober holds it
/// (shared) for microseconds, so anything longer means another live supervisor.
const TAKE_PATIENCE: Duration = Duration::from_secs(2);

/// The first pause between attempts at a contended lock; it doubles up to
/// [`MAX_RETRY_PAUSE`].
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(10);
/// The longest pause between attempts at a contended lock.
const MAX_RETRY_PAUSE: Duration = Duration::from_millis(200);
/// The most bytes of a lock file's holder note that are read (a pid and a newline).
const MAX_NOTE_BYTES: u64 = 64;
/// The most bytes of a holder's command line an error quotes.
const MAX_CMDLINE_BYTES: usize = 200;

/// Shared or exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// With other shared holders; excludes an exclusive one.
    Shared,
    /// Alone.
    Exclusive,
}

/// Takes the lock at `path` for the life of the returned file, or `None` if another
/// process keeps it for longer than [`TAKE_PATIENCE`].
pub fn take(path: &Path) -> Result<Option<File>> {
    match lock(path, Mode::Exclusive, TAKE_PATIENCE) {
        Ok(file) => Ok(Some(file)),
        Err(Error::Busy { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Takes the lock at `path` if it is free now, else `None`.
pub fn try_take(path: &Path) -> Result<Option<File>> {
    let file = open(path)?;
    match attempt(&file, path, Mode::Exclusive)? {
        true => Ok(Some(file)),
        false => Ok(None),
    }
}

/// Takes the lock at `path` (created if missing) in `mode`, waiting up to `patience` for
/// other holders; past it, [`Error::Busy`] names the file and who holds it.
pub fn lock(path: &Path, mode: Mode, patience: Duration) -> Result<File> {
    let file = open(path)?;
    let started = Instant::now();
    let mut pause = FIRST_RETRY_PAUSE;
    loop {
        if attempt(&file, path, mode)? {
            return Ok(file);
        }
        let waited = started.elapsed();
        if waited >= patience {
            return Err(Error::Busy {
                path: path.to_path_buf(),
                waited: patience,
                holder: describe_holder(path),
            });
        }
        std::thread::sleep(pause.min(patience - waited));
        pause = (pause * 2).min(MAX_RETRY_PAUSE);
    }
}

/// One non-blocking attempt at `file`'s lock; an exclusive holder writes its pid into it.
fn attempt(file: &File, path: &Path, mode: Mode) -> Result<bool> {
    let op = match mode {
        Mode::Shared => FlockOperation::NonBlockingLockShared,
        Mode::Exclusive => FlockOperation::NonBlockingLockExclusive,
    };
    match rustix::fs::flock(file, op) {
        Ok(()) => {}
        Err(Errno::WOULDBLOCK) => return Ok(false),
        Err(e) => return Err(Error::io("locking", path, e.into())),
    }
    if mode == Mode::Exclusive {
        let mut note = file;
        note.set_len(0)
            .and_then(|()| note.rewind())
            .and_then(|()| writeln!(note, "{}", std::process::id()))
            .map_err(|e| Error::io("writing the holder of", path, e))?;
    }
    Ok(true)
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

/// The pid the last exclusive holder of the lock at `path` wrote into it.
pub fn holder_pid(path: &Path) -> Option<u32> {
    let mut note = String::new();
    File::open(path)
        .ok()?
        .take(MAX_NOTE_BYTES)
        .read_to_string(&mut note)
        .ok()?;
    note.trim().parse().ok()
}

/// Who may hold the lock at `path`, in words, for an error.
fn describe_holder(path: &Path) -> String {
    let Some(pid) = holder_pid(path) else {
        return "a process that did not write its pid into it".into();
    };
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmdline) => {
            let words: Vec<String> = cmdline
                .split(|&b| b == 0)
                .filter(|w| !w.is_empty())
                .map(|w| String::from_utf8_lossy(w).into_owned())
                .collect();
            let mut line = words.join(" ");
            if line.len() > MAX_CMDLINE_BYTES {
                let mut end = MAX_CMDLINE_BYTES;
                while !line.is_char_boundary(end) {
                    end -= 1;
                }
                line.truncate(end);
                line.push('…');
            }
            format!("pid {pid} ({line})")
        }
        Err(_) => format!("pid {pid} (which has ended; a process it started may hold it)"),
    }
}

/// `pid` as a process id that may be signalled: a recorded pid is never 0 (the caller's
/// process group), negative (a group, or every process: -1), 1 (init) or this process.
pub fn valid_pid(pid: u32) -> Result<Pid> {
    let raw = i32::try_from(pid).ok().filter(|&raw| raw > 1);
    match raw.and_then(Pid::from_raw) {
        Some(valid) if pid != std::process::id() => Ok(valid),
        _ => Err(Error::InvalidInput(format!(
            "refusing to signal pid {pid}: not a process the runtime could have started"
        ))),
    }
}

/// Sends `signal` to `pid` after [`valid_pid`]; whether the process still existed.
pub fn signal_pid(pid: u32, signal: Signal) -> Result<bool> {
    let valid = valid_pid(pid)?;
    match rustix::process::kill_process(valid, signal) {
        Ok(()) => Ok(true),
        Err(Errno::SRCH) => Ok(false),
        Err(e) => Err(signal_error(pid, e)),
    }
}

/// Sends `signal` to `pid`, recorded as the holder of the lock at `path`, only while that
/// lock is held and its holder note names `pid` (or is missing): the holder lives, so the
/// pid is still its own. Whether it was sent.
pub fn signal_holder(path: &Path, pid: u32, signal: Signal) -> Result<bool> {
    let valid = valid_pid(pid)?;
    // Opened before the lock is probed: a pidfd names one process, never a later one that
    // reuses its number, so the signal reaches the process the probe vouched for or none.
    let pidfd = match rustix::process::pidfd_open(valid, PidfdFlags::empty()) {
        Ok(fd) => Some(fd),
        Err(Errno::SRCH) => return Ok(false),
        // A kernel before 5.3: only the probe guards the pid.
        Err(Errno::NOSYS) => None,
        Err(e) => return Err(signal_error(pid, e)),
    };
    if !is_held(path)? {
        return Ok(false);
    }
    // No note at all: a supervisor of an older boxlite, which wrote none; the probe alone
    // vouches for it then.
    if holder_pid(path).is_some_and(|holder| holder != pid) {
        return Ok(false);
    }
    let Some(pidfd) = pidfd else {
        return signal_pid(pid, signal);
    };
    match rustix::process::pidfd_send_signal(&pidfd, signal) {
        Ok(()) => Ok(true),
        Err(Errno::SRCH) => Ok(false),
        Err(e) => Err(signal_error(pid, e)),
    }
}

fn signal_error(pid: u32, e: Errno) -> Error {
    Error::io("signalling", format!("pid {pid}"), e.into())
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
        assert_eq!(holder_pid(&path), Some(std::process::id()));
        assert!(try_take(&path).unwrap().is_none());
        drop(held);
        assert!(!is_held(&path).unwrap());
        assert!(try_take(&path).unwrap().is_some());
    }

    #[test]
    fn a_wait_that_runs_out_names_the_file_and_its_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("base.lock");
        let _held = lock(&path, Mode::Exclusive, Duration::ZERO).unwrap();
        let started = Instant::now();
        let err = lock(&path, Mode::Exclusive, Duration::from_millis(100)).unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(100));
        assert_eq!(err.kind(), crate::ErrorKind::Busy);
        let text = err.to_string();
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        // Shared holders coexist, and exclude an exclusive one.
        drop(_held);
        let a = lock(&path, Mode::Shared, Duration::ZERO).unwrap();
        let _b = lock(&path, Mode::Shared, Duration::ZERO).unwrap();
        assert!(lock(&path, Mode::Exclusive, Duration::ZERO).is_err());
        drop(a);
    }

    #[test]
    fn a_wait_ends_when_the_holder_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let held = lock(&path, Mode::Exclusive, Duration::ZERO).unwrap();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            drop(held);
        });
        lock(&path, Mode::Exclusive, Duration::from_secs(10)).unwrap();
        releaser.join().unwrap();
    }

    #[test]
    fn pids_that_name_groups_init_or_ourselves_are_never_signalled() {
        for pid in [0, 1, u32::MAX, 1 << 31, std::process::id()] {
            let err = signal_pid(pid, Signal::TERM).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidInput, "{pid}");
        }
    }

    #[test]
    fn a_holder_is_signalled_only_while_it_holds_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        // Free lock: not sent.
        assert!(!signal_holder(&path, pid, Signal::KILL).unwrap());
        // Held, but by this process (the note names it, not the child): not sent.
        let held = take(&path).unwrap().unwrap();
        assert!(!signal_holder(&path, pid, Signal::KILL).unwrap());
        drop(held);
        assert!(child.try_wait().unwrap().is_none());
        // Held with the child's pid in the note (as if the child had taken it): sent.
        let held = take(&path).unwrap().unwrap();
        std::fs::write(&path, format!("{pid}\n")).unwrap();
        assert!(signal_holder(&path, pid, Signal::KILL).unwrap());
        drop(held);
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
    }
}
