//! Feeds arbitrary bytes to the hostile-tar unpacker under both of its policies (the agent's
//! uploads and `boxlite cp BOX:PATH DEST` on the host): it may fail, but must never panic nor
//! create anything outside its directory.
//!
//! The body lives in the untar test suite, where a plain test runs it over seeds.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/untar/tests/fuzz_body.rs"]
mod body;

fuzz_target!(|data: &[u8]| body::check(data));
