//! `boxlite cp`: files between the host and a running box.

use std::path::PathBuf;

use anyhow::{Result, bail};

use super::open_runtime;
use crate::Global;

/// `boxlite cp`.
#[derive(clap::Args)]
pub struct CpArgs {
    /// What to copy: a host path, or BOX:PATH (a path in the box).
    #[arg(value_name = "SRC")]
    src: String,
    /// Where to: a host path, or BOX:PATH; into it when it is a directory.
    #[arg(value_name = "DST")]
    dst: String,
}

/// One side of a copy.
#[derive(Debug, PartialEq, Eq)]
enum Side {
    /// A path on the host.
    Host(PathBuf),
    /// A path in a box.
    Box { key: String, path: String },
}

/// Reads `BOX:PATH` as a box side, anything else as a host path. As with docker, a colon
/// after a `/` is part of a host path (write `./a:b` for a host file named `a:b`).
fn side(arg: &str) -> Side {
    match arg.split_once(':') {
        Some((key, path)) if !key.is_empty() && !key.contains('/') => Side::Box {
            key: key.to_string(),
            path: path.to_string(),
        },
        _ => Side::Host(PathBuf::from(arg)),
    }
}

/// Copies in or out of the box named on exactly one side.
pub async fn cp(global: &Global, args: CpArgs) -> Result<u8> {
    let (key, copy_in, host, box_path) = match (side(&args.src), side(&args.dst)) {
        (Side::Host(host), Side::Box { key, path }) => (key, true, host, path),
        (Side::Box { key, path }, Side::Host(host)) => (key, false, host, path),
        (Side::Box { .. }, Side::Box { .. }) => {
            bail!(
                "cp {} {}: copying between boxes is not supported; copy to the host first",
                args.src,
                args.dst
            )
        }
        (Side::Host(_), Side::Host(_)) => {
            bail!(
                "cp {} {}: one of SRC and DST must be BOX:PATH (a path in a box)",
                args.src,
                args.dst
            )
        }
    };
    if box_path.is_empty() {
        bail!("{key}: names no path in the box (write {key}:/path)");
    }
    let runtime = open_runtime(global)?;
    let litebox = runtime.get(&key).await?;
    if copy_in {
        litebox.copy_in(&host, &box_path).await?;
    } else {
        let report = litebox.copy_out(&box_path, &host).await?;
        // A box's device nodes and FIFOs are never made on the host: say what was left out.
        for path in &report.special_paths {
            eprintln!(
                "boxlite: skipped the special file {path:?} (device nodes and FIFOs are not copied out of a box)"
            );
        }
        let unnamed = report
            .specials_skipped
            .saturating_sub(report.special_paths.len() as u64);
        if unnamed > 0 {
            eprintln!("boxlite: skipped {unnamed} more special files");
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sides() {
        assert_eq!(
            side("web:/etc/hosts"),
            Side::Box {
                key: "web".into(),
                path: "/etc/hosts".into()
            }
        );
        assert_eq!(side("./a:b"), Side::Host("./a:b".into()));
        assert_eq!(side("/tmp/x"), Side::Host("/tmp/x".into()));
        assert_eq!(side(":x"), Side::Host(":x".into()));
    }
}
