//! Creating a vCPU and running it on its own thread.

use std::sync::OnceLock;
use std::time::Instant;

use kvm_bindings::{CpuId, KVM_MP_STATE_RUNNABLE, kvm_mp_state};
use kvm_ioctls::{VcpuExit, VcpuFd, VmFd};

use super::{cpuid, regs};
use crate::boot::Entry;
use crate::bus::Bus;
use crate::error::{Error, Result};
use crate::exit::{ExitReason, ExitState};
use crate::memory::GuestMemory;

/// Creates vCPU `id` of `cpus` and sets its CPUID, MSRs, FPU and LAPIC. The boot vCPU (0)
/// also gets the registers for `entry`; the others wait for the guest's INIT/SIPI, unless
/// `start_all` (test programs) starts them at `entry` too.
pub fn create(
    vm: &VmFd,
    supported: &CpuId,
    mem: &GuestMemory,
    id: u8,
    cpus: u8,
    entry: Entry,
    start_all: bool,
) -> Result<VcpuFd> {
    let vcpu = vm
        .create_vcpu(u64::from(id))
        .map_err(Error::kvm("create_vcpu"))?;
    let mut entries = supported.as_slice().to_vec();
    cpuid::filter(&mut entries, id, cpus);
    let cpuid =
        CpuId::from_entries(&entries).map_err(|e| Error::Config(format!("CPUID: {e:?}")))?;
    vcpu.set_cpuid2(&cpuid).map_err(Error::kvm("set_cpuid2"))?;
    regs::setup_msrs(&vcpu)?;
    regs::setup_fpu(&vcpu)?;
    regs::setup_lapic(&vcpu)?;
    if id == 0 || start_all {
        regs::setup_sregs(mem, &vcpu, entry)?;
        regs::setup_regs(&vcpu, entry)?;
    }
    if id != 0 && start_all {
        vcpu.set_mp_state(kvm_mp_state {
            mp_state: KVM_MP_STATE_RUNNABLE,
        })
        .map_err(Error::kvm("set_mp_state"))?;
    }
    Ok(vcpu)
}

/// Runs `vcpu` until the VM stops, dispatching port I/O and MMIO exits to the buses.
pub fn run(
    mut vcpu: VcpuFd,
    io: &Bus,
    mmio: &Bus,
    exit: &ExitState,
    first_run: &OnceLock<Instant>,
) {
    while !exit.stopping() {
        let _ = first_run.set(Instant::now());
        match vcpu.run() {
            Ok(VcpuExit::IoOut(port, data)) => {
                io.write(u64::from(port), data);
            }
            Ok(VcpuExit::IoIn(port, data)) => {
                io.read(u64::from(port), data);
            }
            Ok(VcpuExit::MmioRead(addr, data)) => {
                mmio.read(addr, data);
            }
            Ok(VcpuExit::MmioWrite(addr, data)) => {
                mmio.write(addr, data);
            }
            // With the in-kernel LAPIC, HLT waits in the kernel; these only mean "run again".
            Ok(VcpuExit::Hlt | VcpuExit::Intr | VcpuExit::IrqWindowOpen) => {}
            Ok(VcpuExit::Shutdown) => exit.stop(ExitReason::TripleFault),
            Ok(VcpuExit::SystemEvent(kind, _)) => exit.stop(ExitReason::SystemEvent(kind)),
            Ok(VcpuExit::InternalError) => {
                let detail = internal_error(&mut vcpu);
                exit.stop(ExitReason::InternalError(detail));
            }
            Ok(VcpuExit::FailEntry(reason, cpu)) => {
                exit.stop(ExitReason::FailEntry(format!(
                    "hardware reason {reason:#x} on cpu {cpu}"
                )));
            }
            Ok(other) => exit.stop(ExitReason::VmmError(format!("unexpected exit {other:?}"))),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {}
            Err(e) => exit.stop(ExitReason::VmmError(format!("KVM_RUN: {e}"))),
        }
    }
}

fn internal_error(vcpu: &mut VcpuFd) -> String {
    let rip = vcpu.get_regs().map(|r| r.rip).unwrap_or_default();
    let run = vcpu.get_kvm_run();
    // SAFETY: the last exit was KVM_EXIT_INTERNAL_ERROR, for which KVM fills the `internal`
    // member of the exit union; reading plain integers from it cannot be invalid.
    let suberror = unsafe { run.__bindgen_anon_1.internal.suberror };
    let what = match suberror {
        1 => "emulation failure",
        2 => "simultaneous exceptions",
        3 => "delivery event",
        _ => "unknown",
    };
    format!("suberror {suberror} ({what}) at rip {rip:#x}")
}
