//! The guest's physical memory map (e820), shared by the zero page and the PVH start info.

use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};

use crate::layout::{EBDA_ADDR, HIMEM_ADDR};
use crate::memory::GuestMemory;

/// e820 type of usable RAM.
pub const E820_RAM: u32 = 1;
/// e820 type of reserved memory.
pub const E820_RESERVED: u32 = 2;

/// One memory map entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// First byte.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// `E820_RAM` or `E820_RESERVED`.
    pub kind: u32,
}

/// The map: conventional memory below the EBDA, the EBDA (holding our MP table) reserved,
/// nothing in the legacy hole, then every RAM byte from 1 MiB on, around the MMIO gap.
pub fn map(mem: &GuestMemory) -> Vec<Entry> {
    let mut entries = vec![
        Entry {
            addr: 0,
            size: EBDA_ADDR,
            kind: E820_RAM,
        },
        Entry {
            addr: EBDA_ADDR,
            size: 0x400,
            kind: E820_RESERVED,
        },
    ];
    for region in mem.iter() {
        let start = region.start_addr().0.max(HIMEM_ADDR);
        let end = region.start_addr().0 + region.len();
        if end > start {
            entries.push(Entry {
                addr: start,
                size: end - start,
                kind: E820_RAM,
            });
        }
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{MMIO_GAP_END, MMIO_GAP_START};

    #[test]
    fn small_vm() {
        let mem = crate::memory::create(128).unwrap();
        assert_eq!(
            map(&mem),
            vec![
                Entry {
                    addr: 0,
                    size: 0x9fc00,
                    kind: E820_RAM
                },
                Entry {
                    addr: 0x9fc00,
                    size: 0x400,
                    kind: E820_RESERVED
                },
                Entry {
                    addr: 0x10_0000,
                    size: (128 << 20) - 0x10_0000,
                    kind: E820_RAM
                },
            ]
        );
    }

    #[test]
    fn large_vm_has_ram_above_4g() {
        let mem = crate::memory::create(4096).unwrap();
        let m = map(&mem);
        assert_eq!(m.len(), 4);
        assert_eq!(m[2].addr + m[2].size, MMIO_GAP_START);
        assert_eq!(
            m[3],
            Entry {
                addr: MMIO_GAP_END,
                size: (4 << 30) - MMIO_GAP_START,
                kind: E820_RAM
            }
        );
    }
}
