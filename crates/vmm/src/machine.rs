//! A built VM and its run: one thread per vCPU, one device thread, until the guest (or the
//! host) ends it.

use std::os::unix::thread::JoinHandleExt;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kvm_ioctls::{Kvm, VcpuFd, VmFd};

use crate::bus::Bus;
use crate::devices::legacy::boot_timer::BootTime;
use crate::event_loop::{EventLoop, SharedTransport};
use crate::exit::{ExitReason, ExitState};
use crate::memory::{self, GuestMemory};
use crate::seccomp::{Filters, Thread};

/// How long stopping waits for vCPU threads to leave KVM_RUN before giving up on them.
const STOP_DEADLINE: Duration = Duration::from_secs(5);
/// Pause between kicks of a vCPU thread that has not stopped yet.
const KICK_INTERVAL: Duration = Duration::from_millis(1);

/// How a run ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Why.
    pub reason: ExitReason,
    /// From the VMM's start to the first KVM_RUN.
    pub setup: Option<Duration>,
    /// From the VMM's start to the guest agent's boot-timer write.
    pub boot: Option<Duration>,
}

/// A VM ready to run.
pub struct Machine {
    _kvm: Kvm,
    _vm: VmFd,
    mem: GuestMemory,
    vcpus: Vec<VcpuFd>,
    io: Arc<Bus>,
    mmio: Arc<Bus>,
    exit: Arc<ExitState>,
    event_loop: EventLoop,
    transports: Vec<SharedTransport>,
    boot_time: BootTime,
    started: Instant,
    seccomp: Option<Arc<Filters>>,
}

extern "C" fn kick_handler(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

/// The signal that interrupts KVM_RUN so a vCPU thread sees the stop flag.
fn kick_signal() -> libc::c_int {
    vmm_sys_util::signal::SIGRTMIN()
}

impl Machine {
    /// Assembles a machine (see [`crate::builder::build`]).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        kvm: Kvm,
        vm: VmFd,
        mem: GuestMemory,
        vcpus: Vec<VcpuFd>,
        io: Bus,
        mmio: Bus,
        exit: Arc<ExitState>,
        event_loop: EventLoop,
        transports: Vec<SharedTransport>,
        boot_time: BootTime,
        started: Instant,
    ) -> Machine {
        Machine {
            _kvm: kvm,
            _vm: vm,
            mem,
            vcpus,
            io: Arc::new(io),
            mmio: Arc::new(mmio),
            exit,
            event_loop,
            transports,
            boot_time,
            started,
            seccomp: None,
        }
    }

    /// Has every thread of the run install its seccomp filter first thing (the main thread
    /// once the others are started): from then on a system call outside its thread's list
    /// kills the process.
    pub fn set_seccomp(&mut self, filters: Filters) {
        self.seccomp = Some(Arc::new(filters));
    }

    /// Guest memory.
    pub fn memory(&self) -> &GuestMemory {
        &self.mem
    }

    /// The stop flag: `stop(ExitReason::Stopped)` on it ends a run from another thread.
    pub fn exit_state(&self) -> Arc<ExitState> {
        self.exit.clone()
    }

    /// The virtio transports, in device order.
    pub fn transports(&self) -> &[SharedTransport] {
        &self.transports
    }

    /// The vhost-user sockets of the devices, for [`Filters::build_for`].
    pub fn vhost_user_sockets(&self) -> Vec<std::os::fd::RawFd> {
        self.transports
            .iter()
            .filter_map(|t| {
                t.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .vhost_user_socket()
            })
            .collect()
    }

    /// VMM memory beyond guest RAM: the process's RSS less the guest pages it holds.
    pub fn overhead_bytes(&self) -> u64 {
        memory::process_rss().saturating_sub(memory::resident_bytes(&self.mem))
    }

    /// Runs until the guest resets or fails, or `timeout` passes (then the reason is
    /// [`ExitReason::Stopped`]).
    pub fn run(self, timeout: Option<Duration>) -> Outcome {
        if let Err(e) = vmm_sys_util::signal::register_signal_handler(kick_signal(), kick_handler) {
            return Outcome {
                reason: ExitReason::VmmError(format!("signal handler: {e}")),
                setup: None,
                boot: None,
            };
        }
        let Machine {
            mut event_loop,
            vcpus,
            io,
            mmio,
            exit,
            boot_time,
            started,
            mem,
            seccomp,
            ..
        } = self;
        let stop_devices = event_loop.stopper();
        let devices_exit = exit.clone();
        let devices_seccomp = seccomp.clone();
        let devices = std::thread::Builder::new()
            .name("vmm-devices".into())
            .spawn(move || {
                if !filtered(devices_seccomp.as_deref(), Thread::Devices, &devices_exit) {
                    return;
                }
                if let Err(e) = event_loop.run() {
                    devices_exit.stop(ExitReason::VmmError(format!("device thread: {e}")));
                }
            });
        let first_run = Arc::new(OnceLock::new());
        let mut threads: Vec<JoinHandle<()>> = Vec::new();
        for (i, vcpu) in vcpus.into_iter().enumerate() {
            let (io, mmio, state, first_run) =
                (io.clone(), mmio.clone(), exit.clone(), first_run.clone());
            let vcpu_seccomp = seccomp.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("vcpu{i}"))
                .spawn(move || {
                    if filtered(vcpu_seccomp.as_deref(), Thread::Vcpu, &state) {
                        crate::cpu::vcpu::run(vcpu, &io, &mmio, &state, &first_run);
                    }
                });
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => exit.stop(ExitReason::VmmError(format!("spawning vCPU thread: {e}"))),
            }
        }
        // No thread is started after this point.
        filtered(seccomp.as_deref(), Thread::Main, &exit);
        let reason = exit.wait(timeout).unwrap_or_else(|| {
            exit.stop(ExitReason::Stopped);
            ExitReason::Stopped
        });
        let deadline = Instant::now() + STOP_DEADLINE;
        while threads.iter().any(|t| !t.is_finished()) && Instant::now() < deadline {
            for t in threads.iter().filter(|t| !t.is_finished()) {
                // SAFETY: the thread has not been joined, so its pthread_t is valid; the
                // signal has a handler installed above, so it only interrupts KVM_RUN.
                unsafe { libc::pthread_kill(t.as_pthread_t(), kick_signal()) };
            }
            std::thread::sleep(KICK_INTERVAL);
        }
        for t in threads.into_iter().filter(|t| t.is_finished()) {
            let _ = t.join();
        }
        let _ = stop_devices.write(1);
        if let Ok(d) = devices {
            let _ = d.join();
        }
        drop(mem);
        Outcome {
            reason,
            setup: first_run
                .get()
                .map(|t| t.saturating_duration_since(started)),
            boot: boot_time.get().copied(),
        }
    }
}

/// Installs `thread`'s filter, if there are filters; false (and the VM stopping, with why)
/// if it cannot be: no thread runs unfiltered once filters were asked for.
fn filtered(filters: Option<&Filters>, thread: Thread, exit: &ExitState) -> bool {
    let Some(filters) = filters else {
        return true;
    };
    match filters.install(thread) {
        Ok(()) => true,
        Err(e) => {
            exit.stop(ExitReason::VmmError(format!("{thread:?} thread: {e}")));
            false
        }
    }
}
