//! `cargo xtask test`: everything CI checks, in the order that fails fastest.

use anyhow::Result;
use clap::Args as ClapArgs;

use crate::sh;

/// Arguments of `cargo xtask test`.
#[derive(ClapArgs)]
pub struct Args {
    /// Skip formatting and clippy (for quick local iterations).
    #[arg(long)]
    no_lint: bool,
    /// Extra arguments passed to `cargo test` (e.g. a test name filter after `--`).
    #[arg(trailing_var_arg = true)]
    rest: Vec<String>,
}

/// Runs fmt, clippy and the whole test suite.
pub fn run(args: Args) -> Result<()> {
    if !args.no_lint {
        sh::run(sh::cargo().args(["fmt", "--all", "--", "--check"]))?;
        sh::run(sh::cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))?;
    }
    sh::run(
        sh::cargo()
            .args(["test", "--workspace", "--all-targets"])
            .args(&args.rest),
    )?;
    sh::run(sh::cargo().args(["test", "--workspace", "--doc"]))?;
    Ok(())
}
