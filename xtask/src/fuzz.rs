//! `cargo xtask fuzz`: runs every cargo-fuzz target for a while, starting from the committed seeds.

use std::process::Command;

use anyhow::{Result, ensure};
use clap::Args as ClapArgs;

use crate::sh;

/// The fuzz targets in `fuzz/fuzz_targets`, each with seeds under `fuzz/seeds/<name>`.
pub const TARGETS: [&str; 11] = [
    "extract_layer",
    "untar",
    "parse_image_json",
    "protocol_frames",
    "virtio_queue",
    "vmm_devices",
    "registry_input",
    "net_policy",
    "net_frames",
    "erofs_tar",
    "erofs_merged",
];

/// Arguments of `cargo xtask fuzz`.
#[derive(ClapArgs)]
pub struct Args {
    /// Seconds to fuzz each target.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
}

/// The crate `cargo install` makes the `cargo fuzz` subcommand from.
const CARGO_FUZZ: &str = "cargo-fuzz";

/// Whether `cargo fuzz` (cargo-fuzz) and the nightly toolchain are installed.
pub fn available() -> bool {
    succeeds(&["+nightly", "fuzz", "--version"])
}

/// Whether the nightly toolchain the fuzz targets build with (sanitizer flags are nightly
/// only) is installed. Installing a toolchain is the machine's setup (`.ci/run` does it), not
/// a task's.
pub fn nightly_installed() -> bool {
    succeeds(&["+nightly", "--version"])
}

fn succeeds(cargo_args: &[&str]) -> bool {
    Command::new("cargo")
        .args(cargo_args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Installs cargo-fuzz when the nightly toolchain is there and `cargo fuzz` is not; returns
/// whether the fuzz targets can run now (false only without the nightly toolchain).
pub fn ensure_cargo_fuzz() -> Result<bool> {
    if available() {
        return Ok(true);
    }
    if !nightly_installed() {
        return Ok(false);
    }
    // `--locked`: with cargo-fuzz's own lock file, so a newer release of one of its
    // dependencies cannot break the install.
    sh::run(Command::new("cargo").args(["install", "--locked", CARGO_FUZZ]))?;
    ensure!(
        available(),
        "`cargo +nightly fuzz` still does not run after installing {CARGO_FUZZ}"
    );
    Ok(true)
}

/// Fuzzes each target for `args.seconds`; any crash fails with the reproducer's path printed.
pub fn run(args: Args) -> Result<()> {
    ensure!(
        ensure_cargo_fuzz()?,
        "the fuzz targets need the nightly toolchain: rustup toolchain install nightly"
    );
    let root = sh::workspace_root();
    for target in TARGETS {
        let corpus = root.join("fuzz/corpus").join(target);
        std::fs::create_dir_all(&corpus)?;
        let seeds = root.join("fuzz/seeds").join(target);
        sh::run(
            Command::new("cargo")
                .current_dir(root.join("fuzz"))
                .args(["+nightly", "fuzz", "run", "-O", target])
                .arg(&corpus)
                .arg(&seeds)
                .arg("--")
                .arg(format!("-max_total_time={}", args.seconds))
                .arg("-rss_limit_mb=4096"),
        )?;
    }
    Ok(())
}
