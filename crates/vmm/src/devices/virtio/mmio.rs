//! The virtio-mmio transport (virtio 1.2 §4.2, version 2): the register window a driver
//! programs, feature negotiation, queue setup, and the device's lifecycle.

use std::os::fd::RawFd;
use std::sync::Arc;

use virtio_queue::{Queue, QueueT};
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use super::interrupt::CONFIG_CHANGE;
use super::{Activation, F_VERSION_1, Interrupt, Readiness, VirtioDevice, Watch};
use crate::bus::BusDevice;
use crate::error::{Error, Result};
use crate::memory::GuestMemory;

/// Register offsets.
pub mod reg {
    /// "virt".
    pub const MAGIC: u64 = 0x000;
    /// Transport version (2).
    pub const VERSION: u64 = 0x004;
    /// Device type.
    pub const DEVICE_ID: u64 = 0x008;
    /// Vendor.
    pub const VENDOR_ID: u64 = 0x00c;
    /// Offered features, 32 bits at a time.
    pub const DEVICE_FEATURES: u64 = 0x010;
    /// Which 32 bits.
    pub const DEVICE_FEATURES_SEL: u64 = 0x014;
    /// Accepted features, 32 bits at a time.
    pub const DRIVER_FEATURES: u64 = 0x020;
    /// Which 32 bits.
    pub const DRIVER_FEATURES_SEL: u64 = 0x024;
    /// Which queue the queue registers address.
    pub const QUEUE_SEL: u64 = 0x030;
    /// The selected queue's maximum size.
    pub const QUEUE_NUM_MAX: u64 = 0x034;
    /// The selected queue's size.
    pub const QUEUE_NUM: u64 = 0x038;
    /// The selected queue is ready.
    pub const QUEUE_READY: u64 = 0x044;
    /// Queue notification (the value is the queue index).
    pub const QUEUE_NOTIFY: u64 = 0x050;
    /// Pending interrupt causes.
    pub const INTERRUPT_STATUS: u64 = 0x060;
    /// Acknowledges interrupt causes.
    pub const INTERRUPT_ACK: u64 = 0x064;
    /// Device status.
    pub const STATUS: u64 = 0x070;
    /// Descriptor table, low 32 bits.
    pub const QUEUE_DESC_LOW: u64 = 0x080;
    /// Descriptor table, high 32 bits.
    pub const QUEUE_DESC_HIGH: u64 = 0x084;
    /// Available ring, low.
    pub const QUEUE_AVAIL_LOW: u64 = 0x090;
    /// Available ring, high.
    pub const QUEUE_AVAIL_HIGH: u64 = 0x094;
    /// Used ring, low.
    pub const QUEUE_USED_LOW: u64 = 0x0a0;
    /// Used ring, high.
    pub const QUEUE_USED_HIGH: u64 = 0x0a4;
    /// Configuration generation.
    pub const CONFIG_GENERATION: u64 = 0x0fc;
    /// Start of the device configuration space.
    pub const CONFIG: u64 = 0x100;
}

/// Device status bits.
pub mod status {
    /// The guest noticed the device.
    pub const ACKNOWLEDGE: u32 = 1;
    /// The guest has a driver for it.
    pub const DRIVER: u32 = 2;
    /// The driver is ready.
    pub const DRIVER_OK: u32 = 4;
    /// Feature negotiation is complete.
    pub const FEATURES_OK: u32 = 8;
    /// The device hit an error and must be reset.
    pub const DEVICE_NEEDS_RESET: u32 = 0x40;
    /// The driver gave up.
    pub const FAILED: u32 = 0x80;
}

const MAGIC_VALUE: u32 = 0x7472_6976;
const VENDOR: u32 = 0x4c58_4f42; // "BOXL"
/// Guest errors reported on stderr per device: a guest that loops through errors and resets
/// must not flood the host's logs.
const MAX_REPORTED_ERRORS: u32 = 8;
/// Largest configuration space we expose (virtio-mmio allows up to 0xf00 bytes).
pub const MAX_CONFIG_LEN: usize = 0x100;

/// One device behind its register window.
pub struct MmioTransport {
    device: Box<dyn VirtioDevice>,
    mem: GuestMemory,
    interrupt: Arc<Interrupt>,
    queues: Vec<Queue>,
    queue_events: Vec<Arc<EventFd>>,
    /// Written when the fds the device wants watched may have changed (it activated or
    /// reset), so the device thread looks again; set by the event loop.
    refresh: Option<Arc<EventFd>>,
    status: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
    active: bool,
    errors: u32,
}

impl MmioTransport {
    /// Wraps `device`.
    pub fn new(
        device: Box<dyn VirtioDevice>,
        mem: GuestMemory,
        interrupt: Arc<Interrupt>,
    ) -> Result<MmioTransport> {
        let mut queues = Vec::new();
        let mut queue_events = Vec::new();
        for &max in device.queue_max_sizes() {
            queues
                .push(Queue::new(max).map_err(|e| Error::Config(format!("queue of {max}: {e}")))?);
            queue_events.push(Arc::new(
                EventFd::new(EFD_NONBLOCK).map_err(Error::io("creating", "a queue eventfd"))?,
            ));
        }
        Ok(MmioTransport {
            device,
            mem,
            interrupt,
            queues,
            queue_events,
            refresh: None,
            status: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
            active: false,
            errors: 0,
        })
    }

    /// The eventfd signalled when the guest notifies queue `index` (for ioeventfd).
    pub fn queue_event(&self, index: usize) -> Option<&EventFd> {
        self.queue_events.get(index).map(|e| &**e)
    }

    /// Whether the queue eventfds belong to the device's backend, not the device thread.
    pub fn backend_takes_kicks(&self) -> bool {
        self.device.backend_takes_kicks()
    }

    /// The device's vhost-user socket, if it has one.
    pub fn vhost_user_socket(&self) -> Option<RawFd> {
        self.device.vhost_user_socket()
    }

    /// Has the transport write `event` whenever the device's watches may have changed.
    pub fn set_refresh(&mut self, event: Arc<EventFd>) {
        self.refresh = Some(event);
    }

    fn refresh_watches(&self) {
        if let Some(e) = &self.refresh {
            // A full counter already means a pending wakeup.
            let _ = e.write(1);
        }
    }

    /// Number of queues.
    pub fn queue_count(&self) -> usize {
        self.queues.len()
    }

    /// The size queue `index` will have (its maximum until the driver sets a valid one).
    pub fn queue_size(&self, index: usize) -> Option<u16> {
        self.queues.get(index).map(QueueT::size)
    }

    /// The device interrupt.
    pub fn interrupt(&self) -> &Arc<Interrupt> {
        &self.interrupt
    }

    /// The device status register.
    pub fn status(&self) -> u32 {
        self.status
    }

    /// The device's type.
    pub fn device_type(&self) -> u32 {
        self.device.device_type()
    }

    /// Whether the device runs (activated and not failed).
    pub fn running(&self) -> bool {
        self.active && self.status & status::DEVICE_NEEDS_RESET == 0
    }

    /// Handles a notification of queue `index`: drains its eventfd and lets the device work.
    pub fn handle_queue_event(&mut self, index: usize) {
        if self.device.backend_takes_kicks() {
            return;
        }
        if let Some(event) = self.queue_events.get(index) {
            let _ = event.read();
        }
        if self.running() {
            let result = self.device.process_queue(index);
            self.check(result);
        }
    }

    /// Fds the device wants watched.
    pub fn watches(&self) -> Vec<Watch> {
        if self.running() {
            self.device.watches()
        } else {
            Vec::new()
        }
    }

    /// A watched fd is ready.
    pub fn handle_backend(&mut self, fd: RawFd, ready: Readiness) {
        if self.running() {
            let result = self.device.process_backend(fd, ready);
            self.check(result);
        }
    }

    /// A guest protocol error stops the device until the driver resets it.
    fn check(&mut self, result: Result<()>) {
        if let Err(e) = result {
            self.errors = self.errors.saturating_add(1);
            if self.errors <= MAX_REPORTED_ERRORS {
                eprintln!(
                    "boxlite-vmm: virtio device {}: {e}; it needs a reset",
                    self.device.device_type()
                );
            }
            self.status |= status::DEVICE_NEEDS_RESET;
            self.interrupt.signal(CONFIG_CHANGE);
        }
    }

    fn selected_queue(&mut self) -> Option<&mut Queue> {
        self.queues.get_mut(self.queue_sel as usize)
    }

    /// Queue registers may change only while the driver sets up, before DRIVER_OK.
    fn queue_writable(&self) -> bool {
        self.status & status::FEATURES_OK != 0 && self.status & status::DRIVER_OK == 0
    }

    fn reset(&mut self) {
        if self.active {
            self.device.reset();
        }
        self.active = false;
        self.status = 0;
        self.driver_features = 0;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.queue_sel = 0;
        for q in &mut self.queues {
            q.reset();
        }
        self.interrupt.clear();
        self.refresh_watches();
    }

    fn set_status(&mut self, value: u32) {
        if value == 0 {
            self.reset();
            return;
        }
        // Bits are only ever added until a reset; anything else is a confused driver.
        if value & self.status != self.status {
            return;
        }
        let added = value & !self.status;
        if added & status::FEATURES_OK != 0 {
            let offered = self.device.features();
            if self.driver_features & !offered != 0 || self.driver_features & F_VERSION_1 == 0 {
                // Not setting FEATURES_OK tells the driver its choice was refused.
                self.status = value & !(status::FEATURES_OK | status::DRIVER_OK);
                return;
            }
        }
        self.status = value;
        if added & status::DRIVER_OK != 0 && value & status::FEATURES_OK != 0 && !self.active {
            let result = self.activate();
            self.check(result);
            self.refresh_watches();
        }
    }

    fn activate(&mut self) -> Result<()> {
        for (i, q) in self.queues.iter().enumerate() {
            if !q.is_valid(&self.mem) {
                return Err(Error::Guest(format!(
                    "queue {i} is not ready or lies outside guest memory"
                )));
            }
        }
        let queues = self
            .queues
            .iter()
            .map(|q| Queue::try_from(q.state()).map_err(|e| Error::Guest(format!("queue: {e}"))))
            .collect::<Result<Vec<_>>>()?;
        self.active = true;
        self.device.activate(Activation {
            mem: self.mem.clone(),
            queues,
            interrupt: self.interrupt.clone(),
            features: self.driver_features,
            queue_events: self.queue_events.clone(),
        })?;
        // Buffers may already wait; a first pass over every queue picks them up.
        for e in &self.queue_events {
            let _ = e.write(1);
        }
        Ok(())
    }

    fn read_register(&mut self, offset: u64) -> u32 {
        let features = self.device.features();
        match offset {
            reg::MAGIC => MAGIC_VALUE,
            reg::VERSION => 2,
            reg::DEVICE_ID => self.device.device_type(),
            reg::VENDOR_ID => VENDOR,
            reg::DEVICE_FEATURES => match self.device_features_sel {
                0 => features as u32,
                1 => (features >> 32) as u32,
                _ => 0,
            },
            reg::QUEUE_NUM_MAX => self.selected_queue().map_or(0, |q| u32::from(q.max_size())),
            reg::QUEUE_READY => self.selected_queue().map_or(0, |q| u32::from(q.ready())),
            reg::INTERRUPT_STATUS => self.interrupt.status(),
            reg::STATUS => self.status,
            reg::CONFIG_GENERATION => 0,
            _ => 0,
        }
    }

    fn write_register(&mut self, offset: u64, v: u32) {
        let setup = self.queue_writable();
        match offset {
            reg::DEVICE_FEATURES_SEL => self.device_features_sel = v,
            reg::DRIVER_FEATURES_SEL => self.driver_features_sel = v,
            reg::DRIVER_FEATURES if self.status & status::FEATURES_OK == 0 => match self
                .driver_features_sel
            {
                0 => self.driver_features = (self.driver_features & !0xffff_ffff) | u64::from(v),
                1 => {
                    self.driver_features =
                        (self.driver_features & 0xffff_ffff) | (u64::from(v) << 32)
                }
                // Bits beyond 64 do not exist; a driver that accepts them is refused at FEATURES_OK.
                _ if v != 0 => self.driver_features |= 1 << 63,
                _ => {}
            },
            reg::QUEUE_SEL => self.queue_sel = v,
            reg::QUEUE_NUM if setup => {
                if let Some(q) = self.selected_queue() {
                    // The queue refuses sizes that are 0, above its maximum, or not a power of 2.
                    let _ = q.try_set_size(u16::try_from(v).unwrap_or(0));
                }
            }
            reg::QUEUE_READY if setup => {
                if let Some(q) = self.selected_queue() {
                    q.set_ready(v == 1);
                }
            }
            reg::QUEUE_DESC_LOW if setup => {
                self.with_queue(|q| q.set_desc_table_address(Some(v), None))
            }
            reg::QUEUE_DESC_HIGH if setup => {
                self.with_queue(|q| q.set_desc_table_address(None, Some(v)))
            }
            reg::QUEUE_AVAIL_LOW if setup => {
                self.with_queue(|q| q.set_avail_ring_address(Some(v), None))
            }
            reg::QUEUE_AVAIL_HIGH if setup => {
                self.with_queue(|q| q.set_avail_ring_address(None, Some(v)))
            }
            reg::QUEUE_USED_LOW if setup => {
                self.with_queue(|q| q.set_used_ring_address(Some(v), None))
            }
            reg::QUEUE_USED_HIGH if setup => {
                self.with_queue(|q| q.set_used_ring_address(None, Some(v)))
            }
            reg::QUEUE_NOTIFY => {
                // Reached only without ioeventfd (tests, or a kernel lacking it).
                if let Some(e) = self.queue_events.get(v as usize) {
                    let _ = e.write(1);
                }
            }
            reg::INTERRUPT_ACK => self.interrupt.ack(v),
            reg::STATUS => self.set_status(v),
            _ => {}
        }
    }

    fn with_queue(&mut self, f: impl FnOnce(&mut Queue)) {
        // Ring addresses of a queue already marked ready stay as they are.
        if let Some(q) = self.selected_queue().filter(|q| !q.ready()) {
            f(q);
        }
    }
}

impl BusDevice for MmioTransport {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= reg::CONFIG {
            let config = self.device.config();
            let start = (offset - reg::CONFIG) as usize;
            for (i, b) in data.iter_mut().enumerate() {
                *b = config.get(start + i).copied().unwrap_or(0);
            }
        } else if data.len() == 4 && offset % 4 == 0 {
            data.copy_from_slice(&self.read_register(offset).to_le_bytes());
        } else {
            data.fill(0);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        // The configuration spaces we offer are read-only; registers are 32-bit aligned.
        if offset < reg::CONFIG && offset % 4 == 0 {
            if let Ok(bytes) = <[u8; 4]>::try_from(data) {
                self.write_register(offset, u32::from_le_bytes(bytes));
            }
        }
    }
}
