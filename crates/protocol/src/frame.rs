//! The frame codec: bytes to [`Frame`]s and back, without I/O.
//!
//! ```text
//! len: u32 BE      bytes after this field (kind + channel + payload)
//! kind: u8         1 CONTROL, 2 DATA, 3 WINDOW, 4 EOF
//! channel: u32 BE  0 for the connection itself, else an execution or transfer id
//! payload          CONTROL: JSON; DATA: stream u8 + bytes; WINDOW: stream u8 + credit u32 BE;
//!                  EOF: stream u8
//! ```

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::{Error, Result};

/// Most bytes of one CONTROL payload (a JSON message).
///
/// Large enough for an `exec` with a megabyte of argv and env (Linux's own default
/// ARG_MAX is 2 MiB, but one argument is capped at 128 KiB), small enough that the
/// decoder's one-frame buffer stays at a megabyte: control frames are not flow-controlled,
/// so this bounds what a peer can make the other side hold for a single message.
pub const MAX_CONTROL_LEN: usize = 1024 * 1024;

/// Most bytes of one DATA payload (after the stream byte).
///
/// Small enough that a frame of one stream delays the others (and control frames queued
/// behind it) by microseconds, large enough that the 10-byte header is noise.
pub const MAX_DATA_CHUNK: usize = 32 * 1024;

/// Bytes of a frame before its payload: `len`, `kind`, `channel`.
pub const HEADER_LEN: usize = 9;

/// Most value of the `len` field: kind, channel and the largest payload (a CONTROL one).
///
/// Anything larger is rejected from the length field alone, before any of it is buffered.
pub const MAX_FRAME_LEN: usize = 5 + MAX_CONTROL_LEN;

/// Bytes each direction of each stream may have in flight before the receiver grants more.
///
/// This is the most a receiver ever buffers per stream. 256 KiB keeps a virtio-console
/// link busy (several round trips of 32 KiB chunks) while a thousand stalled streams
/// still cost at most 256 MiB, and a typical handful a few megabytes.
pub const INITIAL_WINDOW: u32 = 256 * 1024;

const KIND_CONTROL: u8 = 1;
const KIND_DATA: u8 = 2;
const KIND_WINDOW: u8 = 3;
const KIND_EOF: u8 = 4;

/// A flow-controlled byte stream within a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Stream {
    /// An execution's standard input (host to guest).
    Stdin = 0,
    /// An execution's standard output (guest to host); with a tty, all terminal output.
    Stdout = 1,
    /// An execution's standard error (guest to host); empty with a tty.
    Stderr = 2,
    /// A tar stream: host to guest for `upload`, guest to host for `download`.
    Transfer = 3,
}

impl Stream {
    /// All streams, in wire order.
    pub const ALL: [Stream; 4] = [
        Stream::Stdin,
        Stream::Stdout,
        Stream::Stderr,
        Stream::Transfer,
    ];

    /// The stream with wire number `n`.
    pub fn from_u8(n: u8) -> Result<Stream> {
        match n {
            0 => Ok(Stream::Stdin),
            1 => Ok(Stream::Stdout),
            2 => Ok(Stream::Stderr),
            3 => Ok(Stream::Transfer),
            _ => Err(Error::UnknownStream(n)),
        }
    }

    /// A short name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdin => "stdin",
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
            Stream::Transfer => "transfer",
        }
    }
}

/// One frame on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A JSON control message (see [`crate::message`]).
    Control {
        /// 0 for the connection, else the request's channel.
        channel: u32,
        /// The JSON text, at most [`MAX_CONTROL_LEN`] bytes.
        bytes: Bytes,
    },
    /// Bytes of one stream; 1 to [`MAX_DATA_CHUNK`] of them.
    Data {
        /// The request's channel (never 0).
        channel: u32,
        /// Which stream.
        stream: Stream,
        /// The bytes.
        bytes: Bytes,
    },
    /// The receiver of a stream lets the sender send `credit` more bytes.
    Window {
        /// The request's channel (never 0).
        channel: u32,
        /// Which stream.
        stream: Stream,
        /// Additional bytes the sender may send (never 0).
        credit: u32,
    },
    /// The sender will send nothing more on this stream.
    Eof {
        /// The request's channel (never 0).
        channel: u32,
        /// Which stream.
        stream: Stream,
    },
}

impl Frame {
    /// The frame's channel.
    pub fn channel(&self) -> u32 {
        match self {
            Frame::Control { channel, .. }
            | Frame::Data { channel, .. }
            | Frame::Window { channel, .. }
            | Frame::Eof { channel, .. } => *channel,
        }
    }

    /// Bytes this frame takes on the wire.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN
            + match self {
                Frame::Control { bytes, .. } => bytes.len(),
                Frame::Data { bytes, .. } => 1 + bytes.len(),
                Frame::Window { .. } => 5,
                Frame::Eof { .. } => 1,
            }
    }

    /// Checks the limits the decoder enforces, so that what encodes also decodes.
    pub fn validate(&self) -> Result<()> {
        match self {
            Frame::Control { bytes, .. } => {
                if bytes.len() > MAX_CONTROL_LEN {
                    return Err(Error::FrameTooLong {
                        len: len_u32(5 + bytes.len()),
                        max: len_u32(5 + MAX_CONTROL_LEN),
                    });
                }
            }
            Frame::Data { channel, bytes, .. } => {
                check_stream_channel(*channel)?;
                if bytes.is_empty() {
                    return Err(Error::BadFrame("a DATA frame must carry at least one byte"));
                }
                if bytes.len() > MAX_DATA_CHUNK {
                    return Err(Error::FrameTooLong {
                        len: len_u32(6 + bytes.len()),
                        max: len_u32(6 + MAX_DATA_CHUNK),
                    });
                }
            }
            Frame::Window {
                channel, credit, ..
            } => {
                check_stream_channel(*channel)?;
                if *credit == 0 {
                    return Err(Error::BadFrame(
                        "a WINDOW frame must grant at least one byte",
                    ));
                }
            }
            Frame::Eof { channel, .. } => check_stream_channel(*channel)?,
        }
        Ok(())
    }
}

fn check_stream_channel(channel: u32) -> Result<()> {
    if channel == 0 {
        return Err(Error::BadFrame(
            "channel 0 is the connection itself and has no streams",
        ));
    }
    Ok(())
}

/// `n` as a `u32`, saturating (only used for error messages and bounded lengths).
fn len_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Appends `frame`'s wire form to `out`; fails (appending nothing) if it breaks a limit.
pub fn encode(frame: &Frame, out: &mut BytesMut) -> Result<()> {
    frame.validate()?;
    out.reserve(frame.encoded_len());
    // Validated above: the length fits the limits, hence a u32.
    out.put_u32(len_u32(frame.encoded_len() - 4));
    match frame {
        Frame::Control { channel, bytes } => {
            out.put_u8(KIND_CONTROL);
            out.put_u32(*channel);
            out.put_slice(bytes);
        }
        Frame::Data {
            channel,
            stream,
            bytes,
        } => {
            out.put_u8(KIND_DATA);
            out.put_u32(*channel);
            out.put_u8(*stream as u8);
            out.put_slice(bytes);
        }
        Frame::Window {
            channel,
            stream,
            credit,
        } => {
            out.put_u8(KIND_WINDOW);
            out.put_u32(*channel);
            out.put_u8(*stream as u8);
            out.put_u32(*credit);
        }
        Frame::Eof { channel, stream } => {
            out.put_u8(KIND_EOF);
            out.put_u32(*channel);
            out.put_u8(*stream as u8);
        }
    }
    Ok(())
}

/// `frame`'s wire form as one buffer.
pub fn encode_to_bytes(frame: &Frame) -> Result<Bytes> {
    let mut out = BytesMut::with_capacity(frame.encoded_len());
    encode(frame, &mut out)?;
    Ok(out.freeze())
}

/// Turns a byte stream, fed in arbitrary chunks, into frames.
///
/// It holds at most one partial frame plus the unread rest of the last chunk. The first
/// error is final: the stream cannot be resynchronised, so every later call repeats it.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: BytesMut,
    failed: Option<FailedWith>,
}

/// A copyable record of the decoder's first error, to repeat it.
#[derive(Debug, Clone, Copy)]
enum FailedWith {
    TooLong {
        len: u32,
        max: u32,
    },
    Length {
        kind: &'static str,
        len: u32,
        expected: &'static str,
    },
    Kind(u8),
    Stream(u8),
    Bad(&'static str),
}

impl FailedWith {
    fn of(e: &Error) -> FailedWith {
        match e {
            Error::FrameTooLong { len, max } => FailedWith::TooLong {
                len: *len,
                max: *max,
            },
            Error::FrameLength {
                kind,
                len,
                expected,
            } => FailedWith::Length {
                kind,
                len: *len,
                expected,
            },
            Error::UnknownKind(k) => FailedWith::Kind(*k),
            Error::UnknownStream(s) => FailedWith::Stream(*s),
            Error::BadFrame(m) => FailedWith::Bad(m),
            _ => FailedWith::Bad("the stream failed before"),
        }
    }

    fn error(self) -> Error {
        match self {
            FailedWith::TooLong { len, max } => Error::FrameTooLong { len, max },
            FailedWith::Length {
                kind,
                len,
                expected,
            } => Error::FrameLength {
                kind,
                len,
                expected,
            },
            FailedWith::Kind(k) => Error::UnknownKind(k),
            FailedWith::Stream(s) => Error::UnknownStream(s),
            FailedWith::Bad(m) => Error::BadFrame(m),
        }
    }
}

impl FrameDecoder {
    /// An empty decoder.
    pub fn new() -> FrameDecoder {
        FrameDecoder::default()
    }

    /// Appends received bytes; call [`FrameDecoder::next_frame`] until it returns `None`.
    pub fn feed(&mut self, chunk: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(chunk);
        }
    }

    /// Bytes held that do not yet form a complete frame (or wait to be decoded).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete frame, `None` if more bytes are needed, or the (fatal) error.
    pub fn next_frame(&mut self) -> Result<Option<Frame>> {
        if let Some(f) = self.failed {
            return Err(f.error());
        }
        match self.decode_one() {
            Ok(frame) => Ok(frame),
            Err(e) => {
                self.failed = Some(FailedWith::of(&e));
                self.buf = BytesMut::new();
                Err(e)
            }
        }
    }

    fn decode_one(&mut self) -> Result<Option<Frame>> {
        let Some(len_bytes) = self.buf.get(..4) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
        if len as usize > MAX_FRAME_LEN {
            return Err(Error::FrameTooLong {
                len,
                max: len_u32(MAX_FRAME_LEN),
            });
        }
        if len < 5 {
            return Err(Error::FrameLength {
                kind: "frame",
                len,
                expected: "at least 5: kind and channel",
            });
        }
        // Check the kind as soon as it is here, so garbage fails without waiting for `len` bytes.
        if let Some(&kind) = self.buf.get(4) {
            check_kind_len(kind, len)?;
        }
        if self.buf.len() < 4 + len as usize {
            self.buf.reserve(4 + len as usize - self.buf.len());
            return Ok(None);
        }
        self.buf.advance(4);
        let mut body = self.buf.split_to(len as usize).freeze();
        let kind = body.get_u8();
        let channel = body.get_u32();
        let frame = match kind {
            KIND_CONTROL => Frame::Control {
                channel,
                bytes: body,
            },
            KIND_DATA => {
                let stream = Stream::from_u8(body.get_u8())?;
                Frame::Data {
                    channel,
                    stream,
                    bytes: body,
                }
            }
            KIND_WINDOW => {
                let stream = Stream::from_u8(body.get_u8())?;
                Frame::Window {
                    channel,
                    stream,
                    credit: body.get_u32(),
                }
            }
            // check_kind_len let only the four kinds through.
            _ => Frame::Eof {
                channel,
                stream: Stream::from_u8(body.get_u8())?,
            },
        };
        frame.validate()?;
        if self.buf.is_empty() {
            // Let a large frame's allocation go instead of keeping it for the next small one.
            self.buf = BytesMut::new();
        }
        Ok(Some(frame))
    }
}

/// Checks that `len` (kind + channel + payload) is possible for `kind`.
fn check_kind_len(kind: u8, len: u32) -> Result<()> {
    let (name, ok, expected) = match kind {
        KIND_CONTROL => (
            "CONTROL",
            len as usize <= 5 + MAX_CONTROL_LEN,
            "at most 5 + MAX_CONTROL_LEN",
        ),
        KIND_DATA => (
            "DATA",
            len >= 7 && len as usize <= 6 + MAX_DATA_CHUNK,
            "6 + 1..=MAX_DATA_CHUNK",
        ),
        KIND_WINDOW => ("WINDOW", len == 10, "exactly 10"),
        KIND_EOF => ("EOF", len == 6, "exactly 6"),
        _ => return Err(Error::UnknownKind(kind)),
    };
    if ok {
        Ok(())
    } else {
        Err(Error::FrameLength {
            kind: name,
            len,
            expected,
        })
    }
}

#[cfg(test)]
mod tests;
