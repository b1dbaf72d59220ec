//! The guest's handling of the host's control messages.

use std::collections::HashMap;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::events::{EventSender, events};
use super::{Download, Exec, ExecEvent, Mount, Reply, Request, ShutdownReply, Upload};
use crate::error::Result;
use crate::frame::Stream;
use crate::message::{ErrorKind, GuestMessage, HostMessage, decode_host_message};
use crate::mux::{Handler, Lane, Link};

/// The reader task's handler in the guest.
pub(crate) struct ServerHandler {
    requests: mpsc::Sender<Request>,
    /// Where each running execution's events go.
    events: HashMap<u32, EventSender>,
}

impl ServerHandler {
    pub(crate) fn new(requests: mpsc::Sender<Request>) -> ServerHandler {
        ServerHandler {
            requests,
            events: HashMap::new(),
        }
    }

    /// Answers `error` on `channel`, cancelling what runs there.
    async fn reject(
        &mut self,
        link: &Link,
        channel: u32,
        kind: ErrorKind,
        message: String,
    ) -> Result<()> {
        if channel != 0 && link.is_open(channel) {
            self.cancel(link, channel);
        }
        let lane = if channel == 0 {
            Lane::Urgent
        } else {
            Lane::Ordered
        };
        link.send(channel, &GuestMessage::Error { kind, message }, lane)
            .await
    }

    /// Ends `channel` locally and tells its execution (if any) to kill its process group.
    fn cancel(&mut self, link: &Link, channel: u32) {
        link.close_channel(channel, "the host cancelled the request");
        if let Some(tx) = self.events.remove(&channel) {
            tx.send(ExecEvent::Cancel);
        }
    }

    /// Hands a request to the agent; if the agent stopped taking requests, the request's
    /// `Reply` answers for it as it drops.
    async fn deliver(&mut self, request: Request) {
        let _ = self.requests.send(request).await;
    }

    async fn on_message(&mut self, link: &Link, channel: u32, message: HostMessage) -> Result<()> {
        if channel == 0 {
            return match message {
                HostMessage::Ping { nonce } => {
                    link.send(0, &GuestMessage::Pong { nonce }, Lane::Urgent)
                        .await
                }
                HostMessage::Shutdown {} => {
                    self.deliver(Request::Shutdown(ShutdownReply { link: link.clone() }))
                        .await;
                    Ok(())
                }
                other => {
                    let m = format!("{} needs a channel other than 0", other.name());
                    self.reject(link, 0, ErrorKind::Invalid, m).await
                }
            };
        }
        match message {
            HostMessage::Exec(_)
            | HostMessage::Upload { .. }
            | HostMessage::Download { .. }
            | HostMessage::Mount { .. }
                if !link.open_channel(channel) =>
            {
                let m = format!(
                    "channel {channel} already has a request in progress; use a new channel id"
                );
                // Not `reject`: that would cancel the request already running there.
                link.send(
                    channel,
                    &GuestMessage::Error {
                        kind: ErrorKind::Invalid,
                        message: m,
                    },
                    Lane::Ordered,
                )
                .await
            }
            HostMessage::Exec(request) => {
                self.events.retain(|_, tx| !tx.is_abandoned());
                let (tx, events) = events();
                self.events.insert(channel, tx);
                let exec = Exec {
                    request,
                    stdin: link.register_recv(channel, Stream::Stdin),
                    stdout: link.register_send(channel, Stream::Stdout),
                    stderr: link.register_send(channel, Stream::Stderr),
                    events,
                    reply: Reply::new(link.clone(), channel),
                };
                self.deliver(Request::Exec(exec)).await;
                Ok(())
            }
            HostMessage::Upload { path } => {
                let upload = Upload {
                    path,
                    data: link.register_recv(channel, Stream::Transfer),
                    reply: Reply::new(link.clone(), channel),
                };
                self.deliver(Request::Upload(upload)).await;
                Ok(())
            }
            HostMessage::Download { path } => {
                let download = Download {
                    path,
                    data: link.register_send(channel, Stream::Transfer),
                    reply: Reply::new(link.clone(), channel),
                };
                self.deliver(Request::Download(download)).await;
                Ok(())
            }
            HostMessage::Mount { volumes } => {
                // No streams: the answer is the whole result.
                let mount = Mount {
                    volumes,
                    reply: Reply::new(link.clone(), channel),
                };
                self.deliver(Request::Mount(mount)).await;
                Ok(())
            }
            HostMessage::Signal { signal, group } => {
                self.event(channel, ExecEvent::Signal { signal, group });
                Ok(())
            }
            HostMessage::Resize { rows, cols } => {
                self.event(channel, ExecEvent::Resize { rows, cols });
                Ok(())
            }
            HostMessage::Cancel {} => {
                if link.is_open(channel) {
                    self.cancel(link, channel);
                }
                Ok(())
            }
            other @ (HostMessage::Ping { .. } | HostMessage::Shutdown {}) => {
                let m = format!("{} belongs on channel 0", other.name());
                self.reject(link, channel, ErrorKind::Invalid, m).await
            }
        }
    }

    /// Passes an event to a running execution; one that has ended (the event raced with
    /// its exit) or never was ignores it.
    fn event(&mut self, channel: u32, event: ExecEvent) {
        if let Some(tx) = self.events.get(&channel) {
            if tx.is_abandoned() {
                self.events.remove(&channel);
            } else {
                tx.send(event);
            }
        }
    }
}

impl Handler for ServerHandler {
    async fn control(&mut self, link: &Link, channel: u32, bytes: Bytes) -> Result<()> {
        match decode_host_message(&bytes) {
            Ok(message) => self.on_message(link, channel, message).await,
            Err(e) => {
                // Bad content ends its channel with an error, never the connection.
                self.reject(link, channel, ErrorKind::Invalid, e.to_string())
                    .await
            }
        }
    }

    fn closed(&mut self, _reason: &str) {
        // Dropping the senders ends `next_request` and every execution's event stream.
        self.events.clear();
    }
}
