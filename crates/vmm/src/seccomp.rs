//! Seccomp allowlists, one per kind of thread, installed by each thread on itself once the VM
//! is built: after that no thread opens a file, makes a socket, maps a new device or starts
//! a process, so none may. Any system call outside a thread's list kills the whole process
//! (`SECCOMP_RET_KILL_PROCESS`, seen as SIGSYS), except opening a file, which fails with
//! EACCES: glibc's malloc opens /proc and /sys files by itself, and copes.
//!
//! The lists follow what each thread does (and Firecracker's published filters for which
//! calls a KVM VMM's threads make): a vCPU thread runs `KVM_RUN` and dispatches exits to
//! the devices (eventfd writes for interrupts, the serial log); the device thread waits on
//! epoll and moves bytes between queues, disks and sockets; the main thread waits, kicks
//! the vCPUs and reports. A vCPU thread also talks vhost-user to virtio-fs daemons, on
//! their sockets alone, when the guest starts or resets such a device. Every thread may allocate memory, use futexes and leave; only
//! `tgkill` on this process is allowed (panics abort, the main thread kicks vCPUs).

use std::collections::BTreeMap;
use std::os::fd::RawFd;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use crate::error::{Error, Result};

/// The vCPU ioctls a vCPU thread makes (linux/kvm.h).
mod ioctls {
    #![allow(missing_docs)]

    /// The KVM ioctl type (`KVMIO`).
    const KVMIO: u32 = 0xAE;

    vmm_sys_util::ioctl_io_nr!(KVM_RUN, KVMIO, 0x80);
    vmm_sys_util::ioctl_ior_nr!(KVM_GET_REGS, KVMIO, 0x81, kvm_bindings::kvm_regs);
}
use ioctls::{KVM_GET_REGS, KVM_RUN};

/// Which thread a filter is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Thread {
    /// The thread that built the VM and waits for it to end.
    Main,
    /// A vCPU thread.
    Vcpu,
    /// The device (event loop) thread.
    Devices,
}

/// The compiled filters, one per [`Thread`], and the one every thread adds that makes
/// opening a file fail.
#[derive(Debug, Clone)]
pub struct Filters {
    main: BpfProgram,
    vcpu: BpfProgram,
    devices: BpfProgram,
    no_open: BpfProgram,
}

/// What opening a file returns once the filters are in: glibc opens files by itself long
/// after start-up (malloc reads /proc/sys/vm/overcommit_memory the first time a thread's
/// arena shrinks, and the CPU count from /sys when it makes an arena), and copes when that
/// fails; so `open`/`openat` fail with EACCES instead of killing the process. Either way
/// the VMM opens nothing.
const OPEN_ERRNO: u32 = libc::EACCES as u32;

impl Filters {
    /// Compiles the filters for this process (its pid is part of the `tgkill` rule), for a
    /// VM without vhost-user devices.
    pub fn build() -> Result<Filters> {
        Filters::build_for(&[])
    }

    /// Compiles the filters for a VM whose vhost-user devices talk on `vhost_user_sockets`
    /// ([`crate::machine::Machine::vhost_user_sockets`]).
    pub fn build_for(vhost_user_sockets: &[RawFd]) -> Result<Filters> {
        // SAFETY: getpid(2) cannot fail.
        let pid = unsafe { libc::getpid() };
        let no_open = [libc::SYS_open, libc::SYS_openat]
            .into_iter()
            .map(|call| (call, Vec::new()))
            .collect();
        Ok(Filters {
            main: compile(rules(Thread::Main, pid, &[])?)?,
            vcpu: compile(rules(Thread::Vcpu, pid, vhost_user_sockets)?)?,
            devices: compile(rules(Thread::Devices, pid, &[])?)?,
            no_open: compile_with(
                no_open,
                SeccompAction::Allow,
                SeccompAction::Errno(OPEN_ERRNO),
            )?,
        })
    }

    /// Installs `thread`'s filter on the calling thread (and sets `PR_SET_NO_NEW_PRIVS`,
    /// which seccomp requires of an unprivileged process). Threads it creates later inherit it.
    pub fn install(&self, thread: Thread) -> Result<()> {
        let program = match thread {
            Thread::Main => &self.main,
            Thread::Vcpu => &self.vcpu,
            Thread::Devices => &self.devices,
        };
        // Two filters: the kernel takes the strictest answer, so the allowlist lets
        // `openat` through to the second, which fails it.
        seccompiler::apply_filter(&self.no_open).map_err(|e| seccomp_error("installing", e))?;
        seccompiler::apply_filter(program).map_err(|e| seccomp_error("installing", e))
    }
}

fn seccomp_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Config(format!("seccomp: {what} the filter: {e}"))
}

/// `arg` (0-based) equals `value`.
fn arg_eq(arg: u8, value: u64) -> Result<SeccompRule> {
    let condition = SeccompCondition::new(arg, SeccompCmpArgLen::Qword, SeccompCmpOp::Eq, value)
        .map_err(|e| seccomp_error("building", e))?;
    SeccompRule::new(vec![condition]).map_err(|e| seccomp_error("building", e))
}

/// What every thread needs: memory, futexes, the time, randomness for hash maps, writing
/// (logs, eventfds), signal returns and masks, and ending.
const COMMON: &[libc::c_long] = &[
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_writev,
    libc::SYS_close,
    libc::SYS_futex,
    libc::SYS_brk,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_mprotect,
    libc::SYS_madvise,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_sigaltstack,
    libc::SYS_sched_yield,
    libc::SYS_clock_gettime,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_getrandom,
    libc::SYS_getpid,
    libc::SYS_gettid,
    libc::SYS_restart_syscall,
    libc::SYS_exit,
    libc::SYS_exit_group,
    // Let through to the second filter, which fails them (see OPEN_ERRNO).
    libc::SYS_open,
    libc::SYS_openat,
];

/// The device thread's additions: epoll, the console socket's clients, disk I/O.
const DEVICES: &[libc::c_long] = &[
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_ctl,
    libc::SYS_accept4,
    libc::SYS_recvfrom,
    libc::SYS_sendto,
    libc::SYS_recvmsg,
    libc::SYS_sendmsg,
    libc::SYS_readv,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_fdatasync,
    libc::SYS_fsync,
    libc::SYS_shutdown,
];

/// The rules of `thread`'s filter; `vhost_user` are the vhost-user sockets (vCPU threads).
fn rules(
    thread: Thread,
    pid: libc::pid_t,
    vhost_user: &[RawFd],
) -> Result<BTreeMap<i64, Vec<SeccompRule>>> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for &call in COMMON {
        rules.insert(call, Vec::new());
    }
    // Signals only to this process: a vCPU kick, or a panic's abort.
    rules.insert(libc::SYS_tgkill, vec![arg_eq(0, pid as u64)?]);
    // Reading a descriptor's flags: std checks a descriptor it closes is open (debug builds).
    rules.insert(libc::SYS_fcntl, vec![arg_eq(1, libc::F_GETFD as u64)?]);
    match thread {
        Thread::Main => {}
        Thread::Vcpu => {
            rules.insert(
                libc::SYS_ioctl,
                vec![arg_eq(1, KVM_RUN())?, arg_eq(1, KVM_GET_REGS())?],
            );
            // A virtio-fs device's activation and reset are vhost-user requests and replies
            // (with fds attached: SCM_RIGHTS) made inside the guest's register write, so
            // they complete before the write does; only on the daemons' sockets.
            if !vhost_user.is_empty() {
                let on_socket = vhost_user
                    .iter()
                    .map(|&fd| arg_eq(0, fd as u64))
                    .collect::<Result<Vec<_>>>()?;
                rules.insert(libc::SYS_sendmsg, on_socket.clone());
                rules.insert(libc::SYS_recvmsg, on_socket);
            }
        }
        Thread::Devices => {
            for &call in DEVICES {
                rules.insert(call, Vec::new());
            }
            // Accepted console clients are made non-blocking (std uses FIONBIO).
            rules.insert(libc::SYS_ioctl, vec![arg_eq(1, libc::FIONBIO)?]);
        }
    }
    Ok(rules)
}

fn compile(rules: BTreeMap<i64, Vec<SeccompRule>>) -> Result<BpfProgram> {
    compile_with(rules, SeccompAction::KillProcess, SeccompAction::Allow)
}

fn compile_with(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    mismatch: SeccompAction,
    matched: SeccompAction,
) -> Result<BpfProgram> {
    let filter = SeccompFilter::new(rules, mismatch, matched, TargetArch::x86_64)
        .map_err(|e| seccomp_error("building", e))?;
    BpfProgram::try_from(filter).map_err(|e| seccomp_error("compiling", e))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::os::unix::process::ExitStatusExt;
    use std::process::Command;

    use super::*;

    /// Set in the child this test spawns: which thread's filter it installs.
    const CHILD: &str = "VMM_SECCOMP_TEST_CHILD";

    /// The child's half: installs the filter through the same code path boxlite-vmm uses,
    /// shows that allowed calls still work, then makes a forbidden one.
    #[test]
    fn child_installs_a_filter_then_calls_socket() {
        let Ok(which) = std::env::var(CHILD) else {
            return;
        };
        let thread = match which.as_str() {
            "main" => Thread::Main,
            "vcpu" => Thread::Vcpu,
            _ => Thread::Devices,
        };
        let filters = Filters::build().unwrap();
        filters.install(thread).unwrap();
        let said = b"installed\n";
        let mut buf = [0u8; 8];
        // SAFETY: write(2) of a valid buffer to stdout, getrandom(2) into a valid buffer:
        // both allowed.
        unsafe {
            libc::write(1, said.as_ptr().cast(), said.len());
            libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0);
        }
        // Opening a file fails (EACCES) rather than killing: glibc does it by itself.
        let opened = std::fs::File::open("/proc/self/status");
        assert_eq!(opened.unwrap_err().raw_os_error(), Some(libc::EACCES));
        let said = b"open denied\n";
        // SAFETY: write(2) of a valid buffer to stdout.
        unsafe { libc::write(1, said.as_ptr().cast(), said.len()) };
        // SAFETY: socket(2) with plain arguments; the filter kills the process here.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
        let survived = format!("survived socket() = {fd}\n");
        // SAFETY: as above.
        unsafe { libc::write(1, survived.as_ptr().cast(), survived.len()) };
    }

    #[test]
    fn a_forbidden_system_call_kills_the_process_with_sigsys() {
        for thread in ["main", "vcpu", "devices"] {
            let out = Command::new(std::env::current_exe().unwrap())
                .args([
                    "seccomp::tests::child_installs_a_filter_then_calls_socket",
                    "--exact",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD, thread)
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(stdout.contains("installed"), "{thread}: {out:?}");
            assert!(stdout.contains("open denied"), "{thread}: {out:?}");
            assert!(!stdout.contains("survived"), "{thread}: {stdout}");
            assert_eq!(out.status.signal(), Some(libc::SIGSYS), "{thread}: {out:?}");
        }
    }

    #[test]
    fn vcpu_threads_get_less_than_the_device_thread() {
        let pid = 1;
        let vcpu = rules(Thread::Vcpu, pid, &[]).unwrap();
        let devices = rules(Thread::Devices, pid, &[]).unwrap();
        let main = rules(Thread::Main, pid, &[]).unwrap();
        for call in [libc::SYS_accept4, libc::SYS_pwrite64, libc::SYS_epoll_wait] {
            assert!(devices.contains_key(&call) && !vcpu.contains_key(&call));
        }
        for call in [
            libc::SYS_socket,
            libc::SYS_connect,
            libc::SYS_execve,
            libc::SYS_clone,
            libc::SYS_ptrace,
        ] {
            for (name, r) in [("main", &main), ("vcpu", &vcpu), ("devices", &devices)] {
                assert!(!r.contains_key(&call), "{name} allows {call}");
            }
        }
        assert!(!main.contains_key(&libc::SYS_ioctl));
        assert_eq!(KVM_RUN(), 0xAE80);
        for call in [libc::SYS_sendmsg, libc::SYS_recvmsg] {
            assert!(!vcpu.contains_key(&call));
        }
    }

    #[test]
    fn vcpu_threads_talk_vhost_user_on_the_daemon_sockets_alone() {
        let vcpu = rules(Thread::Vcpu, 1, &[7, 9]).unwrap();
        for call in [libc::SYS_sendmsg, libc::SYS_recvmsg] {
            assert_eq!(vcpu[&call].len(), 2, "one rule per socket");
        }
        assert!(!vcpu.contains_key(&libc::SYS_sendto));
        assert!(!vcpu.contains_key(&libc::SYS_socket));
        assert!(Filters::build_for(&[7, 9]).is_ok());
    }
}
