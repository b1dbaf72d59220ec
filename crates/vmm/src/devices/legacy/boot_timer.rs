//! The boot timer: the guest agent writes a byte to [`crate::layout::BOOT_TIMER_PORT`] once
//! it is ready to serve, and we record how long that took since the VMM started building the
//! VM, to the microsecond. Only the first write counts.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::bus::BusDevice;
use crate::exit::{ExitReason, ExitState};

/// One port.
pub const PORT_COUNT: u64 = 1;

/// The recorded boot time, shared with whoever reports it.
pub type BootTime = Arc<OnceLock<Duration>>;

/// The pseudo-device.
pub struct BootTimer {
    started: Instant,
    recorded: BootTime,
    stop: Option<Arc<ExitState>>,
}

impl BootTimer {
    /// A timer counting from `started`, recording into `recorded`; with `stop`, the first
    /// write also ends the VM (benchmarks of boot time).
    pub fn new(started: Instant, recorded: BootTime, stop: Option<Arc<ExitState>>) -> BootTimer {
        BootTimer {
            started,
            recorded,
            stop,
        }
    }
}

impl BusDevice for BootTimer {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }

    fn write(&mut self, _offset: u64, _data: &[u8]) {
        let _ = self.recorded.set(self.started.elapsed());
        if let Some(exit) = &self.stop {
            exit.stop(ExitReason::Booted);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_write_is_recorded() {
        let recorded = BootTime::default();
        let exit = Arc::new(ExitState::default());
        let mut t = BootTimer::new(Instant::now(), recorded.clone(), Some(exit.clone()));
        assert!(recorded.get().is_none());
        t.write(0, &[1]);
        let first = *recorded.get().unwrap();
        std::thread::sleep(Duration::from_millis(2));
        t.write(0, &[1]);
        assert_eq!(*recorded.get().unwrap(), first);
        assert_eq!(exit.wait(None), Some(ExitReason::Booted));
    }
}
