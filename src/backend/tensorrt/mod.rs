//! The TensorRT backend (cargo feature `tensorrt`; docs/tensorrt.md).
//!
//! A C++ shim (`shim/p3trt.cpp`, compiled by build.rs against TensorRT 8.6+ headers) opens
//! libnvinfer, libnvonnxparser and the CUDA runtime with dlopen at run time, so a build with the
//! feature loads on any machine and [`probe`] says exactly why TensorRT cannot be used there (library
//! missing, version mismatch, runtime-only library, no CUDA driver, no GPU); `BackendKind::Auto` then
//! falls back to tract and logs that reason.
//!
//! Engines are built on the device from the package's graphs (the high-res graph with its budget K
//! fixed by an optimization profile, min = opt = max = K), FP16 where the platform has it, and kept
//! in an [`cache::EngineCache`] keyed by everything they depend on. Each encoder gets its own CUDA
//! stream, execution contexts and buffers, allocated once; the KV cache stays on the device between
//! the low-res and high-res stages; on an integrated GPU (Jetson) the buffers the pipeline touches are
//! mapped host memory, so nothing is copied.
//!
//! Without the feature this module still provides the options, the probe (which then reports that
//! TensorRT is not compiled in) and the engine cache.

pub mod cache;
#[cfg(feature = "tensorrt")]
mod engine;
#[cfg(feature = "tensorrt")]
mod ffi;

use std::path::PathBuf;

#[cfg(feature = "tensorrt")]
pub use engine::{
    BuildEvent, EngineReport, EngineSource, TensorRtModel, build_engines, log_progress,
};

/// Compute precision of the engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Precision {
    /// FP16 where the platform has fast FP16 and TensorRT a precision flag (8.6, 10.x), else TF32.
    #[default]
    Auto,
    /// FP16 kernels allowed (TensorRT 8.6 and 10.x; TensorRT 11 takes precision from the graph).
    Fp16,
    /// FP32 tensors, TF32 matrix math allowed (Ampere and newer).
    Tf32,
    /// Strict FP32 (TF32 disabled): closest to the tract backend.
    Fp32,
}

impl Precision {
    /// Parse "auto", "fp16", "tf32" or "fp32".
    pub fn parse(s: &str) -> Option<Precision> {
        match s {
            "auto" => Some(Precision::Auto),
            "fp16" => Some(Precision::Fp16),
            "tf32" => Some(Precision::Tf32),
            "fp32" => Some(Precision::Fp32),
            _ => None,
        }
    }

    /// The name used in cache keys and messages.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Auto => "auto",
            Precision::Fp16 => "fp16",
            Precision::Tf32 => "tf32",
            Precision::Fp32 => "fp32",
        }
    }
}

/// Libraries to open instead of the default search (each also settable by an environment variable:
/// `PS3RT_TENSORRT_LIB`, `PS3RT_ONNXPARSER_LIB`, `PS3RT_CUDART_LIB`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TensorRtLibraries {
    /// libnvinfer (default `libnvinfer.so.<major of the headers>`, then `libnvinfer.so`).
    pub nvinfer: Option<PathBuf>,
    /// libnvonnxparser (default `libnvonnxparser.so.<major>`, then `libnvonnxparser.so`).
    pub onnxparser: Option<PathBuf>,
    /// The CUDA runtime (default: one already loaded, else libcudart.so.13/.12/.11.0/.so and
    /// /usr/local/cuda).
    pub cudart: Option<PathBuf>,
}

impl TensorRtLibraries {
    /// The given paths, else the environment variables'.
    pub fn resolved(&self) -> TensorRtLibraries {
        let env = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        TensorRtLibraries {
            nvinfer: self.nvinfer.clone().or_else(|| env("PS3RT_TENSORRT_LIB")),
            onnxparser: self
                .onnxparser
                .clone()
                .or_else(|| env("PS3RT_ONNXPARSER_LIB")),
            cudart: self.cudart.clone().or_else(|| env("PS3RT_CUDART_LIB")),
        }
    }
}

/// Settings of the TensorRT backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorRtOptions {
    /// Engine cache directory (None: [`cache::default_dir`]; caching is off if that is None too).
    pub cache_dir: Option<PathBuf>,
    /// Engine precision.
    pub precision: Precision,
    /// CUDA device ordinal.
    pub device: u32,
    /// Replay each stage as a CUDA graph after its first run (steadier latency).
    pub cuda_graph: bool,
    /// Builder optimization level (None: TensorRT's default, 3). Part of the cache key.
    pub optimization_level: Option<u8>,
    /// Builder workspace limit in MiB (None: TensorRT's default). Part of the cache key.
    pub workspace_mib: Option<u64>,
    /// Library locations.
    pub libraries: TensorRtLibraries,
}

impl Default for TensorRtOptions {
    fn default() -> Self {
        TensorRtOptions {
            cache_dir: None,
            precision: Precision::Auto,
            device: 0,
            cuda_graph: false,
            optimization_level: None,
            workspace_mib: None,
            libraries: TensorRtLibraries::default(),
        }
    }
}

impl TensorRtOptions {
    /// The defaults with the environment's settings: `PS3RT_ENGINE_CACHE` (cache directory),
    /// `PS3RT_TENSORRT_PRECISION` (auto, fp16, tf32, fp32), `PS3RT_TENSORRT_CUDA_GRAPH` (1 or 0),
    /// `PS3RT_CUDA_DEVICE` (ordinal). What the C ABI and the CLI start from.
    pub fn from_env() -> Result<TensorRtOptions, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let mut o = TensorRtOptions {
            cache_dir: var("PS3RT_ENGINE_CACHE").map(PathBuf::from),
            ..TensorRtOptions::default()
        };
        if let Some(p) = var("PS3RT_TENSORRT_PRECISION") {
            o.precision = Precision::parse(&p).ok_or_else(|| {
                format!("PS3RT_TENSORRT_PRECISION={p:?}: expected auto, fp16, tf32 or fp32")
            })?;
        }
        if let Some(g) = var("PS3RT_TENSORRT_CUDA_GRAPH") {
            o.cuda_graph = match g.as_str() {
                "1" => true,
                "0" => false,
                _ => return Err(format!("PS3RT_TENSORRT_CUDA_GRAPH={g:?}: expected 1 or 0")),
            };
        }
        if let Some(d) = var("PS3RT_CUDA_DEVICE") {
            o.device = d
                .parse()
                .map_err(|_| format!("PS3RT_CUDA_DEVICE={d:?}: expected a device ordinal"))?;
        }
        Ok(o)
    }
}

/// Why TensorRT cannot be used on this machine, in the order the checks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnusableKind {
    /// This build has no TensorRT backend (cargo feature `tensorrt`).
    NotCompiled,
    /// libnvinfer or libnvonnxparser cannot be opened.
    LibraryMissing,
    /// The library is too old (< 8.6) or does not match the headers ps3rt was built with.
    VersionMismatch,
    /// A required entry point is missing (e.g. a runtime-only dispatch/lean library: no builder).
    MissingEntryPoint,
    /// No usable CUDA runtime, or no NVIDIA driver.
    NoCuda,
    /// The driver reports no usable GPU.
    NoGpu,
    /// A TensorRT call failed (runtime creation, engine build).
    Failed,
}

/// The TensorRT library that was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibraryInfo {
    /// The file libnvinfer was loaded from.
    pub path: String,
    /// Its version, major.minor.patch.build.
    pub version: String,
    /// Major version.
    pub major: i32,
    /// libnvonnxparser's file ("" if not opened).
    pub parser_path: String,
    /// The builder entry point is present (not a runtime-only library).
    pub has_builder: bool,
    /// The ONNX parser takes initializers from memory (TensorRT >= 10.13).
    pub load_initializer: bool,
}

/// The GPU that was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuInfo {
    /// Device ordinal.
    pub device: i32,
    /// Name, e.g. "Orin (nvgpu)".
    pub name: String,
    /// Compute capability, e.g. "8.7".
    pub sm: String,
    /// Integrated GPU (shares memory with the CPU: Jetson).
    pub integrated: bool,
    /// Device memory in bytes.
    pub memory: u64,
    /// The builder reports fast FP16 (None: unknown, or TensorRT 11).
    pub fast_fp16: Option<bool>,
}

/// What [`probe`] found out about TensorRT and CUDA on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorRtProbe {
    /// The TensorRT version of the headers this build was compiled against (None: not compiled in).
    pub headers: Option<String>,
    /// The TensorRT library, if one was opened.
    pub library: Option<LibraryInfo>,
    /// The CUDA runtime found: file and version (e.g. "12.6"), and the driver's CUDA version.
    pub cuda_runtime: Option<(String, String)>,
    /// The CUDA version the driver supports ("0.0": no driver).
    pub cuda_driver: Option<String>,
    /// The GPU, if one is usable.
    pub gpu: Option<GpuInfo>,
    /// Why TensorRT itself is not usable (None: it is).
    pub tensorrt_problem: Option<String>,
    /// Why CUDA / the GPU is not usable (None: it is).
    pub cuda_problem: Option<String>,
    /// The first reason TensorRT cannot run here, None if it can.
    pub unusable: Option<(UnusableKind, String)>,
}

impl TensorRtProbe {
    /// TensorRT can run here.
    pub fn usable(&self) -> bool {
        self.unusable.is_none()
    }

    /// One line: why not, or what will run.
    pub fn summary(&self) -> String {
        match (&self.unusable, &self.library, &self.gpu) {
            (Some((_, why)), _, _) => why.clone(),
            (None, Some(lib), Some(gpu)) => format!(
                "TensorRT {} on {} (sm_{}{})",
                lib.version,
                gpu.name,
                gpu.sm.replace('.', ""),
                if gpu.integrated { ", integrated" } else { "" }
            ),
            _ => "usable".into(),
        }
    }
}

/// Look for TensorRT and a GPU without building anything (cheap: opens the libraries and asks the
/// CUDA runtime for devices).
pub fn probe(options: &TensorRtOptions) -> TensorRtProbe {
    #[cfg(feature = "tensorrt")]
    {
        engine::probe(options)
    }
    #[cfg(not(feature = "tensorrt"))]
    {
        let _ = options;
        let why = "TensorRT is not compiled into this build (cargo feature `tensorrt`)".to_string();
        TensorRtProbe {
            headers: None,
            library: None,
            cuda_runtime: None,
            cuda_driver: None,
            gpu: None,
            tensorrt_problem: Some(why.clone()),
            cuda_problem: None,
            unusable: Some((UnusableKind::NotCompiled, why)),
        }
    }
}

/// The TensorRT version of the headers the shim was compiled against (None without the feature).
pub fn header_version() -> Option<&'static str> {
    #[cfg(feature = "tensorrt")]
    {
        Some(env!("PS3RT_TENSORRT_HEADERS"))
    }
    #[cfg(not(feature = "tensorrt"))]
    {
        None
    }
}
