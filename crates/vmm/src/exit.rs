//! Why a VM ended, and the shared flag that tells every thread to stop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

/// Why the VM stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitReason {
    /// The guest pulsed reset through the i8042 controller (Linux `reboot=k`).
    Reset,
    /// KVM reported a guest-requested shutdown or reset system event.
    SystemEvent(u32),
    /// The guest triple-faulted (a reboot without the i8042, or a crash in early boot).
    TripleFault,
    /// KVM could not emulate something the guest did.
    InternalError(String),
    /// KVM could not enter the guest.
    FailEntry(String),
    /// The VMM failed (an ioctl error, a device thread error).
    VmmError(String),
    /// The host asked the VM to stop (a signal, a test, a timeout).
    Stopped,
    /// The guest agent signalled readiness and the VM was asked to stop then (benchmarks).
    Booted,
}

impl ExitReason {
    /// Whether the guest ended the VM on purpose (reboot or power-off).
    pub fn is_clean(&self) -> bool {
        matches!(
            self,
            ExitReason::Reset | ExitReason::SystemEvent(_) | ExitReason::Stopped
        )
    }
}

impl std::fmt::Display for ExitReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitReason::Reset => write!(f, "the guest reset the machine (i8042)"),
            ExitReason::SystemEvent(kind) => write!(f, "the guest requested system event {kind}"),
            ExitReason::TripleFault => write!(f, "the guest triple-faulted"),
            ExitReason::InternalError(s) => write!(f, "KVM internal error: {s}"),
            ExitReason::FailEntry(s) => write!(f, "KVM could not enter the guest: {s}"),
            ExitReason::VmmError(s) => write!(f, "VMM error: {s}"),
            ExitReason::Stopped => write!(f, "stopped by the host"),
            ExitReason::Booted => write!(f, "the guest agent is ready (stopped at boot)"),
        }
    }
}

/// The first reason to stop wins; every thread polls [`ExitState::stopping`].
#[derive(Debug, Default)]
pub struct ExitState {
    stopping: AtomicBool,
    reason: Mutex<Option<ExitReason>>,
    changed: Condvar,
}

impl ExitState {
    /// Records `reason` unless another came first, and asks everyone to stop.
    pub fn stop(&self, reason: ExitReason) {
        let mut slot = self.reason.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(reason);
        }
        self.stopping.store(true, Ordering::SeqCst);
        self.changed.notify_all();
    }

    /// Whether the VM is stopping.
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Waits up to `timeout` (forever if `None`) for a reason.
    pub fn wait(&self, timeout: Option<Duration>) -> Option<ExitReason> {
        let slot = self.reason.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = match timeout {
            None => self
                .changed
                .wait_while(slot, |r| r.is_none())
                .unwrap_or_else(PoisonError::into_inner),
            Some(t) => {
                self.changed
                    .wait_timeout_while(slot, t, |r| r.is_none())
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
        };
        slot.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_reason_wins() {
        let s = ExitState::default();
        assert!(!s.stopping());
        assert_eq!(s.wait(Some(Duration::from_millis(1))), None);
        s.stop(ExitReason::Reset);
        s.stop(ExitReason::TripleFault);
        assert!(s.stopping());
        assert_eq!(s.wait(None), Some(ExitReason::Reset));
        assert!(ExitReason::Reset.is_clean());
        assert!(!ExitReason::TripleFault.is_clean());
    }
}
