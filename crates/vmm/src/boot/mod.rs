//! Loading a Linux kernel and handing it what it needs to boot: the memory map, the command
//! line, the initramfs and the multiprocessor table.

pub mod cmdline;
pub mod e820;
pub mod loader;
pub mod mptable;
pub mod pvh;
pub mod zero_page;

pub use loader::{Entry, Loaded};
