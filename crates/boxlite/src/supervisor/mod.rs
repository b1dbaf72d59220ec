//! The supervisor: one process per running box that owns its VM.
//!
//! The runtime starts it detached (its own session, so a caller's Ctrl-C or exit does not
//! reach it). It takes the box's liveness lock, boots the VM through the engine, connects to
//! the agent, then serves the box's socket ([`relay`]) so that any process can use the box.
//! It reports readiness (or the boot failure, with the console's tail) on a pipe the starting
//! process reads, records every state change, and when the VM ends, for whatever reason,
//! records how and cleans up. If the supervisor itself is killed, the VM dies with it
//! (`PR_SET_PDEATHSIG`) and the lock tells everyone else it is gone.

mod boot;
pub mod relay;

pub use boot::console_tail as boot_console_tail;

use std::fs::File;
use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol::client::Client;
use protocol::{ExecRequest, Hello};
use tokio::net::UnixListener;
use tokio::process::Child;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::engine::{self, VmSpec};
use crate::error::{Error, Result};
use crate::host;
use crate::layout::{BoxPaths, Layout};
use crate::liveness;
use crate::state::{BoxRecord, BoxState, StateDb, now_ms};

use relay::{Control, RelayStats};

/// How long the guest may take from the VM's start to the agent's hello. Generous: under
/// TCG on a loaded host the kernel alone can take many seconds.
pub const DEFAULT_BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a guest that was asked to power off gets before its VM is killed.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(15);

/// The environment variable that overrides [`DEFAULT_BOOT_TIMEOUT`] (seconds).
pub const BOOT_TIMEOUT_ENV: &str = "BOXLITE_BOOT_TIMEOUT";

/// What the supervisor is told to run.
#[derive(Debug, Clone)]
pub struct SupervisorArgs {
    /// The state directory.
    pub home: PathBuf,
    /// The box's id.
    pub id: String,
    /// The guest kernel.
    pub kernel: PathBuf,
    /// The agent initramfs.
    pub initramfs: PathBuf,
    /// QEMU, for the qemu engine.
    pub qemu: Option<PathBuf>,
    /// `boxlite-vmm`, for the kvm engine.
    pub vmm: Option<PathBuf>,
    /// How long the boot may take.
    pub boot_timeout: Duration,
    /// The pipe to report readiness on (inherited descriptor number).
    pub ready_fd: Option<i32>,
}

impl SupervisorArgs {
    /// The command-line form, as [`SupervisorArgs::parse`] reads it.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec![
            "--home".into(),
            self.home.display().to_string(),
            "--box".into(),
            self.id.clone(),
            "--kernel".into(),
            self.kernel.display().to_string(),
            "--initramfs".into(),
            self.initramfs.display().to_string(),
            "--boot-timeout-ms".into(),
            self.boot_timeout.as_millis().to_string(),
        ];
        if let Some(qemu) = &self.qemu {
            args.push("--qemu".into());
            args.push(qemu.display().to_string());
        }
        if let Some(vmm) = &self.vmm {
            args.push("--vmm".into());
            args.push(vmm.display().to_string());
        }
        if let Some(fd) = self.ready_fd {
            args.push("--ready-fd".into());
            args.push(fd.to_string());
        }
        args
    }

    /// Reads the arguments [`SupervisorArgs::to_args`] wrote.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<SupervisorArgs> {
        let mut home = None;
        let mut id = None;
        let mut kernel = None;
        let mut initramfs = None;
        let mut qemu = None;
        let mut vmm = None;
        let mut boot_timeout = DEFAULT_BOOT_TIMEOUT;
        let mut ready_fd = None;
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            let value = args
                .next()
                .ok_or_else(|| Error::InvalidInput(format!("supervisor: {flag} needs a value")))?;
            match flag.as_str() {
                "--home" => home = Some(PathBuf::from(value)),
                "--box" => id = Some(value),
                "--kernel" => kernel = Some(PathBuf::from(value)),
                "--initramfs" => initramfs = Some(PathBuf::from(value)),
                "--qemu" => qemu = Some(PathBuf::from(value)),
                "--vmm" => vmm = Some(PathBuf::from(value)),
                "--boot-timeout-ms" => {
                    boot_timeout = Duration::from_millis(value.parse().map_err(|_| {
                        Error::InvalidInput(format!("supervisor: bad --boot-timeout-ms {value}"))
                    })?);
                }
                "--ready-fd" => {
                    ready_fd = Some(value.parse().map_err(|_| {
                        Error::InvalidInput(format!("supervisor: bad --ready-fd {value}"))
                    })?);
                }
                other => {
                    return Err(Error::InvalidInput(format!(
                        "supervisor: unknown argument {other}"
                    )));
                }
            }
        }
        let missing = |what: &str| Error::InvalidInput(format!("supervisor: {what} is required"));
        Ok(SupervisorArgs {
            home: home.ok_or_else(|| missing("--home"))?,
            id: id.ok_or_else(|| missing("--box"))?,
            kernel: kernel.ok_or_else(|| missing("--kernel"))?,
            initramfs: initramfs.ok_or_else(|| missing("--initramfs"))?,
            qemu,
            vmm,
            boot_timeout,
            ready_fd,
        })
    }
}

/// The supervisor's `main`: runs the box described by the command line (without the
/// program name) until its VM ends.
pub fn main(args: impl IntoIterator<Item = String>) -> ExitCode {
    let args = match SupervisorArgs::parse(args) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("boxlite-supervisor: {e}");
            return ExitCode::from(2);
        }
    };
    let mut ready = Ready::new(args.ready_fd);
    // One thread: the VM is spawned from it, and PR_SET_PDEATHSIG fires when the spawning
    // *thread* ends, so it must live as long as the process.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            ready.fail(&format!("starting the supervisor's runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(supervise(&args, &mut ready)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("boxlite-supervisor: box {}: {e}", args.id);
            ready.fail(&e.to_string());
            ExitCode::FAILURE
        }
    }
}

/// The readiness pipe: one line, `ok` or `error: …`, then EOF.
struct Ready {
    pipe: Option<File>,
}

impl Ready {
    fn new(fd: Option<i32>) -> Ready {
        // SAFETY: the runtime passes `--ready-fd` naming the pipe it dup'ed onto that number
        // for us alone; nothing else in this process owns or closes it.
        let pipe = fd.map(|fd| File::from(unsafe { OwnedFd::from_raw_fd(fd) }));
        if let Some(pipe) = &pipe {
            // The VM must not inherit it: the starter reads until EOF, which would then
            // come only when the VM ends.
            let _ = rustix::io::fcntl_setfd(pipe, rustix::io::FdFlags::CLOEXEC);
        }
        Ready { pipe }
    }

    fn succeed(&mut self) {
        if let Some(mut pipe) = self.pipe.take() {
            let _ = pipe.write_all(b"ok\n");
        }
    }

    fn fail(&mut self, message: &str) {
        if let Some(mut pipe) = self.pipe.take() {
            let _ = pipe.write_all(format!("error: {message}\n").as_bytes());
        }
    }
}

/// Shared handle on the state database for the supervisor's tasks.
type Db = Arc<StateDb>;

fn with_db<T>(db: &Db, f: impl FnOnce(&StateDb) -> Result<T>) -> Result<T> {
    f(db)
}

/// How the VM ended.
#[derive(Debug)]
enum Ending {
    /// Someone asked for a stop.
    Stopped,
    /// The main command ended with this code.
    MainExited(Option<i32>),
    /// The guest powered off by itself.
    GuestPoweredOff,
    /// The VM died on its own.
    Crashed(String),
    /// SIGTERM: the VM was killed.
    Killed,
}

async fn supervise(args: &SupervisorArgs, ready: &mut Ready) -> Result<()> {
    let layout = Layout::new(&args.home);
    let paths = layout.box_dir(&args.id);
    let Some(_lock) = liveness::take(&paths.supervisor_lock())? else {
        return Err(Error::InvalidState {
            name: args.id.clone(),
            state: "running".into(),
            hint: "another supervisor owns it".into(),
        });
    };
    let db: Db = Arc::new(StateDb::open(&layout.state_db())?);
    let record = with_db(&db, |db| db.get_box(&args.id))?;
    let base = with_db(&db, |db| db.base_disk(&record.image_digest))?.ok_or_else(|| {
        Error::InvalidState {
            name: record.name.clone(),
            state: record.state.to_string(),
            hint: "its image's base disk is gone; remove the box and create it again".into(),
        }
    })?;
    let kvm = host::probe_kvm();
    let programs = engine::Programs {
        qemu: args.qemu.clone(),
        vmm: args.vmm.clone(),
    };
    let engine = engine::select(record.options.engine, &kvm, &programs)?;
    let spec = VmSpec {
        kernel: args.kernel.clone(),
        initramfs: args.initramfs.clone(),
        cpus: record.options.cpus,
        memory_mib: record.options.memory_mib,
        base_disk: base.path.clone(),
        box_disk: paths.disk(),
        console_log: paths.console_log(),
        vm_log: paths.vm_log(),
        agent_socket: paths.agent_socket(),
        hostname: record.name.clone(),
    };
    for socket in [paths.agent_socket(), paths.box_socket()] {
        remove_stale(&socket)?;
    }
    let pid = std::process::id();
    let describe = engine.describe();
    with_db(&db, |db| {
        db.update_box(&args.id, |r| {
            r.state = BoxState::Starting;
            r.supervisor_pid = Some(pid);
            r.vm_pid = None;
            r.started_at_ms = Some(now_ms());
            r.stopped_at_ms = None;
            r.engine = Some(describe.clone());
            r.exit_code = None;
            r.reason = None;
            r.boot_ms = None;
            Ok(())
        })
    })?;

    let console_start = file_len(&paths.console_log());
    let started = Instant::now();
    let mut vm = match boot::spawn(engine.as_ref(), &spec) {
        Ok(vm) => vm,
        Err(e) => {
            finish(&db, &record, &paths, Ending::Crashed(e.to_string()))?;
            return Err(e);
        }
    };
    let vm_pid = vm.id();
    with_db(&db, |db| {
        db.update_box(&args.id, |r| {
            r.vm_pid = vm_pid;
            Ok(())
        })
    })?;
    let (guest, hello) = match boot::connect(&mut vm, &spec, args.boot_timeout, console_start).await
    {
        Ok(connected) => connected,
        Err(e) => {
            let _ = vm.kill().await;
            finish(&db, &record, &paths, Ending::Crashed(first_line(&e)))?;
            return Err(e);
        }
    };
    let boot_ms = started.elapsed().as_secs_f64() * 1000.0;
    let listener = UnixListener::bind(paths.box_socket())
        .map_err(|e| Error::io(format!("listening on {}", paths.box_socket().display()), e))?;
    with_db(&db, |db| {
        db.update_box(&args.id, |r| {
            r.state = BoxState::Running;
            r.boot_ms = Some(boot_ms);
            Ok(())
        })
    })?;
    ready.succeed();

    let guest = Arc::new(guest);
    let ending = serve(
        &args.id, &record, &paths, &db, &mut vm, guest, hello, listener,
    )
    .await;
    let _ = std::fs::remove_file(paths.box_socket());
    finish(&db, &record, &paths, ending)
}

/// Serves the box until its VM ends; how it ended.
#[allow(clippy::too_many_arguments)]
async fn serve(
    id: &str,
    record: &BoxRecord,
    paths: &BoxPaths,
    db: &Db,
    vm: &mut Child,
    guest: Arc<Client>,
    hello: Hello,
    listener: UnixListener,
) -> Ending {
    let stats = Arc::new(RelayStats::default());
    let (control_tx, mut control_rx) = mpsc::channel::<Control>(4);
    let (main_tx, mut main_rx) = mpsc::channel::<Option<i32>>(1);
    if !record.options.command.is_empty() {
        let request = main_request(record);
        let console = paths.console_log();
        let guest = guest.clone();
        tokio::spawn(async move {
            let code = boot::run_main(&guest, request, &console).await;
            let _ = main_tx.send(code).await;
        });
    }
    let mut terminate = signal(SignalKind::terminate()).ok();
    let mut flushed = (0u64, 0u64);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut pending_replies = Vec::new();
    let ending = loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    tokio::spawn(relay::serve(
                        stream, guest.clone(), hello.clone(), control_tx.clone(), stats.clone(),
                    ));
                }
            }
            status = vm.wait() => {
                break match status {
                    Ok(status) if status.success() => Ending::GuestPoweredOff,
                    Ok(status) => Ending::Crashed(format!("the VM exited with {status}")),
                    Err(e) => Ending::Crashed(format!("waiting for the VM: {e}")),
                };
            }
            Some(control) = control_rx.recv() => {
                let Control::Shutdown(reply) = control;
                pending_replies.push(reply);
                break Ending::Stopped;
            }
            Some(code) = main_rx.recv() => break Ending::MainExited(code),
            () = recv_signal(&mut terminate) => break Ending::Killed,
            _ = tick.tick() => flush_stats(db, id, &stats, &mut flushed),
        }
    };
    flush_stats(db, id, &stats, &mut flushed);
    match ending {
        Ending::Killed | Ending::GuestPoweredOff | Ending::Crashed(_) => {
            let _ = vm.kill().await;
            ending
        }
        Ending::Stopped | Ending::MainExited(_) => {
            let _ = with_db(db, |db| {
                db.update_box(id, |r| {
                    r.state = BoxState::Stopping;
                    Ok(())
                })
            });
            power_off(vm, &guest).await;
            for reply in pending_replies {
                let _ = reply.shutting_down().await;
            }
            ending
        }
    }
}

/// Asks the guest to power off and waits for the VM to end, killing it after
/// [`SHUTDOWN_TIMEOUT`].
async fn power_off(vm: &mut Child, guest: &Client) {
    let asked = tokio::time::timeout(SHUTDOWN_TIMEOUT, async {
        let _ = guest.shutdown().await;
        let _ = vm.wait().await;
    })
    .await;
    if asked.is_err() {
        let _ = vm.kill().await;
    }
}

async fn recv_signal(signal: &mut Option<tokio::signal::unix::Signal>) {
    match signal {
        Some(signal) => {
            signal.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// Adds what the relay counted since the last flush to the box's record.
fn flush_stats(db: &Db, id: &str, stats: &RelayStats, flushed: &mut (u64, u64)) {
    use std::sync::atomic::Ordering;
    let now = (
        stats.execs.load(Ordering::Relaxed),
        stats.bytes.load(Ordering::Relaxed),
    );
    if now == *flushed {
        return;
    }
    let delta = (now.0 - flushed.0, now.1 - flushed.1);
    if with_db(db, |db| db.add_exec_stats(id, delta.0, delta.1)).is_ok() {
        *flushed = now;
    }
}

/// The main command's request: the box's command with the image's and box's defaults.
fn main_request(record: &BoxRecord) -> ExecRequest {
    ExecRequest {
        argv: record.options.command.clone(),
        env: record.options.env.clone(),
        cwd: record.options.working_dir.clone(),
        user: record.options.user.clone(),
        tty: None,
        timeout_ms: None,
    }
}

/// Records how the VM ended, and removes the box if it asked for that.
fn finish(db: &Db, record: &BoxRecord, paths: &BoxPaths, ending: Ending) -> Result<()> {
    let (state, reason, code) = match ending {
        Ending::Stopped => (BoxState::Stopped, "stopped".to_string(), None),
        Ending::MainExited(code) => (
            BoxState::Stopped,
            match code {
                Some(code) => format!("its command exited with code {code}"),
                None => "its command ended".to_string(),
            },
            code,
        ),
        Ending::GuestPoweredOff => (BoxState::Stopped, "the guest powered off".into(), None),
        Ending::Killed => (BoxState::Stopped, "killed".into(), None),
        Ending::Crashed(why) => (BoxState::Crashed, why, None),
    };
    let _ = std::fs::remove_file(paths.agent_socket());
    if record.options.auto_remove {
        with_db(db, |db| db.remove_box(&record.id))?;
        let _ = std::fs::remove_dir_all(paths.dir());
        return Ok(());
    }
    with_db(db, |db| {
        db.update_box(&record.id, |r| {
            r.state = state;
            r.reason = Some(reason.clone());
            r.exit_code = code;
            r.stopped_at_ms = Some(now_ms());
            r.supervisor_pid = None;
            r.vm_pid = None;
            Ok(())
        })
    })
    .map(|_| ())
}

fn remove_stale(socket: &std::path::Path) -> Result<()> {
    match std::fs::remove_file(socket) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("removing {}", socket.display()), e)),
    }
}

fn file_len(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

fn first_line(e: &Error) -> String {
    e.to_string().lines().next().unwrap_or_default().to_string()
}
