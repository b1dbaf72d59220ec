//! The one error type of this crate.

use crate::message::ErrorKind;

/// Everything that can go wrong framing, decoding or running a connection.
///
/// Framing errors (`Frame*`, `UnknownKind`, `UnknownStream`, `BadFrame`) and `FlowControl`
/// are fatal to the connection: the byte stream cannot be trusted after them. The others
/// concern one message or one channel.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A frame whose length field exceeds [`crate::frame::MAX_FRAME_LEN`].
    #[error("framing error: frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLong {
        /// The length field as received.
        len: u32,
        /// The limit for this kind of frame.
        max: u32,
    },
    /// A frame whose length is wrong for its kind.
    #[error("framing error: a {kind} frame cannot be {len} bytes long ({expected})")]
    FrameLength {
        /// The frame kind's name.
        kind: &'static str,
        /// The length field as received.
        len: u32,
        /// What the length should be.
        expected: &'static str,
    },
    /// A frame kind this version does not know.
    #[error("framing error: unknown frame kind {0}; the peer speaks another protocol version")]
    UnknownKind(u8),
    /// A stream number this version does not know.
    #[error("framing error: unknown stream {0}; the peer speaks another protocol version")]
    UnknownStream(u8),
    /// A frame that is well-sized but cannot be valid (e.g. zero credit, data on channel 0).
    #[error("framing error: {0}")]
    BadFrame(&'static str),
    /// The peer broke flow control: it sent more than it was granted, or granted absurdly much.
    #[error("flow control violated: {0}")]
    FlowControl(String),
    /// A control message that does not parse or breaks a limit; names the field and the limit.
    #[error("invalid message: {0}")]
    InvalidMessage(String),
    /// The peer reported that this request failed.
    #[error("{message} ({kind})")]
    Remote {
        /// What kind of failure.
        kind: ErrorKind,
        /// The peer's description, e.g. which command was not found.
        message: String,
    },
    /// The peer's protocol major version is not ours.
    #[error(
        "the agent speaks protocol {theirs_major}.{theirs_minor}, this runtime speaks \
         {ours_major}.{ours_minor}; use an agent and runtime from the same release"
    )]
    Version {
        /// Our major version.
        ours_major: u16,
        /// Our minor version.
        ours_minor: u16,
        /// The peer's major version.
        theirs_major: u16,
        /// The peer's minor version.
        theirs_minor: u16,
    },
    /// The peer did not open the connection with a valid `hello`.
    #[error("handshake failed: {0}")]
    Handshake(String),
    /// The connection is gone; every pending and later call on it fails with this.
    #[error("{peer} connection closed: {reason}")]
    Closed {
        /// Who was on the other end: "agent" on the host, "host" in the guest.
        peer: &'static str,
        /// Why, e.g. "the agent closed the stream" or a framing error.
        reason: String,
    },
    /// A local I/O error, with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, e.g. "writing the download of /etc to the sink".
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The peer-reported kind of a [`Error::Remote`], else `None`.
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            Error::Remote { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// Whether this error ends the whole connection (framing, flow control, closed).
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            Error::FrameTooLong { .. }
                | Error::FrameLength { .. }
                | Error::UnknownKind(_)
                | Error::UnknownStream(_)
                | Error::BadFrame(_)
                | Error::FlowControl(_)
                | Error::Closed { .. }
        )
    }
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
