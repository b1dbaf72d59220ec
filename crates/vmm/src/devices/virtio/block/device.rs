//! The block device: executes requests against the image file with positional I/O.

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::request::{ID_LEN, Request, RequestType, SECTOR_SIZE, status};
use crate::devices::virtio::chain::{self, Chain};
use crate::devices::virtio::interrupt::USED_BUFFER;
use crate::devices::virtio::{Activation, F_VERSION_1, VirtioDevice, device_type};
use crate::error::{Error, Result};
use crate::memory::GuestMemory;

/// Queue size.
pub const QUEUE_SIZE: u16 = 256;
/// Data segments per request we advertise: the queue less header and status descriptors.
pub const SEG_MAX: u32 = QUEUE_SIZE as u32 - 2;
/// Cap on a request chain's total length: the data cap plus header and status.
const MAX_CHAIN_BYTES: u64 = super::request::MAX_DATA_BYTES + 4096;

const F_SEG_MAX: u64 = 1 << 2;
const F_RO: u64 = 1 << 5;
const F_FLUSH: u64 = 1 << 9;

/// The device.
pub struct Block {
    file: File,
    read_only: bool,
    capacity: u64,
    id: [u8; ID_LEN],
    active: Option<Activation>,
}

impl Block {
    /// A disk backed by `file` (its length, rounded down to sectors, is the capacity), whose
    /// `GET_ID` answers `id` (truncated to 20 bytes).
    pub fn new(file: File, read_only: bool, id: &str) -> Result<Block> {
        let len = file
            .metadata()
            .map_err(Error::io("reading the size of disk", id))?
            .len();
        let mut id_bytes = [0u8; ID_LEN];
        let n = id.len().min(ID_LEN);
        id_bytes[..n].copy_from_slice(&id.as_bytes()[..n]);
        Ok(Block {
            file,
            read_only,
            capacity: len - len % SECTOR_SIZE,
            id: id_bytes,
            active: None,
        })
    }

    /// Runs one request; returns the status and the bytes written into writable buffers.
    fn execute(&self, chain: &Chain, mem: &GuestMemory, req: &Request) -> Result<(u8, u64)> {
        let io = |r: std::io::Result<()>| if r.is_ok() { status::OK } else { status::IOERR };
        Ok(match req.kind {
            RequestType::In => match req.disk_range(self.capacity) {
                Some((offset, len)) => {
                    let mut buf = vec![0u8; len];
                    let s = io(self.file.read_exact_at(&mut buf, offset));
                    if s == status::OK {
                        chain.write_at(mem, 0, &buf)?;
                        (s, len as u64)
                    } else {
                        (s, 0)
                    }
                }
                None => (status::IOERR, 0),
            },
            RequestType::Out if self.read_only => (status::IOERR, 0),
            RequestType::Out => match req.disk_range(self.capacity) {
                Some((offset, len)) => {
                    let mut buf = vec![0u8; len];
                    chain.read_at(mem, 16, &mut buf)?;
                    (io(self.file.write_all_at(&buf, offset)), 0)
                }
                None => (status::IOERR, 0),
            },
            RequestType::Flush if self.read_only => (status::OK, 0),
            RequestType::Flush => (io(self.file.sync_data()), 0),
            RequestType::GetId => {
                let n = (req.data_len as usize).min(ID_LEN);
                chain.write_at(mem, 0, &self.id[..n])?;
                (status::OK, n as u64)
            }
            RequestType::Unsupported(_) => (status::UNSUPP, 0),
        })
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        device_type::BLOCK
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn features(&self) -> u64 {
        F_VERSION_1 | F_SEG_MAX | F_FLUSH | if self.read_only { F_RO } else { 0 }
    }

    fn config(&self) -> Vec<u8> {
        // capacity (sectors), size_max (unused), seg_max.
        let mut c = Vec::with_capacity(16);
        c.extend_from_slice(&(self.capacity / SECTOR_SIZE).to_le_bytes());
        c.extend_from_slice(&0u32.to_le_bytes());
        c.extend_from_slice(&SEG_MAX.to_le_bytes());
        c
    }

    fn activate(&mut self, activation: Activation) -> Result<()> {
        self.active = Some(activation);
        Ok(())
    }

    fn reset(&mut self) {
        self.active = None;
    }

    fn process_queue(&mut self, _index: usize) -> Result<()> {
        let Some(mut a) = self.active.take() else {
            return Ok(());
        };
        let result = self.drain(&mut a);
        self.active = Some(a);
        result
    }
}

impl Block {
    fn drain(&self, a: &mut Activation) -> Result<()> {
        let mem = a.mem.clone();
        let Some(queue) = a.queues.get_mut(0) else {
            return Ok(());
        };
        let mut used = false;
        while let Some(desc) = chain::next_chain(queue, &mem)? {
            let c = Chain::parse(desc, MAX_CHAIN_BYTES)?;
            let (status, written, status_offset) = match Request::parse(&c, &mem)? {
                Ok(req) => {
                    let (s, w) = self.execute(&c, &mem, &req)?;
                    (s, w, req.status_offset)
                }
                Err(s) => (s, 0, c.writable_len() - 1),
            };
            c.write_at(&mem, status_offset, &[status])?;
            chain::add_used(queue, &mem, c.head, (written + 1) as u32)?;
            used = true;
        }
        if used {
            a.interrupt.signal(USED_BUFFER);
        }
        Ok(())
    }
}
