//! An interrupt line: an eventfd that KVM's irqfd turns into an IRQ edge.

use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use crate::error::{Error, Result};

/// One IRQ's eventfd; writing it raises the interrupt once KVM has it registered (irqfd).
#[derive(Debug)]
pub struct IrqLine {
    /// The IRQ number (GSI).
    pub gsi: u32,
    /// The eventfd KVM listens on.
    pub event: EventFd,
}

impl IrqLine {
    /// A new line for `gsi`.
    pub fn new(gsi: u32) -> Result<IrqLine> {
        let event = EventFd::new(EFD_NONBLOCK)
            .map_err(Error::io("creating", format!("the eventfd of irq {gsi}")))?;
        Ok(IrqLine { gsi, event })
    }

    /// Raises the interrupt.
    pub fn raise(&self) -> std::io::Result<()> {
        self.event.write(1)
    }
}

impl vm_superio::Trigger for IrqLine {
    type E = std::io::Error;

    fn trigger(&self) -> std::io::Result<()> {
        self.raise()
    }
}
