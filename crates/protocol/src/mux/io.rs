//! The reader and writer tasks.

use std::sync::{Arc, Weak};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use super::state::Batch;
use super::{Handler, Link, READ_CHUNK, Shared, Tasks};
use crate::error::{Error, Result};
use crate::frame::{Frame, FrameDecoder};

/// Drains the outbox into `io` until the connection closes or a write fails.
pub(crate) async fn write_loop<W: AsyncWrite + Unpin>(mut io: W, shared: Arc<Shared>) {
    let mut closed = shared.closed_tx.subscribe();
    loop {
        let batch = shared.lock().take_batch();
        match batch {
            Batch::Closed => break,
            Batch::Empty => {
                tokio::select! {
                    _ = shared.writer_wake.notified() => {}
                    _ = closed.wait_for(|c| *c) => break,
                }
            }
            Batch::Bytes(bytes) => {
                let written = tokio::select! {
                    r = async {
                        io.write_all(&bytes).await?;
                        io.flush().await
                    } => r,
                    _ = closed.wait_for(|c| *c) => break,
                };
                if let Err(e) = written {
                    shared.fail(format!("writing to the {} failed: {e}", shared.peer));
                    break;
                }
            }
        }
    }
}

/// Reads frames from `io` and dispatches them until the connection closes, then tells the
/// handler why.
pub(crate) async fn read_loop<R, H>(
    mut io: R,
    shared: Arc<Shared>,
    tasks: Weak<Tasks>,
    mut handler: H,
) where
    R: AsyncRead + Unpin,
    H: Handler,
{
    let mut closed = shared.closed_tx.subscribe();
    if let Err(e) = read_frames(&mut io, &shared, &tasks, &mut handler, &mut closed).await {
        shared.fail(e);
    }
    let reason = shared.lock().closed.clone().unwrap_or_default();
    handler.closed(&reason);
}

async fn read_frames<R, H>(
    io: &mut R,
    shared: &Arc<Shared>,
    tasks: &Weak<Tasks>,
    handler: &mut H,
    closed: &mut watch::Receiver<bool>,
) -> Result<(), String>
where
    R: AsyncRead + Unpin,
    H: Handler,
{
    let mut decoder = FrameDecoder::new();
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let n = tokio::select! {
            r = io.read(&mut buf) => r.map_err(|e| format!("reading from the {} failed: {e}", shared.peer))?,
            _ = closed.wait_for(|c| *c) => return Ok(()),
        };
        if n == 0 {
            return Err(format!("the {} closed the connection", shared.peer));
        }
        decoder.feed(&buf[..n]);
        loop {
            let frame = match decoder.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => return Err(e.to_string()),
            };
            dispatch(frame, shared, tasks, handler, closed)
                .await
                .map_err(|e| e.to_string())?;
            if *closed.borrow() {
                return Ok(());
            }
        }
    }
}

async fn dispatch<H: Handler>(
    frame: Frame,
    shared: &Arc<Shared>,
    tasks: &Weak<Tasks>,
    handler: &mut H,
    closed: &mut watch::Receiver<bool>,
) -> Result<()> {
    let wake_writer = match frame {
        Frame::Control { channel, bytes } => {
            let Some(link) = Link::upgrade(shared, tasks) else {
                // Every handle is gone: the tasks are being aborted.
                return Ok(());
            };
            tokio::select! {
                r = handler.control(&link, channel, bytes) => r?,
                _ = closed.wait_for(|c| *c) => {}
            }
            false
        }
        Frame::Data {
            channel,
            stream,
            bytes,
        } => shared.lock().on_data((channel, stream), &bytes)?,
        Frame::Window {
            channel,
            stream,
            credit,
        } => {
            shared.lock().on_window((channel, stream), credit)?;
            false
        }
        Frame::Eof { channel, stream } => {
            shared.lock().on_eof((channel, stream));
            false
        }
    };
    if wake_writer {
        shared.writer_wake.notify_one();
    }
    Ok::<(), Error>(())
}
