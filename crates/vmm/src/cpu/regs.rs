//! A vCPU's initial state: MSRs, FPU, LAPIC, general and segment registers, and the GDT and
//! identity-mapped page tables the boot code runs on.

use kvm_bindings::{Msrs, kvm_fpu, kvm_msr_entry, kvm_regs, kvm_segment, kvm_sregs};
use kvm_ioctls::VcpuFd;

use crate::boot::Entry;
use crate::boot::loader::write;
use crate::error::{Error, Result};
use crate::layout::{
    BOOT_STACK_ADDR, GDT_ADDR, IDT_ADDR, PD_ADDR, PDPT_ADDR, PML4_ADDR, PVH_INFO_ADDR,
    ZERO_PAGE_ADDR,
};
use crate::memory::GuestMemory;

const CR0_PE: u64 = 1;
const CR0_ET: u64 = 1 << 4;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
/// Page-table entry: present and writable; with `PAGE_HUGE` a 2 MiB page.
const PAGE_PRESENT_RW: u64 = 0x3;
const PAGE_HUGE: u64 = 0x80;
/// Page directories in the identity map: 4 × 1 GiB covers RAM below the gap and the gap.
const IDENTITY_PDS: u64 = 4;

/// GDT entries: null, code, data, TSS. The code entry is 64-bit (L) or 32-bit (D) by mode.
fn gdt(long: bool) -> [u64; 4] {
    let code = if long {
        0x00af_9b00_0000_ffff
    } else {
        0x00cf_9b00_0000_ffff
    };
    [0, code, 0x00cf_9300_0000_ffff, 0x008f_8b00_0000_ffff]
}

/// Decodes a GDT entry into KVM's segment form.
fn segment(index: u16, entry: u64) -> kvm_segment {
    let limit = ((entry & 0xffff) | ((entry >> 32) & 0xf_0000)) as u32;
    let g = ((entry >> 55) & 1) as u8;
    kvm_segment {
        base: ((entry >> 16) & 0xff_ffff) | (((entry >> 56) & 0xff) << 24),
        limit: if g == 1 { (limit << 12) | 0xfff } else { limit },
        selector: index * 8,
        type_: ((entry >> 40) & 0xf) as u8,
        present: ((entry >> 47) & 1) as u8,
        dpl: ((entry >> 45) & 3) as u8,
        db: ((entry >> 54) & 1) as u8,
        s: ((entry >> 44) & 1) as u8,
        l: ((entry >> 53) & 1) as u8,
        g,
        avl: ((entry >> 52) & 1) as u8,
        unusable: 0,
        padding: 0,
    }
}

/// The identity map of the low 4 GiB with 2 MiB pages.
pub fn page_tables() -> Vec<u8> {
    let mut out = vec![0u8; (PD_ADDR + IDENTITY_PDS * 0x1000 - PML4_ADDR) as usize];
    let mut put = |addr: u64, v: u64| {
        let at = (addr - PML4_ADDR) as usize;
        out[at..at + 8].copy_from_slice(&v.to_le_bytes());
    };
    put(PML4_ADDR, PDPT_ADDR | PAGE_PRESENT_RW);
    for pd in 0..IDENTITY_PDS {
        put(
            PDPT_ADDR + pd * 8,
            (PD_ADDR + pd * 0x1000) | PAGE_PRESENT_RW,
        );
        for i in 0..512 {
            put(
                PD_ADDR + pd * 0x1000 + i * 8,
                ((pd * 512 + i) << 21) | PAGE_PRESENT_RW | PAGE_HUGE,
            );
        }
    }
    out
}

/// Writes the boot GDT, IDT and (for long mode) page tables, and sets the segment registers.
pub fn setup_sregs(mem: &GuestMemory, vcpu: &VcpuFd, entry: Entry) -> Result<()> {
    let mut sregs: kvm_sregs = vcpu.get_sregs().map_err(Error::kvm("get_sregs"))?;
    match entry {
        Entry::Real(_) => {
            for seg in [
                &mut sregs.cs,
                &mut sregs.ds,
                &mut sregs.es,
                &mut sregs.fs,
                &mut sregs.gs,
                &mut sregs.ss,
            ] {
                seg.base = 0;
                seg.selector = 0;
            }
        }
        Entry::Pvh(_) | Entry::Linux64(_) | Entry::Long(_) => {
            let long = !matches!(entry, Entry::Pvh(_));
            let table = gdt(long);
            let bytes: Vec<u8> = table.iter().flat_map(|e| e.to_le_bytes()).collect();
            write(mem, GDT_ADDR, &bytes)?;
            write(mem, IDT_ADDR, &0u64.to_le_bytes())?;
            sregs.gdt.base = GDT_ADDR;
            sregs.gdt.limit = (bytes.len() - 1) as u16;
            sregs.idt.base = IDT_ADDR;
            sregs.idt.limit = 7;
            let code = segment(1, table[1]);
            let data = segment(2, table[2]);
            sregs.cs = code;
            sregs.ds = data;
            sregs.es = data;
            sregs.fs = data;
            sregs.gs = data;
            sregs.ss = data;
            sregs.tr = segment(3, table[3]);
            if long {
                write(mem, PML4_ADDR, &page_tables())?;
                sregs.cr3 = PML4_ADDR;
                sregs.cr4 |= CR4_PAE;
                sregs.cr0 |= CR0_PE | CR0_PG | CR0_ET;
                sregs.efer |= EFER_LME | EFER_LMA;
            } else {
                sregs.cr0 = CR0_PE | CR0_ET;
                sregs.cr4 = 0;
                sregs.efer = 0;
            }
        }
    }
    vcpu.set_sregs(&sregs).map_err(Error::kvm("set_sregs"))
}

/// Sets the general registers for the boot protocol of `entry`.
pub fn setup_regs(vcpu: &VcpuFd, entry: Entry) -> Result<()> {
    let mut regs = kvm_regs {
        rflags: 0x2,
        ..Default::default()
    };
    match entry {
        Entry::Pvh(rip) => {
            regs.rip = rip;
            regs.rbx = PVH_INFO_ADDR;
        }
        Entry::Linux64(rip) => {
            regs.rip = rip;
            regs.rsp = BOOT_STACK_ADDR;
            regs.rbp = BOOT_STACK_ADDR;
            regs.rsi = ZERO_PAGE_ADDR;
        }
        Entry::Real(ip) | Entry::Long(ip) => {
            regs.rip = ip;
            regs.rsp = BOOT_STACK_ADDR;
        }
    }
    vcpu.set_regs(&regs).map_err(Error::kvm("set_regs"))
}

/// x87 control word and SSE control/status as after FNINIT and a reset.
pub fn setup_fpu(vcpu: &VcpuFd) -> Result<()> {
    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    vcpu.set_fpu(&fpu).map_err(Error::kvm("set_fpu"))
}

/// The MSRs a kernel expects a firmware to have initialised.
pub fn boot_msrs() -> Vec<(u32, u64)> {
    vec![
        (0x174, 0),             // IA32_SYSENTER_CS
        (0x175, 0),             // IA32_SYSENTER_ESP
        (0x176, 0),             // IA32_SYSENTER_EIP
        (0xc000_0081, 0),       // STAR
        (0xc000_0082, 0),       // LSTAR
        (0xc000_0083, 0),       // CSTAR
        (0xc000_0084, 0),       // SYSCALL_MASK
        (0xc000_0102, 0),       // KERNEL_GS_BASE
        (0x10, 0),              // TSC
        (0x1a0, 1),             // MISC_ENABLE: fast strings
        (0x2ff, (1 << 11) | 6), // MTRRdefType: enabled, write-back
    ]
}

/// Sets [`boot_msrs`].
pub fn setup_msrs(vcpu: &VcpuFd) -> Result<()> {
    let entries: Vec<kvm_msr_entry> = boot_msrs()
        .into_iter()
        .map(|(index, data)| kvm_msr_entry {
            index,
            data,
            ..Default::default()
        })
        .collect();
    let msrs =
        Msrs::from_entries(&entries).map_err(|e| Error::Config(format!("MSR list: {e:?}")))?;
    let set = vcpu.set_msrs(&msrs).map_err(Error::kvm("set_msrs"))?;
    if set != entries.len() {
        let failed = entries.get(set).map_or(0, |e| e.index);
        return Err(Error::KvmUnusable(format!(
            "KVM refused to set MSR {failed:#x}"
        )));
    }
    Ok(())
}

/// LAPIC: LINT0 delivers ExtINT (the PIC), LINT1 NMI, as the MP table says.
pub fn setup_lapic(vcpu: &VcpuFd) -> Result<()> {
    const LVT_LINT0: usize = 0x350;
    const LVT_LINT1: usize = 0x360;
    const DELIVERY_EXTINT: u32 = 7;
    const DELIVERY_NMI: u32 = 4;
    let mut lapic = vcpu.get_lapic().map_err(Error::kvm("get_lapic"))?;
    for (reg, mode) in [(LVT_LINT0, DELIVERY_EXTINT), (LVT_LINT1, DELIVERY_NMI)] {
        let bytes: [u8; 4] = std::array::from_fn(|i| lapic.regs[reg + i] as u8);
        let value = (u32::from_le_bytes(bytes) & !0x700) | (mode << 8);
        for (i, b) in value.to_le_bytes().iter().enumerate() {
            lapic.regs[reg + i] = *b as std::ffi::c_char;
        }
    }
    vcpu.set_lapic(&lapic).map_err(Error::kvm("set_lapic"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_decode() {
        let code = segment(1, gdt(true)[1]);
        assert_eq!(
            (
                code.selector,
                code.type_,
                code.l,
                code.db,
                code.g,
                code.present
            ),
            (8, 0xb, 1, 0, 1, 1)
        );
        assert_eq!((code.base, code.limit), (0, 0xffff_ffff));
        let code32 = segment(1, gdt(false)[1]);
        assert_eq!((code32.l, code32.db), (0, 1));
        let data = segment(2, gdt(true)[2]);
        assert_eq!((data.selector, data.type_, data.s), (16, 3, 1));
        let tss = segment(3, gdt(true)[3]);
        assert_eq!((tss.type_, tss.s), (0xb, 0));
    }

    #[test]
    fn identity_map_covers_4g() {
        let t = page_tables();
        let at = |addr: u64| {
            u64::from_le_bytes(t[(addr - PML4_ADDR) as usize..][..8].try_into().unwrap())
        };
        assert_eq!(at(PML4_ADDR), PDPT_ADDR | 3);
        assert_eq!(at(PDPT_ADDR + 24), (PD_ADDR + 0x3000) | 3);
        // The last 2 MiB page below 4 GiB maps itself.
        assert_eq!(at(PD_ADDR + 0x3000 + 511 * 8), 0xffe0_0000 | 0x83);
        assert!(PML4_ADDR + t.len() as u64 <= 0x10000);
    }
}
