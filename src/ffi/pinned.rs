//! Page-locked frame memory for C callers: `ps3rt_pinned_alloc` / `ps3rt_pinned_free`.
//!
//! The buffers are [`crate::PinnedBuffer`]s kept in a process-wide table keyed by their address, so
//! C gets a plain `uint8_t *` (what V4L2 `USERPTR` buffers, `memcpy` and `ps3rt_frame.planes` take)
//! and a wrong pointer passed to `ps3rt_pinned_free` is refused by name instead of freed.

use super::call::guard;
use super::handle::out_param;
#[cfg(feature = "cuda")]
use super::handle::write_out;
use super::status::{Failure, ps3rt_status};

#[cfg(feature = "cuda")]
mod table {
    use std::collections::HashMap;
    use std::sync::{Mutex, MutexGuard, PoisonError};

    use crate::PinnedBuffer;

    /// The live buffers by the address of their first byte.
    static BUFFERS: Mutex<Option<HashMap<usize, PinnedBuffer>>> = Mutex::new(None);

    pub(super) fn lock() -> MutexGuard<'static, Option<HashMap<usize, PinnedBuffer>>> {
        // A panic while the table was held cannot leave it half-updated (single insert/remove).
        BUFFERS.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Allocate `bytes` of page-locked ("pinned") host memory mapped into CUDA device `gpu_device`, for
/// frames preprocessed on the GPU (`ps3rt_encoder_set_preprocess`): capture or decode into it and
/// pass it as the frame's planes, and the frame reaches the GPU with one DMA (on a Jetson, none:
/// the kernels read it in place) instead of being page-locked or staged each frame. The CPU reads it
/// at normal speed. On success `*data` receives the zeroed memory, to free with `ps3rt_pinned_free`.
///
/// Fails with `PS3RT_STATUS_INVALID_ARGUMENT` for 0 bytes or a negative device,
/// `PS3RT_STATUS_BACKEND` naming what CUDA lacks or refused (no driver, no such device, the
/// page-locking limit), `PS3RT_STATUS_UNSUPPORTED` in builds without the `cuda` feature.
///
/// # Safety
/// `data` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ps3rt_pinned_alloc(
    gpu_device: i32,
    bytes: usize,
    data: *mut *mut u8,
) -> ps3rt_status {
    guard("ps3rt_pinned_alloc", || {
        let data = out_param(data, "data")?;
        if bytes == 0 {
            return Err(Failure::invalid("bytes is 0"));
        }
        if gpu_device < 0 {
            return Err(Failure::invalid(format!(
                "gpu_device {gpu_device} is negative"
            )));
        }
        #[cfg(feature = "cuda")]
        {
            let mut buffer = crate::PinnedBuffer::new(gpu_device, bytes)?;
            let ptr = buffer.as_mut_ptr();
            table::lock()
                .get_or_insert_with(Default::default)
                .insert(ptr as usize, buffer);
            // SAFETY: `data` passed out_param; the caller provides a writable uint8_t* there.
            unsafe { write_out(data, ptr) };
            Ok(())
        }
        #[cfg(not(feature = "cuda"))]
        {
            let _ = data;
            Err(Failure::new(
                ps3rt_status::Unsupported,
                "this build has no CUDA support (cargo feature cuda)",
            ))
        }
    })
}

/// Free memory from `ps3rt_pinned_alloc` (NULL is accepted and ignored). A pointer that is not the
/// start of a live `ps3rt_pinned_alloc` buffer fails with `PS3RT_STATUS_INVALID_ARGUMENT` and frees
/// nothing. No encode may be reading the memory.
///
/// # Safety
/// `data` is NULL or any pointer; the memory is not used after a successful call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ps3rt_pinned_free(data: *mut u8) -> ps3rt_status {
    guard("ps3rt_pinned_free", || {
        if data.is_null() {
            return Ok(());
        }
        #[cfg(feature = "cuda")]
        {
            // Taken out under the lock, freed after it (cuMemFreeHost may take a while).
            let buffer = table::lock()
                .as_mut()
                .and_then(|t| t.remove(&(data as usize)));
            match buffer {
                Some(buffer) => {
                    drop(buffer);
                    Ok(())
                }
                None => Err(not_ours()),
            }
        }
        #[cfg(not(feature = "cuda"))]
        {
            Err(not_ours())
        }
    })
}

fn not_ours() -> Failure {
    Failure::invalid(
        "data is not the start of a live ps3rt_pinned_alloc buffer (already freed, or another \
         allocation)",
    )
}
