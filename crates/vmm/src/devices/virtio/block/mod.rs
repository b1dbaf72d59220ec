//! virtio-blk over a raw image file, read-only or read-write.

mod device;
mod request;

pub use device::{Block, QUEUE_SIZE, SEG_MAX};
pub use request::{MAX_DATA_BYTES, Request, RequestType, SECTOR_SIZE, status};
