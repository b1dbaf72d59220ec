//! virtio-net over a Unix stream socket carrying Ethernet frames, each preceded by its
//! length as a 4-byte big-endian number (passt's protocol, QEMU's `-netdev stream`).

mod device;
mod frames;

pub use device::{Net, QUEUE_SIZE};
pub use frames::{Decoder, MAX_FRAME_LEN, encode};
