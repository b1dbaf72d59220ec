//! The console device. Flow control both ways: a transmit chain goes back to the guest only
//! once the socket has taken all its bytes (a full or absent socket stalls the guest, never
//! drops its output), and we read from the socket only when the guest has a receive buffer.

use std::os::fd::RawFd;

use super::backend::{Backend, Transfer};
use crate::devices::virtio::chain::{self, Chain};
use crate::devices::virtio::interrupt::USED_BUFFER;
use crate::devices::virtio::{
    Activation, F_VERSION_1, Readiness, VirtioDevice, Watch, device_type,
};
use crate::error::Result;

/// Queue size.
pub const QUEUE_SIZE: u16 = 256;
/// Bytes moved per socket call, and the most host input staged for the guest.
pub const MAX_CHUNK: usize = 64 * 1024;
/// Cap on one chain's total length (Linux's hvc sends at most a page per buffer).
const MAX_CHAIN_BYTES: u64 = 1 << 20;
const RX: usize = 0;
const TX: usize = 1;

/// A transmit chain partly sent.
struct PendingTx {
    chain: Chain,
    sent: u64,
}

/// The device.
pub struct Console {
    backend: Backend,
    active: Option<Activation>,
    pending_tx: Option<PendingTx>,
    tx_blocked: bool,
    rx_staged: Vec<u8>,
    rx_blocked: bool,
}

impl Console {
    /// A console over `backend`.
    pub fn new(backend: Backend) -> Console {
        Console {
            backend,
            active: None,
            pending_tx: None,
            tx_blocked: false,
            rx_staged: Vec::new(),
            rx_blocked: false,
        }
    }

    /// Guest to host: send pending and new transmit chains while the socket takes bytes.
    fn flush_tx(&mut self) -> Result<()> {
        let Some(a) = self.active.as_mut() else {
            return Ok(());
        };
        let mem = a.mem.clone();
        let mut used = false;
        self.tx_blocked = false;
        loop {
            if self.pending_tx.is_none() {
                let Some(queue) = a.queues.get_mut(TX) else {
                    break;
                };
                let Some(desc) = chain::next_chain(queue, &mem)? else {
                    break;
                };
                self.pending_tx = Some(PendingTx {
                    chain: Chain::parse(desc, MAX_CHAIN_BYTES)?,
                    sent: 0,
                });
            }
            let Some(p) = self.pending_tx.as_mut() else {
                break;
            };
            let total = p.chain.readable_len();
            while p.sent < total {
                let mut buf = vec![0u8; ((total - p.sent) as usize).min(MAX_CHUNK)];
                let n = p.chain.read_at(&mem, p.sent, &mut buf)?;
                match self.backend.send(&buf[..n]) {
                    Transfer::Done(k) => p.sent += k as u64,
                    Transfer::WouldBlock => {
                        self.tx_blocked = true;
                        break;
                    }
                    Transfer::Disconnected => break,
                }
            }
            if p.sent < total {
                break;
            }
            let head = p.chain.head;
            self.pending_tx = None;
            if let Some(queue) = a.queues.get_mut(TX) {
                chain::add_used(queue, &mem, head, 0)?;
                used = true;
            }
        }
        if used {
            a.interrupt.signal(USED_BUFFER);
        }
        Ok(())
    }

    /// Host to guest: stage socket input, then copy it into receive buffers.
    fn pump_rx(&mut self) -> Result<()> {
        let Some(a) = self.active.as_mut() else {
            return Ok(());
        };
        let mem = a.mem.clone();
        let mut used = false;
        loop {
            if self.rx_staged.is_empty() {
                let mut buf = vec![0u8; MAX_CHUNK];
                match self.backend.receive(&mut buf) {
                    Transfer::Done(n) if n > 0 => {
                        buf.truncate(n);
                        self.rx_staged = buf;
                    }
                    _ => break,
                }
            }
            let Some(queue) = a.queues.get_mut(RX) else {
                break;
            };
            let Some(desc) = chain::next_chain(queue, &mem)? else {
                self.rx_blocked = true;
                break;
            };
            let c = Chain::parse(desc, MAX_CHAIN_BYTES)?;
            let n = c.write_at(&mem, 0, &self.rx_staged)?;
            self.rx_staged.drain(..n);
            chain::add_used(queue, &mem, c.head, n as u32)?;
            used = true;
        }
        if used {
            a.interrupt.signal(USED_BUFFER);
        }
        Ok(())
    }
}

impl VirtioDevice for Console {
    fn device_type(&self) -> u32 {
        device_type::CONSOLE
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE, QUEUE_SIZE]
    }

    fn features(&self) -> u64 {
        F_VERSION_1
    }

    fn config(&self) -> Vec<u8> {
        // cols, rows, max_nr_ports: meaningful only with features we do not offer.
        vec![0; 8]
    }

    fn activate(&mut self, activation: Activation) -> Result<()> {
        self.active = Some(activation);
        self.rx_blocked = false;
        Ok(())
    }

    fn reset(&mut self) {
        self.active = None;
        self.pending_tx = None;
        self.tx_blocked = false;
        self.rx_blocked = false;
    }

    fn process_queue(&mut self, index: usize) -> Result<()> {
        match index {
            RX => {
                self.rx_blocked = false;
                self.pump_rx()
            }
            _ => self.flush_tx(),
        }
    }

    fn watches(&self) -> Vec<Watch> {
        let mut w = Vec::new();
        if let Some(fd) = self.backend.listener_fd() {
            w.push(Watch {
                fd,
                read: true,
                write: false,
            });
        }
        if let Some(fd) = self.backend.client_fd() {
            let read = !self.rx_blocked && self.rx_staged.is_empty();
            w.push(Watch {
                fd,
                read,
                write: self.tx_blocked,
            });
        }
        w
    }

    fn process_backend(&mut self, fd: RawFd, ready: Readiness) -> Result<()> {
        if Some(fd) == self.backend.listener_fd() {
            self.backend.accept();
            self.flush_tx()?;
            return self.pump_rx();
        }
        if ready.write {
            self.flush_tx()?;
        }
        if ready.read {
            self.pump_rx()?;
        }

        // A client that went away lets the listener take the next one, with pending output.
        if self.backend.client_fd().is_none() {
            self.tx_blocked = false;
        }
        Ok(())
    }
}
