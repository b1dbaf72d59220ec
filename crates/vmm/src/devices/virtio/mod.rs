//! virtio 1.x devices on the MMIO transport.
//!
//! Every value the guest controls passes through one of three gates: the transport checks
//! register offsets, widths, queue sizes and feature bits ([`mmio`]); [`chain`] checks every
//! descriptor's address and length against guest RAM and our caps before a device touches
//! it; each device's request parser checks the request itself. A guest that breaks a rule gets
//! an error status for that request, or its device marked `DEVICE_NEEDS_RESET`; never a VMM
//! panic or an access outside its RAM.

pub mod block;
pub mod chain;
pub mod console;
pub mod fs;
pub mod interrupt;
pub mod mmio;
pub mod net;
pub mod rng;

use std::os::fd::RawFd;
use std::sync::Arc;

use virtio_queue::Queue;
use vmm_sys_util::eventfd::EventFd;

pub use interrupt::Interrupt;

use crate::error::Result;
use crate::memory::GuestMemory;

/// `VIRTIO_F_VERSION_1`: the modern (1.x) interface, the only one we offer.
pub const F_VERSION_1: u64 = 1 << 32;

/// Device IDs (virtio 1.2 §5).
pub mod device_type {
    /// Network card.
    pub const NET: u32 = 1;
    /// Block device.
    pub const BLOCK: u32 = 2;
    /// Console.
    pub const CONSOLE: u32 = 3;
    /// Entropy source.
    pub const RNG: u32 = 4;
    /// File system (virtio-fs).
    pub const FS: u32 = 26;
}

/// What a device gets when the driver sets `DRIVER_OK`.
pub struct Activation {
    /// Guest memory.
    pub mem: GuestMemory,
    /// The queues, validated against `mem`.
    pub queues: Vec<Queue>,
    /// The device's interrupt.
    pub interrupt: Arc<Interrupt>,
    /// The features the driver accepted.
    pub features: u64,
    /// The eventfd KVM signals when the guest notifies each queue: a vhost-user device
    /// passes them to its daemon (see [`VirtioDevice::backend_takes_kicks`]).
    pub queue_events: Vec<Arc<EventFd>>,
}

/// Which host fd a device wants watched, and for what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watch {
    /// The fd.
    pub fd: RawFd,
    /// Wake when readable.
    pub read: bool,
    /// Wake when writable.
    pub write: bool,
}

/// What a watched fd is ready for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Readiness {
    /// Readable.
    pub read: bool,
    /// Writable.
    pub write: bool,
    /// The peer hung up or the fd has an error.
    pub hangup: bool,
}

/// A virtio device behind the transport.
pub trait VirtioDevice: Send {
    /// The virtio device ID.
    fn device_type(&self) -> u32;
    /// Each queue's maximum size.
    fn queue_max_sizes(&self) -> &[u16];
    /// The feature bits offered.
    fn features(&self) -> u64;
    /// The device-specific configuration space.
    fn config(&self) -> Vec<u8> {
        Vec::new()
    }
    /// Starts the device.
    fn activate(&mut self, activation: Activation) -> Result<()>;
    /// Returns to the state before activation.
    fn reset(&mut self);
    /// The guest notified queue `index`. An error means the guest broke the protocol and
    /// the device must be reset before it works again.
    fn process_queue(&mut self, index: usize) -> Result<()>;
    /// Host fds to watch (a backend socket), given the device's current state.
    fn watches(&self) -> Vec<Watch> {
        Vec::new()
    }
    /// A watched fd became ready.
    fn process_backend(&mut self, _fd: RawFd, _ready: Readiness) -> Result<()> {
        Ok(())
    }
    /// Whether the guest's queue notifications go to an external backend (a vhost-user
    /// daemon reads the queue eventfds itself): the device thread must then never read
    /// them, or it would steal the daemon's kicks.
    fn backend_takes_kicks(&self) -> bool {
        false
    }
    /// The vhost-user socket the device talks to while the guest programs it (on the vCPU
    /// thread), for the seccomp rules that allow exactly that socket.
    fn vhost_user_socket(&self) -> Option<RawFd> {
        None
    }
}
