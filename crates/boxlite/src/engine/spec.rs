//! What an engine is asked to boot: the machine and its devices, engine-neutral.

use std::path::PathBuf;

/// Everything an engine needs to boot one box.
#[derive(Debug, Clone)]
pub struct VmSpec {
    /// The guest kernel: a PVH `vmlinux` or a `bzImage`.
    pub kernel: PathBuf,
    /// The agent initramfs.
    pub initramfs: PathBuf,
    /// vCPUs.
    pub cpus: u32,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// The guest's hostname.
    pub hostname: String,
    /// Where the VM process's own messages (stderr) go.
    pub vm_log: PathBuf,
    /// The devices, in the order the guest enumerates them (disks become `/dev/vda`,
    /// `/dev/vdb`, … in list order).
    pub devices: Vec<Device>,
}

/// One device of a box's VM; each engine has one arm per kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Device {
    /// A raw disk image on virtio-blk.
    Disk {
        /// The image file.
        path: PathBuf,
        /// Attached read-only (the guest's writes fail).
        read_only: bool,
    },
    /// The guest's serial console: a connected Unix socket inherited by the VM process as
    /// descriptor `fd`, read by the supervisor (which keeps the log, capped).
    Console {
        /// The descriptor number in the VM process.
        fd: i32,
    },
    /// The agent's channel: one end of a connected Unix socket pair, inherited by the VM
    /// process as descriptor `fd`; the supervisor holds the other end, so there is no path
    /// another process could race for.
    Agent {
        /// The descriptor number in the VM process.
        fd: i32,
    },
}

impl VmSpec {
    /// The kernel command line every engine passes: `port` is how the agent finds its
    /// channel, `reboot` how the guest resets (`t`: triple fault, `k`: the keyboard
    /// controller). The supervisor lists the image's base disk first and the box's disk
    /// second, so they are `/dev/vda` and `/dev/vdb`.
    pub fn kernel_cmdline(&self, port: &str, reboot: char) -> String {
        // With no ACPI the guest can only end the VM by resetting, which each engine turns
        // into a clean exit; `panic=-1` turns a kernel panic into that too.
        format!(
            "console=ttyS0 quiet reboot={reboot} panic=-1 boxlite.root=/dev/vda \
             boxlite.data=/dev/vdb boxlite.hostname={} boxlite.port={port}",
            self.hostname
        )
    }

    /// A spec for the tests of each engine's translation.
    #[cfg(test)]
    pub fn example() -> VmSpec {
        VmSpec {
            kernel: "/k/vmlinux".into(),
            initramfs: "/k/initramfs".into(),
            cpus: 2,
            memory_mib: 256,
            hostname: "web-1".into(),
            vm_log: "/b/vm.log".into(),
            devices: vec![
                Device::Disk {
                    path: "/d/base,1.ext4".into(),
                    read_only: true,
                },
                Device::Disk {
                    path: "/b/disk.ext4".into(),
                    read_only: false,
                },
                Device::Agent { fd: 3 },
                Device::Console { fd: 4 },
            ],
        }
    }
}
