//! cargo-fuzz target `package`: see fuzz/harness/package.rs.
#![no_main]

#[path = "../harness/mod.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::package::run(data));
