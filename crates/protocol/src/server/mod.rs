//! The guest side: a [`Connection`] that turns the host's requests into [`Request`]s, so
//! the agent only has to spawn processes and pump bytes.
//!
//! The connection answers pings itself, rejects invalid requests with `error {invalid}`,
//! and keeps each stream's buffers and windows. For each request the agent gets the
//! streams to pump and a [`Reply`] to answer with:
//!
//! ```no_run
//! # async fn demo(io: tokio::net::UnixStream) -> protocol::Result<()> {
//! use protocol::server::{Connection, Request};
//! use protocol::{ErrorKind, Hello};
//!
//! let mut conn = Connection::start(io, Hello::new("0.1.0", 0)).await?;
//! while let Some(request) = conn.next_request().await {
//!     match request {
//!         Request::Exec(exec) => {
//!             tokio::spawn(async move {
//!                 // spawn exec.request.argv, pump exec.stdin/stdout/stderr, watch exec.events
//!                 let _ = exec.reply.error(ErrorKind::Unsupported, "not in this example").await;
//!             });
//!         }
//!         Request::Upload(up) => drop(up),
//!         Request::Download(down) => drop(down),
//!         Request::Mount(mount) => {
//!             // mount each of mount.volumes, in order, then:
//!             let _ = mount.reply.done().await;
//!         }
//!         Request::Shutdown(reply) => {
//!             // sync filesystems, then:
//!             reply.shutting_down().await?;
//!             break;
//!         }
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! Handle each request in its own task: while `next_request` is not polled, the
//! connection stops reading (control messages are not flow-controlled, so this is where
//! they are held back), which also holds back window grants for the agent's outputs.
//! An execution's events never hold the connection back: they are coalesced
//! ([`ExecEvents`]), so a task blocked writing output may take them whenever it can.

mod events;
mod handler;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::message::{ErrorKind, ExecRequest, ExitStatus, GuestMessage, Hello, VolumeMount};
use crate::mux::{self, Lane, Link, Stats, StreamReader, StreamWriter};

pub use events::ExecEvents;

use handler::ServerHandler;

/// Requests delivered but not yet taken by the agent; more wait in the transport.
const REQUEST_QUEUE: usize = 16;

/// The guest's end of the connection to the host.
pub struct Connection {
    link: Link,
    requests: mpsc::Receiver<Request>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("stats", &self.link.stats())
            .finish_non_exhaustive()
    }
}

/// A request from the host.
#[derive(Debug)]
pub enum Request {
    /// Run a process.
    Exec(Exec),
    /// Unpack a tar stream into a directory.
    Upload(Upload),
    /// Send a path as a tar stream.
    Download(Download),
    /// Mount volumes inside the box's root.
    Mount(Mount),
    /// Sync, answer, power off.
    Shutdown(ShutdownReply),
}

/// An `exec` request with everything needed to serve it.
#[derive(Debug)]
pub struct Exec {
    /// What to run (validated against the limits in [`crate::message`]).
    pub request: ExecRequest,
    /// The host's stdin for the process; EOF when the host closes it.
    pub stdin: StreamReader,
    /// Where the process's stdout goes (all terminal output with a tty).
    pub stdout: StreamWriter,
    /// Where the process's stderr goes (close it at once with a tty).
    pub stderr: StreamWriter,
    /// Signals, resizes and cancellation from the host for this process.
    pub events: ExecEvents,
    /// Answer `started`, then `exit` (or `error` if it could not start).
    pub reply: Reply,
}

/// Something the host wants done to a running execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecEvent {
    /// Send `signal` to the process, or to its process group.
    Signal {
        /// The signal number (1..=64).
        signal: i32,
        /// Whether to signal the process group.
        group: bool,
    },
    /// Resize the tty.
    Resize {
        /// Rows.
        rows: u16,
        /// Columns.
        cols: u16,
    },
    /// The host gave up on this execution: kill its process group. The channel's streams
    /// already fail, and nothing the agent answers reaches the host any more.
    Cancel,
}

/// An `upload` request.
#[derive(Debug)]
pub struct Upload {
    /// The absolute directory to unpack into.
    pub path: String,
    /// The tar stream; an error (not EOF) if the host cancels.
    pub data: StreamReader,
    /// Answer `done`, or `error`.
    pub reply: Reply,
}

/// A `download` request.
#[derive(Debug)]
pub struct Download {
    /// The absolute path to send.
    pub path: String,
    /// Where the tar stream goes; writes fail if the host cancels.
    pub data: StreamWriter,
    /// Answer `done` (after closing `data`), or `error`.
    pub reply: Reply,
}

/// A `mount` request.
#[derive(Debug)]
pub struct Mount {
    /// The volumes, in the order to mount them (validated: absolute paths, no duplicates).
    pub volumes: Vec<VolumeMount>,
    /// Answer `done` once all are mounted, or `error` naming the volume that failed.
    pub reply: Reply,
}

/// The answer to one channel's request. Dropping it unanswered answers
/// `error {io, "the agent dropped the request"}`, so the host never waits forever.
#[derive(Debug)]
pub struct Reply {
    link: Link,
    channel: u32,
    answered: bool,
}

/// The answer to `shutdown`.
#[derive(Debug)]
pub struct ShutdownReply {
    link: Link,
}

impl Connection {
    /// Says hello on `io` and starts serving it.
    pub async fn start<IO>(io: IO, hello: Hello) -> Result<Connection>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (reader, writer) = tokio::io::split(io);
        Connection::start_split(reader, writer, hello).await
    }

    /// [`Connection::start`] over separate read and write halves (e.g. two file
    /// descriptors of the same console).
    pub async fn start_split<R, W>(reader: R, writer: W, hello: Hello) -> Result<Connection>
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        hello.validate()?;
        let first = crate::message::encode_message(&GuestMessage::Hello(hello))?;
        let first = crate::frame::encode_to_bytes(&crate::frame::Frame::Control {
            channel: 0,
            bytes: first,
        })?;
        let (tx, requests) = mpsc::channel(REQUEST_QUEUE);
        let link = mux::start(reader, writer, "host", ServerHandler::new(tx), Some(first))?;
        Ok(Connection { link, requests })
    }

    /// The next request; `None` once the connection is closed.
    pub async fn next_request(&mut self) -> Option<Request> {
        self.requests.recv().await
    }

    /// Waits until everything queued so far is written to the transport.
    pub async fn flush(&self) -> Result<()> {
        self.link.flush().await
    }

    /// A snapshot of the connection's buffers.
    pub fn stats(&self) -> Stats {
        self.link.stats()
    }

    /// Why the connection closed, if it has.
    pub fn closed_error(&self) -> Option<Error> {
        self.link.closed_error()
    }
}

impl Reply {
    pub(crate) fn new(link: Link, channel: u32) -> Reply {
        Reply {
            link,
            channel,
            answered: false,
        }
    }

    /// The request's channel id.
    pub fn channel(&self) -> u32 {
        self.channel
    }

    /// Whether the host still waits for this answer (false once it cancelled).
    pub fn is_wanted(&self) -> bool {
        self.link.is_open(self.channel)
    }

    /// Tells the host the process runs.
    pub async fn started(&self, pid: u32) -> Result<()> {
        if !self.is_wanted() {
            return Ok(());
        }
        self.link
            .send(self.channel, &GuestMessage::Started { pid }, Lane::Urgent)
            .await
    }

    /// Tells the host the process ended. Send its output first: this closes the outputs
    /// still open (with EOF) and the host reads nothing after it.
    pub async fn exit(self, status: ExitStatus) -> Result<()> {
        status.validate()?;
        self.finish(GuestMessage::Exit(status)).await
    }

    /// Tells the host the transfer (after a download's stream) or the mount is complete.
    pub async fn done(self) -> Result<()> {
        self.finish(GuestMessage::Done {}).await
    }

    /// Tells the host the request failed; name the thing and the fix in `message`.
    pub async fn error(self, kind: ErrorKind, message: impl Into<String>) -> Result<()> {
        let mut message = message.into();
        truncate(&mut message, crate::message::MAX_TEXT_LEN);
        self.finish(GuestMessage::Error { kind, message }).await
    }

    async fn finish(mut self, message: GuestMessage) -> Result<()> {
        self.answered = true;
        if !self.link.is_open(self.channel) {
            return Ok(());
        }
        self.link.end_outputs(self.channel);
        let sent = self.link.send(self.channel, &message, Lane::Ordered).await;
        self.link
            .close_channel(self.channel, "the request has been answered");
        sent
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if self.answered || !self.link.is_open(self.channel) {
            return;
        }
        self.link.end_outputs(self.channel);
        let message = GuestMessage::Error {
            kind: ErrorKind::Io,
            message: "the agent dropped the request without answering it".into(),
        };
        let _ = self.link.send_now(self.channel, &message, Lane::Ordered);
        self.link
            .close_channel(self.channel, "the request has been answered");
    }
}

impl ShutdownReply {
    /// Tells the host the agent powers off now, and waits until that is on the wire.
    pub async fn shutting_down(self) -> Result<()> {
        self.link
            .send(0, &GuestMessage::ShuttingDown {}, Lane::Urgent)
            .await?;
        self.link.flush().await
    }
}

/// Cuts `s` to at most `max` bytes at a char boundary.
fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}
