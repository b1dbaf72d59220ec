//! `cargo xtask bench pull`: pulling an image from a registry, boxlite against skopeo + umoci.
//!
//! A local `docker-registry` (the registry-fixture crate) serves one generated image: six gzip
//! layers, 175 MB compressed, 250 MB of tar, 16,000 entries — thousands of small text files,
//! binary-like libraries, large incompressible assets and a layer of whiteouts. Each run,
//! interleaved (the order alternating), from cold (a fresh boxlite home and OCI directory, the
//! page cache dropped) and one step at a time:
//! (a) `boxlite pull REF` then `boxlite image unpack REF DEST`;
//! (b) `skopeo copy docker://REF oci:DIR:v1` then `umoci unpack --image DIR:v1 BUNDLE`.
//! (1) pull + unpack and (2) pull alone come from the same timed steps; (3) the peak RSS and
//! CPU time of every step come from `wait4`'s rusage of that child alone. The rootfs trees of
//! the first run are compared, so both are known to have done the same work.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs::File;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Args as ClapArgs;
use registry_fixture::Registry;
use registry_fixture::images::{Compression, Credentials, Entry, ImageSpec, Layer, Pusher};

use super::host::{self, loadavg};
use super::stats::{median, ms};
use crate::{demo, sh};

/// The benchmark image's repository and tag in the registry.
const REPO: &str = "bench/big";
const TAG: &str = "v1";
/// Targets: the speed-up (b)/(a) of pull + unpack and of pull alone, and the most peak RSS
/// `boxlite pull` may reach.
const UNPACK_TARGET: f64 = 2.0;
const PULL_TARGET: f64 = 1.0;
const RSS_TARGET_KIB: u64 = 64 << 10;
/// Writing `3` here drops the page cache, dentries and inodes (root only).
const DROP_CACHES: &str = "/proc/sys/vm/drop_caches";

/// Arguments of `cargo xtask bench pull`.
#[derive(ClapArgs)]
pub struct Args {
    /// Runs of each contender (medians reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Write the results to this Markdown file as well as stdout.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Internal: only build the image, push it to this registry (`127.0.0.1:PORT`) and print
    /// its sizes. The benchmark runs this as a child: building the image takes ~0.5 GB, and
    /// Linux starts each child's peak RSS at its parent's, which would hide boxlite's.
    #[arg(long, hide = true, value_name = "HOST")]
    push_to: Option<String>,
}

/// Runs the benchmark and prints (and optionally writes) the results.
pub fn run(args: Args) -> Result<()> {
    if let Some(host) = &args.push_to {
        let stats = push_image(host)?;
        println!("{}", serde_json::to_string(&stats)?);
        return Ok(());
    }
    ensure!(args.runs > 0, "--runs must be at least 1");
    crate::deps::ensure(&[
        ("skopeo", "skopeo"),
        ("umoci", "umoci"),
        ("docker-registry", "docker-registry"),
    ])?;
    // Release, as measured code should be; `bench` already built this tool so.
    sh::run(sh::cargo().args(["build", "--release", "--quiet", "-p", "cli"]))?;
    let registry = Registry::builder()
        .start()
        .context("starting docker-registry")?;
    let image = push_in_child(&registry)?;
    let bench = Bench {
        boxlite: demo::target_dir().join("release/boxlite"),
        cache: Cache::detect(),
        scratch: tempfile::Builder::new()
            .prefix("boxlite-bench-pull-")
            .tempdir_in("/var/tmp")?,
        reference: format!("{}/{REPO}:{TAG}", registry.host()),
    };
    let load_before = loadavg();
    let mut results = Results::default();
    for run in 0..args.runs {
        eprintln!("bench pull: run {}/{}", run + 1, args.runs);
        bench.run_once(run, &mut results)?;
    }
    let report = Report {
        floor_kib: bench.rss_floor()?,
        runs: args.runs,
        image,
        cache: bench.cache,
        results,
        load: (load_before, loadavg()),
    };
    let text = report.render()?;
    println!("{text}");
    if let Some(out) = &args.out {
        std::fs::write(out, &text).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}

/// What every run needs.
struct Bench {
    boxlite: PathBuf,
    cache: Cache,
    scratch: tempfile::TempDir,
    reference: String,
}

impl Bench {
    /// One run of each contender, in an order that alternates so neither always goes first
    /// (after the other's writeback, or with the registry's files cached by the other).
    fn run_once(&self, run: usize, results: &mut Results) -> Result<()> {
        let dir = self.scratch.path().join(format!("run-{run}"));
        std::fs::create_dir_all(&dir)?;
        let ours = dir.join("boxlite-rootfs");
        let bundle = dir.join("umoci-bundle");
        if run % 2 == 0 {
            results.boxlite.push(self.boxlite(&dir, &ours)?);
            results.skopeo.push(self.skopeo(&dir, &bundle)?);
        } else {
            results.skopeo.push(self.skopeo(&dir, &bundle)?);
            results.boxlite.push(self.boxlite(&dir, &ours)?);
        }
        // Both must have built the same tree, or the times compare different work.
        if run == 0 {
            compare_trees(&ours, &bundle.join("rootfs"))
                .context("boxlite's rootfs and umoci's differ")?;
        }
        fastcopy::remove_tree(&dir)?;
        Ok(())
    }

    /// (a): `boxlite pull`, then `boxlite image unpack`, on a fresh home.
    fn boxlite(&self, dir: &Path, dest: &Path) -> Result<Pipeline> {
        let home = dir.join("boxlite-home");
        let cmd = |args: &[&str]| {
            let mut cmd = Command::new(&self.boxlite);
            cmd.arg("--home").arg(&home).args(args);
            cmd
        };
        let pull = self.step(
            &mut cmd(&["pull", &self.reference]),
            &dir.join("boxlite-pull.log"),
            true,
        )?;
        let mut unpack = cmd(&["image", "unpack", &self.reference]);
        unpack.arg(dest);
        let unpack = self.step(&mut unpack, &dir.join("boxlite-unpack.log"), false)?;
        Ok(Pipeline { pull, unpack })
    }

    /// (b): `skopeo copy` into a fresh OCI layout, then `umoci unpack` of it.
    fn skopeo(&self, dir: &Path, bundle: &Path) -> Result<Pipeline> {
        let layout = format!("{}:{TAG}", path_str(&dir.join("oci"))?);
        let mut copy = Command::new("skopeo");
        copy.args(["copy", "--src-tls-verify=false"])
            .arg(format!("docker://{}", self.reference))
            .arg(format!("oci:{layout}"));
        let pull = self.step(&mut copy, &dir.join("skopeo.log"), true)?;
        let mut unpack = Command::new("umoci");
        // As root umoci keeps owners as the image says, as boxlite does; otherwise it needs
        // --rootless.
        unpack.args(["unpack", "--image", &layout]).arg(bundle);
        if !rustix::process::geteuid().is_root() {
            unpack.arg("--rootless");
        }
        let unpack = self.step(&mut unpack, &dir.join("umoci.log"), false)?;
        Ok(Pipeline { pull, unpack })
    }

    /// The peak RSS `true` is reported with when spawned as the contenders are: what Linux
    /// carries over from this process (a child's peak RSS starts at its parent's high-water
    /// mark), below which no measurement can go.
    fn rss_floor(&self) -> Result<u64> {
        let log = self.scratch.path().join("true.log");
        Ok(measure(&mut Command::new("true"), &log)?.max_rss_kib)
    }

    /// Settles the page cache as [`Cache::settle`] says, then runs and measures `cmd`.
    fn step(&self, cmd: &mut Command, log: &Path, cold: bool) -> Result<Measured> {
        self.cache.settle(cold)?;
        measure(cmd, log)
    }
}

/// How the page cache is made the same for both contenders.
#[derive(Clone, Copy)]
enum Cache {
    /// `sync`, then drop the page cache before each pull (root).
    Drop,
    /// Only `sync`: the registry's blobs stay cached for both alike.
    SyncOnly,
}

impl Cache {
    fn detect() -> Cache {
        let writable = std::fs::OpenOptions::new().write(true).open(DROP_CACHES);
        if writable.is_ok() {
            Cache::Drop
        } else {
            Cache::SyncOnly
        }
    }

    /// Flushes dirty pages before every step, so the previous step's (or contender's)
    /// writeback does not bill this one; before a pull (`cold`) also drops the page cache, so
    /// each pipeline starts cold. Not between pull and unpack: a pipeline runs as a user's
    /// would, the unpack finding what its pull just wrote.
    fn settle(self, cold: bool) -> Result<()> {
        rustix::fs::sync();
        if cold && matches!(self, Cache::Drop) {
            std::fs::write(DROP_CACHES, "3").context("dropping the page cache")?;
        }
        Ok(())
    }

    fn describe(self) -> &'static str {
        match self {
            Cache::Drop => {
                "`sync` before every step; page cache dropped (`echo 3 > \
                 /proc/sys/vm/drop_caches`) before each pull, not between a pull and its unpack"
            }
            Cache::SyncOnly => {
                "`sync` before every step; the page cache could not be dropped (not root), so \
                 the registry's blobs were cached for both contenders alike"
            }
        }
    }
}

/// One step's cost.
#[derive(Clone, Copy)]
struct Measured {
    wall: Duration,
    /// User + system CPU time.
    cpu: Duration,
    max_rss_kib: u64,
}

/// One contender's run.
struct Pipeline {
    pull: Measured,
    unpack: Measured,
}

/// Runs `cmd` to success with its output in `log`; its wall time from spawn to exit, its CPU
/// time and peak RSS.
fn measure(cmd: &mut Command, log: &Path) -> Result<Measured> {
    let out = File::create(log)?;
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    let start = Instant::now();
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {}", sh::display(cmd)))?;
    let (status, usage) = wait4(child)?;
    let wall = start.elapsed();
    if !status.success() {
        let output = std::fs::read_to_string(log).unwrap_or_default();
        bail!("{} failed: {status}\n{output}", sh::display(cmd));
    }
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    Ok(Measured {
        wall,
        cpu: time(usage.ru_utime) + time(usage.ru_stime),
        // Linux reports it in KiB.
        max_rss_kib: usage.ru_maxrss as u64,
    })
}

/// Reaps `child` with wait4(2), which unlike `Child::wait` returns its rusage: its own peak
/// RSS, where getrusage(RUSAGE_CHILDREN) would give the largest of every child reaped so far.
fn wait4(child: Child) -> Result<(ExitStatus, libc::rusage)> {
    let pid = libc::pid_t::try_from(child.id())?;
    let mut status = 0;
    // SAFETY: rusage is a plain C struct of integers, for which all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: both pointers are to live locals of the right types; `pid` is our child,
        // unreaped (we own its `Child` and never wait on it), so it names no other process.
        let got = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if got == pid {
            return Ok((ExitStatus::from_raw(status), usage));
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err).context("wait4");
        }
    }
}

/// Every run's steps, per contender.
#[derive(Default)]
struct Results {
    boxlite: Vec<Pipeline>,
    skopeo: Vec<Pipeline>,
}

/// Sizes of the pushed image.
#[derive(serde::Serialize, serde::Deserialize)]
struct ImageStats {
    layers: usize,
    compressed: u64,
    uncompressed: u64,
    entries: usize,
}

/// Runs this program's `--push-to` to build and push the image; the image's sizes.
fn push_in_child(registry: &Registry) -> Result<ImageStats> {
    let start = Instant::now();
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["bench", "pull", "--push-to", &registry.host()]);
    let stats: ImageStats = serde_json::from_str(&sh::output(&mut cmd)?)?;
    eprintln!(
        "bench pull: built and pushed {} layers, {} compressed, in {:.1} s",
        stats.layers,
        megabytes(stats.compressed),
        start.elapsed().as_secs_f64()
    );
    Ok(stats)
}

/// Builds the benchmark image's layers and pushes them to `host`.
fn push_image(host: &str) -> Result<ImageStats> {
    let (layers, entries) = build_layers()?;
    let stats = ImageStats {
        layers: layers.len(),
        compressed: layers.iter().map(Layer::size).sum(),
        uncompressed: layers.iter().map(Layer::tar_len).sum(),
        entries,
    };
    ensure!(
        stats.layers >= 5 && stats.compressed >= 100_000_000,
        "the benchmark image must have at least 5 layers and 100 MB"
    );
    Pusher::new(host, Credentials::None).push_image(REPO, TAG, &ImageSpec::new(layers))?;
    Ok(stats)
}

/// The image's layers, bottom first, built in parallel (they are independent), and how many
/// entries they hold.
fn build_layers() -> Result<(Vec<Layer>, usize)> {
    let builders: [fn() -> Result<Tree>; 6] = [
        base_layer,
        small_files_layer,
        libs_layer,
        assets_layer,
        app_layer,
        changes_layer,
    ];
    let trees: Vec<Tree> = parallel(builders.map(|b| move || b()))?;
    let entries = trees.iter().map(|t| t.entries.len()).sum();
    let layers = parallel(trees.into_iter().map(|t| move || t.layer()))?;
    Ok((layers, entries))
}

/// Runs each job on its own thread; their results in order.
fn parallel<T: Send>(
    jobs: impl IntoIterator<Item = impl FnOnce() -> Result<T> + Send>,
) -> Result<Vec<T>> {
    std::thread::scope(|s| {
        let handles: Vec<_> = jobs.into_iter().map(|job| s.spawn(job)).collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("a layer builder panicked"))?
            })
            .collect()
    })
}

/// Layer 1, a distribution's base: 3,000 text files of 0.5–24 KB (docs, configs, scripts) in
/// 150 package directories, and symlinks between them.
fn base_layer() -> Result<Tree> {
    let mut rng = Rng::new(1);
    let mut tree = Tree::default();
    for i in 0..3000 {
        let len = rng.range(512, 24 << 10);
        let path = format!("usr/share/doc/pkg-{:03}/file-{i}.txt", i % 150);
        tree.file(&path, rng.text(len), 0o644);
    }
    for i in 0..200 {
        let target = format!("../share/doc/pkg-{:03}/file-{i}.txt", i % 150);
        tree.symlink(&format!("usr/bin/tool-{i}"), &target);
    }
    for i in 0..100 {
        let len = rng.range(64, 2048);
        tree.file(
            &format!("etc/conf.d/service-{i}.conf"),
            rng.text(len),
            0o644,
        );
    }
    Ok(tree)
}

/// Layer 2, a language package tree (`node_modules`, `site-packages`): 8,000 files of
/// 64 B–4 KB in 400 packages; mostly per-entry cost.
fn small_files_layer() -> Result<Tree> {
    let mut rng = Rng::new(2);
    let mut tree = Tree::default();
    for i in 0..8000 {
        let len = rng.range(64, 4096);
        let path = format!(
            "opt/app/node_modules/pkg-{:03}/lib/{}/mod-{i}.js",
            i % 400,
            i % 7
        );
        tree.file(&path, rng.text(len), 0o644);
    }
    Ok(tree)
}

/// Layer 3, shared libraries: 200 binary-like files of 16 KB–768 KB (about 2:1 under gzip).
fn libs_layer() -> Result<Tree> {
    let mut rng = Rng::new(3);
    let mut tree = Tree::default();
    for i in 0..200 {
        let len = rng.range(16 << 10, 768 << 10);
        let path = format!("usr/lib/x86_64-linux-gnu/lib{i}.so.1");
        tree.file(&path, rng.binary(len), 0o755);
    }
    Ok(tree)
}

/// Layer 4, already-compressed assets (models, media): four 16 MB files and forty 256 KB ones
/// of incompressible bytes.
fn assets_layer() -> Result<Tree> {
    let mut rng = Rng::new(4);
    let mut tree = Tree::default();
    for i in 0..4 {
        tree.file(
            &format!("opt/app/assets/model-{i}.bin"),
            rng.bytes(16 << 20),
            0o644,
        );
    }
    for i in 0..40 {
        tree.file(
            &format!("opt/app/assets/img/img-{i}.jpg"),
            rng.bytes(256 << 10),
            0o644,
        );
    }
    Ok(tree)
}

/// Layer 5, the application: 600 source files, 40 binaries and two 6 MB data files.
fn app_layer() -> Result<Tree> {
    let mut rng = Rng::new(5);
    let mut tree = Tree::default();
    for i in 0..600 {
        let len = rng.range(256, 16 << 10);
        tree.file(
            &format!("opt/app/src/m{}/f-{i}.py", i % 30),
            rng.text(len),
            0o644,
        );
    }
    for i in 0..40 {
        let len = rng.range(32 << 10, 256 << 10);
        tree.file(&format!("opt/app/bin/app-{i}"), rng.binary(len), 0o755);
    }
    for i in 0..2 {
        tree.file(
            &format!("opt/app/data/blob-{i}.dat"),
            rng.bytes(6 << 20),
            0o644,
        );
    }
    Ok(tree)
}

/// Layer 6, a clean-up and config layer: whiteouts of a package directory and of files, an
/// opaque directory, and replaced files.
fn changes_layer() -> Result<Tree> {
    let mut rng = Rng::new(6);
    let mut tree = Tree::default();
    tree.file("usr/share/doc/.wh.pkg-007", Vec::new(), 0o644);
    for i in 0..20 {
        tree.file(
            &format!("usr/lib/x86_64-linux-gnu/.wh.lib{i}.so.1"),
            Vec::new(),
            0o644,
        );
    }
    tree.file("etc/conf.d/.wh..wh..opq", Vec::new(), 0o644);
    for i in 0..10 {
        let len = rng.range(64, 1024);
        tree.file(
            &format!("etc/conf.d/service-{i}.conf"),
            rng.text(len),
            0o600,
        );
    }
    for i in 0..50 {
        let len = rng.range(1 << 10, 8 << 10);
        tree.file(
            &format!("opt/app/src/m0/f-{}.py", i * 30),
            rng.text(len),
            0o644,
        );
    }
    Ok(tree)
}

/// A layer's entries, each directory listed once before what it holds.
#[derive(Default)]
struct Tree {
    entries: Vec<Entry>,
    dirs: BTreeSet<String>,
}

impl Tree {
    fn file(&mut self, path: &str, data: Vec<u8>, mode: u32) {
        self.parents(path);
        self.entries.push(Entry::File {
            path: path.into(),
            data,
            mode,
        });
    }

    fn symlink(&mut self, path: &str, target: &str) {
        self.parents(path);
        self.entries.push(Entry::Symlink {
            path: path.into(),
            target: target.into(),
        });
    }

    fn parents(&mut self, path: &str) {
        for (i, _) in path.match_indices('/') {
            let dir = &path[..i];
            if self.dirs.insert(dir.to_string()) {
                self.entries.push(Entry::Dir {
                    path: dir.into(),
                    mode: 0o755,
                });
            }
        }
    }

    fn layer(self) -> Result<Layer> {
        Layer::from_entries(&self.entries, Compression::Gzip)
    }
}

/// SplitMix64: seeded, so the image is the same on every run and machine.
struct Rng(u64);

/// Words for text-like content; a skewed choice among them compresses about 3:1 under gzip,
/// like source code and documentation.
const WORDS: [&str; 48] = [
    "the", "of", "and", "to", "in", "is", "for", "return", "self", "if", "else", "def", "const",
    "let", "value", "name", "config", "error", "result", "import", "from", "class", "function",
    "string", "buffer", "length", "index", "request", "response", "handler", "module", "export",
    "default", "options", "context", "message", "version", "package", "license", "data", "file",
    "path", "true", "false", "null", "none", "state", "event",
];

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo) as u64) as usize
    }

    /// `len` incompressible bytes.
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(len);
        out
    }

    /// `len` bytes of indented lines of words, some words with random digits.
    fn text(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 64);
        while out.len() < len {
            let indent = (self.next() % 4) as usize * 4;
            out.resize(out.len() + indent, b' ');
            for _ in 0..self.range(3, 12) {
                let r = self.next();
                // The product of two uniform picks favours the first words, as real text does.
                let word = ((r & 0xff) * ((r >> 8) & 0xff) * WORDS.len() as u64) >> 16;
                out.extend_from_slice(WORDS[word as usize].as_bytes());
                if r >> 60 == 0 {
                    out.extend_from_slice(format!("{}", (r >> 20) & 0xffff).as_bytes());
                }
                out.push(b' ');
            }
            out.push(b'\n');
        }
        out.truncate(len);
        out
    }

    /// `len` bytes shaped like machine code: 64-byte blocks that are random, repeat a recent
    /// block, or are mostly zero (padding, tables).
    fn binary(&mut self, len: usize) -> Vec<u8> {
        let mut out: Vec<u8> = Vec::with_capacity(len + 64);
        while out.len() < len {
            let start = out.len();
            match self.next() % 4 {
                0 | 1 => out.extend(self.bytes(64)),
                2 if start >= 4096 => {
                    let from = start - 64 * self.range(1, 64);
                    out.extend_from_within(from..from + 64);
                }
                _ => {
                    out.resize(start + 64, 0);
                    let at = start + self.range(0, 56);
                    out[at..at + 8].copy_from_slice(&self.next().to_le_bytes());
                }
            }
        }
        out.truncate(len);
        out
    }
}

/// Fails with the first differences if the two trees differ in entries, types, modes, owners,
/// file sizes and mtimes, or link targets.
fn compare_trees(a: &Path, b: &Path) -> Result<()> {
    let listing = |root: &Path| -> Result<Vec<String>> {
        let out = sh::output(Command::new("find").arg(root).args([
            "-mindepth",
            "1",
            "(",
            "-type",
            "f",
            "-printf",
            "%P %y %m %U %G %s %T@\\n",
            "-o",
            "-printf",
            "%P %y %m %U %G %l\\n",
            ")",
        ]))?;
        let mut lines: Vec<String> = out.lines().map(String::from).collect();
        lines.sort_unstable();
        Ok(lines)
    };
    let (la, lb) = (listing(a)?, listing(b)?);
    if la != lb {
        let only = |x: &[String], y: &[String]| -> Vec<String> {
            let y: BTreeSet<&String> = y.iter().collect();
            x.iter()
                .filter(|l| !y.contains(l))
                .take(5)
                .cloned()
                .collect()
        };
        bail!(
            "{} vs {} entries; only in {}: {:?}; only in {}: {:?}",
            la.len(),
            lb.len(),
            a.display(),
            only(&la, &lb),
            b.display(),
            only(&lb, &la)
        );
    }
    Ok(())
}

/// Everything measured, for the tables.
struct Report {
    floor_kib: u64,
    runs: usize,
    image: ImageStats,
    cache: Cache,
    results: Results,
    load: (String, String),
}

/// Medians of one step across runs, and the largest peak RSS.
struct Summary {
    wall: Duration,
    cpu: Duration,
    max_rss_kib: u64,
}

impl Summary {
    fn of(steps: impl Iterator<Item = Measured> + Clone) -> Summary {
        let walls: Vec<Duration> = steps.clone().map(|m| m.wall).collect();
        let cpus: Vec<Duration> = steps.clone().map(|m| m.cpu).collect();
        Summary {
            wall: median(&walls),
            cpu: median(&cpus),
            max_rss_kib: steps.map(|m| m.max_rss_kib).max().unwrap_or(0),
        }
    }
}

/// A contender's summaries: pull, unpack, and the two together (medians of per-run sums).
struct Contender {
    pull: Summary,
    unpack: Summary,
    total: Summary,
}

impl Contender {
    fn of(runs: &[Pipeline]) -> Contender {
        let sum = |p: &Pipeline| Measured {
            wall: p.pull.wall + p.unpack.wall,
            cpu: p.pull.cpu + p.unpack.cpu,
            max_rss_kib: p.pull.max_rss_kib.max(p.unpack.max_rss_kib),
        };
        Contender {
            pull: Summary::of(runs.iter().map(|p| p.pull)),
            unpack: Summary::of(runs.iter().map(|p| p.unpack)),
            total: Summary::of(runs.iter().map(sum)),
        }
    }
}

impl Report {
    fn render(&self) -> Result<String> {
        let ours = Contender::of(&self.results.boxlite);
        let peer = Contender::of(&self.results.skopeo);
        let mut s = String::new();
        self.render_intro(&mut s)?;
        writeln!(
            s,
            "| step | boxlite (ms) | skopeo / umoci (ms) | peer / boxlite | boxlite CPU (ms) | \
             peer CPU (ms) | boxlite peak RSS | peer peak RSS |"
        )?;
        writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|")?;
        let rows = [
            ("(1) pull + unpack", &ours.total, &peer.total),
            (
                "(2) pull alone: `boxlite pull` / `skopeo copy`",
                &ours.pull,
                &peer.pull,
            ),
            (
                "unpack alone: `boxlite image unpack` / `umoci unpack`",
                &ours.unpack,
                &peer.unpack,
            ),
        ];
        for (what, a, b) in rows {
            writeln!(
                s,
                "| {what} | {} | {} | {:.2}x | {} | {} | {} | {} |",
                ms(a.wall),
                ms(b.wall),
                ratio(b.wall, a.wall),
                ms(a.cpu),
                ms(b.cpu),
                mib(a.max_rss_kib),
                mib(b.max_rss_kib)
            )?;
        }
        writeln!(s)?;
        self.render_targets(&mut s, &ours, &peer)?;
        self.render_runs(&mut s)?;
        Ok(s)
    }

    /// Every run's wall times and pull RSS, so the spread behind the medians shows.
    fn render_runs(&self, s: &mut String) -> Result<()> {
        writeln!(
            s,
            "\nPer run (ms; boxlite first in odd runs, skopeo first in even):\n"
        )?;
        writeln!(
            s,
            "| run | `boxlite pull` | `boxlite image unpack` | `skopeo copy` | `umoci unpack` | \
             `boxlite pull` RSS | `skopeo copy` RSS |"
        )?;
        writeln!(s, "|---:|---:|---:|---:|---:|---:|---:|")?;
        let runs = self.results.boxlite.iter().zip(&self.results.skopeo);
        for (i, (a, b)) in runs.enumerate() {
            writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} |",
                i + 1,
                ms(a.pull.wall),
                ms(a.unpack.wall),
                ms(b.pull.wall),
                ms(b.unpack.wall),
                mib(a.pull.max_rss_kib),
                mib(b.pull.max_rss_kib)
            )?;
        }
        Ok(())
    }

    fn render_intro(&self, s: &mut String) -> Result<()> {
        let i = &self.image;
        writeln!(s, "# Pull benchmark\n")?;
        writeln!(
            s,
            "`cargo xtask bench pull --runs {}`: {} runs per contender, interleaved (order \
             alternating), each from a fresh boxlite home / OCI directory; medians of wall \
             time and user+system CPU time, largest peak RSS (`wait4` rusage) of any run.  ",
            self.runs, self.runs
        )?;
        writeln!(
            s,
            "Image: {} gzip layers, {} compressed, {} uncompressed, {} entries (small text \
             files, binary-like libraries, incompressible assets, whiteouts), served by \
             `docker-registry` on 127.0.0.1 over plain HTTP.  ",
            i.layers,
            megabytes(i.compressed),
            megabytes(i.uncompressed),
            i.entries
        )?;
        writeln!(s, "Page cache: {}.  ", self.cache.describe())?;
        writeln!(s, "Machine: {}.  ", machine())?;
        writeln!(
            s,
            "Load average before / after: {} / {}.\n",
            self.load.0, self.load.1
        )?;
        Ok(())
    }

    fn render_targets(&self, s: &mut String, ours: &Contender, peer: &Contender) -> Result<()> {
        let total = ratio(peer.total.wall, ours.total.wall);
        let pull = ratio(peer.pull.wall, ours.pull.wall);
        let rss = ours.pull.max_rss_kib;
        writeln!(
            s,
            "Targets: (1) pull + unpack ≥ {UNPACK_TARGET}x faster than skopeo + umoci: \
             **{total:.2}x**, {}.  ",
            verdict(total >= UNPACK_TARGET)
        )?;
        writeln!(
            s,
            "(2) `boxlite pull` no slower than `skopeo copy`: **{pull:.2}x**, {}.  ",
            verdict(pull >= PULL_TARGET)
        )?;
        writeln!(
            s,
            "(3) peak RSS of `boxlite pull` ≤ {}: **{}**, {} (skopeo: {}; the measurement's \
             floor, `true` spawned the same way: {}).",
            mib(RSS_TARGET_KIB),
            mib(rss),
            verdict(rss <= RSS_TARGET_KIB),
            mib(peer.pull.max_rss_kib),
            mib(self.floor_kib)
        )?;
        Ok(())
    }
}

fn ratio(x: Duration, y: Duration) -> f64 {
    x.as_secs_f64() / y.as_secs_f64().max(1e-9)
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "not met" }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn megabytes(bytes: u64) -> String {
    format!("{:.0} MB", bytes as f64 / 1e6)
}

fn path_str(path: &Path) -> Result<&str> {
    path.to_str()
        .with_context(|| format!("{} is not UTF-8", path.display()))
}

/// The host in words, with the filesystem the scratch and registry storage are on.
fn machine() -> String {
    let fs = sh::output(Command::new("findmnt").args(["-no", "FSTYPE", "-T", "/var/tmp"]))
        .unwrap_or_default();
    format!(
        "{}, scratch and registry storage on {}",
        host::machine(),
        fs.trim()
    )
}
