//! `cargo xtask fuzz`: runs every cargo-fuzz target for a while, starting from the committed seeds.

use std::process::Command;

use anyhow::Result;
use clap::Args as ClapArgs;

use crate::sh;

/// The fuzz targets in `fuzz/fuzz_targets`, each with seeds under `fuzz/seeds/<name>`.
pub const TARGETS: [&str; 6] = [
    "extract_layer",
    "untar",
    "parse_image_json",
    "protocol_frames",
    "virtio_queue",
    "vmm_devices",
];

/// Arguments of `cargo xtask fuzz`.
#[derive(ClapArgs)]
pub struct Args {
    /// Seconds to fuzz each target.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
}

/// Whether `cargo fuzz` (cargo-fuzz) and the nightly toolchain are installed.
pub fn available() -> bool {
    Command::new("cargo")
        .args(["+nightly", "fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Fuzzes each target for `args.seconds`; any crash fails with the reproducer's path printed.
pub fn run(args: Args) -> Result<()> {
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
