//! `boxlite ls`, `inspect` and `logs`: what boxes there are and what they did.

use std::io::Write;

use anyhow::{Context, Result};
use boxlite::{BoxInfo, PublishedPort};

use super::open_runtime;
use crate::Global;

/// Hex digits of the id `ls` shows (as docker does; any unique prefix names the box).
const SHORT_ID: usize = 12;
/// The longest reason `ls` shows in the STATE column before cutting it short.
const SHORT_REASON: usize = 32;

/// `boxlite ls`.
#[derive(clap::Args)]
pub struct LsArgs {
    /// All boxes, not only running ones.
    #[arg(short = 'a', long)]
    all: bool,
    /// Print JSON (an array of box records) instead of a table.
    #[arg(long)]
    json: bool,
}

/// One box, for `inspect` and `logs`.
#[derive(clap::Args)]
pub struct BoxArg {
    /// The box (id, unique id prefix, or name).
    #[arg(value_name = "BOX")]
    key: String,
}

/// Lists boxes, oldest first.
pub async fn ls(global: &Global, args: LsArgs) -> Result<u8> {
    let runtime = open_runtime(global)?;
    let boxes: Vec<BoxInfo> = runtime
        .list()
        .await?
        .into_iter()
        .filter(|b| args.all || b.state.is_active())
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&boxes)?);
        return Ok(0);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let rows: Vec<[String; 7]> = boxes
        .iter()
        .map(|b| {
            [
                b.id.chars().take(SHORT_ID).collect(),
                b.name.clone(),
                b.image.clone(),
                state_column(b),
                ago(now.saturating_sub(b.created_at_ms)),
                b.engine
                    .clone()
                    .unwrap_or_else(|| b.options.engine.to_string()),
                ports_column(b),
            ]
        })
        .collect();
    let header = ["ID", "NAME", "IMAGE", "STATE", "CREATED", "ENGINE", "PORTS"].map(String::from);
    print_table(&header, &rows);
    Ok(0)
}

/// The published ports, as docker shows them (`127.0.0.1:8080->80/tcp`): the bound ones
/// while the box runs, else what it asks for.
fn ports_column(b: &BoxInfo) -> String {
    match &b.network {
        Some(network) => network
            .ports
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        None => b
            .options
            .network
            .publish
            .iter()
            .map(|p| PublishedPort::from(*p).to_string())
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// Prints the box's record with its metrics, as JSON.
pub async fn inspect(global: &Global, args: BoxArg) -> Result<u8> {
    let runtime = open_runtime(global)?;
    let litebox = runtime.get(&args.key).await?;
    let info = litebox.info().await?;
    let metrics = litebox.metrics().await?;
    let mut json = serde_json::to_value(&info)?;
    if let Some(object) = json.as_object_mut() {
        object.insert("metrics".into(), serde_json::to_value(&metrics)?);
    }
    println!("{}", serde_json::to_string_pretty(&json)?);
    Ok(0)
}

/// Prints the box's console log, the rotated part first (nothing if it never booted).
pub async fn logs(global: &Global, args: BoxArg) -> Result<u8> {
    let runtime = open_runtime(global)?;
    let litebox = runtime.get(&args.key).await?;
    let mut out = std::io::stdout().lock();
    for path in litebox.console_logs() {
        let mut file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        match std::io::copy(&mut file, &mut out).and_then(|_| out.flush()) {
            Ok(_) => {}
            // A reader that stopped early (`| head`) is not a failure of ours.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(0),
            Err(e) => return Err(e).with_context(|| format!("printing {}", path.display())),
        }
    }
    Ok(0)
}

/// The STATE column: the state, with how a stopped box ended (`exited 0`) or why a box
/// crashed, cut short.
fn state_column(b: &BoxInfo) -> String {
    let state = b.state.as_str();
    if b.state.is_active() || b.state == boxlite::BoxState::Created {
        return state.to_string();
    }
    match (b.exit_code, &b.reason) {
        (Some(code), _) => format!("{state} (exit {code})"),
        // "stopped (stopped)" says nothing twice.
        (None, Some(reason)) if reason != state => {
            format!("{state} ({})", shorten(reason, SHORT_REASON))
        }
        (None, _) => state.to_string(),
    }
}

/// `text`'s first line, cut to `max` characters with an ellipsis.
fn shorten(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or("");
    if line.chars().count() <= max {
        return line.to_string();
    }
    let mut cut: String = line.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// How long ago, in the largest whole unit: `5 seconds ago`, `1 hour ago`.
fn ago(ms: u64) -> String {
    let secs = ms / 1000;
    let (n, unit) = match secs {
        0..60 => (secs, "second"),
        60..3600 => (secs / 60, "minute"),
        3600..86400 => (secs / 3600, "hour"),
        _ => (secs / 86400, "day"),
    };
    if n == 1 {
        format!("1 {unit} ago")
    } else {
        format!("{n} {unit}s ago")
    }
}

/// Prints `rows` under `header` in left-aligned columns two spaces apart.
fn print_table<const N: usize>(header: &[String; N], rows: &[[String; N]]) {
    let mut widths = header.each_ref().map(|h| h.chars().count());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[String; N]| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  "));
            }
        }
        text
    };
    let mut out = std::io::stdout().lock();
    for cells in std::iter::once(header).chain(rows) {
        let _ = writeln!(out, "{}", line(cells));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_naturally() {
        assert_eq!(ago(0), "0 seconds ago");
        assert_eq!(ago(1_500), "1 second ago");
        assert_eq!(ago(125_000), "2 minutes ago");
        assert_eq!(ago(3_600_000), "1 hour ago");
        assert_eq!(ago(3 * 86_400_000), "3 days ago");
    }

    #[test]
    fn long_reasons_are_cut() {
        assert_eq!(shorten("killed", 32), "killed");
        assert_eq!(shorten("abcdefgh", 5), "abcd…");
        assert_eq!(shorten("first\nsecond", 32), "first");
    }
}
