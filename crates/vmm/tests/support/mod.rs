//! A virtio driver for tests: it programs an `MmioTransport` through its registers and lays
//! descriptor chains in real guest memory the way Linux's virtio_ring does.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use vm_memory::{Bytes, GuestAddress};
use vmm::bus::BusDevice;
use vmm::devices::irq::IrqLine;
use vmm::devices::virtio::mmio::{MmioTransport, reg, status};
use vmm::devices::virtio::{F_VERSION_1, Interrupt, Readiness, VirtioDevice};
use vmm::memory::{self, GuestMemory};

pub use std::sync::Arc;

/// Descriptor flags.
pub const NEXT: u16 = 1;
pub const WRITE: u16 = 2;
/// Where queue `q`'s rings go.
pub fn ring_base(q: usize) -> u64 {
    0x10000 + q as u64 * 0x10000
}
/// Where buffers go.
pub const DATA: u64 = 0x100000;

pub struct Driver {
    pub mem: GuestMemory,
    pub t: MmioTransport,
    pub sizes: Vec<u16>,
    pub avail_idx: Vec<u16>,
    pub next_desc: Vec<u16>,
}

impl Driver {
    /// A transport around `device` in `mib` MiB of memory, not yet initialised.
    pub fn raw(device: Box<dyn VirtioDevice>, mib: u64) -> Driver {
        let mem = memory::create(mib).unwrap();
        let interrupt = Arc::new(Interrupt::new(IrqLine::new(5).unwrap()));
        let t = MmioTransport::new(device, mem.clone(), interrupt).unwrap();
        let n = t.queue_count();
        Driver {
            mem,
            t,
            sizes: vec![0; n],
            avail_idx: vec![0; n],
            next_desc: vec![0; n],
        }
    }

    /// Initialises the device as Linux does, accepting `extra` features, with queues of `size`.
    pub fn new(device: Box<dyn VirtioDevice>, extra: u64, size: u16) -> Driver {
        let mut d = Driver::raw(device, 32);
        d.init(extra, size);
        d
    }

    pub fn read32(&mut self, offset: u64) -> u32 {
        let mut b = [0u8; 4];
        self.t.read(offset, &mut b);
        u32::from_le_bytes(b)
    }

    pub fn write32(&mut self, offset: u64, v: u32) {
        self.t.write(offset, &v.to_le_bytes());
    }

    pub fn features(&mut self) -> u64 {
        self.write32(reg::DEVICE_FEATURES_SEL, 0);
        let lo = self.read32(reg::DEVICE_FEATURES);
        self.write32(reg::DEVICE_FEATURES_SEL, 1);
        let hi = self.read32(reg::DEVICE_FEATURES);
        (u64::from(hi) << 32) | u64::from(lo)
    }

    pub fn init(&mut self, extra: u64, size: u16) {
        assert_eq!(self.read32(reg::MAGIC), 0x7472_6976);
        assert_eq!(self.read32(reg::VERSION), 2);
        self.write32(reg::STATUS, 0);
        self.write32(reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
        let accepted = (F_VERSION_1 | extra) & self.features();
        self.write32(reg::DRIVER_FEATURES_SEL, 0);
        self.write32(reg::DRIVER_FEATURES, accepted as u32);
        self.write32(reg::DRIVER_FEATURES_SEL, 1);
        self.write32(reg::DRIVER_FEATURES, (accepted >> 32) as u32);
        self.write32(
            reg::STATUS,
            status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK,
        );
        assert_ne!(
            self.read32(reg::STATUS) & status::FEATURES_OK,
            0,
            "features accepted"
        );
        for q in 0..self.t.queue_count() {
            self.setup_queue(q, size, ring_base(q));
        }
        self.write32(
            reg::STATUS,
            status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK,
        );
        // Activation kicks every queue once; drain those kicks.
        for q in 0..self.t.queue_count() {
            self.t.handle_queue_event(q);
        }
        self.take_irq();
    }

    pub fn setup_queue(&mut self, q: usize, size: u16, base: u64) {
        self.write32(reg::QUEUE_SEL, q as u32);
        assert!(self.read32(reg::QUEUE_NUM_MAX) >= u32::from(size));
        self.write32(reg::QUEUE_NUM, u32::from(size));
        let (desc, avail, used) = (base, base + 0x4000, base + 0x8000);
        self.write32(reg::QUEUE_DESC_LOW, desc as u32);
        self.write32(reg::QUEUE_DESC_HIGH, (desc >> 32) as u32);
        self.write32(reg::QUEUE_AVAIL_LOW, avail as u32);
        self.write32(reg::QUEUE_AVAIL_HIGH, (avail >> 32) as u32);
        self.write32(reg::QUEUE_USED_LOW, used as u32);
        self.write32(reg::QUEUE_USED_HIGH, (used >> 32) as u32);
        self.write32(reg::QUEUE_READY, 1);
        self.sizes[q] = size;
    }

    /// Writes descriptor `index` of queue `q`.
    pub fn put_desc(&self, q: usize, index: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let at = GuestAddress(ring_base(q) + u64::from(index) * 16);
        self.mem.write_obj(addr, at).unwrap();
        self.mem.write_obj(len, GuestAddress(at.0 + 8)).unwrap();
        self.mem.write_obj(flags, GuestAddress(at.0 + 12)).unwrap();
        self.mem.write_obj(next, GuestAddress(at.0 + 14)).unwrap();
    }

    /// Makes chain `head` available (without notifying).
    pub fn publish(&mut self, q: usize, head: u16) {
        let avail = ring_base(q) + 0x4000;
        let slot = u64::from(self.avail_idx[q] % self.sizes[q]);
        self.mem
            .write_obj(head, GuestAddress(avail + 4 + slot * 2))
            .unwrap();
        self.avail_idx[q] = self.avail_idx[q].wrapping_add(1);
        self.mem
            .write_obj(self.avail_idx[q], GuestAddress(avail + 2))
            .unwrap();
    }

    /// Lays out `bufs` (address, length, writable) as one chain and makes it available.
    pub fn submit(&mut self, q: usize, bufs: &[(u64, u32, bool)]) -> u16 {
        let head = self.next_desc[q];
        for (i, &(addr, len, writable)) in bufs.iter().enumerate() {
            let index = head + i as u16;
            let last = i + 1 == bufs.len();
            let flags = if last { 0 } else { NEXT } | if writable { WRITE } else { 0 };
            self.put_desc(
                q,
                index % self.sizes[q],
                addr,
                len,
                flags,
                (index + 1) % self.sizes[q],
            );
        }
        self.next_desc[q] = (head + bufs.len() as u16) % self.sizes[q];
        self.publish(q, head);
        head
    }

    /// Notifies queue `q` through the register, and lets the device run as the event loop would.
    pub fn notify(&mut self, q: usize) {
        self.write32(reg::QUEUE_NOTIFY, q as u32);
        assert_eq!(
            self.t.queue_event(q).unwrap().read().unwrap(),
            1,
            "the notify reached the eventfd"
        );
        self.t.queue_event(q).unwrap().write(1).unwrap();
        self.t.handle_queue_event(q);
    }

    /// The used ring's entries so far.
    pub fn used(&self, q: usize) -> Vec<(u32, u32)> {
        let used = ring_base(q) + 0x8000;
        let idx: u16 = self.mem.read_obj(GuestAddress(used + 2)).unwrap();
        (0..idx)
            .map(|i| {
                let at = used + 4 + u64::from(i % self.sizes[q]) * 8;
                (
                    self.mem.read_obj(GuestAddress(at)).unwrap(),
                    self.mem.read_obj(GuestAddress(at + 4)).unwrap(),
                )
            })
            .collect()
    }

    /// Whether the interrupt was raised since the last call (and acknowledges it).
    pub fn take_irq(&mut self) -> bool {
        let raised = self.t.interrupt().line().event.read().is_ok();
        let status = self.read32(reg::INTERRUPT_STATUS);
        self.write32(reg::INTERRUPT_ACK, status);
        raised
    }

    pub fn needs_reset(&mut self) -> bool {
        self.read32(reg::STATUS) & status::DEVICE_NEEDS_RESET != 0
    }

    pub fn write(&self, addr: u64, data: &[u8]) {
        self.mem.write_slice(data, GuestAddress(addr)).unwrap();
    }

    pub fn read(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
        v
    }

    /// Lets the device handle readiness of all the fds it watches.
    pub fn backend_ready(&mut self) {
        for w in self.t.watches() {
            self.t.handle_backend(
                w.fd,
                Readiness {
                    read: true,
                    write: true,
                    hangup: false,
                },
            );
        }
    }
}
