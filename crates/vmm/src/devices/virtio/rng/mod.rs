//! virtio-rng: the guest's entropy comes from the host's getrandom(2).

mod device;

pub use device::{MAX_FILL_BYTES, QUEUE_SIZE, Rng};
