//! The i8042 keyboard controller, only for what Linux's `reboot=k` does: command 0xFE on port
//! 0x64 pulses the CPU reset line, which ends the VM.

use std::sync::Arc;

use vm_superio::I8042Device;

use crate::bus::BusDevice;
use crate::exit::{ExitReason, ExitState};

/// Ports 0x60..=0x64.
pub const PORT_COUNT: u64 = 5;

/// Stops the VM when the controller pulses reset.
pub struct ResetLine(Arc<ExitState>);

impl vm_superio::Trigger for ResetLine {
    type E = std::convert::Infallible;

    fn trigger(&self) -> Result<(), Self::E> {
        self.0.stop(ExitReason::Reset);
        Ok(())
    }
}

/// The controller.
pub struct I8042(I8042Device<ResetLine>);

impl I8042 {
    /// A controller whose reset stops `exit`'s VM.
    pub fn new(exit: Arc<ExitState>) -> I8042 {
        I8042(I8042Device::new(ResetLine(exit)))
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        // Status 0: no data waiting, input buffer empty (so `kb_wait` returns at once).
        let value = u8::try_from(offset).map_or(0, |o| self.0.read(o));
        data.fill(value);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let ([value], Ok(offset)) = (data, u8::try_from(offset)) {
            let _ = self.0.write(offset, *value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_command_stops_the_vm() {
        let exit = Arc::new(ExitState::default());
        let mut kbd = I8042::new(exit.clone());
        kbd.write(0, &[0xfe]);
        kbd.write(4, &[0xaa]);
        assert!(!exit.stopping(), "only 0xFE on the command port resets");
        kbd.write(4, &[0xfe]);
        assert_eq!(exit.wait(None), Some(ExitReason::Reset));
    }
}
