//! Host tools the tasks need, installed from Debian's archive when missing (as root).

use std::process::Command;

use anyhow::{Result, bail};

use crate::sh;

/// Makes sure each `(command, Debian package)` is available, installing missing packages.
pub fn ensure(tools: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<&str> = tools
        .iter()
        .filter(|(cmd, _)| !on_path(cmd))
        .map(|(_, pkg)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !rustix::process::geteuid().is_root() {
        bail!(
            "missing tools; install them with: sudo apt-get install {}",
            missing.join(" ")
        );
    }
    eprintln!("installing {} from the Debian archive", missing.join(" "));
    sh::run(Command::new("apt-get").args(["update", "-qq"]))?;
    sh::run(
        Command::new("apt-get")
            .args(["install", "-y", "-qq"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

fn on_path(cmd: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(cmd).is_file()))
}
