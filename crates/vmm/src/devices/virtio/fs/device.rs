//! The virtio-fs device: its configuration space and features here, its rings in the daemon.

use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use virtio_bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};
use vmm_sys_util::eventfd::EventFd;

use super::backend::Backend;
use super::config::{NUM_REQUEST_QUEUES, check_tag, config_space};
use crate::devices::virtio::interrupt::USED_BUFFER;
use crate::devices::virtio::{
    Activation, F_VERSION_1, Interrupt, Readiness, VirtioDevice, Watch, device_type,
};
use crate::error::{Error, Result};

/// Queues: the high-priority queue, then the request queues.
pub const NUM_QUEUES: usize = 1 + NUM_REQUEST_QUEUES as usize;
/// Each queue's size: as many FUSE requests in flight as a busy guest keeps (Linux uses the
/// size offered; cloud-hypervisor's default), far below virtiofsd's limit (32768), and its
/// rings fit in 28 KiB of guest RAM.
pub const QUEUE_SIZE: u16 = 1024;
/// Ring features the daemon implements (it, not we, walks the rings); other bits it may
/// offer (packed rings, logging) are not offered to the guest.
const RING_FEATURES: u64 = (1 << VIRTIO_RING_F_INDIRECT_DESC) | (1 << VIRTIO_RING_F_EVENT_IDX);

/// A virtio-fs device whose daemon is at the other end of a vhost-user socket.
pub struct Fs {
    tag: String,
    backend: Backend,
    /// One eventfd per queue that the daemon signals when it used buffers.
    calls: Vec<EventFd>,
    interrupt: Option<Arc<Interrupt>>,
    /// The daemon failed or went away: the device stays down until the VM is restarted.
    broken: bool,
}

impl Fs {
    /// A device exporting the daemon's file system as `tag`, on `stream` (connected to
    /// virtiofsd); the handshake happens here, while no seccomp filter is in place.
    pub fn new(stream: UnixStream, tag: &str) -> Result<Fs> {
        check_tag(tag)?;
        let backend = Backend::connect(stream, tag, NUM_QUEUES)?;
        let calls = (0..NUM_QUEUES)
            .map(|_| {
                // Close-on-exec: nothing a test (or a later VMM) spawns should hold them.
                EventFd::new(libc::EFD_NONBLOCK | libc::EFD_CLOEXEC)
                    .map_err(Error::io("creating", "a virtio-fs call eventfd"))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Fs {
            tag: tag.to_string(),
            backend,
            calls,
            interrupt: None,
            broken: false,
        })
    }

    /// The tag the guest mounts it by.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// A failed step: the device is marked broken, since the daemon's state is unknown now.
    fn broke(&mut self, e: Error) -> Error {
        self.broken = true;
        e
    }

    fn gone(&self, reason: &str) -> Error {
        Error::VhostUser {
            tag: self.tag.clone(),
            what: "connection",
            reason: reason.to_string(),
        }
    }

    /// The daemon's socket became readable while no request is outstanding (every request
    /// is answered under the transport's lock, so none is): it closed, or broke protocol.
    fn check_socket(&mut self) -> Result<()> {
        let mut byte = 0u8;
        // SAFETY: a one-byte peek into `byte`, which outlives the call; MSG_DONTWAIT keeps
        // the blocking socket from blocking the device thread.
        let n = unsafe {
            libc::recv(
                self.backend.socket(),
                (&mut byte as *mut u8).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        let why = match n {
            0 => "the daemon closed its socket".to_string(),
            n if n > 0 => "the daemon sent a message nobody asked for".to_string(),
            _ => {
                let e = std::io::Error::last_os_error();
                match e.kind() {
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => {
                        return Ok(());
                    }
                    _ => format!("the socket failed: {e}"),
                }
            }
        };
        let e = self.gone(&why);
        Err(self.broke(e))
    }
}

impl VirtioDevice for Fs {
    fn device_type(&self) -> u32 {
        device_type::FS
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE; NUM_QUEUES]
    }

    fn features(&self) -> u64 {
        F_VERSION_1 | (self.backend.features() & RING_FEATURES)
    }

    fn config(&self) -> Vec<u8> {
        config_space(&self.tag)
    }

    fn activate(&mut self, a: Activation) -> Result<()> {
        if self.broken {
            return Err(self.gone("the daemon failed earlier; the VM must be restarted"));
        }
        let started =
            self.backend
                .start(a.features, &a.mem, &a.queues, &a.queue_events, &self.calls);
        started.map_err(|e| self.broke(e))?;
        self.interrupt = Some(a.interrupt);
        Ok(())
    }

    fn reset(&mut self) {
        self.interrupt = None;
        if !self.broken {
            if let Err(e) = self.backend.stop() {
                // The guest sees nothing of it; the next activation reports the device down.
                eprintln!("boxlite-vmm: virtio-fs: {e}");
                self.broken = true;
            }
        }
        for c in &self.calls {
            let _ = c.read();
        }
    }

    fn process_queue(&mut self, _index: usize) -> Result<()> {
        // Never called: the daemon takes the queue notifications.
        Ok(())
    }

    fn watches(&self) -> Vec<Watch> {
        if self.broken || self.interrupt.is_none() {
            return Vec::new();
        }
        let read = |fd| Watch {
            fd,
            read: true,
            write: false,
        };
        let mut watches: Vec<Watch> = self.calls.iter().map(|c| read(c.as_raw_fd())).collect();
        watches.push(read(self.backend.socket()));
        watches
    }

    fn process_backend(&mut self, fd: RawFd, ready: Readiness) -> Result<()> {
        if fd == self.backend.socket() {
            return self.check_socket();
        }
        if !ready.read {
            return Ok(());
        }
        if let Some(call) = self.calls.iter().find(|c| c.as_raw_fd() == fd) {
            // Drained first: a call that lands after this read raises the interrupt again.
            let _ = call.read();
            if let Some(interrupt) = &self.interrupt {
                interrupt.signal(USED_BUFFER);
            }
        }
        Ok(())
    }

    fn backend_takes_kicks(&self) -> bool {
        true
    }

    fn vhost_user_socket(&self) -> Option<RawFd> {
        Some(self.backend.socket())
    }
}
