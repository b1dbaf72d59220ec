//! `cargo xtask bench net`: our user-mode network stack against passt, side by side.
//!
//! One QEMU command line (`-M microvm`, the agent's initramfs, an image holding only the static
//! `netprobe`, a virtio-net card on `-netdev stream` over an inherited socket), booted once per
//! contender; only the peer of the card's socket differs: (1) `netstack::Stack` on a thread of
//! this process behind a `Policy` allowing the two host ports, (2) passt. In the guest,
//! `netprobe` measures (a) box-to-host TCP bulk throughput to a sink on 127.0.0.1 and
//! (b) sequential connect+close pairs to a listener that accepts and closes. (c) is the peer's
//! CPU time per GiB sent (our stack's thread alone; passt's process), (d) its memory.

use std::fmt::Write as _;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Args as ClapArgs;
use netstack::{Config, Policy, PolicyOptions, Stack};
use protocol::ExecRequest;
use protocol::client::Client;
use tokio::io::AsyncReadExt;

use super::host::{loadavg, machine};
use crate::{guest, kernel};

/// The guest's settings, the ones netstack gives (crates/netstack/src/addr.rs).
const NET: &str = "10.0.2.15/24,10.0.2.2,1500";
/// How long a boot may take (TCG on a loaded host is slow).
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);
/// How long one probe in the guest may run.
const PROBE_TIMEOUT: Duration = Duration::from_secs(900);
/// The name our stack gives its thread (crates/netstack/src/stack/mod.rs).
const STACK_THREAD: &str = "netstack";
/// The target for throughput ours/passt (at least).
const THROUGHPUT_TARGET: f64 = 0.8;
/// The target for connect time ours/passt (at most).
const CONNECT_TARGET: f64 = 1.2;
/// The target for the RSS networking adds (at most).
const RSS_TARGET_KIB: i64 = 4 << 10;

/// Arguments of `cargo xtask bench net`.
#[derive(ClapArgs)]
pub struct Args {
    /// Runs of each measure per contender (medians reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Bytes the guest sends per bulk run.
    #[arg(long, default_value_t = 1 << 30)]
    bytes: u64,
    /// Sequential connect+close pairs per connect run.
    #[arg(long, default_value_t = 1000)]
    connects: usize,
    /// Write the results to this Markdown file as well as stdout.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Who serves the card's socket.
#[derive(Clone, Copy, PartialEq)]
enum Peer {
    Ours,
    Passt,
}

impl Peer {
    fn name(self) -> &'static str {
        match self {
            Peer::Ours => "ours (netstack)",
            Peer::Passt => "passt",
        }
    }
}

/// One contender's figures.
#[derive(Default)]
struct Figures {
    /// Bytes per second, per bulk run.
    bulk: Vec<f64>,
    /// Milliseconds for all pairs, per connect run.
    connects: Vec<f64>,
    /// Peer CPU seconds per GiB, per bulk run.
    cpu_per_gib: Vec<f64>,
    /// Ours: process RSS after the bulk runs less before the stack started; passt: its VmRSS.
    rss_kib: i64,
}

/// Runs the benchmark and prints (and optionally writes) the results.
pub fn run(args: Args) -> Result<()> {
    ensure!(
        args.runs > 0 && args.bytes > 0 && args.connects > 0,
        "counts must be at least 1"
    );
    Command::new("passt")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .context("passt is not installed (apt-get install passt)")?;
    let kernel = kernel::build(&kernel::Args::default())?.join("bzImage");
    let built = guest::build()?;
    let scratch = tempfile::Builder::new().prefix("bn").tempdir_in("/tmp")?;
    let image = make_image(scratch.path(), &built.netprobe)?;
    let sink = spawn_server(true)?;
    let acceptor = spawn_server(false)?;
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let load_before = loadavg();
    let vm = Vm {
        kernel: &kernel,
        initramfs: &built.initramfs,
        image: &image,
        dir: scratch.path(),
    };
    let contenders = tokio.block_on(measure(&vm, &args, sink, acceptor))?;
    let results: Vec<(Peer, Figures)> = contenders
        .into_iter()
        .map(|mut c| (c.peer, std::mem::take(&mut c.figures)))
        .collect();
    let text = render(&args, &results, (load_before, loadavg()))?;
    println!("{text}");
    if let Some(out) = &args.out {
        std::fs::write(out, &text).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}

/// An ext4 image holding only `/netprobe`.
fn make_image(dir: &Path, netprobe: &Path) -> Result<PathBuf> {
    let tree = dir.join("tree");
    std::fs::create_dir_all(&tree)?;
    std::fs::copy(netprobe, tree.join("netprobe"))
        .with_context(|| format!("copying {}", netprobe.display()))?;
    let image = dir.join("image.ext4");
    let status = Command::new("mkfs.ext4")
        .args(["-q", "-d"])
        .arg(&tree)
        .arg(&image)
        .arg("16M")
        .status()
        .context("running mkfs.ext4")?;
    ensure!(status.success(), "mkfs.ext4 failed: {status}");
    Ok(image)
}

/// A host listener on 127.0.0.1: a sink that reads and discards (`sink`), or one that accepts
/// and closes at once. Returns its port.
fn spawn_server(sink: bool) -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            if sink {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut &stream, &mut std::io::sink());
                });
            }
        }
    });
    Ok(port)
}

/// What every boot shares.
struct Vm<'a> {
    kernel: &'a Path,
    initramfs: &'a Path,
    image: &'a Path,
    dir: &'a Path,
}

/// Kills a child however the measurement ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Vm<'_> {
    /// Starts QEMU with `fd` as its card's socket (already inheritable), the agent's socket
    /// at `agent`; the arguments are those of crates/guest/tests/vm_net.rs.
    fn spawn(&self, fd: i32, agent: &Path, console: &Path) -> Result<KillOnDrop> {
        let line = format!(
            "console=ttyS0 reboot=t panic=-1 boxlite.root=/dev/vda boxlite.data=tmpfs \
             boxlite.hostname=bench-net boxlite.port=agent boxlite.net={NET} \
             boxlite.hostaddr=10.0.2.2"
        );
        let child = Command::new("qemu-system-x86_64")
            .args(["-M", "microvm,acpi=off", "-accel", "tcg", "-m", "256"])
            .args(["-nodefaults", "-no-user-config", "-display", "none"])
            .arg("-no-reboot")
            .arg("-kernel")
            .arg(self.kernel)
            .arg("-initrd")
            .arg(self.initramfs)
            .args(["-append", &line])
            .arg("-serial")
            .arg(format!("file:{}", console.display()))
            .arg("-drive")
            .arg(format!(
                "id=img,file={},format=raw,if=none,readonly=on",
                self.image.display()
            ))
            .args(["-device", "virtio-blk-device,drive=img"])
            .arg("-netdev")
            .arg(format!(
                "stream,id=net0,server=off,addr.type=fd,addr.str={fd}"
            ))
            .args([
                "-device",
                "virtio-net-device,netdev=net0,mac=52:54:00:12:34:56",
            ])
            .args(["-device", "virtio-serial-device"])
            .arg("-chardev")
            .arg(format!(
                "socket,id=agent,path={},server=on,wait=off",
                agent.display()
            ))
            .args(["-device", "virtserialport,chardev=agent,name=agent"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("starting qemu-system-x86_64")?;
        Ok(KillOnDrop(child))
    }
}

/// Clears close-on-exec so a child inherits `fd` under the same number.
fn inheritable(fd: &UnixStream) -> Result<()> {
    rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?;
    Ok(())
}

/// One booted contender; fields drop in order, so the guest goes before its peer.
struct Contender {
    peer: Peer,
    client: Client,
    qemu: KillOnDrop,
    stack: Option<netstack::Running>,
    passt: Option<KillOnDrop>,
    /// This process's RSS before the stack started.
    rss_before: i64,
    figures: Figures,
}

impl Contender {
    /// Boots one VM with `peer` on its card.
    async fn boot(vm: &Vm<'_>, peer: Peer, ports: [u16; 2]) -> Result<Contender> {
        let (vm_end, peer_end) = UnixStream::pair()?;
        inheritable(&vm_end)?;
        let agent = vm.dir.join(format!("agent-{}.sock", peer as u8));
        let console = vm.dir.join(format!("console-{}.log", peer as u8));
        // The RSS before networking, taken before the stack exists (QEMU is a child).
        let rss_before = rss_kib("self")?;
        let (stack, passt) = match peer {
            Peer::Ours => {
                // The real policy path: only the two host ports are allowed.
                let mut allow = Vec::new();
                for port in ports {
                    allow.push(format!("host:{port}").parse()?);
                }
                let policy = Policy::new(PolicyOptions {
                    allow,
                    ..PolicyOptions::default()
                })?;
                let running = Stack::start(peer_end, Config::default(), Box::new(policy))?;
                (Some(running), None)
            }
            Peer::Passt => {
                inheritable(&peer_end)?;
                let child = Command::new("passt")
                    .args(["-f", "-q", "-4", "-1", "-t", "none", "-u", "none"])
                    .args(["--no-dhcp", "--no-ndp", "--no-ra", "--no-dhcpv6"])
                    .args([
                        "-a",
                        "10.0.2.15",
                        "-n",
                        "24",
                        "-g",
                        "10.0.2.2",
                        "-m",
                        "1500",
                    ])
                    .args(["-F", &peer_end.as_raw_fd().to_string()])
                    .stdin(Stdio::null())
                    .spawn()
                    .context("starting passt")?;
                drop(peer_end);
                (None, Some(KillOnDrop(child)))
            }
        };
        let mut qemu = vm.spawn(vm_end.as_raw_fd(), &agent, &console)?;
        drop(vm_end);
        let client = connect(&mut qemu, &agent, &console).await?;
        Ok(Contender {
            peer,
            client,
            qemu,
            stack,
            passt,
            rss_before,
            figures: Figures::default(),
        })
    }

    /// The peer's CPU seconds so far: passt's process, or our stack's thread alone.
    fn cpu(&self) -> Result<f64> {
        match &self.passt {
            Some(p) => cpu_secs(&format!("/proc/{}/stat", p.0.id())),
            None => stack_thread_cpu(),
        }
    }

    /// One bulk run of `bytes` to the sink on `port`.
    async fn bulk(&mut self, port: u16, bytes: u64) -> Result<()> {
        let before = self.cpu()?;
        let (port, n) = (port.to_string(), bytes.to_string());
        let out = probe(&self.client, &["bulk", "10.0.2.2", &port, &n]).await?;
        let gib = bytes as f64 / f64::from(1u32 << 30);
        self.figures.cpu_per_gib.push((self.cpu()? - before) / gib);
        self.figures.bulk.push(field(&out, "bytes_per_s")?);
        Ok(())
    }

    /// The memory figure, after the bulk runs.
    fn memory(&mut self) -> Result<()> {
        self.figures.rss_kib = match &self.passt {
            Some(p) => rss_kib(&p.0.id().to_string())?,
            None => rss_kib("self")? - self.rss_before,
        };
        Ok(())
    }

    /// One run of `n` connect+close pairs to the listener on `port`.
    async fn connects(&mut self, port: u16, n: usize) -> Result<()> {
        let (port, n) = (port.to_string(), n.to_string());
        let out = probe(&self.client, &["connects", &n, "10.0.2.2", &port]).await?;
        self.figures.connects.push(field(&out, "total_ms")?);
        // Both peers and the guest must have lived through every run.
        ensure!(self.qemu.0.try_wait()?.is_none(), "QEMU ended early");
        if let Some(stack) = &self.stack {
            ensure!(!stack.is_finished(), "our stack ended early");
        }
        Ok(())
    }
}

/// Boots both contenders, then runs every measure on each in turn, interleaved so that the
/// host's other load falls on both alike.
async fn measure(vm: &Vm<'_>, args: &Args, sink: u16, acceptor: u16) -> Result<Vec<Contender>> {
    let mut all = Vec::new();
    for peer in [Peer::Ours, Peer::Passt] {
        all.push(Contender::boot(vm, peer, [sink, acceptor]).await?);
    }
    for i in 0..args.runs {
        for c in &mut all {
            progress(&format!("{}: bulk {}/{}", c.peer.name(), i + 1, args.runs));
            c.bulk(sink, args.bytes).await?;
        }
    }
    for c in &mut all {
        c.memory()?;
    }
    for i in 0..args.runs {
        for c in &mut all {
            progress(&format!(
                "{}: connects {}/{}",
                c.peer.name(),
                i + 1,
                args.runs
            ));
            c.connects(acceptor, args.connects).await?;
        }
    }
    progress("");
    Ok(all)
}

/// Waits for the agent's hello on `socket` while QEMU runs.
async fn connect(qemu: &mut KillOnDrop, socket: &Path, console: &Path) -> Result<Client> {
    let deadline = Instant::now() + BOOT_TIMEOUT;
    let log = || std::fs::read_to_string(console).unwrap_or_default();
    loop {
        if let Some(status) = qemu.0.try_wait()? {
            bail!("QEMU ended ({status}): {}", log());
        }
        if Instant::now() > deadline {
            bail!("no hello from the agent in {BOOT_TIMEOUT:?}: {}", log());
        }
        if let Ok(stream) = tokio::net::UnixStream::connect(socket).await {
            let left = deadline.saturating_duration_since(Instant::now());
            if let Ok(Ok((client, _))) = tokio::time::timeout(left, Client::handshake(stream)).await
            {
                return Ok(client);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `/netprobe ARGS` in the guest to success; its stdout.
async fn probe(client: &Client, args: &[&str]) -> Result<String> {
    let mut argv = vec!["/netprobe"];
    argv.extend_from_slice(args);
    let run = async {
        let mut exec = client.exec(ExecRequest::new(argv.clone())).await?;
        drop(exec.stdin.take());
        let mut stdout = exec.stdout.take().context("no stdout")?;
        let mut stderr = exec.stderr.take().context("no stderr")?;
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let (a, b) = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
        a?;
        b?;
        let status = exec.wait().await?;
        let (out, err) = (String::from_utf8_lossy(&out), String::from_utf8_lossy(&err));
        ensure!(status.success(), "{argv:?}: {status:?}: {out}{err}");
        anyhow::Ok(out.into_owned())
    };
    tokio::time::timeout(PROBE_TIMEOUT, run)
        .await
        .with_context(|| format!("{argv:?} did not finish in {PROBE_TIMEOUT:?}"))?
}

/// The number after `key=` in netprobe's output line.
fn field(out: &str, key: &str) -> Result<f64> {
    out.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .with_context(|| format!("no {key}= in netprobe's {out:?}"))?
        .parse()
        .with_context(|| format!("{key}= in netprobe's {out:?}"))
}

/// User + system CPU seconds from a `/proc/…/stat` file.
fn cpu_secs(path: &str) -> Result<f64> {
    let stat = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    // Fields after the command name, which is in parentheses and may hold spaces; utime and
    // stime are fields 14 and 15, so 12 and 13 after it.
    let rest = stat.rsplit_once(')').context("no ) in stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks =
        |i: usize| -> Result<u64> { Ok(fields.get(i).context("short stat")?.parse::<u64>()?) };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    Ok((ticks(11)? + ticks(12)?) as f64 / hz as f64)
}

/// The CPU seconds of this process's stack thread, found by its name.
fn stack_thread_cpu() -> Result<f64> {
    for task in std::fs::read_dir("/proc/self/task")? {
        let task = task?.path();
        let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
        if comm.trim_end() == STACK_THREAD {
            return cpu_secs(&task.join("stat").to_string_lossy());
        }
    }
    bail!("no thread named {STACK_THREAD} in this process")
}

/// VmRSS of `/proc/PID` (or `self`), KiB.
fn rss_kib(pid: &str) -> Result<i64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .with_context(|| format!("no VmRSS in {path}"))?;
    Ok(line.trim().trim_end_matches("kB").trim().parse()?)
}

/// The median of `samples`; zero when empty.
fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// The results as Markdown.
fn render(args: &Args, results: &[(Peer, Figures)], load: (String, String)) -> Result<String> {
    let figures = |p: Peer| results.iter().find(|(q, _)| *q == p).map(|(_, f)| f);
    let (Some(ours), Some(passt)) = (figures(Peer::Ours), figures(Peer::Passt)) else {
        bail!("a contender is missing");
    };
    let mut s = String::new();
    writeln!(s, "# Network benchmark\n")?;
    writeln!(
        s,
        "`cargo xtask bench net --runs {} --bytes {} --connects {}`: one QEMU `-M microvm` \
         (TCG, 1 vCPU, 256 MiB) per contender, both booted, runs interleaved, medians of {} \
         runs; the guest runs `netprobe`.\n",
        args.runs, args.bytes, args.connects, args.runs
    )?;
    writeln!(s, "| measure | ours (netstack) | passt | ours/passt |")?;
    writeln!(s, "|---|---:|---:|---:|")?;
    let row = |s: &mut String, what: &str, a: f64, b: f64, digits: usize| {
        writeln!(s, "| {what} | {a:.digits$} | {b:.digits$} | {:.2} |", a / b)
    };
    let (tput_o, tput_p) = (median(&ours.bulk) / 1e6, median(&passt.bulk) / 1e6);
    row(&mut s, "(a) box→host TCP bulk (MB/s)", tput_o, tput_p, 1)?;
    let (conn_o, conn_p) = (median(&ours.connects), median(&passt.connects));
    let what = format!("(b) {} connect+close pairs (ms)", args.connects);
    row(&mut s, &what, conn_o, conn_p, 1)?;
    let (cpu_o, cpu_p) = (median(&ours.cpu_per_gib), median(&passt.cpu_per_gib));
    row(&mut s, "(c) peer CPU per GiB sent (s)", cpu_o, cpu_p, 2)?;
    writeln!(
        s,
        "| (d) memory (MiB): ours RSS delta / passt VmRSS | {:.1} | {:.1} | |",
        ours.rss_kib as f64 / 1024.0,
        passt.rss_kib as f64 / 1024.0
    )?;
    writeln!(s)?;
    let verdict = |met: bool| if met { "met" } else { "not met" };
    let tput = tput_o / tput_p;
    let conn = conn_o / conn_p;
    writeln!(
        s,
        "Throughput ours/passt: **{tput:.2}** (target ≥ {THROUGHPUT_TARGET}: {}).  ",
        verdict(tput >= THROUGHPUT_TARGET)
    )?;
    writeln!(
        s,
        "Connect time ours/passt: **{conn:.2}** (target ≤ {CONNECT_TARGET}: {}).  ",
        verdict(conn <= CONNECT_TARGET)
    )?;
    writeln!(
        s,
        "RSS delta of networking on: **{:.1} MiB** (target ≤ {} MiB: {}).\n",
        ours.rss_kib as f64 / 1024.0,
        RSS_TARGET_KIB / 1024,
        verdict(ours.rss_kib <= RSS_TARGET_KIB)
    )?;
    let list = |v: &[f64], scale: f64| {
        v.iter()
            .map(|x| format!("{:.1}", x / scale))
            .collect::<Vec<_>>()
            .join(", ")
    };
    writeln!(
        s,
        "Runs: bulk MB/s ours [{}], passt [{}]; connects ms ours [{}], passt [{}].\n",
        list(&ours.bulk, 1e6),
        list(&passt.bulk, 1e6),
        list(&ours.connects, 1.0),
        list(&passt.connects, 1.0)
    )?;
    writeln!(s, "Machine: {}.  ", machine())?;
    writeln!(s, "Load average before / after: {} / {}.", load.0, load.1)?;
    Ok(s)
}

/// A one-line status on a terminal (nothing otherwise); empty clears it.
fn progress(what: &str) {
    super::host::progress("bench net", what);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_netprobe_fields() {
        let out = "sent=10 secs=0.500 bytes_per_s=20 echoed=0\n";
        assert!((field(out, "bytes_per_s").unwrap_or(0.0) - 20.0).abs() < 1e-9);
        assert!(field(out, "total_ms").is_err());
        assert!((median(&[3.0, 1.0, 2.0]) - 2.0).abs() < 1e-9);
    }
}
