//! What a caller chooses: where the runtime keeps its state, and how a box is made.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::engine;

use crate::error::{Error, Result};
use crate::network::NetworkOptions;
/// How registries are reached (see [`registry::ClientOptions`]).
pub use registry::ClientOptions as RegistryOptions;

/// The fewest vCPUs a box gets.
pub const MIN_CPUS: u32 = 1;
/// The most vCPUs a box gets: QEMU's microvm and our VMM route interrupts through one
/// IOAPIC, and more than this many vCPUs buys a sandbox nothing.
pub const MAX_CPUS: u32 = 64;
/// The least guest memory: below this the minimal kernel plus agent cannot boot.
pub const MIN_MEMORY_MIB: u32 = 64;
/// The smallest writable disk: ext4 needs room for its journal and metadata.
pub const MIN_DISK_SIZE_MIB: u64 = 64;
/// The largest writable disk (sparse, so only what the box writes takes space): 16 TiB is
/// ext4's limit with 4 KiB blocks.
pub const MAX_DISK_SIZE_MIB: u64 = 16 << 20;

/// The default number of vCPUs.
pub const DEFAULT_CPUS: u32 = 1;
/// The default guest memory.
pub const DEFAULT_MEMORY_MIB: u32 = 512;
/// The default writable disk size.
pub const DEFAULT_DISK_SIZE_MIB: u64 = 2048;
/// How long the guest may take from the VM's start to the agent's hello by default.
/// Generous: under TCG on a loaded host the kernel alone can take many seconds.
pub const DEFAULT_BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// How the runtime finds its state and the things it runs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RuntimeOptions {
    /// The state directory: images, layer cache, base disks, boxes, `state.db`.
    pub home: PathBuf,
    /// The guest kernel (PVH `vmlinux` or `bzImage`); default: the first `vmlinux` or
    /// `bzImage` in `<home>/guest/`, then in each of [`RuntimeOptions::guest_dirs`].
    pub kernel: Option<PathBuf>,
    /// The agent initramfs; default: the first `initramfs.cpio.gz` in `<home>/guest/`, then
    /// in each of [`RuntimeOptions::guest_dirs`].
    pub initramfs: Option<PathBuf>,
    /// Directories searched for the guest files after `<home>/guest/` (in order).
    pub guest_dirs: Vec<PathBuf>,
    /// How to start a box's supervisor; default: a `boxlite-supervisor` beside the running
    /// executable (or its parent directory), else in `PATH`.
    pub supervisor: Option<SupervisorCommand>,
    /// QEMU; default: `qemu-system-x86_64` in `PATH`.
    pub qemu: Option<PathBuf>,
    /// Our own VMM (the kvm engine); default: a `boxlite-vmm` beside the running executable
    /// (or its parent directory), else in `PATH`.
    pub vmm: Option<PathBuf>,
    /// The virtio-fs daemon for bind volumes (the Rust virtiofsd, 1.10 or later); default:
    /// `virtiofsd` in `PATH`, else `/usr/libexec/virtiofsd`.
    pub virtiofsd: Option<PathBuf>,
    /// Show progress bars for long steps (image unpacking) on a terminal.
    pub progress: bool,
    /// How long a box may take from its VM's start to the agent's hello.
    pub boot_timeout: Duration,
    /// Let the kvm engine run where /dev/kvm is not hardware KVM (`kvm_pvm`), for
    /// experiments: Linux guests die there.
    pub force_kvm: bool,
    /// The most bytes of a box's console log file: past it the log is rotated once
    /// (`console.log.1`), so a guest that writes forever keeps at most twice this on disk.
    pub console_log_limit: u64,
    /// The most bytes one image layer may unpack to: a hostile layer can be a few KB of
    /// gzip that unpacks to terabytes (default [`oci_layers::extract::DEFAULT_MAX_LAYER_BYTES`]).
    pub max_layer_bytes: u64,
    /// Run every box's VM process jailed (the default; see docs/security.md). Off only to
    /// measure what the jail costs or to debug an engine: a hostile guest that escapes the
    /// VM then has the supervisor's rights.
    pub jail: bool,
    /// How registries are reached: credentials files, extra CAs, insecure registries,
    /// proxies, a docker.io mirror.
    pub registry: RegistryOptions,
    /// The DNS servers a box's stack forwards allowed queries to (from the host's
    /// `/etc/resolv.conf` with [`RuntimeOptions::from_env`]); empty: boxes resolve nothing
    /// but `host.boxlite.internal`.
    pub dns_upstream: Vec<std::net::SocketAddr>,
    /// Test hook, not part of the API: the step at which this process (or, for a start's
    /// steps, the box's supervisor) kills itself as a crash there would.
    #[doc(hidden)]
    pub abort_at: Option<String>,
}

impl RuntimeOptions {
    /// Options for the state directory `home`, everything else found by default.
    pub fn new(home: impl Into<PathBuf>) -> RuntimeOptions {
        RuntimeOptions {
            home: home.into(),
            kernel: None,
            initramfs: None,
            guest_dirs: Vec::new(),
            supervisor: None,
            qemu: None,
            vmm: None,
            virtiofsd: None,
            progress: false,
            boot_timeout: DEFAULT_BOOT_TIMEOUT,
            force_kvm: false,
            console_log_limit: crate::supervisor::console::DEFAULT_CONSOLE_LOG_LIMIT,
            max_layer_bytes: oci_layers::extract::DEFAULT_MAX_LAYER_BYTES,
            jail: true,
            registry: RegistryOptions::default(),
            dns_upstream: Vec::new(),
            abort_at: None,
        }
    }
}

/// The program (and leading arguments) that runs a box's supervisor; the runtime appends its
/// own arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupervisorCommand {
    /// The executable.
    pub program: PathBuf,
    /// Arguments before the runtime's own (e.g. a hidden subcommand).
    pub args: Vec<String>,
}

impl SupervisorCommand {
    /// The supervisor program `program`, with no leading arguments.
    pub fn new(program: impl Into<PathBuf>) -> SupervisorCommand {
        SupervisorCommand {
            program: program.into(),
            args: Vec::new(),
        }
    }
}

/// Which virtual machine monitor runs a box.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum EngineKind {
    /// `kvm` where hardware KVM is usable, else `qemu`.
    #[default]
    Auto,
    /// Our own VMM on /dev/kvm.
    Kvm,
    /// `qemu-system-x86_64 -M microvm`, with KVM when usable, else TCG.
    Qemu,
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(engine::name(*self))
    }
}

impl FromStr for EngineKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<EngineKind> {
        if s == "auto" {
            return Ok(EngineKind::Auto);
        }
        engine::by_name(s).ok_or_else(|| {
            let names = engine::names();
            let (last, rest) = names.split_last().map_or(("", &[][..]), |(l, r)| (*l, r));
            let mut choices = vec!["auto"];
            choices.extend(rest);
            Error::option(
                "engine",
                format!("{s:?}"),
                format!("unknown engine: use {} or {last}", choices.join(", ")),
            )
        })
    }
}

/// How to make a box.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BoxOptions {
    /// The image, by name or digest (as `boxlite image ls` shows).
    pub image: String,
    /// A unique name; one is made up when absent.
    #[serde(default)]
    pub name: Option<String>,
    /// vCPUs.
    pub cpus: u32,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Size of the box's writable disk in MiB (a sparse file).
    pub disk_size_mib: u64,
    /// Environment for every command, over the image's (`NAME`, `value`).
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// Working directory for every command, over the image's.
    #[serde(default)]
    pub working_dir: Option<String>,
    /// User for every command, over the image's.
    #[serde(default)]
    pub user: Option<String>,
    /// The engine.
    #[serde(default)]
    pub engine: EngineKind,
    /// Remove the box once it stops.
    #[serde(default)]
    pub auto_remove: bool,
    /// The box's main command, run when it starts; the box stops when it ends. Empty: the box
    /// idles until stopped, serving `exec`.
    #[serde(default)]
    pub command: Vec<String>,
    /// Whether to pull the image from its registry first.
    #[serde(default)]
    pub pull: PullPolicy,
    /// The box's network: a card or none, the egress policy, published ports.
    #[serde(default)]
    pub network: NetworkOptions,
    /// Host directories and named volumes mounted in the box.
    #[serde(default)]
    pub volumes: Vec<crate::volume::Volume>,
}

/// When `create` pulls the image from its registry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PullPolicy {
    /// Only when no image of that name is here (the default, as docker).
    #[default]
    Missing,
    /// Every time, so the tag's newest image is used.
    Always,
    /// Never: an image not here is an error.
    Never,
}

impl std::str::FromStr for PullPolicy {
    type Err = Error;
    fn from_str(s: &str) -> Result<PullPolicy> {
        match s {
            "missing" => Ok(PullPolicy::Missing),
            "always" => Ok(PullPolicy::Always),
            "never" => Ok(PullPolicy::Never),
            other => Err(Error::option(
                "pull",
                other,
                "expected missing, always or never",
            )),
        }
    }
}

impl BoxOptions {
    /// Defaults for image `image`.
    pub fn new(image: impl Into<String>) -> BoxOptions {
        BoxOptions {
            image: image.into(),
            name: None,
            cpus: DEFAULT_CPUS,
            memory_mib: DEFAULT_MEMORY_MIB,
            disk_size_mib: DEFAULT_DISK_SIZE_MIB,
            env: Vec::new(),
            working_dir: None,
            user: None,
            engine: EngineKind::Auto,
            auto_remove: false,
            command: Vec::new(),
            pull: PullPolicy::Missing,
            network: NetworkOptions::default(),
            volumes: Vec::new(),
        }
    }

    /// Adds a volume (see [`crate::Volume`]).
    pub fn volume(mut self, volume: crate::volume::Volume) -> BoxOptions {
        self.volumes.push(volume);
        self
    }

    /// Checks every field against its limits.
    pub fn validate(&self) -> Result<()> {
        if self.image.trim().is_empty() {
            return Err(Error::option("image", "\"\"", "no image given"));
        }
        if let Some(name) = &self.name {
            validate_name(name)?;
        }
        if !(MIN_CPUS..=MAX_CPUS).contains(&self.cpus) {
            return Err(Error::option(
                "cpus",
                self.cpus,
                format!("a box has {MIN_CPUS} to {MAX_CPUS} vCPUs"),
            ));
        }
        if self.memory_mib < MIN_MEMORY_MIB {
            return Err(Error::option(
                "memory_mib",
                format!("{} MiB", self.memory_mib),
                format!("a box needs at least {MIN_MEMORY_MIB} MiB"),
            ));
        }
        if !(MIN_DISK_SIZE_MIB..=MAX_DISK_SIZE_MIB).contains(&self.disk_size_mib) {
            return Err(Error::option(
                "disk_size_mib",
                format!("{} MiB", self.disk_size_mib),
                format!(
                    "use {MIN_DISK_SIZE_MIB} MiB to {} GiB",
                    MAX_DISK_SIZE_MIB >> 10
                ),
            ));
        }
        no_nul("image", &self.image)?;
        self.network.validate()?;
        crate::volume::validate_all(&self.volumes)?;
        validate_command(
            &self.command,
            &self.env,
            self.working_dir.as_deref(),
            self.user.as_deref(),
        )
    }
}

/// Checks what a command runs with, for a box's main command and for an exec alike.
fn validate_command(
    argv: &[String],
    env: &[(String, String)],
    working_dir: Option<&str>,
    user: Option<&str>,
) -> Result<()> {
    for arg in argv {
        no_nul("command", arg)?;
    }
    for (key, value) in env {
        validate_env_name(key)?;
        no_nul("env", value)?;
    }
    if let Some(dir) = working_dir {
        validate_working_dir(dir)?;
    }
    if let Some(user) = user {
        no_nul("user", user)?;
    }
    Ok(())
}

/// Refuses a NUL byte in `value`: the guest passes strings to the kernel as C strings, which
/// would cut it short there, and that is never what the caller meant.
fn no_nul(option: &'static str, value: &str) -> Result<()> {
    if value.contains('\0') {
        return Err(Error::option(
            option,
            format!("{value:?}"),
            "has a NUL byte, which no command, environment or user name can hold",
        ));
    }
    Ok(())
}

/// The longest box name: it becomes the guest's hostname, which Linux caps at 64 bytes.
pub const MAX_NAME_LEN: usize = 64;

/// Checks a box name: 1..=64 of `[A-Za-z0-9_.-]`, starting with a letter or digit (it is
/// also the guest's hostname and a path component nowhere).
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::option(
            "name",
            format!("{name:?}"),
            format!(
                "use 1 to {MAX_NAME_LEN} letters, digits, '_', '.' or '-', starting with a \
                 letter or digit"
            ),
        ))
    }
}

/// Checks an environment variable name: not empty, no `=` or NUL.
pub fn validate_env_name(name: &str) -> Result<()> {
    if name.is_empty() || name.contains(['=', '\0']) {
        return Err(Error::option(
            "env",
            format!("{name:?}"),
            "an environment variable name must be non-empty, without '=' or NUL",
        ));
    }
    Ok(())
}

/// Checks a working directory: absolute.
pub fn validate_working_dir(dir: &str) -> Result<()> {
    if !dir.starts_with('/') || dir.contains('\0') {
        return Err(Error::option(
            "working_dir",
            format!("{dir:?}"),
            "must be an absolute path",
        ));
    }
    Ok(())
}

/// A command to run in a box.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BoxCommand {
    /// The program and its arguments.
    pub argv: Vec<String>,
    /// Environment over the box's and the image's.
    pub env: Vec<(String, String)>,
    /// Working directory over the box's and the image's.
    pub working_dir: Option<String>,
    /// User over the box's and the image's.
    pub user: Option<String>,
    /// Run on a pseudo-terminal of this size (rows, columns).
    pub tty: Option<(u16, u16)>,
    /// Kill the command after this long.
    pub timeout: Option<Duration>,
}

impl BoxCommand {
    /// A command running `program`.
    pub fn new(program: impl Into<String>) -> BoxCommand {
        BoxCommand {
            argv: vec![program.into()],
            env: Vec::new(),
            working_dir: None,
            user: None,
            tty: None,
            timeout: None,
        }
    }

    /// A command from a whole argv (empty: the image's default command).
    pub fn from_argv<I, S>(argv: I) -> BoxCommand
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        BoxCommand {
            argv: argv.into_iter().map(Into::into).collect(),
            ..BoxCommand::new(String::new())
        }
    }

    /// Adds one argument.
    pub fn arg(mut self, arg: impl Into<String>) -> BoxCommand {
        self.argv.push(arg.into());
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> BoxCommand
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.argv.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> BoxCommand {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Sets the working directory.
    pub fn working_dir(mut self, dir: impl Into<String>) -> BoxCommand {
        self.working_dir = Some(dir.into());
        self
    }

    /// Sets the user (`name`, `uid`, `uid:gid`).
    pub fn user(mut self, user: impl Into<String>) -> BoxCommand {
        self.user = Some(user.into());
        self
    }

    /// Runs on a pseudo-terminal of `rows` × `cols`.
    pub fn tty(mut self, rows: u16, cols: u16) -> BoxCommand {
        self.tty = Some((rows, cols));
        self
    }

    /// Kills the command after `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> BoxCommand {
        self.timeout = Some(timeout);
        self
    }

    /// Checks the command's strings: no NUL bytes, a valid environment and an absolute
    /// working directory.
    pub fn validate(&self) -> Result<()> {
        validate_command(
            &self.argv,
            &self.env,
            self.working_dir.as_deref(),
            self.user.as_deref(),
        )
    }
}
