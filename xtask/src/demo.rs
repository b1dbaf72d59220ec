//! `cargo xtask demo`: the main job — from nothing to a command's output inside a box.
//!
//! Builds (each cached) the guest kernel, the agent initramfs, a two-layer Debian image (a
//! debootstrap minbase tree plus a layer with a whiteout, an opaque directory and new files) and
//! the `boxlite` command; links the kernel and initramfs into the demo's state directory, where
//! the command finds them; imports the image with `boxlite image import`; then boots boxes with
//! `boxlite run --rm` and shows what runs in them. No registry is involved.
//!
//! The state directory defaults to `/var/tmp/boxlite-demo`, outside the checkout and kept, so
//! a repeat run finds the image imported and its base disk built.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use clap::Args as ClapArgs;
use oci_layers::{Compression, LayoutBuilder};

use crate::image::{cache_dir, debian_minbase, path_str};
use crate::{deps, guest, kernel, link, sh};

/// Arguments of `cargo xtask demo`.
#[derive(ClapArgs)]
pub struct Args {
    /// State directory for the demo [default: /var/tmp/boxlite-demo, kept between runs].
    #[arg(long)]
    home: Option<PathBuf>,
}

/// The demo's state directory: outside the checkout, kept, and short, because a box's
/// sockets live at `<home>/boxes/<64-hex id>/agent.sock` and a Unix socket path must fit in
/// 107 bytes (under `~/.cache/boxlite-xtask` it would not).
const DEFAULT_HOME: &str = "/var/tmp/boxlite-demo";

/// Name the demo image is imported under.
pub const IMAGE_NAME: &str = "debian-demo:bookworm";

/// What the second box prints: the guest kernel, a file of the image's second layer, and
/// that layer's whiteout at work.
const LAYER_SHOWCASE: &str = "uname -a; echo; echo \"/etc/motd (from layer 2):\"; cat /etc/motd; \
     if test -e /usr/share/doc; then echo \"/usr/share/doc: present\"; \
     else echo \"/usr/share/doc: absent (whited out by layer 2)\"; fi";

/// Builds everything, imports the image and runs two boxes; prints a timing summary.
pub fn run(args: Args) -> Result<()> {
    let start = Instant::now();
    // What a box needs on the host at run time (the builds below check their own tools).
    deps::ensure(&[
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("mkfs.ext4", "e2fsprogs"),
    ])?;
    let kernel = kernel::build(&kernel::Args::default())?.join("vmlinux");
    let initramfs = guest::build()?.initramfs;
    let layout = demo_layout()?;
    // A dev build: `cargo xtask` has just built its own dev dependency graph, most of which
    // the CLI shares, so only a few crates compile; a release build would compile the whole
    // graph again, optimised (minutes on 2 cores), to save milliseconds on a guest boot.
    sh::run(sh::cargo().args(["build", "--quiet", "-p", "cli"]))?;
    let boxlite = target_dir().join("debug/boxlite");
    let home = args.home.unwrap_or_else(|| PathBuf::from(DEFAULT_HOME));
    // Into the demo's own state directory, which the runtime searches first: the demo runs
    // the kernel and agent it just built, whatever the per-user directory holds.
    link::into_dir(
        &home.join("guest"),
        &[("vmlinux", &kernel), (guest::INITRAMFS, &initramfs)],
    )?;
    let built = start.elapsed();

    let cli = Cli {
        program: boxlite,
        home: home.clone(),
    };
    let import = timed(|| sh::run(&mut cli.command(&["image", "import", path_str(&layout)?])))?;
    sh::run(&mut cli.command(&["image", "ls"]))?;

    println!();
    let first = timed(|| cli.show(&["run", "--rm", IMAGE_NAME, "cat", "/etc/os-release"]))?;
    println!();
    let second = timed(|| cli.show(&["run", "--rm", IMAGE_NAME, "sh", "-c", LAYER_SHOWCASE]))?;

    let secs = |d: Duration| format!("{:.1} s", d.as_secs_f64());
    println!("\n--- timings ---");
    println!(
        "build (kernel, agent, image, boxlite; cached): {}",
        secs(built)
    );
    println!(
        "image import:                                  {}",
        secs(import)
    );
    println!(
        "box 1 (run --rm … cat /etc/os-release):        {}  (on a first run: with the image's base disk)",
        secs(first)
    );
    println!(
        "box 2 (run --rm … sh -c …):                    {}",
        secs(second)
    );
    println!(
        "\nTry it: {} --home {} run --rm -it {IMAGE_NAME} bash",
        cli.program.display(),
        home.display()
    );
    Ok(())
}

/// The `boxlite` command on the demo's state directory.
struct Cli {
    program: PathBuf,
    home: PathBuf,
}

impl Cli {
    /// `boxlite --home HOME ARGS`, finding the kernel and initramfs in `HOME/guest` whatever
    /// the caller's environment says.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.arg("--home").arg(&self.home).args(args);
        for var in ["BOXLITE_HOME", "BOXLITE_KERNEL", "BOXLITE_INITRAMFS"] {
            cmd.env_remove(var);
        }
        cmd
    }

    /// Runs `boxlite ARGS` with its output shown, after the command line as a user would
    /// type it (arguments with spaces quoted).
    fn show(&self, args: &[&str]) -> Result<()> {
        let quoted: Vec<String> = args
            .iter()
            .map(|a| {
                if a.contains(' ') {
                    format!("'{}'", a.replace('\'', r"'\''"))
                } else {
                    (*a).to_owned()
                }
            })
            .collect();
        eprintln!("$ boxlite {}", quoted.join(" "));
        let status = self.command(args).status()?;
        ensure!(
            status.success(),
            "boxlite {} failed: {status}",
            args.join(" ")
        );
        Ok(())
    }
}

/// Runs `f` and returns how long it took.
fn timed(f: impl FnOnce() -> Result<()>) -> Result<Duration> {
    let start = Instant::now();
    f()?;
    Ok(start.elapsed())
}

/// Where cargo puts this workspace's build outputs.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| sh::workspace_root().join("target"), PathBuf::from)
}

/// The demo image as an OCI layout, built once and cached.
pub fn demo_layout() -> Result<PathBuf> {
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
