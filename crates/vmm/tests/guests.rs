//! Tiny guest programs on the real /dev/kvm (hand-assembled: real mode, or 64-bit with our
//! page tables): the run loop, the port I/O and MMIO buses, the i8042 reset, triple faults
//! and several vCPUs. They run on the paravirtual kvm_pvm too; without /dev/kvm they are
//! skipped with a reason.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use vmm::boot::Entry;
use vmm::builder;
use vmm::config::{Boot, VmConfig};
use vmm::devices::legacy::serial::SharedBuffer;
use vmm::exit::ExitReason;

const DEADLINE: Option<Duration> = Some(Duration::from_secs(20));

fn kvm_present() -> bool {
    let ok = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    if !ok {
        eprintln!("skipped: /dev/kvm cannot be opened");
    }
    ok
}

/// Set in the child process of [`every_guest_runs_under_the_seccomp_filters`].
const SECCOMP: &str = "VMM_GUESTS_SECCOMP";

fn seccomp_on() -> bool {
    std::env::var_os(SECCOMP).is_some()
}

/// Every test of this file again, in a child process whose VMs install boxlite-vmm's
/// seccomp filters (`Machine::run`'s thread gets the main thread's filter):
/// a system call missing from a list would kill the child with SIGSYS.
#[test]
fn every_guest_runs_under_the_seccomp_filters() {
    if seccomp_on() || !kvm_present() {
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--test-threads=1", "--skip", "every_guest_runs_under"])
        .env(SECCOMP, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("test result: ok"), "{stdout}");
}

fn run(cpus: u8, code: Vec<u8>, entry: Entry, rng: bool) -> (ExitReason, String) {
    let out = SharedBuffer::default();
    let addr = match entry {
        Entry::Real(a) | Entry::Long(a) | Entry::Pvh(a) | Entry::Linux64(a) => a,
    };
    let mut config = VmConfig::new(cpus, 16, Boot::Program { code, addr, entry });
    config.serial = Some(Box::new(out.clone()));
    config.rng = rng;
    let mut machine = builder::build(config).unwrap();
    let outcome = if seccomp_on() {
        machine.set_seccomp(vmm::seccomp::Filters::build().unwrap());
        // On a thread of its own, as boxlite-vmm's main thread: the filter stays with it,
        // and the test's own checks run unfiltered.
        std::thread::spawn(move || machine.run(DEADLINE))
            .join()
            .unwrap()
    } else {
        machine.run(DEADLINE)
    };
    assert!(outcome.setup.is_some(), "the vCPU entered KVM_RUN");
    (
        outcome.reason,
        String::from_utf8_lossy(&out.contents()).into_owned(),
    )
}

#[test]
fn real_mode_serial_then_i8042_reset() {
    if !kvm_present() {
        return;
    }
    let code = vec![
        0xba, 0xf8, 0x03, // mov dx, 0x3f8
        0xb0, b'H', 0xee, // mov al, 'H'; out dx, al
        0xb0, b'i', 0xee, // mov al, 'i'; out dx, al
        0xb0, 0xfe, 0xe6, 0x64, // mov al, 0xfe; out 0x64, al
        0xf4, // hlt (not reached)
    ];
    let (reason, serial) = run(1, code, Entry::Real(0x1000), false);
    assert_eq!(reason, ExitReason::Reset);
    assert_eq!(serial, "Hi");
}

#[test]
fn long_mode_reads_a_virtio_mmio_register() {
    if !kvm_present() {
        return;
    }
    let code = vec![
        0x48, 0xb8, 0x00, 0x00, 0x00, 0xd0, 0, 0, 0, 0, // mov rax, 0xd0000000
        0x8b, 0x00, // mov eax, [rax]: the magic "virt"
        0x66, 0xba, 0xf8, 0x03, // mov dx, 0x3f8
        0xee, // out dx, al  ('v')
        0xc1, 0xe8, 0x08, // shr eax, 8
        0xee, // out dx, al  ('i')
        0xb0, 0xfe, 0xe6, 0x64, // reset
        0xf4,
    ];
    let (reason, serial) = run(1, code, Entry::Long(0x10000), true);
    assert_eq!(reason, ExitReason::Reset);
    assert_eq!(serial, "vi");
}

#[test]
fn triple_fault_ends_the_vm() {
    if !kvm_present() {
        return;
    }
    // int3 with an IDT of one null entry: #GP, then #DF, then shutdown.
    let (reason, _) = run(1, vec![0xcc, 0xf4], Entry::Long(0x10000), false);
    if std::path::Path::new("/sys/module/kvm_pvm").exists()
        && matches!(reason, ExitReason::InternalError(_))
    {
        // kvm_pvm cannot emulate the exception delivery; it still ends the VM with a reason.
        eprintln!("kvm_pvm: {reason}");
        return;
    }
    assert_eq!(reason, ExitReason::TripleFault);
}

#[test]
fn several_vcpus_run_at_once() {
    if !kvm_present() {
        return;
    }
    const CPUS: u8 = 4;
    let code = vec![
        0x66, 0xb8, 0x01, 0x00, 0x00, 0x00, // mov eax, 1
        0x0f, 0xa2, // cpuid
        0x66, 0xc1, 0xeb, 0x18, // shr ebx, 24: the APIC ID
        0x88, 0xd8, // mov al, bl
        0x04, b'0', // add al, '0'
        0xba, 0xf8, 0x03, 0xee, // out to COM1
        0xf0, 0xfe, 0x06, 0x00, 0x20, // lock inc byte [0x2000]
        0x80, 0x3e, 0x00, 0x20, CPUS, // wait: cmp byte [0x2000], CPUS
        0x75, 0xf9, // jne wait
        0x84, 0xdb, // test bl, bl
        0x75, 0x04, // jnz halt
        0xb0, 0xfe, 0xe6, 0x64, // vCPU 0: reset
        0xf4, 0xeb, 0xfd, // halt: hlt; jmp halt
    ];
    let (reason, serial) = run(CPUS, code, Entry::Real(0x1000), false);
    assert_eq!(reason, ExitReason::Reset);
    let mut ids: Vec<char> = serial.chars().collect();
    ids.sort();
    assert_eq!(
        ids,
        vec!['0', '1', '2', '3'],
        "every vCPU ran, each with its own APIC ID"
    );
}

#[test]
fn a_spinning_guest_is_stopped_by_the_host() {
    if !kvm_present() {
        return;
    }
    let out = SharedBuffer::default();
    let mut config = VmConfig::new(
        2,
        16,
        Boot::Program {
            code: vec![0xeb, 0xfe],
            addr: 0x1000,
            entry: Entry::Real(0x1000),
        },
    );
    config.serial = Some(Box::new(out));
    let machine = builder::build(config).unwrap();
    let outcome = machine.run(Some(Duration::from_millis(200)));
    assert_eq!(outcome.reason, ExitReason::Stopped);
}
