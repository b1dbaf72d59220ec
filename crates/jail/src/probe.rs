//! What this host allows, found out once per process.

use std::sync::OnceLock;

/// The namespaces every jail asks for: mount, IPC, UTS, network (empty: only a loopback
/// that is down) and cgroup.
pub(crate) const NAMESPACES: libc::c_int = libc::CLONE_NEWNS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP;

/// Whether this process is root (effective uid 0).
pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid(2) cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// How this process can give a child new namespaces: `Ok(true)` inside a new user namespace
/// (not root), `Ok(false)` directly (root), or the error that forbids it.
pub(crate) fn namespaces() -> Result<bool, String> {
    static PROBE: OnceLock<Result<bool, String>> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            let user = !is_root();
            let flags = NAMESPACES | if user { libc::CLONE_NEWUSER } else { 0 };
            match try_in_child(flags) {
                0 => Ok(user),
                errno => Err(format!(
                    "unshare: {}{}",
                    std::io::Error::from_raw_os_error(errno),
                    if user {
                        " (unprivileged user namespaces are off here: see \
                         /proc/sys/user/max_user_namespaces, \
                         /proc/sys/kernel/unprivileged_userns_clone or AppArmor's \
                         restrict_unprivileged_userns)"
                    } else {
                        ""
                    }
                )),
            }
        })
        .clone()
}

/// Forks a child that tries `unshare(flags)` and exits with its errno (0: it worked).
fn try_in_child(flags: libc::c_int) -> i32 {
    // SAFETY: fork(2); the child only calls unshare(2) and _exit(2), both
    // async-signal-safe, so a multi-threaded parent is fine.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EAGAIN);
    }
    if pid == 0 {
        // SAFETY: see above; the child ends here.
        unsafe {
            let code = if libc::unshare(flags) == 0 {
                0
            } else {
                *libc::__errno_location()
            };
            libc::_exit(code & 0xff);
        }
    }
    let mut status = 0;
    loop {
        // SAFETY: waitpid(2) on the child just forked, with a valid status pointer.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            break;
        }
        if rc < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return libc::ECHILD;
        }
    }
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        libc::EPERM
    }
}

/// Whether the kernel has seccomp filters, or why not.
pub(crate) fn seccomp() -> Result<(), String> {
    // SAFETY: prctl(2) PR_SET_SECCOMP with a NULL filter never installs anything: a kernel
    // with filters answers EFAULT (bad address), one without EINVAL.
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            std::ptr::null::<u8>(),
            0,
            0,
        )
    };
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::EFAULT) if rc < 0 => Ok(()),
        _ => Err("the kernel has no seccomp filters (CONFIG_SECCOMP_FILTER)".into()),
    }
}
