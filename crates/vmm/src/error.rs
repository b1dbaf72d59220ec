//! The crate's one error type.

use std::path::PathBuf;

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
    /// A host I/O operation failed; `what` names it.
    #[error("{what}: {source}")]
    Io {
        /// The operation that failed.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The guest drove a device into an invalid state (the device is marked as needing reset).
    #[error("guest error: {0}")]
    Guest(String),
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Wraps a KVM error with the step that failed.
    pub fn kvm(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> Error {
        move |source| Error::Kvm { what, source }
    }

    /// Wraps an I/O error with what was being done.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }
}
