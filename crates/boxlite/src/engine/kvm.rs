//! The `kvm` engine: `boxlite-vmm`, our own VMM (crate `vmm`), on hardware KVM.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{Device, Engine, Host, ResolvedEngine, VmSpec};
use crate::error::{Artefact, Error, Result};
use crate::host;
use crate::options::{EngineKind, RuntimeOptions};

/// The program's name.
const PROGRAM: &str = "boxlite-vmm";

/// Where the agent finds its channel: `boxlite-vmm`'s virtio-console. Unlike QEMU's, it
/// never drops output the host has not taken, so the console port is safe here.
const AGENT_PORT: &str = "/dev/hvc0";

/// The most vCPUs `boxlite-vmm` boots: its MP table describes at most 32 processors.
const MAX_CPUS: u32 = 32;

/// `boxlite-vmm` as an engine.
pub struct Kvm;

impl Engine for Kvm {
    fn kind(&self) -> EngineKind {
        EngineKind::Kvm
    }

    fn name(&self) -> &'static str {
        "kvm"
    }

    fn max_cpus(&self) -> u32 {
        MAX_CPUS
    }

    fn max_devices(&self) -> usize {
        // boxlite-vmm's virtio-mmio windows, less its own entropy device.
        VMM_VIRTIO_DEVICES - 1
    }

    fn locate(&self, options: &RuntimeOptions) -> Option<PathBuf> {
        options
            .vmm
            .clone()
            .or_else(|| host::beside_current_exe(PROGRAM))
            .or_else(|| host::find_program(PROGRAM))
    }

    fn check(&self, host: &Host, program: Option<&Path>, auto: bool) -> Result<()> {
        if program.is_none() {
            return Err(Error::Missing {
                what: Artefact::Program(format!("{PROGRAM} (the kvm engine)")),
                hint: "install it beside the program that uses boxlite or in PATH".into(),
            });
        }
        if host.kvm.is_hardware() || (host.force_kvm && !auto) {
            return Ok(());
        }
        Err(Error::EngineUnavailable {
            engine: self.name().into(),
            reason: host.kvm.describe(),
        })
    }

    fn describe(&self, _: &ResolvedEngine) -> String {
        "kvm (boxlite-vmm)".into()
    }

    fn detail(&self, host: &Host, program: Option<&Path>) -> String {
        match program {
            Some(path) => format!("{}: {}", path.display(), host.kvm.describe()),
            None => format!("{PROGRAM} not found; {}", host.kvm.describe()),
        }
    }

    fn command(&self, engine: &ResolvedEngine, spec: &VmSpec) -> Command {
        let mut command = Command::new(&engine.program);
        command
            .arg("--kernel")
            .arg(&spec.kernel)
            .arg("--initramfs")
            .arg(&spec.initramfs)
            .args(["--cpus", &spec.cpus.to_string()])
            .args(["--memory", &spec.memory_mib.to_string()]);
        for device in &spec.devices {
            match device {
                Device::Disk { path, read_only } => {
                    // boxlite-vmm splits a trailing `,ro` off; any other comma is the path's.
                    let mut value = path.as_os_str().to_os_string();
                    if *read_only {
                        value.push(",ro");
                    }
                    command.arg("--disk").arg(value);
                }
                Device::Console { fd } => {
                    command.args(["--serial-fd", &fd.to_string()]);
                }
                Device::Agent { fd } => {
                    command.args(["--console-fd", &fd.to_string()]);
                }
                Device::Net { fd, mac } => {
                    command
                        .args(["--net-fd", &fd.to_string()])
                        .args(["--net-mac", &Device::mac_string(mac)]);
                }
                Device::Fs { fd, tag } => {
                    command.arg("--fs").arg(format!("fd={fd},tag={tag}"));
                }
            }
        }
        // `k`: boxlite-vmm ends the VM cleanly on the keyboard controller's reset.
        command
            .arg("--cmdline")
            .arg(spec.kernel_cmdline(AGENT_PORT, 'k'));
        if engine.forced {
            command.arg("--force-kvm");
        }
        command
    }
}

/// boxlite-vmm's virtio-mmio windows (`vmm::layout::MAX_VIRTIO_DEVICES`: IRQs 5 to 23).
const VMM_VIRTIO_DEVICES: usize = 19;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_attach_disks_console_and_serial() {
        let engine = ResolvedEngine {
            kind: EngineKind::Kvm,
            program: "boxlite-vmm".into(),
            hardware_kvm: true,
            forced: false,
        };
        let command = Kvm.command(&engine, &VmSpec::example());
        let args: Vec<String> = command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let args = args.join(" ");
        assert!(
            args.contains("--disk /d/base,1.ext4,ro --disk /b/disk.ext4"),
            "{args}"
        );
        assert!(args.contains("--console-fd 3"), "{args}");
        assert!(args.contains("--serial-fd 4"), "{args}");
        assert!(
            args.contains("--net-fd 5 --net-mac 52:54:00:12:34:56"),
            "{args}"
        );
        assert!(args.contains("boxlite.hostaddr=10.0.2.2"), "{args}");
        assert!(args.contains("--fs fd=6,tag=vol0"), "{args}");
        assert!(args.contains("--cpus 2 --memory 256"), "{args}");
        assert!(args.contains("reboot=k"), "{args}");
        assert!(args.contains("boxlite.port=/dev/hvc0"), "{args}");
        assert!(!args.contains("--force-kvm"), "{args}");
    }
}
