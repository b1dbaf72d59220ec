//! The `qemu` engine: `qemu-system-x86_64 -M microvm`, with KVM where the host has hardware
//! KVM and TCG (software emulation) otherwise.

use std::path::PathBuf;
use std::process::Command;

use super::{Engine, VmSpec, kernel_cmdline};
use crate::error::Result;

/// The name of the virtio-serial port that carries the protocol (`boxlite.port=agent`).
const AGENT_PORT: &str = "agent";

/// QEMU as an engine.
#[derive(Debug, Clone)]
pub struct Qemu {
    program: PathBuf,
    kvm: bool,
}

impl Qemu {
    /// QEMU at `program`, accelerated by KVM when `kvm`.
    pub fn new(program: PathBuf, kvm: bool) -> Qemu {
        Qemu { program, kvm }
    }

    /// The arguments that boot `spec`.
    pub fn args(&self, spec: &VmSpec) -> Vec<String> {
        let mut args: Vec<String> = Vec::new();
        let mut push = |items: &[&str]| args.extend(items.iter().map(|s| s.to_string()));
        // `acpi=off`: only then does QEMU list the virtio-mmio devices on the kernel command
        // line (`virtio_mmio.device=`), which is how our ACPI-less kernel finds them.
        push(&["-M", "microvm,acpi=off"]);
        if self.kvm {
            push(&["-accel", "kvm", "-cpu", "host"]);
        } else {
            push(&["-accel", "tcg"]);
        }
        push(&[
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
        ]);
        let memory = spec.memory_mib.to_string();
        let cpus = spec.cpus.to_string();
        push(&["-m", &memory, "-smp", &cpus]);
        args.push("-kernel".into());
        args.push(spec.kernel.display().to_string());
        args.push("-initrd".into());
        args.push(spec.initramfs.display().to_string());
        args.push("-append".into());
        args.push(kernel_cmdline(spec, AGENT_PORT, 't'));
        args.push("-chardev".into());
        args.push(format!(
            "file,id=console,path={},append=on",
            qemu_escape(&spec.console_log.display().to_string())
        ));
        args.push("-serial".into());
        args.push("chardev:console".into());
        args.push("-drive".into());
        args.push(format!(
            "id=base,file={},format=raw,if=none,readonly=on",
            qemu_escape(&spec.base_disk.display().to_string())
        ));
        args.push("-device".into());
        args.push("virtio-blk-device,drive=base".into());
        args.push("-drive".into());
        args.push(format!(
            "id=data,file={},format=raw,if=none,discard=unmap,cache=writeback",
            qemu_escape(&spec.box_disk.display().to_string())
        ));
        args.push("-device".into());
        args.push("virtio-blk-device,drive=data".into());
        args.push("-device".into());
        args.push("virtio-serial-device".into());
        args.push("-chardev".into());
        args.push(format!(
            "socket,id=agent,path={},server=on,wait=off",
            qemu_escape(&spec.agent_socket.display().to_string())
        ));
        // A serial port, not a `virtconsole`: QEMU drops console output that the socket
        // cannot take at once, and serial ports are flow-controlled.
        args.push("-device".into());
        args.push(format!("virtserialport,chardev=agent,name={AGENT_PORT}"));
        args
    }
}

impl Engine for Qemu {
    fn describe(&self) -> String {
        if self.kvm {
            "qemu (kvm)".into()
        } else {
            "qemu (tcg)".into()
        }
    }

    fn command(&self, spec: &VmSpec) -> Result<Command> {
        let mut command = Command::new(&self.program);
        command.args(self.args(spec));
        Ok(command)
    }
}

/// Escapes a value for QEMU's comma-separated option syntax (a comma is doubled).
fn qemu_escape(value: &str) -> String {
    value.replace(',', ",,")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> VmSpec {
        VmSpec {
            kernel: "/k/vmlinux".into(),
            initramfs: "/k/initramfs".into(),
            cpus: 2,
            memory_mib: 256,
            base_disk: "/d/base,1.ext4".into(),
            box_disk: "/b/disk.ext4".into(),
            console_log: "/b/console.log".into(),
            vm_log: "/b/vm.log".into(),
            agent_socket: "/b/agent.sock".into(),
            hostname: "web-1".into(),
        }
    }

    #[test]
    fn args_attach_disks_console_and_agent_port() {
        let args = Qemu::new("qemu".into(), false).args(&spec()).join(" ");
        assert!(args.contains("-accel tcg"), "{args}");
        assert!(args.contains("-m 256 -smp 2"), "{args}");
        assert!(args.contains("file=/d/base,,1.ext4,format=raw,if=none,readonly=on"));
        assert!(args.contains("boxlite.hostname=web-1 boxlite.port=agent"));
        assert!(args.contains("virtserialport,chardev=agent,name=agent"));
        assert!(args.contains("path=/b/console.log,append=on"));
        let kvm = Qemu::new("qemu".into(), true).args(&spec()).join(" ");
        assert!(kvm.contains("-accel kvm -cpu host"), "{kvm}");
        assert_eq!(Qemu::new("q".into(), true).describe(), "qemu (kvm)");
    }
}
