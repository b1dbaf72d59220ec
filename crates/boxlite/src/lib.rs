//! boxlite: boxes (micro-VMs) from OCI images, with streaming exec.

mod copy;
mod defaults;
pub mod disk;
pub mod engine;
pub mod error;
mod execution;
pub mod host;
pub mod layout;
mod litebox;
pub mod liveness;
pub mod options;
mod runtime;
pub mod state;
pub mod supervisor;

pub use defaults::{image_command, run_argv};
pub use error::{Error, Result};
pub use execution::{ExecOutput, ExecStdin, Execution, ExitStatus, Output};
pub use litebox::{DEFAULT_STOP_GRACE, LiteBox, Metrics};
pub use options::{BoxCommand, BoxOptions, EngineKind, RuntimeOptions, SupervisorCommand};
pub use runtime::{BoxInfo, EngineInfo, HostInfo, Runtime};
pub use state::BoxState;
