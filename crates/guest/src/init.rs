//! The agent as PID 1 of the VM: the mounts, the box's root, and the way out.
//!
//! Boot, in order: the agent's own API filesystems ([`mount_system`]); the settings from the
//! kernel command line ([`crate::cmdline`]); the box's root ([`build_root`]): the image disk
//! read-only at [`IMAGE_DIR`], the writable disk at [`DATA_DIR`], and an overlay of the two at
//! [`ROOT_DIR`] with `/proc`, `/sys`, `/dev` and a fresh `/tmp` inside, the hostname set and
//! `/etc/hosts` and `/etc/hostname` (and `/etc/resolv.conf` when the host gave nameservers)
//! written; then the network ([`crate::network`]). The agent
//! itself stays in the initramfs: commands are chrooted into the root, so nothing in the image
//! can replace the agent or see its files.
//!
//! A root that cannot be built (say, a data disk without a filesystem) does not stop the
//! agent: it still serves the protocol, says so in its hello (capability `root-failed`) and
//! answers every request that needs the root with the reason, which the console shows too.
//! Only a failure before the protocol can be served is fatal ([`fatal`]): the reason goes to
//! the console and the VM ends, instead of the kernel panicking over a dead init.

use std::ffi::CString;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use rustix::mount::{MountFlags, UnmountFlags};
use rustix::process::Signal;

use crate::cmdline::{BootConfig, DataDisk, Port};
use crate::error::{Error, Result};
use crate::root::BoxRoot;
use crate::volume::{self, Mounted};

/// Where the image's disk is mounted, read-only: the overlay's lower layer.
pub const IMAGE_DIR: &str = "/run/boxlite/image";
/// Where the box's writable disk is mounted; it holds the overlay's `upper` and `work` dirs.
pub const DATA_DIR: &str = "/run/boxlite/data";
/// The root every command sees: the overlay.
pub const ROOT_DIR: &str = "/run/boxlite/root";

/// How long to wait at boot for a named virtio-serial port to show up: the host announces
/// port names with a control message that may arrive after the agent starts.
pub const PORT_WAIT: Duration = Duration::from_secs(10);

/// How long box processes get between SIGTERM and SIGKILL at shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// The ext4 superblock's magic number, at byte 56 of the superblock (which starts at 1024).
const EXT4_MAGIC: u16 = 0xEF53;
const EXT4_MAGIC_OFFSET: u64 = 1024 + 56;

/// Mounts the agent's own `/proc`, `/sys`, `/dev`, `/dev/pts`, `/dev/shm`, `/run`, `/tmp` and
/// `/sys/fs/cgroup`; a filesystem the kernel already mounted there is kept.
pub fn mount_system() -> Result<()> {
    let nosuid_nodev = MountFlags::NOSUID | MountFlags::NODEV;
    let noexec = nosuid_nodev | MountFlags::NOEXEC;
    let table: [(&str, &str, &str, MountFlags, &str); 8] = [
        ("proc", "/proc", "proc", noexec, ""),
        ("sysfs", "/sys", "sysfs", noexec, ""),
        (
            "devtmpfs",
            "/dev",
            "devtmpfs",
            MountFlags::NOSUID,
            "mode=0755",
        ),
        (
            "devpts",
            "/dev/pts",
            "devpts",
            MountFlags::NOSUID | MountFlags::NOEXEC,
            "newinstance,ptmxmode=0666,mode=0620,gid=5",
        ),
        ("shm", "/dev/shm", "tmpfs", nosuid_nodev, "mode=1777"),
        ("tmpfs", "/run", "tmpfs", nosuid_nodev, "mode=0755"),
        ("tmpfs", "/tmp", "tmpfs", nosuid_nodev, "mode=1777"),
        ("cgroup2", "/sys/fs/cgroup", "cgroup2", noexec, ""),
    ];
    for (source, target, fstype, flags, data) in table {
        make_dir(Path::new(target))?;
        let data = c_str(data)?;
        match rustix::mount::mount(source, target, fstype, flags, data.as_c_str()) {
            Ok(()) | Err(Errno::BUSY) => {}
            Err(e) => {
                return Err(Error::io(
                    "mounting",
                    format_args!("{fstype} on {target}"),
                    e.into(),
                ));
            }
        }
    }
    for (link, target) in [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
    ] {
        match std::os::unix::fs::symlink(target, link) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io("creating", link, e)),
        }
    }
    Ok(())
}

/// The device node of the protocol port: the path itself, or the `/dev` node of the
/// virtio-serial port with that name (waiting up to [`PORT_WAIT`] for it to appear).
pub fn port_path(port: &Port) -> Result<std::path::PathBuf> {
    let name = match port {
        Port::Device(path) => return Ok(path.clone()),
        Port::Named(name) => name,
    };
    let deadline = Instant::now() + PORT_WAIT;
    loop {
        if let Some(node) = named_port(name) {
            return Ok(node);
        }
        if Instant::now() >= deadline {
            return Err(Error::NotFound(format!(
                "no virtio-serial port named {name:?} after {PORT_WAIT:?} (see \
                 /sys/class/virtio-ports/*/name); the host must add one, e.g. QEMU's \
                 -device virtserialport,name={name}"
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn named_port(name: &str) -> Option<std::path::PathBuf> {
    let ports = std::fs::read_dir("/sys/class/virtio-ports").ok()?;
    ports.flatten().find_map(|port| {
        let found = std::fs::read_to_string(port.path().join("name")).ok()?;
        let node = Path::new("/dev").join(port.file_name());
        (found.trim_end() == name && node.exists()).then_some(node)
    })
}

/// Reads the kernel command line.
pub fn read_cmdline() -> Result<String> {
    let mut text = String::new();
    std::fs::File::open("/proc/cmdline")
        .and_then(|f| {
            f.take(crate::cmdline::MAX_CMDLINE_LEN as u64 + 1)
                .read_to_string(&mut text)
        })
        .map_err(|e| Error::io("reading", "/proc/cmdline", e))?;
    Ok(text)
}

/// Mounts the disks, builds the overlay root with its API filesystems, sets the hostname and
/// writes the box's `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf`.
pub fn build_root(config: &BootConfig) -> Result<BoxRoot> {
    make_dir(Path::new(IMAGE_DIR))?;
    make_dir(Path::new(DATA_DIR))?;
    make_dir(Path::new(ROOT_DIR))?;
    let image_data = if config.root_fstype == "ext4" {
        "noload"
    } else {
        ""
    };
    mount_disk(
        &config.root,
        IMAGE_DIR,
        &config.root_fstype,
        MountFlags::RDONLY,
        image_data,
        "mounting the image disk",
    )?;
    match &config.data {
        DataDisk::Device { path, fstype } => {
            if fstype == "ext4" {
                check_ext4(path)?;
            }
            mount_disk(
                path,
                DATA_DIR,
                fstype,
                MountFlags::empty(),
                "",
                "mounting the data disk",
            )?;
        }
        DataDisk::Tmpfs => {
            let data = c_str("mode=0755")?;
            rustix::mount::mount(
                "tmpfs",
                DATA_DIR,
                "tmpfs",
                MountFlags::empty(),
                data.as_c_str(),
            )
            .map_err(|e| Error::io("mounting a tmpfs on", DATA_DIR, e.into()))?;
        }
    }
    let upper = format!("{DATA_DIR}/upper");
    let work = format!("{DATA_DIR}/work");
    make_dir(Path::new(&upper))?;
    make_dir(Path::new(&work))?;
    let options = c_str(&format!(
        "lowerdir={IMAGE_DIR},upperdir={upper},workdir={work}"
    ))?;
    rustix::mount::mount(
        "overlay",
        ROOT_DIR,
        "overlay",
        MountFlags::empty(),
        options.as_c_str(),
    )
    .map_err(|e| Error::io("mounting the overlay root on", ROOT_DIR, e.into()))?;
    let root = BoxRoot::open(Path::new(ROOT_DIR), true)?;
    mount_inside(&root)?;
    rustix::system::sethostname(config.hostname.as_bytes())
        .map_err(|e| Error::io("setting the hostname to", &config.hostname, e.into()))?;
    write_etc(&root, config)?;
    Ok(root)
}

fn mount_disk(
    device: &Path,
    target: &str,
    fstype: &str,
    flags: MountFlags,
    data: &str,
    op: &'static str,
) -> Result<()> {
    let data = c_str(data)?;
    rustix::mount::mount(device, target, fstype, flags, data.as_c_str()).map_err(|e| {
        let hint = match e {
            Errno::NOENT | Errno::NXIO | Errno::NODEV => {
                " (is the disk attached? the host must give it to the VM)"
            }
            Errno::INVAL => " (does the disk hold that filesystem type?)",
            _ => "",
        };
        Error::io(
            op,
            format_args!("{} ({fstype}) on {target}{hint}", device.display()),
            e.into(),
        )
    })
}

/// Fails with a clear message when `device` has no ext4 superblock: the host formats a box's
/// data disk when it creates the box, and the agent must never format (and so erase) a disk.
pub fn check_ext4(device: &Path) -> Result<()> {
    let has = has_ext4_superblock(device)
        .map_err(|e| Error::io("reading the data disk", device.display(), e))?;
    if !has {
        return Err(Error::Invalid(format!(
            "the data disk {} has no ext4 filesystem; the host formats it (mkfs.ext4) when \
             the box is created, and the agent does not format disks — recreate the box or \
             format the disk on the host",
            device.display()
        )));
    }
    Ok(())
}

/// Whether `device` (a disk or an image file) starts with an ext4 superblock.
pub fn has_ext4_superblock(device: &Path) -> std::io::Result<bool> {
    let mut magic = [0u8; 2];
    let mut f = std::fs::File::open(device)?;
    f.seek(SeekFrom::Start(EXT4_MAGIC_OFFSET))?;
    f.read_exact(&mut magic)?;
    Ok(u16::from_le_bytes(magic) == EXT4_MAGIC)
}

/// Mounts `/proc`, `/sys`, `/dev` and `/tmp` inside the root. Each target is resolved inside
/// the root and must be a real directory, so an image whose `/tmp` is a symlink to `/` cannot
/// make the agent mount over its own directories.
fn mount_inside(root: &BoxRoot) -> Result<()> {
    let nosuid_nodev = MountFlags::NOSUID | MountFlags::NODEV;
    let noexec = nosuid_nodev | MountFlags::NOEXEC;
    for (target, how) in [
        ("proc", Inner::Fresh("proc", "proc", noexec, "")),
        ("sys", Inner::Bind("/sys")),
        ("dev", Inner::Bind("/dev")),
        (
            "tmp",
            Inner::Fresh("tmpfs", "tmpfs", nosuid_nodev, "mode=1777"),
        ),
    ] {
        let fd = inner_target(root, target)?;
        let at = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let result = match how {
            Inner::Fresh(source, fstype, flags, data) => {
                let data = c_str(data)?;
                rustix::mount::mount(source, at.as_str(), fstype, flags, data.as_c_str())
            }
            Inner::Bind(source) => rustix::mount::mount_bind_recursive(source, at.as_str()),
        };
        result
            .map_err(|e| Error::io("mounting", format_args!("/{target} in the box"), e.into()))?;
    }
    Ok(())
}

enum Inner {
    Fresh(&'static str, &'static str, MountFlags, &'static str),
    Bind(&'static str),
}

fn inner_target(root: &BoxRoot, name: &str) -> Result<OwnedFd> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let in_box = || format!("/{name} in the box");
    match root.open_in(name, flags, Mode::empty()) {
        Ok(fd) => return Ok(fd),
        Err(Errno::NOENT) => {}
        Err(Errno::NOTDIR | Errno::LOOP) => {
            return Err(Error::Invalid(format!(
                "/{name} in the image is not a directory (a symlink or a file); the box needs a \
                 real /{name} directory"
            )));
        }
        Err(e) => return Err(Error::io("opening", in_box(), e.into())),
    }
    rustix::fs::mkdirat(root.dir(), name, Mode::from_bits_truncate(0o755))
        .map_err(|e| Error::io("creating", in_box(), e.into()))?;
    root.open_in(name, flags, Mode::empty())
        .map_err(|e| Error::io("opening", in_box(), e.into()))
}

/// The name the box reaches its host by, mapped in `/etc/hosts` when the host gave an address.
pub const HOST_ALIAS: &str = "host.boxlite.internal";

/// The box's `/etc/hosts`, naming the box after its hostname and, with `host_addr`, the host
/// [`HOST_ALIAS`].
pub fn hosts_file(hostname: &str, host_addr: Option<Ipv4Addr>) -> String {
    let mut text = format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"
    );
    if let Some(ip) = host_addr {
        text.push_str(&format!("{ip}\t{HOST_ALIAS}\n"));
    }
    text
}

/// The box's `/etc/hostname`.
pub fn hostname_file(hostname: &str) -> String {
    format!("{hostname}\n")
}

/// The box's `/etc/resolv.conf` for the host's nameservers.
pub fn resolv_conf(config: &BootConfig) -> String {
    config
        .dns
        .iter()
        .map(|ip| format!("nameserver {ip}\n"))
        .collect()
}

fn write_etc(root: &BoxRoot, config: &BootConfig) -> Result<()> {
    let etc = match root.open_in(
        "etc",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Err(Errno::NOENT) => {
            rustix::fs::mkdirat(root.dir(), "etc", Mode::from_bits_truncate(0o755))
                .map_err(|e| Error::io("creating", "/etc in the box", e.into()))?;
            root.open_in(
                "etc",
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
        }
        other => other,
    }
    .map_err(|e| Error::io("opening", "/etc in the box", e.into()))?;
    write_file(
        &etc,
        "hosts",
        &hosts_file(&config.hostname, config.host_addr),
    )?;
    write_file(&etc, "hostname", &hostname_file(&config.hostname))?;
    if !config.dns.is_empty() {
        write_file(&etc, "resolv.conf", &resolv_conf(config))?;
    }
    Ok(())
}

/// Replaces `dir/name` with a regular file holding `text` (a symlink there is replaced, not
/// followed: images often link resolv.conf into /run, which must not be written through).
fn write_file(dir: &OwnedFd, name: &str, text: &str) -> Result<()> {
    let path = || format!("/etc/{name} in the box");
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile => {
            rustix::fs::unlinkat(dir, name, AtFlags::empty())
                .map_err(|e| Error::io("replacing", path(), e.into()))?;
        }
        _ => {}
    }
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_bits_truncate(0o644),
    )
    .map_err(|e| Error::io("writing", path(), e.into()))?;
    std::fs::File::from(fd)
        .write_all(text.as_bytes())
        .map_err(|e| Error::io("writing", path(), e))
}

/// Ends every box process (SIGTERM, then SIGKILL after [`SHUTDOWN_GRACE`]), syncs, and
/// unmounts the box's `volumes`, the root and the disks, so the data disk and every named
/// volume are clean.
pub fn stop_everything(volumes: Vec<Mounted>) {
    // kill(-1) reaches every process but PID 1 itself (and, in a PID namespace, only the
    // namespace's processes).
    kill_all(Signal::TERM);
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    while Instant::now() < deadline && others_alive() {
        std::thread::sleep(Duration::from_millis(20));
    }
    kill_all(Signal::KILL);
    rustix::fs::sync();
    // Before the root's own mounts: volumes may sit on the root's /tmp, and a named volume
    // detached lazily with the root would be written back only once nothing holds it.
    volume::unmount_all(volumes);
    for target in [
        "/run/boxlite/root/tmp",
        "/run/boxlite/root/dev",
        "/run/boxlite/root/sys",
        "/run/boxlite/root/proc",
        ROOT_DIR,
    ] {
        let _ = rustix::mount::unmount(target, UnmountFlags::DETACH);
    }
    if rustix::mount::unmount(DATA_DIR, UnmountFlags::empty()).is_err() {
        let _ = rustix::mount::mount_remount(DATA_DIR, MountFlags::RDONLY, "");
    }
    rustix::fs::sync();
}

fn kill_all(signal: Signal) {
    // SAFETY: kill(2) has no memory-safety preconditions; libc because -1 ("every process
    // but me") is not expressible as a rustix `Pid`. Failure (ESRCH: nobody left) is fine.
    unsafe {
        libc::kill(-1, signal.as_raw());
    }
}

/// Whether any process other than this one is left (in this PID namespace) that could still
/// be writing: kernel threads (kthreadd, pid 2, and its children) never end, and zombies have
/// ended already, so neither keeps the shutdown waiting.
fn others_alive() -> bool {
    let me = std::process::id();
    std::fs::read_dir("/proc").is_ok_and(|dir| {
        dir.flatten().any(|e| {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                return false;
            };
            pid != me
                && std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|stat| is_live_user_process(pid, &stat))
        })
    })
}

/// Reads `/proc/PID/stat`: whether it is a user process that has not ended (not kthreadd or
/// one of its kernel threads, not a zombie). The command name may hold spaces and parentheses,
/// so the fields are taken after its last `)`.
fn is_live_user_process(pid: u32, stat: &str) -> bool {
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return false;
    };
    let mut fields = rest.split_whitespace();
    let state = fields.next().unwrap_or("");
    let ppid = fields
        .next()
        .and_then(|p| p.parse::<u32>().ok())
        .unwrap_or(0);
    pid != KTHREADD && ppid != KTHREADD && state != "Z" && state != "X"
}

/// The kernel's thread-spawning thread; every kernel thread is its child.
const KTHREADD: u32 = 2;

/// Restarts the machine, which ends the VM (it runs with `reboot=t` and `-no-reboot`; without
/// ACPI there is no power-off). Never returns.
pub fn reboot() -> ! {
    rustix::fs::sync();
    let err = rustix::system::reboot(rustix::system::RebootCommand::Restart);
    eprintln!("boxlite-guest: reboot failed ({err:?}); halting here");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Prints why the agent cannot go on to the console and ends the VM; PID 1 must not exit
/// (the kernel would panic with a message that does not say why).
pub fn fatal(message: &str) -> ! {
    let line = format!("boxlite-guest: fatal: {message}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
    if let Ok(mut console) = std::fs::OpenOptions::new().write(true).open("/dev/console") {
        let _ = console.write_all(line.as_bytes());
    }
    reboot()
}

fn make_dir(path: &Path) -> Result<()> {
    match std::fs::create_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) => Err(Error::io("creating", path.display(), e)),
    }
}

fn c_str(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::Invalid(format!("{s:?} contains a NUL byte")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn kernel_threads_and_zombies_do_not_count_as_alive() {
        use super::is_live_user_process;
        assert!(is_live_user_process(40, "40 (sh) S 1 40 40 0 -1"));
        assert!(is_live_user_process(41, "41 (a (b) c) R 40 40 40 0 -1"));
        assert!(!is_live_user_process(2, "2 (kthreadd) S 0 0 0 0 -1"));
        assert!(!is_live_user_process(9, "9 (kworker/0:1) I 2 0 0 0 -1"));
        assert!(!is_live_user_process(42, "42 (sh) Z 1 40 40 0 -1"));
        assert!(!is_live_user_process(43, "garbage"));
    }

    use super::*;

    #[test]
    fn etc_files() {
        let (config, _) =
            crate::cmdline::parse("boxlite.hostname=web boxlite.dns=10.0.2.3,::1").unwrap();
        assert_eq!(
            resolv_conf(&config),
            "nameserver 10.0.2.3\nnameserver ::1\n"
        );
        assert!(hosts_file("web", None).ends_with("127.0.1.1\tweb\n"));
        let hosts = hosts_file("web", Some(Ipv4Addr::new(10, 0, 2, 2)));
        assert!(
            hosts.ends_with("127.0.1.1\tweb\n10.0.2.2\thost.boxlite.internal\n"),
            "{hosts}"
        );
        assert_eq!(hostname_file("web"), "web\n");
    }

    #[test]
    fn ext4_check_reads_the_superblock() {
        let tmp = tempfile::tempdir().unwrap();
        let blank = tmp.path().join("blank");
        std::fs::write(&blank, vec![0u8; 64 * 1024]).unwrap();
        let err = check_ext4(&blank).unwrap_err();
        assert!(err.to_string().contains("no ext4 filesystem"), "{err}");
        let mut sb = vec![0u8; 64 * 1024];
        sb[1024 + 56..1024 + 58].copy_from_slice(&EXT4_MAGIC.to_le_bytes());
        std::fs::write(&blank, sb).unwrap();
        check_ext4(&blank).unwrap();
        let err = check_ext4(&tmp.path().join("missing")).unwrap_err();
        assert_eq!(err.kind(), protocol::ErrorKind::NotFound);
    }
}
