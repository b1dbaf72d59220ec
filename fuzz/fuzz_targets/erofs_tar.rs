//! Feeds arbitrary bytes to the EROFS layer writer as an uncompressed tar: it may fail, but
//! must never panic, and a success must be a whole image of the size it reports.
//!
//! The body lives in the erofs test suite, where a plain test runs it over seeds.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/erofs/tests/fuzz_body.rs"]
mod body;

fuzz_target!(|data: &[u8]| body::check(data));
