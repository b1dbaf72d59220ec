//! `cargo xtask bench first-box`: from a new image to its first exec, against the gunzip
//! floor of its layers and the designs a runtime could use instead.
//!
//! Two images, built once and cached: a 3-layer Debian image like the held-out one
//! (~200 MB, ~7,000 entries) and a larger one (≥ 500 MB, ≥ 8 layers: Debian plus host trees).
//! For each, on a loop-mounted ext4 filesystem, every run on a fresh home with the page cache
//! dropped before each contender:
//! (a) ours: `image import` then the first `run --rm IMAGE true` (the base disk is written
//!     as EROFS straight from the layers), then (b) a second `run --rm` (one boot);
//! (c) the gunzip floor: `gzip -dc` of every layer blob to /dev/null;
//! (d) the previous design's base disk: `image unpack` (layer cache, then the rootfs tree) and
//!     `mkfs.ext4 -d` of that tree, the three copies;
//! (e) the reference design's cp-stacking (per layer `tar -x`, whiteouts, `cp -a`), which
//!     `image unpack` (f) is compared with.
//! Bytes written are the process tree's `write_bytes` from /proc (children's added when
//! reaped). Medians of the runs; ratios in the report.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Args as ClapArgs;
use oci_layers::{Compression, LayoutBuilder};

use super::host::{loadavg, machine};
use super::mount::{Fs, LoopMount};
use super::stats::{median, ms};
use crate::image::{cache_dir, debian_minbase, path_str};
use crate::{demo, guest, kernel, sh};

/// The reference design's stacking, as shell commands (shared with `bench rootfs`).
const BASELINE_SCRIPT: &str = include_str!("baseline-stack.sh");
/// The first-box target from the issue: at most this times (gunzip floor + one boot).
const FIRST_BOX_TARGET: f64 = 1.5;
/// The `image unpack` target from the issue: at least this times faster than cp-stacking.
const UNPACK_TARGET: f64 = 3.0;
/// The scratch filesystem's size: two images' store, trees and disks at once.
const SCRATCH_GIB: u64 = 16;
/// Host trees that make the large image's extra layers (each a layer at its own path).
const LARGE_TREES: &[&str] = &[
    "usr/lib/x86_64-linux-gnu",
    "usr/share/doc",
    "usr/share/locale",
    "usr/include",
    "usr/lib/python3",
    "usr/share/man",
    "usr/lib/gcc",
];
/// The large image's least size and layer count, from the issue.
const LARGE_MIN_BYTES: u64 = 500 << 20;
const LARGE_MIN_LAYERS: usize = 8;

/// Arguments of `cargo xtask bench first-box`.
#[derive(ClapArgs)]
pub struct Args {
    /// Runs per image (medians reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Write the results to this Markdown file as well as stdout.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// One image's samples.
#[derive(Default)]
struct Samples {
    import: Vec<Duration>,
    first: Vec<Duration>,
    second: Vec<Duration>,
    gunzip: Vec<Duration>,
    previous: Vec<Duration>,
    baseline: Vec<Duration>,
    unpack: Vec<Duration>,
    ours_bytes: Vec<u64>,
    previous_bytes: Vec<u64>,
    baseline_bytes: Vec<u64>,
}

/// What an image is.
struct Bench {
    name: &'static str,
    layout: PathBuf,
    layers: usize,
    bytes: u64,
}

/// Runs the benchmark and prints (and optionally writes) the report.
pub fn run(args: Args) -> Result<()> {
    ensure!(args.runs > 0, "--runs must be at least 1");
    ensure!(
        rustix::process::geteuid().is_root(),
        "the benchmark mounts a scratch filesystem and drops the page cache: run it as root"
    );
    let kernel = kernel::build(&kernel::Args::default())?.join("vmlinux");
    let initramfs = guest::build()?.initramfs;
    sh::run(sh::cargo().args(["build", "--release", "--quiet", "-p", "cli"]))?;
    let program = demo::target_dir().join("release/boxlite");
    let images = [held_out_layout()?, large_layout()?];
    let scratch = tempfile::Builder::new().prefix("bf").tempdir_in("/tmp")?;
    let mnt = LoopMount::new(scratch.path(), Fs::Ext4, SCRATCH_GIB)?;
    let load_before = loadavg();
    let mut results = Vec::new();
    for image in &images {
        let mut samples = Samples::default();
        for run in 0..args.runs {
            progress(&format!("{}: run {}/{}", image.name, run + 1, args.runs));
            one_run(
                &program,
                &kernel,
                &initramfs,
                image,
                mnt.path(),
                &mut samples,
            )?;
        }
        results.push(samples);
    }
    progress("");
    let report = report(&images, &results, &args, &load_before);
    print!("{report}");
    if let Some(out) = &args.out {
        std::fs::write(out, &report).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}

/// One run of every contender on `image`, in a fresh home under `root`.
fn one_run(
    program: &Path,
    kernel: &Path,
    initramfs: &Path,
    image: &Bench,
    root: &Path,
    s: &mut Samples,
) -> Result<()> {
    let home = root.join("home");
    let _ = std::fs::remove_dir_all(&home);
    let cli = |args: &[&str]| -> Command {
        let mut cmd = Command::new(program);
        cmd.arg("--home")
            .arg(&home)
            .arg("--kernel")
            .arg(kernel)
            .arg("--initramfs")
            .arg(initramfs)
            .args(args)
            .stdin(Stdio::null());
        cmd
    };
    let layout = path_str(&image.layout)?;
    let run_true = [
        "run",
        "--rm",
        "--network",
        "off",
        "--engine",
        "qemu",
        "bench",
        "true",
    ];

    // (a) ours: import, then the first box.
    drop_caches()?;
    let before = written();
    s.import
        .push(timed(cli(&["image", "import", layout, "--name", "bench"]))?);
    s.first.push(timed(cli(&run_true))?);
    s.ours_bytes.push(written() - before);
    // (b) the second box: one boot.
    drop_caches()?;
    s.second.push(timed(cli(&run_true))?);

    // (c) the gunzip floor of the same layers.
    let blobs = layer_blobs(&image.layout)?;
    drop_caches()?;
    let start = Instant::now();
    for blob in &blobs {
        let status = Command::new("gzip")
            .arg("-dc")
            .arg(blob)
            .stdout(Stdio::null())
            .status()?;
        ensure!(status.success(), "gzip -dc {}", blob.display());
    }
    s.gunzip.push(start.elapsed());

    // (f) `image unpack`, cold (the import left no layer cache).
    let tree = root.join("unpacked");
    drop_caches()?;
    let before = written();
    let unpack = timed(cli(&["image", "unpack", "bench", path_str(&tree)?]))?;
    s.unpack.push(unpack);
    // (d) the previous design: that tree (layer cache + rootfs) made an ext4 disk by mkfs.
    let disk = root.join("previous.ext4");
    let size = tree_bytes(&tree)? * 3 / 2 + (256 << 20);
    std::fs::File::create(&disk)?.set_len(size)?;
    let mut mkfs = Command::new("mkfs.ext4");
    mkfs.args(["-q", "-F", "-b", "4096", "-I", "256", "-m", "0", "-d"])
        .arg(&tree)
        .arg(&disk);
    let mkfs_time = timed(mkfs)?;
    s.previous.push(unpack + mkfs_time);
    s.previous_bytes.push(written() - before);
    std::fs::remove_file(&disk)?;
    fastcopy::remove_tree(&tree)?;

    // (e) cp-stacking.
    let dest = root.join("baseline");
    let work = root.join("baseline-scratch");
    drop_caches()?;
    let before = written();
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(BASELINE_SCRIPT)
        .arg("baseline-stack")
        .arg(&dest)
        .arg(&work)
        .args(&blobs);
    s.baseline.push(timed(cmd)?);
    s.baseline_bytes.push(written() - before);
    fastcopy::remove_tree(&dest)?;
    std::fs::remove_dir_all(&home)?;
    Ok(())
}

/// Runs `cmd` to success after a `sync`; how long it took.
fn timed(mut cmd: Command) -> Result<Duration> {
    rustix::fs::sync();
    let start = Instant::now();
    let out = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("starting {}", sh::display(&cmd)))?;
    let took = start.elapsed();
    if !out.status.success() {
        bail!(
            "{} failed: {}\n{}",
            sh::display(&cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(took)
}

/// Flushes and drops the page cache, so every contender reads from disk.
fn drop_caches() -> Result<()> {
    rustix::fs::sync();
    std::fs::write("/proc/sys/vm/drop_caches", "3").context("dropping the page cache")
}

/// Bytes this process and its reaped children caused to be written (dirtied), from /proc.
fn written() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The bytes of the files under `dir`.
fn tree_bytes(dir: &Path) -> Result<u64> {
    let out = sh::output(Command::new("du").args(["-sb"]).arg(dir))?;
    out.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .context("reading du's output")
}

/// The layer blobs of the layout's one image, bottom first.
fn layer_blobs(layout: &Path) -> Result<Vec<PathBuf>> {
    let blob = |digest: &str| -> Result<PathBuf> {
        let (alg, hex) = digest.split_once(':').context("a digest without ':'")?;
        Ok(layout.join("blobs").join(alg).join(hex))
    };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json"))?)?;
    let manifest = index["manifests"][0]["digest"]
        .as_str()
        .context("index.json names no manifest")?;
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(blob(manifest)?)?)?;
    manifest["layers"]
        .as_array()
        .context("a manifest without layers")?
        .iter()
        .map(|l| blob(l["digest"].as_str().unwrap_or_default()))
        .collect()
}

/// The 3-layer image: a debootstrap minbase split as `bench rootfs` splits it.
fn held_out_layout() -> Result<Bench> {
    let layout = cache_dir().join("bench-first-box-3-v1");
    if !layout.join("index.json").exists() {
        let base = debian_minbase()?;
        let work = tempfile::tempdir_in(cache_dir())?;
        let split = |name: &str, keep: &(dyn Fn(&str) -> bool + Sync)| -> Result<PathBuf> {
            let dir = work.path().join(name);
            let exclude = |rel: &Path| !keep(rel.to_str().unwrap_or(""));
            fastcopy::copy_tree(&base, &dir, &Default::default(), &exclude)?;
            Ok(dir)
        };
        let rest = split("rest", &|p| p != "usr")?;
        let usr_lib = split("usr-lib", &|p| p == "usr" || p.starts_with("usr/lib"))?;
        let usr_rest = split("usr-rest", &|p| p == "usr" || !p.starts_with("usr/lib"))?;
        let tmp = work.path().join("layout");
        LayoutBuilder::new()
            .layer_dir(&rest, Compression::Gzip)
            .layer_dir(&usr_lib, Compression::Gzip)
            .layer_dir(&usr_rest, Compression::Gzip)
            .cmd(["/bin/bash"])
            .write_layout(&tmp, "latest")?;
        std::fs::rename(&tmp, &layout)?;
    }
    describe("3-layer Debian (held-out style)", layout)
}

/// The large image: the minbase, then a layer per host tree of [`LARGE_TREES`].
fn large_layout() -> Result<Bench> {
    let layout = cache_dir().join("bench-first-box-large-v1");
    if !layout.join("index.json").exists() {
        let base = debian_minbase()?;
        let work = tempfile::tempdir_in(cache_dir())?;
        let mut builder = LayoutBuilder::new().layer_dir(&base, Compression::Gzip);
        for (i, tree) in LARGE_TREES.iter().enumerate() {
            let tar = work.path().join(format!("{i}.tar"));
            sh::run(
                Command::new("tar")
                    .args(["-C", "/", "--ignore-failed-read", "-cf"])
                    .arg(&tar)
                    .arg(tree),
            )?;
            builder = builder.layer_tar_file(&tar, Compression::Gzip);
        }
        let tmp = work.path().join("layout");
        builder.cmd(["/bin/bash"]).write_layout(&tmp, "latest")?;
        std::fs::rename(&tmp, &layout)?;
    }
    let bench = describe("large (Debian + 7 host trees)", layout)?;
    ensure!(
        bench.layers >= LARGE_MIN_LAYERS && bench.bytes >= LARGE_MIN_BYTES,
        "the large image has {} layers and {} MB of layers; the host lacks the trees to make \
         it (delete {} after installing more)",
        bench.layers,
        bench.bytes >> 20,
        cache_dir().join("bench-first-box-large-v1").display()
    );
    Ok(bench)
}

/// `layout`'s layer count and uncompressed size (the gunzipped blobs).
fn describe(name: &'static str, layout: PathBuf) -> Result<Bench> {
    let blobs = layer_blobs(&layout)?;
    let mut bytes = 0;
    for blob in &blobs {
        let out = Command::new("sh")
            .arg("-c")
            .arg("gzip -dc \"$1\" | wc -c")
            .arg("sh")
            .arg(blob)
            .output()?;
        bytes += String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<u64>()
            .unwrap_or(0);
    }
    Ok(Bench {
        name,
        layout,
        layers: blobs.len(),
        bytes,
    })
}

/// The Markdown report.
fn report(images: &[Bench], results: &[Samples], args: &Args, load_before: &str) -> String {
    let mb = |b: u64| format!("{:.0} MB", b as f64 / 1e6);
    let med = |v: &[u64]| {
        let mut v = v.to_vec();
        v.sort_unstable();
        v.get(v.len() / 2).copied().unwrap_or(0)
    };
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
    let mut out = String::new();
    let _ = writeln!(out, "# bench first-box\n");
    let _ = writeln!(
        out,
        "Host: {}. Load before: {load_before}, after: {}. Engine: qemu (TCG unless the host has \
         hardware KVM). Medians of {} runs, each on a fresh home on a loop-mounted ext4, the page \
         cache dropped before each contender.\n",
        machine(),
        loadavg(),
        args.runs
    );
    for (image, s) in images.iter().zip(results) {
        let (import, first, second) = (median(&s.import), median(&s.first), median(&s.second));
        let gunzip = median(&s.gunzip);
        let new_image = import + first;
        let floor = gunzip + second;
        let _ = writeln!(
            out,
            "## {} ({} layers, {} uncompressed)\n",
            image.name,
            image.layers,
            mb(image.bytes)
        );
        let _ = writeln!(out, "| measure | ms |\n|---|---|");
        let _ = writeln!(out, "| `image import` | {} |", ms(import));
        let _ = writeln!(
            out,
            "| first `run --rm IMAGE true` (base disk written) | {} |",
            ms(first)
        );
        let _ = writeln!(
            out,
            "| second `run --rm IMAGE true` (one boot) | {} |",
            ms(second)
        );
        let _ = writeln!(
            out,
            "| gunzip floor (`gzip -dc` of every layer) | {} |",
            ms(gunzip)
        );
        let _ = writeln!(
            out,
            "| previous design's base disk: `image unpack` + `mkfs.ext4 -d` | {} |",
            ms(median(&s.previous))
        );
        let _ = writeln!(out, "| `image unpack` (cold) | {} |", ms(median(&s.unpack)));
        let _ = writeln!(
            out,
            "| cp-stacking reference | {} |",
            ms(median(&s.baseline))
        );
        let first_ratio = ratio(new_image, floor);
        let unpack_ratio = ratio(median(&s.baseline), median(&s.unpack));
        let _ = writeln!(
            out,
            "\n- import → first exec: {} ms = **{:.2}x** (gunzip floor + one boot = {} ms; \
             target ≤ {FIRST_BOX_TARGET}: {}).",
            ms(new_image),
            first_ratio,
            ms(floor),
            if first_ratio <= FIRST_BOX_TARGET {
                "met"
            } else {
                "not met"
            }
        );
        let _ = writeln!(
            out,
            "- preparing the image (first run less one boot): {} ms, against {} ms for the \
             previous design's unpack + mkfs: **{:.1}x** faster.",
            ms(first.saturating_sub(second)),
            ms(median(&s.previous)),
            ratio(median(&s.previous), first.saturating_sub(second))
        );
        let _ = writeln!(
            out,
            "- `image unpack` vs cp-stacking: **{unpack_ratio:.2}x** (target ≥ {UNPACK_TARGET}: {}).",
            if unpack_ratio >= UNPACK_TARGET {
                "met"
            } else {
                "not met"
            }
        );
        let _ = writeln!(
            out,
            "- disk bytes written: ours (import + first box) {}; previous design (unpack + mkfs) \
             {}; cp-stacking {}.\n",
            mb(med(&s.ours_bytes)),
            mb(med(&s.previous_bytes)),
            mb(med(&s.baseline_bytes))
        );
    }
    out
}

/// A one-line status on a terminal (nothing otherwise); empty clears it.
fn progress(what: &str) {
    super::host::progress("bench first-box", what);
}
