//! Safe wrappers over ONNX Runtime's C API, opened at run time. Every `unsafe` block of the ONNX
//! Runtime backend is in this file.
//!
//! The library is loaded with `dlopen` (libloading) and its function table is taken from
//! `OrtGetApiBase()->GetApi(API_VERSION)`; the table's layout comes from `ort-sys` (raw bindings of
//! `onnxruntime_c_api.h`, no linking). ONNX Runtime only appends to that table, so a newer library
//! serves an older version's table; an older one returns null, reported as an error.
//!
//! Ownership: a [`Graph`] and a [`Tensor`] hold an `Arc` of their [`Runtime`], so the library, the
//! environment and the CPU memory description outlive every session and value made from them,
//! whatever order Rust drops them in. A [`Tensor`] owns the memory its `OrtValue` points into (a
//! `Vec<f32>` that is never resized), so ONNX Runtime reads inputs from, and writes outputs into,
//! buffers the pipeline fills and reads directly: a run allocates nothing on the Rust side.

use std::ffi::{CStr, CString, c_char, c_void};
use std::path::{Path, PathBuf};
use std::ptr;
use std::sync::Arc;

use ort_sys::{
    GraphOptimizationLevel, ONNXTensorElementDataType, OrtAllocatorType, OrtApi, OrtApiBase,
    OrtEnv, OrtLoggingLevel, OrtMemType, OrtMemoryInfo, OrtPrepackedWeightsContainer, OrtSession,
    OrtSessionOptions, OrtStatusPtr, OrtValue,
};

use crate::error::{Error, Result};

/// The C API version requested: 18 (ONNX Runtime 1.18) adds `AddExternalInitializersFromMemory`,
/// the newest function this backend calls.
pub(crate) const API_VERSION: u32 = 18;

/// The most inputs or outputs a graph run passes (the high-res graph has three of each kind at
/// most); fixed so a run's pointer arrays live on the stack.
pub(crate) const MAX_VALUES: usize = 4;

fn load_error(message: impl Into<String>) -> Error {
    crate::backend::stage_error(super::NAME, "load", message.into())
}

/// A loaded ONNX Runtime: the library, its function table, one environment and the description of
/// CPU memory that every tensor uses.
pub(crate) struct Runtime {
    api: *const OrtApi,
    env: *mut OrtEnv,
    cpu: *mut OrtMemoryInfo,
    version: String,
    path: PathBuf,
    /// Never unloaded: ONNX Runtime keeps process-wide state (its logging manager, thread-local
    /// caches of its thread pools) that `dlclose` would pull out from under threads and exit
    /// handlers. Opening the same library again only bumps the loader's reference count.
    _lib: std::mem::ManuallyDrop<libloading::Library>,
}

// SAFETY: ONNX Runtime's environment and memory info are immutable after creation and documented as
// usable from any thread; the function table is a static table inside the library, which stays
// loaded as long as this value lives.
unsafe impl Send for Runtime {}
// SAFETY: as above; no method takes `&mut self`, and the C API's calls made through `&Runtime` are
// thread-safe (ONNX Runtime documents `OrtEnv` and `OrtMemoryInfo` as shareable).
unsafe impl Sync for Runtime {}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("version", &self.version)
            .field("path", &self.path)
            .finish()
    }
}

impl Runtime {
    /// Open the library at `path` (a file path, or a bare name the dynamic loader searches for).
    pub fn open(path: &Path) -> Result<Arc<Runtime>> {
        // SAFETY: loading a shared library runs its initializers. The caller names an ONNX Runtime
        // library; its initializers only set up ONNX Runtime's own state.
        let lib = unsafe { libloading::Library::new(path) }
            .map_err(|e| load_error(format!("cannot open {}: {e}", path.display())))?;
        // SAFETY: OrtGetApiBase is declared in onnxruntime_c_api.h as
        // `const OrtApiBase* OrtGetApiBase(void)`, which is this type.
        let get_base: libloading::Symbol<'_, unsafe extern "C" fn() -> *const OrtApiBase> =
            unsafe { lib.get(b"OrtGetApiBase\0") }.map_err(|e| {
                load_error(format!(
                    "{} is not ONNX Runtime (no OrtGetApiBase): {e}",
                    path.display()
                ))
            })?;
        // SAFETY: the symbol has the declared signature (above) and takes no arguments.
        let base = unsafe { get_base() };
        if base.is_null() {
            return Err(load_error(format!(
                "{}: OrtGetApiBase returned null",
                path.display()
            )));
        }
        // SAFETY: base points to the library's static OrtApiBase (checked non-null); its
        // GetVersionString returns a static NUL-terminated string.
        let version = unsafe {
            let s = ((*base).GetVersionString)();
            if s.is_null() {
                String::from("unknown")
            } else {
                CStr::from_ptr(s).to_string_lossy().into_owned()
            }
        };
        // SAFETY: as above; GetApi returns the static function table for that version, or null.
        let api = unsafe { ((*base).GetApi)(API_VERSION) };
        if api.is_null() {
            return Err(load_error(format!(
                "{} is ONNX Runtime {version}, which lacks C API version {API_VERSION}: ONNX Runtime 1.18 or newer is needed",
                path.display()
            )));
        }
        let mut rt = Runtime {
            api,
            env: ptr::null_mut(),
            cpu: ptr::null_mut(),
            version,
            path: path.to_path_buf(),
            _lib: std::mem::ManuallyDrop::new(lib),
        };
        let logid = c"ps3rt";
        // SAFETY: api is a valid table (non-null, from GetApi); CreateEnv writes an OrtEnv pointer
        // into env on success (kept in rt.env), which Drop releases.
        let mut env = ptr::null_mut();
        let status = unsafe {
            (rt.api().CreateEnv)(
                OrtLoggingLevel::ORT_LOGGING_LEVEL_ERROR,
                logid.as_ptr(),
                &mut env,
            )
        };
        rt.check(status).map_err(load_error)?;
        rt.env = env;
        // SAFETY: as above; CreateCpuMemoryInfo writes an OrtMemoryInfo pointer, released by Drop.
        let mut cpu = ptr::null_mut();
        let status = unsafe {
            (rt.api().CreateCpuMemoryInfo)(
                OrtAllocatorType::OrtDeviceAllocator,
                OrtMemType::OrtMemTypeDefault,
                &mut cpu,
            )
        };
        rt.check(status).map_err(load_error)?;
        rt.cpu = cpu;
        Ok(Arc::new(rt))
    }

    /// The library's version string ("1.32.0").
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Where the library was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn api(&self) -> &OrtApi {
        // SAFETY: api is non-null (checked in open) and points into the library, which stays
        // loaded while self lives.
        unsafe { &*self.api }
    }

    /// Ok for a null status; otherwise its message (the status is released).
    fn check(&self, status: OrtStatusPtr) -> std::result::Result<(), String> {
        if status.0.is_null() {
            return Ok(());
        }
        // SAFETY: status is a non-null OrtStatus returned by this library; GetErrorMessage returns
        // a string owned by the status, copied before ReleaseStatus frees it.
        unsafe {
            let msg = (self.api().GetErrorMessage)(status.0);
            let text = if msg.is_null() {
                String::from("unknown ONNX Runtime error")
            } else {
                CStr::from_ptr(msg).to_string_lossy().into_owned()
            };
            (self.api().ReleaseStatus)(status.0);
            Err(text)
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // SAFETY: both pointers were created by this library (or are null) and nothing else uses
        // them: every Graph and Tensor holds an Arc of this Runtime, so they are gone already. The
        // library stays loaded (see `_lib`).
        unsafe {
            if !self.cpu.is_null() {
                (self.api().ReleaseMemoryInfo)(self.cpu);
            }
            if !self.env.is_null() {
                (self.api().ReleaseEnv)(self.env);
            }
        }
    }
}

/// How a graph's session is set up.
pub(crate) struct GraphSettings<'a> {
    /// Intra-op threads.
    pub threads: usize,
    /// Whether idle pool threads spin waiting for work (ONNX Runtime's default) or sleep.
    pub spin: bool,
    /// The graph's external-data files, by the name its initializers give as their location.
    pub external: &'a [(&'a str, &'a [u8])],
    /// Initializers handed to the session as shared values (`AddInitializer`), by name: those
    /// whose pre-packed forms the sessions of one [`PrepackedWeights`] share.
    pub shared: &'a [(CString, Initializer)],
    /// The container the session writes its pre-packed shared initializers into and reads other
    /// sessions' from.
    pub prepacked: Option<&'a PrepackedWeights>,
}

/// ONNX Runtime's cache of pre-packed weights shared between sessions (an
/// `OrtPrepackedWeightsContainer`): a session created with it stores the pre-packed form of each
/// shared initializer there, and a later session whose kernel pre-packs an equal weight (the same
/// op type and packed bytes) uses that copy instead of its own.
pub(crate) struct PrepackedWeights {
    rt: Arc<Runtime>,
    ptr: *mut OrtPrepackedWeightsContainer,
}

// SAFETY: ONNX Runtime serializes every use of the container with its own mutex (session creation
// locks it while it reads and writes the cache); it is released only in Drop.
unsafe impl Send for PrepackedWeights {}
// SAFETY: as above; no method reads or writes through `&self` outside ONNX Runtime's calls.
unsafe impl Sync for PrepackedWeights {}

impl PrepackedWeights {
    /// An empty container.
    pub fn new(rt: &Arc<Runtime>) -> std::result::Result<PrepackedWeights, String> {
        let mut ptr = ptr::null_mut();
        // SAFETY: CreatePrepackedWeightsContainer writes a new container, released in Drop.
        rt.check(unsafe { (rt.api().CreatePrepackedWeightsContainer)(&mut ptr) })?;
        Ok(PrepackedWeights {
            rt: Arc::clone(rt),
            ptr,
        })
    }
}

impl Drop for PrepackedWeights {
    fn drop(&mut self) {
        // SAFETY: created by CreatePrepackedWeightsContainer and released once, here. Sessions
        // created with it hold an `Arc` of it (through `Graph::load`'s `keep`), so none is alive.
        unsafe { (self.rt.api().ReleasePrepackedWeightsContainer)(self.ptr) };
    }
}

/// A tensor over bytes someone else owns (a package's mapped weights), wrapped as an `OrtValue` to
/// hand to sessions as a shared initializer. ONNX Runtime only reads it.
pub(crate) struct Initializer {
    rt: Arc<Runtime>,
    value: *mut OrtValue,
    /// Whatever owns the bytes the value points into.
    _owner: Arc<dyn Send + Sync>,
}

// SAFETY: the OrtValue describes read-only memory kept alive by `_owner`; ONNX Runtime reads it
// from any thread, and it is released only in Drop.
unsafe impl Send for Initializer {}
// SAFETY: as above.
unsafe impl Sync for Initializer {}

impl Initializer {
    /// The tensor of ONNX element type `data_type` and shape `dims` whose bytes are `bytes`, kept
    /// valid by `owner` (which must own them and never change them).
    pub fn over(
        rt: &Arc<Runtime>,
        bytes: &[u8],
        data_type: i32,
        dims: &[i64],
        owner: Arc<dyn Send + Sync>,
    ) -> std::result::Result<Initializer, String> {
        let elem = element_type(data_type)
            .ok_or_else(|| format!("element type {data_type} is not one ONNX Runtime takes"))?;
        let mut value = ptr::null_mut();
        // SAFETY: the memory info and the shape array are valid for the call; `bytes` stays
        // valid and unchanged for the value's life (`owner`, kept with it, owns it). ONNX
        // Runtime takes a mutable pointer but never writes initializers; it checks that the
        // length fits the shape and type.
        rt.check(unsafe {
            (rt.api().CreateTensorWithDataAsOrtValue)(
                rt.cpu,
                bytes.as_ptr().cast_mut().cast::<c_void>(),
                bytes.len(),
                dims.as_ptr(),
                dims.len(),
                elem,
                &mut value,
            )
        })?;
        Ok(Initializer {
            rt: Arc::clone(rt),
            value,
            _owner: owner,
        })
    }
}

impl Drop for Initializer {
    fn drop(&mut self) {
        // SAFETY: created by CreateTensorWithDataAsOrtValue and released once, here; sessions that
        // were given it hold an `Arc` of it through `Graph::load`'s `keep`, so none is alive.
        unsafe { (self.rt.api().ReleaseValue)(self.value) };
    }
}

/// ONNX Runtime's element type for ONNX `TensorProto.DataType` `data_type` (the same numbering),
/// for the plain numeric types a package's weights may have.
fn element_type(data_type: i32) -> Option<ONNXTensorElementDataType> {
    use ONNXTensorElementDataType::*;
    Some(match data_type {
        1 => ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT,
        2 => ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8,
        3 => ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8,
        4 => ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT16,
        5 => ONNX_TENSOR_ELEMENT_DATA_TYPE_INT16,
        6 => ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32,
        7 => ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64,
        9 => ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL,
        10 => ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16,
        11 => ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE,
        12 => ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT32,
        13 => ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT64,
        16 => ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16,
        _ => return None,
    })
}

/// One graph loaded into an ONNX Runtime session, with its input and output names.
pub(crate) struct Graph {
    rt: Arc<Runtime>,
    session: *mut OrtSession,
    inputs: Vec<CString>,
    outputs: Vec<CString>,
    /// Keeps the external data ONNX Runtime may still point into (the package's weights).
    _external: Arc<dyn Send + Sync>,
}

// SAFETY: ONNX Runtime documents `OrtSession::Run` as safe to call concurrently from several
// threads; the session is released only in Drop (exclusive access).
unsafe impl Send for Graph {}
// SAFETY: as above; `run` only reads the session pointer and the name strings.
unsafe impl Sync for Graph {}

impl Graph {
    /// A session for the ONNX model `onnx` (the serialized protobuf, its large initializers in
    /// `settings.external`), with the given input and output names, in the order runs pass them.
    /// `keep` holds whatever owns the external data's memory, for as long as the session lives.
    pub fn load(
        rt: &Arc<Runtime>,
        onnx: &[u8],
        inputs: &[&str],
        outputs: &[&str],
        settings: &GraphSettings<'_>,
        keep: Arc<dyn Send + Sync>,
    ) -> std::result::Result<Graph, String> {
        if inputs.len() > MAX_VALUES || outputs.len() > MAX_VALUES {
            return Err(format!(
                "{} inputs and {} outputs: at most {MAX_VALUES} each",
                inputs.len(),
                outputs.len()
            ));
        }
        let cstrings = |names: &[&str]| -> std::result::Result<Vec<CString>, String> {
            names
                .iter()
                .map(|n| CString::new(*n).map_err(|_| format!("tensor name {n:?} contains NUL")))
                .collect()
        };
        let (input_names, output_names) = (cstrings(inputs)?, cstrings(outputs)?);
        let options = SessionOptions::new(rt)?;
        options.configure(settings)?;
        let api = rt.api();
        let mut session = ptr::null_mut();
        // SAFETY: env and options are valid (created above); onnx is a byte slice valid for this
        // call (ONNX Runtime copies what it keeps); the external buffers and shared initializers
        // registered in options, and the pre-packed weights container, are kept alive by `keep`
        // as long as the session exists.
        rt.check(unsafe {
            match settings.prepacked {
                // The container outlives the session: the caller's `keep` holds it.
                Some(prepacked) => (api.CreateSessionFromArrayWithPrepackedWeightsContainer)(
                    rt.env,
                    onnx.as_ptr().cast::<c_void>(),
                    onnx.len(),
                    options.ptr,
                    prepacked.ptr,
                    &mut session,
                ),
                None => (api.CreateSessionFromArray)(
                    rt.env,
                    onnx.as_ptr().cast::<c_void>(),
                    onnx.len(),
                    options.ptr,
                    &mut session,
                ),
            }
        })?;
        Ok(Graph {
            rt: Arc::clone(rt),
            session,
            inputs: input_names,
            outputs: output_names,
            _external: keep,
        })
    }

    /// Run the graph: `inputs` and `outputs` in the order of the names given to [`Graph::load`],
    /// each the exact shape the graph has for it. ONNX Runtime writes the outputs into the
    /// tensors' own memory.
    pub fn run(
        &self,
        inputs: &[&Tensor],
        outputs: &mut [&mut Tensor],
    ) -> std::result::Result<(), String> {
        if inputs.len() != self.inputs.len() || outputs.len() != self.outputs.len() {
            return Err(format!(
                "{} inputs and {} outputs given, the graph takes {} and {}",
                inputs.len(),
                outputs.len(),
                self.inputs.len(),
                self.outputs.len()
            ));
        }
        let mut in_names = [ptr::null::<c_char>(); MAX_VALUES];
        let mut in_values = [ptr::null::<OrtValue>(); MAX_VALUES];
        for (i, (name, t)) in self.inputs.iter().zip(inputs).enumerate() {
            in_names[i] = name.as_ptr();
            in_values[i] = t.value;
        }
        let mut out_names = [ptr::null::<c_char>(); MAX_VALUES];
        let mut out_values = [ptr::null_mut::<OrtValue>(); MAX_VALUES];
        for (i, (name, t)) in self.outputs.iter().zip(outputs.iter()).enumerate() {
            out_names[i] = name.as_ptr();
            out_values[i] = t.value;
        }
        // SAFETY: the session is valid; the name arrays hold NUL-terminated strings owned by self
        // and the value arrays valid OrtValues owned by the tensors, which the borrows keep alive
        // for the call (inputs only read; outputs written in place: they are non-null, so ONNX
        // Runtime uses them instead of allocating); both counts are within the arrays.
        self.rt.check(unsafe {
            (self.rt.api().Run)(
                self.session,
                ptr::null(),
                in_names.as_ptr(),
                in_values.as_ptr(),
                inputs.len(),
                out_names.as_ptr(),
                outputs.len(),
                out_values.as_mut_ptr(),
            )
        })
    }
}

impl Drop for Graph {
    fn drop(&mut self) {
        // SAFETY: the session was created by CreateSessionFromArray and is released once, here;
        // the runtime (Arc) is still alive.
        unsafe { (self.rt.api().ReleaseSession)(self.session) };
    }
}

/// Session options, released when dropped.
struct SessionOptions<'a> {
    rt: &'a Runtime,
    ptr: *mut OrtSessionOptions,
}

impl<'a> SessionOptions<'a> {
    fn new(rt: &'a Runtime) -> std::result::Result<Self, String> {
        let mut ptr = ptr::null_mut();
        // SAFETY: CreateSessionOptions writes a new options object, released in Drop.
        rt.check(unsafe { (rt.api().CreateSessionOptions)(&mut ptr) })?;
        Ok(SessionOptions { rt, ptr })
    }

    fn configure(&self, s: &GraphSettings<'_>) -> std::result::Result<(), String> {
        let (rt, api) = (self.rt, self.rt.api());
        let threads = i32::try_from(s.threads.max(1)).unwrap_or(i32::MAX);
        let spin = if s.spin { c"1" } else { c"0" };
        let mut names = Vec::with_capacity(s.external.len());
        for (name, _) in s.external {
            names.push(
                CString::new(*name)
                    .map_err(|_| format!("external data name {name:?} contains NUL"))?,
            );
        }
        let name_ptrs: Vec<*const c_char> = names.iter().map(|n| n.as_ptr()).collect();
        // ONNX Runtime declares the buffers mutable but only reads them.
        let buffers: Vec<*mut c_char> = s
            .external
            .iter()
            .map(|(_, b)| b.as_ptr().cast_mut().cast::<c_char>())
            .collect();
        let lengths: Vec<usize> = s.external.iter().map(|(_, b)| b.len()).collect();
        // SAFETY: self.ptr is a valid options object; the strings are NUL-terminated and live for
        // each call; the three external arrays have s.external.len() entries each, pointing into
        // buffers the caller keeps alive for the session's lifetime (Graph::load's `keep`); each
        // shared initializer's OrtValue is valid and kept alive the same way (ONNX Runtime
        // requires it to outlive the options and the sessions).
        unsafe {
            rt.check((api.SetIntraOpNumThreads)(self.ptr, threads))?;
            rt.check((api.SetInterOpNumThreads)(self.ptr, 1))?;
            rt.check((api.SetSessionGraphOptimizationLevel)(
                self.ptr,
                GraphOptimizationLevel::ORT_ENABLE_ALL,
            ))?;
            rt.check((api.AddSessionConfigEntry)(
                self.ptr,
                c"session.intra_op.allow_spinning".as_ptr(),
                spin.as_ptr(),
            ))?;
            for (name, init) in s.shared {
                rt.check((api.AddInitializer)(self.ptr, name.as_ptr(), init.value))?;
            }
            if !s.external.is_empty() {
                rt.check((api.AddExternalInitializersFromMemory)(
                    self.ptr,
                    name_ptrs.as_ptr(),
                    buffers.as_ptr(),
                    lengths.as_ptr(),
                    s.external.len(),
                ))?;
            }
        }
        Ok(())
    }
}

impl Drop for SessionOptions<'_> {
    fn drop(&mut self) {
        // SAFETY: created by CreateSessionOptions, released once; sessions made with it keep their
        // own copy of the settings.
        unsafe { (self.rt.api().ReleaseSessionOptions)(self.ptr) };
    }
}

/// An f32 tensor in host memory this process owns, wrapped as an `OrtValue` once: the pipeline
/// writes and reads the slice, ONNX Runtime reads or writes the same memory during runs.
pub(crate) struct Tensor {
    rt: Arc<Runtime>,
    value: *mut OrtValue,
    /// The values; never resized, so the pointer the OrtValue holds stays valid.
    data: Vec<f32>,
}

// SAFETY: the OrtValue only describes memory owned by `data` and is used by one thread at a time
// (runs borrow the tensor; `&mut` for outputs).
unsafe impl Send for Tensor {}

impl Tensor {
    /// A zeroed tensor of `shape`.
    pub fn zeros(rt: &Arc<Runtime>, shape: &[usize]) -> std::result::Result<Tensor, String> {
        let len = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| format!("tensor shape {shape:?} overflows"))?;
        let dims: Vec<i64> = shape
            .iter()
            .map(|&d| i64::try_from(d).map_err(|_| format!("dimension {d} is too large")))
            .collect::<std::result::Result<_, _>>()?;
        let mut data = vec![0f32; len];
        let mut value = ptr::null_mut();
        // SAFETY: data holds len f32s (len * 4 bytes) and is never resized or moved out while the
        // value exists (the value is released in Drop, before data is freed); dims describes
        // exactly len elements; the memory info is the runtime's CPU description.
        rt.check(unsafe {
            (rt.api().CreateTensorWithDataAsOrtValue)(
                rt.cpu,
                data.as_mut_ptr().cast::<c_void>(),
                len * std::mem::size_of::<f32>(),
                dims.as_ptr(),
                dims.len(),
                ONNXTensorElementDataType::ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT,
                &mut value,
            )
        })?;
        Ok(Tensor {
            rt: Arc::clone(rt),
            value,
            data,
        })
    }

    /// The values.
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }

    /// The values, to fill.
    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        &mut self.data
    }
}

impl Drop for Tensor {
    fn drop(&mut self) {
        // SAFETY: created by CreateTensorWithDataAsOrtValue, released once, before `data` (which it
        // points into) is freed; the value does not own that memory.
        unsafe { (self.rt.api().ReleaseValue)(self.value) };
    }
}
