//! `cargo xtask bench exec`: the agent's exec path against the host's own, side by side.
//!
//! The agent (`boxlite-guest --listen SOCKET --root /`) runs on the host, driven through the
//! protocol crate's client over a Unix socket: (1) round-trip latency of running `true` through
//! it vs. spawning `true` directly; (2) stdout throughput of a 1 GiB stream through it vs. the
//! same producer read from a plain pipe.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Args as ClapArgs;
use protocol::ExecRequest;
use protocol::client::Client;
use tokio::io::AsyncReadExt;

use super::stats::{median, ms};
use crate::sh;

/// Bytes streamed in the throughput test.
const STREAM_BYTES: u64 = 1 << 30;
/// How long the agent gets to create its socket.
const AGENT_START: Duration = Duration::from_secs(10);

/// Arguments of `cargo xtask bench exec`.
#[derive(ClapArgs)]
pub struct Args {
    /// Round trips of `true` per contender (the median is reported).
    #[arg(long, default_value_t = 200)]
    iterations: usize,
    /// Runs of the 1 GiB stream per contender (the median is reported).
    #[arg(long, default_value_t = 3)]
    streams: usize,
    /// Write the results table to this Markdown file as well as stdout.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Kills the agent when the benchmark ends, however it ends.
struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the benchmark and prints (and optionally writes) the table.
pub fn run(args: Args) -> Result<()> {
    ensure!(
        args.iterations > 0 && args.streams > 0,
        "counts must be at least 1"
    );
    sh::run(sh::cargo().args(["build", "--release", "--quiet", "-p", "guest"]))?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| sh::workspace_root().join("target"), PathBuf::from);
    let agent_bin = target.join("release/boxlite-guest");
    let scratch = tempfile::tempdir()?;
    let socket = scratch.path().join("agent.sock");
    let _agent = Agent(
        Command::new(&agent_bin)
            .arg("--listen")
            .arg(&socket)
            .args(["--root", "/"])
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {agent_bin:?}"))?,
    );
    wait_for(&socket)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (agent_true, agent_stream) = runtime.block_on(through_agent(&socket, &args))?;
    let direct_true = direct_true(args.iterations)?;
    let pipe_stream = direct_stream(args.streams)?;

    let mbps = |d: Duration| STREAM_BYTES as f64 / 1e6 / d.as_secs_f64();
    let mut s = String::new();
    use std::fmt::Write as _;
    writeln!(s, "# Exec benchmark\n")?;
    writeln!(
        s,
        "`cargo xtask bench exec`: the agent on the host over a Unix socket, {} round trips and \
         {} streams of 1 GiB each, medians.\n",
        args.iterations, args.streams
    )?;
    writeln!(
        s,
        "| measure | through the agent | direct | ratio | overhead |"
    )?;
    writeln!(s, "|---|---:|---:|---:|---:|")?;
    writeln!(
        s,
        "| run `true` (ms) | {} | {} | {:.2}x | {:.3} ms |",
        ms(agent_true),
        ms(direct_true),
        agent_true.as_secs_f64() / direct_true.as_secs_f64(),
        (agent_true.as_secs_f64() - direct_true.as_secs_f64()) * 1000.0
    )?;
    writeln!(
        s,
        "| 1 GiB stdout (MB/s) | {:.0} | {:.0} (pipe) | {:.2}x slower | |",
        mbps(agent_stream),
        mbps(pipe_stream),
        agent_stream.as_secs_f64() / pipe_stream.as_secs_f64()
    )?;
    println!("{s}");
    if let Some(out) = args.out {
        std::fs::write(&out, &s).with_context(|| format!("writing {out:?}"))?;
    }
    Ok(())
}

/// Waits until the agent's socket exists.
fn wait_for(socket: &Path) -> Result<()> {
    let deadline = Instant::now() + AGENT_START;
    while !socket.exists() {
        if Instant::now() > deadline {
            bail!("the agent did not create {socket:?} within {AGENT_START:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// Median latency of `true` and median time of a 1 GiB stream, through the agent.
async fn through_agent(socket: &Path, args: &Args) -> Result<(Duration, Duration)> {
    let stream = tokio::net::UnixStream::connect(socket).await?;
    let (client, _hello) = Client::handshake(stream).await?;
    let mut latencies = Vec::with_capacity(args.iterations);
    for _ in 0..args.iterations {
        let start = Instant::now();
        let exec = client.exec(ExecRequest::new(["true"])).await?;
        let status = exec.wait().await?;
        latencies.push(start.elapsed());
        ensure!(status.success(), "`true` through the agent: {status:?}");
    }
    let mut streams = Vec::with_capacity(args.streams);
    for _ in 0..args.streams {
        let start = Instant::now();
        let mut exec = client.exec(ExecRequest::new(producer())).await?;
        let mut stdout = exec.stdout.take().context("no stdout")?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        loop {
            let n = stdout.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        let status = exec.wait().await?;
        streams.push(start.elapsed());
        ensure!(
            status.success() && total == STREAM_BYTES,
            "stream: {status:?}, {total} bytes"
        );
    }
    Ok((median(&latencies), median(&streams)))
}

/// The command that writes [`STREAM_BYTES`] to stdout.
fn producer() -> Vec<String> {
    vec![
        "head".into(),
        "-c".into(),
        STREAM_BYTES.to_string(),
        "/dev/zero".into(),
    ]
}

/// Median latency of spawning and waiting for `true` directly.
fn direct_true(iterations: usize) -> Result<Duration> {
    let mut latencies = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let start = Instant::now();
        let status = Command::new("true").status()?;
        latencies.push(start.elapsed());
        ensure!(status.success(), "true: {status}");
    }
    Ok(median(&latencies))
}

/// Median time of reading the same 1 GiB stream from a plain pipe.
fn direct_stream(runs: usize) -> Result<Duration> {
    let argv = producer();
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdout(Stdio::piped())
            .spawn()?;
        let mut stdout = child.stdout.take().context("no stdout")?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        loop {
            let n = stdout.read(&mut buf)?;
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        let status = child.wait()?;
        times.push(start.elapsed());
        ensure!(
            status.success() && total == STREAM_BYTES,
            "pipe: {status}, {total} bytes"
        );
    }
    Ok(median(&times))
}
