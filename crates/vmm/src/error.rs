//! The crate's one error type.

use std::path::{Path, PathBuf};

/// Everything that can go wrong while building or running a VM.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A KVM ioctl failed; `what` names the step.
    #[error("KVM: {what}: {source}")]
    Kvm {
        /// The step that failed.
        what: &'static str,
        /// The error KVM returned.
        source: kvm_ioctls::Error,
    },
    /// KVM cannot be used on this host (missing, unopenable, or known not to run Linux).
    #[error("{0}")]
    KvmUnusable(String),
    /// The guest memory could not be created or accessed.
    #[error("guest memory: {0}")]
    Memory(String),
    /// The kernel image could not be loaded.
    #[error("kernel {path}: {reason}")]
    Kernel {
        /// The kernel file.
        path: PathBuf,
        /// Why it could not be loaded.
        reason: String,
    },
    /// The initramfs could not be loaded.
    #[error("initramfs {path}: {reason}")]
    Initramfs {
        /// The initramfs file.
        path: PathBuf,
        /// Why it could not be loaded.
        reason: String,
    },
    /// The kernel command line is too long or malformed.
    #[error("kernel command line: {0}")]
    Cmdline(String),
    /// The configuration is invalid.
    #[error("configuration: {0}")]
    Config(String),
    /// A host I/O operation on a path (or another object: a socket, an eventfd) failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. "opening disk".
        op: &'static str,
        /// The path or object it was done to.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The guest drove a device into an invalid state (the device is marked as needing reset).
    #[error("guest error: {0}")]
    Guest(String),
    /// A vhost-user backend (virtiofsd) refused a request, broke the protocol or went away.
    #[error("vhost-user backend {tag:?}: {what}: {reason}")]
    VhostUser {
        /// The device's tag.
        tag: String,
        /// The step that failed, e.g. "SET_MEM_TABLE".
        what: &'static str,
        /// Why.
        reason: String,
    },
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Wraps a KVM error with the step that failed.
    pub fn kvm(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> Error {
        move |source| Error::Kvm { what, source }
    }

    /// Wraps an I/O error with the operation and the path (or object) it was done to, for
    /// `.map_err(Error::io("opening disk", &path))`.
    pub fn io(op: &'static str, path: impl AsRef<Path>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.as_ref().to_path_buf();
        move |source| Error::Io { op, path, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_name_the_operation_and_the_path() {
        let source = std::io::Error::from_raw_os_error(2);
        let err = Error::io("opening disk", "/var/disk.img")(source);
        let msg = err.to_string();
        assert!(msg.starts_with("opening disk /var/disk.img: "), "{msg}");
        assert!(
            matches!(&err, Error::Io { op: "opening disk", path, .. } if path == Path::new("/var/disk.img"))
        );
    }
}
