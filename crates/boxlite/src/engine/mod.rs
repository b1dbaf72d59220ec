//! Engines: the virtual machine monitors that run a box, each an external process the
//! supervisor owns.
//!
//! Both engines boot the same kernel and initramfs with the same disks (`/dev/vda` the
//! image's read-only base disk, `/dev/vdb` the box's writable disk), the kernel console on the
//! first serial port (appended to the box's console log) and the agent channel on a Unix socket
//! the engine serves and the supervisor connects to. Everything above the engine is identical.

mod qemu;

use std::path::PathBuf;
use std::process::Command;

use crate::error::{Error, Result};
use crate::host::KvmSupport;
use crate::options::EngineKind;

pub use qemu::Qemu;

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
    /// The image's base disk, attached read-only as `/dev/vda`.
    pub base_disk: PathBuf,
    /// The box's writable disk, attached read-write as `/dev/vdb`.
    pub box_disk: PathBuf,
    /// Where the guest's serial console is appended.
    pub console_log: PathBuf,
    /// Where the VM process's own messages (stderr) go.
    pub vm_log: PathBuf,
    /// The agent channel: the engine listens here, the supervisor connects.
    pub agent_socket: PathBuf,
    /// The guest's hostname.
    pub hostname: String,
}

/// An engine that can run a box on this host.
pub trait Engine: Send + Sync {
    /// A short description for `info` and `inspect`, e.g. `qemu (tcg)`.
    fn describe(&self) -> String;

    /// The command that boots `spec` and exits when the guest powers off.
    fn command(&self, spec: &VmSpec) -> Result<Command>;
}

/// The kernel command line every engine passes; `port` is how the agent finds its channel.
pub fn kernel_cmdline(spec: &VmSpec, port: &str) -> String {
    // `reboot=t`: with no ACPI the guest can only end the VM by resetting, which both engines
    // turn into a clean exit; `panic=-1` turns a kernel panic into that too.
    format!(
        "console=ttyS0 quiet reboot=t panic=-1 boxlite.root=/dev/vda boxlite.data=/dev/vdb \
         boxlite.hostname={} boxlite.port={port}",
        spec.hostname
    )
}

/// Picks the engine for `kind` on a host with `kvm`.
pub fn select(
    kind: EngineKind,
    kvm: &KvmSupport,
    qemu: Option<PathBuf>,
) -> Result<Box<dyn Engine>> {
    match kind {
        // The kvm engine (our own VMM) is not part of the runtime yet: `auto` runs QEMU, with
        // KVM acceleration where the host has hardware KVM.
        EngineKind::Auto | EngineKind::Qemu => {
            let Some(program) = qemu else {
                return Err(Error::Missing {
                    what: "qemu-system-x86_64".into(),
                    hint: "install it (apt-get install qemu-system-x86) or set BOXLITE_QEMU".into(),
                });
            };
            Ok(Box::new(Qemu::new(program, kvm.is_hardware())))
        }
        EngineKind::Kvm => Err(Error::Host(format!(
            "the kvm engine is not available in this build ({}); use --engine qemu",
            kvm.describe()
        ))),
    }
}
