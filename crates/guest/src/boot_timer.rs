//! Tells a boxlite VMM (`boxlite-vmm`) that the agent is ready: one byte written to I/O port
//! 0x440, which its boot-timer device timestamps to the microsecond. Under QEMU, and on any
//! machine without the device, the port is unassigned and the write does nothing.

/// The boot-timer port (`vmm::layout::BOOT_TIMER_PORT`).
#[cfg(target_arch = "x86_64")]
const PORT: u16 = 0x440;

/// Pokes the boot timer once. Needs CAP_SYS_RAWIO (PID 1 has it); without it, does nothing.
#[cfg(target_arch = "x86_64")]
pub fn signal() {
    // SAFETY: ioperm only changes this thread's I/O permission bitmap; it touches no memory.
    let granted = unsafe {
        libc::syscall(
            libc::SYS_ioperm,
            libc::c_ulong::from(PORT),
            1 as libc::c_ulong,
            1 as libc::c_int,
        )
    };
    if granted != 0 {
        return;
    }
    // SAFETY: ioperm above granted access to exactly this port, so `out` cannot fault; the
    // instruction reads two registers and writes no memory, stack or flags.
    unsafe {
        std::arch::asm!("out dx, al", in("dx") PORT, in("al") 1u8, options(nomem, nostack, preserves_flags));
    }
    // SAFETY: as above: it only drops the permission again.
    unsafe {
        libc::syscall(
            libc::SYS_ioperm,
            libc::c_ulong::from(PORT),
            1 as libc::c_ulong,
            0 as libc::c_int,
        )
    };
}

/// No boot timer outside x86_64.
#[cfg(not(target_arch = "x86_64"))]
pub fn signal() {}
