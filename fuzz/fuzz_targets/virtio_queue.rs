//! Lays arbitrary bytes over a virtio device's descriptor tables, available rings and
//! buffers (block read-write and read-only, rng, console, net), with any queue size, and
//! lets the device run: no input may panic the VMM or reach outside guest memory.
//!
//! The body lives in the vmm test suite, where a plain test runs it over the seeds.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/vmm/tests/virtio_fuzz.rs"]
mod body;

fuzz_target!(|data: &[u8]| body::check_queues(data));
