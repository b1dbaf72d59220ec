//! `cargo xtask bench volume`: a host directory over virtio-fs against the box's own disk and
//! against copying the data in with `boxlite cp`.
//!
//! On one running box of the demo's Debian image with a bind volume at `/vol`, interleaved per
//! round, page caches dropped in the guest and on the host before each read: (a) reading a 1 GiB
//! file sequentially (`dd bs=1M`) from the volume and from the box's disk; (b) creating 10,000
//! small files (then `sync`) in the volume and on the box's disk; (c) `boxlite cp` of the same
//! 1 GiB file and of a 10,000-file tree into the box, the way to get data in without a volume.
//! Times inside the box come from the guest's clock around the work, so boot and exec overhead
//! are not in them. Target from the issue: (a) on virtio-fs ≥ 50% of the box disk's rate.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Args as ClapArgs;

use super::host::{loadavg, machine};
use super::stats::{median, ms};
use crate::demo::{self, IMAGE_NAME};
use crate::{guest, kernel, sh, virtiofsd};

/// The sequential-read target (virtio-fs over box disk), from the issue.
const READ_TARGET: f64 = 0.5;
/// The big file's size.
const BIG_BYTES: usize = 1 << 30;
/// How many small files each round creates.
const SMALL_FILES: usize = 10_000;
/// The box the benchmark runs in.
const BOX: &str = "bench-volume";

/// Arguments of `cargo xtask bench volume`.
#[derive(ClapArgs)]
pub struct Args {
    /// Rounds (each measures every contender once; medians reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Write the results to this Markdown file as well as stdout.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// The `boxlite` command on the benchmark's home.
struct Cli {
    program: PathBuf,
    home: PathBuf,
    kernel: PathBuf,
    initramfs: PathBuf,
    virtiofsd: PathBuf,
}

impl Cli {
    /// Runs `boxlite ARGS` to success; how long it took, and its stdout.
    fn timed(&self, args: &[&str]) -> Result<(Duration, String)> {
        let mut cmd = Command::new(&self.program);
        cmd.arg("--home")
            .arg(&self.home)
            .arg("--kernel")
            .arg(&self.kernel)
            .arg("--initramfs")
            .arg(&self.initramfs)
            .env("BOXLITE_VIRTIOFSD", &self.virtiofsd)
            .args(args)
            .stdin(Stdio::null());
        let start = Instant::now();
        let out = cmd
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
        Ok((took, String::from_utf8_lossy(&out.stdout).into_owned()))
    }

    /// Runs `script` in the box; what it printed.
    fn sh(&self, script: &str) -> Result<String> {
        Ok(self.timed(&["exec", BOX, "sh", "-c", script])?.1)
    }

    /// Runs `work` in the box between two readings of the guest's clock; the time between.
    fn guest_timed(&self, work: &str) -> Result<Duration> {
        let script = format!("a=$(date +%s%N); {work}; b=$(date +%s%N); echo $((b-a))");
        let out = self.sh(&script)?;
        let ns: u64 = out
            .trim()
            .lines()
            .last()
            .unwrap_or("")
            .parse()
            .with_context(|| format!("the box printed {out:?}, not nanoseconds"))?;
        Ok(Duration::from_nanos(ns))
    }

    /// Drops the page caches in the box and on the host, so each read reads.
    fn drop_caches(&self) -> Result<()> {
        std::fs::write("/proc/sys/vm/drop_caches", "3").context("dropping the host's caches")?;
        self.sh("sync; echo 3 > /proc/sys/vm/drop_caches")?;
        Ok(())
    }
}

/// Samples of each contender.
#[derive(Default)]
struct Samples {
    read_volume: Vec<Duration>,
    read_disk: Vec<Duration>,
    small_volume: Vec<Duration>,
    small_disk: Vec<Duration>,
    cp_big: Vec<Duration>,
    cp_small: Vec<Duration>,
}

/// Runs the benchmark and prints (and optionally writes) the results.
pub fn run(args: Args) -> Result<()> {
    ensure!(args.rounds > 0, "--rounds must be at least 1");
    ensure!(
        rustix::process::geteuid().is_root(),
        "the benchmark drops the host's page cache, which needs root"
    );
    let kernel = kernel::build(&kernel::Args::default())?.join("vmlinux");
    let initramfs = guest::build()?.initramfs;
    let virtiofsd = virtiofsd::ensure()?;
    let layout = demo::demo_layout()?;
    sh::run(sh::cargo().args(["build", "--release", "--quiet", "-p", "cli"]))?;
    let scratch = tempfile::Builder::new().prefix("bv").tempdir_in("/tmp")?;
    let cli = Cli {
        program: demo::target_dir().join("release/boxlite"),
        home: scratch.path().join("home"),
        kernel,
        initramfs,
        virtiofsd,
    };
    let load_before = loadavg();
    cli.timed(&["image", "import", crate::image::path_str(&layout)?])?;
    let vol = scratch.path().join("vol");
    progress("writing the 1 GiB file and the 10,000-file tree");
    write_fixtures(&vol)?;
    let _ = cli.timed(&["rm", "-f", BOX]);
    let mount = format!("{}:/vol", vol.display());
    cli.timed(&[
        "create",
        "--engine",
        "qemu",
        "--name",
        BOX,
        "--disk-size",
        "4",
        "-v",
        &mount,
        IMAGE_NAME,
    ])?;
    cli.timed(&["start", BOX])?;
    let result = measure(&cli, &args, &vol);
    cli.timed(&["rm", "-f", BOX])?;
    let samples = result?;
    progress("");
    let report = report(&samples, &args, &load_before);
    print!("{report}");
    if let Some(out) = &args.out {
        std::fs::write(out, &report).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}

/// The rounds, on the running box.
fn measure(cli: &Cli, args: &Args, vol: &Path) -> Result<Samples> {
    let mut samples = Samples::default();
    cli.sh("dd if=/vol/big of=/root/big bs=1M status=none && sync")?;
    let small = |dir: &str| {
        format!(
            "mkdir {dir} && cd {dir} && n=0; while [ $n -lt {SMALL_FILES} ]; do : > f$n; \
             n=$((n+1)); done; sync"
        )
    };
    for round in 0..args.rounds {
        progress(&format!("round {}/{}", round + 1, args.rounds));
        cli.drop_caches()?;
        samples
            .read_volume
            .push(cli.guest_timed("dd if=/vol/big of=/dev/null bs=1M status=none")?);
        cli.drop_caches()?;
        samples
            .read_disk
            .push(cli.guest_timed("dd if=/root/big of=/dev/null bs=1M status=none")?);
        samples
            .small_volume
            .push(cli.guest_timed(&small(&format!("/vol/small{round}")))?);
        samples
            .small_disk
            .push(cli.guest_timed(&small(&format!("/root/small{round}")))?);
        cli.sh(&format!("rm -rf /vol/small{round} /root/small{round}"))?;
        cli.drop_caches()?;
        let big = vol.join("big");
        let into = format!("{BOX}:/root/cp-big");
        samples
            .cp_big
            .push(cli.timed(&["cp", crate::image::path_str(&big)?, &into])?.0);
        let tree = vol.join("tree");
        let into = format!("{BOX}:/root/cp-tree");
        samples
            .cp_small
            .push(cli.timed(&["cp", crate::image::path_str(&tree)?, &into])?.0);
        cli.sh("rm -rf /root/cp-big /root/cp-tree; sync")?;
    }
    Ok(samples)
}

/// The 1 GiB file (incompressible bytes) and the 10,000-file tree `boxlite cp` copies.
fn write_fixtures(vol: &Path) -> Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(vol.join("tree"))?;
    let mut file = std::io::BufWriter::new(std::fs::File::create(vol.join("big"))?);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut chunk = vec![0u8; 1 << 20];
    for _ in 0..BIG_BYTES / chunk.len() {
        for word in chunk.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        file.write_all(&chunk)?;
    }
    file.flush()?;
    for i in 0..SMALL_FILES {
        std::fs::write(vol.join(format!("tree/f{i}")), i.to_string())?;
    }
    Ok(())
}

/// The Markdown report.
fn report(s: &Samples, args: &Args, load_before: &str) -> String {
    let rate = |d: Duration| BIG_BYTES as f64 / (1 << 20) as f64 / d.as_secs_f64().max(1e-9);
    let (rv, rd) = (median(&s.read_volume), median(&s.read_disk));
    let (sv, sd) = (median(&s.small_volume), median(&s.small_disk));
    let (cb, cs) = (median(&s.cp_big), median(&s.cp_small));
    let read_ratio = rate(rv) / rate(rd);
    let mut out = String::new();
    let _ = writeln!(out, "# bench volume\n");
    let _ = writeln!(
        out,
        "Host: {}. Load before: {load_before}, after: {}. Engine: qemu (TCG here unless \
         the host has hardware KVM); virtiofsd {}; medians of {} rounds; page caches dropped \
         in the guest and on the host before each read.\n",
        machine(),
        loadavg(),
        virtiofsd::VERSION,
        args.rounds
    );
    let _ = writeln!(out, "| measure | virtio-fs volume | box disk | ratio |");
    let _ = writeln!(out, "|---|---|---|---|");
    let _ = writeln!(
        out,
        "| read 1 GiB sequentially (MiB/s) | {:.0} | {:.0} | {:.2} (target ≥ {READ_TARGET}: {}) |",
        rate(rv),
        rate(rd),
        read_ratio,
        if read_ratio >= READ_TARGET {
            "met"
        } else {
            "not met"
        }
    );
    let _ = writeln!(
        out,
        "| create {SMALL_FILES} small files + sync (ms) | {} | {} | {:.2}x the time |",
        ms(sv),
        ms(sd),
        sv.as_secs_f64() / sd.as_secs_f64().max(1e-9)
    );
    let _ = writeln!(
        out,
        "\n| getting data into the box | time (ms) | vs. the volume |"
    );
    let _ = writeln!(out, "|---|---|---|");
    let _ = writeln!(
        out,
        "| `boxlite cp` of the 1 GiB file in | {} | {:.2}x reading it from the volume |",
        ms(cb),
        cb.as_secs_f64() / rv.as_secs_f64().max(1e-9)
    );
    let _ = writeln!(
        out,
        "| `boxlite cp` of a {SMALL_FILES}-file tree in | {} | (a volume shows it at once) |",
        ms(cs)
    );
    let _ = writeln!(
        out,
        "\nReading the figures: a sequential read crosses to the daemon in 1 MiB requests, so \
         virtio-fs comes close to the box's own disk. Creating a file is a FUSE round trip to \
         virtiofsd each (open, create, release; no writeback cache, so the host has every file \
         when the call returns), where ext4 in the guest batches them in its journal: small \
         files are several times slower on a volume, and a box that makes many should make \
         them on its own disk. `boxlite cp` streams a tar through the agent's channel and \
         writes it to the box's disk: a volume skips that copy entirely."
    );
    out
}

/// A one-line status on a terminal (nothing otherwise); empty clears it.
fn progress(what: &str) {
    super::host::progress("bench volume", what);
}
