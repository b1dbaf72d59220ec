//! `cargo xtask bench …`: benchmarks that run our code and the peer tools side by side.

mod boot;
mod exec;
mod first_box;
mod host;
mod mount;
mod net;
mod pull;
mod rootfs;
mod stats;
mod vmm;
mod volume;

use std::path::PathBuf;
use std::process::Command;

use anyhow::Result;
use clap::{Args as ClapArgs, Subcommand};

use crate::sh;

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
    /// Exec through the guest agent over a Unix socket vs. directly: latency and throughput.
    Exec(exec::Args),
    /// Boot: raw QEMU vs. `boxlite run --rm`, exec on a running box, supervisor memory.
    Boot(boot::Args),
    /// Our KVM VMM: setup to first KVM_RUN, memory overhead, boot to agent ready.
    Vmm(vmm::Args),
    /// Image pull from a local registry: `boxlite pull` + `image unpack` vs. skopeo + umoci.
    Pull(pull::Args),
    /// Networking: our user-mode stack vs. passt behind the same VM: throughput, connects, CPU, RSS.
    Net(net::Args),
    /// A new image to its first exec: ours vs. the gunzip floor, the previous design, cp-stacking.
    FirstBox(first_box::Args),
    /// Volumes: a host directory over virtio-fs vs. the box's disk vs. `boxlite cp` in.
    Volume(volume::Args),
}

/// Runs the chosen benchmark, in a release build of this tool (measuring debug code would be
/// meaningless), rebuilding and re-executing itself when started from a debug build.
pub fn run(args: Args) -> Result<()> {
    if cfg!(debug_assertions) {
        sh::run(sh::cargo().args(["build", "--release", "--quiet", "-p", "xtask"]))?;
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| sh::workspace_root().join("target"), PathBuf::from);
        let status = Command::new(target.join("release/xtask"))
            .args(std::env::args_os().skip(1))
            .status()?;
        std::process::exit(status.code().unwrap_or(1));
    }
    match args.which {
        Which::Rootfs(args) => rootfs::run(args),
        Which::Exec(args) => exec::run(args),
        Which::Vmm(args) => vmm::run(args),
        Which::Boot(args) => boot::run(args),
        Which::Pull(args) => pull::run(args),
        Which::Net(args) => net::run(args),
        Which::Volume(args) => volume::run(args),
        Which::FirstBox(args) => first_box::run(args),
    }
}
