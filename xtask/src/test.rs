//! `cargo xtask test`: everything CI checks, in the order that fails fastest.

use anyhow::Result;
use clap::Args as ClapArgs;

use crate::{demo, fuzz, guest, kernel, sh};

/// Arguments of `cargo xtask test`.
#[derive(ClapArgs)]
pub struct Args {
    /// Skip formatting and clippy (for quick local iterations).
    #[arg(long)]
    no_lint: bool,
    /// Seconds to run each fuzz target after the tests (0 to skip).
    #[arg(long, default_value_t = 30)]
    fuzz_seconds: u64,
    /// Skip `nested-kvm` (our VMM booting Linux on KVM emulated under TCG).
    #[arg(long)]
    no_nested_kvm: bool,
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
    // The boot tests find the kernel and the agent's initramfs through these; both builds
    // are no-ops once cached.
    let kernel_dir = kernel::build(&kernel::Args::default())?;
    let guest = guest::build()?;
    sh::run(
        sh::cargo()
            .args(["test", "--workspace", "--all-targets", "--no-fail-fast"])
            .env("BOXLITE_KERNEL_DIR", &kernel_dir)
            .env("BOXLITE_GUEST_INITRAMFS", &guest.initramfs)
            .args(&args.rest),
    )?;
    // `--all-targets` leaves doc tests out; they run here, with the same guest files and the
    // supervisor the test build made (a doc test runs from a temporary directory, so the
    // runtime cannot find it beside the executable).
    let mut doc = sh::cargo();
    doc.args(["test", "--workspace", "--doc"])
        .env("BOXLITE_KERNEL_DIR", &kernel_dir)
        .env("BOXLITE_GUEST_INITRAMFS", &guest.initramfs);
    let supervisor = demo::target_dir().join("debug/boxlite-supervisor");
    if supervisor.is_file() {
        doc.env("BOXLITE_SUPERVISOR", supervisor);
    }
    sh::run(&mut doc)?;
    // Without hardware KVM the vmm crate's full-boot test skips; here it runs on a KVM made
    // under emulation instead, so every run proves our VMM boots Linux to the agent.
    if !args.no_nested_kvm && !crate::nested::hardware_kvm() {
        crate::nested::run(crate::nested::Args::default())?;
    }
    if args.fuzz_seconds > 0 {
        if fuzz::available() {
            fuzz::run(fuzz::Args {
                seconds: args.fuzz_seconds,
            })?;
        } else {
            eprintln!(
                "fuzz smoke run skipped: cargo-fuzz is not installed (`cargo install cargo-fuzz`)"
            );
        }
    }
    Ok(())
}
