//! Guest RAM: the regions around the MMIO gap, and how much of it the host has touched.

use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use crate::error::{Error, Result};
use crate::layout::{MMIO_GAP_END, MMIO_GAP_START};

/// Guest memory as every part of the VMM sees it.
pub type GuestMemory = GuestMemoryMmap<()>;

/// The smallest VM: the boot structures, a kernel and an initramfs need a few MiB.
pub const MIN_MEMORY_MIB: u64 = 2;
/// The largest VM we accept (1 TiB): beyond it the page tables we build do not reach.
pub const MAX_MEMORY_MIB: u64 = 1 << 20;

/// The RAM ranges of a VM of `size` bytes: below the MMIO gap, then above 4 GiB.
pub fn ranges(size: u64) -> Vec<(GuestAddress, usize)> {
    let low = size.min(MMIO_GAP_START);
    let mut ranges = vec![(GuestAddress(0), low as usize)];
    if size > low {
        ranges.push((GuestAddress(MMIO_GAP_END), (size - low) as usize));
    }
    ranges
}

/// Allocates (lazily: pages are only backed once touched) `mib` MiB of guest RAM.
pub fn create(mib: u64) -> Result<GuestMemory> {
    if !(MIN_MEMORY_MIB..=MAX_MEMORY_MIB).contains(&mib) {
        return Err(Error::Config(format!(
            "memory must be {MIN_MEMORY_MIB}..={MAX_MEMORY_MIB} MiB, not {mib}"
        )));
    }
    GuestMemoryMmap::from_ranges(&ranges(mib << 20)).map_err(|e| Error::Memory(e.to_string()))
}

/// The end of RAM below the MMIO gap.
pub fn low_end(mem: &GuestMemory) -> u64 {
    mem.iter().next().map_or(0, |r| r.start_addr().0 + r.len())
}

/// Bytes of guest RAM backed by host pages (what the guest, or our loading, touched).
pub fn resident_bytes(mem: &GuestMemory) -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
    let mut total = 0u64;
    for region in mem.iter() {
        let Ok(host) = mem.get_host_address(region.start_addr()) else {
            continue;
        };
        let len = region.len() as usize;
        let mut vec = vec![0u8; len.div_ceil(page)];
        // SAFETY: `host..host+len` is exactly this region's live mapping (page aligned, owned by
        // `mem`, which outlives the call) and `vec` has one byte per page of it, as mincore needs.
        let rc = unsafe { libc::mincore(host.cast(), len, vec.as_mut_ptr()) };
        if rc == 0 {
            total += vec.iter().filter(|b| **b & 1 != 0).count() as u64 * page as u64;
        }
    }
    total
}

/// This process's resident set size in bytes (from /proc/self/statm).
pub fn process_rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
    pages * page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_vm_is_one_region() {
        assert_eq!(ranges(256 << 20), vec![(GuestAddress(0), 256 << 20)]);
    }

    #[test]
    fn large_vm_skips_the_mmio_gap() {
        let r = ranges(4 << 30);
        assert_eq!(r[0], (GuestAddress(0), MMIO_GAP_START as usize));
        assert_eq!(
            r[1],
            (
                GuestAddress(MMIO_GAP_END),
                ((4 << 30) - MMIO_GAP_START) as usize
            )
        );
    }

    #[test]
    fn memory_size_is_capped() {
        assert!(create(1).is_err());
        assert!(create(MAX_MEMORY_MIB + 1).is_err());
        let mem = create(8).unwrap();
        assert_eq!(low_end(&mem), 8 << 20);
        assert_eq!(resident_bytes(&mem), 0);
    }
}
