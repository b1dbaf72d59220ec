//! The host's handling of the agent's control messages.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use tokio::sync::{oneshot, watch};

use crate::error::{Error, Result};
use crate::message::{ErrorKind, ExitStatus, GuestMessage, Hello, decode_guest_message};
use crate::mux::{Handler, Link};

/// What the host knows about one channel's request.
#[derive(Debug, Clone, Default)]
pub(crate) struct ChannelEvent {
    /// The pid, once `started`.
    pub(crate) pid: Option<u32>,
    /// How it ended, once it has.
    pub(crate) end: Option<End>,
}

/// How a channel ended.
#[derive(Debug, Clone)]
pub(crate) enum End {
    Exit(ExitStatus),
    Done,
    Failed { kind: ErrorKind, message: String },
    Protocol(String),
    Closed(String),
}

impl End {
    pub(crate) fn into_error(self) -> Error {
        match self {
            End::Failed { kind, message } => Error::Remote { kind, message },
            End::Protocol(m) => Error::InvalidMessage(m),
            End::Closed(reason) => Error::Closed {
                peer: "agent",
                reason,
            },
            End::Exit(_) => {
                Error::InvalidMessage("the agent answered exit to a transfer or mount".into())
            }
            End::Done => Error::InvalidMessage("the agent answered done to an exec".into()),
        }
    }
}

/// The host's per-connection bookkeeping, shared by the reader task and the API.
#[derive(Default)]
pub(crate) struct ClientState {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    closed: Option<String>,
    channels: HashMap<u32, watch::Sender<ChannelEvent>>,
    pings: HashMap<u64, oneshot::Sender<()>>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl ClientState {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn closed_error(reason: &str) -> Error {
        Error::Closed {
            peer: "agent",
            reason: reason.to_owned(),
        }
    }

    /// Starts tracking `channel`.
    pub(crate) fn add_channel(&self, channel: u32) -> Result<watch::Receiver<ChannelEvent>> {
        let mut inner = self.lock();
        if let Some(reason) = &inner.closed {
            return Err(Self::closed_error(reason));
        }
        let (tx, rx) = watch::channel(ChannelEvent::default());
        inner.channels.insert(channel, tx);
        Ok(rx)
    }

    /// Stops tracking `channel` (the host gave up on it).
    pub(crate) fn remove_channel(&self, channel: u32) {
        self.lock().channels.remove(&channel);
    }

    pub(crate) fn add_ping(&self, nonce: u64) -> Result<oneshot::Receiver<()>> {
        let mut inner = self.lock();
        if let Some(reason) = &inner.closed {
            return Err(Self::closed_error(reason));
        }
        let (tx, rx) = oneshot::channel();
        inner.pings.insert(nonce, tx);
        Ok(rx)
    }

    pub(crate) fn remove_ping(&self, nonce: u64) {
        self.lock().pings.remove(&nonce);
    }

    pub(crate) fn set_shutdown(&self) -> Result<oneshot::Receiver<()>> {
        let mut inner = self.lock();
        if let Some(reason) = &inner.closed {
            return Err(Self::closed_error(reason));
        }
        let (tx, rx) = oneshot::channel();
        inner.shutdown = Some(tx);
        Ok(rx)
    }

    /// Ends `channel` with `end` and stops tracking it.
    fn end(&self, channel: u32, end: End) {
        if let Some(tx) = self.lock().channels.remove(&channel) {
            tx.send_modify(|e| e.end = Some(end));
        }
    }
}

/// The reader task's handler on the host.
pub(crate) struct ClientHandler {
    pub(crate) state: Arc<ClientState>,
    /// Where the first message (hello) goes; `None` after it came.
    pub(crate) hello: Option<oneshot::Sender<Hello>>,
}

impl ClientHandler {
    fn on_message(&mut self, link: &Link, channel: u32, message: GuestMessage) -> Result<()> {
        if let Some(tx) = self.hello.take() {
            return match (channel, message) {
                (0, GuestMessage::Hello(hello)) => {
                    let _ = tx.send(hello);
                    Ok(())
                }
                (_, other) => Err(Error::Handshake(format!(
                    "the agent's first message was {} on channel {channel}, not hello",
                    other.name()
                ))),
            };
        }
        if channel == 0 {
            let mut inner = self.state.lock();
            match message {
                GuestMessage::Pong { nonce } => {
                    if let Some(tx) = inner.pings.remove(&nonce) {
                        let _ = tx.send(());
                    }
                }
                GuestMessage::ShuttingDown {} => {
                    if let Some(tx) = inner.shutdown.take() {
                        let _ = tx.send(());
                    }
                }
                // An error on channel 0 reports a message the agent could not handle; the
                // host never sends one it expects to fail, so there is nobody to tell.
                GuestMessage::Error { .. } => {}
                other => {
                    return Err(Error::InvalidMessage(format!(
                        "the agent sent {} on channel 0",
                        other.name()
                    )));
                }
            }
            return Ok(());
        }
        match message {
            GuestMessage::Started { pid } => {
                let inner = self.state.lock();
                if let Some(tx) = inner.channels.get(&channel) {
                    tx.send_modify(|e| {
                        e.pid.get_or_insert(pid);
                    });
                }
            }
            GuestMessage::Exit(status) => {
                // Streams first: whoever `wait`s must find stdin already refusing writes.
                link.close_channel(channel, "the execution has exited");
                self.state.end(channel, End::Exit(status));
            }
            GuestMessage::Done {} => {
                link.close_channel(channel, "the transfer is done");
                self.state.end(channel, End::Done);
            }
            GuestMessage::Error { kind, message } => {
                let reason = format!("the agent failed the request: {message}");
                link.close_channel(channel, &reason);
                self.state.end(channel, End::Failed { kind, message });
            }
            other => {
                let reason = format!("the agent sent {} on channel {channel}", other.name());
                link.close_channel(channel, &reason);
                self.state.end(channel, End::Protocol(reason));
            }
        }
        Ok(())
    }
}

impl Handler for ClientHandler {
    async fn control(&mut self, link: &Link, channel: u32, bytes: Bytes) -> Result<()> {
        match decode_guest_message(&bytes) {
            Ok(message) => self.on_message(link, channel, message),
            Err(e) if channel == 0 || self.hello.is_some() => Err(e),
            Err(e) => {
                // Bad content ends its channel, not the connection.
                let reason = format!("the agent sent an invalid message on channel {channel}: {e}");
                link.close_channel(channel, &reason);
                self.state.end(channel, End::Protocol(reason));
                Ok(())
            }
        }
    }

    fn closed(&mut self, reason: &str) {
        let mut inner = self.state.lock();
        inner.closed = Some(reason.to_owned());
        for (_, tx) in inner.channels.drain() {
            tx.send_modify(|e| {
                e.end.get_or_insert(End::Closed(reason.to_owned()));
            });
        }
        // Dropping the senders fails the waiting pings.
        inner.pings.clear();
        // After `shutdown`, the connection closing is the expected answer.
        if let Some(tx) = inner.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
