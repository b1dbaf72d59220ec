//! Port-I/O and MMIO dispatch: address ranges to devices.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::{Error, Result};

/// A device reachable through a bus; `offset` is relative to the range's base.
pub trait BusDevice: Send {
    /// Handles a guest read of `data.len()` bytes.
    fn read(&mut self, offset: u64, data: &mut [u8]);
    /// Handles a guest write.
    fn write(&mut self, offset: u64, data: &[u8]);
}

/// A shared, lockable bus device.
pub type SharedDevice = Arc<Mutex<dyn BusDevice>>;

/// Non-overlapping address ranges, each owned by one device.
#[derive(Default, Clone)]
pub struct Bus {
    ranges: BTreeMap<u64, (u64, SharedDevice)>,
}

impl Bus {
    /// Claims `base..base+len` for `device`; overlapping claims are refused.
    pub fn insert(&mut self, base: u64, len: u64, device: SharedDevice) -> Result<()> {
        let end = base
            .checked_add(len)
            .filter(|_| len > 0)
            .ok_or_else(|| Error::Config(format!("bad bus range {base:#x}+{len:#x}")))?;
        let before = self.ranges.range(..end).next_back();
        if let Some((b, (l, _))) = before
            && b + l > base
        {
            return Err(Error::Config(format!(
                "bus range {base:#x}+{len:#x} overlaps {b:#x}+{l:#x}"
            )));
        }
        self.ranges.insert(base, (len, device));
        Ok(())
    }

    /// The device whose range holds the whole access, and the offset into it.
    fn find(&self, addr: u64, len: usize) -> Option<(&SharedDevice, u64)> {
        let (base, (size, device)) = self.ranges.range(..=addr).next_back()?;
        let offset = addr - base;
        (offset.checked_add(len as u64)? <= *size).then_some((device, offset))
    }

    /// Dispatches a read; an access no device claims reads as all ones, like an open bus.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.find(addr, data.len()) {
            Some((device, offset)) => {
                device
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .read(offset, data);
                true
            }
            None => {
                data.fill(0xff);
                false
            }
        }
    }

    /// Dispatches a write; an access no device claims is dropped.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.find(addr, data.len()) {
            Some((device, offset)) => {
                device
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .write(offset, data);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorder {
        writes: Vec<(u64, Vec<u8>)>,
    }

    impl BusDevice for Recorder {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.writes.push((offset, data.to_vec()));
        }
    }

    #[test]
    fn dispatch_by_range() {
        let a = Arc::new(Mutex::new(Recorder::default()));
        let b = Arc::new(Mutex::new(Recorder::default()));
        let mut bus = Bus::default();
        bus.insert(0x1000, 0x100, a.clone()).unwrap();
        bus.insert(0x1100, 0x10, b.clone()).unwrap();
        let mut data = [0u8; 4];
        assert!(bus.read(0x1004, &mut data));
        assert_eq!(data, [4; 4]);
        assert!(bus.write(0x1108, &[1, 2]));
        assert_eq!(b.lock().unwrap().writes, vec![(8, vec![1, 2])]);
        // Straddling the end of a range, or outside every range: nobody.
        assert!(!bus.write(0x110e, &[0; 4]));
        assert!(!bus.read(0x2000, &mut data));
        assert_eq!(data, [0xff; 4]);
        assert!(!bus.write(0xfff, &[0]));
        assert!(a.lock().unwrap().writes.is_empty());
    }

    #[test]
    fn overlaps_are_refused() {
        let d = || -> SharedDevice { Arc::new(Mutex::new(Recorder::default())) };
        let mut bus = Bus::default();
        bus.insert(0x100, 0x10, d()).unwrap();
        assert!(bus.insert(0x10f, 1, d()).is_err());
        assert!(bus.insert(0xf8, 0x10, d()).is_err());
        assert!(bus.insert(0x0, 0, d()).is_err());
        assert!(bus.insert(u64::MAX, 2, d()).is_err());
        bus.insert(0x110, 1, d()).unwrap();
        bus.insert(0xf0, 0x10, d()).unwrap();
    }
}
