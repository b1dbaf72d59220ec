//! The network device: transmit chains become length-prefixed frames on the socket, frames
//! from the socket fill receive buffers. No offloads are offered, so every frame is a plain
//! Ethernet frame behind a zeroed `virtio_net_hdr_v1`.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;

use super::frames::{self, Decoder, MAX_FRAME_LEN};
use crate::devices::virtio::chain::{self, Chain};
use crate::devices::virtio::interrupt::USED_BUFFER;
use crate::devices::virtio::{
    Activation, F_VERSION_1, Readiness, VirtioDevice, Watch, device_type,
};
use crate::error::{Error, Result};

/// Queue size.
pub const QUEUE_SIZE: u16 = 256;
/// `virtio_net_hdr_v1`: flags, gso_type, hdr_len, gso_size, csum_start, csum_offset, num_buffers.
const HEADER_LEN: usize = 12;
/// Cap on one chain: a header and the largest frame.
const MAX_CHAIN_BYTES: u64 = (HEADER_LEN + MAX_FRAME_LEN) as u64;
const F_MAC: u64 = 1 << 5;
const RX: usize = 0;
const TX: usize = 1;

/// The device.
pub struct Net {
    stream: Option<UnixStream>,
    mac: [u8; 6],
    active: Option<Activation>,
    decoder: Decoder,
    rx_blocked: bool,
    tx_out: Vec<u8>,
    tx_sent: usize,
    /// Frames dropped: too long for the guest's buffer, or sent while the backend is gone.
    pub dropped: u64,
}

impl Net {
    /// A card with address `mac` on `stream`.
    pub fn new(stream: UnixStream, mac: [u8; 6]) -> Result<Net> {
        stream
            .set_nonblocking(true)
            .map_err(Error::io("making non-blocking", "the network socket"))?;
        Ok(Net {
            stream: Some(stream),
            mac,
            active: None,
            decoder: Decoder::default(),
            rx_blocked: false,
            tx_out: Vec::new(),
            tx_sent: 0,
            dropped: 0,
        })
    }

    /// Writes pending output; false if the socket is full.
    fn send_pending(&mut self) -> bool {
        while self.tx_sent < self.tx_out.len() {
            let Some(s) = self.stream.as_mut() else {
                self.tx_out.clear();
                self.tx_sent = 0;
                return true;
            };
            match s.write(&self.tx_out[self.tx_sent..]) {
                Ok(n) => self.tx_sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => self.stream = None,
            }
        }
        self.tx_out.clear();
        self.tx_sent = 0;
        true
    }

    fn process_tx(&mut self) -> Result<()> {
        let Some(mut a) = self.active.take() else {
            return Ok(());
        };
        let result = self.drain_tx(&mut a);
        self.active = Some(a);
        result
    }

    fn drain_tx(&mut self, a: &mut Activation) -> Result<()> {
        let mem = a.mem.clone();
        let mut used = false;
        loop {
            // One frame in flight: the guest's next frames wait in its queue meanwhile.
            if !self.tx_out.is_empty() {
                if !self.send_pending() {
                    break;
                }
                continue;
            }
            let Some(queue) = a.queues.get_mut(TX) else {
                break;
            };
            let Some(desc) = chain::next_chain(queue, &mem)? else {
                break;
            };
            let c = Chain::parse(desc, MAX_CHAIN_BYTES)?;
            let len = c.readable_len() as usize;
            if len < HEADER_LEN || self.stream.is_none() {
                self.dropped += 1;
            } else {
                let mut frame = vec![0u8; len - HEADER_LEN];
                c.read_at(&mem, HEADER_LEN as u64, &mut frame)?;
                self.tx_out = frames::encode(&frame);
            }
            chain::add_used(queue, &mem, c.head, 0)?;
            used = true;
        }
        if used {
            a.interrupt.signal(USED_BUFFER);
        }
        Ok(())
    }

    fn process_rx(&mut self) -> Result<()> {
        let Some(a) = self.active.as_mut() else {
            return Ok(());
        };
        let mem = a.mem.clone();
        let mut used = false;
        loop {
            let want = match self.decoder.wanted() {
                Ok(w) => w,
                Err(frames::Oversized(n)) => {
                    eprintln!("boxlite-vmm: network backend sent a {n}-byte frame; closing it");
                    self.stream = None;
                    self.decoder.clear();
                    break;
                }
            };
            if want > 0 {
                let Some(s) = self.stream.as_mut() else { break };
                let mut buf = vec![0u8; want];
                match s.read(&mut buf) {
                    Ok(0) => {
                        self.stream = None;
                        break;
                    }
                    Ok(n) => self.decoder.push(&buf[..n]),
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => {
                        self.stream = None;
                        break;
                    }
                }
                continue;
            }
            let Some(queue) = a.queues.get_mut(RX) else {
                break;
            };
            let Some(desc) = chain::next_chain(queue, &mem)? else {
                self.rx_blocked = true;
                break;
            };
            let c = Chain::parse(desc, MAX_CHAIN_BYTES)?;
            let frame = self.decoder.frame().unwrap_or_default();
            let mut written = 0;
            if c.writable_len() >= (HEADER_LEN + frame.len()) as u64 {
                let mut header = [0u8; HEADER_LEN];
                header[10] = 1; // num_buffers
                c.write_at(&mem, 0, &header)?;
                c.write_at(&mem, HEADER_LEN as u64, frame)?;
                written = HEADER_LEN + frame.len();
            } else {
                self.dropped += 1;
            }
            self.decoder.clear();
            chain::add_used(queue, &mem, c.head, written as u32)?;
            used = true;
        }
        if used {
            a.interrupt.signal(USED_BUFFER);
        }
        Ok(())
    }
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u32 {
        device_type::NET
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE, QUEUE_SIZE]
    }

    fn features(&self) -> u64 {
        F_VERSION_1 | F_MAC
    }

    fn config(&self) -> Vec<u8> {
        self.mac.to_vec()
    }

    fn activate(&mut self, activation: Activation) -> Result<()> {
        self.active = Some(activation);
        self.rx_blocked = false;
        Ok(())
    }

    fn reset(&mut self) {
        self.active = None;
        self.rx_blocked = false;
    }

    fn process_queue(&mut self, index: usize) -> Result<()> {
        match index {
            RX => {
                self.rx_blocked = false;
                self.process_rx()
            }
            _ => self.process_tx(),
        }
    }

    fn watches(&self) -> Vec<Watch> {
        self.stream
            .as_ref()
            .map(|s| Watch {
                fd: s.as_raw_fd(),
                read: !self.rx_blocked,
                write: !self.tx_out.is_empty(),
            })
            .into_iter()
            .collect()
    }

    fn process_backend(&mut self, _fd: RawFd, ready: Readiness) -> Result<()> {
        if ready.write {
            self.process_tx()?;
        }
        if ready.read || ready.hangup {
            self.process_rx()?;
        }
        Ok(())
    }
}
