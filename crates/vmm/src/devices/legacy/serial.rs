//! COM1, a 16550A UART (vm-superio), whose output is the kernel console.

use std::io::Write;

use vm_superio::Serial as Uart;

use crate::bus::BusDevice;
use crate::devices::irq::IrqLine;

/// Ports of a 16550: eight registers.
pub const PORT_COUNT: u64 = 8;

/// The UART behind its interrupt line, writing to any sink.
pub struct Serial {
    uart: Uart<IrqLine, vm_superio::serial::NoEvents, Box<dyn Write + Send>>,
}

impl Serial {
    /// A UART writing the guest's output to `out`, interrupting through `irq`.
    pub fn new(irq: IrqLine, out: Box<dyn Write + Send>) -> Serial {
        Serial {
            uart: Uart::new(irq, out),
        }
    }

    /// The interrupt line, for registering its irqfd.
    pub fn irq(&self) -> &IrqLine {
        self.uart.interrupt_evt()
    }
}

impl BusDevice for Serial {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if let ([byte], Ok(offset)) = (&mut *data, u8::try_from(offset)) {
            *byte = self.uart.read(offset);
        } else {
            data.fill(0xff);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let ([byte], Ok(offset)) = (data, u8::try_from(offset)) {
            // A failed sink (a full disk) must not stop the guest: console output is best effort.
            let _ = self.uart.write(offset, *byte);
        }
    }
}

/// A `Write` that appends to shared memory (tests and short-lived VMs read it back).
#[derive(Clone, Default)]
pub struct SharedBuffer(pub std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl SharedBuffer {
    /// A copy of everything written so far.
    pub fn contents(&self) -> Vec<u8> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl Write for SharedBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_written_to_thr_reach_the_sink() {
        let buf = SharedBuffer::default();
        let mut s = Serial::new(IrqLine::new(4).unwrap(), Box::new(buf.clone()));
        for b in b"hi" {
            s.write(0, &[*b]);
        }
        assert_eq!(buf.contents(), b"hi");
        // Line status: transmitter empty.
        let mut lsr = [0u8];
        s.read(5, &mut lsr);
        assert_ne!(lsr[0] & 0x20, 0);
        // Wider accesses are not a UART's: ignored, read as ones.
        let mut wide = [0u8; 2];
        s.read(0, &mut wide);
        assert_eq!(wide, [0xff, 0xff]);
    }
}
