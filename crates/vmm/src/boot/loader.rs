//! Puts a kernel (ELF vmlinux, entered through PVH when it has the note, or bzImage through
//! the 64-bit boot protocol), its initramfs and boot structures into guest memory.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use linux_loader::loader::{BzImage, Elf, KernelLoader, PvhBootCapability};
use vm_memory::{Bytes, GuestAddress};

use super::{e820, mptable, pvh, zero_page};
use crate::error::{Error, Result};
use crate::layout::{CMDLINE_ADDR, CMDLINE_MAX_LEN, HIMEM_ADDR, PVH_INFO_ADDR, ZERO_PAGE_ADDR};
use crate::memory::{self, GuestMemory};

/// Offset of the 64-bit entry point in a bzImage's protected-mode code.
const BZIMAGE_64BIT_ENTRY: u64 = 0x200;
/// Initramfs placement alignment (a page, as the boot protocol recommends).
const INITRAMFS_ALIGN: u64 = 4096;
/// The setup header is at most this long (it ends at 0x202 + a one-byte jump).
const MAX_SETUP_HEADER: usize = 0x202 + 0xff - zero_page::SETUP_HEADER_OFFSET;

/// How the boot vCPU enters the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// PVH: 32-bit protected mode without paging, `rbx` = start info.
    Pvh(u64),
    /// Linux 64-bit boot protocol: long mode, identity paging, `rsi` = zero page.
    Linux64(u64),
    /// Real mode at `cs:ip` = `0:ip` (test programs).
    Real(u64),
    /// 64-bit long mode at `rip` with the identity map (test programs).
    Long(u64),
}

/// What loading placed where.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// Where the boot vCPU starts.
    pub entry: Entry,
    /// The initramfs's guest address and size, if any.
    pub initramfs: Option<(u64, u64)>,
}

fn kernel_error(path: &Path, reason: impl ToString) -> Error {
    Error::Kernel {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// Loads everything for a Linux boot with `cpus` vCPUs and the full command line `cmdline`.
pub fn load_linux(
    mem: &GuestMemory,
    kernel: &Path,
    initramfs: Option<&Path>,
    cmdline: &str,
    cpus: u8,
) -> Result<Loaded> {
    let mut file = File::open(kernel).map_err(|e| kernel_error(kernel, e))?;
    let mut magic = [0u8; 4];
    file.read_exact(&mut magic)
        .map_err(|e| kernel_error(kernel, e))?;
    let is_elf = magic == *b"\x7fELF";
    let mut header = None;
    let (entry, kernel_end, initrd_max) = if is_elf {
        let r = Elf::load(mem, None, &mut file, Some(GuestAddress(HIMEM_ADDR)))
            .map_err(|e| kernel_error(kernel, e))?;
        let entry = match r.pvh_boot_cap {
            PvhBootCapability::PvhEntryPresent(addr) => Entry::Pvh(addr.0),
            _ => Entry::Linux64(r.kernel_load.0),
        };
        (entry, r.kernel_end, u64::from(u32::MAX))
    } else {
        let r = BzImage::load(mem, None, &mut file, Some(GuestAddress(HIMEM_ADDR)))
            .map_err(|e| kernel_error(kernel, e))?;
        let max = r.setup_header.map_or(0x37ff_ffff, |h| {
            let m = h.initrd_addr_max;
            u64::from(m)
        });
        header = Some(read_setup_header(&mut file).map_err(|e| kernel_error(kernel, e))?);
        (
            Entry::Linux64(r.kernel_load.0 + BZIMAGE_64BIT_ENTRY),
            r.kernel_end,
            max,
        )
    };

    let initramfs = match initramfs {
        Some(path) => Some(load_initramfs(mem, path, kernel_end, initrd_max)?),
        None => None,
    };
    let mut line = cmdline.as_bytes().to_vec();
    if line.len() >= CMDLINE_MAX_LEN {
        return Err(Error::Cmdline(format!(
            "{} bytes, limit {CMDLINE_MAX_LEN}",
            line.len()
        )));
    }
    line.push(0);
    write(mem, CMDLINE_ADDR, &line)?;
    let map = e820::map(mem);
    match entry {
        Entry::Pvh(_) => write(
            mem,
            PVH_INFO_ADDR,
            &pvh::build(PVH_INFO_ADDR, CMDLINE_ADDR, initramfs, &map),
        )?,
        _ => {
            let page = zero_page::build(&zero_page::Params {
                setup_header: header.as_deref(),
                cmdline: (CMDLINE_ADDR, cmdline.len() as u32),
                initramfs,
                e820: &map,
            });
            write(mem, ZERO_PAGE_ADDR, &page[..])?;
        }
    }
    write_mptable(mem, cpus)?;
    Ok(Loaded { entry, initramfs })
}

/// Writes the MP table for `cpus` vCPUs.
pub fn write_mptable(mem: &GuestMemory, cpus: u8) -> Result<()> {
    if cpus == 0 || cpus > mptable::MAX_CPUS {
        return Err(Error::Config(format!(
            "1..={} vCPUs, not {cpus}",
            mptable::MAX_CPUS
        )));
    }
    write(mem, mptable::ADDR, &mptable::build(cpus))
}

/// Writes `bytes` at `addr`, failing if it does not fit in guest RAM.
pub fn write(mem: &GuestMemory, addr: u64, bytes: &[u8]) -> Result<()> {
    mem.write_slice(bytes, GuestAddress(addr))
        .map_err(|e| Error::Memory(format!("writing at {addr:#x}: {e}")))
}

fn read_setup_header(file: &mut File) -> std::io::Result<Vec<u8>> {
    let mut header = vec![0u8; MAX_SETUP_HEADER];
    file.seek(SeekFrom::Start(zero_page::SETUP_HEADER_OFFSET as u64))?;
    file.read_exact(&mut header)?;
    let end = 0x202 + usize::from(header[0x201 - zero_page::SETUP_HEADER_OFFSET]);
    header.truncate(end - zero_page::SETUP_HEADER_OFFSET);
    Ok(header)
}

/// Places the initramfs as high as the kernel allows in low RAM, above the kernel.
fn load_initramfs(
    mem: &GuestMemory,
    path: &Path,
    kernel_end: u64,
    max_addr: u64,
) -> Result<(u64, u64)> {
    let fail = |reason: String| Error::Initramfs {
        path: path.to_owned(),
        reason,
    };
    let mut file = File::open(path).map_err(|e| fail(e.to_string()))?;
    let size = file.metadata().map_err(|e| fail(e.to_string()))?.len();
    let limit = memory::low_end(mem).min(max_addr.saturating_add(1));
    let addr = limit.checked_sub(size).map(|a| a & !(INITRAMFS_ALIGN - 1));
    let Some(addr) = addr.filter(|a| *a >= kernel_end) else {
        return Err(fail(format!(
            "{size} bytes do not fit between the kernel's end ({kernel_end:#x}) and {limit:#x}: give the VM more memory"
        )));
    };
    mem.read_exact_volatile_from(GuestAddress(addr), &mut file, size as usize)
        .map_err(|e| fail(e.to_string()))?;
    Ok((addr, size))
}
