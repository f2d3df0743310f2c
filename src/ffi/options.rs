//! Size-prefixed option structs: the caller states the size of the struct it was compiled with, so
//! fields can be appended in later versions without breaking programs built against this header.

use super::status::Failure;

/// A `#[repr(C)]` options struct whose first field is `struct_size: usize` and whose fields are all
/// plain integers (every bit pattern is a valid value; enums are validated after reading).
pub(crate) trait SizedOptions: Copy {
    /// The C type name, for messages.
    const NAME: &'static str;
    /// The header's inline function returning the defaults, for messages.
    const DEFAULT_FN: &'static str;
    /// This version's defaults, with `struct_size` = `size_of::<Self>()`.
    fn defaults() -> Self;
}

/// Read the options at `ptr` (NULL: the defaults).
///
/// A struct from a newer header (larger `struct_size`) is accepted when every byte this version
/// does not know is zero, so a newer field left at its zero default is not silently dropped.
///
/// # Safety
/// `ptr` is NULL or points to at least `struct_size` readable bytes (its first field), initialized.
pub(crate) unsafe fn read<T: SizedOptions>(ptr: *const T, arg: &str) -> Result<T, Failure> {
    if ptr.is_null() {
        return Ok(T::defaults());
    }
    let known = size_of::<T>();
    // SAFETY: non-NULL; every options struct starts with its usize struct_size field and the caller
    // guarantees it is readable (read_unaligned: no assumption on the caller's alignment).
    let size = unsafe { ptr.cast::<usize>().read_unaligned() };
    if size == 0 {
        return Err(Failure::invalid(format!(
            "{arg}->struct_size is 0 (not initialized): start from {}() or {}_init()",
            T::DEFAULT_FN,
            T::NAME
        )));
    }
    if size < known {
        return Err(Failure::invalid(format!(
            "{arg}->struct_size is {size}, smaller than this version's {} ({known} bytes)",
            T::NAME
        )));
    }
    if size > known {
        if size > 1 << 16 {
            return Err(Failure::invalid(format!(
                "{arg}->struct_size is {size}: not a {} (uninitialized?)",
                T::NAME
            )));
        }
        // SAFETY: the caller guarantees `size` readable bytes at ptr; bytes are always valid u8.
        let tail = unsafe { std::slice::from_raw_parts(ptr.cast::<u8>().add(known), size - known) };
        if tail.iter().any(|&b| b != 0) {
            return Err(Failure::invalid(format!(
                "{arg} is a {size}-byte {} from a newer ps3rt.h and sets fields this library ({known} bytes) does not know",
                T::NAME
            )));
        }
    }
    // SAFETY: at least size_of::<T>() readable bytes; T is plain integers, so any bytes are valid.
    Ok(unsafe { ptr.read_unaligned() })
}

/// Fill `ptr` (a struct of `struct_size` bytes as the caller's header defines it) with the defaults.
///
/// # Safety
/// `ptr` is NULL or points to `struct_size` writable bytes.
pub(crate) unsafe fn init<T: SizedOptions>(
    ptr: *mut T,
    struct_size: usize,
    arg: &str,
) -> Result<(), Failure> {
    let known = size_of::<T>();
    if ptr.is_null() {
        return Err(Failure::invalid(format!("{arg} is NULL")));
    }
    if struct_size < known || struct_size > 1 << 16 {
        return Err(Failure::invalid(format!(
            "struct_size {struct_size} does not fit this version's {} ({known} bytes); pass sizeof(*{arg})",
            T::NAME
        )));
    }
    let mut value = T::defaults();
    // SAFETY: `value` is a local T; struct_size is its first field (usize, offset 0), and T is plain
    // integers, so writing that field through a pointer cast is a valid initialization.
    unsafe { (&raw mut value).cast::<usize>().write(struct_size) };
    // SAFETY: the caller guarantees struct_size >= known writable bytes at ptr: the known part gets
    // the defaults, the part a newer header added is zeroed (the zero default of appended fields).
    unsafe {
        ptr.write_unaligned(value);
        std::ptr::write_bytes(ptr.cast::<u8>().add(known), 0, struct_size - known);
    }
    Ok(())
}
