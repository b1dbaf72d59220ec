//! The stack: started on a guest's frame socket, run on its own thread, stopped by its
//! owner.

pub(crate) mod engine;
mod fuzz;
mod limits;
mod peek;
mod slab;

use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};

use mio::Waker;

pub use fuzz::fuzz_frames;
pub use limits::*;

use crate::error::{Error, Result};
use crate::gate::Gate;
use crate::publish::{self, Publish, Published};
use crate::stats::{Counters, Stats};
use engine::{Engine, WAKER};

/// What a stack serves.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Host ports whose traffic goes to guest ports.
    pub publish: Vec<Publish>,
    /// Where [`crate::Dns::Forward`]ed queries go (the first one).
    pub dns_upstream: Vec<SocketAddr>,
    /// The caps on what the guest may hold.
    pub limits: Limits,
}

/// The user-mode network stack.
#[derive(Debug)]
pub struct Stack;

impl Stack {
    /// Binds the published ports, then runs the stack for the guest at the other end of
    /// `stream` on a thread of its own, asking `gate` about every flow.
    pub fn start(stream: UnixStream, config: Config, gate: Box<dyn Gate>) -> Result<Running> {
        let (listeners, published) = publish::bind(&config.publish)?;
        let counters = Arc::new(Counters::default());
        let engine =
            Engine::new(stream, config, gate, listeners, counters.clone()).map_err(Error::Guest)?;
        let waker = Waker::new(engine.poll.registry(), WAKER).map_err(Error::Poll)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = thread::Builder::new()
            .name("netstack".into())
            .spawn(move || engine.run(&stopped))
            .map_err(Error::Thread)?;
        Ok(Running {
            published,
            counters,
            waker,
            stop,
            thread: Some(thread),
        })
    }
}

/// A running stack; dropping it stops it.
#[derive(Debug)]
pub struct Running {
    published: Vec<Published>,
    counters: Arc<Counters>,
    waker: Waker,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Running {
    /// The published ports as bound (a host port 0 shows the port picked).
    pub fn published(&self) -> &[Published] {
        &self.published
    }

    /// The counters now.
    pub fn stats(&self) -> Stats {
        self.counters.snapshot()
    }

    /// Whether the stack's thread has ended (the guest closed its side).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Stops the stack and waits for its thread; every host socket is closed.
    pub fn stop(self) {}
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // A failed wake leaves the thread to end when the guest closes its side.
        let _ = self.waker.wake();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
