//! What the host offers: KVM (hardware or paravirtual), memory, programs.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The KVM device.
const KVM_DEVICE: &str = "/dev/kvm";
/// Present when /dev/kvm is served by PVM (paravirtual KVM for guests without nested
/// virtualization).
const KVM_PVM_MODULE: &str = "/sys/module/kvm_pvm";
/// `KVM_GET_API_VERSION`: `_IO(KVMIO, 0x00)` with `KVMIO` = 0xAE.
const KVM_GET_API_VERSION: u64 = 0xAE00;
/// The only KVM API version there has ever been in mainline Linux.
const KVM_API_VERSION: i32 = 12;
/// The kernel's memory report.
const MEMINFO: &str = "/proc/meminfo";
/// /proc/meminfo is a few KiB; more than this is not it.
const MAX_MEMINFO_BYTES: u64 = 256 * 1024;
/// PATH entries searched, at most: a longer PATH is garbage or hostile.
const MAX_PATH_ENTRIES: usize = 256;

/// Whether boxes can use KVM here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvmSupport {
    /// Hardware-assisted KVM: guests run at native speed.
    Hardware,
    /// /dev/kvm is PVM (`kvm_pvm`): it cannot run a stock Linux kernel at usable speed (its
    /// instruction emulator fails on xsave and cmpxchg16b), so it is not used.
    Paravirtual,
    /// No usable KVM, and why.
    Unavailable(String),
}

impl KvmSupport {
    /// Whether hardware KVM is usable.
    pub fn is_hardware(&self) -> bool {
        matches!(self, KvmSupport::Hardware)
    }

    /// One honest sentence for `boxlite info`.
    pub fn describe(&self) -> String {
        match self {
            KvmSupport::Hardware => {
                "hardware KVM is available (/dev/kvm, API 12): boxes run at native speed".into()
            }
            KvmSupport::Paravirtual => "/dev/kvm is paravirtual KVM (kvm_pvm), which cannot run \
                 a stock Linux kernel at usable speed; boxes run under QEMU's TCG emulation \
                 instead (much slower than hardware KVM)"
                .into(),
            KvmSupport::Unavailable(why) => format!(
                "KVM is unavailable ({why}); boxes run under QEMU's TCG emulation (much slower \
                 than hardware KVM)"
            ),
        }
    }
}

/// Finds out whether hardware KVM is usable: /dev/kvm opens read-write, speaks API 12, and
/// is not PVM.
pub fn probe_kvm() -> KvmSupport {
    probe_kvm_at(Path::new(KVM_DEVICE), Path::new(KVM_PVM_MODULE))
}

/// [`probe_kvm`] with the device and the PVM module directory given (for tests).
fn probe_kvm_at(device: &Path, pvm_module: &Path) -> KvmSupport {
    let shown = device.display();
    let file = match OpenOptions::new().read(true).write(true).open(device) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return KvmSupport::Unavailable(format!(
                "no {shown}: the kvm module is not loaded, or this machine is a VM without \
                 nested virtualization"
            ));
        }
        Err(e) if e.kind() == ErrorKind::PermissionDenied => {
            return KvmSupport::Unavailable(format!(
                "permission denied opening {shown}: add your user to the kvm group \
                 (sudo usermod -aG kvm $USER) and log in again"
            ));
        }
        Err(e) => return KvmSupport::Unavailable(format!("cannot open {shown}: {e}")),
    };
    // SAFETY: KVM_GET_API_VERSION takes no argument and only returns an int; the descriptor
    // is open and owned by `file` for the whole call. On any other file the kernel answers
    // ENOTTY (or the driver's own error) without touching our memory.
    let version = unsafe {
        libc::ioctl(
            file.as_raw_fd(),
            KVM_GET_API_VERSION as libc::Ioctl,
            0 as libc::c_ulong,
        )
    };
    if version < 0 {
        let e = std::io::Error::last_os_error();
        return KvmSupport::Unavailable(format!("{shown} is not a KVM device ({e})"));
    }
    if version != KVM_API_VERSION {
        return KvmSupport::Unavailable(format!(
            "{shown} speaks KVM API version {version}, not {KVM_API_VERSION}"
        ));
    }
    if pvm_module.exists() {
        return KvmSupport::Paravirtual;
    }
    KvmSupport::Hardware
}

/// The two figures of /proc/meminfo the runtime needs, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MemInfo {
    total_kib: u64,
    available_kib: u64,
}

/// Parses /proc/meminfo text. `MemTotal` is required; `MemAvailable` (Linux 3.14+) falls back
/// to `MemFree + Buffers + Cached`, the estimate older tools use.
fn parse_meminfo(text: &str) -> Result<MemInfo> {
    let field = |key: &str| -> Result<Option<u64>> {
        for line in text.lines() {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            if name.trim() != key {
                continue;
            }
            let mut words = value.split_whitespace();
            let number = words.next().and_then(|n| n.parse::<u64>().ok());
            return match (number, words.next(), words.next()) {
                (Some(n), Some("kB"), None) => Ok(Some(n)),
                _ => Err(Error::Host(format!(
                    "{MEMINFO}: cannot read the {key} line {line:?}"
                ))),
            };
        }
        Ok(None)
    };
    let total_kib =
        field("MemTotal")?.ok_or_else(|| Error::Host(format!("{MEMINFO} has no MemTotal line")))?;
    let available_kib = match field("MemAvailable")? {
        Some(n) => n,
        None => [field("MemFree")?, field("Buffers")?, field("Cached")?]
            .into_iter()
            .map(|n| n.unwrap_or(0))
            .fold(0, u64::saturating_add),
    };
    Ok(MemInfo {
        total_kib,
        available_kib: available_kib.min(total_kib),
    })
}

/// Reads and parses /proc/meminfo.
fn meminfo() -> Result<MemInfo> {
    let mut text = String::new();
    std::fs::File::open(MEMINFO)
        .and_then(|f| f.take(MAX_MEMINFO_BYTES).read_to_string(&mut text))
        .map_err(|e| Error::io("reading", MEMINFO, e))?;
    parse_meminfo(&text)
}

/// The host's memory in all, in MiB.
pub fn memory_total_mib() -> Result<u64> {
    Ok(meminfo()?.total_kib / 1024)
}

#[cfg(test)]
/// The host's memory available to new programs without swapping, in MiB.
pub fn memory_available_mib() -> Result<u64> {
    Ok(meminfo()?.available_kib / 1024)
}

/// Refuses a guest memory size larger than the host's whole memory.
pub fn check_memory(requested_mib: u32) -> Result<()> {
    let info = meminfo()?;
    check_memory_against(requested_mib, info)
}

/// [`check_memory`] against given figures. Only the total is a hard limit: guest memory is
/// touched lazily, and what is available changes from moment to moment.
fn check_memory_against(requested_mib: u32, info: MemInfo) -> Result<()> {
    let total = info.total_kib / 1024;
    if u64::from(requested_mib) > total {
        return Err(Error::option(
            "memory_mib",
            format!("{requested_mib} MiB"),
            format!(
                "this host has only {total} MiB of memory in all ({} MiB available); ask for \
                 less",
                info.available_kib / 1024
            ),
        ));
    }
    Ok(())
}

/// Finds an executable regular file named `name` in `PATH` (a name with a `/` is checked as
/// it is). Empty and relative `PATH` entries are skipped: the current directory is not a
/// place to find programs a runtime executes.
pub fn find_program(name: &str) -> Option<PathBuf> {
    if name.is_empty() {
        return None;
    }
    if name.contains('/') {
        let path = PathBuf::from(name);
        return is_executable(&path).then_some(path);
    }
    let path = crate::env::program_path()?;
    std::env::split_paths(&path)
        .take(MAX_PATH_ENTRIES)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// Program `name` beside the running program, or one directory up (where cargo puts
/// binaries when the running program is a test in `target/*/deps`).
pub fn beside_current_exe(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [dir.join(name), dir.parent()?.join(name)]
        .into_iter()
        .find(|p| p.is_file())
}

/// Whether `path` is (or links to) a regular file with an execute bit set.
fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
