//! The Linux 64-bit boot protocol's zero page (`struct boot_params`), built as bytes at the
//! offsets of Documentation/arch/x86/boot.rst and zero-page.rst.

use super::e820;

/// Size of the zero page.
pub const SIZE: usize = 4096;
/// Offset of the setup header in the zero page and in a bzImage file.
pub const SETUP_HEADER_OFFSET: usize = 0x1f1;
/// The zero page holds at most this many e820 entries (`E820_MAX_ENTRIES_ZEROPAGE`).
pub const MAX_E820_ENTRIES: usize = 128;

const EXT_RAMDISK_IMAGE: usize = 0x0c0;
const EXT_RAMDISK_SIZE: usize = 0x0c4;
const EXT_CMD_LINE_PTR: usize = 0x0c8;
const E820_ENTRIES: usize = 0x1e8;
const BOOT_FLAG: usize = 0x1fe;
const HEADER_MAGIC: usize = 0x202;
const TYPE_OF_LOADER: usize = 0x210;
const LOADFLAGS: usize = 0x211;
const RAMDISK_IMAGE: usize = 0x218;
const RAMDISK_SIZE: usize = 0x21c;
const CMD_LINE_PTR: usize = 0x228;
const KERNEL_ALIGNMENT: usize = 0x230;
const CMDLINE_SIZE: usize = 0x238;
const E820_TABLE: usize = 0x2d0;
const E820_ENTRY_SIZE: usize = 20;

/// `type_of_loader` of an undeclared boot loader.
const LOADER_UNDEFINED: u8 = 0xff;
/// `loadflags`: the kernel was loaded high (at 1 MiB).
const LOADED_HIGH: u8 = 0x01;
/// "HdrS".
const HDRS: u32 = 0x5372_6448;

/// What goes into a zero page.
#[derive(Debug, Clone, Default)]
pub struct Params<'a> {
    /// The kernel's own setup header (bzImage bytes from 0x1f1), if it has one.
    pub setup_header: Option<&'a [u8]>,
    /// Guest address and length of the command line (without its NUL).
    pub cmdline: (u64, u32),
    /// Guest address and length of the initramfs.
    pub initramfs: Option<(u64, u64)>,
    /// The memory map.
    pub e820: &'a [e820::Entry],
}

fn put_u8(page: &mut [u8; SIZE], at: usize, v: u8) {
    page[at] = v;
}
fn put_u16(page: &mut [u8; SIZE], at: usize, v: u16) {
    page[at..at + 2].copy_from_slice(&v.to_le_bytes());
}
fn put_u32(page: &mut [u8; SIZE], at: usize, v: u32) {
    page[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
fn put_u64(page: &mut [u8; SIZE], at: usize, v: u64) {
    page[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Builds the zero page.
pub fn build(params: &Params<'_>) -> Box<[u8; SIZE]> {
    let mut page = Box::new([0u8; SIZE]);
    if let Some(header) = params.setup_header {
        // The header ends where its jump instruction lands: 0x202 + the byte at 0x201.
        let len = header.len().min(E820_TABLE - SETUP_HEADER_OFFSET);
        page[SETUP_HEADER_OFFSET..SETUP_HEADER_OFFSET + len].copy_from_slice(&header[..len]);
    } else {
        // A vmlinux has no setup header: fill in the fields a bzImage would carry.
        put_u16(&mut page, BOOT_FLAG, 0xaa55);
        put_u32(&mut page, HEADER_MAGIC, HDRS);
        put_u32(&mut page, KERNEL_ALIGNMENT, 0x0100_0000);
    }
    put_u8(&mut page, TYPE_OF_LOADER, LOADER_UNDEFINED);
    let flags = page[LOADFLAGS] | LOADED_HIGH;
    put_u8(&mut page, LOADFLAGS, flags);
    let (cmd_addr, cmd_len) = params.cmdline;
    put_u32(&mut page, CMD_LINE_PTR, cmd_addr as u32);
    put_u32(&mut page, EXT_CMD_LINE_PTR, (cmd_addr >> 32) as u32);
    put_u32(&mut page, CMDLINE_SIZE, cmd_len);
    if let Some((addr, size)) = params.initramfs {
        put_u32(&mut page, RAMDISK_IMAGE, addr as u32);
        put_u32(&mut page, EXT_RAMDISK_IMAGE, (addr >> 32) as u32);
        put_u32(&mut page, RAMDISK_SIZE, size as u32);
        put_u32(&mut page, EXT_RAMDISK_SIZE, (size >> 32) as u32);
    }
    let entries = &params.e820[..params.e820.len().min(MAX_E820_ENTRIES)];
    put_u8(&mut page, E820_ENTRIES, entries.len() as u8);
    for (i, e) in entries.iter().enumerate() {
        let at = E820_TABLE + i * E820_ENTRY_SIZE;
        put_u64(&mut page, at, e.addr);
        put_u64(&mut page, at + 8, e.size);
        put_u32(&mut page, at + 16, e.kind);
    }
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u32_at(page: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(page[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn fields_land_at_the_documented_offsets() {
        let e820 = [
            e820::Entry {
                addr: 0,
                size: 0x9fc00,
                kind: 1,
            },
            e820::Entry {
                addr: 0x100000,
                size: 0x700000,
                kind: 1,
            },
        ];
        let page = build(&Params {
            setup_header: None,
            cmdline: (0x20000, 42),
            initramfs: Some((0x7f0000, 0x1234)),
            e820: &e820,
        });
        assert_eq!(page[0x1e8], 2);
        assert_eq!(u32_at(&page[..], 0x202), HDRS);
        assert_eq!(page[0x1fe..0x200], [0x55, 0xaa]);
        assert_eq!(page[0x210], 0xff);
        assert_eq!(u32_at(&page[..], 0x228), 0x20000);
        assert_eq!(u32_at(&page[..], 0x238), 42);
        assert_eq!(u32_at(&page[..], 0x218), 0x7f0000);
        assert_eq!(u32_at(&page[..], 0x21c), 0x1234);
        // Second e820 entry: addr, size, type.
        assert_eq!(u32_at(&page[..], 0x2d0 + 20), 0x100000);
        assert_eq!(u32_at(&page[..], 0x2d0 + 28), 0x700000);
        assert_eq!(u32_at(&page[..], 0x2d0 + 36), 1);
    }

    #[test]
    fn the_kernel_header_is_kept() {
        let mut header = vec![0u8; 0x77];
        header[0x202 - 0x1f1..0x206 - 0x1f1].copy_from_slice(&HDRS.to_le_bytes());
        header[0x211 - 0x1f1] = 0x80; // CAN_USE_HEAP, must survive
        let page = build(&Params {
            setup_header: Some(&header),
            e820: &[],
            ..Default::default()
        });
        assert_eq!(u32_at(&page[..], 0x202), HDRS);
        assert_eq!(page[0x211], 0x81);
    }
}
