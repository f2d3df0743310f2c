//! Checks of the pointers the C side hands in: NULL checks, live-handle checks, out-parameters.

use std::ffi::{CStr, c_char};

use super::status::Failure;

/// An opaque handle type: `#[repr(C)]` with a `u64` first field that holds `MAGIC` while the handle
/// is alive, which catches a handle of another type (or a destroyed one whose memory was not reused)
/// with a clear error. (The header declares the handle types opaque: cbindgen.toml excludes them.)
pub(crate) trait Handle {
    /// The value of a live handle's magic field.
    const MAGIC: u64;
    /// The C type name, for messages.
    const NAME: &'static str;
    /// The handle's magic field.
    fn magic(&self) -> u64;
}

/// Borrow the handle `ptr` (argument `arg`).
///
/// # Safety
/// `ptr` is NULL or points to a handle this library created and has not destroyed (per the
/// header's contract; a live handle of another type is detected), valid for `'a`.
pub(crate) unsafe fn handle<'a, T: Handle>(ptr: *const T, arg: &str) -> Result<&'a T, Failure> {
    if ptr.is_null() {
        return Err(Failure::invalid(format!("{arg} is NULL")));
    }
    // SAFETY: non-NULL; every handle type is #[repr(C)] with its u64 tag first, so any live handle
    // has 8 readable bytes there (unaligned read: no assumption about a wrong pointer's alignment).
    let magic = unsafe { ptr.cast::<u64>().read_unaligned() };
    if magic != T::MAGIC {
        return Err(Failure::invalid(format!(
            "{arg} is not a live {} (destroyed, or a pointer of another type)",
            T::NAME
        )));
    }
    // SAFETY: the tag says this is a live T, created by Box::into_raw and not yet destroyed.
    let h = unsafe { &*ptr };
    debug_assert_eq!(h.magic(), T::MAGIC);
    Ok(h)
}

/// Borrow the caller-filled struct `ptr` (argument `arg`).
///
/// # Safety
/// `ptr` is NULL or points to a readable, initialized `T` valid for `'a`.
pub(crate) unsafe fn input<'a, T>(ptr: *const T, arg: &str) -> Result<&'a T, Failure> {
    if ptr.is_null() {
        return Err(Failure::invalid(format!("{arg} is NULL")));
    }
    // SAFETY: non-NULL; the caller guarantees a readable, initialized T.
    Ok(unsafe { &*ptr })
}

/// Check an out-parameter before any work is done, so a NULL one fails early.
pub(crate) fn out_param<T>(ptr: *mut T, arg: &str) -> Result<*mut T, Failure> {
    if ptr.is_null() {
        Err(Failure::invalid(format!(
            "{arg} (the out-parameter) is NULL"
        )))
    } else {
        Ok(ptr)
    }
}

/// Write the result of a successful call to a checked out-parameter.
///
/// # Safety
/// `ptr` passed [`out_param`] and points to writable memory for a `T` (the caller's variable).
pub(crate) unsafe fn write_out<T>(ptr: *mut T, value: T) {
    // SAFETY: non-NULL (checked by out_param) and writable per the caller's contract; `write` does
    // not read or drop the old (possibly uninitialized) value.
    unsafe { ptr.write(value) }
}

/// Borrow the NUL-terminated string `ptr` (argument `arg`).
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string valid for `'a`.
pub(crate) unsafe fn c_str<'a>(ptr: *const c_char, arg: &str) -> Result<&'a CStr, Failure> {
    if ptr.is_null() {
        return Err(Failure::invalid(format!("{arg} is NULL")));
    }
    // SAFETY: non-NULL and NUL-terminated per the caller's contract.
    Ok(unsafe { CStr::from_ptr(ptr) })
}

/// Borrow `len` values at `ptr` (argument `arg`); `len` 0 gives an empty slice whatever `ptr` is.
///
/// # Safety
/// When `len > 0`, `ptr` is NULL or points to `len` readable, initialized values valid for `'a`.
pub(crate) unsafe fn slice<'a, T>(
    ptr: *const T,
    len: usize,
    arg: &str,
) -> Result<&'a [T], Failure> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(Failure::invalid(format!(
            "{arg} is NULL but its length is {len}"
        )));
    }
    if len
        .checked_mul(size_of::<T>())
        .is_none_or(|b| b > isize::MAX as usize)
    {
        return Err(Failure::invalid(format!(
            "{arg}: length {len} is too large"
        )));
    }
    if !(ptr as usize).is_multiple_of(align_of::<T>()) {
        return Err(Failure::invalid(format!(
            "{arg} is not aligned to {} bytes",
            align_of::<T>()
        )));
    }
    // SAFETY: non-NULL, aligned, total size within isize::MAX, and `len` initialized values
    // readable for 'a per the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}
