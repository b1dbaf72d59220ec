//! `cargo xtask …`: the project's build, test, demo and benchmark tasks.

mod bench;
mod cpio;
mod demo;
mod deps;
mod fuzz;
mod guest;
mod image;
mod kernel;
mod link;
mod nested;
mod sh;
mod test;
mod virtiofsd;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "boxlite's build, test and benchmark tasks"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Every check CI makes (formatting, clippy -D warnings, every test, a fuzz smoke run),
    /// after installing the Debian packages and cargo-fuzz they need: the CI test command.
    Test(test::Args),
    /// The main job: build the guest, a small Debian image and boxlite, then run commands in a box.
    Demo(demo::Args),
    /// Benchmarks, compared side by side with peer tools in one run.
    Bench(bench::Args),
    /// Run every cargo-fuzz target for a while (needs the nightly toolchain; installs cargo-fuzz).
    Fuzz(fuzz::Args),
    /// Build the guest agent as a static executable and pack it as the initramfs /init;
    /// link it into the per-user guest directory.
    Guest(guest::Args),
    /// Build the guest kernel (bzImage + PVH vmlinux), cached outside the checkout; link it
    /// into the per-user guest directory.
    Kernel(kernel::Args),
    /// Prove boxlite-vmm boots Linux without hardware KVM: its full-boot test inside an L1
    /// Linux whose KVM runs on SVM emulated by QEMU's TCG.
    NestedKvm(nested::Args),
}

fn main() -> Result<()> {
    match Cli::parse().task {
        Task::Test(args) => test::run(args),
        Task::Demo(args) => demo::run(args),
        Task::Bench(args) => bench::run(args),
        Task::Fuzz(args) => fuzz::run(args),
        Task::Guest(args) => guest::run(args),
        Task::Kernel(args) => kernel::run(args),
        Task::NestedKvm(args) => nested::run(args),
    }
}
