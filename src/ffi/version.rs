//! Version of the library and of its C ABI.

use std::ffi::c_char;

/// Major version of the ps3rt package the header belongs to.
pub const PS3RT_VERSION_MAJOR: u32 = 0;
/// Minor version of the ps3rt package the header belongs to.
pub const PS3RT_VERSION_MINOR: u32 = 1;
/// Patch version of the ps3rt package the header belongs to.
pub const PS3RT_VERSION_PATCH: u32 = 0;
/// Version of the C ABI the header declares. It changes on every incompatible change (a removed or
/// changed function, a changed struct layout) and is the number in the shared library's SONAME
/// (`libps3rt.so.1`); additions (new functions, fields appended to size-prefixed structs) keep it.
pub const PS3RT_ABI_VERSION: u32 = 1;

/// The library's package version, e.g. `"0.1.0"` (static string, never NULL). Compare with
/// `PS3RT_VERSION` (the header's) to see which header a program was built with.
#[unsafe(no_mangle)]
pub extern "C" fn ps3rt_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The C ABI version the library implements. A program built against this header runs correctly only
/// when it equals `PS3RT_ABI_VERSION` (`PS3RT_CHECK_ABI()` tests exactly that).
#[unsafe(no_mangle)]
pub extern "C" fn ps3rt_abi_version() -> u32 {
    PS3RT_ABI_VERSION
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_constants_follow_cargo_toml() {
        let parse = |s: &str| s.parse::<u32>().unwrap();
        let hint = "update src/ffi/version.rs and regenerate include/ps3rt.h";
        assert_eq!(
            PS3RT_VERSION_MAJOR,
            parse(env!("CARGO_PKG_VERSION_MAJOR")),
            "{hint}"
        );
        assert_eq!(
            PS3RT_VERSION_MINOR,
            parse(env!("CARGO_PKG_VERSION_MINOR")),
            "{hint}"
        );
        assert_eq!(
            PS3RT_VERSION_PATCH,
            parse(env!("CARGO_PKG_VERSION_PATCH")),
            "{hint}"
        );
        // SAFETY: ps3rt_version returns a static NUL-terminated string.
        let v = unsafe { std::ffi::CStr::from_ptr(ps3rt_version()) };
        let header = format!("{PS3RT_VERSION_MAJOR}.{PS3RT_VERSION_MINOR}.{PS3RT_VERSION_PATCH}");
        assert_eq!(v.to_str().unwrap(), header);
        assert_eq!(ps3rt_abi_version(), PS3RT_ABI_VERSION);
    }

    #[test]
    fn build_script_soname_matches_the_abi_version() {
        let build = include_str!("../../build.rs");
        let soname = format!("libps3rt.so.{PS3RT_ABI_VERSION}");
        assert!(
            build.contains(&format!("const SONAME: &str = \"{soname}\";")),
            "build.rs must set the SONAME {soname}"
        );
    }
}
