//! A descriptor chain, checked once: every buffer inside guest RAM, readable ones before
//! writable ones, and the number and total size of buffers capped.

use virtio_queue::DescriptorChain;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use crate::error::{Error, Result};
use crate::memory::GuestMemory;

/// Most descriptors in one chain: Linux never chains more than the queue size (at most 256
/// here), and an indirect table adds at most that many again.
pub const MAX_DESCRIPTORS: usize = 512;

/// One guest buffer, known to lie inside guest RAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buffer {
    /// Guest address.
    pub addr: GuestAddress,
    /// Length in bytes.
    pub len: u32,
}

/// A validated chain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chain {
    /// The head descriptor's index, to return in the used ring.
    pub head: u16,
    /// Buffers the device reads (driver to device), in order.
    pub readable: Vec<Buffer>,
    /// Buffers the device writes (device to driver), in order.
    pub writable: Vec<Buffer>,
}

impl Chain {
    /// Validates `chain`; `max_bytes` caps the total length of the chain's buffers.
    pub fn parse(chain: DescriptorChain<&GuestMemory>, max_bytes: u64) -> Result<Chain> {
        let mem = chain.memory();
        let mut out = Chain {
            head: chain.head_index(),
            ..Chain::default()
        };
        let mut total = 0u64;
        let mut count = 0usize;
        for desc in chain.clone() {
            count += 1;
            if count > MAX_DESCRIPTORS {
                return Err(Error::Guest(format!(
                    "descriptor chain longer than {MAX_DESCRIPTORS}"
                )));
            }
            total += u64::from(desc.len());
            if total > max_bytes {
                return Err(Error::Guest(format!(
                    "descriptor chain longer than {max_bytes} bytes"
                )));
            }
            if desc.len() == 0 {
                continue;
            }
            if !GuestMemoryBackend::check_range(mem, desc.addr(), desc.len() as usize) {
                return Err(Error::Guest(format!(
                    "descriptor {:#x}+{:#x} is outside guest memory",
                    desc.addr().0,
                    desc.len()
                )));
            }
            let buffer = Buffer {
                addr: desc.addr(),
                len: desc.len(),
            };
            if desc.is_write_only() {
                out.writable.push(buffer);
            } else if out.writable.is_empty() {
                out.readable.push(buffer);
            } else {
                return Err(Error::Guest(
                    "a readable descriptor follows a writable one".into(),
                ));
            }
        }
        Ok(out)
    }

    /// Total readable bytes.
    pub fn readable_len(&self) -> u64 {
        self.readable.iter().map(|b| u64::from(b.len)).sum()
    }

    /// Total writable bytes.
    pub fn writable_len(&self) -> u64 {
        self.writable.iter().map(|b| u64::from(b.len)).sum()
    }

    /// Reads readable bytes from `offset` into `buf`; returns how many were available.
    pub fn read_at(&self, mem: &GuestMemory, offset: u64, buf: &mut [u8]) -> Result<usize> {
        copy(&self.readable, offset, buf.len(), |addr, range| {
            mem.read_slice(&mut buf[range], addr)
        })
    }

    /// Writes `data` into the writable buffers from `offset`; returns how many bytes fit.
    pub fn write_at(&self, mem: &GuestMemory, offset: u64, data: &[u8]) -> Result<usize> {
        copy(&self.writable, offset, data.len(), |addr, range| {
            mem.write_slice(&data[range], addr)
        })
    }
}

/// Walks `buffers` from byte `offset` for up to `len` bytes, calling `f` on each piece with
/// its guest address and the matching range of the caller's buffer.
fn copy(
    buffers: &[Buffer],
    mut offset: u64,
    len: usize,
    mut f: impl FnMut(
        GuestAddress,
        std::ops::Range<usize>,
    ) -> std::result::Result<(), vm_memory::GuestMemoryError>,
) -> Result<usize> {
    let mut done = 0usize;
    for b in buffers {
        if done == len {
            break;
        }
        let blen = u64::from(b.len);
        if offset >= blen {
            offset -= blen;
            continue;
        }
        let n = ((blen - offset) as usize).min(len - done);
        f(b.addr.unchecked_add_offset(offset), done..done + n)
            .map_err(|e| Error::Guest(e.to_string()))?;
        done += n;
        offset = 0;
    }
    Ok(done)
}

trait AddOffset {
    fn unchecked_add_offset(self, offset: u64) -> GuestAddress;
}

impl AddOffset for GuestAddress {
    // The buffer was checked to lie in RAM, so base + offset (< len) cannot overflow.
    fn unchecked_add_offset(self, offset: u64) -> GuestAddress {
        GuestAddress(self.0 + offset)
    }
}

/// The next chain the driver made available, if any; a corrupt available ring (an index
/// running more than a queue ahead) is the guest's error.
pub fn next_chain<'a>(
    queue: &mut virtio_queue::Queue,
    mem: &'a GuestMemory,
) -> Result<Option<DescriptorChain<&'a GuestMemory>>> {
    use virtio_queue::QueueOwnedT;
    let mut iter = queue
        .iter(mem)
        .map_err(|e| Error::Guest(format!("available ring: {e}")))?;
    Ok(iter.next())
}

/// Returns `head` to the driver with `len` bytes written.
pub fn add_used(
    queue: &mut virtio_queue::Queue,
    mem: &GuestMemory,
    head: u16,
    len: u32,
) -> Result<()> {
    use virtio_queue::QueueT;
    queue
        .add_used(mem, head, len)
        .map_err(|e| Error::Guest(format!("used ring: {e}")))
}
