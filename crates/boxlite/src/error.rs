//! The one error type of the runtime.

use std::path::PathBuf;

/// What went wrong in the runtime; every message names the thing and, where there is one, the fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A filesystem or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, naming the path or program.
        what: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The state database failed.
    #[error("state database {path}: {source}")]
    State {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// An image operation failed (not imported, damaged, cannot be unpacked).
    #[error(transparent)]
    Image(#[from] oci_layers::Error),
    /// Talking to the guest agent (or the box's supervisor) failed.
    #[error("{what}: {source}")]
    Protocol {
        /// What was being done.
        what: String,
        /// The protocol error.
        #[source]
        source: protocol::Error,
    },
    /// No box has this id or name.
    #[error("no such box: {0} (see `boxlite ls -a`)")]
    NoSuchBox(String),
    /// A box name is taken.
    #[error("the name {0:?} is already in use by box {1}; pick another or remove that box")]
    NameInUse(String, String),
    /// The box is not in a state that allows the operation.
    #[error("box {name} is {state}: {hint}")]
    InvalidState {
        /// The box's name.
        name: String,
        /// Its current state.
        state: String,
        /// What to do instead.
        hint: String,
    },
    /// An option or argument is out of range or malformed.
    #[error("{0}")]
    InvalidInput(String),
    /// The host cannot do what was asked (engine missing, KVM unusable, too little memory).
    #[error("{0}")]
    Host(String),
    /// A guest kernel, initramfs, QEMU or the supervisor binary is missing.
    #[error("{what} not found: {hint}")]
    Missing {
        /// What is missing.
        what: String,
        /// How to get it.
        hint: String,
    },
    /// The box failed to boot or its VM ended unexpectedly.
    #[error("{message}{}", console_section(.console))]
    Boot {
        /// What happened.
        message: String,
        /// The end of the console log, for diagnosis.
        console: String,
    },
}

fn console_section(console: &str) -> String {
    if console.trim().is_empty() {
        String::new()
    } else {
        format!("\n--- end of the console log ---\n{}", console.trim_end())
    }
}

impl Error {
    /// An I/O error with what was being done.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            what: what.into(),
            source,
        }
    }

    /// A protocol error with what was being done.
    pub fn protocol(what: impl Into<String>, source: protocol::Error) -> Error {
        Error::Protocol {
            what: what.into(),
            source,
        }
    }
}

/// The runtime's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
