//! A block request as the driver lays it out: a 16-byte header in readable buffers, data
//! (readable for writes, writable for reads), and a one-byte status in the last writable byte.

use crate::devices::virtio::chain::Chain;
use crate::error::{Error, Result};
use crate::memory::GuestMemory;

/// Bytes per sector, the unit of addresses in requests.
pub const SECTOR_SIZE: u64 = 512;
/// Largest data transfer in one request: Linux sends at most `max_sectors` (1280 KiB by
/// default); 4 MiB leaves room and bounds the bounce buffer.
pub const MAX_DATA_BYTES: u64 = 4 << 20;
/// Header: type (u32), reserved (u32), sector (u64).
const HEADER_LEN: usize = 16;
/// Length of the `GET_ID` string.
pub const ID_LEN: usize = 20;

/// Request status values.
pub mod status {
    /// Success.
    pub const OK: u8 = 0;
    /// I/O error (also: out of range, write to a read-only disk).
    pub const IOERR: u8 = 1;
    /// Unsupported request type.
    pub const UNSUPP: u8 = 2;
}

/// What the driver asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestType {
    /// Read sectors into the writable buffers.
    In,
    /// Write the readable buffers to sectors.
    Out,
    /// Make earlier writes durable.
    Flush,
    /// Return the device ID string.
    GetId,
    /// Anything else.
    Unsupported(u32),
}

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Its type.
    pub kind: RequestType,
    /// First sector.
    pub sector: u64,
    /// Data bytes (readable for `Out`, writable for `In` and `GetId`).
    pub data_len: u64,
    /// Offset of the status byte in the writable buffers.
    pub status_offset: u64,
}

impl Request {
    /// Parses the request in `chain`. A chain without a writable byte for the status cannot
    /// even be failed properly: that is a protocol error.
    pub fn parse(chain: &Chain, mem: &GuestMemory) -> Result<std::result::Result<Request, u8>> {
        let writable = chain.writable_len();
        let Some(status_offset) = writable.checked_sub(1) else {
            return Err(Error::Guest("block request without a status byte".into()));
        };
        let mut header = [0u8; HEADER_LEN];
        if chain.read_at(mem, 0, &mut header)? < HEADER_LEN {
            return Ok(Err(status::IOERR));
        }
        let kind = match u32::from_le_bytes([header[0], header[1], header[2], header[3]]) {
            0 => RequestType::In,
            1 => RequestType::Out,
            4 => RequestType::Flush,
            8 => RequestType::GetId,
            other => RequestType::Unsupported(other),
        };
        let sector = u64::from_le_bytes([
            header[8], header[9], header[10], header[11], header[12], header[13], header[14],
            header[15],
        ]);
        let data_len = match kind {
            RequestType::Out => chain.readable_len() - HEADER_LEN as u64,
            RequestType::In | RequestType::GetId => status_offset,
            _ => 0,
        };
        Ok(Ok(Request {
            kind,
            sector,
            data_len,
            status_offset,
        }))
    }

    /// The byte range on disk, if it lies inside a disk of `capacity` bytes and within the
    /// per-request cap.
    pub fn disk_range(&self, capacity: u64) -> Option<(u64, usize)> {
        if self.data_len > MAX_DATA_BYTES {
            return None;
        }
        let start = self.sector.checked_mul(SECTOR_SIZE)?;
        let end = start.checked_add(self.data_len)?;
        (end <= capacity).then_some((start, self.data_len as usize))
    }
}
