//! boxlite-guest, the agent inside a box's VM.
//!
//! Two modes, one binary (`boxlite-guest`):
//!
//! - **PID 1 of the VM** (when its pid is 1, or with `--pid1`): [`init`] mounts the agent's
//!   API filesystems, reads its settings from the kernel command line ([`cmdline`]), mounts
//!   the image and data disks, builds the overlay root every command sees, configures the
//!   network ([`network`]: loopback, and the card when the host gave one), and then serves
//!   the protocol on the virtio console or serial port, reaping every orphan ([`reaper`]).
//!   `shutdown` stops every process, syncs, unmounts and restarts the machine, which ends the
//!   VM (`reboot=t`, `-no-reboot`); a fatal error is printed to the console and ends it too.
//! - **Host test mode** (`--listen PATH --root DIR`): the same protocol on a Unix socket,
//!   connections served concurrently, commands run in `DIR` ([`root`] explains when they are
//!   chrooted), so every execution behaviour is testable without a VM.
//!
//! Each connection starts with a `hello` whose capabilities are `exec`, `tty`, `signal`,
//! `timeout`, `upload`, `download`, `mount`, plus `root-failed` when the box's root could not be built
//! (every request that needs it then fails with the reason). Requests are served by
//! [`agent`]: executions ([`process`]) with their stdio through the protocol's flow control,
//! uploads ([`unpack`]) and downloads ([`pack`]) of tar streams, and the box's volumes
//! ([`volume`]), mounted inside the root before the workload starts.

pub mod agent;
pub mod cmdline;
pub mod error;
pub mod fdio;
pub mod init;
pub mod network;
pub mod pack;
pub mod process;
pub mod reaper;
pub mod root;
pub mod unpack;
pub mod users;
pub mod volume;

pub use error::{Error, Result};
