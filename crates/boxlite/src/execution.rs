//! A command running in a box.

use std::sync::Arc;

pub use protocol::ExitStatus;
use protocol::client::Client;
pub use protocol::client::{ExecOutput, ExecStdin};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::error::{Error, Result};

/// The most bytes [`Execution::output`] collects from each of stdout and stderr: a guest
/// decides how much it writes, and a caller that collects everything must not be made to
/// hold gigabytes. Larger outputs are streamed, or collected with
/// [`Execution::output_limited`].
pub const DEFAULT_OUTPUT_LIMIT: u64 = 64 << 20;

/// A signal to send to a command in a box (Linux numbering, as in the guest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signal(i32);

impl Signal {
    /// `SIGHUP`.
    pub const HUP: Signal = Signal(1);
    /// `SIGINT`: what Ctrl-C sends.
    pub const INT: Signal = Signal(2);
    /// `SIGQUIT`.
    pub const QUIT: Signal = Signal(3);
    /// `SIGKILL`: cannot be caught.
    pub const KILL: Signal = Signal(9);
    /// `SIGUSR1`.
    pub const USR1: Signal = Signal(10);
    /// `SIGUSR2`.
    pub const USR2: Signal = Signal(12);
    /// `SIGTERM`: asks politely.
    pub const TERM: Signal = Signal(15);
    /// `SIGCONT`.
    pub const CONT: Signal = Signal(18);
    /// `SIGSTOP`: cannot be caught.
    pub const STOP: Signal = Signal(19);
    /// `SIGWINCH`.
    pub const WINCH: Signal = Signal(28);

    /// The signal numbered `number`, if Linux has one so numbered (1 to 64).
    pub fn from_raw(number: i32) -> Option<Signal> {
        (1..=64).contains(&number).then_some(Signal(number))
    }

    /// Its number.
    pub fn as_raw(self) -> i32 {
        self.0
    }
}

/// A running command: take its streams like `tokio::process::Child`'s, then [`wait`].
///
/// [`wait`]: Execution::wait
#[derive(Debug)]
pub struct Execution {
    /// The command's stdin (`AsyncWrite`); shut it down or drop it for EOF.
    pub stdin: Option<ExecStdin>,
    /// The command's stdout (`AsyncRead`); with a tty, all its output.
    pub stdout: Option<ExecOutput>,
    /// The command's stderr (`AsyncRead`); empty with a tty.
    pub stderr: Option<ExecOutput>,
    inner: protocol::client::Execution,
    what: String,
    // Keeps the connection to the box open for as long as the execution is in use.
    _client: Arc<Client>,
}

/// Everything a finished command wrote, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Output {
    /// How it ended.
    pub status: ExitStatus,
    /// All of its stdout.
    pub stdout: Vec<u8>,
    /// All of its stderr.
    pub stderr: Vec<u8>,
}

impl Execution {
    pub(crate) fn new(
        mut inner: protocol::client::Execution,
        what: String,
        client: Arc<Client>,
    ) -> Execution {
        Execution {
            stdin: inner.stdin.take(),
            stdout: inner.stdout.take(),
            stderr: inner.stderr.take(),
            inner,
            what,
            _client: client,
        }
    }

    /// The command's pid in the box.
    pub fn pid(&self) -> u32 {
        self.inner.pid()
    }

    /// Waits for the command to end; its outputs have reached EOF by then.
    pub async fn wait(&self) -> Result<ExitStatus> {
        self.inner
            .wait()
            .await
            .map_err(|e| Error::protocol(format!("waiting for {}", self.what), e))
    }

    /// Waits up to `deadline` for the command to end: `None` if it still runs then (it is
    /// not killed; see [`Execution::kill`]).
    pub async fn wait_timeout(&self, deadline: std::time::Duration) -> Result<Option<ExitStatus>> {
        match tokio::time::timeout(deadline, self.wait()).await {
            Ok(status) => status.map(Some),
            Err(_) => Ok(None),
        }
    }

    /// How the command ended, if it has; never waits.
    pub fn try_wait(&self) -> Result<Option<ExitStatus>> {
        self.inner
            .try_wait()
            .map_err(|e| Error::protocol(format!("checking on {}", self.what), e))
    }

    /// Sends `signal` to the command's process group.
    pub async fn signal(&self, signal: Signal) -> Result<()> {
        self.inner
            .signal(signal.as_raw(), true)
            .await
            .map_err(|e| Error::protocol(format!("signalling {}", self.what), e))
    }

    /// Kills the command's process group (`SIGKILL`); [`Execution::wait`] then returns.
    pub async fn kill(&self) -> Result<()> {
        self.signal(Signal::KILL).await
    }

    /// Resizes the command's terminal.
    pub async fn resize_tty(&self, rows: u16, cols: u16) -> Result<()> {
        self.inner
            .resize(rows, cols)
            .await
            .map_err(|e| Error::protocol(format!("resizing the tty of {}", self.what), e))
    }

    /// Closes stdin, reads all output (at most [`DEFAULT_OUTPUT_LIMIT`] bytes of each
    /// stream) and waits for the end.
    pub async fn output(self) -> Result<Output> {
        self.output_limited(DEFAULT_OUTPUT_LIMIT).await
    }

    /// [`Execution::output`] with at most `limit` bytes of each stream: past it the command
    /// is killed and the error says which stream outgrew the limit.
    pub async fn output_limited(mut self, limit: u64) -> Result<Output> {
        drop(self.stdin.take());
        let (stdout, stderr) = tokio::join!(
            read_limited(self.stdout.take(), limit),
            read_limited(self.stderr.take(), limit)
        );
        let what = self.what.clone();
        for (stream, read) in [("stdout", &stdout), ("stderr", &stderr)] {
            if let Err(Collect::TooLarge) = read {
                let _ = self.kill().await;
                return Err(Error::TooLarge {
                    what: format!("the {stream} of {what}"),
                    limit,
                });
            }
        }
        let take = |read: Result<Vec<u8>, Collect>, stream: &str| match read {
            Ok(bytes) => Ok(bytes),
            Err(Collect::Io(e)) => Err(Error::io("reading the output of", stream, e)),
            Err(Collect::TooLarge) => Ok(Vec::new()),
        };
        let stdout = take(stdout, "stdout")?;
        let stderr = take(stderr, "stderr")?;
        let status = self.wait().await?;
        Ok(Output {
            status,
            stdout,
            stderr,
        })
    }
}

/// Why collecting a stream stopped.
enum Collect {
    Io(std::io::Error),
    TooLarge,
}

/// All of `stream`, unless it is longer than `limit`.
async fn read_limited(
    stream: Option<impl AsyncRead + Unpin>,
    limit: u64,
) -> Result<Vec<u8>, Collect> {
    let mut bytes = Vec::new();
    if let Some(stream) = stream {
        stream
            .take(limit.saturating_add(1))
            .read_to_end(&mut bytes)
            .await
            .map_err(Collect::Io)?;
    }
    if bytes.len() as u64 > limit {
        return Err(Collect::TooLarge);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn streams_past_the_limit_are_refused() {
        let data = vec![7u8; 100];
        assert_eq!(
            read_limited(Some(data.as_slice()), 100).await.ok(),
            Some(data.clone())
        );
        assert!(matches!(
            read_limited(Some(data.as_slice()), 99).await,
            Err(Collect::TooLarge)
        ));
        assert_eq!(read_limited(None::<&[u8]>, 0).await.ok(), Some(vec![]));
        assert_eq!(Signal::from_raw(15), Some(Signal::TERM));
        assert_eq!(Signal::from_raw(0), None);
        assert_eq!(Signal::from_raw(65), None);
    }
}
