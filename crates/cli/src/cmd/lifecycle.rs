//! `boxlite start`, `stop`, `restart` and `rm`: each on every box named, going on past
//! failures (each reported on its own line) so one bad name does not strand the rest.

use std::future::Future;
use std::time::Duration;

use anyhow::Result;
use boxlite::{DEFAULT_STOP_GRACE, LiteBox, RemoveMode, Runtime};

use super::open_runtime;
use crate::{EXIT_BOXLITE, Global};

/// `boxlite start` and `boxlite restart`.
#[derive(clap::Args)]
pub struct StartArgs {
    /// The boxes (ids, unique id prefixes, or names).
    #[arg(required = true, value_name = "BOX")]
    boxes: Vec<String>,
}

/// `boxlite stop`.
#[derive(clap::Args)]
pub struct StopArgs {
    /// Seconds the guest gets to power off before it is killed.
    #[arg(short = 't', long = "time", value_name = "SECS", default_value_t = DEFAULT_STOP_GRACE.as_secs())]
    time: u64,
    /// The boxes (ids, unique id prefixes, or names).
    #[arg(required = true, value_name = "BOX")]
    boxes: Vec<String>,
}

/// `boxlite rm`.
#[derive(clap::Args)]
pub struct RmArgs {
    /// Remove running boxes too (they are killed).
    #[arg(short = 'f', long)]
    force: bool,
    /// The boxes (ids, unique id prefixes, or names).
    #[arg(required = true, value_name = "BOX")]
    boxes: Vec<String>,
}

/// Boots each box; prints each name given once it runs.
pub async fn start(global: &Global, args: StartArgs) -> Result<u8> {
    let runtime = open_runtime(global)?;
    each(&runtime, &args.boxes, |b| async move { b.start().await }).await
}

/// Stops each box; prints each name given once it stopped.
pub async fn stop(global: &Global, args: StopArgs) -> Result<u8> {
    let runtime = open_runtime(global)?;
    let grace = Duration::from_secs(args.time);
    each(&runtime, &args.boxes, |b| async move {
        b.stop_with_grace(grace).await
    })
    .await
}

/// Stops, then starts each box.
pub async fn restart(global: &Global, args: StartArgs) -> Result<u8> {
    let runtime = open_runtime(global)?;
    each(&runtime, &args.boxes, |b| async move {
        b.stop().await?;
        b.start().await
    })
    .await
}

/// Removes each box.
pub async fn rm(global: &Global, args: RmArgs) -> Result<u8> {
    let runtime = open_runtime(global)?;
    let mode = if args.force {
        RemoveMode::Kill
    } else {
        RemoveMode::IfStopped
    };
    each(
        &runtime,
        &args.boxes,
        |b| async move { b.remove(mode).await },
    )
    .await
}

/// Runs `action` on every box in `keys`, printing each key it succeeded for and an error
/// line for each it failed for; 0 if all succeeded, else [`EXIT_BOXLITE`].
async fn each<F, Fut>(runtime: &Runtime, keys: &[String], action: F) -> Result<u8>
where
    F: Fn(LiteBox) -> Fut,
    Fut: Future<Output = boxlite::Result<()>>,
{
    let mut failed = false;
    for key in keys {
        let done = match runtime.get(key).await {
            Ok(litebox) => action(litebox).await,
            Err(e) => Err(e),
        };
        match done {
            Ok(()) => println!("{key}"),
            Err(e) => {
                failed = true;
                eprintln!("boxlite: error: {}", crate::describe(&e.into()));
            }
        }
    }
    Ok(if failed { EXIT_BOXLITE } else { 0 })
}
