//! boxlite-guest, the agent inside a box's VM.
//!
//! As PID 1 of the VM ([`init`]) it mounts the box's disks, builds the root every command sees
//! and serves the host↔guest protocol on a virtio console; on the host (`--listen`) it serves
//! the same protocol on a Unix socket, which is how its execution semantics are tested.

pub mod agent;
pub mod cmdline;
pub mod error;
pub mod fdio;
pub mod init;
pub mod pack;
pub mod process;
pub mod reaper;
pub mod root;
pub mod unpack;
pub mod users;

pub use error::{Error, Result};
