//! boxlite: boxes — small Linux VMs made from OCI images — that a program creates, runs
//! commands in with streaming I/O, and removes. A library, no daemon.
//!
//! A [`Runtime`] is a state directory: the image store (`oci-layers`), a read-only ext4 base
//! disk per image, and the boxes, recorded in SQLite. [`Runtime::create`] makes a
//! [`LiteBox`] with its own writable disk; [`LiteBox::start`] boots it through an engine
//! (QEMU's `microvm` today, with KVM where the host has hardware KVM, TCG otherwise) under a
//! supervisor process, so the box outlives the process that started it and any process can
//! [`Runtime::get`] it and [`LiteBox::exec`] in it. States stay truthful: a box whose
//! supervisor died is reported `crashed`, never a ghost `running`.
//!
//! ```
//! use boxlite::{BoxCommand, BoxOptions, RemoveMode, Runtime, RuntimeOptions};
//!
//! async fn hello(options: RuntimeOptions, image: &std::path::Path) -> boxlite::Result<String> {
//!     // `RuntimeOptions::from_env()` reads BOXLITE_HOME, BOXLITE_KERNEL, … instead.
//!     let runtime = Runtime::open(options)?;
//!     // An OCI layout (directory or tar) or a `docker save` archive.
//!     runtime.import_image(image, Some("demo"))?;
//!     let bx = runtime.create(BoxOptions::new("demo")).await?;
//!     bx.start().await?;
//!     let out = bx
//!         .exec(BoxCommand::new("echo").arg("hello from a box"))
//!         .await?
//!         .output()
//!         .await?;
//!     runtime.remove(bx.id(), RemoveMode::Kill).await?;
//!     Ok(String::from_utf8_lossy(&out.stdout).into_owned())
//! }
//! # // Runs for real where `cargo xtask test` gives a guest kernel, initramfs and supervisor.
//! # fn main() {
//! #     let (Some(kernel_dir), Some(initramfs), Some(supervisor)) = (
//! #         std::env::var_os("BOXLITE_KERNEL_DIR"),
//! #         std::env::var_os("BOXLITE_GUEST_INITRAMFS"),
//! #         std::env::var_os("BOXLITE_SUPERVISOR"),
//! #     ) else {
//! #         return;
//! #     };
//! #     let dir = tempfile::Builder::new().prefix("bxdoc").tempdir_in("/tmp").unwrap();
//! #     let tree = dir.path().join("tree");
//! #     std::fs::create_dir_all(tree.join("bin")).unwrap();
//! #     std::fs::copy("/usr/bin/echo", tree.join("bin/echo")).unwrap();
//! #     let ldd = std::process::Command::new("ldd").arg("/usr/bin/echo").output().unwrap();
//! #     for lib in String::from_utf8_lossy(&ldd.stdout).split_whitespace().filter(|w| w.starts_with('/')) {
//! #         let dest = tree.join(lib.trim_start_matches('/'));
//! #         std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
//! #         std::fs::copy(lib, dest).unwrap();
//! #     }
//! #     let layout = dir.path().join("layout");
//! #     oci_layers::LayoutBuilder::new()
//! #         .layer_dir(&tree, oci_layers::Compression::Gzip)
//! #         .env(["PATH=/bin"])
//! #         .write_layout(&layout, "latest")
//! #         .unwrap();
//! #     let tokio = tokio::runtime::Runtime::new().unwrap();
//! #     let mut options = RuntimeOptions::new(dir.path().join("home"));
//! #     options.kernel = Some(std::path::Path::new(&kernel_dir).join("bzImage"));
//! #     options.initramfs = Some(initramfs.into());
//! #     options.supervisor = Some(boxlite::SupervisorCommand::new(supervisor));
//! #     let said = tokio.block_on(hello(options, &layout)).unwrap();
//! #     assert_eq!(said, "hello from a box\n");
//! # }
//! ```
//!
//! For callers without an async runtime, [`blocking`] has the same API.

pub mod blocking;
mod copy;
mod defaults;
mod disk;
mod engine;
mod env;
mod error;
mod execution;
mod failpoint;
mod home;
mod host;
mod images;
mod info;
mod layout;
mod litebox;
mod liveness;
mod network;
mod options;
mod pathbytes;
mod peer;
mod recover;
mod runtime;
mod state;
mod supervisor;
mod text;
mod volume;
mod volumes;

pub use copy::{CopyOutOptions, CopyOutReport};
pub use defaults::{image_command, run_argv};
pub use env::{default_home, dns_from_env, registry_from_env, user_guest_dir};
pub use error::{Artefact, DbError, Error, ErrorKind, Needs, Result};
pub use execution::{
    DEFAULT_OUTPUT_LIMIT, ExecOutput, ExecStdin, Execution, ExitStatus, Output, Signal,
};
pub use images::{
    GcReport, Image, ImageInfo, UnpackMethod, UnpackReport, not_here as images_not_here,
};
pub use info::{BoxInfo, EngineInfo, HostInfo, Protection, Protections};
pub use litebox::{DEFAULT_STOP_GRACE, LiteBox, Metrics, RemoveMode};
pub use network::{
    NetworkInfo, NetworkMode, NetworkOptions, PortMapping, PortProtocol, PublishedPort,
};
pub use oci_layers::spec::Platform;
pub use options::{
    BoxCommand, BoxOptions, DEFAULT_BOOT_TIMEOUT, DEFAULT_CPUS, DEFAULT_DISK_SIZE_MIB,
    DEFAULT_MEMORY_MIB, EngineKind, MAX_CPUS, PullPolicy, RegistryOptions, RuntimeOptions,
    SupervisorCommand, validate_env_name, validate_working_dir,
};
pub use registry::{
    Credential, PullEvent, PullOptions, Pulled, Reference, parse_platform, pull::ProgressFn,
};
pub use runtime::Runtime;
pub use state::BoxState;
pub use text::printable;
pub use volume::{MAX_GUEST_PATH_LEN, MAX_VOLUMES, Volume, VolumeSource};
pub use volumes::{
    DEFAULT_VOLUME_SIZE_GIB, MAX_VOLUME_SIZE_GIB, VolumeInfo, VolumeUser, validate_volume_name,
};

/// The supervisor's `main` (a box's VM owner): reads its arguments from stdin. For the
/// `boxlite-supervisor` binary and programs that serve as their own supervisor.
#[doc(hidden)]
pub fn supervise() -> std::process::ExitCode {
    supervisor::main()
}

/// Internals that `cargo xtask bench` measures against; not part of the API.
#[doc(hidden)]
pub mod internals {
    pub use crate::disk::create_box_disk;
    pub use crate::engine::{Device, Host, Programs, ResolvedEngine, VmSpec, resolve};
    pub use crate::host::{KvmSupport, find_program, memory_total_mib, probe_kvm};
    pub use crate::layout::Layout;

    /// Sends signal `signal` (a number) to `pid`, refusing pids that name a process group,
    /// every process, init or the caller (for tests that kill what their boxes recorded);
    /// whether the process existed.
    pub fn signal_pid(pid: u32, signal: i32) -> crate::Result<bool> {
        let signal = rustix::process::Signal::from_named_raw(signal)
            .ok_or_else(|| crate::Error::InvalidInput(format!("no signal {signal}")))?;
        crate::liveness::signal_pid(pid, signal)
    }
}
