//! `cargo xtask bench rootfs`: rootfs assembly, ours against the peers, side by side.
//!
//! One multi-layer Debian image (~200 MB, ~7,000 entries: a debootstrap minbase tree split into
//! three layers, plus two layers with whiteouts, an opaque directory, replaced and re-created
//! files) is assembled on a loop-mounted XFS (reflink) and ext4 filesystem by:
//! (a) ours, cold: empty layer cache; (b) ours, warm: layers cached, new destination;
//! (c) the reference design as shell-outs: per layer `tar -x`, whiteouts, `cp -a --reflink=auto`;
//! (d) `umoci unpack`. Each is run several times, interleaved, after a `sync`; medians reported.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Args as ClapArgs;
use oci_layers::rootfs::Method;
use oci_layers::{Compression, LayerCache, LayoutBuilder, Store};

use super::mount::{Fs, LoopMount};
use super::stats::{median, ms};
use crate::image::{cache_dir, debian_minbase, path_str};
use crate::sh;

/// The baseline: the reference design's stacking, as shell commands.
const BASELINE_SCRIPT: &str = include_str!("baseline-stack.sh");
/// The reference name of the benchmark image in its layout.
const IMAGE_REF: &str = "bench";
/// Pause before each timed run for background filesystem work to finish.
const SETTLE: Duration = Duration::from_millis(500);
/// Size of each scratch filesystem: room for the store, cache and four destinations at once.
const SCRATCH_GIB: u64 = 8;

/// Arguments of `cargo xtask bench rootfs`.
#[derive(ClapArgs)]
pub struct Args {
    /// Runs of each contender per filesystem (the median is reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Write the results table to this Markdown file as well as stdout.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// One filesystem's medians.
struct Row {
    fs: Fs,
    cold: Duration,
    warm: Duration,
    baseline: Duration,
    umoci: Duration,
    warm_strategy: String,
}

/// Runs the benchmark and prints (and optionally writes) the table.
pub fn run(args: Args) -> Result<()> {
    ensure!(args.runs > 0, "--runs must be at least 1");
    crate::deps::ensure(&[
        ("mkfs.xfs", "xfsprogs"),
        ("mkfs.ext4", "e2fsprogs"),
        ("umoci", "umoci"),
        ("zstd", "zstd"),
    ])?;
    let layout = bench_layout()?;
    let (entries, bytes) = tree_size(&debian_minbase()?)?;
    let scratch = tempfile::Builder::new()
        .prefix("boxlite-bench-")
        .tempdir_in("/var/tmp")?;
    let mut rows = Vec::new();
    for fs in [Fs::XfsReflink, Fs::Ext4] {
        rows.push(bench_on(
            fs,
            &layout,
            &scratch.path().join(format!("{fs:?}")),
            args.runs,
        )?);
    }
    let table = render(&rows, entries, bytes, args.runs)?;
    println!("{table}");
    if let Some(out) = args.out {
        std::fs::write(&out, &table).with_context(|| format!("writing {out:?}"))?;
    }
    Ok(())
}

fn bench_on(fs: Fs, layout: &Path, dir: &Path, runs: usize) -> Result<Row> {
    std::fs::create_dir_all(dir)?;
    let mnt = LoopMount::new(dir, fs, SCRATCH_GIB)?;
    let root = mnt.path();
    // Everything the contenders read lives on the filesystem under test.
    let local_layout = root.join("layout");
    fastcopy::copy_tree(layout, &local_layout, &Default::default(), &|_| false)?;
    let home = root.join("home");
    let store = Store::open(&home)?;
    let record = store.import(&local_layout, Some(IMAGE_REF), false)?;
    let blobs: Vec<PathBuf> = record
        .layers
        .iter()
        .map(|l| store.blob_path(&l.digest))
        .collect();
    let cache = LayerCache::open(&home)?;

    let (mut cold, mut warm, mut baseline, mut umoci) = (vec![], vec![], vec![], vec![]);
    let mut warm_strategy = String::new();
    for run in 0..runs {
        eprintln!("{}: run {}/{runs}", fs.name(), run + 1);
        for diff_id in cache.list()? {
            cache.remove(&diff_id)?;
        }
        let dest = root.join(format!("ours-cold-{run}"));
        cold.push(timed(|| {
            let report = store.unpack(IMAGE_REF, &dest, false)?;
            ensure!(
                report.method == Method::CopyStack,
                "cold run used {:?}",
                report.method
            );
            ensure!(
                report.extracted == blobs.len(),
                "cold run found layers cached"
            );
            Ok(())
        })?);
        fastcopy::remove_tree(&dest)?;

        let dest = root.join(format!("ours-warm-{run}"));
        warm.push(timed(|| {
            let report = store.unpack(IMAGE_REF, &dest, false)?;
            ensure!(report.extracted == 0, "warm run extracted layers");
            warm_strategy = report
                .copy
                .strategy()
                .map_or("-".to_string(), |s| format!("{s:?}"));
            Ok(())
        })?);
        let ours = dest;

        let dest = root.join(format!("baseline-{run}"));
        let work = root.join(format!("baseline-scratch-{run}"));
        baseline.push(timed(|| {
            let mut cmd = Command::new("bash");
            cmd.arg("-c").arg(BASELINE_SCRIPT).arg("baseline-stack");
            cmd.arg(&dest).arg(&work).args(&blobs);
            sh::output(&mut cmd).map(drop)
        })?);
        if run == 0 {
            compare_trees(&ours, &dest)
                .with_context(|| format!("ours and the baseline differ on {}", fs.name()))?;
        }
        fastcopy::remove_tree(&ours)?;
        fastcopy::remove_tree(&dest)?;

        let bundle = root.join(format!("umoci-{run}"));
        let image = format!("{}:{IMAGE_REF}", path_str(&local_layout)?);
        umoci.push(timed(|| {
            sh::output(Command::new("umoci").args([
                "unpack",
                "--image",
                &image,
                path_str(&bundle)?,
            ]))
            .map(drop)
        })?);
        fastcopy::remove_tree(&bundle)?;
    }
    Ok(Row {
        fs,
        cold: median(&cold),
        warm: median(&warm),
        baseline: median(&baseline),
        umoci: median(&umoci),
        warm_strategy,
    })
}

/// Times `f` after flushing dirty pages and letting the filesystems' background work (XFS
/// inode inactivation after the previous contender's tree was removed) settle, so one
/// contender's leftovers do not bill the next.
fn timed(f: impl FnOnce() -> Result<()>) -> Result<Duration> {
    rustix::fs::sync();
    std::thread::sleep(SETTLE);
    rustix::fs::sync();
    let start = Instant::now();
    f()?;
    Ok(start.elapsed())
}

/// The benchmark image as an OCI layout, built once and cached.
fn bench_layout() -> Result<PathBuf> {
    let layout = cache_dir().join("bench-image-v2");
    if layout.join("index.json").exists() {
        return Ok(layout);
    }
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
    let changes = work.path().join("changes");
    write_changes_layer(&changes)?;
    let fixups = work.path().join("fixups");
    write_fixups_layer(&fixups)?;
    let tmp = work.path().join("layout");
    LayoutBuilder::new()
        .layer_dir(&rest, Compression::Gzip)
        .layer_dir(&usr_lib, Compression::Gzip)
        .layer_dir(&usr_rest, Compression::Gzip)
        .layer_dir(&changes, Compression::Gzip)
        .layer_dir(&fixups, Compression::Gzip)
        .cmd(["/bin/bash"])
        .write_layout(&tmp, IMAGE_REF)?;
    std::fs::rename(&tmp, &layout).with_context(|| format!("publishing {layout:?}"))?;
    Ok(layout)
}

/// Layer 4: whiteouts of a big directory and of files, an opaque directory, replaced files and
/// a few MB of new content — what an `apt-get purge` + app install layer looks like.
fn write_changes_layer(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir.join("usr/share"))?;
    std::fs::write(dir.join("usr/share/.wh.doc"), b"")?;
    std::fs::create_dir_all(dir.join("usr/bin"))?;
    std::fs::write(dir.join("usr/bin/.wh.perl"), b"")?;
    std::fs::create_dir_all(dir.join("etc/apt"))?;
    std::fs::write(dir.join("etc/apt/.wh..wh..opq"), b"")?;
    std::fs::write(
        dir.join("etc/apt/sources.list"),
        b"deb http://deb.debian.org/debian bookworm main\n",
    )?;
    // Not /etc/os-release: that is a symlink in Debian, and `cp -a` in the baseline writes a
    // replacing file *through* it (into usr/lib/os-release) instead of replacing the link, so
    // the trees could not be compared. Ours replaces the link, as the OCI spec says.
    std::fs::write(dir.join("etc/debian_version"), b"12.99-boxlite\n")?;
    let app = dir.join("opt/app");
    std::fs::create_dir_all(&app)?;
    for i in 0..64 {
        let data: Vec<u8> = (0..64 * 1024)
            .map(|b: u32| (b.wrapping_mul(31) ^ i) as u8)
            .collect();
        std::fs::write(app.join(format!("blob-{i:02}.bin")), data)?;
    }
    Ok(())
}

/// Layer 5: re-creates something layer 4 removed and removes something layer 4 added.
fn write_fixups_layer(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir.join("usr/share/doc/boxlite"))?;
    std::fs::write(
        dir.join("usr/share/doc/boxlite/README"),
        b"re-created after a whiteout\n",
    )?;
    std::fs::create_dir_all(dir.join("opt/app"))?;
    std::fs::write(dir.join("opt/app/.wh.blob-00.bin"), b"")?;
    std::fs::write(dir.join("opt/app/VERSION"), b"2\n")?;
    Ok(())
}

/// Entries and bytes of regular files below `root`.
fn tree_size(root: &Path) -> Result<(u64, u64)> {
    let (mut entries, mut bytes) = (0, 0);
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            entries += 1;
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                bytes += meta.len();
            }
        }
    }
    Ok((entries, bytes))
}

/// Fails with the first differences if the two trees differ in entries or metadata.
///
/// Directory mtimes are not compared: the baseline deletes whiteout markers from its scratch
/// copy of a layer, which stamps those directories with the current time.
fn compare_trees(a: &Path, b: &Path) -> Result<()> {
    let listing = |root: &Path| -> Result<String> {
        sh::output(Command::new("find").arg(root).args([
            "-mindepth",
            "1",
            "-printf",
            "%P %y %m %U %G %s %l",
            "(",
            "-type",
            "d",
            "-printf",
            "\\n",
            "-o",
            "-printf",
            " %T@\\n",
            ")",
        ]))
        .map(|out| {
            let mut lines: Vec<&str> = out.lines().collect();
            lines.sort_unstable();
            lines.join("\n")
        })
    };
    let (la, lb) = (listing(a)?, listing(b)?);
    if la != lb {
        let diff: Vec<String> = la
            .lines()
            .zip(lb.lines())
            .filter(|(x, y)| x != y)
            .take(5)
            .map(|(x, y)| format!("  {x}\n  {y}"))
            .collect();
        bail!(
            "{} vs {} entries; first differences:\n{}",
            la.lines().count(),
            lb.lines().count(),
            diff.join("\n")
        );
    }
    Ok(())
}

fn render(rows: &[Row], entries: u64, bytes: u64, runs: usize) -> Result<String> {
    let mut s = String::new();
    writeln!(s, "# Rootfs assembly benchmark\n")?;
    writeln!(
        s,
        "`cargo xtask bench rootfs`, {runs} runs each, interleaved, medians in ms."
    )?;
    writeln!(
        s,
        "Image: Debian bookworm minbase ({entries} entries, {:.0} MB of files) as 5 gzip layers \
         (3 split from the tree, then whiteouts/opaque dir/new files, then re-creations).\n",
        bytes as f64 / 1e6
    )?;
    writeln!(s, "Machine: {}\n", machine()?)?;
    writeln!(
        s,
        "| filesystem | (a) ours cold | (b) ours warm | (c) tar+cp baseline | (d) umoci unpack | (c)/(a) | (c)/(b) | (d)/(a) | warm data strategy |"
    )?;
    writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---|")?;
    for r in rows {
        let ratio = |x: Duration, y: Duration| x.as_secs_f64() / y.as_secs_f64().max(1e-9);
        writeln!(
            s,
            "| {} | {} | {} | {} | {} | {:.1}x | {:.1}x | {:.1}x | {} |",
            r.fs.name(),
            ms(r.cold),
            ms(r.warm),
            ms(r.baseline),
            ms(r.umoci),
            ratio(r.baseline, r.cold),
            ratio(r.baseline, r.warm),
            ratio(r.umoci, r.cold),
            r.warm_strategy
        )?;
    }
    Ok(s)
}

/// CPU model, core count, memory and kernel of this machine.
fn machine() -> Result<String> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split(':').nth(1))
        })
        .unwrap_or("unknown CPU")
        .trim()
        .to_string();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib >> 20);
    let kernel = sh::output(Command::new("uname").arg("-r"))?;
    Ok(format!(
        "{model}, {cores} cores, {mem_gib} GiB, Linux {}, scratch filesystems loop-mounted on a sparse file",
        kernel.trim()
    ))
}
