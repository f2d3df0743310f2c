//! Encoder handles: one encoder per thread at a time, results borrowed from the encoder.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::image::{ColorSpec, MAX_FRAME_SIDE, MjpegDecoder, TensorImage};
use crate::pipeline::{EncodeOptions, Encoder};

use super::call::guard;
use super::frame::{color_spec, frame_view, ps3rt_frame};
use super::handle::{Handle, handle, input, out_param, slice, write_out};
use super::model::ps3rt_model;
use super::options::{self, SizedOptions};
use super::output::{OutputView, ps3rt_output};
use super::status::{Failure, ps3rt_status};

/// How to create an encoder. Start from `ps3rt_encoder_default_options()` (or
/// `ps3rt_encoder_options_init`), then change fields.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ps3rt_encoder_options {
    /// `sizeof(ps3rt_encoder_options)` as the caller's header defines it (set by the init functions).
    pub struct_size: usize,
    /// High-res tokens per step, K (0, the default: the package's budget, `ps3rt_model_info.default_budget`).
    pub budget: usize,
    /// Look-close steps per frame; each selects K new patches (0 or 1, the default: one step).
    pub steps: usize,
}

impl SizedOptions for ps3rt_encoder_options {
    const NAME: &'static str = "ps3rt_encoder_options";
    const DEFAULT_FN: &'static str = "ps3rt_encoder_default_options";
    fn defaults() -> Self {
        ps3rt_encoder_options {
            struct_size: size_of::<Self>(),
            budget: 0,
            steps: 1,
        }
    }
}

/// What one encoder owns; only touched by the thread holding the handle's `busy` flag.
pub(super) struct EncoderState {
    pub(super) encoder: Encoder,
    /// The C view of the last region labels (`ps3rt_encoder_label_regions`).
    pub(super) labels: super::labels::LabelsView,
    view: OutputView,
    /// How YUV frames are converted (`ps3rt_encoder_set_yuv_color`).
    color: ColorSpec,
    /// Decodes `ps3rt_encoder_encode_jpeg`'s images into a buffer reused across calls.
    jpeg: MjpegDecoder,
    /// Set while a call runs and cleared when it returns normally: still set after a caught panic,
    /// when the encoder's buffers may be half-written, so later calls are refused.
    pub(super) poisoned: bool,
}

/// An encoder (opaque in the header). Not thread-safe: use one encoder from one thread at a time (it
/// may move between threads between calls). Concurrent calls on one encoder are detected and
/// refused with `PS3RT_STATUS_BUSY`. Create one encoder per thread; they can share one model.
/// `#[repr(C)]` only to keep the tag first (see `Handle`).
#[repr(C)]
pub struct ps3rt_encoder {
    magic: u64,
    busy: AtomicBool,
    state: UnsafeCell<EncoderState>,
}

impl Handle for ps3rt_encoder {
    const MAGIC: u64 = u64::from_le_bytes(*b"ps3rtENC");
    const NAME: &'static str = "ps3rt_encoder";
    fn magic(&self) -> u64 {
        self.magic
    }
}

// An encoder may move between threads (one at a time).
const _: () = {
    const fn movable<T: Send>() {}
    movable::<Encoder>();
};

/// Exclusive use of an encoder's state for the duration of one call.
pub(super) struct Exclusive<'a> {
    busy: &'a AtomicBool,
    pub(super) state: &'a mut EncoderState,
}

impl Drop for Exclusive<'_> {
    fn drop(&mut self) {
        self.busy.store(false, Ordering::Release);
    }
}

impl ps3rt_encoder {
    /// Take the encoder for one call, or fail with `Busy` if another thread holds it.
    pub(super) fn lock(&self) -> Result<Exclusive<'_>, Failure> {
        if self
            .busy
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return Err(Failure::new(
                ps3rt_status::Busy,
                "the encoder is in use by another thread (use one encoder per thread)",
            ));
        }
        // SAFETY: the busy flag was false and is now ours: no other call holds a reference into the
        // state until Exclusive's drop releases it (Release pairs with the Acquire above).
        let state = unsafe { &mut *self.state.get() };
        if state.poisoned {
            self.busy.store(false, Ordering::Release);
            return Err(Failure::new(
                ps3rt_status::Internal,
                "the encoder is unusable after an internal error in an earlier call; destroy it",
            ));
        }
        Ok(Exclusive {
            busy: &self.busy,
            state,
        })
    }
}

/// Fill `options` (a struct of `struct_size` bytes: pass `sizeof *options`) with the defaults. The
/// header's `ps3rt_encoder_default_options()` wraps this.
///
/// # Safety
/// `options` is NULL or points to `struct_size` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ps3rt_encoder_options_init(
    options: *mut ps3rt_encoder_options,
    struct_size: usize,
) -> ps3rt_status {
    // SAFETY: forwarded caller contract.
    guard("ps3rt_encoder_options_init", || unsafe {
        options::init(options, struct_size, "options")
    })
}

/// Create an encoder for `model` (which it keeps a reference to: the model handle may be destroyed
/// first). `options` may be NULL for the defaults. A budget or step count the model cannot take fails
/// with `PS3RT_STATUS_INVALID_ARGUMENT`. Buffers are sized here and reused by every encode.
///
/// # Safety
/// `model` is NULL or a live model handle; `options` is NULL or an initialized options struct;
/// `encoder` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ps3rt_encoder_create(
    model: *const ps3rt_model,
    options: *const ps3rt_encoder_options,
    encoder: *mut *mut ps3rt_encoder,
) -> ps3rt_status {
    guard("ps3rt_encoder_create", || {
        // SAFETY: the caller guarantees a live handle or NULL.
        let m = unsafe { handle(model, "model") }?;
        let out = out_param(encoder, "encoder")?;
        // SAFETY: the caller guarantees NULL or a readable, initialized options struct.
        let opts = unsafe { options::read(options, "options") }?;
        let enc = Encoder::new(
            &m.model,
            EncodeOptions {
                budget: (opts.budget != 0).then_some(opts.budget),
                steps: opts.steps,
            },
        )?;
        let handle = Box::new(ps3rt_encoder {
            magic: ps3rt_encoder::MAGIC,
            busy: AtomicBool::new(false),
            state: UnsafeCell::new(EncoderState {
                encoder: enc,
                view: OutputView::default(),
                labels: super::labels::LabelsView::default(),
                color: ColorSpec::default(),
                jpeg: MjpegDecoder::new(),
                poisoned: false,
            }),
        });
        // SAFETY: checked out-parameter, writable per the caller's contract.
        unsafe { write_out(out, Box::into_raw(handle)) };
        Ok(())
    })
}

/// Free `encoder` (NULL is accepted and ignored); every output view it returned becomes invalid. No
/// other call may use this handle concurrently or afterwards (an encoder found busy in another
/// thread is not freed: it is leaked and an error is logged, rather than freed under that thread).
///
/// # Safety
/// `encoder` is NULL or a live handle from `ps3rt_encoder_create`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ps3rt_encoder_destroy(encoder: *mut ps3rt_encoder) {
    let _ = guard("ps3rt_encoder_destroy", || {
        if encoder.is_null() {
            return Ok(());
        }
        // SAFETY: non-NULL; the caller guarantees a live handle.
        let h = unsafe { handle(encoder.cast_const(), "encoder") }?;
        if h.busy.swap(true, Ordering::Acquire) {
            log::error!("ps3rt_encoder_destroy: encoder in use by another thread; leaking it");
            return Err(Failure::new(
                ps3rt_status::Busy,
                "the encoder is in use by another thread; it was not freed",
            ));
        }
        // SAFETY: created by Box::into_raw in ps3rt_encoder_create, live (magic checked) and now held
        // exclusively (busy flag taken); the caller promises no later use.
        let mut b = unsafe { Box::from_raw(encoder) };
        // SAFETY: a valid, aligned field of the box; volatile so the dead store is kept.
        unsafe { std::ptr::write_volatile(&raw mut b.magic, 0) };
        drop(b);
        Ok(())
    });
}

/// Select top-down: rank patches by similarity to `prompt`, `length` floats (the model's width C,
/// `ps3rt_model_info.width`, e.g. a PS3 text embedding), instead of the learned prior prompt.
/// `prompt` NULL with `length` 0 restores bottom-up selection. The values are copied.
///
/// # Safety
/// `encoder` is NULL or a live encoder handle; `prompt` is NULL or points to `length` floats.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ps3rt_encoder_set_prompt(
    encoder: *mut ps3rt_encoder,
    prompt: *const f32,
    length: usize,
) -> ps3rt_status {
    guard("ps3rt_encoder_set_prompt", || {
        // SAFETY: the caller guarantees a live handle or NULL.
        let h = unsafe { handle(encoder.cast_const(), "encoder") }?;
        let ex = h.lock()?;
        if prompt.is_null() && length == 0 {
            ex.state.encoder.set_prompt(None)?;
            return Ok(());
        }
        if length == 0 {
            return Err(Failure::invalid(
                "prompt length is 0 (pass NULL and 0 to restore the prior prompt)",
            ));
        }
        // SAFETY: the caller guarantees `length` readable floats at prompt.
        let values = unsafe { slice(prompt, length, "prompt") }?;
        ex.state.encoder.set_prompt(Some(values))?;
        Ok(())
    })
}

/// Run one encode on the held encoder and publish its view.
fn run(
    ex: Exclusive<'_>,
    output: *mut *const ps3rt_output,
    encode: impl FnOnce(&mut EncoderState) -> crate::Result<()>,
) -> Result<(), Failure> {
    let state = &mut *ex.state;
    state.poisoned = true;
    let result = encode(state);
    state.poisoned = false;
    result?;
    let view = state.view.refresh(state.encoder.output());
    // SAFETY: `output` passed out_param; writable per the caller's contract. The view lives in the
    // boxed handle and points into the encoder's output buffers, untouched until the next encode.
    unsafe { write_out(output, std::ptr::from_ref(view)) };
    Ok(())
}

/// Encode one 8-bit frame of any size (squashed to the model's square input, as PS3 does). On success
/// `*output` points to the result, owned by the encoder and valid until its next encode call or its
/// destruction. On failure `*output` is not written, and views from earlier encodes of this encoder
/// are invalid too.
///
/// # Safety
/// `encoder` is NULL or a live encoder handle; `frame` is NULL or a descriptor whose planes hold the
/// bytes it describes for the duration of the call; `output` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ps3rt_encoder_encode(
    encoder: *mut ps3rt_encoder,
    frame: *const ps3rt_frame,
    output: *mut *const ps3rt_output,
) -> ps3rt_status {
    guard("ps3rt_encoder_encode", || {
        // SAFETY: the caller guarantees a live handle or NULL.
        let h = unsafe { handle(encoder.cast_const(), "encoder") }?;
        // SAFETY: the caller guarantees NULL or a readable descriptor.
        let desc = unsafe { input(frame, "frame") }?;
        let output = out_param(output, "output")?;
        // SAFETY: the caller guarantees the described bytes are readable for this call.
        let frame = unsafe { frame_view(desc) }?;
        let ex = h.lock()?;
        let frame = frame.with_color(ex.state.color);
        run(ex, output, |s| s.encoder.encode(&frame).map(|_| ()))
    })
}

/// Encode an already normalized tensor `[3, side, side]` (channel-major floats, PS3's
/// `pixel_values`: no squash, no normalization applied); `side` must be the model's input size
/// (`ps3rt_model_info.input_size`) and every value finite. `*output` as for `ps3rt_encoder_encode`.
///
/// # Safety
/// `encoder` is NULL or a live encoder handle; `tensor` is NULL or points to `3 * side * side`
/// floats; `output` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ps3rt_encoder_encode_tensor(
    encoder: *mut ps3rt_encoder,
    tensor: *const f32,
    side: usize,
    output: *mut *const ps3rt_output,
) -> ps3rt_status {
    guard("ps3rt_encoder_encode_tensor", || {
        // SAFETY: the caller guarantees a live handle or NULL.
        let h = unsafe { handle(encoder.cast_const(), "encoder") }?;
        let output = out_param(output, "output")?;
        if side == 0 || side > MAX_FRAME_SIDE as usize {
            return Err(Failure::new(
                ps3rt_status::InvalidFrame,
                format!("invalid frame: tensor side {side} outside 1..={MAX_FRAME_SIDE}"),
            ));
        }
        // SAFETY: the caller guarantees 3 * side * side readable floats (side <= 32768: no overflow).
        let values = unsafe { slice(tensor, 3 * side * side, "tensor") }?;
        let tensor = TensorImage::new(side, values)?;
        let ex = h.lock()?;
        run(ex, output, |s| s.encoder.encode_tensor(&tensor).map(|_| ()))
    })
}

/// Set how this encoder converts YUV frames (YUYV, UYVY, NV12, NV21, I420) to RGB: `matrix` a
/// `ps3rt_yuv_matrix`, `range` a `ps3rt_yuv_range`. The default, BT.601 limited range, is what
/// webcams (UVC) and V4L2 deliver when nothing else is said; HD and automotive cameras often use
/// BT.709. RGB and gray frames are not affected.
///
/// # Safety
/// `encoder` is NULL or a live encoder handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ps3rt_encoder_set_yuv_color(
    encoder: *mut ps3rt_encoder,
    matrix: i32,
    range: i32,
) -> ps3rt_status {
    guard("ps3rt_encoder_set_yuv_color", || {
        // SAFETY: the caller guarantees a live handle or NULL.
        let h = unsafe { handle(encoder.cast_const(), "encoder") }?;
        let color = color_spec(matrix, range)?;
        let ex = h.lock()?;
        ex.state.color = color;
        Ok(())
    })
}

/// Resample this encoder's frames into the model's planes on CUDA device `gpu_device` (0 for the
/// first GPU), or on the CPU when `gpu_device` is negative (the default). On a GPU, the frame-size
/// dependent work (every pixel of the frame is read) takes a fraction of a millisecond plus the
/// frame's copy to the device; the features equal the CPU's within float rounding. The first call
/// in a process compiles the kernels for the device (NVRTC). Without an NVIDIA driver, with no such
/// device or no NVRTC (`PS3RT_NVRTC_LIB` names one) this fails with `PS3RT_STATUS_BACKEND` and
/// a message naming what is missing, and the encoder keeps resampling where it did. Normalized
/// tensor inputs are always resampled on the CPU.
///
/// # Safety
/// `encoder` is NULL or a live encoder handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ps3rt_encoder_set_preprocess(
    encoder: *mut ps3rt_encoder,
    gpu_device: i32,
) -> ps3rt_status {
    guard("ps3rt_encoder_set_preprocess", || {
        // SAFETY: the caller guarantees a live handle or NULL.
        let h = unsafe { handle(encoder.cast_const(), "encoder") }?;
        let preprocess = if gpu_device < 0 {
            crate::pipeline::Preprocess::Cpu
        } else {
            crate::pipeline::Preprocess::Gpu(gpu_device)
        };
        let ex = h.lock()?;
        ex.state.encoder.set_preprocess(preprocess)?;
        Ok(())
    })
}

/// Decode a JPEG image (e.g. one frame of a camera's MJPEG stream; frames without Huffman tables
/// get JPEG's standard ones) into a buffer the encoder reuses, and encode it. `*output` as for
/// `ps3rt_encoder_encode`. A JPEG that cannot be decoded fails with `PS3RT_STATUS_INVALID_FRAME`.
///
/// # Safety
/// `encoder` is NULL or a live encoder handle; `data` is NULL or points to `length` readable bytes;
/// `output` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ps3rt_encoder_encode_jpeg(
    encoder: *mut ps3rt_encoder,
    data: *const u8,
    length: usize,
    output: *mut *const ps3rt_output,
) -> ps3rt_status {
    guard("ps3rt_encoder_encode_jpeg", || {
        // SAFETY: the caller guarantees a live handle or NULL.
        let h = unsafe { handle(encoder.cast_const(), "encoder") }?;
        let output = out_param(output, "output")?;
        if length == 0 {
            return Err(Failure::new(
                ps3rt_status::InvalidFrame,
                "invalid frame: the JPEG is empty (length 0)",
            ));
        }
        // SAFETY: the caller guarantees `length` readable bytes at data.
        let bytes = unsafe { slice(data, length, "data") }?;
        let ex = h.lock()?;
        run(ex, output, |s| {
            let frame = s.jpeg.decode(bytes)?;
            s.encoder.encode(&frame).map(|_| ())
        })
    })
}
