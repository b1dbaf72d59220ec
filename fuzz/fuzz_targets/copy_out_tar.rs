//! Feeds arbitrary bytes to the unpacking of a guest's tar stream on the host (`boxlite cp
//! BOX:PATH DEST`): it may fail, but must never panic nor create anything outside its
//! directory.
//!
//! The body lives in the boxlite test suite, where a plain test runs it over seeds.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/boxlite/tests/copy_out_fuzz.rs"]
mod body;

fuzz_target!(|data: &[u8]| body::check(data));
