//! Engines: the virtual machine monitors that run a box, each an external process the
//! supervisor owns.
//!
//! Both engines boot the same kernel and initramfs with the same disks (`/dev/vda` the
//! image's read-only base disk, `/dev/vdb` the box's writable disk), the kernel console on the
//! first serial port (appended to the box's console log) and the agent channel on a Unix socket
//! the engine serves and the supervisor connects to. Everything above the engine is identical.

mod kvm;
mod qemu;

use std::path::PathBuf;
use std::process::Command;

use crate::error::{Error, Result};
use crate::host::KvmSupport;
use crate::options::EngineKind;

pub use kvm::Kvm;
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

/// The kernel command line every engine passes: `port` is how the agent finds its channel,
/// `reboot` how the guest resets (`t`: triple fault, `k`: the keyboard controller).
pub fn kernel_cmdline(spec: &VmSpec, port: &str, reboot: char) -> String {
    // With no ACPI the guest can only end the VM by resetting, which each engine turns into a
    // clean exit; `panic=-1` turns a kernel panic into that too.
    format!(
        "console=ttyS0 quiet reboot={reboot} panic=-1 boxlite.root=/dev/vda \
         boxlite.data=/dev/vdb boxlite.hostname={} boxlite.port={port}",
        spec.hostname
    )
}

/// The environment variable that lets `--engine kvm` run where KVM is not hardware KVM
/// (`kvm_pvm`), for experiments: Linux guests die there.
pub const FORCE_KVM_ENV: &str = "BOXLITE_FORCE_KVM";

/// The programs the engines run, where found.
#[derive(Debug, Clone, Default)]
pub struct Programs {
    /// `qemu-system-x86_64`.
    pub qemu: Option<PathBuf>,
    /// `boxlite-vmm`, our own VMM.
    pub vmm: Option<PathBuf>,
}

/// Which engine `kind` means on a host with `kvm` and `programs`, or why none can run.
pub fn resolve(kind: EngineKind, kvm: &KvmSupport, programs: &Programs) -> Result<EngineKind> {
    let forced = std::env::var_os(FORCE_KVM_ENV).is_some_and(|v| v == "1");
    match kind {
        EngineKind::Auto if kvm.is_hardware() && programs.vmm.is_some() => Ok(EngineKind::Kvm),
        EngineKind::Auto | EngineKind::Qemu if programs.qemu.is_none() => Err(Error::Missing {
            what: "qemu-system-x86_64".into(),
            hint: "install it (apt-get install qemu-system-x86) or set BOXLITE_QEMU".into(),
        }),
        EngineKind::Auto | EngineKind::Qemu => Ok(EngineKind::Qemu),
        EngineKind::Kvm if programs.vmm.is_none() => Err(Error::Missing {
            what: "boxlite-vmm (the kvm engine)".into(),
            hint: "install it beside the program that uses boxlite or in PATH, set \
                   BOXLITE_VMM, or use --engine qemu"
                .into(),
        }),
        EngineKind::Kvm if kvm.is_hardware() || forced => Ok(EngineKind::Kvm),
        EngineKind::Kvm => Err(Error::Host(format!(
            "the kvm engine cannot run here: {}; use --engine qemu (or set {FORCE_KVM_ENV}=1 \
             to try anyway)",
            kvm.describe()
        ))),
    }
}

/// The engine for `kind` on a host with `kvm` and `programs`.
pub fn select(kind: EngineKind, kvm: &KvmSupport, programs: &Programs) -> Result<Box<dyn Engine>> {
    let resolved = resolve(kind, kvm, programs)?;
    match (resolved, &programs.vmm, &programs.qemu) {
        (EngineKind::Kvm, Some(vmm), _) => Ok(Box::new(Kvm::new(vmm.clone()))),
        (_, _, Some(qemu)) => Ok(Box::new(Qemu::new(qemu.clone(), kvm.is_hardware()))),
        _ => Err(Error::Host(format!("no program for the {resolved} engine"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_picks_kvm_only_on_hardware_kvm_with_the_vmm() {
        let both = Programs {
            qemu: Some("/q".into()),
            vmm: Some("/v".into()),
        };
        let qemu_only = Programs {
            qemu: Some("/q".into()),
            vmm: None,
        };
        let hw = KvmSupport::Hardware;
        let pvm = KvmSupport::Paravirtual;
        assert_eq!(
            resolve(EngineKind::Auto, &hw, &both).unwrap(),
            EngineKind::Kvm
        );
        assert_eq!(
            resolve(EngineKind::Auto, &hw, &qemu_only).unwrap(),
            EngineKind::Qemu
        );
        assert_eq!(
            resolve(EngineKind::Auto, &pvm, &both).unwrap(),
            EngineKind::Qemu
        );
        assert_eq!(
            resolve(EngineKind::Qemu, &hw, &both).unwrap(),
            EngineKind::Qemu
        );
        if std::env::var_os(FORCE_KVM_ENV).is_none() {
            let err = resolve(EngineKind::Kvm, &pvm, &both)
                .unwrap_err()
                .to_string();
            assert!(err.contains("--engine qemu"), "{err}");
        }
        let err = resolve(EngineKind::Kvm, &hw, &qemu_only)
            .unwrap_err()
            .to_string();
        assert!(err.contains("boxlite-vmm"), "{err}");
        let none = Programs::default();
        assert!(resolve(EngineKind::Auto, &pvm, &none).is_err());
    }
}
