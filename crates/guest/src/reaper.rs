//! The one place that waits for child processes.
//!
//! As PID 1 the agent inherits every orphan in the box and must reap them, yet it also needs the
//! exit status of each execution it started. Two waiters would steal statuses from each other,
//! so a single reaper thread waits for any child and hands each status to whoever registered
//! that pid, dropping the statuses of orphans.
//!
//! The race to avoid: a child that exits before its pid is registered. [`Reaper::spawn`] forks
//! and registers under the reaper's lock, and the reaper only reaps under that lock (it first
//! peeks with `WNOWAIT`), so a status can never arrive before its registration. The same lock
//! lets [`Reaper::signal`] know that a registered pid has not been reaped, so it cannot have
//! been reused by another process.

use std::collections::HashMap;
use std::io;
use std::process::Command;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};

use rustix::process::{Pid, Signal, WaitOptions};
use tokio::sync::oneshot;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Termination {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
}

/// A handle to the reaper thread; clones share it.
#[derive(Clone)]
pub struct Reaper {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    spawned: Condvar,
}

#[derive(Default)]
struct State {
    waiters: HashMap<i32, oneshot::Sender<Termination>>,
    generation: u64,
}

impl Reaper {
    /// The process's reaper, its thread started on first use (there must be only one: two
    /// would steal each other's statuses).
    pub fn global() -> io::Result<Reaper> {
        static GLOBAL: OnceLock<Reaper> = OnceLock::new();
        if let Some(reaper) = GLOBAL.get() {
            return Ok(reaper.clone());
        }
        static STARTING: Mutex<()> = Mutex::new(());
        let _once = STARTING.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(reaper) = GLOBAL.get() {
            return Ok(reaper.clone());
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            spawned: Condvar::new(),
        });
        let thread = shared.clone();
        std::thread::Builder::new()
            .name("reaper".into())
            .spawn(move || reap_forever(&thread))?;
        Ok(GLOBAL.get_or_init(|| Reaper { shared }).clone())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.shared)
    }

    /// Spawns `cmd` and returns its pid and a receiver for its termination.
    ///
    /// The caller must not wait for the child itself (the `Child` is dropped here).
    pub fn spawn(&self, cmd: &mut Command) -> io::Result<(Pid, oneshot::Receiver<Termination>)> {
        let mut state = self.lock();
        let child = cmd.spawn()?;
        let raw = i32::try_from(child.id())
            .map_err(|_| io::Error::other("the kernel returned a pid over i32::MAX"))?;
        let pid = Pid::from_raw(raw).ok_or_else(|| io::Error::other("spawn returned pid 0"))?;
        let (tx, rx) = oneshot::channel();
        state.waiters.insert(raw, tx);
        state.generation += 1;
        drop(state);
        self.shared.spawned.notify_one();
        Ok((pid, rx))
    }

    /// Sends `signal` to `pid` (or its process group), but only while `pid` is a registered
    /// child that has not been reaped; returns whether it was.
    pub fn signal(&self, pid: Pid, signal: Signal, group: bool) -> io::Result<bool> {
        let state = self.lock();
        if !state.waiters.contains_key(&pid.as_raw_nonzero().get()) {
            return Ok(false);
        }
        if group {
            rustix::process::kill_process_group(pid, signal)?;
        } else {
            rustix::process::kill_process(pid, signal)?;
        }
        Ok(true)
    }
}

fn reap_forever(shared: &Shared) {
    loop {
        let seen = lock(shared).generation;
        match peek_exited() {
            Ok(pid) => {
                let mut state = lock(shared);
                if let Ok(Some((_, status))) =
                    rustix::process::waitpid(Pid::from_raw(pid), WaitOptions::NOHANG)
                {
                    let end = match status.terminating_signal() {
                        Some(sig) => Termination::Signal(sig),
                        None => Termination::Code(status.exit_status().unwrap_or(0)),
                    };
                    if let Some(tx) = state.waiters.remove(&pid) {
                        // The receiver may be gone (the execution was abandoned): nothing to do.
                        let _ = tx.send(end);
                    }
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => {
                let mut state = lock(shared);
                while state.generation == seen {
                    state = shared
                        .spawned
                        .wait(state)
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                eprintln!("boxlite-guest: waiting for children failed: {e}");
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    }
}

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    // A panic while holding the lock cannot leave the map inconsistent (every update is a
    // single insert or remove), so a poisoned lock is still usable.
    shared
        .state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Blocks until some child has exited and returns its pid, leaving it unreaped.
fn peek_exited() -> io::Result<i32> {
    // SAFETY: an all-zero siginfo_t is a valid value of this plain C struct.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a valid, writable siginfo_t that outlives the call; P_ALL ignores the id.
    let rc = unsafe { libc::waitid(libc::P_ALL, 0, &mut info, libc::WEXITED | libc::WNOWAIT) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: waitid succeeded with WEXITED, so the kernel filled in si_pid of a SIGCHLD siginfo.
    Ok(unsafe { info.si_pid() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn statuses_reach_their_waiters_and_orphans_are_reaped() {
        let reaper = Reaper::global().unwrap();
        let (_, code) = reaper
            .spawn(Command::new("sh").args(["-c", "exit 7"]))
            .unwrap();
        let (pid, killed) = reaper.spawn(Command::new("sleep").arg("30")).unwrap();
        // An unregistered child (as an orphan would be) must be reaped and not confuse anyone.
        #[expect(
            clippy::zombie_processes,
            reason = "the reaper must reap it, which is tested"
        )]
        let stray = std::process::Command::new("true").spawn().unwrap();
        let stray_pid = stray.id();
        assert!(reaper.signal(pid, Signal::KILL, false).unwrap());
        assert_eq!(code.await.unwrap(), Termination::Code(7));
        assert_eq!(killed.await.unwrap(), Termination::Signal(libc::SIGKILL));
        assert!(!reaper.signal(pid, Signal::KILL, false).unwrap());
        for _ in 0..100 {
            if !std::path::Path::new(&format!("/proc/{stray_pid}")).exists() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("the unregistered child {stray_pid} was not reaped");
    }

    #[tokio::test]
    async fn many_quick_children() {
        let reaper = Reaper::global().unwrap();
        let mut waits = Vec::new();
        for i in 0..50 {
            let (_, rx) = reaper
                .spawn(Command::new("sh").args(["-c", &format!("exit {i}")]))
                .unwrap();
            waits.push((i, rx));
        }
        for (i, rx) in waits {
            assert_eq!(rx.await.unwrap(), Termination::Code(i));
        }
    }
}
