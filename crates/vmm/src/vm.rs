//! The KVM VM: guest memory slots, the in-kernel irqchip (PIC, IOAPIC, LAPICs) and PIT,
//! irqfds and ioeventfds.

use kvm_bindings::{KVM_PIT_SPEAKER_DUMMY, kvm_pit_config, kvm_userspace_memory_region};
use kvm_ioctls::{IoEventAddress, Kvm, VmFd};
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};
use vmm_sys_util::eventfd::EventFd;

use crate::error::{Error, Result};
use crate::layout::KVM_TSS_ADDR;
use crate::memory::GuestMemory;

/// Opens /dev/kvm and creates a VM with `mem` as its RAM, an irqchip and a PIT.
pub fn create(mem: &GuestMemory) -> Result<(Kvm, VmFd)> {
    let kvm = Kvm::new().map_err(|e| Error::KvmUnusable(format!("opening /dev/kvm: {e}")))?;
    let vm = kvm.create_vm().map_err(Error::kvm("create_vm"))?;
    for (slot, region) in mem.iter().enumerate() {
        let host = mem
            .get_host_address(region.start_addr())
            .map_err(|e| Error::Memory(e.to_string()))?;
        let region = kvm_userspace_memory_region {
            slot: slot as u32,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: host as u64,
            flags: 0,
        };
        // SAFETY: the host range is a live mapping owned by `mem`, which the caller keeps
        // alive for as long as the VM exists (the Machine holds both), and slots don't overlap.
        unsafe { vm.set_user_memory_region(region) }
            .map_err(Error::kvm("set_user_memory_region"))?;
    }
    vm.set_tss_address(KVM_TSS_ADDR as usize)
        .map_err(Error::kvm("set_tss_address"))?;
    vm.create_irq_chip()
        .map_err(Error::kvm("create_irq_chip"))?;
    let pit = kvm_pit_config {
        flags: KVM_PIT_SPEAKER_DUMMY,
        ..Default::default()
    };
    vm.create_pit2(pit).map_err(Error::kvm("create_pit2"))?;
    Ok((kvm, vm))
}

/// Routes `event` to interrupt line `gsi`.
pub fn register_irq(vm: &VmFd, event: &EventFd, gsi: u32) -> Result<()> {
    vm.register_irqfd(event, gsi)
        .map_err(Error::kvm("register_irqfd"))
}

/// Signals `event` when the guest writes the 32-bit value `value` at MMIO address `addr`,
/// without leaving the kernel.
pub fn register_notify(vm: &VmFd, event: &EventFd, addr: u64, value: u32) -> Result<()> {
    vm.register_ioevent(event, &IoEventAddress::Mmio(addr), value)
        .map_err(Error::kvm("register_ioevent"))
}
