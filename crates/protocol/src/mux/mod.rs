//! The connection machinery both ends share: one reader task that demultiplexes frames
//! into per-stream buffers, one writer task that drains an outbox, and the handles
//! ([`StreamReader`], [`StreamWriter`]) through which an application moves bytes.
//!
//! Memory is bounded everywhere a peer or a slow consumer could grow it:
//! - inbound, a stream buffers at most [`crate::INITIAL_WINDOW`] (the peer's credit; more is a
//!   fatal flow-control violation), and a stream whose reader was dropped discards and
//!   re-grants at once, so a forgotten output never stalls its process;
//! - outbound, each queue holds at most [`OUTBOX_LIMIT`] bytes before producers wait, and
//!   DATA only enters the queue with window credit, so a stalled stream takes no queue
//!   space from the others;
//! - control frames for the peer sit in their own queue that the writer drains first, so
//!   pings and window grants overtake bulk data.

// Each end uses most of the machinery, but not all of it.
#![cfg_attr(not(all(feature = "client", feature = "server")), allow(dead_code))]

mod io;
mod state;
mod stream;

use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::Poll;

use bytes::Bytes;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::frame::{Frame, Stream, encode_to_bytes};
use crate::message::encode_message;

pub use stream::{StreamReader, StreamWriter};

use state::State;

/// Most bytes each outbound queue (urgent control, ordered data) holds before producers wait.
///
/// A few data frames' worth: enough to keep the transport busy between two wake-ups of
/// the writer task, small enough that a ping queued behind ordered data waits only for
/// this much to be written.
pub const OUTBOX_LIMIT: usize = 256 * 1024;

/// Bytes the writer task coalesces into one write.
const BATCH_LIMIT: usize = 128 * 1024;

/// Bytes read from the transport at once.
const READ_CHUNK: usize = 64 * 1024;

/// A snapshot of a connection's buffers, for tests and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Bytes received and buffered for applications, over all streams.
    pub buffered_in: usize,
    /// The most one stream ever buffered (never more than [`crate::INITIAL_WINDOW`]).
    pub peak_stream_buffered: usize,
    /// Bytes of frames queued for the writer.
    pub queued_out: usize,
    /// Streams being tracked.
    pub streams: usize,
    /// Channels open.
    pub channels: usize,
}

/// Where an outbound control frame is queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lane {
    /// Before any queued data: requests, signals, pings, `started`.
    Urgent,
    /// In order with the data and EOFs queued before it: `exit`, `done`, `error`.
    Ordered,
}

/// What one end does with CONTROL frames; everything else the mux handles itself.
pub(crate) trait Handler: Send + 'static {
    /// One CONTROL frame; an error is fatal to the connection.
    fn control(
        &mut self,
        link: &Link,
        channel: u32,
        bytes: Bytes,
    ) -> impl Future<Output = Result<()>> + Send;

    /// The connection ended (called once, last).
    fn closed(&mut self, reason: &str);
}

/// State shared by the tasks and the handles.
pub(crate) struct Shared {
    state: Mutex<State>,
    /// Wakes the writer task when the outbox has something.
    writer_wake: Notify,
    /// Becomes true once the connection is closed, to stop both tasks.
    closed_tx: watch::Sender<bool>,
    /// Who is on the other end, for error messages: "agent" or "host".
    peer: &'static str,
}

/// Aborts the tasks when the last handle on the connection goes.
struct Tasks(Mutex<Vec<JoinHandle<()>>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            task.abort();
        }
    }
}

/// A handle on a running connection; the connection lives while any link does.
#[derive(Clone)]
pub(crate) struct Link {
    shared: Arc<Shared>,
    _tasks: Arc<Tasks>,
}

/// Spawns the reader and writer tasks over `reader`/`writer` and returns the first link.
///
/// `first`, an encoded frame, is queued before anything else (the guest's `hello`).
pub(crate) fn start<R, W, H>(
    reader: R,
    writer: W,
    peer: &'static str,
    handler: H,
    first: Option<Bytes>,
) -> Result<Link>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    let (closed_tx, _) = watch::channel(false);
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        writer_wake: Notify::new(),
        closed_tx,
        peer,
    });
    if let Some(frame) = first {
        shared.push_control(frame, Lane::Urgent)?;
    }
    let tasks = Arc::new(Tasks(Mutex::new(Vec::new())));
    let writer = tokio::spawn(io::write_loop(writer, shared.clone()));
    let reader = tokio::spawn(io::read_loop(
        reader,
        shared.clone(),
        Arc::downgrade(&tasks),
        handler,
    ));
    tasks
        .0
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .extend([writer, reader]);
    Ok(Link {
        shared,
        _tasks: tasks,
    })
}

impl Link {
    fn upgrade(shared: &Arc<Shared>, tasks: &Weak<Tasks>) -> Option<Link> {
        Some(Link {
            shared: shared.clone(),
            _tasks: tasks.upgrade()?,
        })
    }

    /// Marks `channel` open; false if it already is.
    pub(crate) fn open_channel(&self, channel: u32) -> bool {
        self.shared.lock().open.insert(channel)
    }

    /// Whether `channel` is open.
    pub(crate) fn is_open(&self, channel: u32) -> bool {
        self.shared.lock().open.contains(&channel)
    }

    /// Closes `channel`: its unfinished inbound streams fail with `reason`, its outbound
    /// streams refuse further writes, and later frames for it are dropped.
    pub(crate) fn close_channel(&self, channel: u32, reason: &str) {
        self.shared.close_channel(channel, reason);
    }

    /// Sends EOF on every outbound stream of `channel` that has not sent one.
    pub(crate) fn end_outputs(&self, channel: u32) {
        self.shared.end_outputs(channel);
    }

    /// A reader for the inbound `stream` of `channel`.
    pub(crate) fn register_recv(&self, channel: u32, stream: Stream) -> StreamReader {
        let gen_ = self.shared.register(channel, stream, true);
        StreamReader::new(self.clone(), (channel, stream), gen_)
    }

    /// A writer for the outbound `stream` of `channel`.
    pub(crate) fn register_send(&self, channel: u32, stream: Stream) -> StreamWriter {
        let gen_ = self.shared.register(channel, stream, false);
        StreamWriter::new(self.clone(), (channel, stream), gen_)
    }

    /// Queues a control message, waiting while its lane is full.
    pub(crate) async fn send<M: Serialize>(
        &self,
        channel: u32,
        message: &M,
        lane: Lane,
    ) -> Result<()> {
        let frame = control_frame(channel, message)?;
        let mut frame = Some(frame);
        poll_fn(|cx| {
            let mut st = self.shared.lock();
            if let Some(reason) = &st.closed {
                return Poll::Ready(Err(self.shared.closed_error(reason)));
            }
            if st.lane_bytes(lane) >= OUTBOX_LIMIT {
                st.wait_for_room(cx.waker());
                return Poll::Pending;
            }
            if let Some(frame) = frame.take() {
                st.push(frame, lane);
                self.shared.writer_wake.notify_one();
            }
            Poll::Ready(Ok(()))
        })
        .await
    }

    /// Queues a control message now, past the lane's limit (for `Drop`, which cannot wait;
    /// each channel does this at most a few times).
    pub(crate) fn send_now<M: Serialize>(
        &self,
        channel: u32,
        message: &M,
        lane: Lane,
    ) -> Result<()> {
        self.shared
            .push_control(control_frame(channel, message)?, lane)
    }

    /// Waits until everything queued so far is written to the transport.
    pub(crate) async fn flush(&self) -> Result<()> {
        poll_fn(|cx| {
            let mut st = self.shared.lock();
            if let Some(reason) = &st.closed {
                return Poll::Ready(Err(self.shared.closed_error(reason)));
            }
            if st.is_drained() {
                return Poll::Ready(Ok(()));
            }
            st.wait_for_drain(cx.waker());
            Poll::Pending
        })
        .await
    }

    /// The error every call fails with once the connection is closed, if it is.
    pub(crate) fn closed_error(&self) -> Option<Error> {
        let st = self.shared.lock();
        st.closed.as_ref().map(|r| self.shared.closed_error(r))
    }

    /// A snapshot of the buffers.
    pub(crate) fn stats(&self) -> Stats {
        self.shared.lock().stats()
    }

    /// Closes the connection (both tasks stop; pending calls fail with `reason`).
    pub(crate) fn fail(&self, reason: String) {
        self.shared.fail(reason);
    }
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Link")
    }
}

fn control_frame<M: Serialize>(channel: u32, message: &M) -> Result<Bytes> {
    encode_to_bytes(&Frame::Control {
        channel,
        bytes: encode_message(message)?,
    })
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn closed_error(&self, reason: &str) -> Error {
        Error::Closed {
            peer: self.peer,
            reason: reason.to_owned(),
        }
    }

    fn push_control(&self, frame: Bytes, lane: Lane) -> Result<()> {
        let mut st = self.lock();
        if let Some(reason) = &st.closed {
            return Err(self.closed_error(reason));
        }
        st.push(frame, lane);
        self.writer_wake.notify_one();
        Ok(())
    }

    /// Closes the connection once; later calls keep the first reason.
    fn fail(&self, reason: String) {
        let mut st = self.lock();
        if st.closed.is_some() {
            return;
        }
        st.close(reason);
        drop(st);
        self.closed_tx.send_replace(true);
        self.writer_wake.notify_one();
    }

    fn close_channel(&self, channel: u32, reason: &str) {
        self.lock().close_channel(channel, reason);
        self.writer_wake.notify_one();
    }

    fn end_outputs(&self, channel: u32) {
        if self.lock().end_outputs(channel) {
            self.writer_wake.notify_one();
        }
    }

    fn register(&self, channel: u32, stream: Stream, inbound: bool) -> u64 {
        self.lock().register((channel, stream), inbound)
    }
}

#[cfg(test)]
mod tests;
