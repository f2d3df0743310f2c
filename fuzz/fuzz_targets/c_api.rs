//! cargo-fuzz target `c_api`: see fuzz/harness/c_api.rs.
#![no_main]

#[path = "../harness/mod.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(init: harness::c_api::init(), |data: &[u8]| harness::c_api::run(data));
