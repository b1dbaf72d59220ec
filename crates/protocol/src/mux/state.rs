//! The mux's state, changed only under its lock and never across an await.

use std::collections::{HashMap, HashSet, VecDeque};
use std::task::Waker;

use bytes::{Bytes, BytesMut};

use super::{BATCH_LIMIT, Lane, Stats};
use crate::error::{Error, Result};
use crate::flow::{RecvWindow, SendWindow};
use crate::frame::{Frame, Stream, encode_to_bytes};

/// A stream within a channel.
pub(crate) type Key = (u32, Stream);

/// Everything the tasks and handles share.
#[derive(Default)]
pub(crate) struct State {
    /// Why the connection closed, once it has.
    pub(crate) closed: Option<String>,
    /// The streams of open channels, and of closed ones whose handles are still alive.
    pub(crate) streams: HashMap<Key, StreamState>,
    /// Channels whose request is in progress.
    pub(crate) open: HashSet<u32>,
    /// Generation of the last registered stream, so a stale handle never finds a new stream
    /// that reuses its key.
    next_gen: u64,
    urgent: VecDeque<Bytes>,
    urgent_bytes: usize,
    /// Credit to grant per stream, coalesced until the writer runs.
    credits: HashMap<Key, u32>,
    ordered: VecDeque<Bytes>,
    ordered_bytes: usize,
    /// Producers waiting for room in a lane.
    room_waiters: Vec<Waker>,
    /// `flush` callers waiting for the outbox to be written.
    drain_waiters: Vec<Waker>,
    /// Whether the writer has a batch in flight.
    writing: bool,
    buffered_in: usize,
    peak_stream_buffered: usize,
}

/// One stream, inbound or outbound.
pub(crate) struct StreamState {
    /// Matches the handle's generation.
    pub(crate) gen_: u64,
    /// Whether the handle is alive; without it the state goes once the stream has ended.
    pub(crate) handle: bool,
    pub(crate) dir: Direction,
}

/// The direction-specific part of a stream.
pub(crate) enum Direction {
    /// We receive.
    In(Inbound),
    /// We send.
    Out(Outbound),
}

/// A stream we receive.
pub(crate) struct Inbound {
    pub(crate) window: RecvWindow,
    pub(crate) buf: BytesMut,
    /// The peer sent EOF.
    pub(crate) eof: bool,
    /// The channel ended before EOF (the reader gets this as an error).
    pub(crate) failed: Option<String>,
    pub(crate) waker: Option<Waker>,
}

/// A stream we send.
pub(crate) struct Outbound {
    pub(crate) window: SendWindow,
    pub(crate) eof_sent: bool,
    /// The channel ended: writes fail with this.
    pub(crate) broken: Option<String>,
    pub(crate) waker: Option<Waker>,
}

/// What the writer task gets from [`State::take_batch`].
pub(crate) enum Batch {
    /// The connection is closed.
    Closed,
    /// Nothing to write.
    Empty,
    /// Encoded frames to write.
    Bytes(Bytes),
}

fn wake(waker: &mut Option<Waker>) {
    if let Some(w) = waker.take() {
        w.wake();
    }
}

fn add_waker(list: &mut Vec<Waker>, waker: &Waker) {
    if !list.iter().any(|w| w.will_wake(waker)) {
        list.push(waker.clone());
    }
}

impl State {
    pub(crate) fn stats(&self) -> Stats {
        Stats {
            buffered_in: self.buffered_in,
            peak_stream_buffered: self.peak_stream_buffered,
            queued_out: self.urgent_bytes + self.ordered_bytes,
            streams: self.streams.len(),
            channels: self.open.len(),
        }
    }

    pub(crate) fn lane_bytes(&self, lane: Lane) -> usize {
        match lane {
            Lane::Urgent => self.urgent_bytes,
            Lane::Ordered => self.ordered_bytes,
        }
    }

    pub(crate) fn push(&mut self, frame: Bytes, lane: Lane) {
        match lane {
            Lane::Urgent => {
                self.urgent_bytes += frame.len();
                self.urgent.push_back(frame);
            }
            Lane::Ordered => {
                self.ordered_bytes += frame.len();
                self.ordered.push_back(frame);
            }
        }
    }

    pub(crate) fn wait_for_room(&mut self, waker: &Waker) {
        add_waker(&mut self.room_waiters, waker);
    }

    pub(crate) fn wait_for_drain(&mut self, waker: &Waker) {
        add_waker(&mut self.drain_waiters, waker);
    }

    pub(crate) fn is_drained(&self) -> bool {
        !self.writing
            && self.urgent.is_empty()
            && self.ordered.is_empty()
            && self.credits.is_empty()
    }

    /// Starts tracking a stream; returns its generation.
    pub(crate) fn register(&mut self, key: Key, inbound: bool) -> u64 {
        self.next_gen += 1;
        let dir = if inbound {
            Direction::In(Inbound {
                window: RecvWindow::new(),
                buf: BytesMut::new(),
                eof: false,
                failed: None,
                waker: None,
            })
        } else {
            Direction::Out(Outbound {
                window: SendWindow::new(),
                eof_sent: false,
                broken: None,
                waker: None,
            })
        };
        if let Some(old) = self.streams.insert(
            key,
            StreamState {
                gen_: self.next_gen,
                handle: true,
                dir,
            },
        ) {
            self.forget(key, old);
        }
        self.next_gen
    }

    /// The stream `key` if it is still generation `gen_`.
    pub(crate) fn stream(&mut self, key: Key, gen_: u64) -> Option<&mut StreamState> {
        self.streams.get_mut(&key).filter(|s| s.gen_ == gen_)
    }

    /// Accounts for a stream state that is going away.
    fn forget(&mut self, key: Key, old: StreamState) {
        if let Direction::In(mut i) = old.dir {
            self.buffered_in -= i.buf.len();
            wake(&mut i.waker);
        } else if let Direction::Out(mut o) = old.dir {
            wake(&mut o.waker);
        }
        self.credits.remove(&key);
    }

    fn remove(&mut self, key: Key) {
        if let Some(old) = self.streams.remove(&key) {
            self.forget(key, old);
        }
    }

    /// Queues `credit` for the stream `key`.
    fn grant(credits: &mut HashMap<Key, u32>, key: Key, credit: u32) {
        let c = credits.entry(key).or_insert(0);
        *c = c.saturating_add(credit);
    }

    /// DATA from the peer. Errors are fatal (flow-control violations).
    /// Returns whether the writer has credit to send.
    pub(crate) fn on_data(&mut self, key: Key, bytes: &[u8]) -> Result<bool> {
        let Some(StreamState {
            handle,
            dir: Direction::In(i),
            ..
        }) = self.streams.get_mut(&key)
        else {
            // A closed channel, or a stream we do not receive on: nothing to keep.
            return Ok(false);
        };
        if i.eof {
            return Ok(false);
        }
        // Frames carry at most MAX_DATA_CHUNK bytes, so this fits.
        let n = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        i.window.on_data(n).map_err(|e| match e {
            Error::FlowControl(m) => {
                Error::FlowControl(format!("{} of channel {}: {m}", key.1.name(), key.0))
            }
            other => other,
        })?;
        if !*handle || i.failed.is_some() {
            // Nobody will read it: discard, and let the sender go on.
            if let Some(credit) = i.window.on_consume(n) {
                State::grant(&mut self.credits, key, credit);
                return Ok(true);
            }
            return Ok(false);
        }
        i.buf.extend_from_slice(bytes);
        self.buffered_in += bytes.len();
        self.peak_stream_buffered = self.peak_stream_buffered.max(i.buf.len());
        wake(&mut i.waker);
        Ok(false)
    }

    /// WINDOW from the peer. Errors are fatal (window overflow).
    pub(crate) fn on_window(&mut self, key: Key, credit: u32) -> Result<()> {
        if let Some(StreamState {
            dir: Direction::Out(o),
            ..
        }) = self.streams.get_mut(&key)
        {
            o.window.grant(credit).map_err(|e| match e {
                Error::FlowControl(m) => {
                    Error::FlowControl(format!("{} of channel {}: {m}", key.1.name(), key.0))
                }
                other => other,
            })?;
            wake(&mut o.waker);
        }
        Ok(())
    }

    /// EOF from the peer.
    pub(crate) fn on_eof(&mut self, key: Key) {
        let Some(StreamState {
            handle,
            dir: Direction::In(i),
            ..
        }) = self.streams.get_mut(&key)
        else {
            return;
        };
        i.eof = true;
        wake(&mut i.waker);
        self.credits.remove(&key);
        if !*handle {
            self.remove(key);
        }
    }

    /// Bytes the application read from an inbound stream; queues credit when it is due.
    /// Returns whether the writer has credit to send.
    pub(crate) fn consumed(&mut self, key: Key, n: usize) -> bool {
        let Some(StreamState {
            dir: Direction::In(i),
            ..
        }) = self.streams.get_mut(&key)
        else {
            return false;
        };
        self.buffered_in -= n;
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        match i.window.on_consume(n) {
            Some(credit) if !i.eof && i.failed.is_none() => {
                State::grant(&mut self.credits, key, credit);
                true
            }
            _ => false,
        }
    }

    /// A reader handle went away: drop what it buffered, and discard from now on.
    /// Returns whether the writer has credit to send.
    pub(crate) fn reader_dropped(&mut self, key: Key, gen_: u64) -> bool {
        let Some(s) = self.streams.get_mut(&key).filter(|s| s.gen_ == gen_) else {
            return false;
        };
        s.handle = false;
        let Direction::In(i) = &mut s.dir else {
            return false;
        };
        if i.eof || i.failed.is_some() {
            self.remove(key);
            return false;
        }
        let n = i.buf.len();
        i.buf = BytesMut::new();
        self.consumed(key, n)
    }

    /// A writer handle went away: send EOF unless done. Returns whether a frame was queued.
    pub(crate) fn writer_dropped(&mut self, key: Key, gen_: u64) -> bool {
        let Some(s) = self.streams.get_mut(&key).filter(|s| s.gen_ == gen_) else {
            return false;
        };
        let queued = match &s.dir {
            Direction::Out(o) if !o.eof_sent && o.broken.is_none() && self.closed.is_none() => {
                self.push(eof_frame(key), Lane::Ordered);
                true
            }
            _ => false,
        };
        self.remove(key);
        queued
    }

    /// Queues EOF on `key` if it is an outbound stream that has not sent one.
    pub(crate) fn send_eof(&mut self, key: Key) -> bool {
        let Some(StreamState {
            dir: Direction::Out(o),
            ..
        }) = self.streams.get_mut(&key)
        else {
            return false;
        };
        if o.eof_sent || o.broken.is_some() {
            return false;
        }
        o.eof_sent = true;
        self.push(eof_frame(key), Lane::Ordered);
        true
    }

    /// Sends EOF on each outbound stream of `channel` that has not sent one.
    pub(crate) fn end_outputs(&mut self, channel: u32) -> bool {
        let mut queued = false;
        for stream in Stream::ALL {
            queued |= self.send_eof((channel, stream));
        }
        queued
    }

    pub(crate) fn close_channel(&mut self, channel: u32, reason: &str) {
        self.open.remove(&channel);
        for stream in Stream::ALL {
            let key = (channel, stream);
            let Some(s) = self.streams.get_mut(&key) else {
                continue;
            };
            match &mut s.dir {
                Direction::In(i) => {
                    if !i.eof && i.failed.is_none() {
                        i.failed = Some(reason.to_owned());
                    }
                    wake(&mut i.waker);
                }
                Direction::Out(o) => {
                    if o.broken.is_none() {
                        o.broken = Some(reason.to_owned());
                    }
                    wake(&mut o.waker);
                }
            }
            self.credits.remove(&key);
            if !s.handle {
                self.remove(key);
            }
        }
    }

    /// Closes the connection: every waiter wakes to find `closed` set.
    pub(crate) fn close(&mut self, reason: String) {
        self.closed = Some(reason);
        for s in self.streams.values_mut() {
            match &mut s.dir {
                Direction::In(i) => wake(&mut i.waker),
                Direction::Out(o) => wake(&mut o.waker),
            }
        }
        self.streams.retain(|_, s| s.handle);
        self.open.clear();
        self.urgent.clear();
        self.ordered.clear();
        self.urgent_bytes = 0;
        self.ordered_bytes = 0;
        self.credits.clear();
        self.room_waiters.drain(..).for_each(Waker::wake);
        self.drain_waiters.drain(..).for_each(Waker::wake);
    }

    /// The next bytes for the writer: credits, then all urgent frames, then ordered ones up
    /// to a batch.
    pub(crate) fn take_batch(&mut self) -> Batch {
        if self.closed.is_some() {
            return Batch::Closed;
        }
        let mut out = BytesMut::new();
        for (key, credit) in self.credits.drain() {
            let frame = Frame::Window {
                channel: key.0,
                stream: key.1,
                credit,
            };
            // Credit is never 0 and channels of streams never 0: this encodes.
            if let Ok(bytes) = encode_to_bytes(&frame) {
                out.extend_from_slice(&bytes);
            }
        }
        while let Some(frame) = self.urgent.pop_front() {
            self.urgent_bytes -= frame.len();
            out.extend_from_slice(&frame);
        }
        while out.len() < BATCH_LIMIT {
            let Some(frame) = self.ordered.pop_front() else {
                break;
            };
            self.ordered_bytes -= frame.len();
            out.extend_from_slice(&frame);
        }
        if out.is_empty() {
            self.writing = false;
            self.drain_waiters.drain(..).for_each(Waker::wake);
            return Batch::Empty;
        }
        self.writing = true;
        self.room_waiters.drain(..).for_each(Waker::wake);
        Batch::Bytes(out.freeze())
    }
}

/// An EOF frame for `key` (its channel is never 0, so this always encodes).
pub(crate) fn eof_frame(key: Key) -> Bytes {
    encode_to_bytes(&Frame::Eof {
        channel: key.0,
        stream: key.1,
    })
    .unwrap_or_default()
}
