//! `cargo xtask bench boot`: booting a box through boxlite against booting the same VM raw.
//!
//! Side by side, interleaved, on the demo's Debian image: (a) `qemu-system-x86_64 -M microvm`
//! run directly with the arguments the runtime's qemu engine gives it (same kernel, initramfs,
//! disks and agent port), from spawn to the agent's hello on its socket, then killed;
//! (b) `boxlite run --rm IMAGE true` from spawn to exit, with the image's base disk already
//! built; (b) again as its steps (`create`, `start`, `exec`, `stop`, `rm`), to show where its
//! time goes. On one running box: (c) `boxlite exec BOX true` from spawn to exit, and
//! (c') `LiteBox::exec` of `true` through the library; its supervisor's and VM's memory, and
//! the boot time the supervisor measured. Targets from the issue: (b)/(a) ≤ 1.2, supervisor
//! ≤ 10 MiB RSS.

use std::fmt::Write as _;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use boxlite::internals::{self, Device, ResolvedEngine, VmSpec};
use boxlite::{
    BoxCommand, DEFAULT_CPUS, DEFAULT_DISK_SIZE_MIB, DEFAULT_MEMORY_MIB, EngineKind, Runtime,
    RuntimeOptions,
};
use clap::Args as ClapArgs;
use protocol::client::Client;

use super::host::{loadavg, machine};
use super::stats::{median, ms, p90};
use crate::demo::{self, IMAGE_NAME};
use crate::{guest, kernel, sh};

/// The (b)/(a) target, from the issue.
const RATIO_TARGET: f64 = 1.2;
/// The supervisor memory target, from the issue.
const SUPERVISOR_TARGET_KIB: u64 = 10 << 10;
/// How long one raw boot may take (TCG on a loaded host is slow).
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
/// The name of the box (c) runs in.
const IDLE_BOX: &str = "bench-boot-idle";

/// Arguments of `cargo xtask bench boot`.
#[derive(ClapArgs)]
pub struct Args {
    /// Boots per contender (median and p90 reported).
    #[arg(long, default_value_t = 10)]
    iterations: usize,
    /// `exec true` round trips on the running box, per contender.
    #[arg(long, default_value_t = 30)]
    execs: usize,
    /// Write the results to this Markdown file as well as stdout.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// The `boxlite` command on the benchmark's state directory.
struct Cli {
    program: PathBuf,
    home: PathBuf,
    kernel: PathBuf,
    initramfs: PathBuf,
}

impl Cli {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.arg("--home")
            .arg(&self.home)
            .arg("--kernel")
            .arg(&self.kernel)
            .arg("--initramfs")
            .arg(&self.initramfs)
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `boxlite ARGS` to success; how long it took from spawn to exit, and its stdout.
    fn timed(&self, args: &[&str]) -> Result<(Duration, String)> {
        self.timed_with(args, &[])
    }

    /// [`Cli::timed`] with environment variables `env` set.
    fn timed_with(&self, args: &[&str], env: &[(&str, &str)]) -> Result<(Duration, String)> {
        let mut cmd = self.command(args);
        cmd.envs(env.iter().copied());
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
}

/// Samples of one measure.
#[derive(Default)]
struct Samples(Vec<Duration>);

impl Samples {
    fn row(&self, what: &str) -> String {
        format!(
            "| {what} | {} | {} |",
            ms(median(&self.0)),
            ms(p90(&self.0))
        )
    }
}

/// The steps of `run --rm … true`, each timed as its own command.
#[derive(Default)]
struct Steps {
    create: Samples,
    start: Samples,
    exec: Samples,
    stop: Samples,
    rm: Samples,
}

/// Runs the benchmark and prints (and optionally writes) the results.
pub fn run(args: Args) -> Result<()> {
    ensure!(
        args.iterations > 0 && args.execs > 0,
        "counts must be at least 1"
    );
    let kernel = kernel::build(&kernel::Args::default())?.join("vmlinux");
    let initramfs = guest::build()?.initramfs;
    let layout = demo::demo_layout()?;
    // Release, as measured code should be; `bench` already built this tool so.
    sh::run(sh::cargo().args(["build", "--release", "--quiet", "-p", "cli"]))?;
    // Short: a box's sockets are at `<home>/boxes/<64-hex id>/agent.sock`, and a Unix socket
    // path must fit in 107 bytes.
    let scratch = tempfile::Builder::new().prefix("bb").tempdir_in("/tmp")?;
    let cli = Cli {
        program: demo::target_dir().join("release/boxlite"),
        home: scratch.path().join("home"),
        kernel,
        initramfs,
    };
    let load_before = loadavg();
    sh::run(&mut cli.command(&["image", "import", crate::image::path_str(&layout)?]))?;
    // Builds the image's base disk and warms the page cache; not measured.
    cli.timed(&["run", "--rm", "--engine", "qemu", IMAGE_NAME, "true"])?;

    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let runtime = Runtime::open(RuntimeOptions::new(&cli.home))?;
    let raw_vm = RawVm::new(&runtime, &cli, scratch.path())?;

    let (mut raw, mut run, mut steps) = (Samples::default(), Samples::default(), Steps::default());
    let mut unjailed = Samples::default();
    let run_true = ["run", "--rm", "--engine", "qemu", IMAGE_NAME, "true"];
    for i in 0..args.iterations {
        progress(&format!("boot {}/{}", i + 1, args.iterations));
        raw.0.push(tokio.block_on(raw_vm.boot(i))?);
        run.0.push(cli.timed(&run_true)?.0);
        // The same without the VM process's jail: what the jail costs.
        unjailed
            .0
            .push(cli.timed_with(&run_true, &[("BOXLITE_JAIL", "off")])?.0);
        step_by_step(&cli, &mut steps)?;
    }

    progress("exec");
    let _ = cli.timed(&["rm", "-f", IDLE_BOX]);
    cli.timed(&["create", "--engine", "qemu", "--name", IDLE_BOX, IMAGE_NAME])?;
    cli.timed(&["start", IDLE_BOX])?;
    let result = (|| -> Result<(Samples, Samples, Memory)> {
        let mut exec = Samples::default();
        for _ in 0..args.execs {
            exec.0.push(cli.timed(&["exec", IDLE_BOX, "true"])?.0);
        }
        let library = tokio.block_on(library_execs(&runtime, args.execs))?;
        let (_, inspect) = cli.timed(&["inspect", IDLE_BOX])?;
        let json: serde_json::Value = serde_json::from_str(&inspect)
            .with_context(|| format!("`boxlite inspect` printed {inspect:?}"))?;
        Ok((exec, library, Memory::of(&json)?))
    })();
    // Removed whatever happened, so no box is left running.
    cli.timed(&["rm", "-f", IDLE_BOX])?;
    let (exec, library, memory) = result?;
    progress("");

    let report = Report {
        args: &args,
        raw,
        run,
        unjailed,
        steps,
        exec,
        library,
        memory,
        load: (load_before, loadavg()),
    };
    let text = report.render()?;
    println!("{text}");
    if let Some(out) = &args.out {
        std::fs::write(out, &text).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}

/// One `run --rm … true` as its steps, each its own `boxlite` command.
fn step_by_step(cli: &Cli, steps: &mut Steps) -> Result<()> {
    let (took, id) = cli.timed(&["create", "--engine", "qemu", IMAGE_NAME])?;
    steps.create.0.push(took);
    let id = id.trim().to_owned();
    let outcome = (|| -> Result<()> {
        steps.start.0.push(cli.timed(&["start", &id])?.0);
        steps.exec.0.push(cli.timed(&["exec", &id, "true"])?.0);
        steps.stop.0.push(cli.timed(&["stop", &id])?.0);
        Ok(())
    })();
    let removed = cli.timed(&["rm", "-f", &id]);
    outcome?;
    steps.rm.0.push(removed?.0);
    Ok(())
}

/// Medians of `count` round trips of `true` through the library, on one handle of the box.
async fn library_execs(runtime: &Runtime, count: usize) -> Result<Samples> {
    let litebox = runtime.get(IDLE_BOX).await?;
    let mut samples = Samples::default();
    for _ in 0..count {
        let start = Instant::now();
        let status = litebox
            .exec(BoxCommand::from_argv(["true"]))
            .await?
            .wait()
            .await?;
        samples.0.push(start.elapsed());
        ensure!(status.success(), "`true` through the library: {status:?}");
    }
    Ok(samples)
}

/// QEMU booted directly, with the engine's arguments for the benchmark image's disks.
struct RawVm {
    engine: ResolvedEngine,
    kernel: PathBuf,
    initramfs: PathBuf,
    base_disk: PathBuf,
    dir: PathBuf,
}

/// The most the VM process's jail may add to `run --rm … true`, in ms.
const JAIL_TARGET_MS: f64 = 5.0;

/// Kills the VM however the measurement ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl RawVm {
    fn new(runtime: &Runtime, cli: &Cli, scratch: &Path) -> Result<RawVm> {
        let digest = runtime.image(IMAGE_NAME)?.record.manifest_digest;
        let base_disk = internals::Layout::new(&cli.home).base_disk(&digest);
        ensure!(
            base_disk.is_file(),
            "no base disk at {}",
            base_disk.display()
        );
        // The same QEMU command line the qemu engine gives a box, run without a supervisor.
        let host = internals::Host {
            kvm: internals::probe_kvm(),
            force_kvm: false,
        };
        let programs = internals::Programs::locate(runtime.options());
        let engine = internals::resolve(EngineKind::Qemu, &host, &programs)?;
        Ok(RawVm {
            engine,
            kernel: cli.kernel.clone(),
            initramfs: cli.initramfs.clone(),
            base_disk,
            dir: scratch.join("raw"),
        })
    }

    /// Boots once on a fresh box disk (as every `run` gets); time from spawn to hello.
    async fn boot(&self, i: usize) -> Result<Duration> {
        let dir = self.dir.join(i.to_string());
        std::fs::create_dir_all(&dir)?;
        let box_disk = dir.join("disk.ext4");
        // The channels as the supervisor makes them: socket pairs, the VM's ends inherited.
        let (agent, agent_vm) = std::os::unix::net::UnixStream::pair()?;
        let (console, console_vm) = std::os::unix::net::UnixStream::pair()?;
        for end in [&agent_vm, &console_vm] {
            rustix::io::fcntl_setfd(end, rustix::io::FdFlags::empty())?;
        }
        let spec = VmSpec {
            kernel: self.kernel.clone(),
            initramfs: self.initramfs.clone(),
            cpus: DEFAULT_CPUS,
            memory_mib: DEFAULT_MEMORY_MIB,
            hostname: "bench".into(),
            vm_log: dir.join("vm.log"),
            devices: vec![
                Device::Disk {
                    path: self.base_disk.clone(),
                    read_only: true,
                },
                Device::Disk {
                    path: box_disk.clone(),
                    read_only: false,
                },
                Device::Agent {
                    fd: agent_vm.as_raw_fd(),
                },
                Device::Console {
                    fd: console_vm.as_raw_fd(),
                },
            ],
            net: None,
            root_fstype: if self.base_disk.extension().is_some_and(|e| e == "ext4") {
                "ext4"
            } else {
                "erofs"
            },
        };
        internals::create_box_disk(&box_disk, DEFAULT_DISK_SIZE_MIB)?;
        let vm_log = std::fs::File::create(&spec.vm_log)?;
        let mut cmd = self.engine.command(&spec);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(vm_log);
        let start = Instant::now();
        let vm = KillOnDrop(cmd.spawn().context("starting qemu-system-x86_64")?);
        drop((agent_vm, console_vm));
        // The console is read (and dropped) as the supervisor reads it, so QEMU never waits
        // on it.
        let drain = std::thread::spawn(move || {
            let _ = std::io::copy(&mut &console, &mut std::io::sink());
        });
        agent.set_nonblocking(true)?;
        let stream = tokio::net::UnixStream::from_std(agent)?;
        let (_client, _hello) = tokio::time::timeout(BOOT_TIMEOUT, Client::handshake(stream))
            .await
            .context("no hello from the agent")??;
        let took = start.elapsed();
        drop(vm);
        let _ = drain.join();
        std::fs::remove_dir_all(&dir)?;
        Ok(took)
    }
}

/// The running box's memory, from `boxlite inspect` and /proc.
struct Memory {
    supervisor_rss_kib: u64,
    supervisor_private_kib: Option<u64>,
    vm_rss_kib: u64,
    guest_mib: u64,
    boot_ms: f64,
}

impl Memory {
    fn of(inspect: &serde_json::Value) -> Result<Memory> {
        let metrics = &inspect["metrics"];
        let field = |k: &str| {
            metrics[k]
                .as_u64()
                .with_context(|| format!("no metrics.{k} in `boxlite inspect`"))
        };
        let private = inspect["supervisor_pid"]
            .as_u64()
            .and_then(|pid| private_kib(pid).ok());
        Ok(Memory {
            supervisor_rss_kib: field("supervisor_rss_kib")?,
            supervisor_private_kib: private,
            vm_rss_kib: field("vm_rss_kib")?,
            guest_mib: field("memory_mib")?,
            boot_ms: metrics["boot_ms"]
                .as_f64()
                .context("no metrics.boot_ms in `boxlite inspect`")?,
        })
    }
}

/// Memory only process `pid` holds (private clean + dirty pages, KiB): RSS less the shared
/// libraries' pages other processes hold too.
fn private_kib(pid: u64) -> Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
    let mut total = 0;
    for line in text.lines() {
        if line.starts_with("Private_Clean:") || line.starts_with("Private_Dirty:") {
            let kib = line
                .split_whitespace()
                .nth(1)
                .context("smaps_rollup line")?;
            total += kib.parse::<u64>()?;
        }
    }
    Ok(total)
}

/// Everything measured, for the table.
struct Report<'a> {
    args: &'a Args,
    raw: Samples,
    run: Samples,
    unjailed: Samples,
    steps: Steps,
    exec: Samples,
    library: Samples,
    memory: Memory,
    load: (String, String),
}

impl Report<'_> {
    fn render(&self) -> Result<String> {
        let mut s = String::new();
        let ratio = median(&self.run.0).as_secs_f64() / median(&self.raw.0).as_secs_f64();
        let ratio90 = p90(&self.run.0).as_secs_f64() / p90(&self.raw.0).as_secs_f64();
        writeln!(s, "# Boot benchmark\n")?;
        writeln!(
            s,
            "`cargo xtask bench boot`: {} boots per contender (interleaved), {} exec round trips, \
             on the Debian bookworm minbase demo image; {} vCPU, {} MiB guests, engine {}.\n",
            self.args.iterations,
            self.args.execs,
            DEFAULT_CPUS,
            DEFAULT_MEMORY_MIB,
            engine_words()
        )?;
        writeln!(s, "| measure | median (ms) | p90 (ms) |")?;
        writeln!(s, "|---|---:|---:|")?;
        writeln!(
            s,
            "{}",
            self.raw.row("(a) raw QEMU: spawn to the agent's hello")
        )?;
        writeln!(
            s,
            "{}",
            self.run
                .row("(b) `boxlite run --rm IMAGE true`: spawn to exit")
        )?;
        writeln!(
            s,
            "{}",
            self.unjailed
                .row("(b') the same with `BOXLITE_JAIL=off` (no jail)")
        )?;
        writeln!(s, "{}", self.steps.create.row("(b) step: `boxlite create`"))?;
        writeln!(s, "{}", self.steps.start.row("(b) step: `boxlite start`"))?;
        writeln!(
            s,
            "{}",
            self.steps.exec.row("(b) step: `boxlite exec BOX true`")
        )?;
        writeln!(s, "{}", self.steps.stop.row("(b) step: `boxlite stop`"))?;
        writeln!(s, "{}", self.steps.rm.row("(b) step: `boxlite rm`"))?;
        writeln!(
            s,
            "{}",
            self.exec
                .row("(c) `boxlite exec BOX true` on a running box")
        )?;
        writeln!(
            s,
            "{}",
            self.library.row("(c') `LiteBox::exec` of `true` (library)")
        )?;
        writeln!(s)?;
        let m = &self.memory;
        let mib = |kib: u64| format!("{:.1} MiB", kib as f64 / 1024.0);
        writeln!(
            s,
            "(b)/(a): **{ratio:.2}x** median, {ratio90:.2}x p90 (target ≤ {RATIO_TARGET}: {}).  ",
            verdict(ratio <= RATIO_TARGET)
        )?;
        let jail_ms =
            (median(&self.run.0).as_secs_f64() - median(&self.unjailed.0).as_secs_f64()) * 1e3;
        writeln!(
            s,
            "The jail adds **{jail_ms:.1} ms** to run-to-exit, median (b) − (b') (target ≤ \
             {JAIL_TARGET_MS} ms: {}).  ",
            verdict(jail_ms <= JAIL_TARGET_MS)
        )?;
        writeln!(
            s,
            "Supervisor: {} RSS{} (target ≤ {}: {}); VM process: {} RSS for a {} MiB guest.  ",
            mib(m.supervisor_rss_kib),
            m.supervisor_private_kib
                .map_or_else(String::new, |k| format!(", {} of it private", mib(k))),
            mib(SUPERVISOR_TARGET_KIB),
            verdict(m.supervisor_rss_kib <= SUPERVISOR_TARGET_KIB),
            mib(m.vm_rss_kib),
            m.guest_mib
        )?;
        writeln!(
            s,
            "Guest boot as the supervisor measured it (VM start to hello): {:.0} ms.\n",
            m.boot_ms
        )?;
        writeln!(s, "Machine: {}.  ", machine())?;
        writeln!(
            s,
            "Load average before / after: {} / {}.",
            self.load.0, self.load.1
        )?;
        Ok(s)
    }
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "not met" }
}

/// The engine the boots ran on, in words.
fn engine_words() -> String {
    let kvm = internals::probe_kvm();
    if kvm.is_hardware() {
        "qemu (kvm)".into()
    } else {
        format!("qemu (tcg; {})", kvm.describe())
    }
}

/// A one-line status on a terminal (nothing otherwise); empty clears it.
fn progress(what: &str) {
    super::host::progress("bench boot", what);
}
