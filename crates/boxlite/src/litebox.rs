//! A box: start, stop, run commands, copy files.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use protocol::client::Client;
use protocol::{ExecRequest, TtySize};
use rustix::process::Signal;
use serde::Serialize;
use tokio::net::UnixStream;

use crate::copy;
use crate::defaults;
use crate::error::{Error, Needs, Result};
use crate::execution::Execution;
use crate::failpoint;
use crate::info::BoxInfo;
use crate::liveness;
use crate::options::BoxCommand;
use crate::recover;
use crate::runtime::Shared;
use crate::state::{BoxRecord, BoxState, Ending};
use crate::supervisor::SupervisorArgs;
use crate::supervisor::console_tail;
use crate::supervisor::launch::{self, Answer};

/// How long [`LiteBox::stop`] lets the guest power off before forcing it.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(10);

/// How long a forced stop waits for the supervisor after each signal.
const KILL_PATIENCE: Duration = Duration::from_secs(5);

/// How many times [`LiteBox::remove`] stops a box that a racing start keeps taking.
const REMOVE_ATTEMPTS: usize = 3;

/// How [`LiteBox::remove`] treats a box that is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RemoveMode {
    /// Refuse to remove a running box.
    IfStopped,
    /// Kill a running box first.
    Kill,
}

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
#[non_exhaustive]
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
    pub(crate) fn new(shared: Arc<Shared>, record: BoxRecord) -> LiteBox {
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

    /// The box's record, its state made truthful, with the protections of its last boot.
    pub async fn info(&self) -> Result<BoxInfo> {
        let mut info = BoxInfo::from(self.record().await?);
        let dir = self.shared.layout.box_dir(&self.id);
        info.protections = crate::supervisor::jail::recorded(dir.dir());
        if info.state.is_active() {
            info.network = crate::network::recorded(dir.dir());
        }
        Ok(info)
    }

    /// The box's console log: the guest kernel's messages and its main command's output.
    pub fn console_log(&self) -> PathBuf {
        self.shared.layout.box_dir(&self.id).console_log()
    }

    /// The box's console log files that exist, oldest first: the rotated one
    /// (`console.log.1`, see [`crate::RuntimeOptions::console_log_limit`]), then the current.
    pub fn console_logs(&self) -> Vec<PathBuf> {
        let current = self.console_log();
        [crate::supervisor::console::rotated(&current), current]
            .into_iter()
            .filter(|p| p.is_file())
            .collect()
    }

    /// The box's record, read on a blocking thread.
    async fn record(&self) -> Result<BoxRecord> {
        let id = self.id.clone();
        self.shared.blocking(move |s| s.record(&id)).await
    }

    /// Boots the box; returns once its agent answers. Starting a running box does nothing.
    pub async fn start(&self) -> Result<()> {
        let record = self.record().await?;
        if record.state.is_active() {
            return self.wait_until_running().await;
        }
        match self.boot().await {
            // Another process started it at the same moment (its supervisor holds the box):
            // that boot is this one's too.
            Err(e) if self.record().await?.state.is_active() => {
                self.wait_until_running().await.map_err(|_| e)
            }
            booted => booted,
        }
    }

    /// Waits while another process's start of this box is under way; an error if it ends
    /// without the box running.
    async fn wait_until_running(&self) -> Result<()> {
        loop {
            let record = self.record().await?;
            match record.state {
                BoxState::Running => return Ok(()),
                state if state.is_active() => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                state => {
                    return Err(Error::InvalidState {
                        name: record.name,
                        state,
                        needs: Needs::StartFailed,
                    });
                }
            }
        }
    }

    /// Starts a supervisor for the box and waits for its answer.
    async fn boot(&self) -> Result<()> {
        let id = self.id.clone();
        let name = self.name.clone();
        self.shared
            .blocking(move |shared| {
                let record = shared.db.get_box(&id)?;
                let paths = shared.layout.box_dir(&id);
                let args = SupervisorArgs {
                    home: shared.layout.home().to_path_buf(),
                    id,
                    kernel: shared.kernel()?,
                    initramfs: shared.initramfs()?,
                    engine: shared.resolve_engine(record.options.engine)?,
                    boot_timeout: shared.options.boot_timeout,
                    console_log_limit: shared.options.console_log_limit,
                    jail: shared.options.jail,
                    dns_upstream: shared.options.dns_upstream.clone(),
                    virtiofsd: if record
                        .options
                        .volumes
                        .iter()
                        .any(|v| matches!(v.source, crate::volume::VolumeSource::Bind { .. }))
                    {
                        Some(shared.virtiofsd()?)
                    } else {
                        None
                    },
                    abort_at: shared.options.abort_at.clone(),
                };
                let supervisor = shared.supervisor()?;
                let log = paths.supervisor_log();
                let log_start = std::fs::metadata(&log).map_or(0, |m| m.len());
                match launch::launch(&supervisor, &args, &log)? {
                    Answer::Ready => Ok(()),
                    Answer::Failed(message) => Err(Error::Boot {
                        message: format!("box {name}: {message}"),
                        console: String::new(),
                    }),
                    Answer::Silent => Err(Error::Boot {
                        message: format!(
                            "box {name}: the supervisor exited before the box was ready; its \
                             log ({}) ends:\n{}",
                            log.display(),
                            console_tail(&log, log_start).trim_end()
                        ),
                        console: console_tail(&paths.console_log(), 0),
                    }),
                }
            })
            .await
    }

    /// Stops the box: asks the guest to power off, and forces it after [`DEFAULT_STOP_GRACE`].
    pub async fn stop(&self) -> Result<()> {
        self.stop_with_grace(DEFAULT_STOP_GRACE).await
    }

    /// Stops the box, forcing it after `grace` (zero: at once). Stopping a stopped box does
    /// nothing. A forced stop loses what the guest had not written out, named volumes'
    /// included: give a box with named volumes time to shut down.
    pub async fn stop_with_grace(&self, grace: Duration) -> Result<()> {
        *self.client.lock().await = None;
        let record = self.record().await?;
        if !record.state.is_active() {
            return Ok(());
        }
        let lock = self.shared.layout.box_dir(&self.id).supervisor_lock();
        if !grace.is_zero() {
            let socket = self.shared.layout.box_dir(&self.id).box_socket();
            let _ = tokio::time::timeout(grace, async {
                let stream = UnixStream::connect(&socket)
                    .await
                    .ok()
                    .filter(crate::peer::is_trusted)?;
                let (client, _) = Client::handshake(stream).await.ok()?;
                client.shutdown().await.ok()
            })
            .await;
            if liveness::wait_free(&lock, grace).await? {
                return Ok(());
            }
        }
        // The supervisor kills the VM on SIGTERM and records the stop.
        for signal in [Signal::TERM, Signal::KILL] {
            let Some(pid) = self.record().await?.supervisor_pid else {
                break;
            };
            // Sent only while the supervisor holds the box's lock as `pid`: never to a
            // process that merely reuses a dead supervisor's pid.
            if !liveness::signal_holder(&lock, pid, signal)? {
                break;
            }
            if liveness::wait_free(&lock, KILL_PATIENCE).await? {
                break;
            }
        }
        // A supervisor killed with SIGKILL could not record its end; `info` would mark it
        // crashed, but this was a requested stop.
        let id = self.id.clone();
        self.shared
            .blocking(move |s| {
                s.db.mark_ended_if_gone(
                    &id,
                    || Ok(!liveness::is_held(&lock)?),
                    |_, _| Ending::Killed,
                )
            })
            .await
            .map(drop)
    }

    /// Removes the box and its files; a running box only with [`RemoveMode::Kill`].
    ///
    /// Holds the box's lock throughout, as its supervisor does, so a start racing it either
    /// finds no box or makes this fail; the directory leaves `boxes/` in one rename into the
    /// trash, so a crash at any step leaves nothing a later open does not remove.
    pub async fn remove(&self, mode: RemoveMode) -> Result<()> {
        for _ in 0..REMOVE_ATTEMPTS {
            let record = self.record().await?;
            if record.state.is_active() {
                if mode != RemoveMode::Kill {
                    return Err(Error::InvalidState {
                        name: record.name,
                        state: record.state,
                        needs: Needs::NotRunning,
                    });
                }
                self.stop_with_grace(Duration::ZERO).await?;
            }
            let id = self.id.clone();
            if self.shared.blocking(move |s| remove_locked(s, &id)).await? {
                return Ok(());
            }
            // A supervisor took the box between the check and the lock: look again.
        }
        let record = self.record().await?;
        Err(Error::InvalidState {
            name: record.name,
            state: record.state,
            needs: Needs::NotRunning,
        })
    }

    /// Starts `command` in the running box.
    pub async fn exec(&self, command: BoxCommand) -> Result<Execution> {
        command.validate()?;
        let record = self.running_record().await?;
        let argv = if command.argv.is_empty() {
            let digest = record.image_digest.clone();
            let image = self
                .shared
                .blocking(move |s| Ok(s.store.get(&digest)?))
                .await?;
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
        self.copy_out_with(src, dest, &copy::CopyOutOptions::default())
            .await
    }

    /// [`LiteBox::copy_out`] with its bounds and owners chosen.
    pub async fn copy_out_with(
        &self,
        src: &str,
        dest: &Path,
        options: &copy::CopyOutOptions,
    ) -> Result<copy::CopyOutReport> {
        let client = self.running_client().await?;
        copy::copy_out(&client, src, dest, options).await
    }

    /// What the box has done so far.
    pub async fn metrics(&self) -> Result<Metrics> {
        let record = self.record().await?;
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
    async fn running_record(&self) -> Result<BoxRecord> {
        let record = self.record().await?;
        if record.state != BoxState::Running {
            return Err(Error::InvalidState {
                name: record.name,
                state: record.state,
                needs: Needs::Running,
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
        let stream = UnixStream::connect(&socket)
            .await
            .map_err(|e| Error::io("connecting to the box at", &socket, e))?;
        // A socket another user bound (in a home that was not private) is not our box.
        if !crate::peer::is_trusted(&stream) {
            return Err(Error::io(
                "connecting to the box at",
                &socket,
                std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    "the socket is served by another user",
                ),
            ));
        }
        let (client, _hello) = Client::handshake(stream)
            .await
            .map_err(|e| Error::protocol(format!("greeting box {}", self.name), e))?;
        let client = Arc::new(client);
        *slot = Some(client.clone());
        Ok(client)
    }
}

/// Removes box `id`, its row and then its directory, holding its lock; `false` if a
/// supervisor holds the lock.
fn remove_locked(shared: &Shared, id: &str) -> Result<bool> {
    let abort_at = shared.options.abort_at.as_deref();
    let paths = shared.layout.box_dir(id);
    // A box whose directory is gone (a crash of an older boxlite's create) has no lock, and
    // no supervisor could run it.
    let lock = match liveness::take(&paths.supervisor_lock()) {
        Ok(Some(lock)) => Some(lock),
        Ok(None) => return Ok(false),
        Err(_) if !paths.dir().exists() => None,
        Err(e) => return Err(e),
    };
    // Under the lock no supervisor runs: a row still saying `running` is a crashed one's.
    shared.db.remove_box(id)?;
    failpoint::hit(abort_at, failpoint::RM_ROW);
    let moved = recover::to_trash(&shared.layout, paths.dir())?;
    // A supervisor waiting for the lock gets it now, finds no box and ends.
    drop(lock);
    failpoint::hit(abort_at, failpoint::RM_TRASHED);
    if let Some(moved) = moved {
        recover::delete_tree(&moved, abort_at)?;
    }
    Ok(true)
}

/// The resident memory of process `pid` in KiB (`VmRSS` of /proc/PID/status).
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
