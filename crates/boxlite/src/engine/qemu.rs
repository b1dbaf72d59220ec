//! The `qemu` engine: `qemu-system-x86_64 -M microvm`, with KVM where the host has hardware
//! KVM and TCG (software emulation) otherwise.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{Device, Engine, Host, ResolvedEngine, VmSpec};
use crate::error::{Artefact, Error, Result};
use crate::host;
use crate::options::{EngineKind, RuntimeOptions};

/// The program's name.
const PROGRAM: &str = "qemu-system-x86_64";

/// The name of the virtio-serial port that carries the protocol (`boxlite.port=agent`).
const AGENT_PORT: &str = "agent";

/// QEMU's own seccomp filter (`-sandbox`, QEMU built with libseccomp, as Debian's is): on,
/// plus denying obsolete calls, privilege changes (set*uid), spawning processes (fork,
/// execve) and resource control (scheduling, affinity, priorities). A denied call kills it.
pub const SANDBOX: &str = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny";

/// The virtio-fs request queue's size: QEMU's own default (128) makes a 1 MiB read take
/// many round trips; 1024 is what virtiofsd's documentation uses.
const FS_QUEUE_SIZE: u32 = 1024;

/// The virtio-mmio transports of `-M microvm,acpi=off` (measured on QEMU 7.2: the ninth
/// virtio device finds no bus; the second IO-APIC that would give 24 needs ACPI).
const VIRTIO_TRANSPORTS: usize = 8;

/// QEMU as an engine.
pub struct Qemu;

impl Engine for Qemu {
    fn kind(&self) -> EngineKind {
        EngineKind::Qemu
    }

    fn name(&self) -> &'static str {
        "qemu"
    }

    fn max_cpus(&self) -> u32 {
        crate::options::MAX_CPUS
    }

    fn max_devices(&self) -> usize {
        VIRTIO_TRANSPORTS
    }

    fn locate(&self, options: &RuntimeOptions) -> Option<PathBuf> {
        options.qemu.clone().or_else(|| host::find_program(PROGRAM))
    }

    fn check(&self, _: &Host, program: Option<&Path>, _: bool) -> Result<()> {
        match program {
            Some(_) => Ok(()),
            None => Err(Error::Missing {
                what: Artefact::Program(PROGRAM.into()),
                hint: "install it (apt-get install qemu-system-x86)".into(),
            }),
        }
    }

    fn describe(&self, engine: &ResolvedEngine) -> String {
        if engine.hardware_kvm {
            "qemu (kvm)".into()
        } else {
            "qemu (tcg)".into()
        }
    }

    fn detail(&self, host: &Host, program: Option<&Path>) -> String {
        match program {
            Some(path) if host.kvm.is_hardware() => {
                format!("{} with KVM acceleration", path.display())
            }
            Some(path) => format!(
                "{} with TCG (software emulation: no usable hardware KVM)",
                path.display()
            ),
            None => format!("{PROGRAM} not found (apt-get install qemu-system-x86)"),
        }
    }

    fn command(&self, engine: &ResolvedEngine, spec: &VmSpec) -> Command {
        let mut command = Command::new(&engine.program);
        // `acpi=off`: only then does QEMU list the virtio-mmio devices on the kernel command
        // line (`virtio_mmio.device=`), which is how our ACPI-less kernel finds them.
        command.args(["-M", "microvm,acpi=off"]);
        if engine.hardware_kvm {
            command.args(["-accel", "kvm", "-cpu", "host"]);
        } else {
            command.args(["-accel", "tcg"]);
        }
        command
            .args([
                "-nodefaults",
                "-no-user-config",
                "-display",
                "none",
                "-no-reboot",
            ])
            .args(["-m", &spec.memory_mib.to_string()])
            .args(["-smp", &spec.cpus.to_string()])
            .arg("-kernel")
            .arg(&spec.kernel)
            .arg("-initrd")
            .arg(&spec.initramfs)
            .arg("-append")
            .arg(spec.kernel_cmdline(AGENT_PORT, 't'));
        if spec.shares_memory() {
            // vhost-user: the daemon maps guest RAM itself, so it must be a shared memfd.
            command
                .arg("-object")
                .arg(format!(
                    "memory-backend-memfd,id=mem,size={}M,share=on",
                    spec.memory_mib
                ))
                .args(["-machine", "memory-backend=mem"]);
        }
        let mut filesystems = 0;
        let mut disks = 0;
        for device in &spec.devices {
            match device {
                Device::Disk { path, read_only } => {
                    let id = format!("disk{disks}");
                    disks += 1;
                    // `report`: an I/O error (a full host disk) reaches the guest as EIO. QEMU's
                    // default pauses the VM, and with no monitor nothing would resume it.
                    let how = if *read_only {
                        "readonly=on,werror=report,rerror=report"
                    } else {
                        "discard=unmap,cache=writeback,werror=report,rerror=report"
                    };
                    command
                        .arg("-drive")
                        .arg(option(
                            &format!("id={id},file="),
                            path,
                            &format!(",format=raw,if=none,{how}"),
                        ))
                        .arg("-device")
                        .arg(format!("virtio-blk-device,drive={id}"));
                }
                Device::Console { fd } => {
                    command
                        .arg("-chardev")
                        .arg(format!("socket,id=console,fd={fd}"))
                        .args(["-serial", "chardev:console"]);
                }
                Device::Agent { fd } => {
                    // A serial port, not a `virtconsole`: QEMU drops console output that the
                    // socket cannot take at once, and serial ports are flow-controlled.
                    command
                        .args(["-device", "virtio-serial-device", "-chardev"])
                        .arg(format!("socket,id=agent,fd={fd}"))
                        .arg("-device")
                        .arg(format!("virtserialport,chardev=agent,name={AGENT_PORT}"));
                }
                Device::Net { fd, mac } => {
                    // `server=off`: the socket is connected already; QEMU frames each packet
                    // behind its length as 4 big-endian bytes, the stream the stack reads.
                    command
                        .arg("-netdev")
                        .arg(format!(
                            "stream,id=net0,server=off,addr.type=fd,addr.str={fd}"
                        ))
                        .arg("-device")
                        .arg(format!(
                            "virtio-net-device,netdev=net0,mac={}",
                            Device::mac_string(mac)
                        ));
                }
                Device::Fs { fd, tag } => {
                    let id = format!("fs{filesystems}");
                    filesystems += 1;
                    // The tag is ours (`vol0`, …), never the user's, so it needs no escaping.
                    command
                        .arg("-chardev")
                        .arg(format!("socket,id={id},fd={fd}"))
                        .arg("-device")
                        .arg(format!(
                            "vhost-user-fs-device,chardev={id},tag={tag},queue-size={FS_QUEUE_SIZE}"
                        ));
                }
            }
        }
        command.args(["-sandbox", SANDBOX]);
        command
    }
}

/// `before` + `path` (commas doubled, QEMU's escape) + `after`, keeping a non-UTF-8 path's
/// bytes.
fn option(before: &str, path: &Path, after: &str) -> OsString {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let mut bytes = before.as_bytes().to_vec();
    for &b in path.as_os_str().as_bytes() {
        bytes.push(b);
        if b == b',' {
            bytes.push(b',');
        }
    }
    bytes.extend_from_slice(after.as_bytes());
    OsString::from_vec(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(hardware_kvm: bool) -> String {
        let engine = ResolvedEngine {
            kind: EngineKind::Qemu,
            program: "qemu".into(),
            hardware_kvm,
            forced: false,
        };
        let args: Vec<String> = Qemu
            .command(&engine, &VmSpec::example())
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        args.join(" ")
    }

    #[test]
    fn args_attach_disks_console_and_agent_port() {
        let args = args(false);
        assert!(args.contains("-accel tcg"), "{args}");
        assert!(args.contains("-m 256 -smp 2"), "{args}");
        assert!(args.contains("file=/d/base,,1.ext4,format=raw,if=none,readonly=on"));
        assert!(args.contains("werror=report,rerror=report"), "{args}");
        assert!(args.contains("boxlite.hostname=web-1 boxlite.port=agent"));
        assert!(args.contains("virtserialport,chardev=agent,name=agent"));
        assert!(args.contains("socket,id=agent,fd=3"), "{args}");
        assert!(
            args.contains("socket,id=console,fd=4 -serial chardev:console"),
            "{args}"
        );
        assert!(
            args.contains(
                "-netdev stream,id=net0,server=off,addr.type=fd,addr.str=5 \
                 -device virtio-net-device,netdev=net0,mac=52:54:00:12:34:56"
            ),
            "{args}"
        );
        assert!(
            args.contains("boxlite.net=10.0.2.15/24,10.0.2.2,1500"),
            "{args}"
        );
        assert!(
            args.contains(
                "-object memory-backend-memfd,id=mem,size=256M,share=on -machine memory-backend=mem"
            ),
            "{args}"
        );
        assert!(
            args.contains(
                "-chardev socket,id=fs0,fd=6 -device \
                 vhost-user-fs-device,chardev=fs0,tag=vol0,queue-size=1024"
            ),
            "{args}"
        );
        assert!(args.ends_with(&format!("-sandbox {SANDBOX}")), "{args}");
        let kvm = self::args(true);
        assert!(kvm.contains("-accel kvm -cpu host"), "{kvm}");
    }
}
