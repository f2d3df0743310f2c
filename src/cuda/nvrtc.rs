//! CUDA C -> PTX with NVRTC, opened at run time.
//!
//! Every `unsafe` block calls an NVRTC function through a pointer taken from the library by its
//! documented name (nvrtc.h, stable since CUDA 11) with the argument types nvrtc.h declares.

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::sync::OnceLock;

use super::error;
use crate::Result;

type NvrtcResult = c_int;
type Program = *mut c_void;

struct Api {
    version: unsafe extern "C" fn(*mut c_int, *mut c_int) -> NvrtcResult,
    create_program: unsafe extern "C" fn(
        *mut Program,
        *const c_char,
        *const c_char,
        c_int,
        *const *const c_char,
        *const *const c_char,
    ) -> NvrtcResult,
    compile_program: unsafe extern "C" fn(Program, c_int, *const *const c_char) -> NvrtcResult,
    get_program_log_size: unsafe extern "C" fn(Program, *mut usize) -> NvrtcResult,
    get_program_log: unsafe extern "C" fn(Program, *mut c_char) -> NvrtcResult,
    get_ptx_size: unsafe extern "C" fn(Program, *mut usize) -> NvrtcResult,
    get_ptx: unsafe extern "C" fn(Program, *mut c_char) -> NvrtcResult,
    get_cubin_size: unsafe extern "C" fn(Program, *mut usize) -> NvrtcResult,
    get_cubin: unsafe extern "C" fn(Program, *mut c_char) -> NvrtcResult,
    destroy_program: unsafe extern "C" fn(*mut Program) -> NvrtcResult,
    get_error_string: unsafe extern "C" fn(NvrtcResult) -> *const c_char,
    /// The file that was opened, for messages.
    path: String,
    /// Keeps the function pointers above valid (never unloaded).
    _lib: libloading::Library,
}

/// Where NVRTC is looked for when `PS3RT_NVRTC_LIB` is not set.
const CANDIDATES: [&str; 8] = [
    "libnvrtc.so.13",
    "libnvrtc.so.12",
    "libnvrtc.so.11.2",
    "libnvrtc.so",
    "/usr/local/cuda/lib64/libnvrtc.so.13",
    "/usr/local/cuda/lib64/libnvrtc.so.12",
    "/usr/local/cuda/lib64/libnvrtc.so.11.2",
    "/usr/local/cuda/lib64/libnvrtc.so",
];

/// What NVRTC hands back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Output {
    /// Machine code for exactly the device's architecture (`sm_XY`): loaded without a JIT step, and
    /// by any driver of the same CUDA major version (CUDA's minor version compatibility), which
    /// PTX from a newer NVRTC than the driver is not.
    Cubin,
    /// PTX text for `compute_XY` (what tests inspect).
    #[cfg_attr(not(test), allow(dead_code))]
    Ptx,
}

fn api() -> Result<&'static Api> {
    static API: OnceLock<std::result::Result<Api, String>> = OnceLock::new();
    API.get_or_init(open)
        .as_ref()
        .map_err(|m| error("NVRTC", m))
}

fn open() -> std::result::Result<Api, String> {
    let names: Vec<String> = match std::env::var(super::NVRTC_ENV) {
        Ok(p) => vec![p],
        Err(_) => CANDIDATES.iter().map(|s| s.to_string()).collect(),
    };
    let mut failures = Vec::new();
    for name in &names {
        // SAFETY: loading NVRTC runs its initializers, which only set up its own state.
        match unsafe { libloading::Library::new(name) } {
            Ok(lib) => return resolve(lib, name.clone()),
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    Err(format!(
        "no NVRTC library (the CUDA toolkit's runtime compiler; {} names one): {}",
        super::NVRTC_ENV,
        failures.join("; ")
    ))
}

fn resolve(lib: libloading::Library, path: String) -> std::result::Result<Api, String> {
    macro_rules! sym {
        ($name:literal) => {
            // SAFETY: the symbol is the NVRTC function of that name; the field it is stored in has
            // the type nvrtc.h declares for it.
            *unsafe { lib.get(concat!($name, "\0").as_bytes()) }
                .map_err(|e| format!("{path} has no {}: {e}", $name))?
        };
    }
    Ok(Api {
        version: sym!("nvrtcVersion"),
        create_program: sym!("nvrtcCreateProgram"),
        compile_program: sym!("nvrtcCompileProgram"),
        get_program_log_size: sym!("nvrtcGetProgramLogSize"),
        get_program_log: sym!("nvrtcGetProgramLog"),
        get_ptx_size: sym!("nvrtcGetPTXSize"),
        get_ptx: sym!("nvrtcGetPTX"),
        get_cubin_size: sym!("nvrtcGetCUBINSize"),
        get_cubin: sym!("nvrtcGetCUBIN"),
        destroy_program: sym!("nvrtcDestroyProgram"),
        get_error_string: sym!("nvrtcGetErrorString"),
        path,
        _lib: lib,
    })
}

impl Api {
    fn describe(&self, r: NvrtcResult) -> String {
        // SAFETY: nvrtcGetErrorString returns a static NUL-terminated string for any code.
        let s = unsafe { (self.get_error_string)(r) };
        if s.is_null() {
            format!("nvrtcResult {r}")
        } else {
            // SAFETY: non-null static string.
            format!(
                "{} (nvrtcResult {r})",
                unsafe { CStr::from_ptr(s) }.to_string_lossy()
            )
        }
    }

    fn check(&self, call: &str, r: NvrtcResult) -> Result<()> {
        if r == 0 {
            Ok(())
        } else {
            Err(error(call, self.describe(r)))
        }
    }

    /// The compiler's log of a program (warnings and errors).
    fn log(&self, prog: Program) -> String {
        let mut size = 0usize;
        // SAFETY: a live program, out-pointer to a local.
        if unsafe { (self.get_program_log_size)(prog, &mut size) } != 0 || size == 0 {
            return String::new();
        }
        let mut buf = vec![0 as c_char; size];
        // SAFETY: the buffer holds the `size` bytes the log needs, NUL included.
        if unsafe { (self.get_program_log)(prog, buf.as_mut_ptr()) } != 0 {
            return String::new();
        }
        // SAFETY: NUL-terminated within the buffer.
        unsafe { CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .trim()
            .to_string()
    }
}

/// NVRTC's version and the library file, e.g. `(13, 0, "libnvrtc.so.13")`.
pub(crate) fn version() -> Result<(i32, i32, String)> {
    let api = api()?;
    let (mut major, mut minor) = (0, 0);
    // SAFETY: out-pointers to locals.
    api.check("nvrtcVersion", unsafe {
        (api.version)(&mut major, &mut minor)
    })?;
    Ok((major, minor, api.path.clone()))
}

/// Compile `source` (CUDA C, every kernel `extern "C"`) for compute capability `capability`.
pub(crate) fn compile(
    source: &str,
    name: &str,
    capability: (i32, i32),
    output: Output,
) -> Result<Vec<u8>> {
    let api = api()?;
    let src = CString::new(source).map_err(|_| error("nvrtcCreateProgram", "NUL in source"))?;
    let cname = CString::new(name).map_err(|_| error("nvrtcCreateProgram", "NUL in name"))?;
    let mut prog: Program = std::ptr::null_mut();
    // SAFETY: NUL-terminated source and name, no headers; out-pointer to a local.
    api.check("nvrtcCreateProgram", unsafe {
        (api.create_program)(
            &mut prog,
            src.as_ptr(),
            cname.as_ptr(),
            0,
            std::ptr::null(),
            std::ptr::null(),
        )
    })?;
    let result = build(api, prog, capability, output);
    // SAFETY: created above, destroyed once.
    unsafe { (api.destroy_program)(&mut prog) };
    result
}

fn build(api: &Api, prog: Program, capability: (i32, i32), output: Output) -> Result<Vec<u8>> {
    let kind = match output {
        Output::Cubin => "sm",
        Output::Ptx => "compute",
    };
    let arch = format!("--gpu-architecture={kind}_{}{}", capability.0, capability.1);
    let options: Vec<CString> = [arch.as_str(), "--std=c++14", "-default-device"]
        .iter()
        .map(|o| CString::new(*o).expect("option without NUL"))
        .collect();
    let pointers: Vec<*const c_char> = options.iter().map(|o| o.as_ptr()).collect();
    // SAFETY: a live program, `pointers.len()` NUL-terminated options that outlive the call.
    let r = unsafe { (api.compile_program)(prog, pointers.len() as c_int, pointers.as_ptr()) };
    if r != 0 {
        return Err(error(
            &format!("nvrtcCompileProgram({arch}) with {}", api.path),
            format!("{}: {}", api.describe(r), api.log(prog)),
        ));
    }
    let (get_size, get) = match output {
        Output::Cubin => (api.get_cubin_size, api.get_cubin),
        Output::Ptx => (api.get_ptx_size, api.get_ptx),
    };
    let mut size = 0usize;
    // SAFETY: a compiled program, out-pointer to a local.
    api.check("nvrtcGet{PTX,CUBIN}Size", unsafe {
        get_size(prog, &mut size)
    })?;
    let mut image = vec![0u8; size.max(1)];
    // SAFETY: the buffer holds the `size` bytes of the image (PTX: its NUL included).
    api.check("nvrtcGet{PTX,CUBIN}", unsafe {
        get(prog, image.as_mut_ptr().cast())
    })?;
    image.truncate(size);
    Ok(image)
}
