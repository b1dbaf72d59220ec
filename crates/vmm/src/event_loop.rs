//! The device thread: waits on every queue's eventfd (signalled by KVM's ioeventfd when the
//! guest notifies) and every backend socket, and lets the owning device work. A vhost-user
//! device's queue eventfds are its daemon's to read, so they are not watched here; what such
//! a device watches instead (its daemon's "used buffers" eventfds, its socket) comes and goes
//! as the guest activates and resets it, which the transport announces on the refresh eventfd.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use crate::devices::virtio::Readiness;
use crate::devices::virtio::mmio::MmioTransport;
use crate::error::{Error, Result};

/// Token of the stop eventfd.
const STOP: u64 = u64::MAX;
/// Token of the refresh eventfd.
const REFRESH: u64 = u64::MAX - 1;
/// Token bit marking a backend fd (else: a queue index).
const BACKEND: u64 = 1 << 31;
/// Events handled per wakeup.
const MAX_EVENTS: usize = 32;

/// A transport shared between the vCPU threads (registers) and this loop (queues).
pub type SharedTransport = Arc<Mutex<MmioTransport>>;

fn lock(t: &SharedTransport) -> MutexGuard<'_, MmioTransport> {
    t.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The loop and what it watches.
pub struct EventLoop {
    epoll: Epoll,
    transports: Vec<SharedTransport>,
    stop: Arc<EventFd>,
    refresh: Arc<EventFd>,
    /// Backend fds currently registered: fd -> (token, events).
    backends: HashMap<RawFd, (u64, EventSet)>,
}

impl EventLoop {
    /// A loop over `transports`' queue eventfds.
    pub fn new(transports: Vec<SharedTransport>) -> Result<EventLoop> {
        let epoll = Epoll::new().map_err(Error::io("creating", "an epoll instance"))?;
        let stop = Arc::new(
            EventFd::new(EFD_NONBLOCK)
                .map_err(Error::io("creating", "the event loop's stop eventfd"))?,
        );
        epoll
            .ctl(
                ControlOperation::Add,
                stop.as_raw_fd(),
                EpollEvent::new(EventSet::IN, STOP),
            )
            .map_err(Error::io("watching", "the event loop's stop eventfd"))?;
        let refresh = Arc::new(
            EventFd::new(EFD_NONBLOCK)
                .map_err(Error::io("creating", "the event loop's refresh eventfd"))?,
        );
        epoll
            .ctl(
                ControlOperation::Add,
                refresh.as_raw_fd(),
                EpollEvent::new(EventSet::IN, REFRESH),
            )
            .map_err(Error::io("watching", "the event loop's refresh eventfd"))?;
        for (d, t) in transports.iter().enumerate() {
            let mut t = lock(t);
            t.set_refresh(refresh.clone());
            if t.backend_takes_kicks() {
                continue;
            }
            for q in 0..t.queue_count() {
                if let Some(e) = t.queue_event(q) {
                    let token = ((d as u64) << 32) | q as u64;
                    epoll
                        .ctl(
                            ControlOperation::Add,
                            e.as_raw_fd(),
                            EpollEvent::new(EventSet::IN, token),
                        )
                        .map_err(|err| {
                            Error::io(
                                "watching",
                                format!("the eventfd of queue {q} of device {d}"),
                            )(err)
                        })?;
                }
            }
        }
        Ok(EventLoop {
            epoll,
            transports,
            stop,
            refresh,
            backends: HashMap::new(),
        })
    }

    /// An eventfd that ends [`EventLoop::run`] when written.
    pub fn stopper(&self) -> Arc<EventFd> {
        self.stop.clone()
    }

    /// Brings the backend registrations in line with what the devices want now.
    fn refresh(&mut self) {
        let mut wanted: HashMap<RawFd, (u64, EventSet)> = HashMap::new();
        for (d, t) in self.transports.iter().enumerate() {
            for w in lock(t).watches() {
                let mut set = EventSet::empty();
                if w.read {
                    set |= EventSet::IN;
                }
                if w.write {
                    set |= EventSet::OUT;
                }
                // An fd watched for nothing is left out: its hangup would wake us forever.
                if !set.is_empty() {
                    wanted.insert(w.fd, (((d as u64) << 32) | BACKEND | w.fd as u64, set));
                }
            }
        }
        for fd in self.backends.keys().filter(|fd| !wanted.contains_key(fd)) {
            // A closed fd has already left the epoll set; the error is expected then.
            let _ = self
                .epoll
                .ctl(ControlOperation::Delete, *fd, EpollEvent::default());
        }
        for (&fd, &(token, set)) in &wanted {
            let event = EpollEvent::new(set, token);
            // The fd number may be a new socket reusing a closed one's: modify, else add.
            if self.epoll.ctl(ControlOperation::Modify, fd, event).is_err() {
                let _ = self.epoll.ctl(ControlOperation::Add, fd, event);
            }
        }
        self.backends = wanted;
    }

    /// Runs until the stop eventfd is written.
    pub fn run(&mut self) -> Result<()> {
        let mut events = vec![EpollEvent::default(); MAX_EVENTS];
        loop {
            self.refresh();
            let n = match self.epoll.wait(-1, &mut events) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io("waiting on", "the epoll instance")(e)),
            };
            for event in &events[..n] {
                let token = event.data();
                if token == STOP {
                    return Ok(());
                }
                if token == REFRESH {
                    // The registrations are brought up to date at the top of the loop.
                    let _ = self.refresh.read();
                    continue;
                }
                let Some(t) = self.transports.get((token >> 32) as usize) else {
                    continue;
                };
                let low = token & 0xffff_ffff;
                if low & BACKEND != 0 {
                    let set = event.event_set();
                    let hangup = set.intersects(EventSet::HANG_UP | EventSet::ERROR);
                    let ready = Readiness {
                        read: set.contains(EventSet::IN) || hangup,
                        write: set.contains(EventSet::OUT) || hangup,
                        hangup,
                    };
                    lock(t).handle_backend((low & !BACKEND) as RawFd, ready);
                } else {
                    lock(t).handle_queue_event(low as usize);
                }
            }
        }
    }
}
