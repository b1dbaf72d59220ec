//! virtio-fs (virtio 1.2 §5.11) served by an external vhost-user daemon (virtiofsd): the
//! guest's FUSE requests never pass through the VMM. The daemon maps guest RAM (a shared
//! memfd, see [`crate::memory::create_shared`]), reads the queue eventfds KVM signals on the
//! guest's notifications, and signals one "call" eventfd per queue when it has used buffers;
//! the device thread turns those into the transport's used-buffer interrupt, because a
//! virtio-mmio driver ignores an interrupt whose `InterruptStatus` lacks that bit.

mod backend;
mod config;
mod device;

pub use config::{NUM_REQUEST_QUEUES, TAG_LEN, check_tag, config_space};
pub use device::{Fs, NUM_QUEUES, QUEUE_SIZE};
