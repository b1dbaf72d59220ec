//! `boxlite image …`: import, list, inspect, remove and unpack images.

use std::path::PathBuf;

use anyhow::Result;
use boxlite::{Runtime, UnpackMethod};
use clap::Subcommand;

/// The `image` subcommands.
#[derive(Subcommand)]
pub enum Command {
    /// Import an OCI image layout directory, an OCI layout tar or a `docker save` archive.
    Import {
        /// The directory or archive to import.
        path: PathBuf,
        /// Name to give the image (default: the name the image carries, else its short id).
        #[arg(long)]
        name: Option<String>,
    },
    /// List imported images.
    #[command(alias = "list")]
    Ls {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print an image's record, manifest and config as JSON.
    Inspect {
        /// Image name or digest prefix.
        name: String,
    },
    /// Remove an image, then every blob no other image needs.
    #[command(alias = "remove")]
    Rm {
        /// Image names or digest prefixes.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Assemble an image's root filesystem into a directory.
    Unpack {
        /// Image name or digest prefix.
        name: String,
        /// Destination directory: missing, empty, or a rootfs this command left before.
        dest: PathBuf,
    },
}

/// Runs one `image` subcommand on `runtime`.
pub fn run(runtime: &Runtime, cmd: Command) -> Result<()> {
    match cmd {
        Command::Import { path, name } => {
            let record = runtime.import_image(&path, name.as_deref())?;
            println!("{} {}", record.name, record.manifest_digest);
        }
        Command::Ls { json } => {
            let images = runtime.images()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&images)?);
            } else {
                println!("{:<40} {:<14} {:>6} {:>10}", "NAME", "ID", "LAYERS", "SIZE");
                for image in images {
                    println!(
                        "{:<40} {:<14} {:>6} {:>10}",
                        image.name,
                        image.short_id(),
                        image.layers.len(),
                        human_size(image.size)
                    );
                }
            }
        }
        Command::Inspect { name } => {
            let image = runtime.image(&name)?;
            let json = serde_json::json!({
                "record": image.record,
                "manifest": image.manifest,
                "config": image.config,
            });
            println!("{}", serde_json::to_string_pretty(&json)?);
        }
        Command::Rm { names } => {
            for name in names {
                let gc = runtime.remove_image(&name)?;
                println!(
                    "removed {name} ({}, {} freed)",
                    count(gc.blobs_removed as u64, "blob"),
                    human_size(gc.bytes_freed)
                );
            }
        }
        Command::Unpack { name, dest } => {
            let report = runtime.unpack_image(&name, &dest)?;
            if let Some(reason) = &report.fallback_reason {
                eprintln!(
                    "boxlite: warning: copy-based assembly failed ({reason}); used extraction"
                );
            }
            let how = match report.method {
                UnpackMethod::AlreadyComplete => "already complete".to_string(),
                _ => format!(
                    "{} ({} extracted), {}, {} by {}",
                    count(report.layers as u64, "layer"),
                    report.extracted,
                    count(report.copy.files, "file"),
                    human_size(report.copy.bytes),
                    report
                        .copy
                        .strategy()
                        .map_or("rename".to_string(), |s| s.to_string())
                ),
            };
            println!("{}: {how}", dest.display());
        }
    }
    Ok(())
}

/// `n` and `noun`, the noun in the plural unless `n` is 1.
fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else if noun.ends_with('x') {
        format!("{n} {noun}es")
    } else {
        format!("{n} {noun}s")
    }
}

/// Bytes in the largest binary unit that keeps the number at least 1.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
