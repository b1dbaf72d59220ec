//! Feeds arbitrary bytes to the network stack as a guest's frame stream (4-byte lengths and
//! Ethernet frames): no length, header or flag combination may panic it or make it hold
//! more than its caps.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    netstack::fuzz_frames(data);
});
