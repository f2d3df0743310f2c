//! The CUDA driver and NVRTC, opened at run time (cargo feature `cuda`).
//!
//! GPU preprocessing ([`crate::image::gpu`]) compiles its kernels from CUDA C source with NVRTC when
//! an encoder first asks for it (machine code for the device's architecture), loads them with the driver API and runs it on the device's
//! primary context, the context the CUDA runtime (and so the TensorRT backend) uses too. Nothing is
//! linked: `libcuda.so.1` and `libnvrtc.so.<major>` are opened with dlopen, so the one binary loads on
//! machines without a GPU and says exactly what is missing where one is asked for.
//!
//! Written by hand because the crates that wrap the driver API (cudarc, cust) either link the CUDA
//! libraries at build time or pull a toolkit version's whole generated bindings; ps3rt needs eleven
//! driver calls and five NVRTC calls, each checked and named in its error.

mod driver;
mod nvrtc;
mod pinned;

pub(crate) use driver::{
    Context, DeviceBuffer, Function, HostBuffer, HostRegistration, Module, Stream, device_info,
};
pub(crate) use nvrtc::{Output, compile, version as nvrtc_version};
pub use pinned::PinnedBuffer;

/// Environment variable naming the CUDA driver library (default `libcuda.so.1`).
pub const DRIVER_ENV: &str = "PS3RT_CUDA_DRIVER_LIB";
/// Environment variable naming the NVRTC library (default: `libnvrtc.so.13`, `.12`, `.11.2`, then
/// `/usr/local/cuda/lib64`).
pub const NVRTC_ENV: &str = "PS3RT_NVRTC_LIB";

/// A CUDA error: which call failed, and the driver's or NVRTC's own words.
pub(crate) fn error(call: &str, message: impl std::fmt::Display) -> crate::Error {
    crate::Error::Backend {
        backend: "cuda",
        stage: "preprocess".into(),
        message: format!("{call}: {message}"),
    }
}
