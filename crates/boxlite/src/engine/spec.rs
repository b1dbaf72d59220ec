//! What an engine is asked to boot: the machine and its devices, engine-neutral.

use std::net::{IpAddr, Ipv4Addr};
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
    /// The guest's network settings, for its agent; `None` leaves its card (if any) down.
    pub net: Option<GuestNet>,
    /// The filesystem of the image's base disk (`/dev/vda`): `erofs`, or `ext4` for a disk an
    /// older runtime made.
    pub root_fstype: &'static str,
}

/// How the agent configures the guest's network card (`boxlite.net`, `boxlite.dns`,
/// `boxlite.hostaddr` on the kernel command line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestNet {
    /// The guest's address.
    pub address: Ipv4Addr,
    /// The subnet's prefix length.
    pub prefix: u8,
    /// The default route's next hop, on the subnet.
    pub gateway: Ipv4Addr,
    /// The link MTU.
    pub mtu: u16,
    /// Nameservers for the guest's `/etc/resolv.conf` (the agent takes at most 3); empty
    /// keeps the image's file.
    pub dns: Vec<IpAddr>,
    /// What `host.boxlite.internal` names in the guest's `/etc/hosts`.
    pub host_alias: Option<Ipv4Addr>,
}

impl GuestNet {
    /// The kernel command-line keys the agent reads, each preceded by a space.
    fn cmdline(&self) -> String {
        let mut line = format!(
            " boxlite.net={}/{},{},{}",
            self.address, self.prefix, self.gateway, self.mtu
        );
        if !self.dns.is_empty() {
            let dns: Vec<String> = self.dns.iter().map(IpAddr::to_string).collect();
            line.push_str(&format!(" boxlite.dns={}", dns.join(",")));
        }
        if let Some(ip) = self.host_alias {
            line.push_str(&format!(" boxlite.hostaddr={ip}"));
        }
        line
    }
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
    /// A virtio-net card: one end of a connected Unix stream socket pair, inherited by the VM
    /// process as descriptor `fd`, carrying Ethernet frames each behind its length as 4
    /// big-endian bytes (QEMU's `-netdev stream` framing); the supervisor's network stack
    /// holds the other end.
    Net {
        /// The descriptor number in the VM process.
        fd: i32,
        /// The card's MAC address.
        mac: [u8; 6],
    },
    /// A virtio-fs device (a bind volume): one end of a connected Unix stream socket,
    /// inherited by the VM process as descriptor `fd`, whose other end is a virtiofsd speaking
    /// vhost-user; the guest mounts it by `tag`. Guest memory must be shareable with the
    /// daemon (a memfd), which each engine arranges when a spec has one.
    Fs {
        /// The descriptor number in the VM process.
        fd: i32,
        /// The mount tag (at most 36 bytes, virtio-fs's field).
        tag: String,
    },
}

impl Device {
    /// `mac` as `52:54:00:12:34:56`, the form both engines take.
    pub fn mac_string(mac: &[u8; 6]) -> String {
        let hex: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
        hex.join(":")
    }
}

impl VmSpec {
    /// How many virtio devices the spec has (the serial console is not one).
    pub fn virtio_devices(&self) -> usize {
        self.devices
            .iter()
            .filter(|d| !matches!(d, Device::Console { .. }))
            .count()
    }

    /// Whether a device needs guest memory shared with another process (virtio-fs).
    pub fn shares_memory(&self) -> bool {
        self.devices.iter().any(|d| matches!(d, Device::Fs { .. }))
    }

    /// The kernel command line every engine passes: `port` is how the agent finds its
    /// channel, `reboot` how the guest resets (`t`: triple fault, `k`: the keyboard
    /// controller). The supervisor lists the image's base disk first and the box's disk
    /// second, so they are `/dev/vda` and `/dev/vdb`.
    pub fn kernel_cmdline(&self, port: &str, reboot: char) -> String {
        // With no ACPI the guest can only end the VM by resetting, which each engine turns
        // into a clean exit; `panic=-1` turns a kernel panic into that too.
        let mut line = format!(
            "console=ttyS0 quiet reboot={reboot} panic=-1 boxlite.root=/dev/vda \
             boxlite.rootfstype={} boxlite.data=/dev/vdb boxlite.hostname={} boxlite.port={port}",
            self.root_fstype, self.hostname
        );
        if let Some(net) = &self.net {
            line.push_str(&net.cmdline());
        }
        line
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
                Device::Net {
                    fd: 5,
                    mac: [0x52, 0x54, 0, 0x12, 0x34, 0x56],
                },
                Device::Fs {
                    fd: 6,
                    tag: "vol0".into(),
                },
            ],
            root_fstype: "erofs",
            net: Some(GuestNet {
                address: Ipv4Addr::new(10, 0, 2, 15),
                prefix: 24,
                gateway: Ipv4Addr::new(10, 0, 2, 2),
                mtu: 1500,
                dns: vec![IpAddr::V4(Ipv4Addr::new(10, 0, 2, 3))],
                host_alias: Some(Ipv4Addr::new(10, 0, 2, 2)),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_network_reaches_the_kernel_command_line() {
        let mut spec = VmSpec::example();
        let line = spec.kernel_cmdline("agent", 't');
        assert!(
            line.ends_with(
                "boxlite.port=agent boxlite.net=10.0.2.15/24,10.0.2.2,1500 \
                 boxlite.dns=10.0.2.3 boxlite.hostaddr=10.0.2.2"
            ),
            "{line}"
        );
        let net = spec.net.as_mut().unwrap();
        net.dns.clear();
        net.host_alias = None;
        let line = spec.kernel_cmdline("agent", 't');
        assert!(
            line.ends_with("boxlite.net=10.0.2.15/24,10.0.2.2,1500"),
            "{line}"
        );
        spec.net = None;
        assert!(!spec.kernel_cmdline("agent", 't').contains("boxlite.net"));
        assert_eq!(
            Device::mac_string(&[0x52, 0x54, 0, 0xab, 0x34, 0x5]),
            "52:54:00:ab:34:05"
        );
    }
}
