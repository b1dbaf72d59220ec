//! A box's life as transitions of its record, each one write transaction: who may move a box
//! from which state to which, in one place.

use super::{BoxState, StateDb, now_ms};
use crate::error::Result;

/// How a box's supervisor (or its absence) ended a run of the box.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// Someone asked for a stop.
    Stopped,
    /// The main command ended with this code.
    MainExited(Option<i32>),
    /// The guest powered off by itself.
    GuestPoweredOff,
    /// The supervisor was told to end (SIGTERM), or killed by a stop that could not wait.
    Killed,
    /// The VM or the supervisor died without being asked to, and why.
    Crashed(String),
}

impl Ending {
    /// The state, the reason in words and the main command's exit code it leaves.
    fn outcome(&self) -> (BoxState, String, Option<i32>) {
        match self {
            Ending::Stopped => (BoxState::Stopped, "stopped".into(), None),
            Ending::MainExited(code) => (
                BoxState::Stopped,
                match code {
                    Some(code) => format!("its command exited with code {code}"),
                    None => "its command ended".into(),
                },
                *code,
            ),
            Ending::GuestPoweredOff => (BoxState::Stopped, "the guest powered off".into(), None),
            Ending::Killed => (BoxState::Stopped, "killed".into(), None),
            Ending::Crashed(why) => (BoxState::Crashed, why.clone(), None),
        }
    }
}

impl StateDb {
    /// A supervisor (pid `supervisor_pid`) took the box and is booting it on `engine`.
    pub fn mark_starting(&self, id: &str, supervisor_pid: u32, engine: &str) -> Result<()> {
        self.update_box(id, |r| {
            r.state = BoxState::Starting;
            r.supervisor_pid = Some(supervisor_pid);
            r.vm_pid = None;
            r.started_at_ms = Some(now_ms());
            r.stopped_at_ms = None;
            r.engine = Some(engine.to_string());
            r.exit_code = None;
            r.reason = None;
            r.boot_ms = None;
            Ok(())
        })
        .map(drop)
    }

    /// The box's VM process runs as `vm_pid`.
    pub fn mark_vm_started(&self, id: &str, vm_pid: Option<u32>) -> Result<()> {
        self.update_box(id, |r| {
            r.vm_pid = vm_pid;
            Ok(())
        })
        .map(drop)
    }

    /// The agent answered, `boot_ms` after the VM started.
    pub fn mark_running(&self, id: &str, boot_ms: f64) -> Result<()> {
        self.update_box(id, |r| {
            r.state = BoxState::Running;
            r.boot_ms = Some(boot_ms);
            Ok(())
        })
        .map(drop)
    }

    /// A stop is under way.
    pub fn mark_stopping(&self, id: &str) -> Result<()> {
        self.update_box(id, |r| {
            r.state = BoxState::Stopping;
            Ok(())
        })
        .map(drop)
    }

    /// The box's run ended so; it has no supervisor or VM any more.
    pub fn mark_ended(&self, id: &str, ending: &Ending) -> Result<()> {
        let (state, reason, code) = ending.outcome();
        self.update_box(id, |r| {
            end(r, state, reason, code);
            Ok(())
        })
        .map(drop)
    }

    /// Records `ending` only if the box is still recorded active and `gone()` (asked inside
    /// the write transaction) says its supervisor is gone: a supervisor that is alive, or
    /// one that recorded its own end, is never overwritten. Whether it did.
    pub fn mark_ended_if_gone(
        &self,
        id: &str,
        gone: impl FnOnce() -> Result<bool>,
        ending: impl FnOnce(Option<u32>, BoxState) -> Ending,
    ) -> Result<bool> {
        let mut ended = false;
        self.update_box(id, |r| {
            if r.state.is_active() && gone()? {
                let (state, reason, code) = ending(r.supervisor_pid, r.state).outcome();
                end(r, state, reason, code);
                ended = true;
            }
            Ok(())
        })?;
        Ok(ended)
    }
}

/// The terminal update of a record.
fn end(r: &mut super::BoxRecord, state: BoxState, reason: String, code: Option<i32>) {
    r.state = state;
    r.reason = Some(reason);
    r.exit_code = code;
    r.stopped_at_ms = Some(now_ms());
    r.supervisor_pid = None;
    r.vm_pid = None;
}
