//! Starting an execution: its environment, identity, root, session and stdio.
//!
//! Every execution is the leader of its own session and process group (`setsid`), so a signal
//! or a timeout can reach everything it started, and a tty execution gets the pty's slave as
//! its controlling terminal. The program is found by the agent ([`BoxRoot::find_command`]), so
//! a missing command is a clear `not_found` before anything is forked.

use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use rustix::pipe::PipeFlags;
use rustix::process::{Gid, Pid, Uid};
use rustix::pty::OpenptFlags;
use rustix::termios::Winsize;
use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::fdio::FdStream;
use crate::reaper::{Reaper, Termination};
use crate::root::{BoxRoot, DEFAULT_PATH};
use crate::users::Identity;

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    /// The program and its arguments; `argv[0]` is looked up in `PATH` unless it has a `/`.
    pub argv: Vec<String>,
    /// The whole environment, in order; `PATH` defaults to [`DEFAULT_PATH`] and `HOME` to the
    /// user's home directory when absent.
    pub env: Vec<(String, String)>,
    /// The working directory in the box; `/` when absent.
    pub cwd: Option<String>,
    /// A user name or `uid[:gid]` of the box; root (or, for an unprivileged agent, the agent's
    /// own user) when absent.
    pub user: Option<String>,
    /// A terminal of this size (rows, columns) instead of pipes; stderr is merged into stdout.
    pub tty: Option<(u16, u16)>,
}

/// A started execution.
#[derive(Debug)]
pub struct Process {
    /// The process id, which is also its session and process group id.
    pub pid: Pid,
    /// Its standard input (the pty master with a tty).
    pub stdin: FdStream,
    /// Its standard output (the pty master with a tty).
    pub stdout: FdStream,
    /// Its standard error; `None` with a tty.
    pub stderr: Option<FdStream>,
    /// Whether stdin and stdout are a pty master.
    pub tty: bool,
    /// Fires with how it ended.
    pub exit: oneshot::Receiver<Termination>,
}

/// Starts `spec` in `root`.
pub fn spawn(root: &BoxRoot, reaper: &Reaper, spec: &Spec) -> Result<Process> {
    let Some(arg0) = spec.argv.first() else {
        return Err(Error::Invalid("argv is empty: nothing to run".into()));
    };
    // Resolved once: it decides both the credentials and the default HOME.
    let identity = identity(root, spec.user.as_deref())?;
    let env = environment(spec, identity.as_ref())?;
    let path_var = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map_or(DEFAULT_PATH, |(_, v)| v.as_str());
    let program = root.find_command(arg0, path_var)?;
    let cwd_in_box = spec.cwd.as_deref().unwrap_or("/");
    let cwd = c_string("cwd", root.working_dir(cwd_in_box)?.as_os_str().as_bytes())?;

    let mut cmd = Command::new(&program);
    cmd.arg0(arg0).args(&spec.argv[1..]).env_clear().envs(env);
    let (parent_in, parent_out, parent_err) = match spec.tty {
        Some((rows, cols)) => {
            let (master, slave) = open_pty(rows, cols)?;
            cmd.stdin(Stdio::from(dup(&slave)?))
                .stdout(Stdio::from(dup(&slave)?))
                .stderr(Stdio::from(slave));
            (dup(&master)?, master, None)
        }
        None => {
            let (in_r, in_w) = pipe()?;
            let (out_r, out_w) = pipe()?;
            let (err_r, err_w) = pipe()?;
            cmd.stdin(Stdio::from(in_r))
                .stdout(Stdio::from(out_w))
                .stderr(Stdio::from(err_w));
            (in_w, out_r, Some(err_r))
        }
    };
    let child = ChildSetup {
        tty: spec.tty.is_some(),
        chroot: root.chroot_fd().map(|fd| dup_borrowed(fd)).transpose()?,
        cwd,
        identity: identity.map(|id| {
            let groups = id.groups.iter().map(|g| Gid::from_raw(*g)).collect();
            (Uid::from_raw(id.uid), Gid::from_raw(id.gid), groups)
        }),
    };
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
    // work is allowed: it calls raw system calls through rustix on data prepared before the
    // fork (a CString, a Vec of gids, a borrowed descriptor), and neither allocates nor locks.
    unsafe {
        cmd.pre_exec(move || child.apply());
    }
    let (pid, exit) = reaper.spawn(&mut cmd).map_err(|e| {
        Error::io(
            "starting",
            format_args!("{program:?} (argv[0] {arg0:?})"),
            e,
        )
    })?;
    // The child's ends of the pipes or pty live in `cmd`; close them so that end of output is
    // seen once the execution's processes close theirs.
    drop(cmd);
    let stream = |fd: OwnedFd| {
        FdStream::new(fd).map_err(|e| Error::io("registering", "an execution's stdio", e))
    };
    Ok(Process {
        pid,
        stdin: stream(parent_in)?,
        stdout: stream(parent_out)?,
        stderr: parent_err.map(stream).transpose()?,
        tty: spec.tty.is_some(),
        exit,
    })
}

/// Resizes an execution's terminal (its pty master).
pub fn resize(master: &FdStream, rows: u16, cols: u16) -> Result<()> {
    rustix::termios::tcsetwinsize(master.fd(), winsize(rows, cols))
        .map_err(|e| Error::io("resizing", "the terminal", e.into()))
}

/// The byte that ends input on a terminal in canonical mode (`VEOF`, normally ^D), or `None`
/// when the terminal is raw and has no way to signal end of input.
pub fn tty_eof_byte(master: &FdStream) -> Option<u8> {
    let termios = rustix::termios::tcgetattr(master.fd()).ok()?;
    termios
        .local_modes
        .contains(rustix::termios::LocalModes::ICANON)
        .then(|| termios.special_codes[rustix::termios::SpecialCodeIndex::VEOF])
}

/// The execution's environment: as requested, plus `PATH` and `HOME` when missing.
fn environment(spec: &Spec, identity: Option<&Identity>) -> Result<Vec<(String, String)>> {
    for (k, v) in &spec.env {
        if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
            return Err(Error::Invalid(format!(
                "environment variable {k:?}: names must be non-empty without '=' or NUL, values \
                 without NUL"
            )));
        }
    }
    let mut env = spec.env.clone();
    let has = |env: &[(String, String)], key: &str| env.iter().any(|(k, _)| k == key);
    if !has(&env, "PATH") {
        env.push(("PATH".into(), DEFAULT_PATH.into()));
    }
    if let Some(home) = identity.and_then(|id| id.home.clone()) {
        if !has(&env, "HOME") {
            env.push(("HOME".into(), home));
        }
    }
    if spec.tty.is_some() && !has(&env, "TERM") {
        env.push(("TERM".into(), "xterm".into()));
    }
    for arg in &spec.argv {
        if arg.contains('\0') {
            return Err(Error::Invalid(format!(
                "argument {arg:?} contains a NUL byte"
            )));
        }
    }
    Ok(env)
}

/// The identity the child switches to, or `None` to keep the agent's (an unprivileged agent
/// asked for no user, or for its own uid).
fn identity(root: &BoxRoot, user: Option<&str>) -> Result<Option<Identity>> {
    if rustix::process::geteuid().is_root() {
        return root.identity(user).map(Some);
    }
    let Some(user) = user else { return Ok(None) };
    let id = root.identity(Some(user))?;
    if id.uid == rustix::process::geteuid().as_raw() {
        return Ok(None);
    }
    Err(Error::Denied(format!(
        "running as user {user:?} (uid {}) needs the agent to run as root",
        id.uid
    )))
}

/// What the child does between fork and exec.
struct ChildSetup {
    tty: bool,
    chroot: Option<OwnedFd>,
    cwd: CString,
    identity: Option<(Uid, Gid, Vec<Gid>)>,
}

impl ChildSetup {
    fn apply(&self) -> std::io::Result<()> {
        // A command starts with every signal's default action, whatever the agent inherited
        // (an agent started with SIGINT ignored, as a background job is, would otherwise pass
        // that on, and a Ctrl-C or `signal` would never reach the command).
        for signal in 1..=LAST_STANDARD_SIGNAL {
            if signal != libc::SIGKILL && signal != libc::SIGSTOP {
                // SAFETY: signal(2) is async-signal-safe and has no memory-safety
                // preconditions; setting SIG_DFL in the child before exec touches nothing else.
                unsafe {
                    libc::signal(signal, libc::SIG_DFL);
                }
            }
        }
        rustix::process::setsid()?;
        if self.tty {
            rustix::process::ioctl_tiocsctty(rustix::stdio::stdin())?;
        }
        if let Some(dir) = &self.chroot {
            rustix::process::fchdir(dir)?;
            rustix::process::chroot(c".")?;
        }
        rustix::process::chdir(self.cwd.as_c_str())?;
        if let Some((uid, gid, groups)) = &self.identity {
            // The child is single-threaded, so the kernel's per-thread credentials calls
            // change the whole process; groups and gid first, while still privileged.
            rustix::thread::set_thread_groups(groups)?;
            rustix::thread::set_thread_res_gid(*gid, *gid, *gid)?;
            rustix::thread::set_thread_res_uid(*uid, *uid, *uid)?;
        }
        Ok(())
    }
}

/// The last standard (non-real-time) signal number on Linux.
const LAST_STANDARD_SIGNAL: i32 = 31;

fn c_string(what: &str, bytes: &[u8]) -> Result<CString> {
    CString::new(bytes).map_err(|_| Error::Invalid(format!("{what} contains a NUL byte")))
}

fn winsize(rows: u16, cols: u16) -> Winsize {
    Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

fn open_pty(rows: u16, cols: u16) -> Result<(OwnedFd, OwnedFd)> {
    let io = |op, path, e: rustix::io::Errno| Error::io(op, path, e.into());
    let flags = OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC;
    let master = rustix::pty::openpt(flags).map_err(|e| io("opening", "/dev/ptmx", e))?;
    rustix::pty::grantpt(&master).map_err(|e| io("granting", "a pty", e))?;
    rustix::pty::unlockpt(&master).map_err(|e| io("unlocking", "a pty", e))?;
    rustix::termios::tcsetwinsize(&master, winsize(rows, cols))
        .map_err(|e| io("setting the size of", "a pty", e))?;
    let slave = rustix::pty::ioctl_tiocgptpeer(&master, flags)
        .map_err(|e| io("opening the slave of", "a pty", e))?;
    Ok((master, slave))
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    rustix::pipe::pipe_with(PipeFlags::CLOEXEC)
        .map_err(|e| Error::io("creating", "a pipe", e.into()))
}

fn dup(fd: &OwnedFd) -> Result<OwnedFd> {
    dup_borrowed(fd.as_fd())
}

fn dup_borrowed(fd: std::os::fd::BorrowedFd<'_>) -> Result<OwnedFd> {
    rustix::io::fcntl_dupfd_cloexec(fd, 3)
        .map_err(|e| Error::io("duplicating", "a descriptor", e.into()))
}
