//! Build script: gives the C shared library (`cdylib`) its SONAME on Linux, so programs linked with
//! `-lps3rt` record `libps3rt.so.<ABI>` and keep working across compatible releases. It changes
//! nothing else: the rlib, the staticlib, the CLI and the tests build as without it. (Only the
//! `ps3rt_` functions are exported: rustc's own version script for a cdylib exports exactly the
//! `#[no_mangle] extern "C"` functions, which all live in `src/ffi/`; scripts/test-ffi.sh checks it.)

/// Must name `PS3RT_ABI_VERSION` of src/ffi/version.rs (a unit test there checks this line).
const SONAME: &str = "libps3rt.so.1";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" || os == "android" {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{SONAME}");
    }
}
