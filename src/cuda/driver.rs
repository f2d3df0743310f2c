//! The CUDA driver API calls GPU preprocessing makes, through `libcuda.so.1` opened at run time.
//!
//! Every `unsafe` block here calls a driver function through a pointer taken from the library by its
//! documented name (cuda.h, CUDA 11.0+ ABI: the `_v2` entry points where cuda.h maps the plain name
//! to one) with the argument types cuda.h declares for it.

use std::ffi::{CStr, CString, c_char, c_int, c_uint, c_void};
use std::sync::{Arc, OnceLock};

use super::error;
use crate::Result;

type CuResult = c_int;
type CuDevice = c_int;
type CuContext = *mut c_void;
type CuModule = *mut c_void;
type CuFunction = *mut c_void;
type CuStream = *mut c_void;
type CuDevicePtr = u64;

const CU_DEVICE_ATTRIBUTE_INTEGRATED: c_int = 18;
const CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR: c_int = 75;
const CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR: c_int = 76;
const CU_STREAM_NON_BLOCKING: c_uint = 1;
const CU_MEMHOSTALLOC_PORTABLE: c_uint = 1;
const CU_MEMHOSTALLOC_DEVICEMAP: c_uint = 2;
const CU_MEMHOSTALLOC_WRITECOMBINED: c_uint = 4;
const CU_MEMHOSTREGISTER_READ_ONLY: c_uint = 8;
const CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED: CuResult = 712;
const CU_DEVICE_ATTRIBUTE_READ_ONLY_HOST_REGISTER_SUPPORTED: c_int = 113;

/// The driver's entry points, resolved once per process.
struct Api {
    init: unsafe extern "C" fn(c_uint) -> CuResult,
    driver_get_version: unsafe extern "C" fn(*mut c_int) -> CuResult,
    device_get_count: unsafe extern "C" fn(*mut c_int) -> CuResult,
    device_get: unsafe extern "C" fn(*mut CuDevice, c_int) -> CuResult,
    device_get_name: unsafe extern "C" fn(*mut c_char, c_int, CuDevice) -> CuResult,
    device_get_attribute: unsafe extern "C" fn(*mut c_int, c_int, CuDevice) -> CuResult,
    primary_ctx_retain: unsafe extern "C" fn(*mut CuContext, CuDevice) -> CuResult,
    primary_ctx_release: unsafe extern "C" fn(CuDevice) -> CuResult,
    ctx_set_current: unsafe extern "C" fn(CuContext) -> CuResult,
    module_load_data: unsafe extern "C" fn(*mut CuModule, *const c_void) -> CuResult,
    module_unload: unsafe extern "C" fn(CuModule) -> CuResult,
    module_get_function: unsafe extern "C" fn(*mut CuFunction, CuModule, *const c_char) -> CuResult,
    mem_alloc: unsafe extern "C" fn(*mut CuDevicePtr, usize) -> CuResult,
    mem_host_alloc: unsafe extern "C" fn(*mut *mut c_void, usize, c_uint) -> CuResult,
    mem_free_host: unsafe extern "C" fn(*mut c_void) -> CuResult,
    mem_host_register: unsafe extern "C" fn(*mut c_void, usize, c_uint) -> CuResult,
    mem_host_unregister: unsafe extern "C" fn(*mut c_void) -> CuResult,
    mem_host_get_device_pointer:
        unsafe extern "C" fn(*mut CuDevicePtr, *mut c_void, c_uint) -> CuResult,
    mem_free: unsafe extern "C" fn(CuDevicePtr) -> CuResult,
    memcpy_htod_async:
        unsafe extern "C" fn(CuDevicePtr, *const c_void, usize, CuStream) -> CuResult,
    memcpy_dtoh_async: unsafe extern "C" fn(*mut c_void, CuDevicePtr, usize, CuStream) -> CuResult,
    stream_create: unsafe extern "C" fn(*mut CuStream, c_uint) -> CuResult,
    stream_destroy: unsafe extern "C" fn(CuStream) -> CuResult,
    stream_synchronize: unsafe extern "C" fn(CuStream) -> CuResult,
    #[allow(clippy::type_complexity)]
    launch_kernel: unsafe extern "C" fn(
        CuFunction,
        c_uint,
        c_uint,
        c_uint,
        c_uint,
        c_uint,
        c_uint,
        c_uint,
        CuStream,
        *mut *mut c_void,
        *mut *mut c_void,
    ) -> CuResult,
    get_error_string: unsafe extern "C" fn(CuResult, *mut *const c_char) -> CuResult,
    /// Keeps the function pointers above valid (never unloaded).
    _lib: libloading::Library,
}

/// The driver library, opened and initialized once per process (`Err`: why it cannot be used).
fn api() -> Result<&'static Api> {
    static API: OnceLock<std::result::Result<Api, String>> = OnceLock::new();
    API.get_or_init(open)
        .as_ref()
        .map_err(|m| error("CUDA driver", m))
}

fn open() -> std::result::Result<Api, String> {
    let name = std::env::var_os(super::DRIVER_ENV).unwrap_or_else(|| "libcuda.so.1".into());
    // SAFETY: loading the CUDA driver runs its initializers, which only set up the driver's state.
    let lib = unsafe { libloading::Library::new(&name) }.map_err(|e| {
        format!(
            "cannot open {} (an NVIDIA driver with a GPU is needed; {} names another file): {e}",
            name.to_string_lossy(),
            super::DRIVER_ENV
        )
    })?;
    macro_rules! sym {
        ($name:literal) => {
            // SAFETY: the symbol is the driver function of that name; the field it is stored in has
            // the type cuda.h declares for it.
            *unsafe { lib.get(concat!($name, "\0").as_bytes()) }
                .map_err(|e| format!("{} has no {}: {e}", name.to_string_lossy(), $name))?
        };
    }
    let api = Api {
        init: sym!("cuInit"),
        driver_get_version: sym!("cuDriverGetVersion"),
        device_get_count: sym!("cuDeviceGetCount"),
        device_get: sym!("cuDeviceGet"),
        device_get_name: sym!("cuDeviceGetName"),
        device_get_attribute: sym!("cuDeviceGetAttribute"),
        primary_ctx_retain: sym!("cuDevicePrimaryCtxRetain"),
        primary_ctx_release: sym!("cuDevicePrimaryCtxRelease_v2"),
        ctx_set_current: sym!("cuCtxSetCurrent"),
        module_load_data: sym!("cuModuleLoadData"),
        module_unload: sym!("cuModuleUnload"),
        module_get_function: sym!("cuModuleGetFunction"),
        mem_alloc: sym!("cuMemAlloc_v2"),
        mem_host_alloc: sym!("cuMemHostAlloc"),
        mem_free_host: sym!("cuMemFreeHost"),
        mem_host_register: sym!("cuMemHostRegister_v2"),
        mem_host_unregister: sym!("cuMemHostUnregister"),
        mem_host_get_device_pointer: sym!("cuMemHostGetDevicePointer_v2"),
        mem_free: sym!("cuMemFree_v2"),
        memcpy_htod_async: sym!("cuMemcpyHtoDAsync_v2"),
        memcpy_dtoh_async: sym!("cuMemcpyDtoHAsync_v2"),
        stream_create: sym!("cuStreamCreate"),
        stream_destroy: sym!("cuStreamDestroy_v2"),
        stream_synchronize: sym!("cuStreamSynchronize"),
        launch_kernel: sym!("cuLaunchKernel"),
        get_error_string: sym!("cuGetErrorString"),
        _lib: lib,
    };
    // SAFETY: cuInit(0) is the documented first call; flags must be 0.
    let r = unsafe { (api.init)(0) };
    if r != 0 {
        return Err(format!("cuInit: {}", api.describe(r)));
    }
    Ok(api)
}

impl Api {
    /// The driver's name and description of a result code.
    fn describe(&self, r: CuResult) -> String {
        let mut text: *const c_char = std::ptr::null();
        // SAFETY: cuGetErrorString writes a pointer to a static string (or leaves it null for an
        // unknown code).
        let known = unsafe { (self.get_error_string)(r, &mut text) } == 0 && !text.is_null();
        if known {
            // SAFETY: non-null, NUL-terminated static string owned by the driver.
            let s = unsafe { CStr::from_ptr(text) }.to_string_lossy();
            format!("{s} (CUresult {r})")
        } else {
            format!("CUresult {r}")
        }
    }

    fn check(&self, call: &str, r: CuResult) -> Result<()> {
        if r == 0 {
            Ok(())
        } else {
            Err(error(call, self.describe(r)))
        }
    }
}

/// What a CUDA device is, read without creating a context on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeviceInfo {
    /// The device's name, e.g. "NVIDIA H100 80GB HBM3" or "Orin".
    pub name: String,
    /// Compute capability (major, minor).
    pub capability: (i32, i32),
    /// Whether the GPU shares the host's memory (Jetson).
    pub integrated: bool,
    /// The driver's CUDA version, e.g. 13000.
    pub driver_version: i32,
    /// Whether host memory can be page-locked read-only (memory the process may not write).
    read_only_register: bool,
}

impl DeviceInfo {
    /// Device `ordinal` and what it is (errors: no driver, no such device).
    fn query(api: &Api, ordinal: i32) -> Result<(CuDevice, DeviceInfo)> {
        let mut count = 0;
        // SAFETY: out-pointer to a local.
        api.check("cuDeviceGetCount", unsafe {
            (api.device_get_count)(&mut count)
        })?;
        if ordinal < 0 || ordinal >= count {
            return Err(error(
                "cuDeviceGet",
                format!("CUDA device {ordinal} requested, {count} present"),
            ));
        }
        let mut device = 0;
        // SAFETY: out-pointer to a local; ordinal checked against the count above.
        api.check("cuDeviceGet", unsafe {
            (api.device_get)(&mut device, ordinal)
        })?;
        let mut name = [0 as c_char; 256];
        // SAFETY: the driver writes at most `len` bytes, NUL-terminated.
        api.check("cuDeviceGetName", unsafe {
            (api.device_get_name)(name.as_mut_ptr(), name.len() as c_int, device)
        })?;
        // SAFETY: NUL-terminated by cuDeviceGetName within the array.
        let name = unsafe { CStr::from_ptr(name.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        let attribute = |attr: c_int, what: &str| -> Result<i32> {
            let mut v = 0;
            // SAFETY: out-pointer to a local, a valid device handle.
            api.check(what, unsafe {
                (api.device_get_attribute)(&mut v, attr, device)
            })?;
            Ok(v)
        };
        let capability = (
            attribute(
                CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
                "cuDeviceGetAttribute(compute capability)",
            )?,
            attribute(
                CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
                "cuDeviceGetAttribute(compute capability)",
            )?,
        );
        let integrated = attribute(
            CU_DEVICE_ATTRIBUTE_INTEGRATED,
            "cuDeviceGetAttribute(integrated)",
        )? != 0;
        // Older drivers do not know the attribute: taken as unsupported.
        let read_only_register = attribute(
            CU_DEVICE_ATTRIBUTE_READ_ONLY_HOST_REGISTER_SUPPORTED,
            "cuDeviceGetAttribute(read-only host register)",
        )
        .is_ok_and(|v| v != 0);
        let mut driver_version = 0;
        // SAFETY: out-pointer to a local.
        api.check("cuDriverGetVersion", unsafe {
            (api.driver_get_version)(&mut driver_version)
        })?;
        let info = DeviceInfo {
            name,
            capability,
            integrated,
            driver_version,
            read_only_register,
        };
        Ok((device, info))
    }
}

/// Device `ordinal`: what it is, without creating a context (errors: no driver, no such device).
pub(crate) fn device_info(ordinal: i32) -> Result<DeviceInfo> {
    DeviceInfo::query(api()?, ordinal).map(|(_, info)| info)
}

/// A device's primary context, retained for as long as this value lives.
pub(crate) struct Context {
    api: &'static Api,
    device: CuDevice,
    ctx: CuContext,
    /// What the device is.
    pub info: DeviceInfo,
}

// SAFETY: a CUDA context handle may be used from any thread (each call makes it current first);
// the primary context is reference-counted by the driver.
unsafe impl Send for Context {}
// SAFETY: as above; no method mutates Rust-side state.
unsafe impl Sync for Context {}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("device", &self.device)
            .field("info", &self.info)
            .finish()
    }
}

impl Context {
    /// Retain the primary context of device `ordinal`.
    pub fn new(ordinal: i32) -> Result<Arc<Context>> {
        let api = api()?;
        let (device, info) = DeviceInfo::query(api, ordinal)?;
        let mut ctx = std::ptr::null_mut();
        // SAFETY: out-pointer to a local, a valid device handle; released in Drop.
        api.check("cuDevicePrimaryCtxRetain", unsafe {
            (api.primary_ctx_retain)(&mut ctx, device)
        })?;
        Ok(Arc::new(Context {
            api,
            device,
            ctx,
            info,
        }))
    }

    /// The device address through which kernels read host byte `ptr`, if it lies in page-locked
    /// memory mapped into the device (`cuMemHostAlloc`, `cuMemHostRegister`, or their CUDA runtime
    /// counterparts); `None` for pageable memory. The context must be current ([`Context::bind`]).
    /// Allocates nothing, also when the answer is `None`.
    pub fn host_device_pointer(&self, ptr: *const u8) -> Option<u64> {
        let mut device = 0;
        // SAFETY: out-pointer to a local; the driver only looks `ptr` up in its tables of
        // page-locked ranges (it never dereferences it) and fails for memory it does not know.
        let r = unsafe {
            (self.api.mem_host_get_device_pointer)(&mut device, ptr.cast_mut().cast(), 0)
        };
        (r == 0).then_some(device)
    }

    /// Make this context current on the calling thread (every call that allocates, copies or
    /// launches does this first: encoders may move between threads).
    pub fn bind(&self) -> Result<()> {
        // SAFETY: a context retained by this value.
        self.api.check("cuCtxSetCurrent", unsafe {
            (self.api.ctx_set_current)(self.ctx)
        })
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: releases the retain made in `new`; every module, buffer and stream holds an Arc
        // of this context, so none outlives it.
        unsafe { (self.api.primary_ctx_release)(self.device) };
    }
}

/// Device memory, freed on drop.
pub(crate) struct DeviceBuffer {
    ctx: Arc<Context>,
    ptr: CuDevicePtr,
    bytes: usize,
}

impl std::fmt::Debug for DeviceBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceBuffer")
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl DeviceBuffer {
    /// Allocate `bytes` (at least 1) of device memory.
    pub fn new(ctx: &Arc<Context>, bytes: usize) -> Result<DeviceBuffer> {
        ctx.bind()?;
        let mut ptr = 0;
        // SAFETY: out-pointer to a local; the context is current.
        ctx.api
            .check(&format!("cuMemAlloc({bytes} bytes)"), unsafe {
                (ctx.api.mem_alloc)(&mut ptr, bytes.max(1))
            })?;
        Ok(DeviceBuffer {
            ctx: ctx.clone(),
            ptr,
            bytes,
        })
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.bytes
    }

    /// The device address, for kernel arguments.
    pub fn address(&self) -> u64 {
        self.ptr
    }

    /// Copy `src` into this buffer from byte `offset` on, ordered on `stream`. A copy from pageable
    /// memory has returned once `src` may be reused (the driver stages it).
    pub fn upload_at<T: Copy>(&mut self, stream: &Stream, offset: usize, src: &[T]) -> Result<()> {
        let bytes = std::mem::size_of_val(src);
        if offset.checked_add(bytes).is_none_or(|end| end > self.bytes) {
            return Err(error(
                "cuMemcpyHtoDAsync",
                format!(
                    "{bytes} bytes at {offset} into a {}-byte buffer",
                    self.bytes
                ),
            ));
        }
        // SAFETY: `src` is valid for `bytes` bytes and the buffer holds `offset + bytes`; a copy
        // from pageable host memory returns after the source has been read.
        self.ctx.api.check("cuMemcpyHtoDAsync", unsafe {
            (self.ctx.api.memcpy_htod_async)(
                self.ptr + offset as u64,
                src.as_ptr().cast(),
                bytes,
                stream.raw,
            )
        })
    }

    /// Copy `src` into this buffer from byte `offset` on straight from its own memory, page-locked
    /// for the copy and unlocked after it: the DMA reads the caller's pages, no staging copy.
    /// Returns once the copy is complete (the stream is synchronized).
    pub fn upload_registered(&mut self, stream: &Stream, offset: usize, src: &[u8]) -> Result<()> {
        let bytes = src.len();
        if bytes == 0 {
            return Ok(());
        }
        if offset.checked_add(bytes).is_none_or(|end| end > self.bytes) {
            return Err(error(
                "cuMemcpyHtoDAsync",
                format!(
                    "{bytes} bytes at {offset} into a {}-byte buffer",
                    self.bytes
                ),
            ));
        }
        let flags = if self.ctx.info.read_only_register {
            CU_MEMHOSTREGISTER_READ_ONLY
        } else {
            0
        };
        let ptr = src.as_ptr().cast_mut().cast::<c_void>();
        // SAFETY: `src` is valid for `bytes` bytes for this whole call (borrowed); the driver only
        // locks its pages (and never writes them: the copy below reads them).
        let r = unsafe { (self.ctx.api.mem_host_register)(ptr, bytes, flags) };
        // Memory the caller registered itself (cudaHostRegister) is copied as it is. (Memory from
        // cuMemHostAlloc makes this call fail with "invalid argument": callers check
        // `Context::host_device_pointer` first and copy such memory with `upload_pinned`.)
        let locked_here = r != CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED;
        if locked_here && r != 0 {
            // (Formatted only on failure: this runs every frame.)
            let call = format!("cuMemHostRegister({bytes} bytes)");
            return Err(error(&call, self.ctx.api.describe(r)));
        }
        // SAFETY: source registered above and valid for `bytes`; the buffer holds offset + bytes.
        let copied = self.ctx.api.check("cuMemcpyHtoDAsync", unsafe {
            (self.ctx.api.memcpy_htod_async)(self.ptr + offset as u64, ptr, bytes, stream.raw)
        });
        let synced = copied.and_then(|()| stream.synchronize());
        // SAFETY: registered above; the copy that read it is complete (or failed) once the stream
        // is synchronized, so nothing reads the range after it is unlocked. On a failed
        // synchronize the stream is in error and runs nothing more.
        if !locked_here {
            return synced;
        }
        let unlocked = self.ctx.api.check("cuMemHostUnregister", unsafe {
            (self.ctx.api.mem_host_unregister)(ptr)
        });
        synced.and(unlocked)
    }

    /// Copy `src`, which lies in page-locked memory ([`Context::host_device_pointer`] is `Some` for
    /// its first and last byte), into this buffer from byte `offset` on: one DMA, no locking and no
    /// staging. Returns once the copy is complete (the stream is synchronized).
    pub fn upload_pinned(&mut self, stream: &Stream, offset: usize, src: &[u8]) -> Result<()> {
        let bytes = src.len();
        if offset.checked_add(bytes).is_none_or(|end| end > self.bytes) {
            return Err(error(
                "cuMemcpyHtoDAsync",
                format!(
                    "{bytes} bytes at {offset} into a {}-byte buffer",
                    self.bytes
                ),
            ));
        }
        if bytes == 0 {
            return Ok(());
        }
        // SAFETY: `src` is valid for `bytes` bytes for this whole call (borrowed), the buffer holds
        // offset + bytes (checked above), and the stream is synchronized before returning, so the
        // DMA never reads `src` after the borrow ends.
        let copied = self.ctx.api.check("cuMemcpyHtoDAsync", unsafe {
            (self.ctx.api.memcpy_htod_async)(
                self.ptr + offset as u64,
                src.as_ptr().cast(),
                bytes,
                stream.raw,
            )
        });
        let synced = stream.synchronize();
        copied.and(synced)
    }

    /// Queue a copy of `src`'s bytes `range` to this buffer at the same offset, on `stream`; the
    /// copy runs while the CPU goes on (page-locked source). `src` must not be written, moved or
    /// dropped before the stream is synchronized.
    pub fn upload_from_host(
        &mut self,
        stream: &Stream,
        src: &HostBuffer,
        range: std::ops::Range<usize>,
    ) -> Result<()> {
        if range.start > range.end || range.end > src.bytes || range.end > self.bytes {
            return Err(error(
                "cuMemcpyHtoDAsync",
                format!(
                    "bytes {range:?} of a {}-byte staging buffer into a {}-byte buffer",
                    src.bytes, self.bytes
                ),
            ));
        }
        // SAFETY: both ranges lie inside their buffers (checked above); the source is page-locked
        // memory the caller keeps unchanged until it synchronizes `stream`.
        self.ctx.api.check("cuMemcpyHtoDAsync", unsafe {
            (self.ctx.api.memcpy_htod_async)(
                self.ptr + range.start as u64,
                src.ptr.add(range.start).cast(),
                range.end - range.start,
                stream.raw,
            )
        })
    }

    /// Copy the start of this buffer into `dst`, ordered on `stream`; `dst` holds the values once
    /// [`Stream::synchronize`] returns (the caller synchronizes before reading or moving `dst`).
    pub fn download(&self, stream: &Stream, dst: &mut [f32]) -> Result<()> {
        let bytes = std::mem::size_of_val(dst);
        if bytes > self.bytes {
            return Err(error(
                "cuMemcpyDtoHAsync",
                format!("{bytes} bytes out of a {}-byte buffer", self.bytes),
            ));
        }
        // SAFETY: `dst` is valid for `bytes` bytes and borrowed mutably by the caller until it
        // synchronizes the stream (a copy into pageable memory completes before the call returns
        // in practice; the synchronize makes it so in every case).
        self.ctx.api.check("cuMemcpyDtoHAsync", unsafe {
            (self.ctx.api.memcpy_dtoh_async)(dst.as_mut_ptr().cast(), self.ptr, bytes, stream.raw)
        })
    }
}

impl Drop for DeviceBuffer {
    fn drop(&mut self) {
        if self.ctx.bind().is_ok() {
            // SAFETY: allocated by cuMemAlloc in `new`, freed once.
            unsafe { (self.ctx.api.mem_free)(self.ptr) };
        }
    }
}

/// Page-locked host memory the device reads directly (mapped into its address space) and copies
/// from at full bus speed; write-combined, so the CPU writes it with streaming stores and should
/// not read it back. Freed on drop.
pub(crate) struct HostBuffer {
    ctx: Arc<Context>,
    ptr: *mut u8,
    device: CuDevicePtr,
    bytes: usize,
}

// SAFETY: the buffer is plain memory owned by this value; access goes through &/&mut self.
unsafe impl Send for HostBuffer {}

impl std::fmt::Debug for HostBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostBuffer")
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl HostBuffer {
    /// Allocate `bytes` (at least 1) of mapped, write-combined, page-locked host memory.
    pub fn new(ctx: &Arc<Context>, bytes: usize) -> Result<HostBuffer> {
        Self::alloc(
            ctx,
            bytes,
            CU_MEMHOSTALLOC_DEVICEMAP | CU_MEMHOSTALLOC_WRITECOMBINED,
        )
    }

    /// Allocate `bytes` (at least 1) of mapped, page-locked host memory that every context may copy
    /// from (portable) and the CPU reads at full speed (not write-combined), zeroed: memory for
    /// frames ([`crate::PinnedBuffer`]).
    pub fn pinned(ctx: &Arc<Context>, bytes: usize) -> Result<HostBuffer> {
        let mut buffer = Self::alloc(
            ctx,
            bytes,
            CU_MEMHOSTALLOC_PORTABLE | CU_MEMHOSTALLOC_DEVICEMAP,
        )?;
        buffer.as_mut_slice().fill(0);
        Ok(buffer)
    }

    fn alloc(ctx: &Arc<Context>, bytes: usize, flags: c_uint) -> Result<HostBuffer> {
        ctx.bind()?;
        let mut ptr: *mut c_void = std::ptr::null_mut();
        // SAFETY: out-pointer to a local; the context is current.
        ctx.api
            .check(&format!("cuMemHostAlloc({bytes} bytes)"), unsafe {
                (ctx.api.mem_host_alloc)(&mut ptr, bytes.max(1), flags)
            })?;
        let mut device = 0;
        // SAFETY: `ptr` was allocated with DEVICEMAP just above; out-pointer to a local.
        let r = unsafe { (ctx.api.mem_host_get_device_pointer)(&mut device, ptr, 0) };
        if let Err(e) = ctx.api.check("cuMemHostGetDevicePointer", r) {
            // SAFETY: allocated above and not yet owned by a HostBuffer.
            unsafe { (ctx.api.mem_free_host)(ptr) };
            return Err(e);
        }
        Ok(HostBuffer {
            ctx: ctx.clone(),
            ptr: ptr.cast(),
            device,
            bytes,
        })
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.bytes
    }

    /// The memory, for the CPU to read (slowly where it is write-combined: [`HostBuffer::new`]).
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` points to `bytes` initialized bytes (see `as_mut_slice`) owned by this value
        // for its whole life, borrowed through `self`.
        unsafe { std::slice::from_raw_parts(self.ptr, self.bytes) }
    }

    /// The memory, for the CPU to fill.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` points to `bytes` bytes owned by this value for its whole life, borrowed
        // mutably through `self`. (Freshly allocated bytes are whatever cuMemHostAlloc left, which
        // is initialized memory for u8.)
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.bytes) }
    }

    /// The device address of byte 0 (kernels read the memory through it).
    pub fn device_address(&self) -> u64 {
        self.device
    }
}

impl Drop for HostBuffer {
    fn drop(&mut self) {
        if self.ctx.bind().is_ok() {
            // SAFETY: allocated by cuMemHostAlloc in `new`, freed once; the owner synchronizes its
            // stream before dropping (no copy or kernel still reads it).
            unsafe { (self.ctx.api.mem_free_host)(self.ptr.cast()) };
        }
    }
}

/// Memory the caller owns, page-locked until this value is dropped: copies from the device into it
/// are direct DMAs at the bus's speed instead of going through the driver's staging buffers.
pub(crate) struct HostRegistration {
    ctx: Arc<Context>,
    ptr: *mut c_void,
    bytes: usize,
}

// SAFETY: the value holds only the address it registered (never dereferenced here) and the
// context, which is Send + Sync; unregistering from another thread binds the context first.
unsafe impl Send for HostRegistration {}

impl std::fmt::Debug for HostRegistration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostRegistration")
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl HostRegistration {
    /// Page-lock `bytes` bytes from `ptr` for `ctx`'s copies. An error (already registered in part,
    /// no more lockable memory, a driver that does not support it) leaves the memory as it was.
    ///
    /// # Safety
    ///
    /// `ptr..ptr + bytes` must be memory of this process that stays allocated, at the same
    /// address, until the returned value is dropped: the driver keeps the physical pages it locked
    /// now, so a copy after the memory was freed and the address reused would land in those old
    /// pages instead of the new ones.
    pub unsafe fn new(ctx: &Arc<Context>, ptr: *mut u8, bytes: usize) -> Result<HostRegistration> {
        ctx.bind()?;
        let ptr = ptr.cast::<c_void>();
        // SAFETY: the range is this process's memory (the caller's contract); the driver only locks
        // its pages.
        ctx.api
            .check(&format!("cuMemHostRegister({bytes} bytes)"), unsafe {
                (ctx.api.mem_host_register)(ptr, bytes.max(1), 0)
            })?;
        Ok(HostRegistration {
            ctx: ctx.clone(),
            ptr,
            bytes,
        })
    }

    /// Whether `buffer` lies inside the registered range.
    pub fn covers(&self, buffer: &[f32]) -> bool {
        let (start, end) = (self.ptr as usize, self.ptr as usize + self.bytes);
        let at = buffer.as_ptr() as usize;
        start <= at && at + std::mem::size_of_val(buffer) <= end
    }
}

impl Drop for HostRegistration {
    fn drop(&mut self) {
        if self.ctx.bind().is_ok() {
            // SAFETY: registered in `new`, unregistered once; its owner synchronizes its stream
            // before dropping it (no copy into the range is still queued).
            unsafe { (self.ctx.api.mem_host_unregister)(self.ptr) };
        }
    }
}

/// A CUDA stream of its own (non-blocking with respect to the legacy default stream).
pub(crate) struct Stream {
    ctx: Arc<Context>,
    raw: CuStream,
}

// SAFETY: a stream handle may be used from any thread with its context current.
unsafe impl Send for Stream {}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Stream")
    }
}

impl Stream {
    /// Create a stream on `ctx`.
    pub fn new(ctx: &Arc<Context>) -> Result<Stream> {
        ctx.bind()?;
        let mut raw = std::ptr::null_mut();
        // SAFETY: out-pointer to a local; the context is current.
        ctx.api.check("cuStreamCreate", unsafe {
            (ctx.api.stream_create)(&mut raw, CU_STREAM_NON_BLOCKING)
        })?;
        Ok(Stream {
            ctx: ctx.clone(),
            raw,
        })
    }

    /// Wait for everything queued on this stream; errors of earlier launches surface here.
    pub fn synchronize(&self) -> Result<()> {
        // SAFETY: a stream created in `new`.
        self.ctx.api.check("cuStreamSynchronize", unsafe {
            (self.ctx.api.stream_synchronize)(self.raw)
        })
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        if self.ctx.bind().is_ok() {
            // SAFETY: created in `new`, destroyed once.
            unsafe { (self.ctx.api.stream_destroy)(self.raw) };
        }
    }
}

/// A loaded module (PTX JIT-compiled by the driver for this device).
pub(crate) struct Module {
    ctx: Arc<Context>,
    raw: CuModule,
}

// SAFETY: a module handle may be used from any thread with its context current.
unsafe impl Send for Module {}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Module")
    }
}

impl Module {
    /// Load a CUBIN image (NVRTC's output for this device's architecture).
    pub fn load(ctx: &Arc<Context>, image: &[u8]) -> Result<Module> {
        ctx.bind()?;
        let mut raw = std::ptr::null_mut();
        // SAFETY: `image` is a complete CUBIN (an ELF image whose header gives its own size) that
        // lives through the call; out-pointer to a local.
        ctx.api.check(
            "cuModuleLoadData (an NVRTC of a newer CUDA major version than the driver makes code \
             the driver cannot load: point PS3RT_NVRTC_LIB at the driver's CUDA version)",
            unsafe { (ctx.api.module_load_data)(&mut raw, image.as_ptr().cast()) },
        )?;
        Ok(Module {
            ctx: ctx.clone(),
            raw,
        })
    }

    /// A `extern "C" __global__` function of the module.
    pub fn function(&self, name: &str) -> Result<Function> {
        let cname = CString::new(name).map_err(|_| error("cuModuleGetFunction", name))?;
        let mut raw = std::ptr::null_mut();
        // SAFETY: a loaded module, a NUL-terminated name, out-pointer to a local.
        self.ctx
            .api
            .check(&format!("cuModuleGetFunction({name})"), unsafe {
                (self.ctx.api.module_get_function)(&mut raw, self.raw, cname.as_ptr())
            })?;
        Ok(Function {
            ctx: self.ctx.clone(),
            raw,
            name: name.to_string(),
        })
    }
}

impl Drop for Module {
    fn drop(&mut self) {
        if self.ctx.bind().is_ok() {
            // SAFETY: loaded in `load`, unloaded once; functions taken from it are dropped with the
            // owner of both (GpuResampler holds the module next to its functions).
            unsafe { (self.ctx.api.module_unload)(self.raw) };
        }
    }
}

/// A kernel of a [`Module`].
pub(crate) struct Function {
    ctx: Arc<Context>,
    raw: CuFunction,
    name: String,
}

// SAFETY: a function handle may be launched from any thread with its context current.
unsafe impl Send for Function {}

impl std::fmt::Debug for Function {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Function")
            .field("name", &self.name)
            .finish()
    }
}

impl Function {
    /// Queue the kernel on `stream` over `grid` blocks of `block` threads.
    ///
    /// # Safety
    /// `args` must point to one value per kernel parameter, in order, each of the exact type and
    /// layout the kernel declares, and every device address among them must be valid for what the
    /// kernel reads and writes at that grid.
    pub unsafe fn launch(
        &self,
        stream: &Stream,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        args: &mut [*mut c_void],
    ) -> Result<()> {
        // SAFETY: the caller's contract above; the function and stream belong to this context.
        let r = unsafe {
            (self.ctx.api.launch_kernel)(
                self.raw,
                grid.0,
                grid.1,
                grid.2,
                block.0,
                block.1,
                block.2,
                0,
                stream.raw,
                args.as_mut_ptr(),
                std::ptr::null_mut(),
            )
        };
        if r == 0 {
            return Ok(());
        }
        // (Formatted only on failure: launches run every frame.)
        let call = format!("cuLaunchKernel({})", self.name);
        Err(error(&call, self.ctx.api.describe(r)))
    }
}
