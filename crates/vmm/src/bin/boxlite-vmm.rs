//! `boxlite-vmm`: runs one VM from its command-line configuration and exits with the guest's
//! outcome. The runtime's `kvm` engine starts it the way the `qemu` engine starts QEMU.
//!
//! Exit status: 0 the guest rebooted or powered off (i8042 reset, KVM system event), or
//! reached the boot timer under `--exit-on-boot`;
//! 1 the VMM or KVM failed (including a KVM internal error); 2 bad arguments or
//! configuration; 3 the guest triple-faulted; 4 KVM is unusable here (the reason says why,
//! and to use `--engine qemu`); 5 `--timeout` expired.

use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use vmm::config::{Boot, Disk, FsDevice, VmConfig};
use vmm::devices::virtio::console::Backend;
use vmm::exit::ExitReason;
use vmm::{builder, host};

/// The default kernel command line: COM1 console, reboot through the i8042, reboot on panic.
const DEFAULT_CMDLINE: &str = "console=ttyS0 reboot=k panic=-1";
/// The default MAC address (QEMU's, locally administered range).
const DEFAULT_MAC: &str = "52:54:00:12:34:56";

/// Runs one micro-VM on KVM.
#[derive(Parser, Debug)]
#[command(name = "boxlite-vmm", version)]
struct Args {
    /// Kernel: ELF vmlinux (PVH entry) or bzImage.
    #[arg(long)]
    kernel: PathBuf,
    /// Initramfs (cpio, optionally compressed).
    #[arg(long)]
    initramfs: Option<PathBuf>,
    /// Kernel command line; the virtio_mmio.device= entries are appended.
    #[arg(long, default_value = DEFAULT_CMDLINE)]
    cmdline: String,
    /// vCPUs.
    #[arg(long, default_value_t = 1)]
    cpus: u8,
    /// Memory in MiB.
    #[arg(long, default_value_t = 512)]
    memory: u64,
    /// A raw disk image, `PATH` or `PATH,ro`; repeat for vda, vdb, …
    #[arg(long = "disk", value_name = "PATH[,ro]")]
    disks: Vec<String>,
    /// Serve the virtio console (the guest's /dev/hvc0) on a Unix socket at PATH; guest output
    /// waits in the guest until a client connects.
    #[arg(long, value_name = "PATH", conflicts_with = "console_fd")]
    console_socket: Option<PathBuf>,
    /// Serve the virtio console on the connected Unix stream socket inherited as descriptor
    /// N (no path another process could race for).
    #[arg(long, value_name = "N")]
    console_fd: Option<i32>,
    /// Connect the network card to the Unix stream socket at PATH (passt / QEMU stream framing).
    #[arg(long, value_name = "PATH", conflicts_with = "net_fd")]
    net_socket: Option<PathBuf>,
    /// Connect the network card to the connected Unix stream socket inherited as descriptor
    /// N (same framing; the other end is the host's network stack, with no path to race for).
    #[arg(long, value_name = "N")]
    net_fd: Option<i32>,
    /// Share a directory through virtio-fs, served by a vhost-user daemon (virtiofsd):
    /// `fd=N,tag=TAG` on the connected Unix stream socket inherited as descriptor N, or
    /// `path=PATH,tag=TAG` connecting to the daemon's listening socket at PATH (no commas).
    /// The guest mounts it with `mount -t virtiofs TAG DIR`; repeat for more.
    #[arg(long = "fs", value_name = "fd=N,tag=TAG|path=PATH,tag=TAG")]
    fs: Vec<String>,
    /// The network card's MAC address.
    #[arg(long, default_value = DEFAULT_MAC)]
    net_mac: String,
    /// Write the serial console (COM1) to PATH instead of standard error.
    #[arg(long, value_name = "PATH", conflicts_with = "serial_fd")]
    serial_log: Option<PathBuf>,
    /// Write the serial console to the inherited descriptor N (a pipe or file).
    #[arg(long, value_name = "N")]
    serial_fd: Option<i32>,
    /// Leave out the virtio-rng device.
    #[arg(long)]
    no_rng: bool,
    /// Run even where KVM is known not to run Linux (kvm_pvm), for experiments.
    #[arg(long, env = "BOXLITE_FORCE_KVM", value_parser = clap::builder::FalseyValueParser::new())]
    force_kvm: bool,
    /// Print `boot_time_us=N` (VMM start to the agent's boot-timer write) when the VM ends.
    #[arg(long)]
    print_boot_time: bool,
    /// Write a JSON report (exit, reason, setup_us, boot_us, overhead_bytes) to PATH at the end.
    #[arg(long, value_name = "PATH")]
    report: Option<PathBuf>,
    /// Build the VM, print a JSON line with setup_us and overhead_bytes, and exit before
    /// running it (benchmarks; allowed where KVM cannot run Linux).
    #[arg(long)]
    setup_only: bool,
    /// End the VM (exit status 0) as soon as the guest agent pokes the boot timer
    /// (benchmarks of boot time).
    #[arg(long)]
    exit_on_boot: bool,
    /// Stop the VM after this many seconds (exit status 5).
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<f64>,
    /// Seccomp allowlists per thread once the VM is built (a system call outside them kills
    /// the process with SIGSYS); `off` for comparisons and debugging.
    #[arg(long, value_enum, default_value_t = Switch::On)]
    seccomp: Switch,
}

/// `on` or `off`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Switch {
    On,
    Off,
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let parts: Vec<u8> = s
        .split(':')
        .map(|p| u8::from_str_radix(p, 16))
        .collect::<Result<_, _>>()
        .ok()?;
    parts.try_into().ok()
}

fn parse_disk(s: &str) -> Result<Disk, String> {
    let (path, read_only) = match s.rsplit_once(',') {
        Some((p, "ro")) => (p, true),
        Some((p, "rw")) => (p, false),
        _ => (s, false),
    };
    if path.is_empty() {
        return Err(format!("--disk {s:?}: no path"));
    }
    Ok(Disk {
        path: PathBuf::from(path),
        read_only,
    })
}

/// Where an `--fs` device's daemon is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum FsSource {
    /// An inherited, connected socket.
    Fd(i32),
    /// A listening socket to connect to.
    Path(PathBuf),
}

/// One `--fs SPEC`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FsSpec {
    source: FsSource,
    tag: String,
}

fn parse_fs(s: &str) -> Result<FsSpec, String> {
    let bad = |why: String| format!("--fs {s:?}: {why} (fd=N,tag=TAG or path=PATH,tag=TAG)");
    let (mut source, mut tag) = (None, None);
    for part in s.split(',') {
        let Some((key, value)) = part.split_once('=') else {
            return Err(bad(format!("{part:?} is not KEY=VALUE")));
        };
        let new = match key {
            "fd" => match value.parse() {
                Ok(n) => source.replace(FsSource::Fd(n)).is_none(),
                Err(_) => return Err(bad(format!("fd {value:?} is not a number"))),
            },
            "path" if value.is_empty() => return Err(bad("empty path".into())),
            "path" => source.replace(FsSource::Path(value.into())).is_none(),
            "tag" => tag.replace(value.to_string()).is_none(),
            _ => return Err(bad(format!("unknown key {key:?}"))),
        };
        if !new {
            return Err(bad("fd/path or tag given twice".into()));
        }
    }
    let source = source.ok_or_else(|| bad("no fd= or path=".into()))?;
    let tag = tag.ok_or_else(|| bad("no tag=".into()))?;
    vmm::devices::virtio::fs::check_tag(&tag).map_err(|e| bad(e.to_string()))?;
    Ok(FsSpec { source, tag })
}

/// The `--fs` devices, connected, refusing a descriptor named twice (by `--fs` or another
/// `--*-fd` flag): two owners would close it twice.
fn fs_devices(args: &Args) -> Result<Vec<FsDevice>, String> {
    let specs = args
        .fs
        .iter()
        .map(|s| parse_fs(s))
        .collect::<Result<Vec<_>, _>>()?;
    let mut fds: Vec<i32> = [args.console_fd, args.net_fd, args.serial_fd]
        .into_iter()
        .flatten()
        .collect();
    let mut devices = Vec::new();
    for spec in specs {
        let socket = match &spec.source {
            FsSource::Fd(n) => {
                if fds.contains(n) {
                    return Err(format!("--fs fd={n}: descriptor {n} is already in use"));
                }
                fds.push(*n);
                UnixStream::from(inherited(Some(*n), "--fs fd")?)
            }
            FsSource::Path(path) => UnixStream::connect(path)
                .map_err(|e| format!("--fs path={}: {e}", path.display()))?,
        };
        devices.push(FsDevice::new(socket, &spec.tag).map_err(|e| e.to_string())?);
    }
    Ok(devices)
}

fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("boxlite-vmm: {message}");
    ExitCode::from(code)
}

fn main() -> ExitCode {
    let started = Instant::now();
    let args = Args::parse();
    let run_guest = !args.setup_only;
    if run_guest && !args.force_kvm {
        if let Some(why) = host::kvm_unusable() {
            return fail(4, why);
        }
    }
    let disks = match args
        .disks
        .iter()
        .map(|d| parse_disk(d))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(d) => d,
        Err(e) => return fail(2, e),
    };
    let Some(mac) = parse_mac(&args.net_mac) else {
        return fail(
            2,
            format!("--net-mac {:?} is not a MAC address", args.net_mac),
        );
    };
    let mut config = VmConfig::new(
        args.cpus,
        args.memory,
        Boot::Linux {
            kernel: args.kernel.clone(),
            initramfs: args.initramfs.clone(),
            cmdline: args.cmdline.clone(),
        },
    );
    config.started = started;
    config.disks = disks;
    config.rng = !args.no_rng;
    config.stop_on_boot = args.exit_on_boot;
    config.serial = Some(match &args.serial_log {
        None if args.serial_fd.is_some() => match inherited(args.serial_fd, "--serial-fd") {
            Ok(fd) => Box::new(std::fs::File::from(fd)),
            Err(e) => return fail(2, e),
        },
        // Appended: the log covers every boot of a box, and the runtime appends to it too.
        Some(path) => match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            Ok(f) => Box::new(f),
            Err(e) => return fail(2, format!("--serial-log {}: {e}", path.display())),
        },
        None => Box::new(std::io::stderr()),
    });
    if let Some(path) = &args.console_socket {
        // A socket left by an earlier run is replaced; any other file is not ours to remove.
        if std::fs::symlink_metadata(path)
            .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
        {
            let _ = std::fs::remove_file(path);
        }
        let backend = UnixListener::bind(path)
            .map_err(|e| e.to_string())
            .and_then(|l| Backend::listen(l).map_err(|e| e.to_string()));
        match backend {
            Ok(b) => config.console = Some(b),
            Err(e) => return fail(2, format!("--console-socket {}: {e}", path.display())),
        }
    }
    if args.console_fd.is_some() {
        let backend = inherited(args.console_fd, "--console-fd").and_then(|fd| {
            let stream = UnixStream::from(fd);
            Backend::stream(stream).map_err(|e| format!("--console-fd: {e}"))
        });
        match backend {
            Ok(b) => config.console = Some(b),
            Err(e) => return fail(2, e),
        }
    }
    if let Some(path) = &args.net_socket {
        match UnixStream::connect(path) {
            Ok(s) => config.net = Some((s, mac)),
            Err(e) => return fail(2, format!("--net-socket {}: {e}", path.display())),
        }
    }
    if args.net_fd.is_some() {
        match inherited(args.net_fd, "--net-fd") {
            Ok(fd) => config.net = Some((UnixStream::from(fd), mac)),
            Err(e) => return fail(2, e),
        }
    }
    match fs_devices(&args) {
        Ok(fs) => config.fs = fs,
        Err(e) => return fail(2, e),
    }
    let mut machine = match builder::build(config) {
        Ok(m) => m,
        Err(
            e @ (vmm::Error::Config(_)
            | vmm::Error::Kernel { .. }
            | vmm::Error::Initramfs { .. }
            | vmm::Error::Cmdline(_)),
        ) => {
            return fail(2, e);
        }
        Err(e @ vmm::Error::KvmUnusable(_)) => return fail(4, format!("{e}; {}", host::USE_QEMU)),
        Err(e) => return fail(1, e),
    };
    if args.setup_only {
        let report = serde_json::json!({
            "setup_us": started.elapsed().as_micros() as u64,
            "overhead_bytes": machine.overhead_bytes(),
            "guest_resident_bytes": vmm::memory::resident_bytes(machine.memory()),
        });
        println!("{report}");
        return ExitCode::SUCCESS;
    }
    let setup_overhead = machine.overhead_bytes();
    // Opened now: once the filters are in, no thread may open files.
    let mut report = match &args.report {
        Some(path) => match std::fs::File::create(path) {
            Ok(f) => Some((path, f)),
            Err(e) => return fail(2, format!("--report {}: {e}", path.display())),
        },
        None => None,
    };
    if args.seccomp == Switch::On {
        match vmm::seccomp::Filters::build_for(&machine.vhost_user_sockets()) {
            Ok(filters) => machine.set_seccomp(filters),
            Err(e) => return fail(1, e),
        }
    }
    let timeout = args.timeout.map(Duration::from_secs_f64);
    let outcome = machine.run(timeout);
    let (code, kind) = match &outcome.reason {
        ExitReason::Reset | ExitReason::SystemEvent(_) => (0, "reset"),
        ExitReason::Booted => (0, "booted"),
        ExitReason::TripleFault => (3, "triple-fault"),
        ExitReason::Stopped => (5, "timeout"),
        _ => (1, "error"),
    };
    let boot_us = outcome.boot.map(|d| d.as_micros() as u64);
    if args.print_boot_time {
        match boot_us {
            Some(us) => println!("boot_time_us={us}"),
            None => println!("boot_time_us=none"),
        }
    }
    if let Some((path, file)) = &mut report {
        let report = serde_json::json!({
            "exit": kind,
            "reason": outcome.reason.to_string(),
            "setup_us": outcome.setup.map(|d| d.as_micros() as u64),
            "boot_us": boot_us,
            "overhead_bytes": setup_overhead,
        });
        if let Err(e) = writeln!(file, "{report}") {
            eprintln!("boxlite-vmm: --report {}: {e}", path.display());
        }
    }
    let _ = std::io::stdout().flush();
    if code == 0 {
        eprintln!("boxlite-vmm: {}", outcome.reason);
        ExitCode::SUCCESS
    } else {
        fail(code, &outcome.reason)
    }
}

/// Takes the descriptor `fd` the parent left open for us (named by `flag`), refusing the
/// standard streams and numbers that are not open.
fn inherited(fd: Option<i32>, flag: &str) -> Result<std::os::fd::OwnedFd, String> {
    use std::os::fd::{FromRawFd, OwnedFd};
    let fd = fd.ok_or_else(|| format!("{flag} needs a descriptor number"))?;
    if fd < 3 {
        return Err(format!("{flag} {fd}: not a standard stream"));
    }
    // SAFETY: F_GETFD on any number only reports whether it is open; no memory is touched.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(format!("{flag} {fd}: no such open descriptor"));
    }
    // SAFETY: the descriptor is open (checked above) and was passed to this process for it
    // alone by its parent, as the flag says; nothing else here owns or closes it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disks_and_macs() {
        let d = parse_disk("/a/b.img,ro").unwrap();
        assert!(d.read_only && d.path == std::path::Path::new("/a/b.img"));
        assert!(!parse_disk("/a,b.img").unwrap().read_only);
        assert!(parse_disk(",ro").is_err());
        assert_eq!(
            parse_mac("52:54:00:12:34:56"),
            Some([0x52, 0x54, 0, 0x12, 0x34, 0x56])
        );
        assert_eq!(parse_mac("52:54:00:12:34"), None);
        assert_eq!(parse_mac("zz:54:00:12:34:56"), None);
    }

    #[test]
    fn the_network_is_a_socket_path_or_an_inherited_descriptor() {
        let args = Args::try_parse_from(["vmm", "--kernel", "k", "--net-fd", "5"]).unwrap();
        assert_eq!(args.net_fd, Some(5));
        let both = [
            "vmm",
            "--kernel",
            "k",
            "--net-fd",
            "5",
            "--net-socket",
            "/s",
        ];
        assert!(Args::try_parse_from(both).is_err());
        assert!(inherited(Some(1), "--net-fd").is_err());
    }

    #[test]
    fn fs_specs_are_an_fd_or_a_path_and_a_tag() {
        assert_eq!(
            parse_fs("fd=7,tag=rootfs"),
            Ok(FsSpec {
                source: FsSource::Fd(7),
                tag: "rootfs".into()
            })
        );
        assert_eq!(
            parse_fs("tag=data,path=/run/vfsd.sock"),
            Ok(FsSpec {
                source: FsSource::Path("/run/vfsd.sock".into()),
                tag: "data".into()
            })
        );
        for (spec, why) in [
            ("fd=7", "no tag="),
            ("tag=x", "no fd= or path="),
            ("fd=x,tag=a", "not a number"),
            ("fd=7,path=/s,tag=a", "given twice"),
            ("fd=7,tag=a,tag=b", "given twice"),
            ("fd=7,tag=a,cache=auto", "unknown key"),
            ("fd=7,tag", "not KEY=VALUE"),
            ("path=,tag=a", "empty path"),
            ("fd=7,tag=", "empty"),
            (&format!("fd=7,tag={}", "t".repeat(37)), "at most 36"),
        ] {
            let err = parse_fs(spec).unwrap_err();
            assert!(err.contains(why), "{spec}: {err}");
        }
        let args = Args::try_parse_from([
            "vmm",
            "--kernel",
            "k",
            "--fs",
            "fd=5,tag=a",
            "--fs",
            "path=/s,tag=b",
        ])
        .unwrap();
        assert_eq!(args.fs.len(), 2);
    }

    #[test]
    fn an_fs_descriptor_cannot_be_used_twice() {
        let args = Args::try_parse_from([
            "vmm",
            "--kernel",
            "k",
            "--net-fd",
            "5",
            "--fs",
            "fd=5,tag=a",
        ])
        .unwrap();
        let err = fs_devices(&args).unwrap_err();
        assert!(err.contains("already in use"), "{err}");
        let args = Args::try_parse_from(["vmm", "--kernel", "k", "--fs", "fd=1,tag=a"]).unwrap();
        assert!(fs_devices(&args).unwrap_err().contains("standard stream"));
    }
}
