//! The application's handles on one stream.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::state::{Direction, Key, StreamState};
use super::{Lane, Link, OUTBOX_LIMIT};
use crate::frame::{Frame, MAX_DATA_CHUNK, Stream, encode_to_bytes};

/// Reads one inbound stream (an execution's stdout/stderr on the host, stdin or an upload
/// in the guest). EOF when the peer ends the stream; an error if the channel or the
/// connection ends first. Dropping it discards the rest of the stream without stalling
/// the sender.
pub struct StreamReader {
    link: Link,
    key: Key,
    gen_: u64,
}

/// Writes one outbound stream, never more than the peer granted. `shutdown` (or
/// [`StreamWriter::close`], or dropping it) sends EOF. Writes fail with `BrokenPipe` once
/// the channel has ended.
pub struct StreamWriter {
    link: Link,
    key: Key,
    gen_: u64,
}

impl std::fmt::Debug for StreamReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "StreamReader({} of channel {})",
            self.key.1.name(),
            self.key.0
        )
    }
}

impl std::fmt::Debug for StreamWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "StreamWriter({} of channel {})",
            self.key.1.name(),
            self.key.0
        )
    }
}

fn closed(link: &Link, reason: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        link.shared.closed_error(reason),
    )
}

fn gone(key: Key) -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        format!("{} of channel {} is closed", key.1.name(), key.0),
    )
}

impl StreamReader {
    pub(crate) fn new(link: Link, key: Key, gen_: u64) -> StreamReader {
        StreamReader { link, key, gen_ }
    }

    /// The channel this stream belongs to.
    pub fn channel(&self) -> u32 {
        self.key.0
    }

    /// Which stream of the channel.
    pub fn stream(&self) -> Stream {
        self.key.1
    }
}

impl AsyncRead for StreamReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let shared = &this.link.shared;
        let mut guard = shared.lock();
        let st = &mut *guard;
        let closed_reason = st.closed.clone();
        let Some(StreamState {
            dir: Direction::In(i),
            ..
        }) = st.stream(this.key, this.gen_)
        else {
            return Poll::Ready(match closed_reason {
                Some(r) => Err(closed(&this.link, &r)),
                None => Err(gone(this.key)),
            });
        };
        if !i.buf.is_empty() {
            let n = buf.remaining().min(i.buf.len());
            if n == 0 {
                return Poll::Ready(Ok(()));
            }
            buf.put_slice(&i.buf.split_to(n));
            if st.consumed(this.key, n) {
                shared.writer_wake.notify_one();
            }
            return Poll::Ready(Ok(()));
        }
        if i.eof {
            return Poll::Ready(Ok(()));
        }
        if let Some(reason) = &i.failed {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{} of channel {} ended without EOF: {reason}",
                    this.key.1.name(),
                    this.key.0
                ),
            )));
        }
        if let Some(r) = closed_reason {
            return Poll::Ready(Err(closed(&this.link, &r)));
        }
        i.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for StreamReader {
    fn drop(&mut self) {
        let shared = &self.link.shared;
        if shared.lock().reader_dropped(self.key, self.gen_) {
            shared.writer_wake.notify_one();
        }
    }
}

impl StreamWriter {
    pub(crate) fn new(link: Link, key: Key, gen_: u64) -> StreamWriter {
        StreamWriter { link, key, gen_ }
    }

    /// The channel this stream belongs to.
    pub fn channel(&self) -> u32 {
        self.key.0
    }

    /// Which stream of the channel.
    pub fn stream(&self) -> Stream {
        self.key.1
    }

    /// Sends EOF: the peer reads the end of the stream after what was written.
    pub async fn close(&mut self) -> io::Result<()> {
        self.shutdown().await
    }
}

impl AsyncWrite for StreamWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let this = self.get_mut();
        let shared = &this.link.shared;
        let mut guard = shared.lock();
        let st = &mut *guard;
        if let Some(r) = st.closed.clone() {
            return Poll::Ready(Err(closed(&this.link, &r)));
        }
        let full = st.lane_bytes(Lane::Ordered) >= OUTBOX_LIMIT;
        let Some(StreamState {
            dir: Direction::Out(o),
            ..
        }) = st.stream(this.key, this.gen_)
        else {
            return Poll::Ready(Err(gone(this.key)));
        };
        if let Some(reason) = &o.broken {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                format!("{} of channel {}: {reason}", this.key.1.name(), this.key.0),
            )));
        }
        if o.eof_sent {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                format!(
                    "{} of channel {} is already closed",
                    this.key.1.name(),
                    this.key.0
                ),
            )));
        }
        let available = o.window.available() as usize;
        if available == 0 {
            o.waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        if full {
            st.wait_for_room(cx.waker());
            return Poll::Pending;
        }
        let n = buf.len().min(available).min(MAX_DATA_CHUNK);
        let frame = Frame::Data {
            channel: this.key.0,
            stream: this.key.1,
            bytes: bytes::Bytes::copy_from_slice(&buf[..n]),
        };
        let encoded = match encode_to_bytes(&frame) {
            Ok(b) => b,
            Err(e) => return Poll::Ready(Err(io::Error::other(e))),
        };
        // n <= available, which is a u32.
        if let Err(e) = o.window.consume(u32::try_from(n).unwrap_or(u32::MAX)) {
            return Poll::Ready(Err(io::Error::other(e)));
        }
        st.push(encoded, Lane::Ordered);
        shared.writer_wake.notify_one();
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Frames are queued whole; the writer task writes them as fast as the transport allows.
        let st = self.link.shared.lock();
        match &st.closed {
            Some(r) => Poll::Ready(Err(closed(&self.link, r))),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let shared = &self.link.shared;
        let mut st = shared.lock();
        if let Some(r) = st.closed.clone() {
            return Poll::Ready(Err(closed(&self.link, &r)));
        }
        if st.stream(self.key, self.gen_).is_some() && st.send_eof(self.key) {
            shared.writer_wake.notify_one();
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for StreamWriter {
    fn drop(&mut self) {
        let shared = &self.link.shared;
        if shared.lock().writer_dropped(self.key, self.gen_) {
            shared.writer_wake.notify_one();
        }
    }
}
