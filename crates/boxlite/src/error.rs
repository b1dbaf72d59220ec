//! The one error type of the runtime, matchable by [`ErrorKind`].
//!
//! Messages name the thing and, where there is one, the fix in the library's own terms; a
//! front end (the `boxlite` command) adds its own wording (flags, commands) from the typed
//! fields.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::state::BoxState;

/// What went wrong in the runtime.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A filesystem or process operation on a path (or program) failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. "creating".
        op: &'static str,
        /// The path or program it was done to.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The state database failed.
    #[error("state database {path}: {source}")]
    State {
        /// The database file.
        path: PathBuf,
        /// The database's error.
        #[source]
        source: DbError,
    },
    /// An image operation failed (not imported, damaged, cannot be unpacked).
    #[error(transparent)]
    Image(#[from] oci_layers::Error),
    /// Pulling from a registry failed (see [`registry::Error`] for the kinds).
    #[error(transparent)]
    Registry(#[from] registry::Error),
    /// Talking to the guest agent (or the box's supervisor) failed. The guest's words are
    /// shown with their control characters escaped.
    #[error("{what}: {}", crate::text::printable(&source.to_string()))]
    Protocol {
        /// What was being done.
        what: String,
        /// The protocol error.
        #[source]
        source: protocol::Error,
    },
    /// No box has this id or name.
    #[error("no such box: {0}")]
    NoSuchBox(String),
    /// A box name is taken (the name, the id of the box that has it).
    #[error("the name {0:?} is already in use by box {1}; pick another or remove that box")]
    NameInUse(String, String),
    /// No named volume has this name.
    #[error("no such volume: {0}; create it with `volume create` first")]
    NoSuchVolume(String),
    /// A named volume of this name exists already.
    #[error("a volume named {0:?} exists already; pick another name or remove it")]
    VolumeExists(String),
    /// A named volume is used by boxes in a way that refuses the operation.
    #[error("volume {name} is {how} by {}", .boxes.join(", "))]
    VolumeInUse {
        /// The volume.
        name: String,
        /// How the boxes use it ("attached read-write", "used").
        how: String,
        /// The boxes (names), and what to do about them.
        boxes: Vec<String>,
    },
    /// The box is not in a state that allows the operation.
    #[error("box {name} is {state}: {}", needs.advice())]
    InvalidState {
        /// The box's name.
        name: String,
        /// Its current state.
        state: BoxState,
        /// What the operation needs.
        needs: Needs,
    },
    /// A box or command option is out of range or malformed.
    #[error("{} {value}: {reason}", label(option))]
    InvalidOption {
        /// The option, as [`crate::BoxOptions`] names it (`cpus`, `memory_mib`, …).
        option: &'static str,
        /// The value given, as shown to the user.
        value: String,
        /// Why it is refused, and the allowed range.
        reason: String,
    },
    /// An argument is malformed.
    #[error("{0}")]
    InvalidInput(String),
    /// The chosen engine cannot run boxes on this host.
    #[error("the {engine} engine cannot run here: {reason}")]
    EngineUnavailable {
        /// The engine's name.
        engine: String,
        /// Why not.
        reason: String,
    },
    /// The state directory is not safe to keep boxes in.
    #[error("state directory {}: {problem}", path.display())]
    UnsafeHome {
        /// The state directory.
        path: PathBuf,
        /// What is wrong with it, and the fix.
        problem: String,
    },
    /// The host cannot do what was asked.
    #[error("{0}")]
    Host(String),
    /// A guest kernel, initramfs, engine program or the supervisor is missing.
    #[error("{what} not found: {hint}")]
    Missing {
        /// What is missing.
        what: Artefact,
        /// How to get it.
        hint: String,
    },
    /// Something a guest or an image controls outgrew its limit.
    #[error("{what} is over the limit of {limit} bytes")]
    TooLarge {
        /// What outgrew the limit.
        what: String,
        /// The limit, in bytes.
        limit: u64,
    },
    /// A lock stayed held by another process for longer than the runtime waits.
    #[error(
        "waited {} for the lock {}: it is held by {holder}; if that process is stuck, end it",
        seconds(*.waited),
        path.display()
    )]
    Busy {
        /// The lock file.
        path: PathBuf,
        /// How long the wait was.
        waited: Duration,
        /// Who may hold it, in words (its pid and command line, as it recorded them).
        holder: String,
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

/// The kinds of [`Error`], for matching without the details.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// An operating-system operation failed.
    Io,
    /// The state database failed.
    State,
    /// An image is missing, damaged or cannot be used.
    Image,
    /// The box's agent or supervisor failed or went away.
    Protocol,
    /// No such box.
    NotFound,
    /// The name is taken.
    AlreadyExists,
    /// The box's state does not allow the operation.
    InvalidState,
    /// An option or argument is refused.
    InvalidInput,
    /// The host cannot run what was asked (engine, memory).
    Unsupported,
    /// Something the runtime needs is not installed.
    Missing,
    /// A file, directory or peer is not private to this user.
    Insecure,
    /// Something outgrew its limit.
    TooLarge,
    /// The box did not boot.
    Boot,
    /// Another process holds what was needed, for longer than the runtime waits.
    Busy,
    /// A registry refused the credentials, or wants some (`boxlite login`).
    Unauthorized,
    /// A registry could not be reached, or broke the connection, after retries.
    Network,
    /// A registry answered something unusable (a bad document, wrong bytes, an odd status).
    Registry,
}

/// The kind of a registry error.
fn registry_kind(e: &registry::Error) -> ErrorKind {
    use registry::Error as R;
    match e {
        R::NotHere { source, .. } => registry_kind(source),
        R::Unauthorized { .. } => ErrorKind::Unauthorized,
        R::ManifestUnknown { .. } | R::NameUnknown { .. } => ErrorKind::NotFound,
        R::Transport { .. } => ErrorKind::Network,
        R::InvalidReference { .. } | R::InvalidPlatform { .. } | R::InvalidOption(_) => {
            ErrorKind::InvalidInput
        }
        R::Store(oci_layers::Error::Io { .. }) => ErrorKind::Io,
        R::Store(_) => ErrorKind::Image,
        _ => ErrorKind::Registry,
    }
}

impl Error {
    /// Which kind of error this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Io { .. } => ErrorKind::Io,
            Error::State { .. } => ErrorKind::State,
            Error::Image(_) => ErrorKind::Image,
            Error::Registry(e) => registry_kind(e),
            Error::Protocol { .. } => ErrorKind::Protocol,
            Error::NoSuchBox(_) => ErrorKind::NotFound,
            Error::NameInUse(..) | Error::VolumeExists(_) => ErrorKind::AlreadyExists,
            Error::NoSuchVolume(_) => ErrorKind::NotFound,
            Error::VolumeInUse { .. } => ErrorKind::Busy,
            Error::InvalidState { .. } => ErrorKind::InvalidState,
            Error::InvalidOption { .. } | Error::InvalidInput(_) => ErrorKind::InvalidInput,
            Error::EngineUnavailable { .. } | Error::Host(_) => ErrorKind::Unsupported,
            Error::Missing { .. } => ErrorKind::Missing,
            Error::UnsafeHome { .. } => ErrorKind::Insecure,
            Error::TooLarge { .. } => ErrorKind::TooLarge,
            Error::Boot { .. } => ErrorKind::Boot,
            Error::Busy { .. } => ErrorKind::Busy,
        }
    }

    /// An I/O error: what was being done (`op`, e.g. "creating") to which path.
    pub fn io(op: &'static str, path: impl AsRef<Path>, source: std::io::Error) -> Error {
        Error::Io {
            op,
            path: path.as_ref().to_path_buf(),
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

    /// An option refused: `option` (a [`crate::BoxOptions`] field) had `value`.
    pub(crate) fn option(
        option: &'static str,
        value: impl fmt::Display,
        reason: impl Into<String>,
    ) -> Error {
        Error::InvalidOption {
            option,
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

/// What an operation needs of a box that it does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Needs {
    /// The box must not be running: stop it first, or remove it with force.
    NotRunning,
    /// The box must be running: start it first.
    Running,
    /// Another start of the box ended without it running.
    StartFailed,
    /// The box's image's base disk is gone: remove the box and create it again.
    BaseDisk,
    /// Another supervisor owns the box.
    Unowned,
}

impl Needs {
    /// The advice, in the library's terms.
    fn advice(self) -> &'static str {
        match self {
            Needs::NotRunning => "stop it first, or remove it with force",
            Needs::Running => "start it first",
            Needs::StartFailed => "another start of it ended without it running",
            Needs::BaseDisk => "its image's base disk is gone; remove the box and create it again",
            Needs::Unowned => "another supervisor owns it",
        }
    }
}

/// Something the runtime runs or boots.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Artefact {
    /// The guest kernel.
    Kernel,
    /// The agent's initramfs.
    Initramfs,
    /// The supervisor program.
    Supervisor,
    /// A host program (an engine, `mkfs.ext4`).
    Program(String),
}

impl fmt::Display for Artefact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Artefact::Kernel => f.write_str("the guest kernel"),
            Artefact::Initramfs => f.write_str("the guest agent's initramfs"),
            Artefact::Supervisor => f.write_str("boxlite-supervisor"),
            Artefact::Program(name) => f.write_str(name),
        }
    }
}

/// A state-database failure (opaque: the database library is an implementation detail).
#[derive(Debug)]
pub struct DbError(pub(crate) rusqlite::Error);

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for DbError {}

/// An option's name in words, for the library's own messages.
fn label(option: &str) -> &str {
    match option {
        "memory_mib" => "memory",
        "disk_size_mib" => "disk size",
        "working_dir" => "working directory",
        "env" => "environment variable name",
        "name" => "box name",
        other => other,
    }
}

/// A wait in words: whole seconds, or milliseconds below one.
fn seconds(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{} s", d.as_secs())
    }
}

fn console_section(console: &str) -> String {
    if console.trim().is_empty() {
        String::new()
    } else {
        format!("\n--- end of the console log ---\n{}", console.trim_end())
    }
}

/// The runtime's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
