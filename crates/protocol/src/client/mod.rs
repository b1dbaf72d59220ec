//! The host side: a [`Client`] over the byte stream to a guest agent.
//!
//! ```no_run
//! # async fn demo(io: tokio::net::UnixStream) -> protocol::Result<()> {
//! use protocol::client::Client;
//! use protocol::ExecRequest;
//! use tokio::io::AsyncReadExt;
//!
//! let (client, hello) = Client::handshake(io).await?;
//! let mut run = client.exec(ExecRequest::new(["uname", "-a"])).await?;
//! let mut out = String::new();
//! run.stdout.take().unwrap().read_to_string(&mut out).await.ok();
//! let status = run.wait().await?;
//! # Ok(()) }
//! ```

mod execution;
mod handler;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{oneshot, watch};

use crate::error::{Error, Result};
use crate::frame::{MAX_DATA_CHUNK, Stream};
use crate::message::{ExecRequest, Hello, HostMessage, PROTOCOL_VERSION, VolumeMount};
use crate::mux::{self, Lane, Link, Stats};

pub use execution::{ExecOutput, ExecStdin, Execution};

use handler::{ChannelEvent, ClientHandler, ClientState, End};

/// The host's end of a connection to a guest agent. Cheap to share: every method takes
/// `&self`, and calls on different channels run concurrently.
///
/// The connection stays up while the client or any [`Execution`] or stream from it lives.
pub struct Client {
    link: Link,
    state: Arc<ClientState>,
    next_channel: AtomicU32,
    next_nonce: AtomicU64,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("stats", &self.link.stats())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Waits for the agent's `hello` on `io` and checks its protocol version.
    ///
    /// This waits as long as the guest takes to boot; wrap it in a timeout.
    pub async fn handshake<IO>(io: IO) -> Result<(Client, Hello)>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (reader, writer) = tokio::io::split(io);
        Client::handshake_split(reader, writer).await
    }

    /// [`Client::handshake`] over separate read and write halves.
    pub async fn handshake_split<R, W>(reader: R, writer: W) -> Result<(Client, Hello)>
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let state = Arc::new(ClientState::default());
        let (hello_tx, hello_rx) = oneshot::channel();
        let handler = ClientHandler {
            state: state.clone(),
            hello: Some(hello_tx),
        };
        let link = mux::start(reader, writer, "agent", handler, None)?;
        let hello = match hello_rx.await {
            Ok(hello) => hello,
            Err(_) => {
                let why = link
                    .closed_error()
                    .map_or_else(|| "the connection ended".to_owned(), |e| e.to_string());
                return Err(Error::Handshake(format!("no hello from the agent: {why}")));
            }
        };
        let (major, minor) = hello.protocol_version;
        if major != PROTOCOL_VERSION.0 {
            link.fail("incompatible protocol version".into());
            return Err(Error::Version {
                ours_major: PROTOCOL_VERSION.0,
                ours_minor: PROTOCOL_VERSION.1,
                theirs_major: major,
                theirs_minor: minor,
            });
        }
        let client = Client {
            link,
            state,
            next_channel: AtomicU32::new(1),
            next_nonce: AtomicU64::new(1),
        };
        Ok((client, hello))
    }

    /// Starts a process; returns once the agent says it runs, or fails with the agent's
    /// error (e.g. [`crate::ErrorKind::NotFound`] for a command that does not exist).
    pub async fn exec(&self, request: ExecRequest) -> Result<Execution> {
        request.validate()?;
        let mut open = self.open_channel()?;
        let channel = open.channel;
        let stdin = self.link.register_send(channel, Stream::Stdin);
        let stdout = self.link.register_recv(channel, Stream::Stdout);
        let stderr = self.link.register_recv(channel, Stream::Stderr);
        self.link
            .send(channel, &HostMessage::Exec(request), Lane::Urgent)
            .await?;
        let event = open
            .events
            .wait_for(|e| e.pid.is_some() || e.end.is_some())
            .await
            .map(|e| e.clone())
            .map_err(|_| self.closed())?;
        let pid = match (event.pid, event.end) {
            (Some(pid), _) => pid,
            (None, Some(end)) => {
                open.disarm();
                return Err(end.into_error());
            }
            (None, None) => return Err(self.closed()),
        };
        let events = open.disarm();
        Ok(Execution::new(
            self.link.clone(),
            channel,
            pid,
            events,
            stdin,
            stdout,
            stderr,
        ))
    }

    /// Unpacks the tar stream `tar` under the directory `path` in the guest.
    ///
    /// If reading `tar` fails, the agent is told to cancel, so a partial archive is never
    /// taken for a complete one.
    pub async fn upload<R>(&self, path: &str, mut tar: R) -> Result<()>
    where
        R: AsyncRead + Unpin,
    {
        let message = HostMessage::Upload { path: path.into() };
        message.validate()?;
        let mut open = self.open_channel()?;
        open.writer = Some(self.link.register_send(open.channel, Stream::Transfer));
        self.link.send(open.channel, &message, Lane::Urgent).await?;
        let mut events = open.events.clone();
        let Some(writer) = open.writer.as_mut() else {
            return Err(self.closed());
        };
        let copy = async {
            let mut buf = vec![0u8; MAX_DATA_CHUNK];
            loop {
                let n = tar.read(&mut buf).await.map_err(|source| Error::Io {
                    context: format!("reading the tar stream to upload to {path}"),
                    source,
                })?;
                if n == 0 {
                    break;
                }
                // A failed write means the channel or connection ended; its end says why.
                if writer.write_all(&buf[..n]).await.is_err() {
                    return Ok(());
                }
            }
            let _ = writer.close().await;
            Ok::<(), Error>(())
        };
        tokio::select! {
            // On a local error `open` is dropped armed: the agent is told to cancel before
            // the transfer stream could end with EOF.
            copied = copy => copied?,
            // The agent may answer before taking everything (it refused, or it has read
            // the archive's end): its answer is the result.
            end = wait_end(&mut events) => {
                open.disarm();
                return match end? {
                    End::Done => Ok(()),
                    other => Err(other.into_error()),
                };
            }
        }
        let end = wait_end(&mut open.events).await;
        open.disarm();
        match end? {
            End::Done => Ok(()),
            other => Err(other.into_error()),
        }
    }

    /// Writes `path` of the guest, as a tar stream, to `sink`.
    ///
    /// If writing to `sink` fails, the agent is told to cancel and the error is returned.
    pub async fn download<W>(&self, path: &str, mut sink: W) -> Result<()>
    where
        W: AsyncWrite + Unpin,
    {
        let message = HostMessage::Download { path: path.into() };
        message.validate()?;
        let mut open = self.open_channel()?;
        let mut reader = self.link.register_recv(open.channel, Stream::Transfer);
        self.link.send(open.channel, &message, Lane::Urgent).await?;
        let mut buf = vec![0u8; MAX_DATA_CHUNK];
        // A failed read means the channel or connection ended; its end says why.
        while let Ok(n) = reader.read(&mut buf).await {
            if n == 0 {
                break;
            }
            sink.write_all(&buf[..n])
                .await
                .map_err(|source| Error::Io {
                    context: format!("writing the download of {path}"),
                    source,
                })?;
        }
        let end = wait_end(&mut open.events).await;
        open.disarm();
        match end? {
            End::Done => {}
            other => return Err(other.into_error()),
        }
        sink.flush().await.map_err(|source| Error::Io {
            context: format!("writing the download of {path}"),
            source,
        })
    }

    /// Mounts `volumes` inside the box's root, in order (parents first); returns once the
    /// agent mounted them all, or fails with its error naming the volume that failed (the
    /// ones before it stay mounted). Check the hello for [`crate::CAPABILITY_MOUNT`] first:
    /// an older agent does not know the request.
    pub async fn mount(&self, volumes: &[VolumeMount]) -> Result<()> {
        let message = HostMessage::Mount {
            volumes: volumes.to_vec(),
        };
        message.validate()?;
        let mut open = self.open_channel()?;
        self.link.send(open.channel, &message, Lane::Urgent).await?;
        let end = wait_end(&mut open.events).await;
        open.disarm();
        match end? {
            End::Done => Ok(()),
            other => Err(other.into_error()),
        }
    }

    /// Measures a round trip to the agent.
    pub async fn ping(&self) -> Result<Duration> {
        let nonce = self.next_nonce.fetch_add(1, Ordering::Relaxed);
        let rx = self.state.add_ping(nonce)?;
        let _forget = PingGuard {
            state: &self.state,
            nonce,
        };
        let start = Instant::now();
        self.link
            .send(0, &HostMessage::Ping { nonce }, Lane::Urgent)
            .await?;
        rx.await.map_err(|_| self.closed())?;
        Ok(start.elapsed())
    }

    /// Asks the agent to sync and power off; returns once it says so (or the connection
    /// ends, which is what powering off looks like).
    pub async fn shutdown(&self) -> Result<()> {
        let rx = self.state.set_shutdown()?;
        self.link
            .send(0, &HostMessage::Shutdown {}, Lane::Urgent)
            .await?;
        rx.await.map_err(|_| self.closed())
    }

    /// A snapshot of the connection's buffers.
    pub fn stats(&self) -> Stats {
        self.link.stats()
    }

    /// Why the connection closed, if it has.
    pub fn closed_error(&self) -> Option<Error> {
        self.link.closed_error()
    }

    fn closed(&self) -> Error {
        self.link.closed_error().unwrap_or_else(|| Error::Closed {
            peer: "agent",
            reason: "the connection is shutting down".into(),
        })
    }

    /// Allocates a channel and starts tracking it; the guard cancels it if dropped armed.
    fn open_channel(&self) -> Result<OpenChannel> {
        let channel = self.next_channel.fetch_add(1, Ordering::Relaxed);
        if channel == 0 || channel == u32::MAX {
            self.next_channel.store(u32::MAX, Ordering::Relaxed);
            return Err(Error::InvalidMessage(
                "this connection used up its 4 billion channel ids; reconnect".into(),
            ));
        }
        let events = self.state.add_channel(channel)?;
        self.link.open_channel(channel);
        Ok(OpenChannel {
            link: self.link.clone(),
            state: self.state.clone(),
            channel,
            events,
            armed: true,
            writer: None,
        })
    }
}

/// Waits for a channel's end; a closed connection is an error.
async fn wait_end(events: &mut watch::Receiver<ChannelEvent>) -> Result<End> {
    let end = events
        .wait_for(|e| e.end.is_some())
        .await
        .ok()
        .and_then(|e| e.end.clone());
    match end {
        Some(End::Closed(reason)) => Err(Error::Closed {
            peer: "agent",
            reason,
        }),
        Some(End::Failed { kind, message }) => Err(Error::Remote { kind, message }),
        Some(End::Protocol(m)) => Err(Error::InvalidMessage(m)),
        Some(end) => Ok(end),
        None => Err(Error::Closed {
            peer: "agent",
            reason: "the connection is shutting down".into(),
        }),
    }
}

/// A channel the host is waiting on. Dropped armed (the caller gave up or failed
/// locally), it tells the agent to cancel the request and forgets the channel.
struct OpenChannel {
    link: Link,
    state: Arc<ClientState>,
    channel: u32,
    events: watch::Receiver<ChannelEvent>,
    armed: bool,
    /// An upload's stream, dropped after the cancel so that it cannot send EOF first.
    writer: Option<crate::mux::StreamWriter>,
}

impl OpenChannel {
    /// The request reached its end (or an execution handle takes over).
    fn disarm(&mut self) -> watch::Receiver<ChannelEvent> {
        self.armed = false;
        self.events.clone()
    }
}

impl Drop for OpenChannel {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        self.state.remove_channel(self.channel);
        let _ = self
            .link
            .send_now(self.channel, &HostMessage::Cancel {}, Lane::Urgent);
        self.link
            .close_channel(self.channel, "the host cancelled the request");
    }
}

/// Forgets a ping whose caller gave up.
struct PingGuard<'a> {
    state: &'a ClientState,
    nonce: u64,
}

impl Drop for PingGuard<'_> {
    fn drop(&mut self) {
        self.state.remove_ping(self.nonce);
    }
}
