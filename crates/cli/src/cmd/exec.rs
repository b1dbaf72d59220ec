//! `boxlite exec`: a command in a running box, attached to this terminal or these pipes.

use anyhow::Result;
use boxlite::BoxCommand;

use super::{open_runtime, parse_env};
use crate::Global;
use crate::attach::{self, Attach};

/// `boxlite exec`.
#[derive(clap::Args)]
pub struct ExecArgs {
    /// Pass this terminal's stdin to the command (otherwise its stdin is closed).
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Run the command on a pseudo-terminal (with -i: this terminal in raw mode).
    #[arg(short = 't', long)]
    tty: bool,
    /// Set an environment variable, over the box's (repeatable).
    #[arg(short = 'e', long = "env", value_name = "NAME=VALUE")]
    env: Vec<String>,
    /// Working directory (absolute; default: the box's).
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    workdir: Option<String>,
    /// User: name, uid or uid:gid (default: the box's).
    #[arg(short = 'u', long, value_name = "USER")]
    user: Option<String>,
    /// The box (id, unique id prefix, or name).
    #[arg(value_name = "BOX")]
    key: String,
    /// The command and its arguments.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    command: Vec<String>,
}

/// Runs the command; its exit status.
pub async fn exec(global: &Global, args: ExecArgs) -> Result<u8> {
    let how = Attach {
        stdin: args.interactive,
        tty: args.tty,
    };
    how.check()?;
    let mut command = BoxCommand::from_argv(args.command);
    command.env = parse_env(&args.env)?;
    if let Some(dir) = &args.workdir {
        boxlite::validate_working_dir(dir)?;
    }
    command.working_dir = args.workdir;
    command.user = args.user;
    let runtime = open_runtime(global)?;
    let litebox = runtime.get(&args.key).await?;
    let signals = attach::catch_signals();
    super::run::run_command(&litebox, command, how, signals).await
}
