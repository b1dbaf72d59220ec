//! A box: start, stop, run commands, copy files.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use protocol::client::Client;
use protocol::{ExecRequest, TtySize};
use serde::Serialize;
use tokio::net::UnixStream;

use crate::copy;
use crate::defaults;
use crate::error::{Error, Result};
use crate::execution::Execution;
use crate::liveness;
use crate::options::BoxCommand;
use crate::runtime::{BoxInfo, Shared};
use crate::state::{BoxState, now_ms};
use crate::supervisor::SupervisorArgs;

/// How long [`LiteBox::stop`] lets the guest power off before forcing it.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(10);

/// How long a forced stop waits for the supervisor after each signal.
const KILL_PATIENCE: Duration = Duration::from_secs(5);

/// The descriptor number the supervisor finds its readiness pipe on.
const READY_FD: i32 = 3;

/// A handle on one box; any number of handles, in any processes, may use the same box.
pub struct LiteBox {
    shared: Arc<Shared>,
    id: String,
    name: String,
    client: tokio::sync::Mutex<Option<Arc<Client>>>,
}

impl std::fmt::Debug for LiteBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiteBox")
            .field("id", &self.id)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// What a box has done so far.
#[derive(Debug, Clone, Serialize)]
pub struct Metrics {
    /// From starting the VM to the agent's hello, in ms (the last boot).
    pub boot_ms: Option<f64>,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// vCPUs.
    pub cpus: u32,
    /// Commands run through the box's socket (the main command not counted).
    pub exec_count: u64,
    /// Bytes of stdin, stdout, stderr and copies passed through.
    pub bytes_streamed: u64,
    /// The supervisor's resident memory in KiB, while running.
    pub supervisor_rss_kib: Option<u64>,
    /// The VM process's resident memory in KiB, while running.
    pub vm_rss_kib: Option<u64>,
}

impl LiteBox {
    pub(crate) fn new(shared: Arc<Shared>, record: BoxInfo) -> LiteBox {
        LiteBox {
            shared,
            id: record.id,
            name: record.name,
            client: tokio::sync::Mutex::new(None),
        }
    }

    /// The box's id (64 hex digits).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The box's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The box's record, its state made truthful.
    pub async fn info(&self) -> Result<BoxInfo> {
        self.shared.record(&self.id)
    }

    /// Boots the box; returns once its agent answers. Starting a running box does nothing.
    pub async fn start(&self) -> Result<()> {
        let record = self.info().await?;
        if record.state.is_active() {
            return self.wait_until_running().await;
        }
        match self.boot().await {
            // Another process started it at the same moment (its supervisor holds the box):
            // that boot is this one's too.
            Err(e) if self.info().await?.state.is_active() => {
                self.wait_until_running().await.map_err(|_| e)
            }
            booted => booted,
        }
    }

    /// Waits while another process's start of this box is under way; an error if it ends
    /// without the box running.
    async fn wait_until_running(&self) -> Result<()> {
        loop {
            let record = self.info().await?;
            match record.state {
                BoxState::Running => return Ok(()),
                state if state.is_active() => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                state => {
                    return Err(Error::InvalidState {
                        name: record.name,
                        state: state.to_string(),
                        hint: format!(
                            "another start of it ended without it running ({})",
                            record.reason.unwrap_or_default()
                        ),
                    });
                }
            }
        }
    }

    /// Starts a supervisor for the box and waits for its answer.
    async fn boot(&self) -> Result<()> {
        let paths = self.shared.layout.box_dir(&self.id);
        let supervisor = self.shared.supervisor()?;
        let boot_timeout = self.shared.options.boot_timeout;
        let args = SupervisorArgs {
            home: self.shared.layout.home().to_path_buf(),
            id: self.id.clone(),
            kernel: self.shared.kernel()?,
            initramfs: self.shared.initramfs()?,
            qemu: self.shared.qemu(),
            vmm: self.shared.vmm(),
            boot_timeout,
            ready_fd: Some(READY_FD),
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(paths.supervisor_log())
            .map_err(|e| Error::io(format!("opening {}", paths.supervisor_log().display()), e))?;
        let log_start = log.metadata().map_or(0, |m| m.len());
        let (ready_read, ready_write) =
            rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                .map_err(|e| Error::io("creating the supervisor's readiness pipe", e.into()))?;
        let mut command = std::process::Command::new(&supervisor.program);
        command
            .args(&supervisor.args)
            .args(args.to_args())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let write_fd = ready_write.as_raw_fd();
        // SAFETY: runs in the child between fork and exec and calls only setsid(2), dup2(2)
        // and fcntl(2), which are async-signal-safe; `write_fd` is open in the child (it was
        // open in the parent at fork).
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
                // Its own session: the caller's terminal signals (Ctrl-C) must not reach it.
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let moved = if write_fd == READY_FD {
                    libc::fcntl(READY_FD, libc::F_SETFD, 0)
                } else {
                    libc::dup2(write_fd, READY_FD)
                };
                if moved < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(|e| {
            Error::io(
                format!("starting the supervisor {}", supervisor.program.display()),
                e,
            )
        })?;
        drop(ready_write);
        // Reaped in the background: the supervisor outlives this call, maybe this process.
        std::thread::spawn(move || {
            let _ = child.wait();
        });
        let answer = tokio::task::spawn_blocking(move || {
            let mut text = String::new();
            let mut pipe = std::fs::File::from(ready_read);
            pipe.read_to_string(&mut text).map(|_| text)
        })
        .await
        .map_err(|e| Error::Host(format!("waiting for the supervisor: {e}")))?
        .map_err(|e| Error::io("reading the supervisor's readiness pipe", e))?;
        if answer.trim_end() == "ok" {
            return Ok(());
        }
        if let Some(message) = answer.strip_prefix("error: ") {
            return Err(Error::Boot {
                message: format!("box {}: {}", self.name, message.trim_end()),
                console: String::new(),
            });
        }
        let log = crate::supervisor::boot_console_tail(&paths.supervisor_log(), log_start);
        Err(Error::Boot {
            message: format!(
                "box {}: the supervisor exited before the box was ready; its log ({}) ends:\n{}",
                self.name,
                paths.supervisor_log().display(),
                log.trim_end()
            ),
            console: crate::supervisor::boot_console_tail(&paths.console_log(), 0),
        })
    }

    /// Stops the box: asks the guest to power off, and forces it after [`DEFAULT_STOP_GRACE`].
    pub async fn stop(&self) -> Result<()> {
        self.stop_with_grace(DEFAULT_STOP_GRACE).await
    }

    /// Stops the box, forcing it after `grace` (zero: at once). Stopping a stopped box does
    /// nothing.
    pub async fn stop_with_grace(&self, grace: Duration) -> Result<()> {
        *self.client.lock().await = None;
        let record = self.info().await?;
        if !record.state.is_active() {
            return Ok(());
        }
        let lock = self.shared.layout.box_dir(&self.id).supervisor_lock();
        if !grace.is_zero() {
            let socket = self.shared.layout.box_dir(&self.id).box_socket();
            let _ = tokio::time::timeout(grace, async {
                let stream = UnixStream::connect(&socket).await.ok()?;
                let (client, _) = Client::handshake(stream).await.ok()?;
                client.shutdown().await.ok()
            })
            .await;
            if liveness::wait_free(&lock, grace).await? {
                return Ok(());
            }
        }
        // The supervisor kills the VM on SIGTERM and records the stop.
        for signal in [libc::SIGTERM, libc::SIGKILL] {
            let Some(pid) = self.info().await?.supervisor_pid else {
                break;
            };
            if !liveness::is_held(&lock)? {
                break;
            }
            // SAFETY: kill(2) with a pid the live supervisor recorded itself (it holds the
            // lock, so the pid is still its own) and a valid signal number.
            unsafe {
                libc::kill(pid as libc::pid_t, signal);
            }
            if liveness::wait_free(&lock, KILL_PATIENCE).await? {
                break;
            }
        }
        // A supervisor killed with SIGKILL could not record its end; `info` marks it
        // crashed, but this was a requested stop.
        self.shared.db(|db| {
            db.update_box(&self.id, |r| {
                if r.state.is_active() {
                    r.state = BoxState::Stopped;
                    r.reason = Some("killed".into());
                    r.stopped_at_ms = Some(now_ms());
                    r.supervisor_pid = None;
                    r.vm_pid = None;
                }
                Ok(())
            })
        })?;
        Ok(())
    }

    /// Removes the box and its files; a running box only with `force` (it is killed).
    pub async fn remove(&self, force: bool) -> Result<()> {
        let record = self.info().await?;
        if record.state.is_active() {
            if !force {
                return Err(Error::InvalidState {
                    name: record.name,
                    state: record.state.to_string(),
                    hint: "stop it first, or remove it with force (`boxlite rm -f`)".into(),
                });
            }
            self.stop_with_grace(Duration::ZERO).await?;
        }
        let paths = self.shared.layout.box_dir(&self.id);
        self.shared.db(|db| db.remove_box(&self.id))?;
        match std::fs::remove_dir_all(paths.dir()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("removing {}", paths.dir().display()), e)),
        }
    }

    /// Starts `command` in the running box.
    pub async fn exec(&self, command: BoxCommand) -> Result<Execution> {
        let record = self.running_record().await?;
        let argv = if command.argv.is_empty() {
            let image = self.shared.store.get(&record.image_digest)?;
            defaults::command_argv(&command, &image.config.config)
        } else {
            command.argv.clone()
        };
        if argv.is_empty() {
            return Err(Error::InvalidInput(
                "no command given, and the image has no default command".into(),
            ));
        }
        let mut env = record.options.env.clone();
        defaults::merge_env(&mut env, &command.env);
        let request = ExecRequest {
            argv: argv.clone(),
            env,
            cwd: command.working_dir.or(record.options.working_dir),
            user: command.user.or(record.options.user),
            tty: command.tty.map(|(rows, cols)| TtySize { rows, cols }),
            timeout_ms: command
                .timeout
                .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
        };
        let what = format!("{:?} in box {}", argv[0], self.name);
        let client = self.client().await?;
        let running = client
            .exec(request)
            .await
            .map_err(|e| Error::protocol(format!("running {what}"), e))?;
        Ok(Execution::new(running, what, client))
    }

    /// Copies `src` on the host to `dest` in the box: into `dest` when it is a directory in
    /// the box (or ends with `/`), else as `dest`.
    pub async fn copy_in(&self, src: &Path, dest: &str) -> Result<()> {
        let client = self.running_client().await?;
        copy::copy_in(&client, self, src, dest).await
    }

    /// Copies `src` in the box to `dest` on the host: into `dest` when it is a directory,
    /// else as `dest`. Device nodes and FIFOs are never created; the report lists them.
    pub async fn copy_out(&self, src: &str, dest: &Path) -> Result<copy::CopyOutReport> {
        let client = self.running_client().await?;
        copy::copy_out(&client, src, dest).await
    }

    /// What the box has done so far.
    pub async fn metrics(&self) -> Result<Metrics> {
        let record = self.info().await?;
        Ok(Metrics {
            boot_ms: record.boot_ms,
            memory_mib: record.options.memory_mib,
            cpus: record.options.cpus,
            exec_count: record.exec_count,
            bytes_streamed: record.bytes_streamed,
            supervisor_rss_kib: record.supervisor_pid.and_then(rss_kib),
            vm_rss_kib: record.vm_pid.and_then(rss_kib),
        })
    }

    async fn running_client(&self) -> Result<Arc<Client>> {
        self.running_record().await?;
        self.client().await
    }

    /// The box's record if it is running, else why it cannot be used.
    async fn running_record(&self) -> Result<BoxInfo> {
        let record = self.info().await?;
        if record.state != BoxState::Running {
            return Err(Error::InvalidState {
                name: record.name,
                state: record.state.to_string(),
                hint: "start it first (`boxlite start`)".into(),
            });
        }
        Ok(record)
    }

    /// The connection to the box's supervisor, made on first use and again after it broke.
    async fn client(&self) -> Result<Arc<Client>> {
        let mut slot = self.client.lock().await;
        if let Some(client) = slot.as_ref() {
            if client.closed_error().is_none() {
                return Ok(client.clone());
            }
        }
        let socket = self.shared.layout.box_dir(&self.id).box_socket();
        let stream = UnixStream::connect(&socket).await.map_err(|e| {
            Error::io(
                format!("connecting to box {} ({})", self.name, socket.display()),
                e,
            )
        })?;
        let (client, _hello) = Client::handshake(stream)
            .await
            .map_err(|e| Error::protocol(format!("greeting box {}", self.name), e))?;
        let client = Arc::new(client);
        *slot = Some(client.clone());
        Ok(client)
    }
}

/// The resident memory of process `pid` in KiB (`VmRSS` of /proc/PID/status).
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
