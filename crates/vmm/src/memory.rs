//! Guest RAM: the regions around the MMIO gap, and how much of it the host has touched.
//!
//! RAM is private anonymous memory unless a vhost-user device is configured: then it is one
//! memfd mapped shared, so the device's daemon can map the same pages (it gets the fd in
//! `SET_MEM_TABLE`). Private anonymous memory stays the default because it gets transparent
//! huge pages where shmem usually does not, and nothing else needs to see it.

use std::fs::File;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::Arc;

use vm_memory::{FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

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

fn check_size(mib: u64) -> Result<()> {
    if !(MIN_MEMORY_MIB..=MAX_MEMORY_MIB).contains(&mib) {
        return Err(Error::Config(format!(
            "memory must be {MIN_MEMORY_MIB}..={MAX_MEMORY_MIB} MiB, not {mib}"
        )));
    }
    Ok(())
}

/// Allocates (lazily: pages are only backed once touched) `mib` MiB of guest RAM.
pub fn create(mib: u64) -> Result<GuestMemory> {
    check_size(mib)?;
    GuestMemoryMmap::from_ranges(&ranges(mib << 20)).map_err(|e| Error::Memory(e.to_string()))
}

/// Allocates `mib` MiB of guest RAM in one memfd mapped shared (as lazily as [`create`]),
/// for a VM with vhost-user devices. Each region keeps the memfd open and knows its offset
/// in it ([`GuestMemoryRegion::file_offset`]), which is what `SET_MEM_TABLE` sends.
pub fn create_shared(mib: u64) -> Result<GuestMemory> {
    check_size(mib)?;
    let size = mib << 20;
    let file = Arc::new(sealed_memfd(size)?);
    let mut offset = 0u64;
    let regions: Vec<_> = ranges(size)
        .into_iter()
        .map(|(addr, len)| {
            let region = (addr, len, Some(FileOffset::from_arc(file.clone(), offset)));
            offset += len as u64;
            region
        })
        .collect();
    GuestMemoryMmap::from_ranges_with_files(&regions).map_err(|e| Error::Memory(e.to_string()))
}

/// A memfd of `size` bytes whose size is sealed: the daemon we hand it to could otherwise
/// shrink it, and our next access to the lost pages would kill the VMM with SIGBUS.
fn sealed_memfd(size: u64) -> Result<File> {
    let name = c"boxlite-guest-ram";
    // SAFETY: memfd_create reads the NUL-terminated name and returns a new fd or -1.
    let fd =
        unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(Error::io("creating", "the guest memory memfd")(
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: `fd` was just returned by memfd_create and nothing else owns it.
    let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    file.set_len(size)
        .map_err(Error::io("sizing", "the guest memory memfd"))?;
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    // SAFETY: F_ADD_SEALS on our own memfd takes an int and touches no memory.
    if unsafe { libc::fcntl(fd, libc::F_ADD_SEALS, seals) } < 0 {
        return Err(Error::io("sealing", "the guest memory memfd")(
            std::io::Error::last_os_error(),
        ));
    }
    Ok(file)
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

    #[test]
    fn shared_memory_is_one_sealed_memfd_and_counts_what_is_touched() {
        use std::os::fd::AsRawFd;
        use vm_memory::Bytes;

        assert!(create_shared(MAX_MEMORY_MIB + 1).is_err());
        let mem = create_shared(4 << 10).unwrap();
        let regions: Vec<_> = mem.iter().collect();
        assert_eq!(regions.len(), 2);
        let (low, high) = (
            regions[0].file_offset().unwrap(),
            regions[1].file_offset().unwrap(),
        );
        assert_eq!(low.file().as_raw_fd(), high.file().as_raw_fd());
        assert_eq!((low.start(), high.start()), (0, MMIO_GAP_START));
        assert_eq!(low.file().metadata().unwrap().len(), 4 << 30);
        // Neither the daemon nor anyone else can shrink it under us.
        assert!(low.file().set_len(1 << 20).is_err());
        assert_eq!(resident_bytes(&mem), 0);
        mem.write_obj(1u8, GuestAddress(MMIO_GAP_END)).unwrap();
        assert_eq!(resident_bytes(&mem), 4096);
    }
}
