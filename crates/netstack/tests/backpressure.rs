//! A guest that sends but never takes its frames: every frame it sends may draw a reply (here
//! a RST to a denied SYN), and the stack must stop reading once its queue for the guest is
//! full rather than grow that queue without end.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::io::{ErrorKind, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::syn_frame;
use netstack::{Config, DenyGate, Stack};

#[test]
fn a_guest_that_takes_no_frames_is_stalled_not_buffered() {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let running = Stack::start(theirs, Config::default(), Box::new(DenyGate)).unwrap();
    ours.set_nonblocking(true).unwrap();
    let mut ours = ours;
    let dst = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 7), 80);
    // 200,000 SYNs are ~16 MiB of frames drawing ~11 MiB of RSTs: far past the queue's cap
    // and the socket buffers, so a stack that kept reading would take them all.
    let mut written = 0u64;
    let mut blocked_since: Option<Instant> = None;
    for i in 0..200_000u32 {
        let frame = syn_frame(1024 + (i % 60000) as u16, dst);
        let mut bytes = (frame.len() as u32).to_be_bytes().to_vec();
        bytes.extend_from_slice(&frame);
        let mut at = 0;
        while at < bytes.len() {
            match ours.write(&bytes[at..]) {
                Ok(n) => {
                    at += n;
                    written += n as u64;
                    blocked_since = None;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    let since = *blocked_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > Duration::from_secs(2) {
                        // The stack stopped reading: it holds at most its queue's worth.
                        let stats = running.stats();
                        assert!(stats.frames_in < 100_000, "{stats:?}");
                        assert!(written < 16 << 20, "{written} bytes went in");
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("{e}"),
            }
        }
    }
    panic!("the stack read all {written} bytes from a guest that took none of its replies");
}
