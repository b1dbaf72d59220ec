//! A virtio-mmio device's interrupt: the `InterruptStatus` bits and the IRQ line.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::devices::irq::IrqLine;

/// `InterruptStatus` bit: the device used buffers.
pub const USED_BUFFER: u32 = 1;
/// `InterruptStatus` bit: the configuration (or device status) changed.
pub const CONFIG_CHANGE: u32 = 2;

/// Status bits plus the line that announces them.
#[derive(Debug)]
pub struct Interrupt {
    status: AtomicU32,
    line: IrqLine,
}

impl Interrupt {
    /// An interrupt raising `line`.
    pub fn new(line: IrqLine) -> Interrupt {
        Interrupt {
            status: AtomicU32::new(0),
            line,
        }
    }

    /// Sets `bits` and raises the line.
    pub fn signal(&self, bits: u32) {
        self.status.fetch_or(bits, Ordering::SeqCst);
        // The eventfd counter saturates long after any guest could fall behind; a failed
        // write leaves the bit set, and the guest sees it at its next interrupt.
        let _ = self.line.raise();
    }

    /// The pending bits.
    pub fn status(&self) -> u32 {
        self.status.load(Ordering::SeqCst)
    }

    /// Clears `bits` (the driver's `InterruptACK`).
    pub fn ack(&self, bits: u32) {
        self.status.fetch_and(!bits, Ordering::SeqCst);
    }

    /// Clears everything (device reset).
    pub fn clear(&self) {
        self.status.store(0, Ordering::SeqCst);
    }

    /// The line, for registering its irqfd.
    pub fn line(&self) -> &IrqLine {
        &self.line
    }
}
