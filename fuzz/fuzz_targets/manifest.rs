//! cargo-fuzz target `manifest`: see fuzz/harness/manifest.rs.
#![no_main]

#[path = "../harness/mod.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::manifest::run(data));
