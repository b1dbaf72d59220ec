//! `cargo xtask demo`: the main job at this stage — a real Debian image into a rootfs.
//!
//! Builds (cached) a two-layer image from a debootstrap minbase tree plus a layer with a
//! whiteout, an opaque directory and new files, imports it with the `boxlite` binary, and
//! assembles its rootfs.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use clap::Args as ClapArgs;
use oci_layers::{Compression, LayoutBuilder};

use crate::image::{cache_dir, debian_minbase, path_str};
use crate::sh;

/// Arguments of `cargo xtask demo`.
#[derive(ClapArgs)]
pub struct Args {
    /// State directory for the demo (default: a fresh temporary one).
    #[arg(long)]
    home: Option<PathBuf>,
    /// Where to assemble the rootfs (default: inside the temporary directory).
    #[arg(long)]
    dest: Option<PathBuf>,
}

/// Name the demo image is imported under.
const IMAGE_NAME: &str = "debian-demo:bookworm";

/// Builds the demo image, imports it and unpacks it with the `boxlite` command.
pub fn run(args: Args) -> Result<()> {
    sh::run(sh::cargo().args(["build", "--release", "-p", "cli"]))?;
    let boxlite = sh::workspace_root().join("target/release/boxlite");
    let layout = demo_layout()?;
    let scratch = tempfile::tempdir()?;
    let home = args.home.unwrap_or_else(|| scratch.path().join("home"));
    let dest = args.dest.unwrap_or_else(|| scratch.path().join("rootfs"));
    let boxlite_cmd = |args: &[&str]| {
        let mut cmd = Command::new(&boxlite);
        cmd.arg("--home").arg(&home).args(args);
        cmd
    };
    sh::run(&mut boxlite_cmd(&["image", "import", path_str(&layout)?]))?;
    sh::run(&mut boxlite_cmd(&["image", "ls"]))?;
    sh::run(&mut boxlite_cmd(&[
        "image",
        "unpack",
        IMAGE_NAME,
        path_str(&dest)?,
    ]))?;
    let os_release = std::fs::read_to_string(dest.join("etc/os-release"))
        .with_context(|| format!("reading {dest:?}/etc/os-release"))?;
    let motd = std::fs::read_to_string(dest.join("etc/motd"))?;
    println!("\n--- {}/etc/os-release ---\n{os_release}", dest.display());
    println!("--- {}/etc/motd ---\n{motd}", dest.display());
    println!(
        "usr/share/doc (whited out by layer 2) present: {}",
        dest.join("usr/share/doc/apt").exists()
    );
    Ok(())
}

/// The demo image as an OCI layout, built once and cached.
fn demo_layout() -> Result<PathBuf> {
    let layout = cache_dir().join("demo-image-v1");
    if layout.join("index.json").exists() {
        return Ok(layout);
    }
    let base = debian_minbase()?;
    let work = tempfile::tempdir_in(cache_dir())?;
    let top = work.path().join("layer2");
    write_top_layer(&top)?;
    let tmp = work.path().join("layout");
    LayoutBuilder::new()
        .layer_dir(&base, Compression::Gzip)
        .layer_dir(&top, Compression::Zstd)
        .env(["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"])
        .cmd(["/bin/bash"])
        .write_layout(&tmp, IMAGE_NAME)?;
    std::fs::rename(&tmp, &layout).with_context(|| format!("publishing {layout:?}"))?;
    Ok(layout)
}

/// The second layer: a whiteout, an opaque directory and new content.
fn write_top_layer(top: &Path) -> Result<()> {
    std::fs::create_dir_all(top.join("usr/share"))?;
    std::fs::write(top.join("usr/share/.wh.doc"), b"")?;
    std::fs::create_dir_all(top.join("etc/apt/sources.list.d"))?;
    std::fs::write(top.join("etc/apt/sources.list.d/.wh..wh..opq"), b"")?;
    std::fs::write(
        top.join("etc/apt/sources.list.d/boxlite.list"),
        b"# added by the boxlite demo image\n",
    )?;
    std::fs::write(top.join("etc/motd"), b"hello from a boxlite image layer\n")?;
    Ok(())
}
