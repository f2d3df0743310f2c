//! Inference backends: what runs the three graphs.
//!
//! A [`BackendModel`] holds what is compiled once per model (tract plans, TensorRT engines) and is
//! shared by every encoder; a [`Session`] is one encoder's execution state: its input and output
//! buffers and the KV cache, which stays inside the session between the low-res and high-res stages
//! (on a GPU it never leaves the device). The pipeline writes inputs straight into the session's
//! buffers and reads outputs from them, so a backend with device or pinned memory needs no extra copy.

#[cfg(feature = "onnxruntime")]
pub mod onnxruntime;
pub mod tensorrt;
pub mod tract;
mod tract_rewrite;

use crate::error::{Error, Result};

/// The error of `backend` at `stage` (load, lowres, hrsel, hrenc, pool): every backend's errors
/// are built here, so they read alike.
pub(crate) fn stage_error(
    backend: &'static str,
    stage: &str,
    message: impl std::fmt::Display,
) -> Error {
    Error::Backend {
        backend,
        stage: stage.to_string(),
        message: message.to_string(),
    }
}

/// A stage's output read before its graph ran.
pub(crate) fn not_run(backend: &'static str, stage: &str) -> Error {
    stage_error(backend, stage, "no output yet: the graph has not run")
}

/// A high-res run before the frame's low-res run.
pub(crate) fn no_kv_cache(backend: &'static str) -> Error {
    stage_error(
        backend,
        "hrenc",
        "the low-res stage has not run: no KV cache",
    )
}

/// `requested` CPU threads, with 0 meaning one per available core.
pub(crate) fn cpu_thread_count(requested: usize) -> usize {
    if requested == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        requested
    }
}

/// A CPU backend's worker pool of `threads` threads named `<prefix>-<i>` (None for one thread: the
/// calling thread does the work), or why it could not start.
pub(crate) fn start_worker_pool(
    threads: usize,
    prefix: &'static str,
) -> std::result::Result<Option<rayon::ThreadPool>, String> {
    if threads <= 1 {
        return Ok(None);
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(move |i| format!("{prefix}-{i}"))
        .build()
        .map(Some)
        .map_err(|e| format!("cannot start {threads} worker threads: {e}"))
}

/// R, the region count of the package's pool graph (its output's first dimension, fixed by the
/// manifest); None when the package has no pool graph or that dimension is not fixed.
pub(crate) fn pool_regions(package: &crate::package::Package) -> Option<usize> {
    match package
        .optional_graph_spec(crate::package::OptionalGraph::Pool)?
        .outputs
        .first()?
        .shape
        .first()?
    {
        crate::package::manifest::Dim::Fixed(r) => Some(*r),
        crate::package::manifest::Dim::Named(_) => None,
    }
}

/// Which backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum BackendKind {
    /// The best backend usable on this machine: TensorRT when usable, else ONNX Runtime when a
    /// library is found (see [`BackendOptions::onnxruntime_library`]), else tract.
    #[default]
    Auto,
    /// tract, on the CPU.
    Tract,
    // --- TensorRT backend (issue 6): begin
    /// TensorRT on an NVIDIA GPU; an error if it cannot run here (see [`tensorrt::probe`]).
    TensorRt,
    // --- TensorRT backend (issue 6): end
    /// ONNX Runtime's CPU execution provider, opened at run time (cargo feature `onnxruntime`); an
    /// error if no usable library is found (see [`BackendOptions::onnxruntime_library`]).
    OnnxRuntime,
}

impl BackendKind {
    /// Parse "auto", "tract", "tensorrt" or "onnxruntime".
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "auto" => Some(BackendKind::Auto),
            "tract" | "cpu" => Some(BackendKind::Tract),
            "tensorrt" | "trt" => Some(BackendKind::TensorRt),
            "onnxruntime" | "ort" => Some(BackendKind::OnnxRuntime),
            _ => None,
        }
    }
}

/// Backend configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BackendOptions {
    /// Backend choice.
    pub kind: BackendKind,
    /// Worker threads for the CPU backend (0 = one per available core).
    pub threads: usize,
    /// Settings of the TensorRT backend (used by `TensorRt` and `Auto`).
    pub tensorrt: tensorrt::TensorRtOptions,
    /// The ONNX Runtime library for `OnnxRuntime` (None: `$PS3RT_ONNXRUNTIME`, else
    /// `$ORT_DYLIB_PATH`, else `libonnxruntime.so` from the loader's search path).
    pub onnxruntime_library: Option<std::path::PathBuf>,
}

/// A model compiled for one backend, shared by all its sessions.
pub trait BackendModel: Send + Sync {
    /// Backend name ("tract", "tensorrt").
    fn name(&self) -> &'static str;

    /// A new execution state whose high-res stage takes exactly `budget` tokens per step.
    fn new_session(&self, budget: usize) -> Result<Box<dyn Session>>;

    /// A new execution state for the package's region pool head (`graphs.pool`), taking exactly
    /// `tokens` high-res tokens per run. An error when the package has no pool head or the backend
    /// cannot run it.
    fn new_pool_session(&self, tokens: usize) -> Result<Box<dyn PoolSession>>;

    /// The CPU worker pool the backend runs its graphs on, if it has one. The pipeline runs its
    /// own parallel work (resampling the planes, gathering patches) on the same threads, so a frame
    /// never has more runnable threads than the backend was given: a second pool's workers spinning
    /// after a join would compete with the graph's threads for the same cores.
    fn worker_pool(&self) -> Option<&rayon::ThreadPool> {
        None
    }

    /// Whether the pipeline should run this backend's graphs on its [`BackendModel::worker_pool`]
    /// rather than on the encoder's own thread. True for a backend whose graph runs do not use that
    /// pool themselves (ONNX Runtime has its own threads): the pool's thread that returns from the
    /// run goes straight on with the frame's next parallel step instead of the pool sleeping
    /// through the run (docs/performance.md, finding 28). False for tract, whose runs are split
    /// over the pool: a pool thread waiting inside one encoder's run could pick up another
    /// encoder's whole run and re-enter tract's per-thread scratch.
    fn run_graphs_on_workers(&self) -> bool {
        false
    }

    /// The CPU threads the backend was limited to (`--cpu-threads`), if any: the pipeline's own
    /// parallel work then uses at most that many threads. `None`: not limited (a GPU backend), so
    /// the pipeline uses every core for resampling.
    fn cpu_threads(&self) -> Option<usize> {
        None
    }
}

/// One encoder's execution state for the region pool head: high-res tokens `[N, C]` (as the high-res
/// stage returns them, before the final norm) and a mask `[R, N]` (1 = token in region r) in, one
/// embedding `[R, C]` per mask row out. Buffers are sized at creation and reused.
pub trait PoolSession: Send {
    /// Rows R of one run (the graph's fixed region count).
    fn max_regions(&self) -> usize;
    /// The tokens `[N, C]` and mask `[R, N]` to fill.
    fn pool_inputs(&mut self) -> Result<(&mut [f32], &mut [f32])>;
    /// Run the pool head.
    fn run_pool(&mut self) -> Result<()>;
    /// Region embeddings `[R, C]` of the last run.
    fn embeddings(&self) -> Result<&[f32]>;
}

/// What [`Session::hrenc_inputs`] lends for one high-res step.
pub struct HrencInputs<'a> {
    /// The selected patches to fill, `[K, 3 * p * p]`.
    pub patches: &'a mut [f32],
    /// Their position rows to fill, `[K, C]`.
    pub positions: &'a mut [f32],
    /// The high-res selection plane `[1, 3, S, S]` (S = 1512) exactly as the caller wrote it for
    /// this frame; backends never write into it.
    pub selection_plane: &'a [f32],
}

/// One encoder's execution state. Buffers are sized at creation and reused for every frame.
///
/// Protocol per frame: write both planes of [`Session::plane_inputs`]; [`Session::run_lowres`],
/// [`Session::run_hrsel`]; then for each step write
/// [`Session::hrenc_inputs`] and [`Session::run_hrenc`], which attends to the KV cache of the last
/// `run_lowres`.
pub trait Session: Send {
    /// The pixels to fill, written together in one pass over the frame: the low-res plane
    /// `[1, 3, 378, 378]` and the high-res selection plane `[1, 3, 1512, 1512]`. The same two
    /// buffers on every call, for the session's whole life: GPU preprocessing page-locks them once
    /// and copies each frame's planes into them (a buffer that moved would not get them).
    fn plane_inputs(&mut self) -> Result<(&mut [f32], &mut [f32])>;
    /// Run the low-res graph; keeps the KV cache for the high-res steps.
    fn run_lowres(&mut self) -> Result<()>;
    /// Low-res tokens after the last block, `[729, C]`.
    fn lowres_hidden(&self) -> Result<&[f32]>;
    /// Selection features, `[729, C]`.
    fn sel_feat(&self) -> Result<&[f32]>;

    /// Run the high-res selection branch.
    fn run_hrsel(&mut self) -> Result<()>;
    /// High-res selection features, `[g*g, D]`.
    fn hr_feat(&self) -> Result<&[f32]>;

    /// The selected patches `[K, 588]` and their position rows `[K, C]` to fill, and the selection
    /// plane as written before [`Session::run_hrsel`] (read-only: patches of the selection plane's
    /// scale are copied from it rather than resampled again). The patches are the same buffer on
    /// every call, for the session's whole life (as [`Session::plane_inputs`]).
    fn hrenc_inputs(&mut self) -> Result<HrencInputs<'_>>;
    /// Encode the selected patches with the KV cache of the last [`Session::run_lowres`].
    fn run_hrenc(&mut self) -> Result<()>;
    /// Features of the selected patches, `[K, C]`.
    fn features(&self) -> Result<&[f32]>;
}
