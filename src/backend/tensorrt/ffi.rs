//! Safe wrappers over the C ABI of the TensorRT shim (`shim/p3trt.h`). Every `unsafe` block of the
//! TensorRT backend is in this file.
//!
//! Ownership mirrors the shim's lifetime rule (a handle outlives every handle made from it): an
//! [`Engine`], [`Stream`] and [`Buffer`] hold an `Arc` of their [`Lib`], a [`Stage`] holds `Arc`s of
//! its engine and stream and of every buffer bound to it, so no handle can be freed while another
//! still points to it, whatever order Rust drops them in.

use std::ffi::{CStr, CString, c_char, c_void};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Status codes of the shim (`p3trt_status`).
#[allow(dead_code)]
pub(crate) mod status {
    pub const OK: i32 = 0;
    pub const NO_LIBRARY: i32 = 1;
    pub const BAD_VERSION: i32 = 2;
    pub const NO_SYMBOL: i32 = 3;
    pub const NO_CUDA: i32 = 4;
    pub const NO_GPU: i32 = 5;
    pub const FAILED: i32 = 6;
    pub const INVALID: i32 = 7;
}

type LogFn = extern "C" fn(*mut c_void, i32, *const c_char);
type ProgressFn = extern "C" fn(*mut c_void, i32, *const c_char, *const c_char, i32, i32) -> i32;

#[repr(C)]
pub(crate) struct RawInfo {
    pub header_major: i32,
    pub header_minor: i32,
    pub header_patch: i32,
    pub header_build: i32,
    pub lib_major: i32,
    pub lib_minor: i32,
    pub lib_patch: i32,
    pub lib_build: i32,
    pub parser_version: i32,
    pub has_builder: i32,
    pub has_parser: i32,
    pub load_initializer: i32,
    pub cuda_runtime_version: i32,
    pub cuda_driver_version: i32,
    pub device_count: i32,
    pub device: i32,
    pub sm_major: i32,
    pub sm_minor: i32,
    pub integrated: i32,
    pub can_map_host: i32,
    pub fast_fp16: i32,
    pub total_mem: u64,
    pub gpu_name: [c_char; 256],
    pub nvinfer_path: [c_char; 512],
    pub parser_path: [c_char; 512],
    pub cudart_path: [c_char; 512],
    pub trt_error: [c_char; 512],
    pub cuda_error: [c_char; 512],
}

#[repr(C)]
struct OpenParams {
    nvinfer: *const c_char,
    parser: *const c_char,
    cudart: *const c_char,
    device: i32,
    probe_only: i32,
    log: Option<LogFn>,
    log_user: *mut c_void,
}

#[repr(C)]
struct RawInitializer {
    name: *const c_char,
    data: *const c_void,
    size: usize,
}

#[repr(C)]
struct RawShape {
    name: *const c_char,
    nb_dims: i32,
    dims: [i64; 8],
}

#[repr(C)]
struct BuildParams {
    onnx: *const c_void,
    onnx_size: usize,
    model_path: *const c_char,
    initializers: *const RawInitializer,
    initializer_count: usize,
    shapes: *const RawShape,
    shape_count: usize,
    fp16: i32,
    tf32: i32,
    optimization_level: i32,
    workspace_bytes: u64,
    timing_cache: *const c_void,
    timing_cache_size: usize,
    progress: Option<ProgressFn>,
    progress_user: *mut c_void,
}

#[repr(C)]
struct RawIo {
    name: *const c_char,
    is_input: i32,
    dtype: i32,
    nb_dims: i32,
    dims: [i64; 8],
    profile_dims: [i64; 8],
}

#[repr(C)]
struct RawLib {
    _private: [u8; 0],
}
#[repr(C)]
struct RawBlob {
    _private: [u8; 0],
}
#[repr(C)]
struct RawEngine {
    _private: [u8; 0],
}
#[repr(C)]
struct RawStream {
    _private: [u8; 0],
}
#[repr(C)]
struct RawBuffer {
    _private: [u8; 0],
}
#[repr(C)]
struct RawStage {
    _private: [u8; 0],
}

unsafe extern "C" {
    fn p3trt_open(
        params: *const OpenParams,
        info: *mut RawInfo,
        out: *mut *mut RawLib,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    fn p3trt_close(lib: *mut RawLib);
    fn p3trt_build(
        lib: *mut RawLib,
        params: *const BuildParams,
        engine: *mut *mut RawBlob,
        timing: *mut *mut RawBlob,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    fn p3trt_blob_data(blob: *const RawBlob) -> *const u8;
    fn p3trt_blob_size(blob: *const RawBlob) -> usize;
    fn p3trt_blob_free(blob: *mut RawBlob);
    fn p3trt_engine_load(
        lib: *mut RawLib,
        data: *const c_void,
        size: usize,
        out: *mut *mut RawEngine,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    fn p3trt_engine_free(engine: *mut RawEngine);
    fn p3trt_engine_io_count(engine: *const RawEngine) -> i32;
    fn p3trt_engine_io(engine: *const RawEngine, index: i32, out: *mut RawIo) -> i32;
    fn p3trt_stream_create(
        lib: *mut RawLib,
        out: *mut *mut RawStream,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    fn p3trt_stream_free(stream: *mut RawStream);
    fn p3trt_buffer_create(
        lib: *mut RawLib,
        bytes: usize,
        host_visible: i32,
        out: *mut *mut RawBuffer,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    fn p3trt_buffer_host(buffer: *mut RawBuffer) -> *mut c_void;
    fn p3trt_buffer_mapped(buffer: *const RawBuffer) -> i32;
    fn p3trt_buffer_free(buffer: *mut RawBuffer);
    fn p3trt_stage_create(
        engine: *mut RawEngine,
        stream: *mut RawStream,
        out: *mut *mut RawStage,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    fn p3trt_stage_bind(
        stage: *mut RawStage,
        tensor: *const c_char,
        buffer: *mut RawBuffer,
        transfer: i32,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    fn p3trt_stage_run(
        stage: *mut RawStage,
        cuda_graph: i32,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    fn p3trt_stage_free(stage: *mut RawStage);
}

/// A shim failure: its status code and message.
#[derive(Debug, Clone)]
pub(crate) struct ShimError {
    pub code: i32,
    pub message: String,
}

impl std::fmt::Display for ShimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

type ShimResult<T> = Result<T, ShimError>;

const ERR_LEN: usize = 2048;

/// Call `f` with an error buffer; a non-zero status becomes a [`ShimError`] with the buffer's text.
fn call(f: impl FnOnce(*mut c_char, usize) -> i32) -> ShimResult<()> {
    let mut buf = vec![0 as c_char; ERR_LEN];
    let code = f(buf.as_mut_ptr(), buf.len());
    if code == status::OK {
        return Ok(());
    }
    // SAFETY: the shim writes a NUL-terminated string of at most ERR_LEN bytes (or leaves the
    // zeroed buffer, itself NUL-terminated).
    let message = unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    Err(ShimError {
        code,
        message: if message.is_empty() {
            format!("TensorRT shim status {code}")
        } else {
            message
        },
    })
}

fn c_string(s: &str) -> CString {
    CString::new(s.replace('\0', " ")).unwrap_or_default()
}

fn c_path(p: &Path) -> CString {
    c_string(&p.to_string_lossy())
}

/// A fixed-size C string field as a Rust string.
pub(crate) fn field(chars: &[c_char]) -> String {
    let bytes: Vec<u8> = chars
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// TensorRT's log severities to the `log` crate (TensorRT's info is verbose: debug here).
extern "C" fn log_callback(_user: *mut c_void, severity: i32, message: *const c_char) {
    let _ = std::panic::catch_unwind(|| {
        if message.is_null() {
            return;
        }
        // SAFETY: the shim passes a NUL-terminated message valid for the duration of the call.
        let text = unsafe { CStr::from_ptr(message) }.to_string_lossy();
        let level = match severity {
            0 | 1 => log::Level::Error,
            2 => log::Level::Warn,
            3 => log::Level::Debug,
            _ => log::Level::Trace,
        };
        log::log!(target: "ps3rt::tensorrt", level, "TensorRT: {text}");
    });
}

/// Libraries to open (None: the shim's default search).
#[derive(Debug, Default, Clone)]
pub(crate) struct OpenPaths<'a> {
    pub nvinfer: Option<&'a Path>,
    pub parser: Option<&'a Path>,
    pub cudart: Option<&'a Path>,
}

/// Probe (probe_only) or open the libraries. Returns the info and, when opened, the lib.
pub(crate) fn open(
    paths: &OpenPaths<'_>,
    device: i32,
    probe_only: bool,
) -> (Box<RawInfo>, ShimResult<Option<Lib>>) {
    let nvinfer = paths.nvinfer.map(c_path);
    let parser = paths.parser.map(c_path);
    let cudart = paths.cudart.map(c_path);
    let params = OpenParams {
        nvinfer: nvinfer.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
        parser: parser.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
        cudart: cudart.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
        device,
        probe_only: i32::from(probe_only),
        log: Some(log_callback),
        log_user: std::ptr::null_mut(),
    };
    // SAFETY: RawInfo is plain integers and char arrays: all-zero is a valid value.
    let mut info: Box<RawInfo> = Box::new(unsafe { std::mem::zeroed() });
    let mut raw: *mut RawLib = std::ptr::null_mut();
    let result = call(|err, len| {
        // SAFETY: params and its strings live until the call returns; info and raw are writable.
        unsafe {
            p3trt_open(
                &params,
                &mut *info,
                if probe_only {
                    std::ptr::null_mut()
                } else {
                    &mut raw
                },
                err,
                len,
            )
        }
    });
    let lib = result.map(|()| {
        (!raw.is_null()).then(|| Lib {
            raw,
            lock: Mutex::new(()),
        })
    });
    (info, lib)
}

/// The opened libraries and TensorRT runtime.
pub(crate) struct Lib {
    raw: *mut RawLib,
    /// Serializes engine deserialization and builds (IRuntime and IBuilder are not thread-safe).
    lock: Mutex<()>,
}

// SAFETY: the shim's lib is used from any thread: every entry point makes the device current on the
// calling thread, and the calls that are not thread-safe (deserialize, build) are serialized by
// `lock` (builds also by the shim's own mutex).
unsafe impl Send for Lib {}
// SAFETY: see Send; shared use only goes through `lock` or through thread-safe shim calls.
unsafe impl Sync for Lib {}

impl Drop for Lib {
    fn drop(&mut self) {
        // SAFETY: raw came from p3trt_open and is freed once; every handle made from it holds an
        // Arc<Lib>, so none is alive here.
        unsafe { p3trt_close(self.raw) }
    }
}

/// An external initializer handed to the parser from memory.
pub(crate) struct Initializer<'a> {
    pub name: &'a str,
    pub data: &'a [u8],
}

/// What to build.
pub(crate) struct BuildRequest<'a> {
    pub onnx: &'a [u8],
    pub model_path: Option<&'a Path>,
    pub initializers: &'a [Initializer<'a>],
    pub shapes: &'a [(String, Vec<i64>)],
    pub fp16: bool,
    pub tf32: bool,
    pub optimization_level: i32,
    pub workspace_bytes: u64,
    pub timing_cache: Option<&'a [u8]>,
}

/// A build progress event from TensorRT (phase start / step / finish).
#[derive(Debug, Clone)]
pub(crate) enum RawProgress {
    Start {
        phase: String,
        parent: String,
        steps: i32,
    },
    Step {
        phase: String,
        step: i32,
    },
    Finish,
}

struct ProgressSink<'a> {
    f: Mutex<&'a mut (dyn FnMut(RawProgress) -> bool + Send)>,
}

extern "C" fn progress_callback(
    user: *mut c_void,
    event: i32,
    phase: *const c_char,
    parent: *const c_char,
    step: i32,
    steps: i32,
) -> i32 {
    let go_on = std::panic::catch_unwind(|| {
        let text = |p: *const c_char| {
            if p.is_null() {
                String::new()
            } else {
                // SAFETY: the shim passes NUL-terminated strings valid for the call.
                unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
            }
        };
        // SAFETY: user is the &ProgressSink passed by Lib::build, alive until the build returns,
        // and the shim only calls back during the build.
        let sink = unsafe { &*(user as *const ProgressSink<'_>) };
        let ev = match event {
            0 => RawProgress::Start {
                phase: text(phase),
                parent: text(parent),
                steps,
            },
            1 => RawProgress::Step {
                phase: text(phase),
                step,
            },
            _ => RawProgress::Finish,
        };
        match sink.f.lock() {
            Ok(mut f) => (*f)(ev),
            Err(_) => true,
        }
    });
    i32::from(!go_on.unwrap_or(true))
}

impl Lib {
    /// Build a serialized engine; returns (engine, timing cache).
    pub fn build(
        &self,
        req: &BuildRequest<'_>,
        progress: &mut (dyn FnMut(RawProgress) -> bool + Send),
    ) -> ShimResult<(Blob, Option<Blob>)> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let names: Vec<CString> = req.initializers.iter().map(|i| c_string(i.name)).collect();
        let inits: Vec<RawInitializer> = req
            .initializers
            .iter()
            .zip(&names)
            .map(|(i, n)| RawInitializer {
                name: n.as_ptr(),
                data: i.data.as_ptr().cast(),
                size: i.data.len(),
            })
            .collect();
        let shape_names: Vec<CString> = req.shapes.iter().map(|(n, _)| c_string(n)).collect();
        let mut shapes = Vec::with_capacity(req.shapes.len());
        for ((_, dims), name) in req.shapes.iter().zip(&shape_names) {
            if dims.len() > 8 {
                return Err(ShimError {
                    code: status::INVALID,
                    message: format!("{} dimensions (at most 8)", dims.len()),
                });
            }
            let mut d = [0i64; 8];
            d[..dims.len()].copy_from_slice(dims);
            shapes.push(RawShape {
                name: name.as_ptr(),
                nb_dims: dims.len() as i32,
                dims: d,
            });
        }
        let model_path = req.model_path.map(c_path);
        let sink = ProgressSink {
            f: Mutex::new(progress),
        };
        let params = BuildParams {
            onnx: req.onnx.as_ptr().cast(),
            onnx_size: req.onnx.len(),
            model_path: model_path.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            initializers: inits.as_ptr(),
            initializer_count: inits.len(),
            shapes: shapes.as_ptr(),
            shape_count: shapes.len(),
            fp16: i32::from(req.fp16),
            tf32: i32::from(req.tf32),
            optimization_level: req.optimization_level,
            workspace_bytes: req.workspace_bytes,
            timing_cache: req
                .timing_cache
                .map_or(std::ptr::null(), |t| t.as_ptr().cast()),
            timing_cache_size: req.timing_cache.map_or(0, <[u8]>::len),
            progress: Some(progress_callback),
            progress_user: (&raw const sink).cast_mut().cast(),
        };
        let mut engine: *mut RawBlob = std::ptr::null_mut();
        let mut timing: *mut RawBlob = std::ptr::null_mut();
        // SAFETY: every pointer in params (bytes, names, shapes, initializers, sink) outlives the
        // call; the initializers' bytes outlive the parser, which the shim frees before returning.
        call(|err, len| unsafe {
            p3trt_build(self.raw, &params, &mut engine, &mut timing, err, len)
        })?;
        let engine = Blob::from_raw(engine).ok_or_else(|| ShimError {
            code: status::FAILED,
            message: "the build returned no engine".into(),
        })?;
        Ok((engine, Blob::from_raw(timing)))
    }

    /// Deserialize an engine.
    pub fn load_engine(self: &Arc<Lib>, bytes: &[u8]) -> ShimResult<Engine> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut raw: *mut RawEngine = std::ptr::null_mut();
        // SAFETY: bytes is readable for its length during the call; raw is writable.
        call(|err, len| unsafe {
            p3trt_engine_load(
                self.raw,
                bytes.as_ptr().cast(),
                bytes.len(),
                &mut raw,
                err,
                len,
            )
        })?;
        Ok(Engine {
            raw,
            _lib: self.clone(),
        })
    }

    /// A CUDA stream.
    pub fn stream(self: &Arc<Lib>) -> ShimResult<Stream> {
        let mut raw: *mut RawStream = std::ptr::null_mut();
        // SAFETY: raw is writable; the lib is alive.
        call(|err, len| unsafe { p3trt_stream_create(self.raw, &mut raw, err, len) })?;
        Ok(Stream {
            raw,
            _lib: self.clone(),
        })
    }

    /// Memory for `floats` f32 values. With `host_visible` (the pipeline reads or writes it) also
    /// its host view.
    pub fn buffer(
        self: &Arc<Lib>,
        floats: usize,
        host_visible: bool,
    ) -> ShimResult<(Arc<Buffer>, Option<Host>)> {
        let bytes = floats
            .checked_mul(size_of::<f32>())
            .filter(|&b| b > 0)
            .ok_or_else(|| ShimError {
                code: status::INVALID,
                message: format!("buffer of {floats} floats"),
            })?;
        let mut raw: *mut RawBuffer = std::ptr::null_mut();
        // SAFETY: raw is writable; the lib is alive.
        call(|err, len| unsafe {
            p3trt_buffer_create(self.raw, bytes, i32::from(host_visible), &mut raw, err, len)
        })?;
        // SAFETY: raw is a live buffer.
        let mapped = unsafe { p3trt_buffer_mapped(raw) } != 0;
        let buffer = Arc::new(Buffer {
            raw,
            mapped,
            _lib: self.clone(),
        });
        // SAFETY: raw is a live buffer.
        let host = unsafe { p3trt_buffer_host(raw) }.cast::<f32>();
        let view = (!host.is_null()).then(|| Host {
            ptr: host,
            len: floats,
            _buffer: buffer.clone(),
        });
        Ok((buffer, view))
    }
}

/// A serialized engine or timing cache owned by TensorRT (IHostMemory).
pub(crate) struct Blob {
    raw: *mut RawBlob,
}

impl Blob {
    fn from_raw(raw: *mut RawBlob) -> Option<Blob> {
        (!raw.is_null()).then_some(Blob { raw })
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: raw is a live blob; data/size describe TensorRT's buffer, alive until the blob is
        // freed, which needs &mut self (Drop).
        unsafe {
            let data = p3trt_blob_data(self.raw);
            let size = p3trt_blob_size(self.raw);
            if data.is_null() || size == 0 {
                &[]
            } else {
                std::slice::from_raw_parts(data, size)
            }
        }
    }
}

impl Drop for Blob {
    fn drop(&mut self) {
        // SAFETY: raw came from p3trt_build and is freed once.
        unsafe { p3trt_blob_free(self.raw) }
    }
}

// SAFETY: a blob is plain memory owned by TensorRT's IHostMemory; nothing ties it to a thread.
unsafe impl Send for Blob {}

/// An engine's input or output tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IoTensor {
    pub name: String,
    pub is_input: bool,
    /// nvinfer1::DataType (0 = kFLOAT).
    pub dtype: i32,
    pub dims: Vec<i64>,
    pub profile_dims: Vec<i64>,
}

/// A deserialized engine (ICudaEngine).
pub(crate) struct Engine {
    raw: *mut RawEngine,
    _lib: Arc<Lib>,
}

// SAFETY: ICudaEngine may be shared by threads: the shim serializes createExecutionContext and the
// IO queries are reads of immutable engine metadata.
unsafe impl Send for Engine {}
// SAFETY: see Send.
unsafe impl Sync for Engine {}

impl Drop for Engine {
    fn drop(&mut self) {
        // SAFETY: raw came from p3trt_engine_load and is freed once; every stage made from it
        // holds an Arc<Engine>, so none is alive here.
        unsafe { p3trt_engine_free(self.raw) }
    }
}

impl Engine {
    /// The engine's inputs and outputs.
    pub fn io(&self) -> Vec<IoTensor> {
        // SAFETY: raw is a live engine.
        let n = unsafe { p3trt_engine_io_count(self.raw) };
        (0..n)
            .filter_map(|i| {
                // SAFETY: RawIo is plain data; all-zero is valid.
                let mut io: RawIo = unsafe { std::mem::zeroed() };
                // SAFETY: i < count; io is writable.
                if unsafe { p3trt_engine_io(self.raw, i, &mut io) } != status::OK
                    || io.name.is_null()
                {
                    return None;
                }
                let nb = io.nb_dims.clamp(0, 8) as usize;
                Some(IoTensor {
                    // SAFETY: the name is owned by the engine, NUL-terminated, alive with it.
                    name: unsafe { CStr::from_ptr(io.name) }
                        .to_string_lossy()
                        .into_owned(),
                    is_input: io.is_input != 0,
                    dtype: io.dtype,
                    dims: io.dims[..nb].to_vec(),
                    profile_dims: io.profile_dims[..nb].to_vec(),
                })
            })
            .collect()
    }
}

/// A CUDA stream.
pub(crate) struct Stream {
    raw: *mut RawStream,
    _lib: Arc<Lib>,
}

// SAFETY: a CUDA stream may be used from any thread (one at a time: the session is not Sync).
unsafe impl Send for Stream {}
// SAFETY: shared references only reach the raw pointer through Stage::create, which the shim
// handles on the calling thread; no Stream method mutates through &self.
unsafe impl Sync for Stream {}

impl Drop for Stream {
    fn drop(&mut self) {
        // SAFETY: raw came from p3trt_stream_create and is freed once; stages on it hold an Arc.
        unsafe { p3trt_stream_free(self.raw) }
    }
}

/// Memory for one tensor (device memory, or mapped host memory on an integrated GPU). Shared by the
/// stages it is bound to; the host side is reached only through its single [`Host`] view.
pub(crate) struct Buffer {
    raw: *mut RawBuffer,
    mapped: bool,
    _lib: Arc<Lib>,
}

// SAFETY: CUDA allocations are not tied to a thread, and a Buffer itself gives no access to the memory.
unsafe impl Send for Buffer {}
// SAFETY: as for Send: &Buffer only exposes `mapped`.
unsafe impl Sync for Buffer {}

impl Drop for Buffer {
    fn drop(&mut self) {
        // SAFETY: raw came from p3trt_buffer_create and is freed once, after every stage bound to
        // it and its host view (they hold Arcs of it).
        unsafe { p3trt_buffer_free(self.raw) }
    }
}

impl Buffer {
    /// The GPU reads and writes the host memory directly (integrated GPU, no copies).
    pub fn mapped(&self) -> bool {
        self.mapped
    }
}

/// The host side of a host-visible buffer: the one place its memory is read or written from Rust.
pub(crate) struct Host {
    ptr: *mut f32,
    len: usize,
    _buffer: Arc<Buffer>,
}

// SAFETY: pinned host memory is not tied to a thread; the view is unique (not Clone).
unsafe impl Send for Host {}

impl Host {
    /// The values.
    pub fn as_slice(&self) -> &[f32] {
        // SAFETY: ptr is a pinned, page-aligned allocation of len f32 owned by the buffer this view
        // keeps alive; the GPU touches it only inside Stage::run, and the session that owns both
        // this view and the stage needs &mut self to run, so no run overlaps this borrow.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// The values, writable.
    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        // SAFETY: as in as_slice; &mut self makes this the only view.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

/// How a bound buffer moves between host and device around a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transfer {
    /// Stays on the device (e.g. the KV cache).
    None = 0,
    /// Host to device before the run.
    Upload = 1,
    /// Device to host after the run.
    Download = 2,
}

/// One engine's execution context on a stream, with its tensors bound.
pub(crate) struct Stage {
    raw: *mut RawStage,
    _engine: Arc<Engine>,
    _stream: Arc<Stream>,
    _buffers: Vec<Arc<Buffer>>,
}

// SAFETY: an execution context may move between threads; it is used by one at a time (&mut).
unsafe impl Send for Stage {}

impl Drop for Stage {
    fn drop(&mut self) {
        // SAFETY: raw came from p3trt_stage_create and is freed once, before the Arcs it points
        // into (fields drop after this body).
        unsafe { p3trt_stage_free(self.raw) }
    }
}

impl Stage {
    /// A new execution context of `engine` on `stream`.
    pub fn create(engine: &Arc<Engine>, stream: &Arc<Stream>) -> ShimResult<Stage> {
        let mut raw: *mut RawStage = std::ptr::null_mut();
        // SAFETY: engine and stream are live; raw is writable.
        call(|err, len| unsafe { p3trt_stage_create(engine.raw, stream.raw, &mut raw, err, len) })?;
        Ok(Stage {
            raw,
            _engine: engine.clone(),
            _stream: stream.clone(),
            _buffers: Vec::new(),
        })
    }

    /// Bind `tensor` to `buffer`.
    pub fn bind(
        &mut self,
        tensor: &str,
        buffer: &Arc<Buffer>,
        transfer: Transfer,
    ) -> ShimResult<()> {
        let name = c_string(tensor);
        let raw_buffer = buffer.raw;
        // SAFETY: stage and buffer are live; the stage keeps an Arc of the buffer from here on.
        call(|err, len| unsafe {
            p3trt_stage_bind(
                self.raw,
                name.as_ptr(),
                raw_buffer,
                transfer as i32,
                err,
                len,
            )
        })?;
        self._buffers.push(buffer.clone());
        Ok(())
    }

    /// Upload, run, download, synchronize.
    pub fn run(&mut self, cuda_graph: bool) -> ShimResult<()> {
        // SAFETY: the stage and everything bound to it are alive (held by self); the caller holds
        // no host view of the bound buffers across this call (it needs &mut of the session).
        call(|err, len| unsafe { p3trt_stage_run(self.raw, i32::from(cuda_graph), err, len) })
    }
}
