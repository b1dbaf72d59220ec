//! What runs in the child between `fork` and `execve`: only system calls, on values the
//! parent prepared (no allocation, no locks, nothing that is not async-signal-safe).

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// Written to the child's standard error before a failing step's errno goes back to the
/// parent, so the VM log says which step failed.
const FAILED_PREFIX: &[u8] = b"jail: ";
const FAILED_SUFFIX: &[u8] = b" failed before exec\n";

/// A user namespace's maps: each maps the caller's own id to itself, the one mapping an
/// unprivileged process may write.
#[derive(Debug)]
pub(crate) struct UserMaps {
    pub uid_map: Vec<u8>,
    pub gid_map: Vec<u8>,
}

/// Everything the child does, decided and prepared in the parent.
#[derive(Debug, Default)]
pub(crate) struct Prepared {
    /// The box's `cgroup.procs`, opened for writing: the child moves itself in.
    pub cgroup_procs: Option<OwnedFd>,
    /// `PR_SET_PDEATHSIG`, set again after the credentials change (which clears it).
    pub death_signal: Option<libc::c_int>,
    /// The spawning process: if the child's parent is no longer it, it died already.
    pub parent: libc::pid_t,
    /// A new user namespace first (not root), with these maps.
    pub user_maps: Option<UserMaps>,
    /// Namespaces to unshare (`CLONE_NEW*`), with the user namespace when `user_maps`.
    pub unshare: libc::c_int,
    /// Make every mount private in the new mount namespace (nothing propagates out).
    pub private_mounts: bool,
    /// Become this user, group and supplementary groups (as root).
    pub identity: Option<(libc::uid_t, libc::gid_t, Vec<libc::gid_t>)>,
    /// `(resource, limit)`: soft and hard.
    pub rlimits: Vec<(libc::c_int, u64)>,
    /// A Landlock ruleset to restrict the child with.
    pub landlock: Option<OwnedFd>,
    /// Descriptors that survive `execve` (besides 0, 1 and 2), owned here until the spawn.
    pub keep: Vec<OwnedFd>,
    /// The highest descriptor to mark close-on-exec where `close_range` cannot.
    pub max_fd: RawFd,
    /// The child's umask.
    pub umask: Option<libc::mode_t>,
    /// Run the program in a new PID namespace: the child unshares it with the others, and
    /// at the end forks the namespace's first process (PID 1), which goes on to exec the
    /// program, while the child itself stays between, waits for it and ends as it did.
    pub pid_namespace: bool,
}

/// Fails step `what` with the current errno when `rc` is negative.
fn check(rc: libc::c_long, what: &'static [u8]) -> io::Result<()> {
    if rc >= 0 {
        return Ok(());
    }
    fail(what, io::Error::last_os_error())
}

/// Fails step `what` with `error`, saying so on standard error.
fn fail(what: &'static [u8], error: io::Error) -> io::Result<()> {
    for part in [FAILED_PREFIX, what, FAILED_SUFFIX] {
        // SAFETY: write(2) from a valid slice to fd 2; a failure here changes nothing.
        unsafe { libc::write(2, part.as_ptr().cast(), part.len()) };
    }
    Err(error)
}

/// Writes all of `bytes` to the file at `path` (a `/proc/self` file).
fn write_file(path: &CStr, bytes: &[u8], what: &'static [u8]) -> io::Result<()> {
    // SAFETY: open(2) on a NUL-terminated path.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    check(fd.into(), what)?;
    // SAFETY: write(2) of a valid slice to the descriptor just opened.
    let written = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
    // SAFETY: closing the descriptor opened above, once.
    unsafe { libc::close(fd) };
    check(written as libc::c_long, what)
}

impl Prepared {
    /// Applies everything, in the one order that works: the cgroup and the namespaces while
    /// still privileged, then the identity, then what an unprivileged process may do to
    /// itself, and the descriptors last.
    pub(crate) fn apply_in_child(&self) -> io::Result<()> {
        if let Some(procs) = &self.cgroup_procs {
            // SAFETY: write(2) of a static buffer to a descriptor this struct owns.
            let rc = unsafe { libc::write(procs.as_raw_fd(), b"0".as_ptr().cast(), 1) };
            check(rc as libc::c_long, b"joining the cgroup")?;
        }
        self.die_with_parent()?;
        let flags = self.unshare
            | if self.user_maps.is_some() {
                libc::CLONE_NEWUSER
            } else {
                0
            }
            | if self.pid_namespace {
                libc::CLONE_NEWPID
            } else {
                0
            };
        if flags != 0 {
            // SAFETY: unshare(2) with namespace flags only; the child is single-threaded.
            let rc = unsafe { libc::unshare(flags) };
            check(rc.into(), b"unshare")?;
        }
        if let Some(maps) = &self.user_maps {
            write_file(c"/proc/self/uid_map", &maps.uid_map, b"writing uid_map")?;
            write_file(c"/proc/self/setgroups", b"deny", b"writing setgroups")?;
            write_file(c"/proc/self/gid_map", &maps.gid_map, b"writing gid_map")?;
        }
        if self.private_mounts {
            // SAFETY: mount(2) changing propagation only (no source, type or data).
            let rc = unsafe {
                libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                )
            };
            check(rc.into(), b"making mounts private")?;
        }
        if let Some((uid, gid, groups)) = &self.identity {
            // Raw system calls: they change this thread's credentials, which in the
            // single-threaded child are the process's; glibc's wrappers would try to
            // signal threads that do not exist here.
            // SAFETY: setgroups(2) with a valid array and its length.
            let rc = unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) };
            check(rc, b"setgroups")?;
            // SAFETY: setresgid(2) with plain ids.
            let rc = unsafe { libc::syscall(libc::SYS_setresgid, *gid, *gid, *gid) };
            check(rc, b"setresgid")?;
            // SAFETY: setresuid(2) with plain ids.
            let rc = unsafe { libc::syscall(libc::SYS_setresuid, *uid, *uid, *uid) };
            check(rc, b"setresuid")?;
            // A credential change clears the parent-death signal.
            self.die_with_parent()?;
        }
        // SAFETY: prctl(2) with integer arguments.
        let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
        check(rc.into(), b"PR_SET_NO_NEW_PRIVS")?;
        for &(resource, limit) in &self.rlimits {
            let value = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            // SAFETY: prlimit64(2) on this process with a valid new limit and no old one.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_prlimit64,
                    0,
                    resource,
                    &value as *const libc::rlimit,
                    std::ptr::null_mut::<libc::rlimit>(),
                )
            };
            check(rc, b"setrlimit")?;
        }
        if let Some(mask) = self.umask {
            // SAFETY: umask(2) cannot fail.
            unsafe { libc::umask(mask) };
        }
        if let Some(ruleset) = &self.landlock {
            // SAFETY: landlock_restrict_self(2) with a ruleset descriptor this struct owns.
            let rc =
                unsafe { libc::syscall(libc::SYS_landlock_restrict_self, ruleset.as_raw_fd(), 0) };
            check(rc, b"landlock_restrict_self")?;
        }
        self.close_on_exec()?;
        if self.pid_namespace {
            self.enter_pid_namespace()?;
        }
        Ok(())
    }

    /// Forks the new PID namespace's first process, which returns to exec the program; this
    /// process never returns: it closes every descriptor beyond the standard three (so its
    /// spawner sees the exec go through when the program's copies close), waits for the
    /// namespace's init and exits as it did. Killing it kills the namespace (its init has
    /// it as the parent whose death kills it).
    fn enter_pid_namespace(&self) -> io::Result<()> {
        // SAFETY: fork(2) in the single-threaded child; both sides only make system calls.
        let pid = unsafe { libc::fork() };
        check(pid.into(), b"forking the PID namespace's init")?;
        if pid == 0 {
            // PID 1 of the namespace; its parent is outside, so getppid() is 0 and cannot
            // tell whether that parent lives: the death signal covers it from here on.
            // SAFETY: prctl(2) with integer arguments.
            let rc = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) };
            return check(rc.into(), b"PR_SET_PDEATHSIG in the PID namespace");
        }
        // SAFETY: close_range(2) closing this process's own descriptors from 3 up.
        unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
        let mut status: libc::c_int = 0;
        loop {
            // SAFETY: waitpid(2) on our only child, into a local.
            let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
            if rc == pid {
                break;
            }
            if rc < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                // SAFETY: _exit(2) never returns.
                unsafe { libc::_exit(127) };
            }
        }
        let code = if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            128 + libc::WTERMSIG(status)
        };
        // SAFETY: _exit(2) never returns; nothing of the parent's runs here.
        unsafe { libc::_exit(code) }
    }

    /// Sets the parent-death signal, and fails if the parent is already gone.
    fn die_with_parent(&self) -> io::Result<()> {
        let Some(signal) = self.death_signal else {
            return Ok(());
        };
        // SAFETY: prctl(2) with integer arguments.
        let rc = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0) };
        check(rc.into(), b"PR_SET_PDEATHSIG")?;
        // SAFETY: getppid(2) cannot fail.
        if unsafe { libc::getppid() } != self.parent {
            return fail(
                b"checking the parent is alive",
                io::Error::from_raw_os_error(libc::ESRCH),
            );
        }
        Ok(())
    }

    /// Marks every descriptor from 3 up close-on-exec, then clears the flag on those kept.
    fn close_on_exec(&self) -> io::Result<()> {
        // SAFETY: close_range(2) with the CLOEXEC flag closes nothing now.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            )
        };
        if rc < 0 {
            // Kernels before 5.11: one fcntl per possible descriptor (EBADF for unused ones).
            for fd in 3..=self.max_fd {
                // SAFETY: fcntl(2) F_SETFD on a number that may not be open; EBADF is fine.
                unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
            }
        }
        for fd in &self.keep {
            // SAFETY: fcntl(2) F_SETFD on a descriptor this struct owns.
            let rc = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, 0) };
            check(rc.into(), b"keeping a passed descriptor")?;
        }
        Ok(())
    }
}
