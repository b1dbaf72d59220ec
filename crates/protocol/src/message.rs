//! CONTROL messages: JSON objects with a `"type"` tag, one enum per direction.
//!
//! Decoding is bounded twice: the frame caps the JSON at [`crate::frame::MAX_CONTROL_LEN`],
//! and the list fields stop at their caps while parsing, so a hostile peer cannot make the
//! other side allocate much more than the frame itself. `validate` then checks every field
//! a peer controls against the named limits below.

use bytes::Bytes;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::frame::MAX_CONTROL_LEN;

/// The protocol version this crate speaks: (major, minor).
///
/// Peers with different majors cannot talk; a minor bump adds optional fields, messages or
/// capabilities that an older peer ignores. 1.1 added `mount` ([`CAPABILITY_MOUNT`]).
pub const PROTOCOL_VERSION: (u16, u16) = (1, 1);

/// Most arguments in an `exec` argv.
///
/// Linux accepts more, but the whole message is capped at a megabyte anyway; this bounds
/// the vector before the strings are looked at.
pub const MAX_ARGS: usize = 16 * 1024;

/// Most bytes of one argument or environment entry: Linux's MAX_ARG_STRLEN (32 pages),
/// beyond which execve fails with E2BIG anyway.
pub const MAX_ARG_LEN: usize = 128 * 1024;

/// Most environment variables in an `exec`: far beyond any real image's environment.
pub const MAX_ENV: usize = 4096;

/// Most bytes of a path (`cwd`, upload/download target): Linux's PATH_MAX.
pub const MAX_PATH_LEN: usize = 4096;

/// Most bytes of `user` (a name or `uid[:gid]`); Linux user names are at most 32 bytes.
pub const MAX_USER_LEN: usize = 256;

/// Most bytes of an error message or the agent's version string; longer is a broken peer.
pub const MAX_TEXT_LEN: usize = 4096;

/// Most capabilities a `hello` may list, each at most [`MAX_CAPABILITY_LEN`] bytes.
pub const MAX_CAPABILITIES: usize = 64;

/// Most bytes of one capability name.
pub const MAX_CAPABILITY_LEN: usize = 64;

/// Highest signal number (Linux's SIGRTMAX).
pub const MAX_SIGNAL: i32 = 64;

/// Most volumes one `mount` may list: a VM has few virtio devices to back them.
pub const MAX_VOLUMES: usize = 16;

/// Most bytes of a virtio-fs tag: the size of the tag field in the device's config space.
pub const MAX_TAG_LEN: usize = 36;

/// Most letters after `/dev/vd` in a disk's device name (`/dev/vda` ... `/dev/vdzzz`).
pub const MAX_DISK_SUFFIX: usize = 3;

/// Most digits after `/dev/loop` in a loop device's name (host-mode tests attach images so).
pub const MAX_LOOP_DIGITS: usize = 7;

/// The filesystems a disk volume may hold: what the host formats named volumes with.
pub const VOLUME_FSTYPES: [&str; 1] = ["ext4"];

/// The `hello` capability of an agent that serves `mount`; a host must not send volumes to
/// an agent without it (an older initramfs), which would answer `unsupported`.
pub const CAPABILITY_MOUNT: &str = "mount";

/// What the host asks of the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HostMessage {
    /// Start a process on this channel.
    Exec(ExecRequest),
    /// Send a signal to the channel's process, or to its whole process group.
    Signal {
        /// The signal number, 1..=[`MAX_SIGNAL`].
        signal: i32,
        /// Whether to signal the process group rather than the process.
        group: bool,
    },
    /// Set the size of the channel's tty.
    Resize {
        /// Rows, at least 1.
        rows: u16,
        /// Columns, at least 1.
        cols: u16,
    },
    /// Unpack the tar stream that follows on the transfer stream under `path`.
    Upload {
        /// An absolute directory path in the guest.
        path: String,
    },
    /// Send `path` as a tar stream on the transfer stream.
    Download {
        /// An absolute path in the guest.
        path: String,
    },
    /// Mount these volumes inside the box's root, in order; answered `done` or `error`.
    Mount {
        /// At most [`MAX_VOLUMES`], parents before their children, no path twice.
        #[serde(deserialize_with = "de_volumes")]
        volumes: Vec<VolumeMount>,
    },
    /// Abandon this channel: transfers stop and fail, an execution's process group is killed.
    Cancel {},
    /// Channel 0: answer with `pong` carrying the same nonce.
    Ping {
        /// Chosen by the host to match the answer.
        nonce: u64,
    },
    /// Channel 0: sync, answer `shutting_down`, power off.
    Shutdown {},
}

/// What the guest tells the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum GuestMessage {
    /// Channel 0, first frame of the connection: who the agent is.
    Hello(Hello),
    /// The channel's process runs.
    Started {
        /// Its pid in the guest.
        pid: u32,
    },
    /// The channel's process ended; sent after the EOFs of its stdout and stderr.
    Exit(ExitStatus),
    /// The channel's transfer finished; after the transfer stream's EOF for a download.
    Done {},
    /// The channel failed; terminal for it. On channel 0: a message the agent could not handle.
    Error {
        /// What kind of failure.
        kind: ErrorKind,
        /// A description naming the thing (command, path) and the fix where there is one.
        message: String,
    },
    /// Channel 0: the answer to `ping`.
    Pong {
        /// The ping's nonce.
        nonce: u64,
    },
    /// Channel 0: the agent synced and powers off now.
    ShuttingDown {},
}

/// How to run a process.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ExecRequest {
    /// The program (looked up in `PATH` when it has no slash) and its arguments; not empty.
    #[serde(deserialize_with = "de_argv")]
    pub argv: Vec<String>,
    /// The complete environment, as (name, value) pairs; the runtime merges the image's in.
    #[serde(default, deserialize_with = "de_env")]
    pub env: Vec<(String, String)>,
    /// The working directory (absolute); the image's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// A user name or `uid[:gid]`, resolved in the box's /etc/passwd and /etc/group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Run on a pseudo-terminal of this size (stdout carries all output, stderr is empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tty: Option<TtySize>,
    /// Kill the process group after this many milliseconds; `exit` then says `timed_out`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// One volume of a `mount` request: what to mount where in the box.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeMount {
    /// What to mount.
    pub source: MountSource,
    /// An absolute path in the box (created, with missing parents, if absent).
    pub path: String,
    /// Mounted read-only.
    #[serde(default)]
    pub read_only: bool,
}

/// Where a volume's filesystem comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MountSource {
    /// A virtio-fs device with this mount tag (a host directory, served by virtiofsd).
    Virtiofs {
        /// The device's tag, 1..=[`MAX_TAG_LEN`] bytes without NUL.
        tag: String,
    },
    /// A virtio-blk disk holding a filesystem (a named volume).
    Disk {
        /// The device node: `/dev/vd` and 1..=3 lowercase letters (or, for host-mode tests,
        /// `/dev/loop` and digits).
        device: String,
        /// The filesystem on it, one of [`VOLUME_FSTYPES`].
        fstype: String,
    },
}

/// A terminal size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TtySize {
    /// Rows, at least 1.
    pub rows: u16,
    /// Columns, at least 1.
    pub cols: u16,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ExitStatus {
    /// The exit code, when it exited (0..=255).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    /// The signal that killed it, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// Whether the agent killed it because `timeout_ms` ran out.
    #[serde(default)]
    pub timed_out: bool,
}

impl ExitStatus {
    /// Whether the process exited with code 0 (and was not killed).
    pub fn success(&self) -> bool {
        self.code == Some(0) && self.signal.is_none() && !self.timed_out
    }
}

/// The kinds of failure the agent reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// A command, user, group or path that does not exist.
    NotFound,
    /// The guest refused the operation (permissions).
    PermissionDenied,
    /// A request the agent rejects: bad fields, unknown message, reused channel.
    Invalid,
    /// The host cancelled the channel.
    Cancelled,
    /// An I/O error in the guest.
    Io,
    /// Something this agent does not support (e.g. a newer message).
    Unsupported,
    /// A kind this version does not know (a newer agent's).
    #[serde(other)]
    Other,
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ErrorKind::NotFound => "not found",
            ErrorKind::PermissionDenied => "permission denied",
            ErrorKind::Invalid => "invalid request",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Io => "I/O error",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Other => "error",
        })
    }
}

/// The agent's introduction, the first frame of every connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The agent's own version, for logs.
    pub agent_version: String,
    /// The protocol version it speaks; the major must equal ours.
    pub protocol_version: (u16, u16),
    /// Optional features it offers (names defined by minor versions).
    #[serde(default, deserialize_with = "de_capabilities")]
    pub capabilities: Vec<String>,
    /// CLOCK_BOOTTIME when it said hello, in nanoseconds: how long the guest took to boot.
    pub boot_time_ns: u64,
}

impl Hello {
    /// A hello from this crate's protocol version.
    pub fn new(agent_version: impl Into<String>, boot_time_ns: u64) -> Hello {
        Hello {
            agent_version: agent_version.into(),
            protocol_version: PROTOCOL_VERSION,
            capabilities: Vec::new(),
            boot_time_ns,
        }
    }
}

/// Encodes a message as a CONTROL payload; fails if it exceeds [`MAX_CONTROL_LEN`].
pub fn encode_message<M: Serialize>(message: &M) -> Result<Bytes> {
    let json = serde_json::to_vec(message)
        .map_err(|e| Error::InvalidMessage(format!("cannot encode: {e}")))?;
    if json.len() > MAX_CONTROL_LEN {
        return Err(Error::InvalidMessage(format!(
            "the message is {} bytes of JSON, more than the limit of {MAX_CONTROL_LEN}; \
             pass large data through stdin or an upload",
            json.len()
        )));
    }
    Ok(Bytes::from(json))
}

/// Parses and validates a message from the host.
pub fn decode_host_message(bytes: &[u8]) -> Result<HostMessage> {
    let message: HostMessage = parse(bytes)?;
    message.validate()?;
    Ok(message)
}

/// Parses and validates a message from the guest.
pub fn decode_guest_message(bytes: &[u8]) -> Result<GuestMessage> {
    let message: GuestMessage = parse(bytes)?;
    message.validate()?;
    Ok(message)
}

fn parse<'a, M: Deserialize<'a>>(bytes: &'a [u8]) -> Result<M> {
    if bytes.len() > MAX_CONTROL_LEN {
        return Err(Error::InvalidMessage(format!(
            "{} bytes of JSON, more than the limit of {MAX_CONTROL_LEN}",
            bytes.len()
        )));
    }
    serde_json::from_slice(bytes).map_err(|e| Error::InvalidMessage(e.to_string()))
}

impl HostMessage {
    /// Checks every field against the limits; errors name the field.
    pub fn validate(&self) -> Result<()> {
        match self {
            HostMessage::Exec(request) => request.validate(),
            HostMessage::Signal { signal, .. } => check_signal(*signal, "signal"),
            HostMessage::Resize { rows, cols } => check_size(*rows, *cols),
            HostMessage::Upload { path } | HostMessage::Download { path } => {
                check_path(path, "path")
            }
            HostMessage::Mount { volumes } => check_volumes(volumes),
            HostMessage::Cancel {} | HostMessage::Ping { .. } | HostMessage::Shutdown {} => Ok(()),
        }
    }

    /// The message's `type` tag, for error messages.
    pub fn name(&self) -> &'static str {
        match self {
            HostMessage::Exec(_) => "exec",
            HostMessage::Signal { .. } => "signal",
            HostMessage::Resize { .. } => "resize",
            HostMessage::Upload { .. } => "upload",
            HostMessage::Download { .. } => "download",
            HostMessage::Mount { .. } => "mount",
            HostMessage::Cancel {} => "cancel",
            HostMessage::Ping { .. } => "ping",
            HostMessage::Shutdown {} => "shutdown",
        }
    }
}

impl GuestMessage {
    /// Checks every field against the limits; errors name the field.
    pub fn validate(&self) -> Result<()> {
        match self {
            GuestMessage::Hello(hello) => hello.validate(),
            GuestMessage::Exit(status) => status.validate(),
            GuestMessage::Error { message, .. } => check_text(message, "error message"),
            GuestMessage::Started { .. }
            | GuestMessage::Done {}
            | GuestMessage::Pong { .. }
            | GuestMessage::ShuttingDown {} => Ok(()),
        }
    }

    /// The message's `type` tag, for error messages.
    pub fn name(&self) -> &'static str {
        match self {
            GuestMessage::Hello(_) => "hello",
            GuestMessage::Started { .. } => "started",
            GuestMessage::Exit(_) => "exit",
            GuestMessage::Done {} => "done",
            GuestMessage::Error { .. } => "error",
            GuestMessage::Pong { .. } => "pong",
            GuestMessage::ShuttingDown {} => "shutting_down",
        }
    }
}

impl ExecRequest {
    /// A request to run `argv` with an empty environment and the image's defaults.
    pub fn new<I, S>(argv: I) -> ExecRequest
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ExecRequest {
            argv: argv.into_iter().map(Into::into).collect(),
            ..ExecRequest::default()
        }
    }

    /// Checks every field against the limits; errors name the field.
    pub fn validate(&self) -> Result<()> {
        if self.argv.is_empty() {
            return invalid("argv is empty; it needs at least the program".into());
        }
        if self.argv.len() > MAX_ARGS {
            return invalid(format!(
                "argv has {} arguments, more than {MAX_ARGS}",
                self.argv.len()
            ));
        }
        for (i, arg) in self.argv.iter().enumerate() {
            check_arg(arg, &format!("argv[{i}]"))?;
        }
        if self.argv[0].is_empty() {
            return invalid("argv[0] (the program) is empty".into());
        }
        if self.env.len() > MAX_ENV {
            return invalid(format!(
                "env has {} variables, more than {MAX_ENV}",
                self.env.len()
            ));
        }
        for (name, value) in &self.env {
            if name.is_empty() || name.contains('=') {
                return invalid(format!(
                    "env name {:?} must be non-empty and contain no '='",
                    shorten(name)
                ));
            }
            check_arg(name, "env name")?;
            check_arg(value, &format!("env value of {}", shorten(name)))?;
            if name.len() + value.len() + 1 > MAX_ARG_LEN {
                return invalid(format!(
                    "env entry {} is longer than {MAX_ARG_LEN} bytes",
                    shorten(name)
                ));
            }
        }
        if let Some(cwd) = &self.cwd {
            check_path(cwd, "cwd")?;
        }
        if let Some(user) = &self.user {
            if user.is_empty() || user.len() > MAX_USER_LEN || user.contains('\0') {
                return invalid(format!(
                    "user {:?} must be 1..={MAX_USER_LEN} bytes without NUL",
                    shorten(user)
                ));
            }
        }
        if let Some(tty) = self.tty {
            check_size(tty.rows, tty.cols)?;
        }
        Ok(())
    }
}

impl VolumeMount {
    /// Checks the path and the source; errors name the field (`what`, e.g. `volumes[2]`).
    pub fn validate(&self, what: &str) -> Result<()> {
        check_path(&self.path, &format!("{what}.path"))?;
        let mut parts = self.path.split('/').filter(|p| !p.is_empty() && *p != ".");
        if parts.clone().any(|p| p == "..") {
            return invalid(format!(
                "{what}.path {:?} has a `..` component; give the volume's path without it",
                shorten(&self.path)
            ));
        }
        if parts.next().is_none() {
            return invalid(format!(
                "{what}.path {:?} is the box's root; a volume must go on a directory below /",
                shorten(&self.path)
            ));
        }
        self.source.validate(what)
    }

    /// The path's components without empty and `.` ones, so `/a//b/.` and `/a/b` compare
    /// equal.
    fn normal_path(&self) -> Vec<&str> {
        self.path
            .split('/')
            .filter(|p| !p.is_empty() && *p != ".")
            .collect()
    }
}

impl MountSource {
    /// Checks the tag, or the device and filesystem type; errors name the field.
    pub fn validate(&self, what: &str) -> Result<()> {
        match self {
            MountSource::Virtiofs { tag } => {
                if tag.is_empty() || tag.len() > MAX_TAG_LEN || tag.contains('\0') {
                    return invalid(format!(
                        "{what}.source.tag {:?} must be 1..={MAX_TAG_LEN} bytes without NUL \
                         (the virtio-fs device's tag)",
                        shorten(tag)
                    ));
                }
            }
            MountSource::Disk { device, fstype } => {
                if !is_disk_device(device) {
                    return invalid(format!(
                        "{what}.source.device {:?} must be a virtio disk, /dev/vd and 1..={} \
                         lowercase letters (e.g. /dev/vdc), or a loop device /dev/loopN",
                        shorten(device),
                        MAX_DISK_SUFFIX
                    ));
                }
                if !VOLUME_FSTYPES.contains(&fstype.as_str()) {
                    return invalid(format!(
                        "{what}.source.fstype {:?} is not supported; use one of {VOLUME_FSTYPES:?}",
                        shorten(fstype)
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Whether `device` is `/dev/vd[a-z]{1,3}` or `/dev/loop[0-9]{1,7}`.
fn is_disk_device(device: &str) -> bool {
    if let Some(suffix) = device.strip_prefix("/dev/vd") {
        return (1..=MAX_DISK_SUFFIX).contains(&suffix.len())
            && suffix.bytes().all(|b| b.is_ascii_lowercase());
    }
    if let Some(digits) = device.strip_prefix("/dev/loop") {
        return (1..=MAX_LOOP_DIGITS).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit());
    }
    false
}

fn check_volumes(volumes: &[VolumeMount]) -> Result<()> {
    if volumes.len() > MAX_VOLUMES {
        return invalid(format!(
            "volumes lists {} volumes, more than {MAX_VOLUMES}; a box has at most \
             {MAX_VOLUMES} volumes",
            volumes.len()
        ));
    }
    for (i, volume) in volumes.iter().enumerate() {
        volume.validate(&format!("volumes[{i}]"))?;
    }
    for (i, volume) in volumes.iter().enumerate() {
        let path = volume.normal_path();
        if let Some(j) = volumes[..i].iter().position(|v| v.normal_path() == path) {
            return invalid(format!(
                "volumes[{i}].path {:?} is also volumes[{j}].path; mount one volume per path",
                shorten(&volume.path)
            ));
        }
    }
    Ok(())
}

impl ExitStatus {
    /// Checks the code and signal ranges.
    pub fn validate(&self) -> Result<()> {
        if let Some(code) = self.code {
            if !(0..=255).contains(&code) {
                return invalid(format!("exit code {code} is outside 0..=255"));
            }
        }
        if let Some(signal) = self.signal {
            check_signal(signal, "exit signal")?;
        }
        Ok(())
    }
}

impl Hello {
    /// Checks the version string and capabilities against the limits.
    pub fn validate(&self) -> Result<()> {
        check_text(&self.agent_version, "agent_version")?;
        if self.capabilities.len() > MAX_CAPABILITIES {
            return invalid(format!(
                "hello lists {} capabilities, more than {MAX_CAPABILITIES}",
                self.capabilities.len()
            ));
        }
        for c in &self.capabilities {
            if c.len() > MAX_CAPABILITY_LEN {
                return invalid(format!(
                    "capability {:?} is longer than {MAX_CAPABILITY_LEN} bytes",
                    shorten(c)
                ));
            }
        }
        Ok(())
    }
}

fn invalid<T>(reason: String) -> Result<T> {
    Err(Error::InvalidMessage(reason))
}

/// The first 64 bytes (at a char boundary) of a peer-controlled string, for messages.
fn shorten(s: &str) -> String {
    if s.len() <= 64 {
        return s.to_owned();
    }
    let mut end = 64;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn check_arg(s: &str, what: &str) -> Result<()> {
    if s.len() > MAX_ARG_LEN {
        return invalid(format!(
            "{what} is {} bytes, more than {MAX_ARG_LEN}",
            s.len()
        ));
    }
    if s.contains('\0') {
        return invalid(format!(
            "{what} ({:?}) contains a NUL byte, which exec cannot pass",
            shorten(s)
        ));
    }
    Ok(())
}

fn check_path(path: &str, what: &str) -> Result<()> {
    if !path.starts_with('/') || path.len() > MAX_PATH_LEN || path.contains('\0') {
        return invalid(format!(
            "{what} {:?} must be an absolute path of at most {MAX_PATH_LEN} bytes without NUL",
            shorten(path)
        ));
    }
    Ok(())
}

fn check_text(text: &str, what: &str) -> Result<()> {
    if text.len() > MAX_TEXT_LEN {
        return invalid(format!(
            "{what} is {} bytes, more than {MAX_TEXT_LEN}",
            text.len()
        ));
    }
    Ok(())
}

fn check_signal(signal: i32, what: &str) -> Result<()> {
    if !(1..=MAX_SIGNAL).contains(&signal) {
        return invalid(format!("{what} {signal} is outside 1..={MAX_SIGNAL}"));
    }
    Ok(())
}

fn check_size(rows: u16, cols: u16) -> Result<()> {
    if rows == 0 || cols == 0 {
        return invalid(format!("terminal size {rows}x{cols} must be at least 1x1"));
    }
    Ok(())
}

/// A sequence visitor that fails as soon as the sequence passes `max` elements, before
/// allocating for the rest.
struct Bounded<T> {
    max: usize,
    what: &'static str,
    _t: std::marker::PhantomData<T>,
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for Bounded<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a list of at most {} {}", self.max, self.what)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element()? {
            if out.len() == self.max {
                return Err(de::Error::custom(format_args!(
                    "more than {} {}",
                    self.max, self.what
                )));
            }
            out.push(item);
        }
        Ok(out)
    }
}

fn bounded<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
    max: usize,
    what: &'static str,
) -> Result<Vec<T>, D::Error> {
    d.deserialize_seq(Bounded {
        max,
        what,
        _t: std::marker::PhantomData,
    })
}

fn de_argv<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    bounded(d, MAX_ARGS, "arguments")
}

fn de_env<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, String)>, D::Error> {
    bounded(d, MAX_ENV, "environment variables")
}

fn de_volumes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<VolumeMount>, D::Error> {
    bounded(d, MAX_VOLUMES, "volumes")
}

fn de_capabilities<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    bounded(d, MAX_CAPABILITIES, "capabilities")
}

#[cfg(test)]
mod tests;
