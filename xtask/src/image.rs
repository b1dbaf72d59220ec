//! Test images built from real Debian trees, cached outside the checkout.
//!
//! `debootstrap --variant=minbase` gives a real ~200 MB, ~7,000-entry Debian tree in about
//! half a minute; it is built once per (suite, variant) under the cache directory and reused.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::sh;

/// The Debian suite the test images are made of (the host's own, so its keyring verifies it).
pub const SUITE: &str = "bookworm";
/// Where debootstrap downloads from (Debian's package archive is reachable from every machine here).
pub const MIRROR: &str = "http://deb.debian.org/debian";

/// The cache directory for expensive build artefacts, outside any checkout.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BOXLITE_XTASK_CACHE") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/var/tmp"));
    base.join("boxlite-xtask")
}

/// A `debootstrap --variant=minbase` tree of [`SUITE`], built on first use and cached.
pub fn debian_minbase() -> Result<PathBuf> {
    let dir = cache_dir().join(format!("debootstrap-{SUITE}-minbase"));
    if dir.join("etc/os-release").exists() {
        return Ok(dir);
    }
    if !rustix::process::geteuid().is_root() {
        bail!("building the Debian test tree needs root (debootstrap); run as root");
    }
    crate::deps::ensure(&[("debootstrap", "debootstrap")])?;
    std::fs::create_dir_all(cache_dir())?;
    let tmp = cache_dir().join(format!(
        "debootstrap-{SUITE}-minbase.tmp-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    eprintln!("building a Debian {SUITE} minbase tree with debootstrap (cached in {dir:?})");
    sh::run(Command::new("debootstrap").args([
        "--variant=minbase",
        SUITE,
        path_str(&tmp)?,
        MIRROR,
    ]))?;
    // Drop the apt download cache: it is not part of an image a user would build.
    let archives = tmp.join("var/cache/apt/archives");
    for entry in std::fs::read_dir(&archives).with_context(|| format!("{archives:?}"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "deb") {
            std::fs::remove_file(path)?;
        }
    }
    std::fs::rename(&tmp, &dir).with_context(|| format!("publishing {dir:?}"))?;
    Ok(dir)
}

/// A path as UTF-8, for command lines.
pub fn path_str(path: &Path) -> Result<&str> {
    path.to_str()
        .with_context(|| format!("path {path:?} is not UTF-8"))
}
