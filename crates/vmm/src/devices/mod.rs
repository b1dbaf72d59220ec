//! Emulated devices: the PC legacy ones on port I/O, and virtio over MMIO.

pub mod irq;
pub mod legacy;
pub mod virtio;
