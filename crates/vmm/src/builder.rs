//! Wiring: memory, the KVM VM, devices on their buses with irqfds and ioeventfds, the kernel
//! command line, the kernel, and the vCPUs.

use std::fs::OpenOptions;
use std::sync::{Arc, Mutex};

use kvm_bindings::KVM_MAX_CPUID_ENTRIES;
use kvm_ioctls::VmFd;

use crate::boot::cmdline::{self, MmioDevice};
use crate::boot::loader;
use crate::bus::Bus;
use crate::config::{Boot, MAX_CPUS, MAX_DISKS, MAX_FS_DEVICES, VmConfig};
use crate::cpu::vcpu;
use crate::devices::irq::IrqLine;
use crate::devices::legacy::boot_timer::{self, BootTime, BootTimer};
use crate::devices::legacy::i8042::{self, I8042};
use crate::devices::legacy::serial::{self, Serial};
use crate::devices::virtio::block::Block;
use crate::devices::virtio::console::Console;
use crate::devices::virtio::fs::Fs;
use crate::devices::virtio::mmio::{MmioTransport, reg};
use crate::devices::virtio::net::Net;
use crate::devices::virtio::rng::Rng;
use crate::devices::virtio::{Interrupt, VirtioDevice};
use crate::error::{Error, Result};
use crate::event_loop::{EventLoop, SharedTransport};
use crate::exit::ExitState;
use crate::layout::{
    self, BOOT_TIMER_PORT, I8042_PORT, MAX_VIRTIO_DEVICES, SERIAL_IRQ, SERIAL_PORT,
    VIRTIO_MMIO_SIZE,
};
use crate::machine::Machine;
use crate::memory::{self, GuestMemory};
use crate::vm;

/// Builds the VM described by `config`, ready to run.
pub fn build(config: VmConfig) -> Result<Machine> {
    if config.cpus == 0 || config.cpus > MAX_CPUS {
        return Err(Error::Config(format!(
            "vCPUs must be 1..={MAX_CPUS}, not {}",
            config.cpus
        )));
    }
    check_device_count(&config)?;
    // Shared memory only where a daemon must map it (see `memory`).
    let mem = if config.fs.is_empty() {
        memory::create(config.memory_mib)?
    } else {
        memory::create_shared(config.memory_mib)?
    };
    let (kvm, vm) = vm::create(&mem)?;
    let exit = Arc::new(ExitState::default());
    let boot_time = BootTime::default();

    let mut io = Bus::default();
    let serial = Serial::new(
        IrqLine::new(SERIAL_IRQ)?,
        config.serial.unwrap_or_else(|| Box::new(std::io::sink())),
    );
    vm::register_irq(&vm, &serial.irq().event, SERIAL_IRQ)?;
    io.insert(
        u64::from(SERIAL_PORT),
        serial::PORT_COUNT,
        Arc::new(Mutex::new(serial)),
    )?;
    io.insert(
        u64::from(I8042_PORT),
        i8042::PORT_COUNT,
        Arc::new(Mutex::new(I8042::new(exit.clone()))),
    )?;
    let stop = config.stop_on_boot.then(|| exit.clone());
    let timer = BootTimer::new(config.started, boot_time.clone(), stop);
    io.insert(
        u64::from(BOOT_TIMER_PORT),
        boot_timer::PORT_COUNT,
        Arc::new(Mutex::new(timer)),
    )?;

    let mut devices: Vec<Box<dyn VirtioDevice>> = Vec::new();
    for (i, disk) in config.disks.iter().enumerate() {
        let file = OpenOptions::new()
            .read(true)
            .write(!disk.read_only)
            .open(&disk.path)
            .map_err(Error::io("opening disk", &disk.path))?;
        let name = format!("boxlite-vd{}", (b'a' + i as u8) as char);
        devices.push(Box::new(Block::new(file, disk.read_only, &name)?));
    }
    if let Some(backend) = config.console {
        devices.push(Box::new(Console::new(backend)));
    }
    if let Some((stream, mac)) = config.net {
        devices.push(Box::new(Net::new(stream, mac)?));
    }
    if config.rng {
        devices.push(Box::new(Rng::new()));
    }
    // Last: adding file systems leaves every other device's window and IRQ where it was.
    for fs in config.fs {
        devices.push(Box::new(Fs::new(fs.socket, &fs.tag)?));
    }
    let mut mmio = Bus::default();
    let mut transports = Vec::new();
    let mut listed = Vec::new();
    for (i, device) in devices.into_iter().enumerate() {
        let (transport, entry) = attach(&vm, &mem, &mut mmio, i, device)?;
        transports.push(transport);
        listed.push(entry);
    }

    let cpus = config.cpus;
    let (entry, start_all) = match &config.boot {
        Boot::Linux {
            kernel,
            initramfs,
            cmdline,
        } => {
            let line = cmdline::assemble(cmdline, &listed)?;
            let loaded = loader::load_linux(&mem, kernel, initramfs.as_deref(), &line, cpus)?;
            (loaded.entry, false)
        }
        Boot::Program { code, addr, entry } => {
            loader::write(&mem, *addr, code)?;
            loader::write_mptable(&mem, cpus)?;
            (*entry, true)
        }
    };
    let supported = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(Error::kvm("get_supported_cpuid"))?;
    let vcpus = (0..cpus)
        .map(|id| vcpu::create(&vm, &supported, &mem, id, cpus, entry, start_all))
        .collect::<Result<Vec<_>>>()?;
    let event_loop = EventLoop::new(transports.clone())?;
    Ok(Machine::new(
        kvm,
        vm,
        mem,
        vcpus,
        io,
        mmio,
        exit,
        event_loop,
        transports,
        boot_time,
        config.started,
    ))
}

/// Every virtio device takes one of the MMIO windows and IRQs; tags must tell file systems
/// apart, since the guest mounts them by tag.
fn check_device_count(config: &VmConfig) -> Result<()> {
    if config.disks.len() > MAX_DISKS {
        return Err(Error::Config(format!("at most {MAX_DISKS} disks")));
    }
    if config.fs.len() > MAX_FS_DEVICES {
        return Err(Error::Config(format!(
            "at most {MAX_FS_DEVICES} shared file systems"
        )));
    }
    let others = usize::from(config.console.is_some())
        + usize::from(config.net.is_some())
        + usize::from(config.rng);
    let total = config.disks.len() + config.fs.len() + others;
    if total > MAX_VIRTIO_DEVICES {
        return Err(Error::Config(format!(
            "at most {MAX_VIRTIO_DEVICES} virtio devices, not {total} ({} disks, {} shared \
             file systems, {others} console/network/rng)",
            config.disks.len(),
            config.fs.len()
        )));
    }
    for (i, fs) in config.fs.iter().enumerate() {
        if config.fs[..i].iter().any(|other| other.tag == fs.tag) {
            return Err(Error::Config(format!(
                "two shared file systems have the tag {:?}",
                fs.tag
            )));
        }
    }
    Ok(())
}

/// Puts `device` behind virtio-mmio window `index`, with its irqfd and one ioeventfd per queue.
fn attach(
    vm: &VmFd,
    mem: &GuestMemory,
    mmio: &mut Bus,
    index: usize,
    device: Box<dyn VirtioDevice>,
) -> Result<(SharedTransport, MmioDevice)> {
    let base = layout::virtio_base(index);
    let irq = layout::virtio_irq(index);
    let interrupt = Arc::new(Interrupt::new(IrqLine::new(irq)?));
    vm::register_irq(vm, &interrupt.line().event, irq)?;
    let transport = MmioTransport::new(device, mem.clone(), interrupt)?;
    for q in 0..transport.queue_count() {
        if let Some(event) = transport.queue_event(q) {
            vm::register_notify(vm, event, base + reg::QUEUE_NOTIFY, q as u32)?;
        }
    }
    let transport = Arc::new(Mutex::new(transport));
    mmio.insert(base, VIRTIO_MMIO_SIZE, transport.clone())?;
    Ok((
        transport,
        MmioDevice {
            base,
            size: VIRTIO_MMIO_SIZE,
            irq,
        },
    ))
}
