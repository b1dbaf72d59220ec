//! The Rust virtiofsd that bind volumes run, built once from the crate registry into the
//! cache (`cargo install --locked`, keyed by its version) with the Debian packages it links.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::{deps, image, sh};

/// The virtiofsd release the tests and benchmarks use: 1.14 has `--readonly`, `--fd` and
/// `--rlimit-nofile`, which the supervisor passes.
pub const VERSION: &str = "1.14.0";
/// What its build links: libseccomp (its own filter) and libcap-ng (capability handling).
const BUILD_PACKAGES: &[&str] = &["libseccomp-dev", "libcap-ng-dev", "pkg-config"];

/// The cached virtiofsd, built first if it is not there.
pub fn ensure() -> Result<PathBuf> {
    let root = image::cache_dir().join("virtiofsd").join(VERSION);
    let binary = root.join("bin/virtiofsd");
    if binary.is_file() {
        return Ok(binary);
    }
    deps::ensure_packages(BUILD_PACKAGES)?;
    eprintln!(
        "building virtiofsd {VERSION} (once; cached in {})",
        root.display()
    );
    // Installed beside, then renamed: a build killed halfway leaves no binary to trust.
    let partial = root.with_extension("partial");
    let _ = std::fs::remove_dir_all(&partial);
    sh::run(
        sh::cargo()
            .args([
                "install",
                "--locked",
                "--quiet",
                "virtiofsd",
                "--version",
                VERSION,
            ])
            .arg("--root")
            .arg(&partial)
            // Its own target dir: the workspace's would be rebuilt for nothing.
            .env("CARGO_TARGET_DIR", partial.join("target")),
    )?;
    let _ = std::fs::remove_dir_all(partial.join("target"));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::rename(&partial, &root)
        .with_context(|| format!("moving virtiofsd into {}", root.display()))?;
    Ok(binary)
}
