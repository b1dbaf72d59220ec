//! The supervisor: one process per running box that owns its VM.
//!
//! The runtime starts it detached ([`launch`]: its own session, so a caller's Ctrl-C or exit
//! does not reach it). It takes the box's liveness lock, boots the VM through the resolved
//! engine, connects to the agent, then serves the box's socket ([`relay`]) so that any
//! process can use the box. It reports readiness (or the boot failure, with the console's
//! tail) to the process that started it, records every state change, and when the VM ends,
//! for whatever reason, records how and cleans up. If the supervisor itself is killed, the
//! VM dies with it (`PR_SET_PDEATHSIG`) and the lock tells everyone else it is gone.

mod args;
mod boot;
pub(crate) mod console;
pub(crate) mod jail;
pub(crate) mod launch;
mod network;
mod relay;
pub(crate) mod volumes;

pub use args::SupervisorArgs;
pub(crate) use boot::console_tail;

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol::client::Client;
use protocol::{ExecRequest, Hello};
use tokio::net::UnixListener;
use tokio::process::Child;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::engine::{Device, VmSpec};
use crate::error::{Error, Needs, Result};
use crate::failpoint;
use crate::layout::{BoxPaths, Layout};
use crate::liveness;
use crate::peer;
use crate::recover;
use crate::state::{BoxRecord, BoxState, Ending, StateDb};
use console::ConsoleLog;
use launch::Ready;
use relay::{Control, RelayStats};

/// How long the supervisor waits after a failed accept (no descriptors or memory left)
/// before it tries again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How long a guest that was asked to power off gets before its VM is killed.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(15);

/// The supervisor's `main`: reads its [`SupervisorArgs`] from stdin and runs the box until
/// its VM ends.
pub fn main() -> ExitCode {
    // Everything the supervisor and its VM create (logs, sockets) is for this user alone.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    raise_descriptor_limit();
    let mut ready = Ready::take_stdout();
    let args = match SupervisorArgs::read(std::io::stdin().lock()) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("boxlite-supervisor: {e}");
            ready.fail(&e.to_string());
            return ExitCode::from(2);
        }
    };
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
    let id = args.id.clone();
    let outcome =
        Supervisor::open(args).and_then(|supervisor| runtime.block_on(supervisor.run(&mut ready)));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("boxlite-supervisor: box {id}: {e}");
            ready.fail(&e.to_string());
            ExitCode::FAILURE
        }
    }
}

/// Asks the agent to mount the box's volumes (none: nothing to ask); an agent without the
/// mount capability is an old initramfs.
async fn mount_volumes(
    guest: &Client,
    hello: &Hello,
    mounts: &[protocol::VolumeMount],
) -> Result<()> {
    if mounts.is_empty() {
        return Ok(());
    }
    if !hello
        .capabilities
        .iter()
        .any(|c| c == protocol::CAPABILITY_MOUNT)
    {
        return Err(Error::Boot {
            message: format!(
                "the guest agent ({}) cannot mount volumes; rebuild the initramfs \
                 (cargo xtask guest)",
                hello.agent_version
            ),
            console: String::new(),
        });
    }
    guest
        .mount(mounts)
        .await
        .map_err(|e| Error::protocol("mounting the box's volumes", e))
}

/// One box's supervisor, holding the box's liveness lock for its whole life.
struct Supervisor {
    args: SupervisorArgs,
    paths: BoxPaths,
    db: StateDb,
    record: BoxRecord,
    _lock: File,
}

impl Supervisor {
    /// Takes box `args.id`: its lock (refused while another supervisor holds it) and its
    /// record.
    fn open(args: SupervisorArgs) -> Result<Supervisor> {
        let layout = Layout::new(&args.home);
        let paths = layout.box_dir(&args.id);
        let Some(lock) = liveness::take(&paths.supervisor_lock())? else {
            return Err(Error::InvalidState {
                name: args.id.clone(),
                state: BoxState::Running,
                needs: Needs::Unowned,
            });
        };
        let db = StateDb::open(&layout.state_db())?;
        let record = db.get_box(&args.id)?;
        Ok(Supervisor {
            args,
            paths,
            db,
            record,
            _lock: lock,
        })
    }

    /// Boots the box, serves it until its VM ends, and records how it ended.
    async fn run(&self, ready: &mut Ready) -> Result<()> {
        remove_stale(&self.paths.box_socket())?;
        // The agent channel and the serial console: connected pairs, one end of each
        // inherited by the VM process (at the same descriptor number).
        let (channel, theirs) = std::os::unix::net::UnixStream::pair()
            .map_err(|e| Error::io("creating", "the agent channel", e))?;
        let (console_ours, console_theirs) = std::os::unix::net::UnixStream::pair()
            .map_err(|e| Error::io("creating", "the console channel", e))?;
        let started_network = network::BoxNetwork::start(
            &self.record.options.network,
            &self.args.dns_upstream,
            self.paths.dir(),
        );
        let (mut network, net_vm) = match started_network {
            Ok(Some((network, vm_side))) => (Some(network), Some(vm_side)),
            Ok(None) => (None, None),
            Err(e) => {
                self.finish(&Ending::Crashed(first_line(&e)))?;
                return Err(e);
            }
        };
        let started_volumes = volumes::BoxVolumes::start(
            &self.record,
            &Layout::new(&self.args.home),
            &self.db,
            &self.paths,
            self.args.virtiofsd.as_deref(),
            self.args.jail,
            2,
        );
        let (box_volumes, volumes_vm) = match started_volumes {
            Ok(started) => started,
            Err(e) => {
                stop_network(network);
                self.finish(&Ending::Crashed(first_line(&e)))?;
                return Err(e);
            }
        };
        let spec = self.spec(
            theirs.as_raw_fd(),
            console_theirs.as_raw_fd(),
            net_vm.as_ref(),
            &volumes_vm,
        )?;
        let id = &self.record.id;
        self.db
            .mark_starting(id, std::process::id(), &self.args.engine.describe())?;
        let abort_at = self.args.abort_at.as_deref();
        failpoint::hit(abort_at, failpoint::START_STARTING);
        let log = ConsoleLog::open(&self.paths.console_log(), self.args.console_log_limit)?;
        let mut console = boot::Console {
            start: log.mark(),
            path: self.paths.console_log(),
            pump: Some(tokio::spawn(log.clone().pump(console_ours))),
            log: log.clone(),
        };
        let started = Instant::now();
        jail::forget(self.paths.dir());
        // The channels go to the VM process through the jail, at the numbers the spec names.
        let mut channels: Vec<OwnedFd> = vec![theirs.into(), console_theirs.into()];
        channels.extend(net_vm.map(|vm_side| OwnedFd::from(vm_side.stream)));
        channels.extend(volumes_vm.filesystems.into_iter().map(|(fd, _)| fd));
        let confined = if self.args.jail {
            jail::for_box(&spec, &self.args.engine, id, channels)
        } else {
            Ok(jail::unconfined(&spec, channels))
        };
        let spawned = confined.and_then(|(jailed_spec, jail, notes)| {
            let (vm, mut jailed) =
                boot::spawn(self.args.engine.command(&jailed_spec), &spec, jail)?;
            for note in notes {
                jailed
                    .protections_mut()
                    .set(&note.name, note.active, note.reason);
            }
            Ok((vm, jailed))
        });
        let (mut vm, mut jailed) = match spawned {
            Ok(spawned) => spawned,
            Err(e) => {
                stop_network(network);
                box_volumes.stop();
                self.finish(&Ending::Crashed(e.to_string()))?;
                return Err(e);
            }
        };
        // The engine's own process: in a PID namespace of its own it is the child of the
        // process the supervisor spawned.
        let vm_pid = vm.id().map(::jail::program_pid);
        // Held for the VM's life: it names the engine's process and no later one, so that
        // process can be killed first (the one between then ends with it) without a race.
        let program = vm_pid
            .filter(|pid| Some(*pid) != vm.id())
            .and_then(|pid| rustix::process::Pid::from_raw(pid as i32))
            .and_then(|pid| {
                rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
            });
        self.db.mark_vm_started(id, vm_pid)?;
        failpoint::hit(abort_at, failpoint::START_VM);
        let connected = boot::connect(
            &mut vm,
            &spec,
            channel,
            self.args.boot_timeout,
            &mut console,
        )
        .await;
        let connected = match connected {
            Ok((guest, hello)) => mount_volumes(&guest, &hello, box_volumes.mounts())
                .await
                .map(|()| (guest, hello)),
            Err(e) => Err(e),
        };
        let (guest, hello) = match connected {
            Ok(connected) => connected,
            Err(e) => {
                kill(&mut vm, program.as_ref()).await;
                let _ = jailed.finish();
                stop_network(network);
                box_volumes.stop();
                self.finish(&Ending::Crashed(first_line(&e)))?;
                return Err(e);
            }
        };
        if let Some(pid) = vm_pid {
            jail::observe(jailed.protections_mut(), pid);
        }
        // Best effort: the box runs whether or not its report could be written.
        let _ = jail::record(self.paths.dir(), jailed.protections());
        let boot_ms = started.elapsed().as_secs_f64() * 1000.0;
        let socket = self.paths.box_socket();
        let listener =
            UnixListener::bind(&socket).map_err(|e| Error::io("listening on", &socket, e))?;
        self.db.mark_running(id, boot_ms)?;
        failpoint::hit(abort_at, failpoint::START_RUNNING);
        ready.succeed();
        let ending = self
            .serve(
                RunningVm {
                    child: &mut vm,
                    program: program.as_ref(),
                },
                Arc::new(guest),
                hello,
                listener,
                log,
                &mut network,
            )
            .await;
        let _ = std::fs::remove_file(&socket);
        stop_network(network);
        box_volumes.stop();
        // The VM has been reaped: its cgroup is empty.
        let _ = jailed.finish();
        self.finish(&ending)
    }

    /// The VM the box runs in: the image's base disk (`/dev/vda`, read-only), the box's own
    /// disk (`/dev/vdb`), the console log, the agent channel and the network card.
    fn spec(
        &self,
        agent_fd: RawFd,
        console_fd: RawFd,
        net: Option<&network::VmSide>,
        volumes: &volumes::VmSide,
    ) -> Result<VmSpec> {
        let base = self
            .db
            .base_disk(&self.record.image_digest)?
            .ok_or_else(|| Error::InvalidState {
                name: self.record.name.clone(),
                state: self.record.state,
                needs: Needs::BaseDisk,
            })?;
        // Base disks were ext4 before the runtime wrote them as EROFS; either boots.
        let root_fstype = match base.path.extension().and_then(|e| e.to_str()) {
            Some("ext4") => "ext4",
            _ => "erofs",
        };
        let mut devices = vec![
            Device::Disk {
                path: base.path,
                read_only: true,
            },
            Device::Disk {
                path: self.paths.disk(),
                read_only: false,
            },
        ];
        // Named volumes follow the box's disk: `/dev/vdc`, `/dev/vdd`, … as the mounts say.
        devices.extend(volumes.disks.iter().cloned());
        devices.push(Device::Agent { fd: agent_fd });
        devices.push(Device::Console { fd: console_fd });
        for (fd, tag) in &volumes.filesystems {
            devices.push(Device::Fs {
                fd: fd.as_raw_fd(),
                tag: tag.clone(),
            });
        }
        if let Some(net) = net {
            devices.push(Device::Net {
                fd: net.stream.as_raw_fd(),
                mac: netstack::addr::GUEST_MAC,
            });
        }
        let spec = VmSpec {
            root_fstype,
            kernel: self.args.kernel.clone(),
            initramfs: self.args.initramfs.clone(),
            cpus: self.record.options.cpus,
            memory_mib: self.record.options.memory_mib,
            hostname: self.record.name.clone(),
            vm_log: self.paths.vm_log(),
            devices,
            net: net.map(|net| net.guest.clone()),
        };
        if spec.virtio_devices() > self.args.engine.max_devices() {
            return Err(Error::InvalidInput(format!(
                "box {}: {} virtio devices, but the {} engine has {}; attach fewer volumes",
                self.record.name,
                spec.virtio_devices(),
                self.args.engine.name(),
                self.args.engine.max_devices()
            )));
        }
        Ok(spec)
    }

    /// Serves the box until its VM ends; how it ended.
    async fn serve(
        &self,
        vm: RunningVm<'_>,
        guest: Arc<Client>,
        hello: Hello,
        listener: UnixListener,
        log: ConsoleLog,
        network: &mut Option<network::BoxNetwork>,
    ) -> Ending {
        let RunningVm { child: vm, program } = vm;
        let stats = Arc::new(RelayStats::default());
        let (control_tx, mut control_rx) = mpsc::channel::<Control>(4);
        let (main_tx, mut main_rx) = mpsc::channel::<Option<i32>>(1);
        if !self.record.options.command.is_empty() {
            let request = self.main_request();
            let guest = guest.clone();
            tokio::spawn(async move {
                let code = boot::run_main(&guest, request, log).await;
                let _ = main_tx.send(code).await;
            });
        }
        let mut terminate = signal(SignalKind::terminate()).ok();
        let mut flushed = (0u64, 0u64);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut pending_replies = Vec::new();
        let ending = loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) if peer::is_trusted(&stream) => {
                        tokio::spawn(relay::serve(
                            stream, guest.clone(), hello.clone(), control_tx.clone(),
                            stats.clone(),
                        ));
                    }
                    Ok(_) => eprintln!(
                        "boxlite-supervisor: refused a connection from another user"
                    ),
                    // Out of descriptors or memory: wait rather than spin on the error.
                    Err(_) => tokio::time::sleep(ACCEPT_BACKOFF).await,
                },
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
                _ = tick.tick() => {
                    self.flush_stats(&stats, &mut flushed);
                    if let Some(network) = network.as_mut() {
                        network.report();
                    }
                    if let Some(ending) = agent_gone(&guest) {
                        break ending;
                    }
                }
            }
        };
        self.flush_stats(&stats, &mut flushed);
        match ending {
            Ending::Killed | Ending::GuestPoweredOff | Ending::Crashed(_) => {
                // Nothing more can be asked of a guest whose channel is gone or that ended.
                kill(vm, program).await;
            }
            Ending::Stopped | Ending::MainExited(_) => {
                let _ = self.db.mark_stopping(&self.record.id);
                power_off(vm, program, &guest).await;
                for reply in pending_replies {
                    let _ = reply.shutting_down().await;
                }
            }
        }
        ending
    }

    /// Adds what the relay counted since the last flush to the box's record.
    fn flush_stats(&self, stats: &RelayStats, flushed: &mut (u64, u64)) {
        use std::sync::atomic::Ordering;
        let now = (
            stats.execs.load(Ordering::Relaxed),
            stats.bytes.load(Ordering::Relaxed),
        );
        if now == *flushed {
            return;
        }
        let delta = (now.0 - flushed.0, now.1 - flushed.1);
        if self
            .db
            .add_exec_stats(&self.record.id, delta.0, delta.1)
            .is_ok()
        {
            *flushed = now;
        }
    }

    /// The main command's request: the box's command with the image's and box's defaults.
    fn main_request(&self) -> ExecRequest {
        let options = &self.record.options;
        ExecRequest {
            argv: options.command.clone(),
            env: options.env.clone(),
            cwd: options.working_dir.clone(),
            user: options.user.clone(),
            tty: None,
            timeout_ms: None,
        }
    }

    /// Records how the VM ended, and removes the box if it asked for that.
    fn finish(&self, ending: &Ending) -> Result<()> {
        if self.record.options.auto_remove {
            self.db.remove_box(&self.record.id)?;
            let _ = recover::discard(&Layout::new(&self.args.home), self.paths.dir());
            return Ok(());
        }
        self.db.mark_ended(&self.record.id, ending)
    }
}

/// The VM process a supervisor serves: the child it spawned and, when a process stands
/// between (a PID namespace), the engine's own process.
struct RunningVm<'a> {
    child: &'a mut Child,
    program: Option<&'a OwnedFd>,
}

/// How the box ends when its agent's connection broke while the VM still runs (a guest that
/// closed or garbled its channel): recorded crashed with the reason, not left `running` and
/// unusable.
fn agent_gone(guest: &Client) -> Option<Ending> {
    guest.closed_error().map(|e| {
        Ending::Crashed(format!(
            "the guest agent's connection broke: {}",
            crate::text::printable(&e.to_string())
        ))
    })
}

/// Asks the guest to power off and waits for the VM to end, killing it after
/// [`SHUTDOWN_TIMEOUT`].
async fn power_off(vm: &mut Child, program: Option<&OwnedFd>, guest: &Client) {
    let asked = tokio::time::timeout(SHUTDOWN_TIMEOUT, async {
        let _ = guest.shutdown().await;
        let _ = vm.wait().await;
    })
    .await;
    if asked.is_err() {
        kill(vm, program).await;
    }
}

/// Kills the VM: the engine's own process first (when a process stands between, in its PID
/// namespace), so the one between reaps it and ends, then the spawned process itself.
async fn kill(vm: &mut Child, program: Option<&OwnedFd>) {
    if let Some(program) = program {
        let _ = rustix::process::pidfd_send_signal(program, rustix::process::Signal::KILL);
        // The process between reaps it and ends; killed with it, it would leave the
        // engine to the host's init to reap.
        if tokio::time::timeout(BETWEEN_PATIENCE, vm.wait())
            .await
            .is_ok()
        {
            return;
        }
    }
    let _ = vm.kill().await;
}

/// How long the process between a VM's PID namespace and the supervisor gets to end once
/// the engine was killed.
const BETWEEN_PATIENCE: Duration = Duration::from_secs(2);

/// The descriptors a supervisor wants: the network stack's host sockets (its flow caps,
/// about 900 at most) plus the relay's connections and the VM's channels; the usual soft
/// limit of 1024 is too close.
const NOFILE_WANTED: u64 = 4096;

/// Raises the soft descriptor limit towards [`NOFILE_WANTED`], within the hard limit.
fn raise_descriptor_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    let wanted = limit
        .maximum
        .map_or(NOFILE_WANTED, |max| max.min(NOFILE_WANTED));
    if limit.current.is_some_and(|current| current < wanted) {
        limit.current = Some(wanted);
        let _ = setrlimit(Resource::Nofile, limit);
    }
}

/// Stops the box's network, if it has one.
fn stop_network(network: Option<network::BoxNetwork>) {
    if let Some(network) = network {
        network.stop();
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

fn remove_stale(socket: &std::path::Path) -> Result<()> {
    match std::fs::remove_file(socket) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("removing", socket, e)),
    }
}

fn first_line(e: &Error) -> String {
    e.to_string().lines().next().unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_broken_agent_connection_ends_the_box_as_crashed() {
        let (host, guest) = tokio::net::UnixStream::pair().unwrap();
        let (hang_up, hung_up) = tokio::sync::oneshot::channel::<()>();
        let agent = tokio::spawn(async move {
            let conn = protocol::server::Connection::start(guest, Hello::new("test", 0))
                .await
                .unwrap();
            let _ = hung_up.await;
            drop(conn);
        });
        let (client, _) = Client::handshake(host).await.unwrap();
        assert!(agent_gone(&client).is_none());
        hang_up.send(()).unwrap();
        agent.await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let ending = loop {
            if let Some(ending) = agent_gone(&client) {
                break ending;
            }
            assert!(
                Instant::now() < deadline,
                "the closed connection went unnoticed"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert!(
            matches!(&ending, Ending::Crashed(why) if why.contains("agent's connection")),
            "{ending:?}"
        );
    }
}
