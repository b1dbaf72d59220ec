//! The guest-physical memory map and the fixed I/O resources of a boxlite VM (x86_64).
//!
//! ```text
//! 0x0000_0500  GDT, then IDT (0x520)          0x0000_6000  PVH start info + memory map
//! 0x0000_7000  zero page (boot_params)        0x0000_8ff0  boot stack top
//! 0x0000_9000  PML4, PDPT (0xa000), 4 PDs (0xb000..0xf000): identity map of the low 4 GiB
//! 0x0002_0000  kernel command line            0x0009_fc00  MP table (EBDA)
//! 0x0010_0000  kernel (bzImage; vmlinux loads at its own physical address)
//! …            initramfs at the top of low RAM
//! 0xd000_0000  MMIO gap: virtio-mmio devices, 4 KiB apart; IOAPIC 0xfec0_0000, LAPIC 0xfee0_0000
//! 0x1_0000_0000  RAM above the gap, when the VM has more than 3.25 GiB
//! ```

/// Global descriptor table used for the first instructions.
pub const GDT_ADDR: u64 = 0x500;
/// An empty interrupt descriptor table: no interrupt may arrive before the kernel sets its own.
pub const IDT_ADDR: u64 = 0x520;
/// PVH `hvm_start_info`, followed by its module list and memory map.
pub const PVH_INFO_ADDR: u64 = 0x6000;
/// The Linux zero page (`struct boot_params`).
pub const ZERO_PAGE_ADDR: u64 = 0x7000;
/// Initial stack pointer for the 64-bit boot protocol.
pub const BOOT_STACK_ADDR: u64 = 0x8ff0;
/// Page map level 4 of the boot identity map.
pub const PML4_ADDR: u64 = 0x9000;
/// Page directory pointer table of the boot identity map.
pub const PDPT_ADDR: u64 = 0xa000;
/// First of four page directories (2 MiB pages) mapping 0..4 GiB.
pub const PD_ADDR: u64 = 0xb000;
/// Where the kernel command line is written.
pub const CMDLINE_ADDR: u64 = 0x20000;
/// x86 Linux's `COMMAND_LINE_SIZE`: the kernel truncates anything longer.
pub const CMDLINE_MAX_LEN: usize = 2048;
/// Start of the extended BIOS data area, where Linux looks for the MP table.
pub const EBDA_ADDR: u64 = 0x9fc00;
/// Start of the legacy VGA/BIOS hole, never RAM.
pub const LEGACY_HOLE_ADDR: u64 = 0xa0000;
/// Where memory above the legacy hole starts; bzImage kernels load here.
pub const HIMEM_ADDR: u64 = 0x10_0000;
/// Start of the 32-bit MMIO gap (768 MiB below 4 GiB, as in Firecracker).
pub const MMIO_GAP_START: u64 = 0xd000_0000;
/// End of the 32-bit MMIO gap.
pub const MMIO_GAP_END: u64 = 0x1_0000_0000;
/// First virtio-mmio device window.
pub const VIRTIO_MMIO_BASE: u64 = MMIO_GAP_START;
/// Size of one virtio-mmio window.
pub const VIRTIO_MMIO_SIZE: u64 = 0x1000;
/// IRQ of the first virtio-mmio device; the next ones follow. 5 is free on a PC.
pub const VIRTIO_FIRST_IRQ: u32 = 5;
/// The most virtio-mmio devices: IRQs 5..=23 on the IOAPIC, skipping none.
pub const MAX_VIRTIO_DEVICES: usize = 19;
/// IOAPIC registers (fixed by the in-kernel irqchip).
pub const IOAPIC_ADDR: u64 = 0xfec0_0000;
/// Local APIC registers (fixed by the in-kernel irqchip).
pub const APIC_ADDR: u64 = 0xfee0_0000;
/// KVM's task state segment pages (Intel VMX needs three pages below 4 GiB outside RAM).
pub const KVM_TSS_ADDR: u64 = 0xfffb_d000;
/// COM1.
pub const SERIAL_PORT: u16 = 0x3f8;
/// COM1's IRQ.
pub const SERIAL_IRQ: u32 = 4;
/// The i8042 keyboard controller: data port; the command/status port is 0x64.
pub const I8042_PORT: u16 = 0x60;
/// The boot timer: the guest agent writes one byte here when ready (an otherwise unused port).
pub const BOOT_TIMER_PORT: u16 = 0x440;
/// Number of IOAPIC pins, hence of IRQs the MP table describes.
pub const IOAPIC_PINS: u32 = 24;

/// The IRQ of the `index`th virtio-mmio device.
pub fn virtio_irq(index: usize) -> u32 {
    VIRTIO_FIRST_IRQ + index as u32
}

/// The MMIO window base of the `index`th virtio-mmio device.
pub fn virtio_base(index: usize) -> u64 {
    VIRTIO_MMIO_BASE + index as u64 * VIRTIO_MMIO_SIZE
}
