//! Status codes of the C ABI and how [`crate::Error`] maps onto them.

use std::ffi::c_char;

use crate::error::Error;

/// The result of every fallible call, a fixed-width `int32_t`. `PS3RT_STATUS_OK` is 0; any other
/// value is a failure whose message `ps3rt_last_error()` returns. Later versions may add
/// codes: treat an unknown non-zero value as a failure.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ps3rt_status {
    /// Success.
    Ok = 0,
    /// A pointer is NULL, a size or option is out of range or inconsistent with the model, or a
    /// handle is not a live handle of the expected type.
    InvalidArgument = 1,
    /// A frame or tensor does not describe valid pixels (size, stride, format, non-finite values).
    InvalidFrame = 2,
    /// A file could not be read.
    Io = 3,
    /// A model package is malformed, inconsistent or corrupted.
    Package = 4,
    /// An input file could not be decoded.
    Input = 5,
    /// The inference backend failed to load or run a graph.
    Backend = 6,
    /// The backend produced NaN or infinite values.
    NonFinite = 7,
    /// The encoder is in use by another thread (an encoder takes one call at a time).
    Busy = 8,
    /// The request is not supported by this build (e.g. no embedded model compiled in).
    Unsupported = 9,
    /// An internal error (a caught Rust panic): a bug in ps3rt; please report it with the message.
    Internal = 10,
}

impl ps3rt_status {
    /// The status an error of the Rust API maps to. Exhaustive on purpose: a new [`Error`] variant
    /// does not compile until it is given a status here.
    pub(crate) fn of(error: &Error) -> Self {
        match error {
            Error::Io { .. } => ps3rt_status::Io,
            Error::Package { .. } => ps3rt_status::Package,
            Error::InvalidFrame(_) => ps3rt_status::InvalidFrame,
            Error::InvalidArgument(_) => ps3rt_status::InvalidArgument,
            Error::Input { .. } => ps3rt_status::Input,
            Error::Backend { .. } => ps3rt_status::Backend,
            Error::NonFinite(_) => ps3rt_status::NonFinite,
        }
    }
}

/// A failed call: the status it returns and the message it leaves for `ps3rt_last_error`.
#[derive(Debug)]
pub(crate) struct Failure {
    pub status: ps3rt_status,
    pub message: String,
}

impl Failure {
    pub fn new(status: ps3rt_status, message: impl Into<String>) -> Self {
        Failure {
            status,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Failure::new(ps3rt_status::InvalidArgument, message)
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure::new(ps3rt_status::of(&error), error.to_string())
    }
}

/// A short static description of `status` ("ok", "invalid argument", ...; "unknown status" for a
/// value this version does not define). Never NULL; the string lives as long as the library.
#[unsafe(no_mangle)]
pub extern "C" fn ps3rt_status_string(status: i32) -> *const c_char {
    let s: &'static std::ffi::CStr = match status {
        0 => c"ok",
        1 => c"invalid argument",
        2 => c"invalid frame",
        3 => c"i/o error",
        4 => c"bad model package",
        5 => c"bad input file",
        6 => c"backend failure",
        7 => c"non-finite values",
        8 => c"encoder busy",
        9 => c"unsupported",
        10 => c"internal error",
        _ => c"unknown status",
    };
    s.as_ptr()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_variant_has_its_own_status() {
        let io = Error::Io {
            path: "x".into(),
            source: std::io::Error::other("gone"),
        };
        assert_eq!(ps3rt_status::of(&io), ps3rt_status::Io);
        assert_eq!(
            ps3rt_status::of(&Error::package("p", "f", "r")),
            ps3rt_status::Package
        );
        assert_eq!(
            ps3rt_status::of(&Error::NonFinite("x".into())),
            ps3rt_status::NonFinite
        );
        let f = Failure::from(Error::InvalidFrame("stride 3".into()));
        assert_eq!(f.status, ps3rt_status::InvalidFrame);
        assert_eq!(f.message, "invalid frame: stride 3");
    }

    #[test]
    fn status_strings_cover_every_code() {
        for code in 0..=10 {
            // SAFETY: ps3rt_status_string returns a static NUL-terminated string.
            let s = unsafe { std::ffi::CStr::from_ptr(ps3rt_status_string(code)) };
            assert_ne!(s.to_str().unwrap(), "unknown status", "code {code}");
        }
        // SAFETY: as above.
        let s = unsafe { std::ffi::CStr::from_ptr(ps3rt_status_string(-3)) };
        assert_eq!(s.to_str().unwrap(), "unknown status");
    }
}
