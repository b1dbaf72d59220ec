//! The entropy device: one queue of writable buffers, filled from getrandom(2).

use virtio_queue::Queue;

use crate::devices::virtio::chain::{self, Chain};
use crate::devices::virtio::interrupt::USED_BUFFER;
use crate::devices::virtio::{Activation, F_VERSION_1, VirtioDevice, device_type};
use crate::error::{Error, Result};

/// Queue size.
pub const QUEUE_SIZE: u16 = 64;
/// Bytes given per request: Linux asks for at most a page; more would only let a guest make
/// the VMM spend CPU on its behalf.
pub const MAX_FILL_BYTES: usize = 64 * 1024;
/// Cap on a request chain's total length (we never write beyond `MAX_FILL_BYTES` anyway).
const MAX_CHAIN_BYTES: u64 = 1 << 24;

/// The device.
#[derive(Default)]
pub struct Rng {
    active: Option<Activation>,
}

impl Rng {
    /// A new, inactive device.
    pub fn new() -> Rng {
        Rng::default()
    }
}

fn fill(buf: &mut [u8]) -> Result<()> {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: the pointer and length describe the unfilled tail of `buf`, writable memory
        // we own for the whole call.
        let n = unsafe { libc::getrandom(buf[done..].as_mut_ptr().cast(), buf.len() - done, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(Error::io("reading random bytes from", "getrandom")(e));
        }
        done += n as usize;
    }
    Ok(())
}

impl VirtioDevice for Rng {
    fn device_type(&self) -> u32 {
        device_type::RNG
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn features(&self) -> u64 {
        F_VERSION_1
    }

    fn activate(&mut self, activation: Activation) -> Result<()> {
        self.active = Some(activation);
        Ok(())
    }

    fn reset(&mut self) {
        self.active = None;
    }

    fn process_queue(&mut self, _index: usize) -> Result<()> {
        let Some(a) = self.active.as_mut() else {
            return Ok(());
        };
        let Some(queue): Option<&mut Queue> = a.queues.get_mut(0) else {
            return Ok(());
        };
        let mut used = false;
        while let Some(desc) = chain::next_chain(queue, &a.mem)? {
            let c = Chain::parse(desc, MAX_CHAIN_BYTES)?;
            let len = (c.writable_len() as usize).min(MAX_FILL_BYTES);
            let mut buf = vec![0u8; len];
            fill(&mut buf)?;
            let written = c.write_at(&a.mem, 0, &buf)?;
            chain::add_used(queue, &a.mem, c.head, written as u32)?;
            used = true;
        }
        if used {
            a.interrupt.signal(USED_BUFFER);
        }
        Ok(())
    }
}
