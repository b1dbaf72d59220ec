//! virtio-console with one port (`/dev/hvc0` in the guest), carried over a Unix socket: the
//! agent's channel to the host.

mod backend;
mod device;

pub use backend::Backend;
pub use device::{Console, MAX_CHUNK, QUEUE_SIZE};
