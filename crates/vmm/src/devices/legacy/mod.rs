//! The PC devices a Linux guest uses before (or instead of) virtio.

pub mod boot_timer;
pub mod i8042;
pub mod serial;
