//! Test hooks: a process that kills itself at a named step, to prove what a crash there
//! leaves behind. Set by a test through the hidden `RuntimeOptions::abort_at` (and passed to
//! supervisors in `SupervisorArgs::abort_at`), never from the environment.

use rustix::process::{Signal, getpid, kill_process};

/// `create`: the box's directory exists and is locked; no row yet.
pub const CREATE_DIR: &str = "create.dir";
/// `create`: the box's row is recorded, incomplete; no disk yet.
pub const CREATE_ROW: &str = "create.row";
/// `create`: the box's disk exists; the row is still incomplete.
pub const CREATE_DISK: &str = "create.disk";
/// The supervisor: `starting` is recorded; no VM yet.
pub const START_STARTING: &str = "start.starting";
/// The supervisor: the VM runs and its pid is recorded.
pub const START_VM: &str = "start.vm";
/// The supervisor: `running` is recorded; the starter has not been told.
pub const START_RUNNING: &str = "start.running";
/// `rm`: the box's row is gone; its directory is still in `boxes/`.
pub const RM_ROW: &str = "rm.row";
/// `rm`: the box's directory is in the trash, whole.
pub const RM_TRASHED: &str = "rm.trashed";
/// `rm`: the box's directory is in the trash, partly deleted.
pub const RM_PARTIAL: &str = "rm.partial";

/// Kills this process with SIGKILL — no unwinding, no destructors, no flush, as `kill -9`
/// would — if `at` names `step`.
pub fn hit(at: Option<&str>, step: &str) {
    if at == Some(step) {
        let _ = kill_process(getpid(), Signal::KILL);
        // SIGKILL is neither caught nor ignored; should the kill itself have failed:
        std::process::abort();
    }
}
