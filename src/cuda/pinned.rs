//! Page-locked host memory for frames: what a camera or decoder writes into so that GPU
//! preprocessing copies the frame with one DMA (or, on a Jetson, reads it where it lies).

use super::driver::{Context, HostBuffer};
use crate::Result;

/// Page-locked ("pinned") host memory, mapped into a CUDA device, for frames to be preprocessed on
/// the GPU ([`crate::Preprocess::Gpu`]).
///
/// A frame whose planes lie in such memory (this buffer's, or memory the caller page-locked with
/// `cudaHostAlloc` / `cudaHostRegister`) is brought to the GPU without locking or staging: one DMA
/// on a discrete GPU (8K RGB8: the copy alone, finding 33 of docs/performance.md), none at all on an
/// integrated GPU such as a Jetson's, whose kernels read it in place. Capture or decode straight into
/// it (V4L2 `USERPTR` buffers, a decoder's output), then encode a [`crate::Frame`] borrowing it.
///
/// The CPU reads and writes it at normal speed (it is not write-combined), so CPU preprocessing of
/// the same frames loses nothing. Page-locked memory cannot be swapped out: allocate a few frames'
/// worth, once, and reuse them. Zeroed when allocated; freed on drop.
pub struct PinnedBuffer {
    device: i32,
    /// Holds the device's primary context (in which it was allocated) until it is freed.
    memory: HostBuffer,
}

// SAFETY: shared access only hands out `&[u8]` of memory this value owns; the driver calls it
// makes (free on drop) may come from any thread once the context is bound, which `HostBuffer`'s
// drop does.
unsafe impl Sync for PinnedBuffer {}

impl std::fmt::Debug for PinnedBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinnedBuffer")
            .field("device", &self.device)
            .field("bytes", &self.memory.len())
            .finish()
    }
}

impl PinnedBuffer {
    /// Allocate `bytes` of page-locked memory for CUDA device `device` (every other device and
    /// context may copy from it too).
    ///
    /// Errors name what is missing (no NVIDIA driver, no such device) or the driver's refusal
    /// (`cuMemHostAlloc`: out of memory, or over the page-locking limit, `ulimit -l`).
    pub fn new(device: i32, bytes: usize) -> Result<PinnedBuffer> {
        let ctx = Context::new(device)?;
        let memory = HostBuffer::pinned(&ctx, bytes)?;
        Ok(PinnedBuffer { device, memory })
    }

    /// The CUDA device it was allocated for.
    pub fn device(&self) -> i32 {
        self.device
    }
}

impl std::ops::Deref for PinnedBuffer {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.memory.as_slice()
    }
}

impl std::ops::DerefMut for PinnedBuffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.memory.as_mut_slice()
    }
}
