//! `boxlite volume`: named volumes (sparse ext4 disks that outlive boxes).

use anyhow::Result;
use boxlite::VolumeInfo;

use super::open_runtime;
use crate::Global;

/// The `volume` subcommands.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Create a named volume.
    Create(CreateArgs),
    /// List named volumes.
    #[command(alias = "list")]
    Ls,
    /// Print a named volume as JSON: size, disk use, the boxes that list it.
    Inspect(NameArg),
    /// Remove a named volume and its content (refused while a box lists it).
    #[command(alias = "remove")]
    Rm(NameArg),
}

/// `volume create`.
#[derive(clap::Args)]
pub struct CreateArgs {
    /// The volume's name.
    name: String,
    /// Its size in GiB (sparse: only what is written takes host disk).
    #[arg(long, value_name = "GIB")]
    size: Option<u64>,
}

/// A volume's name.
#[derive(clap::Args)]
pub struct NameArg {
    /// The volume's name.
    name: String,
}

/// Runs a `volume` subcommand.
pub async fn run(global: &Global, command: Command) -> Result<u8> {
    let runtime = open_runtime(global)?;
    match command {
        Command::Create(args) => {
            let info = runtime.create_volume(&args.name, args.size).await?;
            println!("{}", info.name);
        }
        Command::Ls => {
            let volumes = runtime.volumes().await?;
            println!("{:<24} {:>8} {:>10}  BOXES", "NAME", "SIZE", "USED");
            for volume in &volumes {
                println!(
                    "{:<24} {:>8} {:>10}  {}",
                    volume.name,
                    format!("{}G", volume.size_bytes >> 30),
                    human(volume.allocated_bytes),
                    boxes(volume)
                );
            }
        }
        Command::Inspect(args) => {
            let info = runtime.volume(&args.name).await?;
            println!("{}", serde_json::to_string_pretty(&info)?);
        }
        Command::Rm(args) => {
            runtime.remove_volume(&args.name).await?;
            println!("{}", args.name);
        }
    }
    Ok(0)
}

/// The boxes listing `volume`, running ones marked.
fn boxes(volume: &VolumeInfo) -> String {
    let names: Vec<String> = volume
        .boxes
        .iter()
        .map(|b| {
            if b.running {
                format!("{} (running)", b.name)
            } else {
                b.name.clone()
            }
        })
        .collect();
    if names.is_empty() {
        "-".into()
    } else {
        names.join(", ")
    }
}

/// `bytes` as `12.3M`.
fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "K", "M", "G", "T"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}
