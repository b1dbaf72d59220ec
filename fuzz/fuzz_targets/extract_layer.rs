//! Feeds arbitrary bytes to layer extraction as an uncompressed tar: it may fail, but must
//! never panic nor create anything outside its destination directory.
//!
//! The body lives in the oci-layers test suite, where a plain test runs it over seeds.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/oci-layers/tests/extract_fuzz.rs"]
mod body;

fuzz_target!(|data: &[u8]| body::check(data));
