//! The PVH boot protocol's `hvm_start_info` (xen/include/public/arch-x86/hvm/start_info.h),
//! serialized by hand: it is little-endian with natural alignment, no padding surprises.

use super::e820;

/// `XEN_HVM_START_MAGIC_VALUE`.
pub const MAGIC: u32 = 0x336e_c578;
/// Offset of the module list after the start info (which is 56 bytes).
pub const MODLIST_OFFSET: u64 = 0x40;
/// Offset of the memory map after the start info (after one 32-byte module entry).
pub const MEMMAP_OFFSET: u64 = 0x80;
/// Most memory map entries: the same bound as the zero page's, and they fit in the page.
pub const MAX_MEMMAP_ENTRIES: usize = 128;

/// Serializes the start info, module list and memory map, laid out from `base` on: the
/// bytes to write at `base`.
pub fn build(
    base: u64,
    cmdline: u64,
    initramfs: Option<(u64, u64)>,
    map: &[e820::Entry],
) -> Vec<u8> {
    let map = &map[..map.len().min(MAX_MEMMAP_ENTRIES)];
    let mut out = vec![0u8; MEMMAP_OFFSET as usize + map.len() * 24];
    let mut put = |at: usize, bytes: &[u8]| out[at..at + bytes.len()].copy_from_slice(bytes);
    put(0, &MAGIC.to_le_bytes());
    put(4, &1u32.to_le_bytes()); // version 1: has the memory map fields
    if let Some((addr, size)) = initramfs {
        put(12, &1u32.to_le_bytes());
        put(16, &(base + MODLIST_OFFSET).to_le_bytes());
        let m = MODLIST_OFFSET as usize;
        put(m, &addr.to_le_bytes());
        put(m + 8, &size.to_le_bytes());
    }
    put(24, &cmdline.to_le_bytes());
    put(40, &(base + MEMMAP_OFFSET).to_le_bytes());
    put(48, &(map.len() as u32).to_le_bytes());
    for (i, e) in map.iter().enumerate() {
        let at = MEMMAP_OFFSET as usize + i * 24;
        put(at, &e.addr.to_le_bytes());
        put(at + 8, &e.size.to_le_bytes());
        put(at + 16, &e.kind.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
    }

    #[test]
    fn layout_matches_start_info_h() {
        let map = [e820::Entry {
            addr: 0x100000,
            size: 0x1000,
            kind: 1,
        }];
        let b = build(0x6000, 0x20000, Some((0x800000, 0x500)), &map);
        assert_eq!(&b[0..4], &MAGIC.to_le_bytes());
        assert_eq!(b[4], 1);
        assert_eq!(b[12], 1);
        assert_eq!(u64_at(&b, 16), 0x6040);
        assert_eq!(u64_at(&b, 24), 0x20000);
        assert_eq!(u64_at(&b, 32), 0, "no ACPI RSDP");
        assert_eq!(u64_at(&b, 40), 0x6080);
        assert_eq!(b[48], 1);
        assert_eq!(u64_at(&b, 0x40), 0x800000);
        assert_eq!(u64_at(&b, 0x48), 0x500);
        assert_eq!(u64_at(&b, 0x80), 0x100000);
        assert_eq!(u64_at(&b, 0x88), 0x1000);
        assert_eq!(b[0x90], 1);
        assert!(
            0x6000 + b.len() as u64 <= 0x7000,
            "fits below the zero page"
        );
    }

    #[test]
    fn no_initramfs_no_module() {
        let b = build(0x6000, 0x20000, None, &[]);
        assert_eq!(b[12], 0);
        assert_eq!(u64_at(&b, 16), 0);
    }
}
