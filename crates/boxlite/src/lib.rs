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
//! use boxlite::{BoxCommand, BoxOptions, Runtime, RuntimeOptions};
//!
//! async fn hello(home: &std::path::Path, image: &std::path::Path) -> boxlite::Result<String> {
//!     let runtime = Runtime::open(RuntimeOptions::new(home))?;
//!     // An OCI layout (directory or tar) or a `docker save` archive.
//!     runtime.store().import(image, Some("demo"), false)?;
//!     let bx = runtime.create(BoxOptions::new("demo")).await?;
//!     bx.start().await?;
//!     let out = bx
//!         .exec(BoxCommand::new("echo").arg("hello from a box"))
//!         .await?
//!         .output()
//!         .await?;
//!     runtime.remove(bx.id(), true).await?; // true: stop it first
//!     Ok(String::from_utf8_lossy(&out.stdout).into_owned())
//! }
//! # // Runs for real where `cargo xtask test` gives a guest kernel, initramfs and supervisor.
//! # fn main() {
//! #     let (Some(kernel_dir), Some(initramfs), Some(_)) = (
//! #         std::env::var_os("BOXLITE_KERNEL_DIR"),
//! #         std::env::var_os("BOXLITE_GUEST_INITRAMFS"),
//! #         std::env::var_os("BOXLITE_SUPERVISOR"),
//! #     ) else {
//! #         return;
//! #     };
//! #     // SAFETY: set before any thread of this example starts.
//! #     unsafe {
//! #         std::env::set_var("BOXLITE_KERNEL", std::path::Path::new(&kernel_dir).join("bzImage"));
//! #         std::env::set_var("BOXLITE_INITRAMFS", &initramfs);
//! #     }
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
//! #     let said = tokio.block_on(hello(&dir.path().join("home"), &layout)).unwrap();
//! #     assert_eq!(said, "hello from a box\n");
//! # }
//! ```
//!
//! For callers without an async runtime, [`blocking`] has the same API.

pub mod blocking;
pub mod copy;
mod defaults;
pub mod disk;
pub mod engine;
pub mod env;
pub mod error;
mod execution;
pub mod host;
pub mod layout;
mod litebox;
pub mod liveness;
pub mod options;
mod runtime;
pub mod state;
pub mod supervisor;

pub use defaults::{image_command, run_argv};
pub use error::{Error, Result};
pub use execution::{ExecOutput, ExecStdin, Execution, ExitStatus, Output};
pub use litebox::{DEFAULT_STOP_GRACE, LiteBox, Metrics};
pub use options::{BoxCommand, BoxOptions, EngineKind, RuntimeOptions, SupervisorCommand};
pub use runtime::{BoxInfo, EngineInfo, HostInfo, Runtime};
pub use state::BoxState;
