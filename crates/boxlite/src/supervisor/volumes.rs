//! A box's volumes while it runs: a jailed virtiofsd per bind volume, the locks of its named
//! volumes, and what the agent is asked to mount.
//!
//! Each virtiofsd gets a listening socket the supervisor made in the box's private directory
//! and connected the VM's end to before anyone else could (the path is removed at once), so
//! the daemon's only client is this box's VM. The daemon runs as the supervisor's user (it
//! must create files as that user: as root, with the owners the guest asks for), confined by
//! Landlock to its shared directory (and read-only for a `:ro` volume, which it also refuses
//! itself with `--readonly`), in namespaces of its own, with its own seccomp filter.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use jail::{Access, CgroupLimits, Jail, Resource};
use protocol::{MountSource, VolumeMount};

use crate::engine::Device;
use crate::error::{Artefact, Error, Result};
use crate::host;
use crate::layout::{BoxPaths, Layout};
use crate::state::{BoxRecord, StateDb};
use crate::volume::{self, VolumeSource};
use crate::volumes;

/// The program's name.
const VIRTIOFSD: &str = "virtiofsd";
/// Where distributions install virtiofsd (Debian 13, Fedora), off `PATH`.
const LIBEXEC_VIRTIOFSD: &str = "/usr/libexec/virtiofsd";
/// The descriptor limit of a virtiofsd: it holds an `O_PATH` descriptor for every inode the
/// guest has looked up and not forgotten, so a guest walking a big tree needs many. Capped
/// by the supervisor's own hard limit (raising it needs `CAP_SYS_RESOURCE`).
const DAEMON_NOFILE: u64 = 65_536;
/// Memory a virtiofsd may use (its cgroup's `memory.max`): its queue buffers and inode table.
const DAEMON_MEMORY_MIB: u64 = 256;
/// CPU a virtiofsd may use (in periods of [`DAEMON_CPU_PERIOD_US`]).
const DAEMON_CPUS: u64 = 2;
/// The `cpu.max` period (µs).
const DAEMON_CPU_PERIOD_US: u64 = 100_000;
/// The most bytes of a daemon's messages kept in `virtiofsd.log`: a guest can provoke
/// errors, so what it can grow is capped.
pub const MAX_DAEMON_LOG_BYTES: u64 = 1 << 20;
/// Directories a virtiofsd reads or runs from.
const SYSTEM_DIRS: &[&str] = &["/usr", "/lib", "/lib64", "/bin", "/sbin"];
/// Files and trees a virtiofsd reads: its libraries' cache, and its own `/proc/self/fd` and
/// mount table, through which it reopens the inodes it holds.
const SYSTEM_FILES: &[&str] = &["/etc/ld.so.cache", "/proc"];

/// Finds virtiofsd: `explicit`, else in `PATH`, else in `/usr/libexec`.
pub fn locate_virtiofsd(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = explicit {
        return match path.is_file() {
            true => Ok(path.to_path_buf()),
            false => Err(Error::Missing {
                what: Artefact::Program(VIRTIOFSD.into()),
                hint: format!("{} is not a file", path.display()),
            }),
        };
    }
    host::find_program(VIRTIOFSD)
        .or_else(|| Some(PathBuf::from(LIBEXEC_VIRTIOFSD)).filter(|p| p.is_file()))
        .ok_or_else(|| Error::Missing {
            what: Artefact::Program(VIRTIOFSD.into()),
            hint: "bind volumes need the Rust virtiofsd: `cargo install virtiofsd` (needs \
                   libcap-ng-dev and libseccomp-dev) or your distribution's virtiofsd package"
                .into(),
        })
}

/// The running volumes of one box.
pub struct BoxVolumes {
    daemons: Vec<Daemon>,
    mounts: Vec<VolumeMount>,
    _locks: Vec<File>,
}

/// One virtiofsd.
struct Daemon {
    child: Child,
    jailed: jail::Jailed,
}

/// What the VM gets: its devices and the descriptors they name.
pub struct VmSide {
    /// The named volumes' disks, in order after the box's own disk.
    pub disks: Vec<Device>,
    /// The bind volumes' virtio-fs devices (descriptors as the VM process sees them: the
    /// caller passes [`VmSide::fds`] in this order).
    pub filesystems: Vec<(OwnedFd, String)>,
}

impl BoxVolumes {
    /// Takes the named volumes' locks and starts a virtiofsd per bind volume. `first_disk`
    /// is the letter index of the first named volume's disk (`2`: `/dev/vdc`).
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        record: &BoxRecord,
        layout: &Layout,
        db: &StateDb,
        paths: &BoxPaths,
        virtiofsd: Option<&Path>,
        confine: bool,
        first_disk: usize,
    ) -> Result<(BoxVolumes, VmSide)> {
        let mut started = BoxVolumes {
            daemons: Vec::new(),
            mounts: Vec::new(),
            _locks: Vec::new(),
        };
        let mut side = VmSide {
            disks: Vec::new(),
            filesystems: Vec::new(),
        };
        for (index, volume) in volume::mount_order(&record.options.volumes)
            .into_iter()
            .enumerate()
        {
            let source = match &volume.source {
                VolumeSource::Named { name } => {
                    volumes::get(layout, name)?;
                    let lock = volumes::attach::hold(layout, db, name, volume.read_only)?;
                    started._locks.push(lock);
                    let letter = first_disk + side.disks.len();
                    side.disks.push(Device::Disk {
                        path: volumes::volume_disk(layout, name),
                        read_only: volume.read_only,
                    });
                    MountSource::Disk {
                        device: disk_name(letter),
                        fstype: "ext4".into(),
                    }
                }
                VolumeSource::Bind { path } => {
                    volume.check_source()?;
                    let program = locate_virtiofsd(virtiofsd)?;
                    let tag = format!("vol{index}");
                    let (daemon, vm_end) =
                        Daemon::start(&program, path, &tag, volume.read_only, paths, confine)?;
                    started.daemons.push(daemon);
                    side.filesystems.push((vm_end, tag.clone()));
                    MountSource::Virtiofs { tag }
                }
                // A newer kind this supervisor does not know is refused, not skipped.
                #[allow(unreachable_patterns)]
                _ => return Err(Error::InvalidInput(format!("volume {volume}: unsupported"))),
            };
            started.mounts.push(VolumeMount {
                source,
                path: volume::normal(&volume.guest_path),
                read_only: volume.read_only,
            });
        }
        Ok((started, side))
    }

    /// What the agent mounts, parents first.
    pub fn mounts(&self) -> &[VolumeMount] {
        &self.mounts
    }

    /// Stops the daemons (the VM has ended: nobody uses them) and lets the locks go.
    pub fn stop(self) {
        for mut daemon in self.daemons {
            let _ = daemon.child.kill();
            let _ = daemon.child.wait();
            let _ = daemon.jailed.finish();
        }
    }
}

impl Daemon {
    /// Starts virtiofsd serving `dir` as `tag`; returns it and the VM's end of its socket.
    fn start(
        program: &Path,
        dir: &Path,
        tag: &str,
        read_only: bool,
        paths: &BoxPaths,
        confine: bool,
    ) -> Result<(Daemon, OwnedFd)> {
        let socket = paths.dir().join(format!("{tag}.sock"));
        let _ = std::fs::remove_file(&socket);
        let listener =
            UnixListener::bind(&socket).map_err(|e| Error::io("listening on", &socket, e))?;
        // Connected before the path is gone: the connection waits in the backlog for the
        // daemon's accept, and nobody else can connect after the unlink.
        let vm_end = UnixStream::connect(&socket);
        let _ = std::fs::remove_file(&socket);
        let vm_end = vm_end.map_err(|e| Error::io("connecting to", &socket, e))?;

        let nofile = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .maximum
            .map_or(DAEMON_NOFILE, |hard| hard.min(DAEMON_NOFILE));
        let mut command = Command::new(program);
        let mut jail = Jail::new();
        let fd = jail.pass_fd(listener.into());
        command
            .arg(format!("--fd={fd}"))
            .arg("--shared-dir")
            .arg(dir)
            .arg(format!("--tag={tag}"))
            // Our jail confines it (Landlock forbids the mounts its own sandbox would make).
            .arg("--sandbox=none")
            .arg("--seccomp=kill")
            // File handles would let it open any inode of the filesystem by number
            // (`open_by_handle_at`, which no path rule sees): one descriptor per inode instead.
            .arg("--inode-file-handles=never")
            .arg("--cache=auto")
            .arg(format!("--rlimit-nofile={nofile}"))
            .arg("--log-level=error");
        if read_only {
            command.arg("--readonly");
        }
        if confine {
            for system in SYSTEM_DIRS {
                jail.allow(system, Access::Execute);
            }
            for file in SYSTEM_FILES {
                jail.allow(file, Access::Read);
            }
            jail.allow(program, Access::Execute)
                .allow("/dev/null", Access::Device)
                .allow(
                    dir,
                    if read_only {
                        Access::Read
                    } else {
                        Access::Tree
                    },
                )
                .namespaces()
                .rlimit(Resource::Core, 0)
                .rlimit(Resource::NoFile, nofile)
                .cgroup(CgroupLimits {
                    name: format!(
                        "fs-{}-{tag}",
                        paths
                            .dir()
                            .file_name()
                            .and_then(|n| n.to_str())
                            .unwrap_or("box")
                    ),
                    memory_max: DAEMON_MEMORY_MIB << 20,
                    cpu_max: (DAEMON_CPUS * DAEMON_CPU_PERIOD_US, DAEMON_CPU_PERIOD_US),
                });
        }
        jail.die_with_parent(libc::SIGKILL);
        let jailed = jail
            .apply(&mut command)
            .map_err(|e| Error::InvalidInput(format!("preparing virtiofsd's jail: {e}")))?;
        let log_path = paths.dir().join("virtiofsd.log");
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => {
                let _ = jailed.finish();
                return Err(Error::io("starting", program, e));
            }
        };
        if let Some(stderr) = child.stderr.take() {
            keep_log(stderr, log_path);
        }
        Ok((Daemon { child, jailed }, vm_end.into()))
    }
}

/// Copies a daemon's messages into `path`, keeping at most [`MAX_DAEMON_LOG_BYTES`] (the rest
/// is read and dropped, so the daemon never blocks on a full pipe).
fn keep_log(mut stderr: std::process::ChildStderr, path: PathBuf) {
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .ok();
        let mut kept = 0u64;
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            if let Some(f) = file.as_mut().filter(|_| kept < MAX_DAEMON_LOG_BYTES) {
                let take = (n as u64).min(MAX_DAEMON_LOG_BYTES - kept) as usize;
                let _ = f.write_all(&buf[..take]);
                kept += take as u64;
            }
        }
    });
}

/// `/dev/vd` + the letters of disk `index` (0: `a`, 25: `z`, 26: `aa`), as virtio_blk names.
pub fn disk_name(index: usize) -> String {
    let mut letters = Vec::new();
    let mut n = index + 1;
    while n > 0 {
        n -= 1;
        letters.push(b'a' + (n % 26) as u8);
        n /= 26;
    }
    letters.reverse();
    format!("/dev/vd{}", String::from_utf8_lossy(&letters))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disks_are_named_as_the_guest_kernel_names_them() {
        assert_eq!(disk_name(0), "/dev/vda");
        assert_eq!(disk_name(2), "/dev/vdc");
        assert_eq!(disk_name(25), "/dev/vdz");
        assert_eq!(disk_name(26), "/dev/vdaa");
    }

    #[test]
    fn a_missing_daemon_names_the_fix() {
        let err = locate_virtiofsd(Some(Path::new("/nonexistent/virtiofsd"))).unwrap_err();
        assert!(err.to_string().contains("not a file"), "{err}");
    }
}
