//! What the runtime tells a supervisor: one serialised struct, written to its stdin.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::engine::ResolvedEngine;
use crate::error::{Error, Result};

/// The most bytes of arguments a supervisor reads: a few paths and numbers take well under
/// a KiB, and a runaway writer must not make it buffer without end.
pub const MAX_ARGS_BYTES: u64 = 64 * 1024;

/// Everything a supervisor needs to run one box.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupervisorArgs {
    /// The state directory.
    #[serde(with = "crate::pathbytes")]
    pub home: PathBuf,
    /// The box's id.
    pub id: String,
    /// The guest kernel.
    #[serde(with = "crate::pathbytes")]
    pub kernel: PathBuf,
    /// The agent initramfs.
    #[serde(with = "crate::pathbytes")]
    pub initramfs: PathBuf,
    /// The engine that runs the VM.
    pub engine: ResolvedEngine,
    /// How long the boot may take.
    pub boot_timeout: Duration,
    /// The most bytes of one console log file (it is rotated once past this).
    pub console_log_limit: u64,
    /// Whether the VM process runs jailed.
    #[serde(default = "jailed")]
    pub jail: bool,
    /// The DNS servers the box's stack forwards allowed queries to.
    #[serde(default)]
    pub dns_upstream: Vec<std::net::SocketAddr>,
    /// The virtio-fs daemon, when the box has bind volumes.
    #[serde(default, with = "crate::pathbytes::option")]
    pub virtiofsd: Option<PathBuf>,
    /// Test hook: the step at which the supervisor kills itself (see `failpoint`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_at: Option<String>,
}

/// What an argument list that does not say gets: a jail.
fn jailed() -> bool {
    true
}

impl SupervisorArgs {
    /// The bytes a supervisor reads back with [`SupervisorArgs::read`].
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self)
            .map_err(|e| Error::InvalidInput(format!("encoding the supervisor's arguments: {e}")))
    }

    /// Reads the arguments from `input` (the supervisor's stdin), at most
    /// [`MAX_ARGS_BYTES`].
    pub fn read(input: impl Read) -> Result<SupervisorArgs> {
        let mut bytes = Vec::new();
        input
            .take(MAX_ARGS_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io("reading the supervisor's arguments from", "stdin", e))?;
        if bytes.len() as u64 > MAX_ARGS_BYTES {
            return Err(Error::InvalidInput(format!(
                "supervisor: over {MAX_ARGS_BYTES} bytes of arguments on stdin"
            )));
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            Error::InvalidInput(format!(
                "supervisor: bad arguments on stdin ({e}); it is started by the boxlite \
                 runtime, not by hand"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::ffi::OsStringExt;

    use super::*;
    use crate::options::EngineKind;

    #[test]
    fn arguments_round_trip_with_non_utf8_paths() {
        let args = SupervisorArgs {
            home: PathBuf::from(std::ffi::OsString::from_vec(b"/h/\xffome".to_vec())),
            id: "ab".repeat(32),
            kernel: "/k/vmlinux".into(),
            initramfs: "/k/initramfs.cpio.gz".into(),
            engine: ResolvedEngine {
                kind: EngineKind::Qemu,
                program: "/usr/bin/qemu-system-x86_64".into(),
                hardware_kvm: false,
                forced: false,
            },
            boot_timeout: Duration::from_millis(1500),
            console_log_limit: 1 << 20,
            jail: true,
            dns_upstream: vec!["127.0.0.1:5353".parse().unwrap()],
            virtiofsd: Some("/usr/libexec/virtiofsd".into()),
            abort_at: Some("start.vm".into()),
        };
        let bytes = args.to_bytes().unwrap();
        assert_eq!(SupervisorArgs::read(bytes.as_slice()).unwrap(), args);
        let err = SupervisorArgs::read(&b"--home /x"[..]).unwrap_err();
        assert!(err.to_string().contains("not by hand"), "{err}");
        let huge = vec![b' '; MAX_ARGS_BYTES as usize + 2];
        assert!(SupervisorArgs::read(huge.as_slice()).is_err());
    }
}
