//! The ONNX Runtime backend: the package's graphs, exactly as exported, in ONNX Runtime's CPU
//! execution provider, opened at run time.
//!
//! Why a second CPU backend: on a full-size package (SO400M trunk) ONNX Runtime's matrix products
//! (MLAS, AVX-512) reach about 90% of this kind of CPU's fp32 peak and tract's about 45 - 65%
//! (docs/performance.md, finding 11), while on small graphs tract's lower per-op overhead wins. The
//! library is found at run time (`libonnxruntime.so`: the `onnxruntime` Python wheel ships one), so
//! the build needs nothing from ONNX Runtime and a machine without it falls back to tract.
//!
//! Buffers: every input and output is a tensor this backend allocates once per session and wraps as
//! an `OrtValue` once; ONNX Runtime reads the planes and patches from, and writes hidden states,
//! features and the KV cache into, that memory. The KV cache written by the low-res run is the
//! high-res runs' input as is: no copy, and no allocation on the Rust side per frame.

mod api;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use api::{Graph, GraphSettings, Initializer, PrepackedWeights, Runtime, Tensor};

use super::{BackendModel, HrencInputs, PoolSession, Session};
use crate::error::{Error, Result};
use crate::package::manifest::{Dim, GraphSpec};
use crate::package::{GraphRole, OptionalGraph, Package};

pub(crate) const NAME: &str = "onnxruntime";

/// The environment variable naming the ONNX Runtime library to open (a path to
/// `libonnxruntime.so...`), when [`OnnxRuntimeOptions::library`] is not set.
pub const LIBRARY_ENV: &str = "PS3RT_ONNXRUNTIME";

/// Settings of the ONNX Runtime backend.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OnnxRuntimeOptions {
    /// The ONNX Runtime library to open. None: `$PS3RT_ONNXRUNTIME`, else `$ORT_DYLIB_PATH` (the
    /// `ort` crate's variable), else `libonnxruntime.so` from the dynamic loader's search path.
    pub library: Option<PathBuf>,
}

fn backend_error(stage: &str, message: impl std::fmt::Display) -> Error {
    super::stage_error(NAME, stage, message)
}

/// The library paths to try, in order, and where each came from.
fn library_candidates(options: &OnnxRuntimeOptions) -> Vec<(PathBuf, &'static str)> {
    if let Some(path) = &options.library {
        return vec![(path.clone(), "the library option")];
    }
    for var in [LIBRARY_ENV, "ORT_DYLIB_PATH"] {
        if let Some(path) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            return vec![(PathBuf::from(path), var)];
        }
    }
    let names: &[&str] = if cfg!(target_os = "macos") {
        &["libonnxruntime.dylib"]
    } else if cfg!(windows) {
        &["onnxruntime.dll"]
    } else {
        &["libonnxruntime.so", "libonnxruntime.so.1"]
    };
    names
        .iter()
        .map(|n| (PathBuf::from(n), "the default name"))
        .collect()
}

/// Open ONNX Runtime as `options` say; the error lists every place tried.
fn open_runtime(options: &OnnxRuntimeOptions) -> Result<Arc<Runtime>> {
    let mut tried = Vec::new();
    for (path, source) in library_candidates(options) {
        match Runtime::open(&path) {
            Ok(rt) => return Ok(rt),
            Err(Error::Backend { message, .. }) => tried.push(format!("{source}: {message}")),
            Err(e) => tried.push(format!("{source}: {e}")),
        }
    }
    Err(backend_error(
        "load",
        format!(
            "no usable ONNX Runtime library ({}); install ONNX Runtime 1.18 or newer (e.g. `pip install onnxruntime`, \
             whose onnxruntime/capi/ holds libonnxruntime.so.<version>) and set {LIBRARY_ENV} to that file",
            tried.join("; ")
        ),
    ))
}

/// The ONNX Runtime library `options` find: its version and path, or why none is usable (what
/// `ps3rt info` reports; cheap: opening the library creates no session).
pub fn probe(options: &OnnxRuntimeOptions) -> std::result::Result<(String, PathBuf), String> {
    match open_runtime(options) {
        Ok(rt) => Ok((rt.version().to_string(), rt.path().to_path_buf())),
        Err(Error::Backend { message, .. }) => Err(message),
        Err(e) => Err(e.to_string()),
    }
}

/// The shape of a graph tensor with its named dimensions bound (`K` = budget, `N` = pool tokens).
fn bind_shape(spec: &[Dim], named: &[(&str, usize)], what: &str) -> Result<Vec<usize>> {
    spec.iter()
        .map(|d| match d {
            Dim::Fixed(n) => Ok(*n),
            Dim::Named(name) => named
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| *v)
                .ok_or_else(|| {
                    backend_error("load", format!("{what}: unknown dimension {name:?}"))
                }),
        })
        .collect()
}

/// The graphs of one package loaded into ONNX Runtime sessions, shared by every encoder.
pub struct OnnxRuntimeModel {
    rt: Arc<Runtime>,
    lowres: Arc<Graph>,
    hrsel: Arc<Graph>,
    hrenc: Arc<Graph>,
    /// The region pool head and its region count R, when the package has one.
    pool: Option<(Arc<Graph>, usize)>,
    specs: Specs,
    threads: usize,
    /// Threads for the pipeline's own parallel work (resampling, gathering): see
    /// [`BackendModel::worker_pool`]. None with one thread.
    workers: Option<rayon::ThreadPool>,
}

/// The interface of each graph, from the manifest (shapes with `K` or `N` bound per session).
#[derive(Debug, Clone)]
struct Specs {
    lowres: GraphSpec,
    hrsel: GraphSpec,
    hrenc: GraphSpec,
    pool: Option<GraphSpec>,
}

impl std::fmt::Debug for OnnxRuntimeModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxRuntimeModel")
            .field("runtime", &self.rt)
            .field("threads", &self.threads)
            .finish()
    }
}

/// The environment variable that turns off sharing pre-packed weights between the sessions
/// (`0`): each session then pre-packs its own copy, as ONNX Runtime does by default.
pub const SHARE_ENV: &str = "PS3RT_ONNXRUNTIME_SHARE_WEIGHTS";

/// What a session needs alive for as long as it lives: the weights it may point into, the shared
/// initializers it was given and the container of pre-packed weights it uses.
struct SessionData {
    _weights: Arc<dyn Send + Sync>,
    _shared: Arc<Vec<(std::ffi::CString, Initializer)>>,
    _prepacked: Option<Arc<PrepackedWeights>>,
}

/// Load one graph of `package` into a session. With `prepacked`, its weight matrices are shared
/// initializers whose pre-packed forms the container keeps once for every session that packs an
/// equal one: the trunk is in both the low-res and the high-res graph, and each session packed it
/// for itself (docs/performance.md, finding 36).
fn load_graph(
    rt: &Arc<Runtime>,
    package: &Package,
    spec: &GraphSpec,
    stage: &str,
    threads: usize,
    prepacked: Option<&Arc<PrepackedWeights>>,
) -> Result<Arc<Graph>> {
    let onnx = package.file(&spec.file)?;
    let weights_name = spec
        .weights
        .as_deref()
        .unwrap_or(package.manifest().weights.file.as_str());
    let weights = package.file(weights_name)?;
    // The session may point into the weights (ONNX Runtime uses external initializers in place
    // where it can): keep the package's copy of that file alive as long as the session.
    let owner: Arc<dyn Send + Sync> = Arc::new(package.subset(&[weights_name]));
    let mut shared = Vec::new();
    if prepacked.is_some() {
        for init in package.external_initializers(spec)? {
            // The matrices, which matrix products pre-pack; vectors (biases, norms) are used as
            // they are and stay ordinary initializers.
            if init.dims.len() != 2 || init.range.is_empty() {
                continue;
            }
            let name = std::ffi::CString::new(init.name.as_str()).map_err(|_| {
                backend_error(stage, format!("initializer {:?} contains NUL", init.name))
            })?;
            let value = Initializer::over(
                rt,
                &weights[init.range.clone()],
                init.data_type,
                &init.dims,
                Arc::clone(&owner),
            )
            .map_err(|e| backend_error(stage, format!("{} ({}): {e}", init.name, spec.file)))?;
            shared.push((name, value));
        }
    }
    let shared = Arc::new(shared);
    let inputs: Vec<&str> = spec.inputs.iter().map(|t| t.name.as_str()).collect();
    let outputs: Vec<&str> = spec.outputs.iter().map(|t| t.name.as_str()).collect();
    let settings = GraphSettings {
        threads,
        // Spinning pool threads take the cores from the pipeline's resampling between runs: 8K
        // preprocessing 18 -> 40 ms with spinning on (docs/performance.md, finding 27).
        spin: false,
        external: &[(weights_name, weights)],
        shared: &shared,
        prepacked: prepacked.map(|p| &**p),
    };
    let keep: Arc<dyn Send + Sync> = Arc::new(SessionData {
        _weights: owner,
        _shared: Arc::clone(&shared),
        _prepacked: prepacked.cloned(),
    });
    let graph = Graph::load(rt, onnx, &inputs, &outputs, &settings, keep)
        .map(Arc::new)
        .map_err(|e| backend_error(stage, format!("{} ({}): {e}", spec.file, rt.version())))?;
    // ONNX Runtime has pre-packed the weights it multiplies by into its own memory: the pages of
    // the mapped weights it read doing so leave the resident set (the few initializers it reads
    // at run time fault back in). Without this, a full-size package's weights stayed resident
    // next to ONNX Runtime's copies (docs/performance.md, finding 35).
    package.release_pages();
    Ok(graph)
}

impl OnnxRuntimeModel {
    /// Open ONNX Runtime and load the package's graphs; `threads` = 0 uses every available core.
    pub fn load(
        package: &Package,
        options: &OnnxRuntimeOptions,
        threads: usize,
    ) -> Result<OnnxRuntimeModel> {
        let threads = super::cpu_thread_count(threads);
        let rt = open_runtime(options)?;
        log::info!("ONNX Runtime {} from {}", rt.version(), rt.path().display());
        let specs = Specs {
            lowres: package.graph_spec(GraphRole::LowRes).clone(),
            hrsel: package.graph_spec(GraphRole::HrSel).clone(),
            hrenc: package.graph_spec(GraphRole::HrEnc).clone(),
            pool: package.optional_graph_spec(OptionalGraph::Pool).cloned(),
        };
        check_interface(&specs)?;
        let prepacked = if crate::package::switch_on(SHARE_ENV) {
            Some(Arc::new(
                PrepackedWeights::new(&rt).map_err(|e| backend_error("load", e))?,
            ))
        } else {
            None
        };
        let prepacked = prepacked.as_ref();
        let lowres = load_graph(&rt, package, &specs.lowres, "lowres", threads, prepacked)?;
        let hrsel = load_graph(&rt, package, &specs.hrsel, "hrsel", threads, prepacked)?;
        let hrenc = load_graph(&rt, package, &specs.hrenc, "hrenc", threads, prepacked)?;
        let pool = match &specs.pool {
            Some(spec) => {
                let regions = super::pool_regions(package).ok_or_else(|| {
                    backend_error("pool", "the pool graph has no fixed region count")
                })?;
                Some((
                    load_graph(&rt, package, spec, "pool", threads, prepacked)?,
                    regions,
                ))
            }
            None => None,
        };
        return_freed_heap();
        let workers =
            super::start_worker_pool(threads, "ps3rt-ort").map_err(|e| backend_error("load", e))?;
        Ok(OnnxRuntimeModel {
            rt,
            lowres,
            hrsel,
            hrenc,
            pool,
            specs,
            threads,
            workers,
        })
    }

    /// The ONNX Runtime version loaded ("1.32.0").
    pub fn version(&self) -> &str {
        self.rt.version()
    }

    /// Where the library was opened from.
    pub fn library(&self) -> &Path {
        self.rt.path()
    }
}

/// Give the C heap's free memory back to the OS. ONNX Runtime allocates through the C library's
/// `malloc`, and creating sessions frees gigabytes of transient memory at the SO400M size (the
/// parsed model, the optimizer's copies, weights before they are pre-packed); glibc returns only
/// what lies at the top of its heap, so how much stayed resident after a load varied from run to
/// run by about 1 GB (docs/performance.md, finding 36). `malloc_trim` releases every free page.
fn return_freed_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of glibc's heaps to the OS; it takes the heap
    // locks itself and may be called from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The interface the sessions rely on: counts of inputs and outputs per graph (the manifest was
/// checked against the graphs when the package was opened).
fn check_interface(specs: &Specs) -> Result<()> {
    let want = [
        ("lowres", &specs.lowres, 1, 3),
        ("hrsel", &specs.hrsel, 1, 1),
        ("hrenc", &specs.hrenc, 3, 1),
    ];
    for (stage, spec, inputs, outputs) in want {
        if spec.inputs.len() != inputs || spec.outputs.len() != outputs {
            return Err(backend_error(
                stage,
                format!(
                    "{} inputs and {} outputs in the manifest, expected {inputs} and {outputs}",
                    spec.inputs.len(),
                    spec.outputs.len()
                ),
            ));
        }
    }
    if let Some(pool) = &specs.pool
        && (pool.inputs.len() != 2 || pool.outputs.len() != 1)
    {
        return Err(backend_error(
            "pool",
            "the pool graph needs 2 inputs and 1 output",
        ));
    }
    Ok(())
}

impl BackendModel for OnnxRuntimeModel {
    fn name(&self) -> &'static str {
        NAME
    }

    fn new_session(&self, budget: usize) -> Result<Box<dyn Session>> {
        if budget == 0 {
            return Err(backend_error("hrenc", "a budget of 0 tokens"));
        }
        let named = [("K", budget)];
        let tensor = |spec: &crate::package::manifest::TensorSpec, stage: &str| -> Result<Tensor> {
            let shape = bind_shape(&spec.shape, &named, &spec.name)?;
            Tensor::zeros(&self.rt, &shape).map_err(|e| backend_error(stage, e))
        };
        let s = &self.specs;
        let kv = tensor(&s.lowres.outputs[1], "lowres")?;
        let kv_in = bind_shape(&s.hrenc.inputs[2].shape, &named, "kv_cache")?;
        let kv_out = bind_shape(&s.lowres.outputs[1].shape, &named, "kv_cache")?;
        if kv_in != kv_out {
            return Err(backend_error(
                "hrenc",
                format!(
                    "the high-res graph takes a KV cache of {kv_in:?}, the low-res graph makes {kv_out:?}"
                ),
            ));
        }
        Ok(Box::new(OnnxRuntimeSession {
            lowres: Arc::clone(&self.lowres),
            hrsel: Arc::clone(&self.hrsel),
            hrenc: Arc::clone(&self.hrenc),
            lowres_in: tensor(&s.lowres.inputs[0], "lowres")?,
            hrsel_in: tensor(&s.hrsel.inputs[0], "hrsel")?,
            hidden: tensor(&s.lowres.outputs[0], "lowres")?,
            kv,
            sel_feat: tensor(&s.lowres.outputs[2], "lowres")?,
            hr_feat: tensor(&s.hrsel.outputs[0], "hrsel")?,
            patches: tensor(&s.hrenc.inputs[0], "hrenc")?,
            positions: tensor(&s.hrenc.inputs[1], "hrenc")?,
            features: tensor(&s.hrenc.outputs[0], "hrenc")?,
            ran: Ran::default(),
        }))
    }

    fn new_pool_session(&self, tokens: usize) -> Result<Box<dyn PoolSession>> {
        let (Some((graph, regions)), Some(spec)) = (&self.pool, &self.specs.pool) else {
            return Err(backend_error(
                "pool",
                "the package has no region pool head (graphs.pool); re-export it with tools/export/ps3_export.py",
            ));
        };
        if tokens == 0 {
            return Err(backend_error("pool", "a pool run needs at least one token"));
        }
        let named = [("N", tokens)];
        let tensor = |shape: &[Dim], what: &str| -> Result<Tensor> {
            let shape = bind_shape(shape, &named, what)?;
            Tensor::zeros(&self.rt, &shape).map_err(|e| backend_error("pool", e))
        };
        Ok(Box::new(OnnxRuntimePoolSession {
            graph: Arc::clone(graph),
            tokens: tensor(&spec.inputs[0].shape, "tokens")?,
            mask: tensor(&spec.inputs[1].shape, "mask")?,
            embeddings: tensor(&spec.outputs[0].shape, "embeddings")?,
            regions: *regions,
            ran: false,
        }))
    }

    fn worker_pool(&self) -> Option<&rayon::ThreadPool> {
        self.workers.as_ref()
    }

    fn run_graphs_on_workers(&self) -> bool {
        true
    }

    fn cpu_threads(&self) -> Option<usize> {
        Some(self.threads)
    }
}

/// Which stages have run since the session's buffers were last rewritten, so a read before a run
/// is an error rather than zeros.
#[derive(Debug, Default, Clone, Copy)]
struct Ran {
    lowres: bool,
    hrsel: bool,
    hrenc: bool,
}

/// One encoder's ONNX Runtime state: every input and output tensor, sized for its budget.
struct OnnxRuntimeSession {
    lowres: Arc<Graph>,
    hrsel: Arc<Graph>,
    hrenc: Arc<Graph>,
    lowres_in: Tensor,
    hrsel_in: Tensor,
    hidden: Tensor,
    /// Written by the low-res run, read by every high-res run of the frame.
    kv: Tensor,
    sel_feat: Tensor,
    hr_feat: Tensor,
    patches: Tensor,
    positions: Tensor,
    features: Tensor,
    ran: Ran,
}

impl Session for OnnxRuntimeSession {
    fn plane_inputs(&mut self) -> Result<(&mut [f32], &mut [f32])> {
        Ok((self.lowres_in.as_mut_slice(), self.hrsel_in.as_mut_slice()))
    }

    fn run_lowres(&mut self) -> Result<()> {
        self.ran = Ran::default();
        self.lowres
            .run(
                &[&self.lowres_in],
                &mut [&mut self.hidden, &mut self.kv, &mut self.sel_feat],
            )
            .map_err(|e| backend_error("lowres", e))?;
        self.ran.lowres = true;
        Ok(())
    }

    fn lowres_hidden(&self) -> Result<&[f32]> {
        self.ran
            .lowres
            .then(|| self.hidden.as_slice())
            .ok_or_else(|| super::not_run(NAME, "lowres"))
    }

    fn sel_feat(&self) -> Result<&[f32]> {
        self.ran
            .lowres
            .then(|| self.sel_feat.as_slice())
            .ok_or_else(|| super::not_run(NAME, "lowres"))
    }

    fn run_hrsel(&mut self) -> Result<()> {
        self.ran.hrsel = false;
        self.hrsel
            .run(&[&self.hrsel_in], &mut [&mut self.hr_feat])
            .map_err(|e| backend_error("hrsel", e))?;
        self.ran.hrsel = true;
        Ok(())
    }

    fn hr_feat(&self) -> Result<&[f32]> {
        self.ran
            .hrsel
            .then(|| self.hr_feat.as_slice())
            .ok_or_else(|| super::not_run(NAME, "hrsel"))
    }

    fn hrenc_inputs(&mut self) -> Result<HrencInputs<'_>> {
        Ok(HrencInputs {
            patches: self.patches.as_mut_slice(),
            positions: self.positions.as_mut_slice(),
            selection_plane: self.hrsel_in.as_slice(),
        })
    }

    fn run_hrenc(&mut self) -> Result<()> {
        self.ran.hrenc = false;
        if !self.ran.lowres {
            return Err(super::no_kv_cache(NAME));
        }
        self.hrenc
            .run(
                &[&self.patches, &self.positions, &self.kv],
                &mut [&mut self.features],
            )
            .map_err(|e| backend_error("hrenc", e))?;
        self.ran.hrenc = true;
        Ok(())
    }

    fn features(&self) -> Result<&[f32]> {
        self.ran
            .hrenc
            .then(|| self.features.as_slice())
            .ok_or_else(|| super::not_run(NAME, "hrenc"))
    }
}

/// One encoder's state for the region pool head.
struct OnnxRuntimePoolSession {
    graph: Arc<Graph>,
    tokens: Tensor,
    mask: Tensor,
    embeddings: Tensor,
    regions: usize,
    ran: bool,
}

impl PoolSession for OnnxRuntimePoolSession {
    fn max_regions(&self) -> usize {
        self.regions
    }

    fn pool_inputs(&mut self) -> Result<(&mut [f32], &mut [f32])> {
        Ok((self.tokens.as_mut_slice(), self.mask.as_mut_slice()))
    }

    fn run_pool(&mut self) -> Result<()> {
        self.ran = false;
        self.graph
            .run(&[&self.tokens, &self.mask], &mut [&mut self.embeddings])
            .map_err(|e| backend_error("pool", e))?;
        self.ran = true;
        Ok(())
    }

    fn embeddings(&self) -> Result<&[f32]> {
        self.ran
            .then(|| self.embeddings.as_slice())
            .ok_or_else(|| super::not_run(NAME, "pool"))
    }
}
