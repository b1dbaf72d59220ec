//! The virtio devices against real guest memory, driven the way Linux drives them: block
//! I/O and its errors, console and network traffic through real sockets in both directions
//! (with backpressure), entropy, and malformed queues and chains.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::net::{UnixListener, UnixStream};

use vmm::bus::BusDevice;

use support::{DATA, Driver, WRITE};
use vmm::devices::virtio::block::{Block, MAX_DATA_BYTES, status};
use vmm::devices::virtio::console::{Backend, Console};
use vmm::devices::virtio::mmio::reg;
use vmm::devices::virtio::net::{MAX_FRAME_LEN, Net, encode};
use vmm::devices::virtio::rng::Rng;

const SECTORS: u64 = 64;

fn disk(read_only: bool) -> (tempfile::NamedTempFile, Driver) {
    let file = tempfile::NamedTempFile::new().unwrap();
    let pattern: Vec<u8> = (0..SECTORS * 512)
        .map(|i| (i / 512) as u8 ^ (i as u8))
        .collect();
    file.as_file().write_all_at(&pattern, 0).unwrap();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(!read_only)
        .open(file.path())
        .unwrap();
    let block = Block::new(f, read_only, "boxlite-vda").unwrap();
    let d = Driver::new(Box::new(block), 1 << 5 | 1 << 9 | 1 << 2, 128);
    (file, d)
}

fn header(kind: u32, sector: u64) -> Vec<u8> {
    [
        kind.to_le_bytes().to_vec(),
        0u32.to_le_bytes().to_vec(),
        sector.to_le_bytes().to_vec(),
    ]
    .concat()
}

/// A request as Linux lays it out: header, data, status; returns (status, used length).
fn block_request(
    d: &mut Driver,
    kind: u32,
    sector: u64,
    data: &[(u64, u32)],
    writable: bool,
) -> (u8, u32) {
    let status_addr = DATA - 0x100;
    let header_addr = DATA - 0x200;
    d.write(header_addr, &header(kind, sector));
    d.write(status_addr, &[0xee]);
    let mut bufs = vec![(header_addr, 16, false)];
    bufs.extend(data.iter().map(|&(a, l)| (a, l, writable)));
    bufs.push((status_addr, 1, true));
    let before = d.used(0).len();
    let head = d.submit(0, &bufs);
    d.notify(0);
    let used = d.used(0);
    assert_eq!(used.len(), before + 1, "one request completed");
    assert_eq!(used[before].0, u32::from(head));
    assert!(d.take_irq(), "completion interrupts the guest");
    (d.read(status_addr, 1)[0], used[before].1)
}

#[test]
fn block_reads_split_across_buffers() {
    let (file, mut d) = disk(false);
    let (s, len) = block_request(&mut d, 0, 3, &[(DATA, 512), (DATA + 0x10000, 1024)], true);
    assert_eq!((s, len), (status::OK, 1537));
    let mut expected = vec![0u8; 1536];
    file.as_file()
        .read_exact_at(&mut expected, 3 * 512)
        .unwrap();
    assert_eq!(
        [d.read(DATA, 512), d.read(DATA + 0x10000, 1024)].concat(),
        expected
    );
    // Capacity is in the configuration space.
    let mut cap = [0u8; 8];
    vmm::bus::BusDevice::read(&mut d.t, reg::CONFIG, &mut cap);
    assert_eq!(u64::from_le_bytes(cap), SECTORS);
}

#[test]
fn block_writes_and_flushes() {
    let (file, mut d) = disk(false);
    d.write(DATA, &[0x5a; 1024]);
    assert_eq!(
        block_request(&mut d, 1, 10, &[(DATA, 1024)], false),
        (status::OK, 1)
    );
    let mut back = vec![0u8; 1024];
    file.as_file().read_exact_at(&mut back, 10 * 512).unwrap();
    assert_eq!(back, vec![0x5a; 1024]);
    assert_eq!(block_request(&mut d, 4, 0, &[], false), (status::OK, 1));
}

#[test]
fn block_get_id() {
    let (_file, mut d) = disk(true);
    let (s, len) = block_request(&mut d, 8, 0, &[(DATA, 20)], true);
    assert_eq!((s, len), (status::OK, 21));
    assert_eq!(&d.read(DATA, 20)[..11], b"boxlite-vda");
}

#[test]
fn block_out_of_range_and_oversize_fail_with_ioerr() {
    let (_file, mut d) = disk(false);
    assert_eq!(
        block_request(&mut d, 0, SECTORS, &[(DATA, 512)], true).0,
        status::IOERR
    );
    assert_eq!(
        block_request(&mut d, 0, SECTORS - 1, &[(DATA, 1024)], true).0,
        status::IOERR
    );
    assert_eq!(
        block_request(&mut d, 1, u64::MAX / 256, &[(DATA, 512)], false).0,
        status::IOERR
    );
    let big = (MAX_DATA_BYTES + 512) as u32;
    assert_eq!(
        block_request(&mut d, 0, 0, &[(DATA, big)], true).0,
        status::IOERR
    );
    assert_eq!(block_request(&mut d, 77, 0, &[], false).0, status::UNSUPP);
    // The device still works.
    assert_eq!(
        block_request(&mut d, 0, 0, &[(DATA, 512)], true).0,
        status::OK
    );
    assert!(!d.needs_reset());
}

#[test]
fn block_read_only_refuses_writes() {
    let (file, mut d) = disk(true);
    assert_ne!(d.features() & (1 << 5), 0, "VIRTIO_BLK_F_RO offered");
    d.write(DATA, &[0xff; 512]);
    assert_eq!(
        block_request(&mut d, 1, 0, &[(DATA, 512)], false),
        (status::IOERR, 1)
    );
    let mut back = vec![0u8; 512];
    file.as_file().read_exact_at(&mut back, 0).unwrap();
    assert_ne!(back, vec![0xff; 512]);
    assert_eq!(
        block_request(&mut d, 0, 0, &[(DATA, 512)], true).0,
        status::OK
    );
}

#[test]
fn chain_outside_guest_memory_resets_the_device_not_the_vmm() {
    let (_file, mut d) = disk(false);
    d.write(DATA - 0x200, &header(0, 0));
    d.submit(
        0,
        &[
            (DATA - 0x200, 16, false),
            (0xffff_ff00_0000, 512, true),
            (DATA, 1, true),
        ],
    );
    d.notify(0);
    assert!(d.needs_reset());
    assert!(d.used(0).is_empty());
    // A reset and a fresh setup bring it back.
    d.avail_idx[0] = 0;
    d.next_desc[0] = 0;
    d.write(support::ring_base(0) + 0x4000, &[0; 4]);
    d.write(support::ring_base(0) + 0x8000, &[0; 4]);
    d.init(0, 128);
    assert!(!d.needs_reset());
    assert_eq!(
        block_request(&mut d, 0, 0, &[(DATA, 512)], true).0,
        status::OK
    );
}

#[test]
fn oversize_descriptor_length_is_refused() {
    let (_file, mut d) = disk(false);
    d.submit(
        0,
        &[
            (DATA - 0x200, 16, false),
            (DATA, u32::MAX, true),
            (DATA, 1, true),
        ],
    );
    d.notify(0);
    assert!(d.needs_reset());
}

#[test]
fn looping_chain_ends() {
    let (_file, mut d) = disk(false);
    // Two descriptors pointing at each other, both readable: no status byte ever comes.
    d.put_desc(0, 0, DATA, 16, 1, 1);
    d.put_desc(0, 1, DATA, 16, 1, 0);
    d.publish(0, 0);
    d.notify(0);
    assert!(d.needs_reset());
    // With a writable tail the loop is cut at the queue size and the request fails cleanly.
    let (_file, mut d) = disk(false);
    d.write(DATA - 0x200, &header(0, 0));
    d.put_desc(0, 0, DATA - 0x200, 16, 1, 1);
    d.put_desc(0, 1, DATA, 1, 1 | WRITE, 1);
    d.publish(0, 0);
    d.notify(0);
    assert!(d.needs_reset() || d.used(0).len() == 1);
}

#[test]
fn avail_index_running_ahead_resets_the_device() {
    let (_file, mut d) = disk(false);
    d.write(support::ring_base(0) + 0x4000 + 2, &500u16.to_le_bytes());
    d.notify(0);
    assert!(d.needs_reset());
}

#[test]
fn bad_queue_sizes_and_addresses() {
    let mut d = Driver::raw(Box::new(Rng::new()), 8);
    d.write32(reg::STATUS, 3);
    d.write32(reg::DRIVER_FEATURES_SEL, 1);
    d.write32(reg::DRIVER_FEATURES, 1);
    d.write32(reg::STATUS, 3 | 8);
    for bad in [0u32, 3, 100, 1 << 16, 128] {
        d.write32(reg::QUEUE_NUM, bad);
        assert_eq!(d.t.queue_size(0), Some(64), "size {bad} refused");
    }
    d.write32(reg::QUEUE_NUM, 16);
    assert_eq!(d.t.queue_size(0), Some(16));
    // A selected queue that does not exist reads as absent and ignores writes.
    d.write32(reg::QUEUE_SEL, 7);
    assert_eq!(d.read32(reg::QUEUE_NUM_MAX), 0);
    d.write32(reg::QUEUE_NUM, 8);
    d.write32(reg::QUEUE_SEL, 0);
    // Rings beyond guest memory: DRIVER_OK does not start the device.
    d.write32(reg::QUEUE_DESC_LOW, 0xffff_f000);
    d.write32(reg::QUEUE_READY, 1);
    d.write32(reg::STATUS, 3 | 8 | 4);
    assert!(d.needs_reset());
    assert!(!d.t.running());
    // Unaligned and odd-width register accesses are ignored.
    d.t.write(reg::STATUS + 1, &[0]);
    d.t.write(reg::STATUS, &[0, 0]);
    assert!(d.needs_reset());
}

#[test]
fn features_without_version_1_are_refused() {
    let mut d = Driver::raw(Box::new(Rng::new()), 8);
    d.write32(reg::STATUS, 3);
    d.write32(reg::STATUS, 3 | 8);
    assert_eq!(d.read32(reg::STATUS) & 8, 0);
    d.write32(reg::STATUS, 0);
    d.write32(reg::STATUS, 3);
    d.write32(reg::DRIVER_FEATURES_SEL, 1);
    d.write32(reg::DRIVER_FEATURES, 1 | 1 << 20); // an unoffered bit
    d.write32(reg::STATUS, 3 | 8);
    assert_eq!(d.read32(reg::STATUS) & 8, 0);
}

#[test]
fn rng_fills_buffers() {
    let mut d = Driver::new(Box::new(Rng::new()), 0, 16);
    d.submit(0, &[(DATA, 64, true), (DATA + 0x1000, 64, true)]);
    d.notify(0);
    assert_eq!(d.used(0), vec![(0, 128)]);
    assert!(d.take_irq());
    let bytes = [d.read(DATA, 64), d.read(DATA + 0x1000, 64)].concat();
    assert!(
        bytes.iter().filter(|b| **b == 0).count() < 16,
        "random, not zeroes"
    );
}

fn console_pair() -> (UnixStream, Driver) {
    let (host, vmm_side) = UnixStream::pair().unwrap();
    let console = Console::new(Backend::stream(vmm_side).unwrap());
    (host, Driver::new(Box::new(console), 0, 64))
}

#[test]
fn console_guest_to_host() {
    let (mut host, mut d) = console_pair();
    d.write(DATA, b"hello, ");
    d.write(DATA + 0x1000, b"host");
    d.submit(1, &[(DATA, 7, false), (DATA + 0x1000, 4, false)]);
    d.notify(1);
    assert_eq!(d.used(1), vec![(0, 0)]);
    assert!(d.take_irq());
    let mut got = [0u8; 11];
    host.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello, host");
}

#[test]
fn console_host_to_guest_waits_for_buffers() {
    let (mut host, mut d) = console_pair();
    host.write_all(b"ping").unwrap();
    d.backend_ready();
    assert!(d.used(0).is_empty(), "no receive buffer yet");
    d.submit(0, &[(DATA, 2, true)]);
    d.notify(0);
    assert_eq!(d.used(0), vec![(0, 2)]);
    assert_eq!(d.read(DATA, 2), b"pi");
    d.submit(0, &[(DATA + 0x1000, 64, true)]);
    d.notify(0);
    assert_eq!(d.used(0)[1], (1, 2));
    assert_eq!(d.read(DATA + 0x1000, 2), b"ng");
}

#[test]
fn console_backpressure_never_drops_guest_output() {
    let (mut host, mut d) = console_pair();
    const CHUNK: u32 = 60 * 1024;
    const CHAINS: usize = 16; // ~1 MiB: far more than a socket buffer holds
    for i in 0..CHAINS {
        let addr = DATA + i as u64 * 0x10000;
        d.write(addr, &vec![i as u8; CHUNK as usize]);
        d.submit(1, &[(addr, CHUNK, false)]);
    }
    d.notify(1);
    let done = d.used(1).len();
    assert!(
        done < CHAINS,
        "the full socket stopped consumption ({done} of {CHAINS} chains used)"
    );
    // The host reads slowly; the device continues as the socket drains.
    host.set_nonblocking(true).unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 8192];
    while got.len() < CHAINS * CHUNK as usize {
        match host.read(&mut buf) {
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => d.backend_ready(),
        }
    }
    d.backend_ready();
    assert_eq!(d.used(1).len(), CHAINS);
    for (i, chunk) in got.chunks(CHUNK as usize).enumerate() {
        assert!(
            chunk.iter().all(|b| *b == i as u8),
            "chunk {i} intact and in order"
        );
    }
}

#[test]
fn console_output_waits_for_a_client() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("console.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let mut d = Driver::new(
        Box::new(Console::new(Backend::listen(listener).unwrap())),
        0,
        64,
    );
    d.write(DATA, b"early boot output");
    d.submit(1, &[(DATA, 17, false)]);
    d.notify(1);
    d.backend_ready();
    assert!(
        d.used(1).is_empty(),
        "kept in the guest until someone listens"
    );
    let mut client = UnixStream::connect(&path).unwrap();
    d.backend_ready();
    assert_eq!(d.used(1).len(), 1);
    let mut got = [0u8; 17];
    client.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"early boot output");
    // The client leaves; a new one gets later output.
    drop(client);
    d.backend_ready();
    let mut client = UnixStream::connect(&path).unwrap();
    d.backend_ready();
    d.write(DATA, b"again");
    d.submit(1, &[(DATA, 5, false)]);
    d.notify(1);
    let mut got = [0u8; 5];
    client.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"again");
}

fn net_pair() -> (UnixStream, Driver) {
    let (host, vmm_side) = UnixStream::pair().unwrap();
    let net = Net::new(vmm_side, [0x02, 0, 0, 0, 0, 1]).unwrap();
    (host, Driver::new(Box::new(net), 1 << 5, 64))
}

#[test]
fn net_frames_both_ways() {
    let (mut host, mut d) = net_pair();
    let mut mac = [0u8; 6];
    vmm::bus::BusDevice::read(&mut d.t, reg::CONFIG, &mut mac);
    assert_eq!(mac, [2, 0, 0, 0, 0, 1]);
    // Guest to host: header in its own descriptor, frame in two.
    let frame: Vec<u8> = (0..100u8).collect();
    d.write(DATA, &[0; 12]);
    d.write(DATA + 0x1000, &frame[..60]);
    d.write(DATA + 0x2000, &frame[60..]);
    d.submit(
        1,
        &[
            (DATA, 12, false),
            (DATA + 0x1000, 60, false),
            (DATA + 0x2000, 40, false),
        ],
    );
    d.notify(1);
    assert_eq!(d.used(1).len(), 1);
    let mut wire = vec![0u8; 104];
    host.read_exact(&mut wire).unwrap();
    assert_eq!(wire, encode(&frame));
    // Host to guest.
    let incoming = vec![0xab; 1500];
    host.write_all(&encode(&incoming)).unwrap();
    d.submit(0, &[(DATA + 0x10000, 12 + 1514, true)]);
    d.notify(0);
    d.backend_ready();
    assert_eq!(d.used(0), vec![(0, 1512)]);
    let got = d.read(DATA + 0x10000, 1512);
    assert_eq!(u16::from_le_bytes([got[10], got[11]]), 1, "num_buffers");
    assert_eq!(&got[12..], &incoming[..]);
}

#[test]
fn net_drops_what_does_not_fit_and_closes_a_broken_backend() {
    let (mut host, mut d) = net_pair();
    host.write_all(&encode(&[1; 2000])).unwrap();
    d.submit(0, &[(DATA, 1024, true)]);
    d.notify(0);
    d.backend_ready();
    assert_eq!(d.used(0), vec![(0, 0)], "too big for the buffer: dropped");
    host.write_all(&((MAX_FRAME_LEN + 1) as u32).to_be_bytes())
        .unwrap();
    d.submit(0, &[(DATA, 1024, true)]);
    d.notify(0);
    d.backend_ready();
    assert!(d.t.watches().is_empty(), "backend closed");
    assert!(!d.needs_reset(), "a host-side fault is not the guest's");
    let mut rest = Vec::new();
    host.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
}
