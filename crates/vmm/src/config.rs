//! What a VM is made of.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Instant;

use crate::boot::Entry;
use crate::devices::virtio::console::Backend;

/// Most vCPUs (the MP table's room in the EBDA).
pub const MAX_CPUS: u8 = crate::boot::mptable::MAX_CPUS;
/// Most disks: the virtio IRQs left after the console, network and rng devices (fewer
/// when file systems are shared too: every virtio device takes one of
/// [`crate::layout::MAX_VIRTIO_DEVICES`] IRQs, which the builder checks).
pub const MAX_DISKS: usize = crate::layout::MAX_VIRTIO_DEVICES - 3;
/// Most shared file systems, likewise (fewer when there are disks).
pub const MAX_FS_DEVICES: usize = crate::layout::MAX_VIRTIO_DEVICES - 3;

/// What the boot vCPU runs.
pub enum Boot {
    /// A Linux kernel (ELF vmlinux or bzImage) and optional initramfs.
    Linux {
        /// The kernel image.
        kernel: PathBuf,
        /// The initramfs.
        initramfs: Option<PathBuf>,
        /// The command line, without the device list (the builder appends it).
        cmdline: String,
    },
    /// Raw code at `addr` (tests): every vCPU starts at `entry`.
    Program {
        /// The code.
        code: Vec<u8>,
        /// Where it is loaded.
        addr: u64,
        /// How the vCPUs enter it.
        entry: Entry,
    },
}

/// A raw disk image.
#[derive(Debug, Clone)]
pub struct Disk {
    /// The image file.
    pub path: PathBuf,
    /// Refuse guest writes.
    pub read_only: bool,
}

/// A directory shared with the guest through virtio-fs, served by a vhost-user daemon
/// (virtiofsd).
#[derive(Debug)]
pub struct FsDevice {
    /// A connected stream socket to the daemon.
    pub socket: UnixStream,
    /// The tag the guest mounts it by (`mount -t virtiofs TAG DIR`): 1..=36 bytes, no NUL.
    pub tag: String,
}

impl FsDevice {
    /// A device for `tag` served on `socket`, refusing a tag the guest could not see whole.
    pub fn new(socket: UnixStream, tag: &str) -> crate::Result<FsDevice> {
        crate::devices::virtio::fs::check_tag(tag)?;
        Ok(FsDevice {
            socket,
            tag: tag.to_string(),
        })
    }
}

/// The VM to build.
pub struct VmConfig {
    /// vCPUs, 1..=MAX_CPUS.
    pub cpus: u8,
    /// RAM in MiB.
    pub memory_mib: u64,
    /// What to boot.
    pub boot: Boot,
    /// Disks, in order (vda, vdb, …).
    pub disks: Vec<Disk>,
    /// The virtio console's host side.
    pub console: Option<Backend>,
    /// The network backend's stream, and the card's MAC address.
    pub net: Option<(UnixStream, [u8; 6])>,
    /// Add a virtio-rng device.
    pub rng: bool,
    /// Shared file systems (virtio-fs, after every other virtio device). Any makes guest
    /// RAM a shared memfd, which the daemons map.
    pub fs: Vec<FsDevice>,
    /// Where COM1's output goes (dropped if `None`).
    pub serial: Option<Box<dyn Write + Send>>,
    /// When the VMM started: the origin of the setup and boot times.
    pub started: Instant,
    /// End the VM when the guest agent pokes the boot timer.
    pub stop_on_boot: bool,
}

impl VmConfig {
    /// A VM with no devices but the legacy ones.
    pub fn new(cpus: u8, memory_mib: u64, boot: Boot) -> VmConfig {
        VmConfig {
            cpus,
            memory_mib,
            boot,
            disks: Vec::new(),
            console: None,
            net: None,
            rng: false,
            fs: Vec::new(),
            serial: None,
            started: Instant::now(),
            stop_on_boot: false,
        }
    }
}
