//! The boxlite host↔guest protocol (see `docs/protocol.md`).
//!
//! One byte stream carries many channels; each channel is an execution or a file transfer
//! with flow-controlled byte streams and JSON control messages. The layers:
//!
//! - [`frame`]: the frame codec, pure; [`frame::FrameDecoder`] turns arbitrary chunks into
//!   frames and rejects malformed input.
//! - [`message`]: the CONTROL messages per direction, with validation against named limits.
//! - [`flow`]: per-stream window bookkeeping, pure.
//! - `mux` (feature `mux`): the async demultiplexer both ends share: one reader task, one
//!   writer task, per-stream bounded buffers.
//! - `client` (feature `client`): the host side, [`client::Client`].
//! - `server` (feature `server`): the guest side, [`server::Connection`], for the agent.

mod error;
pub mod flow;
pub mod frame;
pub mod message;

pub use error::{Error, Result};
#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "mux")]
pub mod mux;
#[cfg(feature = "server")]
pub mod server;
pub use frame::{
    Frame, FrameDecoder, INITIAL_WINDOW, MAX_CONTROL_LEN, MAX_DATA_CHUNK, MAX_FRAME_LEN, Stream,
};
pub use message::{
    CAPABILITY_MOUNT, ErrorKind, ExecRequest, ExitStatus, GuestMessage, Hello, HostMessage,
    MountSource, PROTOCOL_VERSION, TtySize, VolumeMount, decode_guest_message, decode_host_message,
    encode_message,
};
