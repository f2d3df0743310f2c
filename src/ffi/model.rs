//! Model handles: load a package (from a directory or the embedded tiny one), describe it, destroy it.

use std::ffi::{CString, c_char};
use std::path::PathBuf;

use crate::backend::{BackendKind, BackendOptions};
use crate::model::Model;

use super::call::guard;
use super::handle::{Handle, c_str, handle, out_param, write_out};
use super::options::{self, SizedOptions};
use super::status::{Failure, ps3rt_status};

/// Backends of `ps3rt_model_options.backend`.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ps3rt_backend {
    /// The best backend usable on this machine: TensorRT when the library was built with it and
    /// TensorRT and a GPU are usable, else ONNX Runtime on the CPU when its library opens and loads
    /// the graphs (see `PS3RT_BACKEND_ONNXRUNTIME`), else tract on the CPU
    /// (`ps3rt_model_info.backend_note` says why).
    Auto = 0,
    /// tract, on the CPU.
    Tract = 1,
    /// TensorRT on an NVIDIA GPU; loading fails with `PS3RT_STATUS_BACKEND` if it cannot run here.
    /// Settings come from the environment: `PS3RT_ENGINE_CACHE`, `PS3RT_TENSORRT_PRECISION`
    /// (auto, fp16, tf32, fp32), `PS3RT_TENSORRT_CUDA_GRAPH=1`, `PS3RT_CUDA_DEVICE`, and the library
    /// paths `PS3RT_TENSORRT_LIB`, `PS3RT_ONNXPARSER_LIB`, `PS3RT_CUDART_LIB` (docs/tensorrt.md).
    Tensorrt = 2,
    /// ONNX Runtime's CPU execution provider (ONNX Runtime 1.18 or newer, opened at run time);
    /// loading fails with `PS3RT_STATUS_BACKEND` if no usable library is found. The library is
    /// `PS3RT_ONNXRUNTIME` (a path to `libonnxruntime.so...`), else `ORT_DYLIB_PATH`, else
    /// `libonnxruntime.so` from the dynamic loader's search path.
    Onnxruntime = 3,
}

/// How to load a model. Start from `ps3rt_model_default_options()` (or `ps3rt_model_options_init`),
/// then change fields.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ps3rt_model_options {
    /// `sizeof(ps3rt_model_options)` as the caller's header defines it (set by the init functions).
    pub struct_size: usize,
    /// A `ps3rt_backend` value (default `PS3RT_BACKEND_AUTO`).
    pub backend: i32,
    /// Worker threads of the CPU backend, shared by all encoders of the model (0, the default: one
    /// per available core).
    pub threads: u32,
}

impl SizedOptions for ps3rt_model_options {
    const NAME: &'static str = "ps3rt_model_options";
    const DEFAULT_FN: &'static str = "ps3rt_model_default_options";
    fn defaults() -> Self {
        ps3rt_model_options {
            struct_size: size_of::<Self>(),
            backend: ps3rt_backend::Auto as i32,
            threads: 0,
        }
    }
}

impl ps3rt_model_options {
    fn backend_options(&self) -> Result<BackendOptions, Failure> {
        let kind = match self.backend {
            0 => BackendKind::Auto,
            1 => BackendKind::Tract,
            2 => BackendKind::TensorRt,
            3 => BackendKind::OnnxRuntime,
            b => {
                return Err(Failure::invalid(format!(
                    "options->backend {b} is not a ps3rt_backend (0 auto, 1 tract, 2 tensorrt, 3 onnxruntime)"
                )));
            }
        };
        let tensorrt = crate::backend::tensorrt::TensorRtOptions::from_env()
            .map_err(|e| Failure::invalid(format!("environment: {e}")))?;
        Ok(BackendOptions {
            kind,
            threads: self.threads as usize,
            tensorrt,
            onnxruntime_library: None,
        })
    }
}

/// What a loaded model is. Owned by the model handle: valid until `ps3rt_model_destroy`. Later
/// versions may append fields.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ps3rt_model_info {
    /// Package name, e.g. `"ps3-tiny-4k"`.
    pub name: *const c_char,
    /// Where the package came from: its directory, or `"embedded:<name>"`.
    pub origin: *const c_char,
    /// The backend running the graphs, e.g. `"tract"`.
    pub backend: *const c_char,
    /// Feature width C (also the length of a prompt for `ps3rt_encoder_set_prompt`).
    pub width: usize,
    /// The package's default budget K (used when the encoder options leave `budget` at 0).
    pub default_budget: usize,
    /// Patch side in pixels (14).
    pub patch: usize,
    /// Low-res scale in pixels (378); its token grid is `lowres_size / patch` (27).
    pub lowres_size: usize,
    /// The high-res scales in pixels, ascending (756, 1512, 3780 for PS3-4K).
    pub high_scales: *const u32,
    /// Number of high-res scales.
    pub high_scale_count: usize,
    /// Side of the normalized tensor `ps3rt_encoder_encode_tensor` takes (the largest scale).
    pub input_size: usize,
    /// High-res patches over all high-res scales: `steps * budget` may not exceed it.
    pub total_high_patches: usize,
    /// Size of the package's files in bytes.
    pub package_bytes: u64,
    /// Why this backend runs the graphs (e.g. why `PS3RT_BACKEND_AUTO` fell back to tract), or what
    /// it runs on (TensorRT version, GPU, precision); `""` when there is nothing to say.
    pub backend_note: *const c_char,
}

/// A loaded model (opaque in the header). Thread-safe: any number of threads may create encoders
/// from one model and query it at the same time; only `ps3rt_model_destroy` needs exclusive use.
/// `#[repr(C)]` only to keep the tag first (see `Handle`).
#[derive(Debug)]
#[repr(C)]
pub struct ps3rt_model {
    magic: u64,
    pub(crate) model: Model,
    info: ps3rt_model_info,
    _strings: [CString; 4],
    _high_scales: Vec<u32>,
}

impl Handle for ps3rt_model {
    const MAGIC: u64 = u64::from_le_bytes(*b"ps3rtMDL");
    const NAME: &'static str = "ps3rt_model";
    fn magic(&self) -> u64 {
        self.magic
    }
}

// Models are shared by encoders on many threads (the header promises it).
const _: () = {
    const fn shared<T: Send + Sync>() {}
    shared::<Model>();
};

fn c_string(s: &str) -> CString {
    CString::new(s.replace('\0', " ")).unwrap_or_default()
}

impl ps3rt_model {
    fn new(model: Model) -> Box<ps3rt_model> {
        let g = model.geometry();
        let strings = [
            c_string(&model.manifest().name),
            c_string(model.origin()),
            c_string(model.backend_name()),
            c_string(model.backend_note().unwrap_or("")),
        ];
        let high_scales: Vec<u32> = g.high_scales().iter().map(|&s| s as u32).collect();
        // The CStrings' and the Vec's heap buffers do not move when the handle is built around them.
        let info = ps3rt_model_info {
            name: strings[0].as_ptr(),
            origin: strings[1].as_ptr(),
            backend: strings[2].as_ptr(),
            width: model.width(),
            default_budget: model.default_budget(),
            patch: g.patch(),
            lowres_size: g.lowres_size(),
            high_scales: high_scales.as_ptr(),
            high_scale_count: high_scales.len(),
            input_size: g.input_size(),
            total_high_patches: g.total_high_patches(),
            package_bytes: model.package_bytes(),
            backend_note: strings[3].as_ptr(),
        };
        Box::new(ps3rt_model {
            magic: Self::MAGIC,
            model,
            info,
            _strings: strings,
            _high_scales: high_scales,
        })
    }
}

/// Fill `options` (a struct of `struct_size` bytes: pass `sizeof *options`) with the defaults. The
/// header's `ps3rt_model_default_options()` wraps this.
///
/// # Safety
/// `options` is NULL or points to `struct_size` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ps3rt_model_options_init(
    options: *mut ps3rt_model_options,
    struct_size: usize,
) -> ps3rt_status {
    // SAFETY: forwarded caller contract.
    guard("ps3rt_model_options_init", || unsafe {
        options::init(options, struct_size, "options")
    })
}

fn finish_load(
    options: *const ps3rt_model_options,
    out: *mut *mut ps3rt_model,
    load: impl FnOnce(&BackendOptions) -> crate::Result<Model>,
) -> Result<(), Failure> {
    let out = out_param(out, "model")?;
    // SAFETY: the caller guarantees options is NULL or a readable, initialized ps3rt_model_options.
    let opts = unsafe { options::read(options, "options") }?;
    let model = load(&opts.backend_options()?)?;
    // SAFETY: `out` passed out_param; the caller provides a writable ps3rt_model* there.
    unsafe { write_out(out, Box::into_raw(ps3rt_model::new(model))) };
    Ok(())
}

/// Load the model package in directory `path` (a NUL-terminated path in the platform's encoding),
/// verifying every file (sizes, SHA-256, graph interfaces) before use. `options` may be NULL for the
/// defaults. On success `*model` receives a new handle to free with `ps3rt_model_destroy`.
///
/// Files of 64 KiB and more (the weights) are mapped, not read: do not rewrite them in place while
/// the model lives (write a new package directory instead); the environment variable
/// `PS3RT_PACKAGE_MMAP=0` reads them into memory.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `options` is NULL or an initialized options struct;
/// `model` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ps3rt_model_load(
    path: *const c_char,
    options: *const ps3rt_model_options,
    model: *mut *mut ps3rt_model,
) -> ps3rt_status {
    guard("ps3rt_model_load", || {
        // SAFETY: the caller guarantees path is NULL or NUL-terminated.
        let path = unsafe { c_str(path, "path") }?;
        let path = platform_path(path.to_bytes())?;
        finish_load(options, model, |o| Model::load_with(&path, o))
    })
}

#[cfg(unix)]
fn platform_path(bytes: &[u8]) -> Result<PathBuf, Failure> {
    use std::os::unix::ffi::OsStrExt;
    if bytes.is_empty() {
        return Err(Failure::invalid("path is empty"));
    }
    Ok(PathBuf::from(std::ffi::OsStr::from_bytes(bytes)))
}

#[cfg(not(unix))]
fn platform_path(bytes: &[u8]) -> Result<PathBuf, Failure> {
    let s = std::str::from_utf8(bytes).map_err(|_| Failure::invalid("path is not UTF-8"))?;
    if s.is_empty() {
        return Err(Failure::invalid("path is empty"));
    }
    Ok(PathBuf::from(s))
}

/// Load the tiny random-weight package compiled into the library (`ps3-tiny-4k`; for tests and
/// examples: its selections show the pipeline working, not a trained model's choice). `options` may
/// be NULL. Fails with `PS3RT_STATUS_UNSUPPORTED` in builds without the `embedded-model` feature.
///
/// # Safety
/// `options` is NULL or an initialized options struct; `model` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ps3rt_model_load_embedded(
    options: *const ps3rt_model_options,
    model: *mut *mut ps3rt_model,
) -> ps3rt_status {
    guard("ps3rt_model_load_embedded", || {
        #[cfg(feature = "embedded-model")]
        {
            finish_load(options, model, Model::embedded_with)
        }
        #[cfg(not(feature = "embedded-model"))]
        {
            let _ = (options, model);
            Err(Failure::new(
                ps3rt_status::Unsupported,
                "this build has no embedded model (cargo feature embedded-model)",
            ))
        }
    })
}

/// Describe `model`: on success `*info` points to a struct owned by the model, valid until
/// `ps3rt_model_destroy`.
///
/// # Safety
/// `model` is NULL or a live model handle; `info` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ps3rt_model_get_info(
    model: *const ps3rt_model,
    info: *mut *const ps3rt_model_info,
) -> ps3rt_status {
    guard("ps3rt_model_get_info", || {
        // SAFETY: the caller guarantees a live handle or NULL.
        let m = unsafe { handle(model, "model") }?;
        let info = out_param(info, "info")?;
        // SAFETY: checked out-parameter, writable per the caller's contract.
        unsafe { write_out(info, &raw const m.info) };
        Ok(())
    })
}

/// Free `model` (NULL is accepted and ignored). Encoders created from it keep their own reference
/// and stay usable; the memory of the compiled graphs is freed with the last of them. No other call
/// may use this handle concurrently or afterwards.
///
/// # Safety
/// `model` is NULL or a live handle from `ps3rt_model_load*` not used by any other thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ps3rt_model_destroy(model: *mut ps3rt_model) {
    let _ = guard("ps3rt_model_destroy", || {
        if model.is_null() {
            return Ok(());
        }
        // SAFETY: non-NULL; the caller guarantees a live handle (or readable memory of its size).
        unsafe { handle(model.cast_const(), "model") }?;
        // SAFETY: a live handle created by Box::into_raw in finish_load and not used elsewhere; the
        // magic is cleared first so a later use of the dangling pointer is more likely refused.
        let mut b = unsafe { Box::from_raw(model) };
        // SAFETY: a valid, aligned field of the box; volatile so the dead store is kept.
        unsafe { std::ptr::write_volatile(&raw mut b.magic, 0) };
        drop(b);
        Ok(())
    });
}
