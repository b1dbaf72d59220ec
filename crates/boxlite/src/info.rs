//! What the runtime reports: about a box, and about the host.

use std::path::PathBuf;

pub use jail::{Protection, Protections};
use serde::Serialize;

use crate::network::NetworkInfo;
use crate::options::BoxOptions;
use crate::state::{BoxRecord, BoxState};

/// What [`crate::Runtime::list`] and [`crate::LiteBox::info`] report about a box; its state
/// is truthful (a box whose supervisor died is `crashed`, never a ghost `running`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct BoxInfo {
    /// 64 lowercase hex digits.
    pub id: String,
    /// Unique among boxes.
    pub name: String,
    /// The image reference as the user gave it.
    pub image: String,
    /// The image's manifest digest, `sha256:…`.
    pub image_digest: String,
    /// How the box was made (with the image's defaults filled in).
    pub options: BoxOptions,
    /// Where it is in its life.
    pub state: BoxState,
    /// When it was made (Unix ms).
    pub created_at_ms: u64,
    /// When it last started (Unix ms).
    pub started_at_ms: Option<u64>,
    /// When it last stopped or crashed (Unix ms).
    pub stopped_at_ms: Option<u64>,
    /// The engine that ran it last, e.g. "qemu (tcg)".
    pub engine: Option<String>,
    /// Its supervisor's process id, while it has one.
    pub supervisor_pid: Option<u32>,
    /// Its VM's process id, while it has one.
    pub vm_pid: Option<u32>,
    /// How long the last boot took, in ms.
    pub boot_ms: Option<f64>,
    /// Commands run in it, over its whole life (flushed by its supervisor each second).
    pub exec_count: u64,
    /// Bytes of command input and output streamed, over its whole life.
    pub bytes_streamed: u64,
    /// The main command's exit code, if it had one and it ended.
    pub exit_code: Option<i32>,
    /// Why it stopped or crashed, in words.
    pub reason: Option<String>,
    /// How its VM process was confined at its last boot (which protections, and why others
    /// not), as its supervisor recorded them; `None` before the first boot. Filled by
    /// [`crate::LiteBox::info`], not by [`crate::Runtime::list`].
    pub protections: Option<Protections>,
    /// The running network as its supervisor last reported it (address, published ports,
    /// denials); `None` for a box without one or before its first boot.
    pub network: Option<NetworkInfo>,
}

impl From<BoxRecord> for BoxInfo {
    fn from(r: BoxRecord) -> BoxInfo {
        BoxInfo {
            id: r.id,
            name: r.name,
            image: r.image,
            image_digest: r.image_digest,
            options: r.options,
            state: r.state,
            created_at_ms: r.created_at_ms,
            started_at_ms: r.started_at_ms,
            stopped_at_ms: r.stopped_at_ms,
            engine: r.engine,
            supervisor_pid: r.supervisor_pid,
            vm_pid: r.vm_pid,
            boot_ms: r.boot_ms,
            exec_count: r.exec_count,
            bytes_streamed: r.bytes_streamed,
            exit_code: r.exit_code,
            reason: r.reason,
            protections: None,
            network: None,
        }
    }
}

/// What `boxlite info` reports: the host, the engines and the guest.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct HostInfo {
    /// The state directory.
    pub home: PathBuf,
    /// Whether hardware KVM is usable.
    pub kvm_hardware: bool,
    /// What /dev/kvm is, in words.
    pub kvm: String,
    /// Each engine and whether it can run here, in the order `auto` prefers them.
    pub engines: Vec<EngineInfo>,
    /// What `auto` picks, or why nothing can run.
    pub auto_engine: String,
    /// The guest kernel, if found.
    pub kernel: Option<PathBuf>,
    /// The agent initramfs, if found.
    pub initramfs: Option<PathBuf>,
    /// The supervisor program, if found.
    pub supervisor: Option<PathBuf>,
    /// Host memory in MiB.
    pub memory_mib: Option<u64>,
    /// Which protections a box's VM process gets on this host, and why others not.
    pub protections: Protections,
}

/// One engine's availability.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct EngineInfo {
    /// Its name (`kvm`, `qemu`).
    pub name: String,
    /// Whether it can run boxes here.
    pub available: bool,
    /// Why (not), in words.
    pub detail: String,
}
