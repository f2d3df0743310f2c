//! The TensorRT model (engines, built or loaded from the cache) and its sessions (one CUDA stream,
//! execution contexts and buffers per encoder).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tract_onnx::pb::tensor_proto::DataLocation;
use tract_onnx::prelude::Framework;

use super::cache::{self, EngineCache, EngineKey, Lookup, RECIPE, TimingKey};
use super::ffi::{self, Buffer, Engine, Host, Initializer, Lib, RawInfo, Stage, Transfer};
use super::{GpuInfo, LibraryInfo, Precision, TensorRtOptions, TensorRtProbe, UnusableKind};
use crate::backend::{BackendModel, HrencInputs, Session};
use crate::error::{Error, Result};
use crate::package::manifest::{Dim, GraphSpec};
use crate::package::{GraphRole, Manifest, Package};

const NAME: &str = "tensorrt";
/// How often a build in progress reports its elapsed time.
const TICK: Duration = Duration::from_secs(10);

fn backend_error(stage: &str, message: impl std::fmt::Display) -> Error {
    crate::backend::stage_error(NAME, stage, message)
}

fn kind_of(code: i32) -> UnusableKind {
    match code {
        ffi::status::NO_LIBRARY => UnusableKind::LibraryMissing,
        ffi::status::BAD_VERSION => UnusableKind::VersionMismatch,
        ffi::status::NO_SYMBOL => UnusableKind::MissingEntryPoint,
        ffi::status::NO_CUDA => UnusableKind::NoCuda,
        ffi::status::NO_GPU => UnusableKind::NoGpu,
        _ => UnusableKind::Failed,
    }
}

fn version_string(major: i32, minor: i32, patch: i32, build: i32) -> String {
    if build >= 0 {
        format!("{major}.{minor}.{patch}.{build}")
    } else {
        format!("{major}.{minor}.{patch}")
    }
}

fn cuda_version(v: i32) -> String {
    format!("{}.{}", v / 1000, (v % 1000) / 10)
}

/// The probe's view of the shim's info.
fn describe(info: &RawInfo, status: Option<(i32, String)>) -> TensorRtProbe {
    let library = (info.lib_major >= 0).then(|| LibraryInfo {
        path: ffi::field(&info.nvinfer_path),
        version: version_string(
            info.lib_major,
            info.lib_minor,
            info.lib_patch,
            info.lib_build,
        ),
        major: info.lib_major,
        parser_path: ffi::field(&info.parser_path),
        has_builder: info.has_builder != 0,
        load_initializer: info.load_initializer != 0,
    });
    let cudart = ffi::field(&info.cudart_path);
    let cuda_runtime = (!cudart.is_empty() && info.cuda_runtime_version >= 0)
        .then(|| (cudart, cuda_version(info.cuda_runtime_version)));
    let cuda_driver =
        (info.cuda_driver_version >= 0).then(|| cuda_version(info.cuda_driver_version));
    let cuda_problem = Some(ffi::field(&info.cuda_error)).filter(|s| !s.is_empty());
    let gpu = (cuda_problem.is_none() && info.sm_major >= 0).then(|| GpuInfo {
        device: info.device,
        name: ffi::field(&info.gpu_name),
        sm: format!("{}.{}", info.sm_major, info.sm_minor),
        integrated: info.integrated == 1,
        memory: info.total_mem,
        fast_fp16: (info.fast_fp16 >= 0).then_some(info.fast_fp16 == 1),
    });
    TensorRtProbe {
        headers: Some(version_string(
            info.header_major,
            info.header_minor,
            info.header_patch,
            -1,
        )),
        library,
        cuda_runtime,
        cuda_driver,
        gpu,
        tensorrt_problem: Some(ffi::field(&info.trt_error)).filter(|s| !s.is_empty()),
        cuda_problem,
        unusable: status.map(|(code, message)| (kind_of(code), message)),
    }
}

fn open(
    options: &TensorRtOptions,
    probe_only: bool,
) -> (
    TensorRtProbe,
    std::result::Result<Option<Lib>, ffi::ShimError>,
) {
    let libs = options.libraries.resolved();
    let paths = ffi::OpenPaths {
        nvinfer: libs.nvinfer.as_deref(),
        parser: libs.onnxparser.as_deref(),
        cudart: libs.cudart.as_deref(),
    };
    let device = i32::try_from(options.device).unwrap_or(i32::MAX);
    let (info, lib) = ffi::open(&paths, device, probe_only);
    let status = lib.as_ref().err().map(|e| (e.code, e.message.clone()));
    (describe(&info, status), lib)
}

pub(super) fn probe(options: &TensorRtOptions) -> TensorRtProbe {
    open(options, true).0
}

/// Where an engine came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineSource {
    /// Loaded from the engine cache.
    Cache,
    /// Built now.
    Built,
}

/// One engine the model uses.
#[derive(Debug, Clone)]
pub struct EngineReport {
    /// Graph role ("lowres", "hrsel", "hrenc").
    pub graph: &'static str,
    /// Budget K (hrenc only).
    pub budget: Option<usize>,
    /// Cached or built.
    pub source: EngineSource,
    /// The cache file (None if caching is off or the write failed).
    pub path: Option<PathBuf>,
    /// Serialized size in bytes.
    pub bytes: usize,
    /// Time to load or build, in seconds.
    pub seconds: f64,
}

/// Progress of preparing the engines.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum BuildEvent {
    /// An engine is being built (the first time: minutes for a full-size model), and why.
    Building {
        /// Graph role.
        graph: &'static str,
        /// Budget K (hrenc only).
        budget: Option<usize>,
        /// Why it is built ("not in the cache", or why the cached entry was refused).
        reason: String,
    },
    /// TensorRT entered a phase of the build (TensorRT 10 and later).
    Phase {
        /// Graph role.
        graph: &'static str,
        /// Phase name.
        phase: String,
        /// Enclosing phase ("" for a top-level one).
        parent: String,
        /// Steps in the phase.
        steps: i32,
    },
    /// A step of a phase completed.
    Step {
        /// Graph role.
        graph: &'static str,
        /// Phase name.
        phase: String,
        /// The step that completed (0-based).
        step: i32,
    },
    /// The build is still running.
    Elapsed {
        /// Graph role.
        graph: &'static str,
        /// Time since the build started.
        elapsed: Duration,
    },
    /// An engine is ready.
    Ready(EngineReport),
}

/// Engine build settings, resolved against the library and GPU.
#[derive(Debug, Clone)]
struct Settings {
    precision: Precision,
    optimization_level: i32,
    workspace_bytes: u64,
}

impl Settings {
    fn flags(&self) -> String {
        format!(
            "tf32={};opt={};workspace={}",
            u8::from(self.precision != Precision::Fp32),
            self.optimization_level,
            self.workspace_bytes
        )
    }
}

/// Where to get the package again to build an engine that is not cached.
enum Source {
    /// Re-open (and re-verify) the directory.
    Dir(PathBuf),
    /// An in-memory package (e.g. the embedded one), kept.
    Memory(Box<Package>),
}

/// Shapes of the session buffers, from the manifest.
#[derive(Debug, Clone)]
struct Shapes {
    lowres_in: usize,
    hidden: usize,
    kv: usize,
    sel_feat: usize,
    hrsel_in: usize,
    hr_feat: usize,
    patch_values: usize,
    width: usize,
}

/// What engines are made with: the libraries, the package's identity, settings and cache.
struct Core {
    lib: Arc<Lib>,
    probe: TensorRtProbe,
    manifest: Manifest,
    origin: String,
    source: Mutex<Source>,
    settings: Settings,
    cache: Option<EngineCache>,
    reports: Mutex<Vec<EngineReport>>,
}

/// The package's graphs as TensorRT engines on one GPU, shared by every session.
pub struct TensorRtModel {
    core: Core,
    cuda_graph: bool,
    lowres: Arc<Engine>,
    hrsel: Arc<Engine>,
    hrenc: Mutex<HashMap<usize, Arc<Engine>>>,
    shapes: Shapes,
}

impl std::fmt::Debug for TensorRtModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TensorRtModel")
            .field("summary", &self.core.probe.summary())
            .field("precision", &self.core.settings.precision)
            .finish()
    }
}

/// Log progress events (what a model loaded without an explicit progress callback does).
pub fn log_progress(event: &BuildEvent) {
    match event {
        BuildEvent::Building {
            graph,
            budget,
            reason,
        } => log::warn!(
            "building the TensorRT engine for {graph}{} ({reason}); the first build of a full-size model takes minutes, later loads use the cache",
            budget.map(|k| format!(" at K = {k}")).unwrap_or_default()
        ),
        BuildEvent::Phase {
            graph,
            phase,
            parent,
            steps,
        } if parent.is_empty() => log::info!("{graph}: {phase} ({steps} steps)"),
        BuildEvent::Elapsed { graph, elapsed } => {
            log::info!("{graph}: still building, {} s", elapsed.as_secs())
        }
        BuildEvent::Ready(r) => log::info!(
            "{}{}: engine {} in {:.1} s ({:.1} MB){}",
            r.graph,
            r.budget.map(|k| format!(" K={k}")).unwrap_or_default(),
            match r.source {
                EngineSource::Cache => "loaded from the cache",
                EngineSource::Built => "built",
            },
            r.seconds,
            r.bytes as f64 / 1e6,
            r.path
                .as_ref()
                .map(|p| format!(", {}", p.display()))
                .unwrap_or_default()
        ),
        _ => {}
    }
}

impl TensorRtModel {
    /// Open TensorRT, then load from the cache or build the engines of the low-res and selection
    /// graphs and of the high-res graph at the package's budget. Progress goes to the log.
    pub fn load(package: &Package, options: &TensorRtOptions) -> Result<TensorRtModel> {
        Self::load_with_progress(package, options, &mut |e| log_progress(e))
    }

    /// As [`TensorRtModel::load`], reporting progress to `progress`.
    pub fn load_with_progress(
        package: &Package,
        options: &TensorRtOptions,
        progress: &mut (dyn FnMut(&BuildEvent) + Send),
    ) -> Result<TensorRtModel> {
        Self::try_load(package, options, progress).map_err(|(_, e)| e)
    }

    /// Load, or the reason TensorRT cannot be used here with the error.
    pub(crate) fn try_load(
        package: &Package,
        options: &TensorRtOptions,
        progress: &mut (dyn FnMut(&BuildEvent) + Send),
    ) -> std::result::Result<TensorRtModel, (UnusableKind, Error)> {
        let (probe, lib) = open(options, false);
        let lib = match lib {
            Ok(Some(lib)) => Arc::new(lib),
            Ok(None) => {
                return Err((
                    UnusableKind::Failed,
                    backend_error("load", "the shim returned no library handle"),
                ));
            }
            Err(e) => return Err((kind_of(e.code), backend_error("load", e.message))),
        };
        let failed = |e: Error| (UnusableKind::Failed, e);
        let (Some(library), Some(gpu)) = (probe.library.clone(), probe.gpu.clone()) else {
            return Err(failed(backend_error(
                "load",
                "TensorRT opened but the library or GPU is not described",
            )));
        };
        let precision = match options.precision {
            Precision::Auto if library.major < 11 && gpu.fast_fp16 == Some(true) => Precision::Fp16,
            Precision::Auto => Precision::Tf32,
            Precision::Fp16 if library.major >= 11 => {
                return Err(failed(backend_error(
                    "load",
                    format!(
                        "precision fp16 was asked for, but TensorRT {} has no FP16 builder flag (precision comes from the ONNX graph, and ps3rt's graphs compute in fp32): use auto, tf32 or fp32",
                        library.version
                    ),
                )));
            }
            p => p,
        };
        let settings = Settings {
            precision,
            optimization_level: options.optimization_level.map_or(-1, i32::from),
            workspace_bytes: options.workspace_mib.unwrap_or(0).saturating_mul(1 << 20),
        };
        let cache = options
            .cache_dir
            .clone()
            .or_else(cache::default_dir)
            .map(EngineCache::new);
        match &cache {
            Some(c) => {
                let n = c.remove_stale_temporaries();
                if n > 0 {
                    log::info!(
                        "engine cache {}: removed {n} unfinished writes",
                        c.dir().display()
                    );
                }
            }
            None => log::warn!(
                "no engine cache directory (set PS3RT_ENGINE_CACHE or HOME): TensorRT engines are rebuilt on every load"
            ),
        }
        let m = &package.manifest().model;
        let g = package.geometry();
        let n = g.lowres_tokens();
        let shapes = Shapes {
            lowres_in: 3 * g.lowres_size() * g.lowres_size(),
            hidden: n * m.width,
            kv: m.depth * 2 * m.heads * n * m.head_dim,
            sel_feat: n * m.width,
            hrsel_in: 3 * g.hrsel_input() * g.hrsel_input(),
            hr_feat: 0,
            patch_values: 3 * g.patch() * g.patch(),
            width: m.width,
        };
        let source = match package.dir() {
            Some(dir) => Source::Dir(dir.to_path_buf()),
            None => Source::Memory(Box::new(package.clone())),
        };
        let hr_feat = spec_len(&package.graph_spec(GraphRole::HrSel).outputs[0].shape, 0)
            .map_err(|e| failed(backend_error("hrsel", e)))?;
        let core = Core {
            lib,
            probe,
            manifest: package.manifest().clone(),
            origin: package.origin().to_string(),
            source: Mutex::new(source),
            settings,
            cache,
            reports: Mutex::new(Vec::new()),
        };
        let lowres = core
            .engine(GraphRole::LowRes, None, Some(package), progress)
            .map_err(failed)?;
        let hrsel = core
            .engine(GraphRole::HrSel, None, Some(package), progress)
            .map_err(failed)?;
        let k = package.manifest().geometry.budget;
        let hrenc = core
            .engine(GraphRole::HrEnc, Some(k), Some(package), progress)
            .map_err(failed)?;
        Ok(TensorRtModel {
            core,
            cuda_graph: options.cuda_graph,
            lowres,
            hrsel,
            hrenc: Mutex::new(HashMap::from([(k, hrenc)])),
            shapes: Shapes { hr_feat, ..shapes },
        })
    }

    /// What was found on this machine when the model was loaded.
    pub fn probe(&self) -> &TensorRtProbe {
        &self.core.probe
    }

    /// The precision the engines were built with.
    pub fn precision(&self) -> Precision {
        self.core.settings.precision
    }

    /// The engines loaded or built so far.
    pub fn reports(&self) -> Vec<EngineReport> {
        lock(&self.core.reports).clone()
    }

    /// One line for people: library, GPU, precision, engines.
    pub fn note(&self) -> String {
        let reports = self.reports();
        let built = reports
            .iter()
            .filter(|r| r.source == EngineSource::Built)
            .count();
        format!(
            "{}, {}, {} engines ({} from the cache, {built} built){}",
            self.core.probe.summary(),
            self.core.settings.precision.name(),
            reports.len(),
            reports.len() - built,
            if self.cuda_graph { ", CUDA graphs" } else { "" }
        )
    }

    /// Make sure the high-res engine for budget `k` is ready (from the cache or built now).
    pub fn prepare_budget(
        &self,
        k: usize,
        progress: &mut (dyn FnMut(&BuildEvent) + Send),
    ) -> Result<EngineReport> {
        self.hrenc_engine(k, progress)?;
        lock(&self.core.reports)
            .iter()
            .rev()
            .find(|r| r.graph == "hrenc" && r.budget == Some(k))
            .cloned()
            .ok_or_else(|| backend_error("hrenc", "no report for the engine"))
    }

    fn hrenc_engine(
        &self,
        k: usize,
        progress: &mut (dyn FnMut(&BuildEvent) + Send),
    ) -> Result<Arc<Engine>> {
        if let Some(e) = lock(&self.hrenc).get(&k) {
            return Ok(e.clone());
        }
        let engine = self
            .core
            .engine(GraphRole::HrEnc, Some(k), None, progress)?;
        Ok(lock(&self.hrenc).entry(k).or_insert(engine).clone())
    }
}

impl Core {
    fn key(&self, role: GraphRole, budget: Option<usize>) -> Result<EngineKey> {
        let spec = graph_spec(&self.manifest, role);
        let sha = |file: &str| {
            self.manifest
                .files
                .get(file)
                .map(|e| e.sha256.to_ascii_lowercase())
                .ok_or_else(|| backend_error(role.name(), format!("{file} is not in the manifest")))
        };
        let (lib, gpu) = match (&self.probe.library, &self.probe.gpu) {
            (Some(l), Some(g)) => (l, g),
            _ => return Err(backend_error(role.name(), "no library or GPU")),
        };
        Ok(EngineKey {
            recipe: RECIPE,
            graph: role.name().to_string(),
            graph_sha256: sha(&spec.file)?,
            weights_sha256: sha(&self.manifest.weights.file)?,
            tensorrt: lib.version.clone(),
            gpu: gpu.name.clone(),
            sm: gpu.sm.clone(),
            precision: self.settings.precision.name().to_string(),
            budget,
            builder_flags: self.settings.flags(),
        })
    }

    fn timing_key(&self) -> Option<TimingKey> {
        let (lib, gpu) = (self.probe.library.as_ref()?, self.probe.gpu.as_ref()?);
        Some(TimingKey {
            tensorrt: lib.version.clone(),
            gpu: gpu.name.clone(),
            sm: gpu.sm.clone(),
        })
    }

    /// The engine of `role` (at `budget` for hrenc): from the cache if a valid entry is there, else
    /// built (from `package`, or the model's source) and stored.
    fn engine(
        &self,
        role: GraphRole,
        budget: Option<usize>,
        package: Option<&Package>,
        progress: &mut (dyn FnMut(&BuildEvent) + Send),
    ) -> Result<Arc<Engine>> {
        let key = self.key(role, budget)?;
        let spec = graph_spec(&self.manifest, role).clone();
        let start = Instant::now();
        let reason = match self.cache.as_ref().map(|c| (c, c.load_engine(&key))) {
            Some((c, Lookup::Hit(bytes))) => {
                match self
                    .lib
                    .load_engine(&bytes)
                    .map_err(|e| e.message)
                    .and_then(|e| check_io(&e, &spec, budget).map(|()| e))
                {
                    Ok(engine) => {
                        self.report(
                            progress,
                            EngineReport {
                                graph: role.name(),
                                budget,
                                source: EngineSource::Cache,
                                path: Some(c.engine_path(&key)),
                                bytes: bytes.len(),
                                seconds: start.elapsed().as_secs_f64(),
                            },
                        );
                        return Ok(Arc::new(engine));
                    }
                    Err(why) => format!(
                        "the cached engine {} was refused: {why}",
                        c.engine_path(&key).display()
                    ),
                }
            }
            Some((_, Lookup::Invalid(why))) => format!("the cached engine is unusable: {why}"),
            Some((_, Lookup::Miss)) => "not in the cache".to_string(),
            None => "no engine cache".to_string(),
        };
        progress(&BuildEvent::Building {
            graph: role.name(),
            budget,
            reason,
        });
        let start = Instant::now();
        let blob = match package {
            Some(p) => self.build(p, role, budget, progress)?,
            None => {
                let package = self.package_for_build()?;
                self.build(&package, role, budget, progress)?
            }
        };
        let bytes = blob.bytes();
        let engine = self.lib.load_engine(bytes).map_err(|e| {
            backend_error(
                role.name(),
                format!("the engine just built does not load: {e}"),
            )
        })?;
        check_io(&engine, &spec, budget).map_err(|e| backend_error(role.name(), e))?;
        let path = self.cache.as_ref().and_then(|c| match c.store_engine(&key, bytes) {
            Ok(p) => Some(p),
            Err(e) => {
                log::warn!(
                    "cannot write the engine to the cache {}: {e} (it will be rebuilt next time)",
                    c.dir().display()
                );
                None
            }
        });
        self.report(
            progress,
            EngineReport {
                graph: role.name(),
                budget,
                source: EngineSource::Built,
                path,
                bytes: bytes.len(),
                seconds: start.elapsed().as_secs_f64(),
            },
        );
        Ok(Arc::new(engine))
    }

    fn report(&self, progress: &mut (dyn FnMut(&BuildEvent) + Send), report: EngineReport) {
        lock(&self.reports).push(report.clone());
        progress(&BuildEvent::Ready(report));
    }

    /// The package to build from when the load's package is gone: the in-memory copy, or the
    /// directory re-opened and checked to be the same package (same graph and weight hashes).
    fn package_for_build(&self) -> Result<Package> {
        let source = lock(&self.source);
        match &*source {
            Source::Memory(p) => Ok((**p).clone()),
            Source::Dir(dir) => {
                let p = Package::open(dir)?;
                let same = self.manifest.files.iter().all(|(name, e)| {
                    p.manifest()
                        .files
                        .get(name)
                        .is_some_and(|f| f.sha256.eq_ignore_ascii_case(&e.sha256))
                });
                if !same {
                    return Err(Error::package(
                        &self.origin,
                        "manifest.json",
                        "the package changed on disk since the model was loaded; load it again",
                    ));
                }
                Ok(p)
            }
        }
    }

    /// Parse and build one graph.
    fn build(
        &self,
        package: &Package,
        role: GraphRole,
        budget: Option<usize>,
        progress: &mut (dyn FnMut(&BuildEvent) + Send),
    ) -> Result<ffi::Blob> {
        let stage = role.name();
        let spec = package.graph_spec(role);
        let onnx = package.file(&spec.file)?;
        let weights_name = &package.manifest().weights.file;
        let weights = package.file(weights_name)?;
        let externals = external_initializers(onnx, weights_name, weights.len())
            .map_err(|e| Error::package(package.origin(), &spec.file, e))?;
        let in_memory = self
            .probe
            .library
            .as_ref()
            .is_some_and(|l| l.load_initializer);
        let initializers: Vec<Initializer<'_>> = if in_memory {
            externals
                .iter()
                .map(|(name, range)| Initializer {
                    name,
                    data: &weights[range.clone()],
                })
                .collect()
        } else {
            Vec::new()
        };
        // Before TensorRT 10.13 the parser reads external data from files next to the model: the
        // package directory, or a private copy of an in-memory package.
        let temp;
        let model_path = if in_memory || externals.is_empty() {
            None
        } else if let Some(dir) = package.dir() {
            Some(absolute(&dir.join(&spec.file)))
        } else {
            temp = TempDir::new()?;
            for name in [spec.file.as_str(), weights_name.as_str()] {
                let path = temp.0.join(name);
                std::fs::write(&path, package.file(name)?).map_err(|e| Error::io(&path, e))?;
            }
            Some(temp.0.join(&spec.file))
        };
        let shapes: Vec<(String, Vec<i64>)> = spec
            .inputs
            .iter()
            .filter(|t| t.shape.iter().any(|d| matches!(d, Dim::Named(_))))
            .map(|t| {
                resolve(&t.shape, budget.unwrap_or(0))
                    .map(|dims| (t.name.clone(), dims))
                    .map_err(|e| backend_error(stage, e))
            })
            .collect::<Result<_>>()?;
        let timing_key = self.timing_key();
        let timing = match (&self.cache, &timing_key) {
            (Some(c), Some(k)) => match c.load_timing(k) {
                Lookup::Hit(bytes) => Some(bytes),
                Lookup::Miss => None,
                Lookup::Invalid(why) => {
                    log::warn!("timing cache refused, starting a new one: {why}");
                    None
                }
            },
            _ => None,
        };
        let request = ffi::BuildRequest {
            onnx,
            model_path: model_path.as_deref(),
            initializers: &initializers,
            shapes: &shapes,
            fp16: self.settings.precision == Precision::Fp16,
            tf32: self.settings.precision != Precision::Fp32,
            optimization_level: self.settings.optimization_level,
            workspace_bytes: self.settings.workspace_bytes,
            timing_cache: timing.as_deref(),
        };
        let sink = Mutex::new(progress);
        let done = AtomicBool::new(false);
        let start = Instant::now();
        let result = std::thread::scope(|s| {
            s.spawn(|| {
                let mut next = TICK;
                while !done.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                    if start.elapsed() >= next {
                        next += TICK;
                        let mut f = lock(&sink);
                        (*f)(&BuildEvent::Elapsed {
                            graph: stage,
                            elapsed: start.elapsed(),
                        });
                    }
                }
            });
            let mut forward = |ev: ffi::RawProgress| {
                let event = match ev {
                    ffi::RawProgress::Start {
                        phase,
                        parent,
                        steps,
                    } => BuildEvent::Phase {
                        graph: stage,
                        phase,
                        parent,
                        steps,
                    },
                    ffi::RawProgress::Step { phase, step } => BuildEvent::Step {
                        graph: stage,
                        phase,
                        step,
                    },
                    ffi::RawProgress::Finish => return true,
                };
                let mut f = lock(&sink);
                (*f)(&event);
                true
            };
            let r = self.lib.build(&request, &mut forward);
            done.store(true, Ordering::Relaxed);
            r
        });
        let (engine, timing_out) = result.map_err(|e| {
            backend_error(
                stage,
                format!(
                    "engine build failed{}: {e}",
                    budget.map(|k| format!(" (K = {k})")).unwrap_or_default()
                ),
            )
        })?;
        if let (Some(c), Some(k), Some(t)) = (&self.cache, &timing_key, &timing_out)
            && let Err(e) = c.store_timing(k, t.bytes())
        {
            log::warn!("cannot write the timing cache: {e}");
        }
        Ok(engine)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn graph_spec(manifest: &Manifest, role: GraphRole) -> &GraphSpec {
    match role {
        GraphRole::LowRes => &manifest.graphs.lowres,
        GraphRole::HrSel => &manifest.graphs.hrsel,
        GraphRole::HrEnc => &manifest.graphs.hrenc,
    }
}

/// The dimensions of `shape` with the named dimension "K" set to `k`.
fn resolve(shape: &[Dim], k: usize) -> std::result::Result<Vec<i64>, String> {
    shape
        .iter()
        .map(|d| match d {
            Dim::Fixed(n) => i64::try_from(*n).map_err(|_| format!("dimension {n}")),
            Dim::Named(s) if s == "K" && k > 0 => {
                i64::try_from(k).map_err(|_| format!("budget {k}"))
            }
            Dim::Named(s) => Err(format!("named dimension {s:?} has no value")),
        })
        .collect()
}

/// Number of values of `shape` with K = `k`.
fn spec_len(shape: &[Dim], k: usize) -> std::result::Result<usize, String> {
    resolve(shape, k)?
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(usize::try_from(d).ok()?))
        .ok_or_else(|| "shape overflows".to_string())
}

/// The engine's inputs and outputs must be the manifest's: names, float32, shapes (K = `budget`).
fn check_io(
    engine: &Engine,
    spec: &GraphSpec,
    budget: Option<usize>,
) -> std::result::Result<(), String> {
    let io = engine.io();
    let k = budget.unwrap_or(0);
    for (is_input, tensors) in [(true, &spec.inputs), (false, &spec.outputs)] {
        let kind = if is_input { "input" } else { "output" };
        let found: Vec<_> = io.iter().filter(|t| t.is_input == is_input).collect();
        if found.len() != tensors.len() {
            return Err(format!(
                "engine has {} {kind}s, the manifest lists {}",
                found.len(),
                tensors.len()
            ));
        }
        for t in tensors {
            let e = found
                .iter()
                .find(|e| e.name == t.name)
                .ok_or_else(|| format!("engine has no {kind} {}", t.name))?;
            if e.dtype != 0 {
                return Err(format!(
                    "{kind} {} has TensorRT type {}, not float32",
                    t.name, e.dtype
                ));
            }
            let want = resolve(&t.shape, k)?;
            // Inputs: the profile's shape; outputs may report -1 where the manifest says K.
            let got = if is_input { &e.profile_dims } else { &e.dims };
            let same = got.len() == want.len()
                && got
                    .iter()
                    .zip(&want)
                    .zip(&t.shape)
                    .all(|((&g, &w), d)| g == w || (g == -1 && matches!(d, Dim::Named(_))));
            if !same {
                return Err(format!(
                    "{kind} {} has shape {got:?}, the manifest says {want:?}",
                    t.name
                ));
            }
        }
    }
    Ok(())
}

/// The graph's external initializers: (name, byte range in the weights file), checked against it.
fn external_initializers(
    onnx: &[u8],
    weights_name: &str,
    weights_len: usize,
) -> std::result::Result<Vec<(String, std::ops::Range<usize>)>, String> {
    let mut bytes = onnx;
    let proto = tract_onnx::onnx()
        .proto_model_for_read(&mut bytes)
        .map_err(|e| format!("not a valid ONNX model: {e}"))?;
    let graph = proto.graph.ok_or("ONNX model without a graph")?;
    let mut out = Vec::new();
    for init in graph.initializer {
        if init.data_location != Some(DataLocation::External as i32) {
            continue;
        }
        let (mut location, mut offset, mut length) = (None, 0usize, None);
        for kv in &init.external_data {
            match kv.key.as_str() {
                "location" => location = Some(kv.value.clone()),
                "offset" => {
                    offset = kv
                        .value
                        .parse()
                        .map_err(|_| format!("{}: bad external offset", init.name))?
                }
                "length" => {
                    length = Some(
                        kv.value
                            .parse::<usize>()
                            .map_err(|_| format!("{}: bad external length", init.name))?,
                    )
                }
                _ => {}
            }
        }
        if location.as_deref() != Some(weights_name) {
            return Err(format!(
                "initializer {} refers to external file {location:?}; only {weights_name} is allowed",
                init.name
            ));
        }
        let length =
            length.ok_or_else(|| format!("initializer {}: no external length", init.name))?;
        let end = offset
            .checked_add(length)
            .filter(|&e| e <= weights_len)
            .ok_or_else(|| {
                format!(
                    "initializer {}: range {offset}+{length} is outside {weights_name}",
                    init.name
                )
            })?;
        out.push((init.name, offset..end));
    }
    Ok(out)
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// A private temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("ps3rt-trt-{}-{nanos}", std::process::id()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&dir)
                .map_err(|e| Error::io(&dir, e))?;
        }
        #[cfg(not(unix))]
        std::fs::create_dir(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl BackendModel for TensorRtModel {
    fn name(&self) -> &'static str {
        NAME
    }

    fn new_session(&self, budget: usize) -> Result<Box<dyn Session>> {
        let hrenc = self.hrenc_engine(budget, &mut |e| log_progress(e))?;
        let err = |stage: &'static str| move |e: ffi::ShimError| backend_error(stage, e);
        let s = &self.shapes;
        let lib = &self.core.lib;
        let stream = Arc::new(lib.stream().map_err(err("session"))?);
        let host = |n: usize| -> Result<(Arc<Buffer>, Host)> {
            let (b, h) = lib.buffer(n, true).map_err(err("session"))?;
            Ok((
                b,
                h.ok_or_else(|| backend_error("session", "no host view"))?,
            ))
        };
        let (lowres_in, lowres_in_host) = host(s.lowres_in)?;
        log::debug!(
            "TensorRT session (K = {budget}): {}",
            if lowres_in.mapped() {
                "mapped host memory (integrated GPU: no copies)"
            } else {
                "device buffers with pinned host mirrors"
            }
        );
        let (hidden, hidden_host) = host(s.hidden)?;
        let (kv, _) = lib.buffer(s.kv, false).map_err(err("session"))?;
        let (sel_feat, sel_feat_host) = host(s.sel_feat)?;
        let (hrsel_in, hrsel_in_host) = host(s.hrsel_in)?;
        let (hr_feat, hr_feat_host) = host(s.hr_feat)?;
        let (patches, patches_host) = host(budget * s.patch_values)?;
        let (pos, pos_host) = host(budget * s.width)?;
        let (features, features_host) = host(budget * s.width)?;
        let g = &self.core.manifest.graphs;
        let name = |spec: &GraphSpec, input: bool, i: usize| -> Result<String> {
            let list = if input { &spec.inputs } else { &spec.outputs };
            list.get(i)
                .map(|t| t.name.clone())
                .ok_or_else(|| backend_error("session", "the manifest lacks a graph tensor"))
        };
        let mut lowres = Stage::create(&self.lowres, &stream).map_err(err("lowres"))?;
        bind_all(
            &mut lowres,
            &[
                (name(&g.lowres, true, 0)?, &lowres_in, Transfer::Upload),
                (name(&g.lowres, false, 0)?, &hidden, Transfer::Download),
                (name(&g.lowres, false, 1)?, &kv, Transfer::None),
                (name(&g.lowres, false, 2)?, &sel_feat, Transfer::Download),
            ],
        )
        .map_err(err("lowres"))?;
        let mut hrsel = Stage::create(&self.hrsel, &stream).map_err(err("hrsel"))?;
        bind_all(
            &mut hrsel,
            &[
                (name(&g.hrsel, true, 0)?, &hrsel_in, Transfer::Upload),
                (name(&g.hrsel, false, 0)?, &hr_feat, Transfer::Download),
            ],
        )
        .map_err(err("hrsel"))?;
        let mut hrenc_stage = Stage::create(&hrenc, &stream).map_err(err("hrenc"))?;
        bind_all(
            &mut hrenc_stage,
            &[
                (name(&g.hrenc, true, 0)?, &patches, Transfer::Upload),
                (name(&g.hrenc, true, 1)?, &pos, Transfer::Upload),
                (name(&g.hrenc, true, 2)?, &kv, Transfer::None),
                (name(&g.hrenc, false, 0)?, &features, Transfer::Download),
            ],
        )
        .map_err(err("hrenc"))?;
        Ok(Box::new(TensorRtSession {
            lowres,
            hrsel,
            hrenc: hrenc_stage,
            lowres_in: lowres_in_host,
            hidden: hidden_host,
            sel_feat: sel_feat_host,
            hrsel_in: hrsel_in_host,
            hr_feat: hr_feat_host,
            patches: patches_host,
            pos: pos_host,
            features: features_host,
            cuda_graph: self.cuda_graph,
            lowres_done: false,
            hrsel_done: false,
            hrenc_done: false,
        }))
    }

    /// Not built yet: the shim's engine cache, builder and contexts are written for the three vision
    /// stages (fixed input names, the KV cache kept on the device), and nothing of a pool engine has run
    /// on a GPU. A clear error instead of an untested engine.
    fn new_pool_session(&self, _tokens: usize) -> Result<Box<dyn crate::backend::PoolSession>> {
        Err(backend_error(
            "pool",
            "the region pool head (region embeddings and labels) is not supported by the TensorRT backend yet; \
             load the model with the tract backend (--backend tract, PS3RT_BACKEND_TRACT) to label regions",
        ))
    }
}

fn bind_all(
    stage: &mut Stage,
    bindings: &[(String, &Arc<Buffer>, Transfer)],
) -> std::result::Result<(), ffi::ShimError> {
    bindings
        .iter()
        .try_for_each(|(name, buffer, transfer)| stage.bind(name, buffer, *transfer))
}

/// One encoder's TensorRT state: execution contexts on one stream, buffers allocated once, the KV
/// cache on the device.
struct TensorRtSession {
    lowres: Stage,
    hrsel: Stage,
    hrenc: Stage,
    lowres_in: Host,
    hidden: Host,
    sel_feat: Host,
    hrsel_in: Host,
    hr_feat: Host,
    patches: Host,
    pos: Host,
    features: Host,
    cuda_graph: bool,
    lowres_done: bool,
    hrsel_done: bool,
    hrenc_done: bool,
}

impl Session for TensorRtSession {
    fn plane_inputs(&mut self) -> Result<(&mut [f32], &mut [f32])> {
        Ok((self.lowres_in.as_mut_slice(), self.hrsel_in.as_mut_slice()))
    }

    fn run_lowres(&mut self) -> Result<()> {
        self.lowres_done = false;
        self.hrenc_done = false;
        self.lowres
            .run(self.cuda_graph)
            .map_err(|e| backend_error("lowres", e))?;
        self.lowres_done = true;
        Ok(())
    }

    fn lowres_hidden(&self) -> Result<&[f32]> {
        self.lowres_done
            .then(|| self.hidden.as_slice())
            .ok_or_else(|| crate::backend::not_run(NAME, "lowres"))
    }

    fn sel_feat(&self) -> Result<&[f32]> {
        self.lowres_done
            .then(|| self.sel_feat.as_slice())
            .ok_or_else(|| crate::backend::not_run(NAME, "lowres"))
    }

    fn run_hrsel(&mut self) -> Result<()> {
        self.hrsel_done = false;
        self.hrsel
            .run(self.cuda_graph)
            .map_err(|e| backend_error("hrsel", e))?;
        self.hrsel_done = true;
        Ok(())
    }

    fn hr_feat(&self) -> Result<&[f32]> {
        self.hrsel_done
            .then(|| self.hr_feat.as_slice())
            .ok_or_else(|| crate::backend::not_run(NAME, "hrsel"))
    }

    fn hrenc_inputs(&mut self) -> Result<HrencInputs<'_>> {
        Ok(HrencInputs {
            patches: self.patches.as_mut_slice(),
            positions: self.pos.as_mut_slice(),
            selection_plane: self.hrsel_in.as_slice(),
        })
    }

    fn run_hrenc(&mut self) -> Result<()> {
        if !self.lowres_done {
            return Err(crate::backend::no_kv_cache(NAME));
        }
        self.hrenc_done = false;
        self.hrenc
            .run(self.cuda_graph)
            .map_err(|e| backend_error("hrenc", e))?;
        self.hrenc_done = true;
        Ok(())
    }

    fn features(&self) -> Result<&[f32]> {
        self.hrenc_done
            .then(|| self.features.as_slice())
            .ok_or_else(|| crate::backend::not_run(NAME, "hrenc"))
    }
}

/// Build (or find in the cache) every engine `package` needs for `budgets` (the package's budget
/// when empty), reporting progress; what `ps3rt build-engines` runs.
pub fn build_engines(
    package: &Package,
    options: &TensorRtOptions,
    budgets: &[usize],
    progress: &mut (dyn FnMut(&BuildEvent) + Send),
) -> Result<Vec<EngineReport>> {
    let model = TensorRtModel::load_with_progress(package, options, progress)?;
    for &k in budgets {
        model.prepare_budget(k, progress)?;
    }
    Ok(model.reports())
}
