//! Junk from the guest: counted, never a panic; a broken length ends the stack quietly.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::Duration;

use common::{TestGate, echo_server, gateway, start, syn_frame};
use netstack::{Config, frames};

#[test]
fn malformed_frames_are_counted_and_the_stack_keeps_working() {
    let port = echo_server();
    let (running, mut guest) = start(TestGate::default(), Config::default());
    guest.send_raw(&[1, 2, 3]);
    let mut bad_ip = syn_frame(1234, gateway(port));
    bad_ip[14] = 0x4f; // header length past the packet
    guest.send_raw(&bad_ip);
    let mut bad_tcp = syn_frame(1235, gateway(port));
    bad_tcp[34 + 12] = 0xf0; // data offset past the segment
    guest.send_raw(&bad_tcp);
    assert!(
        guest.run_until(Duration::from_secs(2), |_| running.stats().frames_dropped
            >= 3)
    );
    let h = guest.connect(40200, gateway(port), 8192);
    assert_eq!(guest.exchange(h, b"fine", 4), b"fine");
}

#[test]
fn an_oversized_length_ends_the_stack() {
    let (running, mut guest) = start(TestGate::default(), Config::default());
    guest.send_bytes(&((frames::MAX_FRAME_LEN + 1) as u32).to_be_bytes());
    assert!(guest.run_until(Duration::from_secs(2), |_| running.is_finished()));
    assert_eq!(running.stats().frames_dropped, 1);
}

#[test]
fn the_stack_ends_when_the_guest_hangs_up() {
    let (running, guest) = start(TestGate::default(), Config::default());
    drop(guest);
    let end = std::time::Instant::now() + Duration::from_secs(2);
    while !running.is_finished() && std::time::Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(running.is_finished());
}

#[test]
fn fuzz_entry_survives_random_streams() {
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for round in 0..200 {
        let len = (round * 37) % 3000;
        let mut data: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        // Mostly plausible lengths, so frames get past the framing.
        if data.len() > 4 {
            let n = (data.len() - 4) as u32;
            data[..4].copy_from_slice(&n.to_be_bytes());
        }
        netstack::fuzz_frames(&data);
    }
    let frame = syn_frame(999, gateway(80));
    let mut wire = (frame.len() as u32).to_be_bytes().to_vec();
    wire.extend_from_slice(&frame);
    netstack::fuzz_frames(&wire);
}
