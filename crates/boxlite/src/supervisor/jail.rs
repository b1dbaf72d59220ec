//! The jail a box's VM process runs in (crate `jail`): which files it may use and how, as
//! whom, with which limits. The policy lives here; later devices (network, volumes) add
//! their paths in [`for_box`].
//!
//! The engine never gets a path into the state directory: every file it opens is a
//! descriptor the supervisor opened (`O_PATH`) and passes, named `/proc/self/fd/N` on its
//! command line, and the agent channel and serial console are socket pairs passed as they
//! are. So the VM process, running as a user of its own, needs no search permission on the
//! directories above (a home under /root is 0700), and Landlock
//! limits it to those files, the kernel, initramfs and base disk (read-only), and what the
//! program itself needs to run.

use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use jail::{Access, CgroupLimits, Grant, Identity, Jail, Protections, Resource};

use crate::engine::{Device, ResolvedEngine, VmSpec};
use crate::error::{Error, Result};
use crate::options::EngineKind;

/// Where the supervisor records the protections of the box's VM process (last boot).
pub const PROTECTIONS_FILE: &str = "protections.json";

/// The group every VM process is in (as a supplementary group) when the supervisor runs as
/// root: the read-only files boxes share (base disks) are readable by it. The boxes' own
/// users follow it: each box gets `VM_GROUP + 1 + n`, `n` from its id, so two boxes' VMs
/// rarely share a user (they cannot signal or trace each other). systemd documents
/// 0x70000000–0x7FFEFFFF as unused by it and by container managers; the ids own nothing
/// outside the boxes' files.
const VM_GROUP: u32 = 0x7000_0000;
/// How many hex digits of the box id pick its user (16 bits: 65 536 ids).
const VM_ID_DIGITS: usize = 4;
/// The descriptor limit of a VM process: QEMU and boxlite-vmm hold a few dozen (disks,
/// eventfds per queue, KVM, sockets); 1024 is the usual soft limit, far above that.
const NOFILE_LIMIT: u64 = 1024;
/// Threads a VM process may have besides its vCPUs: QEMU's main loop, RCU and I/O worker
/// pool (up to 64), boxlite-vmm's device thread. Counts only the box's own user.
const THREADS_BESIDES_VCPUS: u64 = 128;
/// Memory a VM process uses beyond guest RAM (the cgroup's `memory.max` adds it): QEMU's
/// TCG translation cache, device buffers and libraries; boxlite-vmm needs far less.
const MEMORY_OVERHEAD_MIB: u64 = 256;
/// The `cpu.max` period (µs); the quota is one period per vCPU.
const CPU_PERIOD_US: u64 = 100_000;
/// What the VM process creates (its agent socket) is its own only.
const UMASK: u32 = 0o077;

/// Where programs, libraries and their data live: read and executed, never written.
const SYSTEM_DIRS: &[&str] = &["/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin"];
/// Files any dynamically linked program reads (missing ones are left out).
const SYSTEM_FILES: &[&str] = &[
    "/etc/ld.so.cache",
    "/etc/localtime",
    "/dev/urandom",
    "/dev/random",
    // glibc's CPU count, QEMU's NUMA probe.
    "/sys/devices/system/cpu",
    "/sys/devices/system/node",
];

/// A VM process that is not confined, for measuring what the jail costs and for debugging:
/// it only gets `channels` and dies with its supervisor, and every protection is reported
/// off.
pub fn unconfined(spec: &VmSpec, channels: Vec<OwnedFd>) -> (VmSpec, Jail, Protections) {
    let mut jail = Jail::new();
    for channel in channels {
        jail.pass_fd(channel);
    }
    jail.die_with_parent(libc::SIGKILL);
    let mut notes = Protections::default();
    for name in [
        jail::ENVIRONMENT,
        jail::DESCRIPTORS,
        jail::NO_NEW_PRIVS,
        jail::RLIMITS,
        jail::NAMESPACES,
        jail::IDENTITY,
        jail::LANDLOCK,
        jail::CGROUP,
    ] {
        notes.set(name, false, "the runtime was told not to jail VM processes");
    }
    (spec.clone(), jail, notes)
}

/// The jail for box `id` and the spec its engine's command is built from: `spec` with every
/// path replaced by a passed descriptor's. `channels` (the VM's ends of the agent and
/// console socket pairs, which `spec` names by number) are passed as they are.
pub fn for_box(
    spec: &VmSpec,
    engine: &ResolvedEngine,
    id: &str,
    channels: Vec<OwnedFd>,
) -> Result<(VmSpec, Jail, Protections)> {
    let mut jail = Jail::new();
    let mut notes = Protections::default();
    let kvm = engine.hardware_kvm || engine.kind == EngineKind::Kvm;
    match identity(id, kvm) {
        Ok(identity) => {
            jail.identity(identity);
        }
        Err(why) => notes.set(jail::IDENTITY, false, why),
    }
    for dir in SYSTEM_DIRS {
        jail.allow(dir, Access::Execute);
    }
    for file in SYSTEM_FILES {
        jail.allow(file, Access::Read);
    }
    jail.allow(&engine.program, Access::Execute)
        .allow("/dev/null", Access::Device);
    if kvm {
        jail.allow("/dev/kvm", Access::Device);
    }

    let mut jailed = spec.clone();
    for input in [&spec.kernel, &spec.initramfs] {
        jail.grant(input.clone(), Grant::ReadableBy(VM_GROUP));
    }
    jailed.kernel = pass(&mut jail, &spec.kernel, Access::Read)?;
    jailed.initramfs = pass(&mut jail, &spec.initramfs, Access::Read)?;
    for device in &mut jailed.devices {
        match device {
            Device::Disk { path, read_only } => {
                let access = if *read_only {
                    jail.grant(path.clone(), Grant::ReadableBy(VM_GROUP));
                    Access::Read
                } else {
                    jail.grant(path.clone(), Grant::File);
                    Access::ReadWrite
                };
                *path = pass(&mut jail, path, access)?;
            }
            // Connected sockets, not paths: nothing to open or allow.
            Device::Console { .. }
            | Device::Agent { .. }
            | Device::Net { .. }
            | Device::Fs { .. } => {}
        }
    }
    for channel in channels {
        jail.pass_fd(channel);
    }

    let cpus = u64::from(spec.cpus);
    jail.namespaces()
        .rlimit(Resource::Core, 0)
        .rlimit(Resource::NoFile, NOFILE_LIMIT)
        .rlimit(Resource::NProc, cpus + THREADS_BESIDES_VCPUS)
        .cgroup(CgroupLimits {
            name: format!("box-{}", id.get(..16).unwrap_or(id)),
            memory_max: (u64::from(spec.memory_mib) + MEMORY_OVERHEAD_MIB) << 20,
            cpu_max: (cpus * CPU_PERIOD_US, CPU_PERIOD_US),
        })
        .die_with_parent(libc::SIGKILL)
        .umask(UMASK);
    notes.set(jail::SECCOMP, false, seccomp_plan(engine));
    Ok((jailed, jail, notes))
}

/// How the engine filters its system calls (confirmed from /proc once it booted).
fn seccomp_plan(engine: &ResolvedEngine) -> String {
    match engine.kind {
        EngineKind::Kvm => "boxlite-vmm installs its per-thread allowlists (vCPU, devices, \
            main) once the VM is built; other calls kill it"
            .into(),
        _ => format!(
            "QEMU's own filter: -sandbox {}",
            crate::engine::QEMU_SANDBOX
        ),
    }
}

/// Records what the VM process `pid` shows in /proc/PID/status now that it booted: its
/// seccomp mode and no-new-privileges flag, as the kernel reports them.
pub fn observe(protections: &mut Protections, pid: u32) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
            .unwrap_or("?")
            .to_string()
    };
    let seccomp = field("Seccomp");
    let plan = protections
        .get(jail::SECCOMP)
        .map(|p| p.reason.clone())
        .unwrap_or_default();
    protections.set(
        jail::SECCOMP,
        seccomp == "2",
        format!("{plan}; the VM process shows Seccomp: {seccomp} (2 = filter)"),
    );
    let nnp = field("NoNewPrivs");
    if nnp != "1" {
        protections.set(
            jail::NO_NEW_PRIVS,
            false,
            format!("the VM process shows NoNewPrivs: {nnp}"),
        );
    }
}

/// Writes `protections` to the box's [`PROTECTIONS_FILE`] (replaced whole).
pub fn record(dir: &Path, protections: &Protections) -> Result<()> {
    let path = dir.join(PROTECTIONS_FILE);
    let tmp = dir.join(format!("{PROTECTIONS_FILE}.tmp"));
    let json = serde_json::to_vec_pretty(protections)
        .map_err(|e| Error::InvalidInput(format!("encoding the protections: {e}")))?;
    std::fs::write(&tmp, json).map_err(|e| Error::io("writing", &tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io("renaming", &path, e))
}

/// Forgets an earlier boot's protections.
pub fn forget(dir: &Path) {
    let _ = std::fs::remove_file(dir.join(PROTECTIONS_FILE));
}

/// The protections recorded for the box in `dir`, if its VM ever booted.
pub fn recorded(dir: &Path) -> Option<Protections> {
    let bytes = std::fs::read(dir.join(PROTECTIONS_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// What a box's VM gets on this host: the jail's report, and each engine's seccomp filter.
pub fn host() -> Protections {
    let mut p = jail::host();
    if let Some(kernel) = p.get(jail::SECCOMP).cloned() {
        let reason = if kernel.active {
            format!(
                "{}: qemu runs with -sandbox {}; boxlite-vmm installs per-thread allowlists",
                kernel.reason,
                crate::engine::QEMU_SANDBOX
            )
        } else {
            kernel.reason
        };
        p.set(jail::SECCOMP, kernel.active, reason);
    }
    p
}

/// Opens `path` as an `O_PATH` descriptor for the jail to pass, allows `access` beneath it,
/// and returns the name the VM process opens it by.
fn pass(jail: &mut Jail, path: &Path, access: Access) -> Result<PathBuf> {
    let file: File = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(path)
        .map_err(|e| Error::io("opening for the VM", path, e))?;
    jail.allow(path, access);
    let fd: OwnedFd = file.into();
    let number = fd.as_raw_fd();
    jail.pass_fd(fd);
    Ok(PathBuf::from(format!("/proc/self/fd/{number}")))
}

/// The user box `id`'s VM runs as, or why it stays root: with KVM, the user must be able to
/// open /dev/kvm (world-accessible, or through its group).
fn identity(id: &str, kvm: bool) -> std::result::Result<Identity, String> {
    let n = id
        .get(..VM_ID_DIGITS)
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .unwrap_or(0);
    let uid = VM_GROUP + 1 + n;
    let mut groups = vec![VM_GROUP];
    if kvm {
        let meta = std::fs::metadata("/dev/kvm").map_err(|e| format!("/dev/kvm: {e}"))?;
        let mode = meta.mode();
        if mode & 0o006 != 0o006 {
            if mode & 0o060 != 0o060 {
                return Err(format!(
                    "stays root: /dev/kvm (mode {:o}, group {}) can be opened by its owner \
                     only; give it a group (e.g. kvm, mode 0660) for VM processes to run as \
                     a user of their own",
                    mode & 0o777,
                    meta.gid()
                ));
            }
            groups.push(meta.gid());
        }
    }
    Ok(Identity {
        uid,
        gid: uid,
        groups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_the_engine_gets_is_a_passed_descriptor() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = VmSpec::example();
        let base = dir.path().join("base.ext4");
        let disk = dir.path().join("disk.ext4");
        for f in [&base, &disk] {
            std::fs::write(f, b"").unwrap();
        }
        spec.kernel = base.clone();
        spec.initramfs = base.clone();
        spec.devices = vec![
            Device::Disk {
                path: base.clone(),
                read_only: true,
            },
            Device::Disk {
                path: disk.clone(),
                read_only: false,
            },
            Device::Agent { fd: 3 },
            Device::Console { fd: 4 },
        ];
        let engine = ResolvedEngine {
            kind: EngineKind::Qemu,
            program: "/usr/bin/qemu-system-x86_64".into(),
            hardware_kvm: false,
            forced: false,
        };
        let (jailed, _jail, notes) = for_box(&spec, &engine, &"ab".repeat(32), Vec::new()).unwrap();
        let fd = |p: &Path| p.to_str().unwrap().starts_with("/proc/self/fd/");
        assert!(fd(&jailed.kernel) && fd(&jailed.initramfs));
        for device in &jailed.devices {
            match device {
                Device::Disk { path, .. } => assert!(fd(path), "{path:?}"),
                Device::Console { fd }
                | Device::Agent { fd }
                | Device::Net { fd, .. }
                | Device::Fs { fd, .. } => {
                    assert!(*fd > 2)
                }
            }
        }
        assert!(
            notes
                .get(jail::SECCOMP)
                .unwrap()
                .reason
                .contains("-sandbox")
        );
    }

    #[test]
    fn each_box_gets_its_own_user_from_its_id() {
        let a = identity(&format!("0001{}", "0".repeat(60)), false).unwrap();
        let b = identity(&format!("ffff{}", "0".repeat(60)), false).unwrap();
        assert_eq!(a.uid, VM_GROUP + 2);
        assert_eq!(b.uid, VM_GROUP + 0x1_0000);
        assert_eq!((a.gid, a.groups.clone()), (a.uid, vec![VM_GROUP]));
    }
}
