//! A running process in the guest.

use tokio::sync::watch;

use super::handler::{ChannelEvent, End};
use crate::error::{Error, Result};
use crate::message::{ExitStatus, HostMessage};
use crate::mux::{Lane, Link, StreamReader, StreamWriter};

/// An execution's stdin: `AsyncWrite`; `shutdown()`/`close()` (or dropping it) sends EOF.
pub type ExecStdin = StreamWriter;

/// An execution's stdout or stderr: `AsyncRead`. Dropping it discards the rest, without
/// stalling the process.
pub type ExecOutput = StreamReader;

/// A process started by [`super::Client::exec`].
///
/// Like `tokio::process::Child`, the streams are fields to `take()`. With a tty, all output
/// arrives on stdout and stderr is empty.
#[derive(Debug)]
pub struct Execution {
    /// The process's stdin.
    pub stdin: Option<ExecStdin>,
    /// The process's stdout.
    pub stdout: Option<ExecOutput>,
    /// The process's stderr.
    pub stderr: Option<ExecOutput>,
    link: Link,
    channel: u32,
    pid: u32,
    events: watch::Receiver<ChannelEvent>,
}

impl Execution {
    pub(super) fn new(
        link: Link,
        channel: u32,
        pid: u32,
        events: watch::Receiver<ChannelEvent>,
        stdin: ExecStdin,
        stdout: ExecOutput,
        stderr: ExecOutput,
    ) -> Execution {
        Execution {
            stdin: Some(stdin),
            stdout: Some(stdout),
            stderr: Some(stderr),
            link,
            channel,
            pid,
            events,
        }
    }

    /// The process's pid in the guest.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The channel id of this execution on the connection.
    pub fn channel(&self) -> u32 {
        self.channel
    }

    /// Waits for the process to end. Its stdout and stderr have reached EOF by then (the
    /// agent sends `exit` after them), so reading them after `wait` loses nothing.
    pub async fn wait(&self) -> Result<ExitStatus> {
        let mut events = self.events.clone();
        let end = events
            .wait_for(|e| e.end.is_some())
            .await
            .ok()
            .and_then(|e| e.end.clone());
        match end {
            Some(End::Exit(status)) => Ok(status),
            Some(other) => Err(other.into_error()),
            None => Err(self.closed()),
        }
    }

    /// The exit status if the process has ended, without waiting.
    pub fn try_wait(&self) -> Result<Option<ExitStatus>> {
        match self.events.borrow().end.clone() {
            None => Ok(None),
            Some(End::Exit(status)) => Ok(Some(status)),
            Some(other) => Err(other.into_error()),
        }
    }

    /// Sends `signal` to the process, or to its whole process group.
    ///
    /// A process that has already exited is not an error (the signal races with the exit).
    pub async fn signal(&self, signal: i32, group: bool) -> Result<()> {
        let message = HostMessage::Signal { signal, group };
        message.validate()?;
        self.link.send(self.channel, &message, Lane::Urgent).await
    }

    /// Sets the size of the process's tty.
    pub async fn resize(&self, rows: u16, cols: u16) -> Result<()> {
        let message = HostMessage::Resize { rows, cols };
        message.validate()?;
        self.link.send(self.channel, &message, Lane::Urgent).await
    }

    fn closed(&self) -> Error {
        self.link.closed_error().unwrap_or_else(|| Error::Closed {
            peer: "agent",
            reason: "the connection is shutting down".into(),
        })
    }
}
