//! The `boxlite-guest` executable: PID 1 of a box's VM, or a protocol server on a Unix socket
//! for tests on the host. See the library's documentation for what each mode does.

mod boot_timer;

use std::path::{Path, PathBuf};
use std::time::Duration;

use guest::agent::{Agent, Ending};
use guest::fdio::FdStream;
use guest::root::BoxRoot;
use guest::{cmdline, init, network};
use rustix::fs::{Mode, OFlags};
use tokio::net::UnixListener;
use tokio::sync::mpsc;

const USAGE: &str = "\
usage:
  boxlite-guest                        PID 1 of the VM: settings from the kernel command line
  boxlite-guest --listen PATH [--root DIR]
                                       serve the protocol on a Unix socket; commands run in DIR
                                       (chrooted when running as root and DIR is not /)
  boxlite-guest --pid1 [--cmdline TEXT] [--listen PATH]
                                       PID-1 mode outside a VM (in a PID namespace, for tests):
                                       TEXT replaces /proc/cmdline, PATH replaces the console port";

/// Pause before reopening the console port after the host went away.
const REOPEN_DELAY: Duration = Duration::from_millis(100);

#[derive(Default)]
struct Args {
    pid1: bool,
    cmdline: Option<String>,
    listen: Option<PathBuf>,
    root: Option<PathBuf>,
}

fn parse_args(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut args = Args::default();
    while let Some(arg) = argv.next() {
        let mut value = |name: &str| argv.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--pid1" => args.pid1 = true,
            "--cmdline" => args.cmdline = Some(value("--cmdline")?),
            "--listen" => args.listen = Some(PathBuf::from(value("--listen")?)),
            "--root" => args.root = Some(PathBuf::from(value("--root")?)),
            "--version" => {
                println!("boxlite-guest {}", env!("CARGO_PKG_VERSION"));
                std::process::exit(0);
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

fn main() {
    let is_init = std::process::id() == 1;
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        // The kernel hands init the command-line words it does not know; as init, ignore them.
        Err(e) if is_init => {
            eprintln!("boxlite-guest: ignoring arguments: {e}");
            Args::default()
        }
        Err(e) => {
            eprintln!("boxlite-guest: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    if is_init || args.pid1 {
        run_init(&args);
    }
    let Some(listen) = args.listen.as_deref() else {
        eprintln!("boxlite-guest: not PID 1, so --listen PATH is required\n{USAGE}");
        std::process::exit(2);
    };
    if let Err(e) = run_host(listen, args.root.as_deref().unwrap_or(Path::new("/"))) {
        eprintln!("boxlite-guest: {e}");
        std::process::exit(1);
    }
}

/// PID 1: mounts, root, then serve the console port until the host shuts the box down.
fn run_init(args: &Args) -> ! {
    if let Err(e) = init::mount_system() {
        init::fatal(&e.to_string());
    }
    let text = match &args.cmdline {
        Some(text) => text.clone(),
        None => init::read_cmdline().unwrap_or_else(|e| init::fatal(&e.to_string())),
    };
    let (config, warnings) =
        cmdline::parse(&text).unwrap_or_else(|e| init::fatal(&format!("kernel command line: {e}")));
    for warning in warnings {
        eprintln!("boxlite-guest: warning: {warning}");
    }
    let root = init::build_root(&config).map_err(|e| {
        let message = format!("the box's root could not be built: {e}");
        eprintln!("boxlite-guest: error: {message}");
        message
    });
    // After the root (a failed one does not stop it) and before any command can run. A
    // failure is reported like a failed root: the box still boots, without a network.
    if let Err(e) = network::configure(config.net.as_ref()) {
        eprintln!("boxlite-guest: error: the network could not be configured: {e}");
    }
    let agent = Agent::new(root).unwrap_or_else(|e| init::fatal(&format!("starting: {e}")));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| init::fatal(&format!("starting the async runtime: {e}")));
    let listen = args.listen.clone();
    // Unless a socket replaces it (tests), find the port before serving.
    let port = match listen {
        Some(_) => PathBuf::new(),
        None => init::port_path(&config.port).unwrap_or_else(|e| init::fatal(&e.to_string())),
    };
    // Only in a VM: `--pid1` runs on a test host, whose I/O ports are not ours to poke.
    if !args.pid1 {
        boot_timer::signal();
    }
    let served = runtime.block_on(async move {
        let listener = match &listen {
            Some(path) => Some(bind(path)?),
            None => None,
        };
        loop {
            let ending = match &listener {
                Some(listener) => {
                    let (stream, _) = listener
                        .accept()
                        .await
                        .map_err(|e| format!("accepting on {}: {e}", display(listen.as_deref())))?;
                    let (r, w) = stream.into_split();
                    agent.serve(r, w).await
                }
                None => {
                    let (r, w) = open_port(&port)?;
                    // A hello sent while nobody listens is lost (QEMU discards it), and the
                    // host would wait for it forever: say hello only once a host is there.
                    while !host_present(r.fd()) {
                        tokio::time::sleep(REOPEN_DELAY).await;
                    }
                    eprintln!("boxlite-guest: serving the host on {}", port.display());
                    agent.serve(r, w).await
                }
            };
            match ending {
                Ending::Shutdown(reply) => {
                    let volumes = agent.take_volumes();
                    let _ =
                        tokio::task::spawn_blocking(move || init::stop_everything(volumes)).await;
                    let _ = reply.shutting_down().await;
                    return Ok::<(), String>(());
                }
                Ending::Closed => tokio::time::sleep(REOPEN_DELAY).await,
            }
        }
    });
    if let Err(e) = served {
        init::fatal(&e);
    }
    init::reboot()
}

fn display(path: Option<&Path>) -> String {
    path.map_or_else(String::new, |p| p.display().to_string())
}

/// Opens the protocol port; a console (tty) is put in raw mode (no echo, no newline
/// translation: it carries bytes).
fn open_port(port: &Path) -> Result<(FdStream, FdStream), String> {
    let fd = rustix::fs::open(
        port,
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| {
        format!(
            "opening the protocol port {}: {e} (the VM needs a virtio console or serial port \
             there; set boxlite.port= for another)",
            port.display()
        )
    })?;
    if let Ok(mut termios) = rustix::termios::tcgetattr(&fd) {
        termios.make_raw();
        rustix::termios::tcsetattr(&fd, rustix::termios::OptionalActions::Now, &termios)
            .map_err(|e| format!("setting {} to raw mode: {e}", port.display()))?;
    }
    let write_fd = rustix::io::fcntl_dupfd_cloexec(&fd, 3)
        .map_err(|e| format!("duplicating {}: {e}", port.display()))?;
    let reader = FdStream::new(fd).map_err(|e| format!("watching {}: {e}", port.display()))?;
    let writer =
        FdStream::new(write_fd).map_err(|e| format!("watching {}: {e}", port.display()))?;
    Ok((reader, writer))
}

/// Whether a host has the port open. A virtio-serial port reports `POLLHUP` while no host
/// is connected; a console (tty) never does, so it always counts as connected.
fn host_present(fd: &std::os::fd::OwnedFd) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let mut fds = [PollFd::new(fd, PollFlags::IN)];
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    match rustix::event::poll(&mut fds, Some(&now)) {
        Ok(_) => !fds[0].revents().contains(PollFlags::HUP),
        Err(_) => true,
    }
}

fn bind(path: &Path) -> Result<UnixListener, String> {
    // A socket left by an earlier run is replaced; any other file is not ours to remove.
    if std::fs::symlink_metadata(path)
        .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
    {
        let _ = std::fs::remove_file(path);
    }
    UnixListener::bind(path).map_err(|e| format!("listening on {}: {e}", path.display()))
}

/// Host mode: serve every connection to `listen`, concurrently, until one asks to shut down.
fn run_host(listen: &Path, root_dir: &Path) -> Result<(), String> {
    let root_dir = root_dir
        .canonicalize()
        .map_err(|e| format!("--root {}: {e}", root_dir.display()))?;
    let chroot = rustix::process::geteuid().is_root() && root_dir != Path::new("/");
    let root = BoxRoot::open(&root_dir, chroot).map_err(|e| e.to_string())?;
    // Like PID 1 in the VM, adopt the orphans of executions, so their whole trees are ours.
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
        .map_err(|e| format!("becoming a child subreaper: {e}"))?;
    let agent = Agent::new(Ok(root)).map_err(|e| format!("starting: {e}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the async runtime: {e}"))?;
    runtime.block_on(async move {
        let listener = bind(listen)?;
        eprintln!(
            "boxlite-guest: listening on {} (root {}, {})",
            listen.display(),
            root_dir.display(),
            if chroot { "chrooted" } else { "not chrooted" }
        );
        let (shutdown_tx, mut shutdown_rx) = mpsc::channel(1);
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, _) = accepted
                        .map_err(|e| format!("accepting on {}: {e}", listen.display()))?;
                    let agent = agent.clone();
                    let shutdown_tx = shutdown_tx.clone();
                    tokio::spawn(async move {
                        let (r, w) = stream.into_split();
                        if let Ending::Shutdown(reply) = agent.serve(r, w).await {
                            let _ = shutdown_tx.send(reply).await;
                        }
                    });
                }
                Some(reply) = shutdown_rx.recv() => {
                    agent.kill_running();
                    // The mounts are the host's (or the test's namespace's): leave none behind.
                    let volumes = agent.take_volumes();
                    let _ = tokio::task::spawn_blocking(move || {
                        guest::volume::unmount_all(volumes)
                    })
                    .await;
                    let _ = reply.shutting_down().await;
                    let _ = std::fs::remove_file(listen);
                    return Ok(());
                }
            }
        }
    })
}
