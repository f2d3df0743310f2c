//! cargo-fuzz target `frame`: see fuzz/harness/frame.rs.
#![no_main]

#[path = "../harness/mod.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::frame::run(data));
