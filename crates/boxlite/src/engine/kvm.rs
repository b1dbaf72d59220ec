//! The `kvm` engine: `boxlite-vmm`, our own VMM (crate `vmm`), on hardware KVM.

use std::path::PathBuf;
use std::process::Command;

use super::{Engine, VmSpec, kernel_cmdline};
use crate::error::Result;

/// Where the agent finds its channel: `boxlite-vmm`'s virtio-console. Unlike QEMU's, it
/// never drops output the host has not taken, so the console port is safe here.
const AGENT_PORT: &str = "/dev/hvc0";

/// `boxlite-vmm` as an engine.
#[derive(Debug, Clone)]
pub struct Kvm {
    program: PathBuf,
}

impl Kvm {
    /// `boxlite-vmm` at `program`.
    pub fn new(program: PathBuf) -> Kvm {
        Kvm { program }
    }

    /// The arguments that boot `spec`.
    pub fn args(&self, spec: &VmSpec) -> Vec<String> {
        let path = |p: &PathBuf| p.display().to_string();
        let mut args = vec![
            "--kernel".to_string(),
            path(&spec.kernel),
            "--initramfs".into(),
            path(&spec.initramfs),
            "--cpus".into(),
            spec.cpus.to_string(),
            "--memory".into(),
            spec.memory_mib.to_string(),
            "--disk".into(),
            format!("{},ro", path(&spec.base_disk)),
            "--disk".into(),
            path(&spec.box_disk),
            "--console-socket".into(),
            path(&spec.agent_socket),
            "--serial-log".into(),
            path(&spec.console_log),
            // `k`: boxlite-vmm ends the VM cleanly on the keyboard controller's reset.
            "--cmdline".into(),
            kernel_cmdline(spec, AGENT_PORT, 'k'),
        ];
        if std::env::var_os(super::FORCE_KVM_ENV).is_some_and(|v| v == "1") {
            args.push("--force-kvm".into());
        }
        args
    }
}

impl Engine for Kvm {
    fn describe(&self) -> String {
        "kvm (boxlite-vmm)".into()
    }

    fn command(&self, spec: &VmSpec) -> Result<Command> {
        let mut command = Command::new(&self.program);
        command.args(self.args(spec));
        Ok(command)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_attach_disks_console_and_serial() {
        let spec = VmSpec {
            kernel: "/k/vmlinux".into(),
            initramfs: "/k/initramfs".into(),
            cpus: 2,
            memory_mib: 256,
            base_disk: "/d/base.ext4".into(),
            box_disk: "/b/disk.ext4".into(),
            console_log: "/b/console.log".into(),
            vm_log: "/b/vm.log".into(),
            agent_socket: "/b/agent.sock".into(),
            hostname: "web-1".into(),
        };
        let args = Kvm::new("boxlite-vmm".into()).args(&spec).join(" ");
        assert!(
            args.contains("--disk /d/base.ext4,ro --disk /b/disk.ext4"),
            "{args}"
        );
        assert!(args.contains("--console-socket /b/agent.sock"), "{args}");
        assert!(args.contains("--cpus 2 --memory 256"), "{args}");
        assert!(args.contains("reboot=k"), "{args}");
        assert!(args.contains("boxlite.port=/dev/hvc0"), "{args}");
    }
}
