//! A command running in a box.

use std::sync::Arc;

pub use protocol::ExitStatus;
use protocol::client::Client;
pub use protocol::client::{ExecOutput, ExecStdin};
use tokio::io::AsyncReadExt;

use crate::error::{Error, Result};

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

    /// Sends `signal` (a number, e.g. 15) to the command's process group.
    pub async fn signal(&self, signal: i32) -> Result<()> {
        self.inner
            .signal(signal, true)
            .await
            .map_err(|e| Error::protocol(format!("signalling {}", self.what), e))
    }

    /// Resizes the command's terminal.
    pub async fn resize_tty(&self, rows: u16, cols: u16) -> Result<()> {
        self.inner
            .resize(rows, cols)
            .await
            .map_err(|e| Error::protocol(format!("resizing the tty of {}", self.what), e))
    }

    /// Closes stdin, reads all output and waits for the end.
    pub async fn output(mut self) -> Result<Output> {
        drop(self.stdin.take());
        let read = |stream: Option<ExecOutput>| async move {
            let mut bytes = Vec::new();
            if let Some(mut stream) = stream {
                stream.read_to_end(&mut bytes).await?;
            }
            Ok::<_, std::io::Error>(bytes)
        };
        let (stdout, stderr) = tokio::join!(read(self.stdout.take()), read(self.stderr.take()));
        let what = &self.what;
        let stdout = stdout.map_err(|e| Error::io(format!("reading the stdout of {what}"), e))?;
        let stderr = stderr.map_err(|e| Error::io(format!("reading the stderr of {what}"), e))?;
        let status = self.wait().await?;
        Ok(Output {
            status,
            stdout,
            stderr,
        })
    }
}
