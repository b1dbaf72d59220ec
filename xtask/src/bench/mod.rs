//! `cargo xtask bench …`: benchmarks that run our code and the peer tools side by side.

mod mount;
mod rootfs;
mod stats;

use anyhow::Result;
use clap::{Args as ClapArgs, Subcommand};

/// Arguments of `cargo xtask bench`.
#[derive(ClapArgs)]
pub struct Args {
    #[command(subcommand)]
    which: Which,
}

#[derive(Subcommand)]
enum Which {
    /// Rootfs assembly: ours cold and warm vs. tar+cp stacking vs. umoci, on XFS and ext4.
    Rootfs(rootfs::Args),
}

/// Runs the chosen benchmark.
pub fn run(args: Args) -> Result<()> {
    match args.which {
        Which::Rootfs(args) => rootfs::run(args),
    }
}
