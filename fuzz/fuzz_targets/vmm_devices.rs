//! Drives a virtio-mmio transport with arbitrary register reads and writes (any offset,
//! width, feature bits and status transitions), guest memory scribbles, host socket input
//! and queue notifications: no sequence may panic the VMM.
//!
//! The body lives in the vmm test suite, where a plain test runs it over the seeds.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/vmm/tests/virtio_fuzz.rs"]
mod body;

fuzz_target!(|data: &[u8]| body::check_registers(data));
