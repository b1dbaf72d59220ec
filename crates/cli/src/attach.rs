//! Attaching the local terminal or pipes to a command in a box: output pumped out, stdin
//! pumped in (with `-i`), signals forwarded, the terminal's size followed (with `-t`).

use std::io::{IsTerminal, Read};

use anyhow::Result;
use boxlite::{ExecOutput, ExecStdin, Execution, ExitStatus};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::mpsc;

use crate::tty::{self, RawMode};

/// Bytes read from a stream at a time.
const CHUNK: usize = 16 * 1024;

/// The signals that would end this process and are passed on to the command instead, so
/// that it decides how to end (and we restore the terminal and report its status).
fn forwarded() -> [(SignalKind, i32); 4] {
    [
        (SignalKind::interrupt(), libc::SIGINT),
        (SignalKind::terminate(), libc::SIGTERM),
        (SignalKind::hangup(), libc::SIGHUP),
        (SignalKind::quit(), libc::SIGQUIT),
    ]
}

/// How to attach.
#[derive(Debug, Clone, Copy)]
pub struct Attach {
    /// Pump our stdin to the command's (`-i`); otherwise its stdin is closed at once.
    pub stdin: bool,
    /// The command runs on a pseudo-terminal (`-t`).
    pub tty: bool,
}

impl Attach {
    /// Checks, before anything is started, that the local side can do what was asked.
    pub fn check(self) -> Result<()> {
        if self.tty && self.stdin && !std::io::stdin().is_terminal() {
            anyhow::bail!("the input device is not a terminal: drop -t, or run in a terminal");
        }
        Ok(())
    }

    /// The pseudo-terminal size to ask for, with `-t`.
    pub fn tty_size(self) -> Option<(u16, u16)> {
        self.tty.then(tty::size)
    }
}

/// How long a second Ctrl-C waits for the killed command's status before giving up on it.
const KILL_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

/// Pumps the command's streams until it ends, passing on the signals that arrive on
/// `signals` (see [`catch_signals`]); how it ended.
pub async fn attach(
    mut exec: Execution,
    how: Attach,
    mut signals: mpsc::Receiver<i32>,
) -> Result<ExitStatus> {
    // Raw only when our keys go to the box's terminal; `-t` alone leaves ours as it is.
    let _raw = if how.tty && how.stdin && std::io::stdin().is_terminal() {
        Some(RawMode::enable()?)
    } else {
        None
    };
    let stdin_task = match (how.stdin, exec.stdin.take()) {
        (true, Some(input)) => Some(tokio::spawn(pump_stdin(input, read_stdin()))),
        // Dropping it is EOF: the command sees its stdin closed at once.
        _ => None,
    };
    // Told when our stdout or stderr is closed (`| head`).
    let (broken_tx, mut broken) = mpsc::channel::<()>(2);
    let stdout_task = exec
        .stdout
        .take()
        .map(|out| tokio::spawn(pump_output(out, tokio::io::stdout(), broken_tx.clone())));
    let stderr_task = exec
        .stderr
        .take()
        .map(|err| tokio::spawn(pump_output(err, tokio::io::stderr(), broken_tx.clone())));
    drop(broken_tx);

    let mut winch = if how.tty {
        signal(SignalKind::window_change()).ok()
    } else {
        None
    };
    let wait = exec.wait();
    tokio::pin!(wait);
    let mut interrupts = 0;
    let status = loop {
        tokio::select! {
            status = &mut wait => break status?,
            Some(number) = signals.recv() => {
                // A second Ctrl-C: the command (or a guest that ignores it) had its chance;
                // kill it and stop waiting, from this side.
                if number == libc::SIGINT {
                    interrupts += 1;
                    if interrupts >= 2 {
                        let _ = exec.kill().await;
                        let ended = tokio::time::timeout(KILL_PATIENCE, &mut wait).await;
                        break match ended {
                            Ok(Ok(status)) => status,
                            _ => ExitStatus {
                                signal: Some(libc::SIGKILL),
                                ..Default::default()
                            },
                        };
                    }
                }
                // A command that already ended cannot be signalled; its status comes next.
                if let Some(signal) = boxlite::Signal::from_raw(number) {
                    let _ = exec.signal(signal).await;
                }
            }
            Some(()) = broken.recv() => {
                // As in a local pipeline: a writer whose reader is gone gets SIGPIPE, so
                // `yes | head -1` ends instead of running on into the void.
                if let Some(pipe) = boxlite::Signal::from_raw(libc::SIGPIPE) {
                    let _ = exec.signal(pipe).await;
                }
            }
            () = recv(&mut winch) => {
                let (rows, cols) = tty::size();
                let _ = exec.resize_tty(rows, cols).await;
            }
        }
    };
    for task in [stdout_task, stderr_task].into_iter().flatten() {
        // Bounded: a guest that never closes the streams of a killed command must not keep
        // us here.
        let _ = tokio::time::timeout(KILL_PATIENCE, task).await;
    }
    if let Some(task) = stdin_task {
        task.abort();
    }
    Ok(status)
}

/// Catches the forwarded signals from now on; their numbers arrive on the receiver. (They
/// stay caught for the rest of the process: what follows, stopping or removing a box,
/// should not be cut short half way either.)
pub fn catch_signals() -> mpsc::Receiver<i32> {
    let (tx, rx) = mpsc::channel(8);
    for (kind, number) in forwarded() {
        let Ok(mut stream) = signal(kind) else {
            continue;
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                if tx.send(number).await.is_err() {
                    break;
                }
            }
        });
    }
    rx
}

/// The next delivery of `signal`; never, without one.
async fn recv(signal: &mut Option<Signal>) {
    match signal {
        Some(signal) => {
            if signal.recv().await.is_none() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

/// Our stdin, read on a thread of its own: a blocking read of a terminal cannot be
/// cancelled, and it must not hold up the runtime's exit once the command has ended.
fn read_stdin() -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel(4);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; CHUNK];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    });
    rx
}

/// Writes what arrives on `chunks` to the command's stdin, then closes it (EOF).
async fn pump_stdin(mut input: ExecStdin, mut chunks: mpsc::Receiver<Vec<u8>>) {
    while let Some(chunk) = chunks.recv().await {
        // The command closed its stdin or ended: nothing more to give it.
        if input.write_all(&chunk).await.is_err() || input.flush().await.is_err() {
            return;
        }
    }
    let _ = input.shutdown().await;
}

/// Copies a command's output stream to ours, flushing every chunk (a terminal shows it as
/// it comes). When ours is gone (a closed pipe) `broken` is told, and the rest is read and
/// dropped, so the command is never stalled by flow control on output no one reads.
async fn pump_output(
    mut from: ExecOutput,
    mut to: impl AsyncWrite + Unpin,
    broken: mpsc::Sender<()>,
) {
    let mut buf = vec![0u8; CHUNK];
    let mut open = true;
    loop {
        let n = match read_some(&mut from, &mut buf).await {
            Some(n) => n,
            None => break,
        };
        if open && (to.write_all(&buf[..n]).await.is_err() || to.flush().await.is_err()) {
            open = false;
            let _ = broken.try_send(());
        }
    }
    if open {
        let _ = to.flush().await;
    }
}

/// One read; `None` at EOF or on error.
async fn read_some(from: &mut (impl AsyncRead + Unpin), buf: &mut [u8]) -> Option<usize> {
    match from.read(buf).await {
        Ok(0) | Err(_) => None,
        Ok(n) => Some(n),
    }
}
