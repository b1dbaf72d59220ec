//! The bodies of the `virtio_queue` and `vmm_devices` fuzz targets (fuzz/fuzz_targets/
//! includes this file), and tests running them over the committed seeds and mutations of
//! them, so every test run exercises them.
//!
//! `check_queues`: the input is a device choice, a queue size, then bytes laid over guest
//! memory from the descriptor tables on (descriptors, available rings, buffers), and host
//! bytes for socket-backed devices. `check_registers`: the input is a sequence of register
//! reads and writes on a transport, interleaved with queue notifications.
//! Neither may panic, and nothing may touch memory outside the guest's.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use vmm::bus::BusDevice;
use vmm::devices::irq::IrqLine;
use vmm::devices::virtio::block::Block;
use vmm::devices::virtio::console::{Backend, Console};
use vmm::devices::virtio::mmio::{MmioTransport, reg};
use vmm::devices::virtio::net::Net;
use vmm::devices::virtio::rng::Rng;
use vmm::devices::virtio::{Interrupt, Readiness, VirtioDevice};
use vmm::memory::{self, GuestMemory};
use vmm::vm_memory::{Bytes, GuestAddress};

/// Inputs longer than this are cut: the layout below only reaches 64 KiB.
const MAX_INPUT: usize = 64 * 1024;
/// Rings of queue q start at `RINGS + q * RING_STRIDE`.
const RINGS: u64 = 0x1000;
const RING_STRIDE: u64 = 0x8000;

fn device(kind: u8) -> (Box<dyn VirtioDevice>, Option<UnixStream>) {
    match kind % 5 {
        0 | 1 => {
            let file = tempfile::tempfile().unwrap();
            file.set_len(64 * 512).unwrap();
            (
                Box::new(Block::new(file, kind % 5 == 1, "fuzz").unwrap()),
                None,
            )
        }
        2 => (Box::new(Rng::new()), None),
        3 => {
            let (host, ours) = UnixStream::pair().unwrap();
            (
                Box::new(Console::new(Backend::stream(ours).unwrap())),
                Some(host),
            )
        }
        _ => {
            let (host, ours) = UnixStream::pair().unwrap();
            (
                Box::new(Net::new(ours, [2, 0, 0, 0, 0, 1]).unwrap()),
                Some(host),
            )
        }
    }
}

fn transport(device: Box<dyn VirtioDevice>) -> (GuestMemory, MmioTransport) {
    let mem = memory::create(2).unwrap();
    let interrupt = Arc::new(Interrupt::new(IrqLine::new(5).unwrap()));
    let t = MmioTransport::new(device, mem.clone(), interrupt).unwrap();
    (mem, t)
}

fn w32(t: &mut MmioTransport, offset: u64, v: u32) {
    t.write(offset, &v.to_le_bytes());
}

fn let_run(t: &mut MmioTransport, host: &mut Option<UnixStream>) {
    for q in 0..t.queue_count() {
        t.handle_queue_event(q);
    }
    for w in t.watches() {
        t.handle_backend(
            w.fd,
            Readiness {
                read: true,
                write: true,
                hangup: false,
            },
        );
    }
    if let Some(h) = host {
        h.set_nonblocking(true).unwrap();
        let mut sink = [0u8; 4096];
        while matches!(h.read(&mut sink), Ok(n) if n > 0) {}
    }
}

/// The `virtio_queue` body.
pub fn check_queues(data: &[u8]) {
    let data = &data[..data.len().min(MAX_INPUT)];
    let [kind, size_lo, size_hi, rest @ ..] = data else {
        return;
    };
    let (dev, mut host) = device(*kind);
    let (mem, mut t) = transport(dev);
    // Initialise as a driver would, with whatever queue size the input asks for.
    w32(&mut t, reg::STATUS, 3);
    w32(&mut t, reg::DRIVER_FEATURES_SEL, 1);
    w32(&mut t, reg::DRIVER_FEATURES, 1);
    w32(&mut t, reg::STATUS, 3 | 8);
    let size = u32::from(u16::from_le_bytes([*size_lo, *size_hi]));
    for q in 0..t.queue_count() {
        let base = RINGS + q as u64 * RING_STRIDE;
        w32(&mut t, reg::QUEUE_SEL, q as u32);
        w32(&mut t, reg::QUEUE_NUM, size);
        w32(&mut t, reg::QUEUE_DESC_LOW, base as u32);
        w32(&mut t, reg::QUEUE_AVAIL_LOW, (base + 0x2000) as u32);
        w32(&mut t, reg::QUEUE_USED_LOW, (base + 0x4000) as u32);
        w32(&mut t, reg::QUEUE_READY, 1);
    }
    // The host side speaks first: the last quarter of the input.
    let (guest_bytes, host_bytes) = rest.split_at(rest.len() - rest.len() / 4);
    mem.write_slice(guest_bytes, GuestAddress(RINGS)).unwrap();
    if let Some(h) = host.as_mut() {
        let _ = h.write_all(host_bytes);
    }
    w32(&mut t, reg::STATUS, 3 | 8 | 4);
    for _ in 0..2 {
        let_run(&mut t, &mut host);
    }
}

/// The `vmm_devices` body: 8 bytes per operation (kind, offset u16, value u32, pad).
pub fn check_registers(data: &[u8]) {
    let data = &data[..data.len().min(MAX_INPUT)];
    let Some((kind, ops)) = data.split_first() else {
        return;
    };
    let (dev, mut host) = device(*kind);
    let (mem, mut t) = transport(dev);
    for op in ops.chunks_exact(8) {
        let offset = u64::from(u16::from_le_bytes([op[1], op[2]]) & 0x1ff);
        let value = u32::from_le_bytes([op[3], op[4], op[5], op[6]]);
        match op[0] % 6 {
            0 => w32(&mut t, offset, value),
            1 => {
                let mut b = [0u8; 4];
                t.read(offset, &mut b);
            }
            2 => {
                let len = 1 + usize::from(op[7] % 8);
                let mut b = vec![0u8; len];
                t.read(offset, &mut b);
                t.write(offset, &b);
            }
            3 => let_run(&mut t, &mut host),
            4 => {
                // The guest scribbles on its rings and buffers.
                let at = u64::from(value) % (1 << 21);
                let _ = mem.write_slice(&op[1..], GuestAddress(at));
            }
            _ => {
                if let Some(h) = host.as_mut() {
                    h.set_nonblocking(true).unwrap();
                    let _ = h.write(&op[1..]);
                }
            }
        }
    }
    let_run(&mut t, &mut host);
}

/// A valid block read chain for a queue of 16, as seed material.
pub fn block_seed() -> Vec<u8> {
    let mut mem = vec![0u8; 0x3000];
    let desc = |mem: &mut Vec<u8>, i: usize, addr: u64, len: u32, flags: u16, next: u16| {
        let at = i * 16;
        mem[at..at + 8].copy_from_slice(&addr.to_le_bytes());
        mem[at + 8..at + 12].copy_from_slice(&len.to_le_bytes());
        mem[at + 12..at + 14].copy_from_slice(&flags.to_le_bytes());
        mem[at + 14..at + 16].copy_from_slice(&next.to_le_bytes());
    };
    desc(&mut mem, 0, 0x20000, 16, 1, 1);
    desc(&mut mem, 1, 0x21000, 512, 3, 2);
    desc(&mut mem, 2, 0x22000, 1, 2, 0);
    mem[0x2002] = 1; // avail idx 1, ring[0] = 0
    let mut seed = vec![0, 16, 0];
    seed.extend_from_slice(&mem);
    seed
}

#[cfg(test)]
mod seeds {
    use super::*;

    fn seeds(target: &str) -> Vec<Vec<u8>> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fuzz/seeds")
            .join(target);
        let mut out: Vec<Vec<u8>> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| std::fs::read(e.unwrap().path()).unwrap())
            .collect();
        out.sort();
        assert!(out.len() >= 3, "seeds missing in {}", dir.display());
        out
    }

    /// A small deterministic generator, so mutations are the same on every run.
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    fn mutate_all(target: &str, check: fn(&[u8])) {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for seed in seeds(target) {
            check(&seed);
            for _ in 0..40 {
                let mut m = seed.clone();
                if m.is_empty() {
                    break;
                }
                for _ in 0..1 + xorshift(&mut state) % 8 {
                    let i = (xorshift(&mut state) % m.len() as u64) as usize;
                    m[i] = xorshift(&mut state) as u8;
                }
                check(&m);
            }
        }
    }

    #[test]
    fn queue_body_holds_on_seeds_and_mutations() {
        mutate_all("virtio_queue", check_queues);
    }

    #[test]
    fn register_body_holds_on_seeds_and_mutations() {
        mutate_all("vmm_devices", check_registers);
    }

    #[test]
    fn block_seed_is_a_working_request() {
        // The seed, run on a block device, completes one request.
        let seed = block_seed();
        check_queues(&seed);
        let mut committed = seeds("virtio_queue");
        committed.retain(|s| s.first() == Some(&0));
        assert!(!committed.is_empty());
    }
}
