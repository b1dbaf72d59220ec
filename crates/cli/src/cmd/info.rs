//! `boxlite info`: what this host can run, and with which guest files.

use std::path::Path;

use anyhow::Result;

use super::open_runtime;
use crate::Global;

/// `boxlite info`.
#[derive(clap::Args)]
pub struct InfoArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Prints the host's engines, KVM, the guest kernel and initramfs, the supervisor and the
/// state directory.
pub fn info(global: &Global, args: InfoArgs) -> Result<u8> {
    let runtime = open_runtime(global)?;
    let info = runtime.host_info();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&info)?);
        return Ok(0);
    }
    println!("state directory: {}", info.home.display());
    println!("kvm:             {}", info.kvm);
    println!("engines:");
    let width = info.engines.iter().map(|e| e.name.len()).max().unwrap_or(0);
    for engine in &info.engines {
        let available = if engine.available {
            "available"
        } else {
            "unavailable"
        };
        println!(
            "  {:<width$}  {available:<11}  {}",
            engine.name, engine.detail
        );
    }
    println!("  auto picks:   {}", info.auto_engine);
    println!(
        "kernel:          {}",
        found(
            info.kernel.as_deref(),
            "build it with `cargo xtask kernel`, then pass --kernel or set BOXLITE_KERNEL"
        )
    );
    println!(
        "initramfs:       {}",
        found(
            info.initramfs.as_deref(),
            "build it with `cargo xtask guest`, then pass --initramfs or set BOXLITE_INITRAMFS"
        )
    );
    println!(
        "supervisor:      {}",
        found(info.supervisor.as_deref(), "the boxlite program itself")
    );
    if let Some(mib) = info.memory_mib {
        println!("host memory:     {mib} MiB");
    }
    println!("protections of a box's VM process:");
    let width = info
        .protections
        .iter()
        .map(|p| p.name.len())
        .max()
        .unwrap_or(0);
    for p in info.protections.iter() {
        let state = if p.active { "active" } else { "inactive" };
        println!("  {:<width$}  {state:<8}  {}", p.name, p.reason);
    }
    Ok(0)
}

/// A path, or that it was not found and how to get it.
fn found(path: Option<&Path>, hint: &str) -> String {
    match path {
        Some(path) => path.display().to_string(),
        None => format!("not found ({hint})"),
    }
}
