//! Feeds arbitrary bytes to the protocol's frame decoder (whole and in chunks) and to both
//! message decoders: none may panic, chunking must not change the frames, and whatever
//! decodes must re-encode to itself.
//!
//! The body lives in the protocol test suite, where a plain test runs it over the seeds.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/protocol/tests/frames_fuzz.rs"]
mod body;

fuzz_target!(|data: &[u8]| body::check(data));
