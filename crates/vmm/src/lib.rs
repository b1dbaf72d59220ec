//! boxlite's virtual machine monitor: a small KVM VMM on the rust-vmm crates that boots a
//! Linux kernel with an initramfs, virtio-mmio block, console, network and entropy devices,
//! a COM1 console, an i8042 for reboot and a boot timer. See `docs/vmm.md` in this crate for
//! the design, memory map and command line.
//!
//! [`builder::build`] turns a [`config::VmConfig`] into a [`machine::Machine`];
//! [`machine::Machine::run`] runs it to its [`machine::Outcome`].

#![cfg(target_arch = "x86_64")]

pub mod boot;
pub mod builder;
pub mod bus;
pub mod config;
pub mod cpu;
pub mod devices;
pub mod error;
pub mod event_loop;
pub mod exit;
pub mod host;
pub mod layout;
pub mod machine;
pub mod memory;
pub mod seccomp;
pub mod vm;

pub use error::{Error, Result};
/// The vm-memory version our guest memory type comes from (for tests and fuzzers).
pub use vm_memory;
