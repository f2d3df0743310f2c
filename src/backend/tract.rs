//! The CPU backend: tract plans, optimized once per model and shared by every session.
//!
//! The high-res graph keeps its budget dimension `K` symbolic, so one optimized plan serves every
//! budget; a session's state and buffers are made for its budget. Inputs live in tensors the session
//! owns and lends to tract for the duration of a run (shared, so tract never writes into them); the KV
//! cache output of the low-res run is handed to the high-res runs without a copy.

use std::sync::Arc;

use tract_linalg::multithread::Executor;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::runtime::RunOptions;

use super::{BackendModel, HrencInputs, PoolSession, Session};
use crate::error::{Error, Result};
use crate::package::{GraphRole, OptionalGraph, Package};

const NAME: &str = "tract";

fn backend_error(stage: &str, e: impl std::fmt::Display) -> Error {
    super::stage_error(NAME, stage, format_args!("{e:#}"))
}

/// Shapes the sessions allocate.
#[derive(Debug, Clone)]
struct Shapes {
    lowres_in: [usize; 4],
    hrsel_in: [usize; 4],
    patch_values: usize,
    width: usize,
}

/// The three graphs as optimized tract plans.
pub struct TractModel {
    lowres: Arc<TypedRunnableModel>,
    hrsel: Arc<TypedRunnableModel>,
    hrenc: Arc<TypedRunnableModel>,
    shapes: Shapes,
    threads: usize,
    /// The worker threads of the multi-threaded executor (None when single-threaded).
    workers: Option<Arc<rayon::ThreadPool>>,
    /// The region pool head and its region count R, when the package has one (issue 10).
    pool: Option<(Arc<TypedRunnableModel>, usize)>,
}

impl std::fmt::Debug for TractModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TractModel")
            .field("threads", &self.threads)
            .finish()
    }
}

/// The package's graph for `role` as tract gets it: the exported ONNX graph with the rewrites of
/// `tract_rewrite` applied (the high-res graph's attention values concatenated as flat rows, so tract
/// runs one product over all keys instead of slicing the score matrix).
pub fn graph_for_tract(package: &Package, role: GraphRole) -> Result<tract_onnx::pb::ModelProto> {
    let mut proto = package.graph_proto(role)?;
    if role == GraphRole::HrEnc
        && let Some(graph) = proto.graph.as_mut()
    {
        let head_dim = package.manifest().model.head_dim;
        let n = super::tract_rewrite::flatten_value_concats(graph, head_dim);
        log::debug!("hrenc: {n} attention value concatenations flattened for tract");
    }
    Ok(proto)
}

impl TractModel {
    /// Parse, type and optimize the package's graphs; `threads` = 0 uses every available core.
    pub fn load(package: &Package, threads: usize) -> Result<TractModel> {
        let threads = super::cpu_thread_count(threads);
        let workers = super::start_worker_pool(threads, "ps3rt-tract")
            .map_err(|e| backend_error("load", e))?
            .map(Arc::new);
        let executor = match &workers {
            Some(pool) => Executor::MultiThread(Arc::clone(pool)),
            None => Executor::SingleThread,
        };
        let options = RunOptions {
            executor: Some(executor),
            ..RunOptions::default()
        };
        let g = package.geometry();
        let m = &package.manifest().model;
        let shapes = Shapes {
            lowres_in: [1, 3, g.lowres_size(), g.lowres_size()],
            hrsel_in: [1, 3, g.hrsel_input(), g.hrsel_input()],
            patch_values: 3 * g.patch() * g.patch(),
            width: m.width,
        };
        let plan = |role: GraphRole| -> Result<Arc<TypedRunnableModel>> {
            let stage = role.name();
            let proto = graph_for_tract(package, role)?;
            let onnx = tract_onnx::onnx();
            let mut model = onnx
                .model_for_proto_model(&proto)
                .map_err(|e| backend_error(stage, e))?;
            drop(proto);
            match role {
                GraphRole::LowRes => model.set_input_fact(0, f32::fact(shapes.lowres_in).into()),
                GraphRole::HrSel => model.set_input_fact(0, f32::fact(shapes.hrsel_in).into()),
                GraphRole::HrEnc => {
                    let k = model.symbols.sym("K");
                    let n = g.lowres_tokens();
                    model
                        .set_input_fact(
                            0,
                            f32::fact(&[k.to_dim(), shapes.patch_values.to_dim()]).into(),
                        )
                        .and_then(|_| {
                            model.set_input_fact(
                                1,
                                f32::fact(&[k.to_dim(), shapes.width.to_dim()]).into(),
                            )
                        })
                        .and_then(|_| {
                            model.set_input_fact(
                                2,
                                f32::fact([m.depth, 2, m.heads, n, m.head_dim]).into(),
                            )
                        })
                }
            }
            .map_err(|e| backend_error(stage, e))?;
            let typed = model
                .into_optimized()
                .map_err(|e| backend_error(stage, e))?;
            typed
                .into_runnable_with_options(&options)
                .map_err(|e| backend_error(stage, e))
        };
        Ok(TractModel {
            lowres: plan(GraphRole::LowRes)?,
            hrsel: plan(GraphRole::HrSel)?,
            hrenc: plan(GraphRole::HrEnc)?,
            shapes,
            threads,
            workers,
            pool: pool_plan(package, &options)?,
        })
    }

    /// Worker threads the plans use.
    pub fn threads(&self) -> usize {
        self.threads
    }
}

impl BackendModel for TractModel {
    fn name(&self) -> &'static str {
        NAME
    }

    fn new_session(&self, budget: usize) -> Result<Box<dyn Session>> {
        let state = |plan: &Arc<TypedRunnableModel>, stage: &str| {
            TypedSimpleState::new(plan).map_err(|e| backend_error(stage, e))
        };
        let zeros = |shape: &[usize]| {
            Arc::new(Tensor::zero::<f32>(shape).unwrap_or_else(|_| Tensor::default()))
        };
        Ok(Box::new(TractSession {
            lowres: state(&self.lowres, "lowres")?,
            hrsel: state(&self.hrsel, "hrsel")?,
            hrenc: state(&self.hrenc, "hrenc")?,
            lowres_in: zeros(&self.shapes.lowres_in),
            hrsel_in: zeros(&self.shapes.hrsel_in),
            patches_in: zeros(&[budget, self.shapes.patch_values]),
            pos_in: zeros(&[budget, self.shapes.width]),
            lowres_out: None,
            hrsel_out: None,
            hrenc_out: None,
        }))
    }

    fn new_pool_session(&self, tokens: usize) -> Result<Box<dyn PoolSession>> {
        new_pool_session(self.pool.as_ref(), tokens, self.shapes.width)
    }

    fn worker_pool(&self) -> Option<&rayon::ThreadPool> {
        self.workers.as_deref()
    }

    fn cpu_threads(&self) -> Option<usize> {
        Some(self.threads)
    }
}

struct TractSession {
    lowres: TypedSimpleState,
    hrsel: TypedSimpleState,
    hrenc: TypedSimpleState,
    lowres_in: Arc<Tensor>,
    hrsel_in: Arc<Tensor>,
    patches_in: Arc<Tensor>,
    pos_in: Arc<Tensor>,
    /// hidden, kv_cache, sel_feat
    lowres_out: Option<TVec<TValue>>,
    hrsel_out: Option<TValue>,
    hrenc_out: Option<TValue>,
}

/// A mutable f32 view of a tensor the session owns (cloned only if tract still holds it, which it
/// does not after a run returns).
fn writable<'a>(t: &'a mut Arc<Tensor>, stage: &str) -> Result<&'a mut [f32]> {
    let t = Arc::make_mut(t);
    if t.datum_type() != f32::datum_type() {
        return Err(backend_error(
            stage,
            format!("input tensor is {:?}, not f32", t.datum_type()),
        ));
    }
    let bytes = t
        .as_plain_ram_storage_mut()
        .ok_or_else(|| backend_error(stage, "input tensor is not in host memory"))?
        .as_bytes_mut();
    bytemuck::try_cast_slice_mut(bytes)
        .map_err(|e| backend_error(stage, format!("input tensor layout: {e}")))
}

fn readable<'a>(v: Option<&'a TValue>, stage: &str) -> Result<&'a [f32]> {
    let t: &'a Tensor = v.ok_or_else(|| super::not_run(NAME, stage))?;
    t.try_as_plain_ram()
        .and_then(|view| view.as_slice::<f32>())
        .map_err(|e| backend_error(stage, e))
}

impl Session for TractSession {
    fn plane_inputs(&mut self) -> Result<(&mut [f32], &mut [f32])> {
        Ok((
            writable(&mut self.lowres_in, "lowres")?,
            writable(&mut self.hrsel_in, "hrsel")?,
        ))
    }

    fn run_lowres(&mut self) -> Result<()> {
        self.lowres_out = None;
        let out = self
            .lowres
            .run(tvec![TValue::from_const(self.lowres_in.clone())])
            .map_err(|e| backend_error("lowres", e))?;
        if out.len() != 3 {
            return Err(backend_error(
                "lowres",
                format!("{} outputs, expected 3", out.len()),
            ));
        }
        self.lowres_out = Some(out);
        Ok(())
    }

    fn lowres_hidden(&self) -> Result<&[f32]> {
        readable(self.lowres_out.as_ref().map(|o| &o[0]), "lowres")
    }

    fn sel_feat(&self) -> Result<&[f32]> {
        readable(self.lowres_out.as_ref().map(|o| &o[2]), "lowres")
    }

    fn run_hrsel(&mut self) -> Result<()> {
        self.hrsel_out = None;
        let mut out = self
            .hrsel
            .run(tvec![TValue::from_const(self.hrsel_in.clone())])
            .map_err(|e| backend_error("hrsel", e))?;
        self.hrsel_out = Some(
            out.pop()
                .ok_or_else(|| backend_error("hrsel", "no output"))?,
        );
        Ok(())
    }

    fn hr_feat(&self) -> Result<&[f32]> {
        readable(self.hrsel_out.as_ref(), "hrsel")
    }

    fn hrenc_inputs(&mut self) -> Result<HrencInputs<'_>> {
        Ok(HrencInputs {
            patches: writable(&mut self.patches_in, "hrenc")?,
            positions: writable(&mut self.pos_in, "hrenc")?,
            selection_plane: self
                .hrsel_in
                .try_as_plain_ram()
                .and_then(|view| view.as_slice::<f32>())
                .map_err(|e| backend_error("hrsel", e))?,
        })
    }

    fn run_hrenc(&mut self) -> Result<()> {
        self.hrenc_out = None;
        let kv = self
            .lowres_out
            .as_ref()
            .map(|o| o[1].clone())
            .ok_or_else(|| super::no_kv_cache(NAME))?;
        let inputs = tvec![
            TValue::from_const(self.patches_in.clone()),
            TValue::from_const(self.pos_in.clone()),
            kv
        ];
        let mut out = self
            .hrenc
            .run(inputs)
            .map_err(|e| backend_error("hrenc", e))?;
        self.hrenc_out = Some(
            out.pop()
                .ok_or_else(|| backend_error("hrenc", "no output"))?,
        );
        Ok(())
    }

    fn features(&self) -> Result<&[f32]> {
        readable(self.hrenc_out.as_ref(), "hrenc")
    }
}

/// The pool graph as a tract plan with its token count `N` symbolic (one plan for every budget and
/// step count) and its region count, or None when the package has no pool head.
fn pool_plan(
    package: &Package,
    options: &RunOptions,
) -> Result<Option<(Arc<TypedRunnableModel>, usize)>> {
    if package.optional_graph_spec(OptionalGraph::Pool).is_none() {
        return Ok(None);
    }
    let stage = "pool";
    let width = package.manifest().model.width;
    let proto = package.optional_graph_proto(OptionalGraph::Pool)?;
    let mut model = tract_onnx::onnx()
        .model_for_proto_model(&proto)
        .map_err(|e| backend_error(stage, e))?;
    drop(proto);
    let regions = super::pool_regions(package)
        .ok_or_else(|| backend_error(stage, "the pool graph has no fixed region count"))?;
    let n = model.symbols.sym("N");
    model
        .set_input_fact(0, f32::fact(&[n.to_dim(), width.to_dim()]).into())
        .and_then(|_| model.set_input_fact(1, f32::fact(&[regions.to_dim(), n.to_dim()]).into()))
        .map_err(|e| backend_error(stage, e))?;
    let typed = model
        .into_optimized()
        .map_err(|e| backend_error(stage, e))?;
    Ok(Some((
        typed
            .into_runnable_with_options(options)
            .map_err(|e| backend_error(stage, e))?,
        regions,
    )))
}

fn new_pool_session(
    pool: Option<&(Arc<TypedRunnableModel>, usize)>,
    tokens: usize,
    width: usize,
) -> Result<Box<dyn PoolSession>> {
    let (plan, regions) = pool.ok_or_else(|| {
        backend_error(
            "pool",
            "the package has no region pool head (graphs.pool); re-export it with tools/export/ps3_export.py",
        )
    })?;
    let regions = *regions;
    if tokens == 0 {
        return Err(backend_error("pool", "a pool run needs at least one token"));
    }
    let zeros = |shape: &[usize]| {
        Tensor::zero::<f32>(shape)
            .map(Arc::new)
            .map_err(|e| backend_error("pool", e))
    };
    Ok(Box::new(TractPoolSession {
        state: TypedSimpleState::new(plan).map_err(|e| backend_error("pool", e))?,
        tokens_in: zeros(&[tokens, width])?,
        mask_in: zeros(&[regions, tokens])?,
        regions,
        out: None,
    }))
}

struct TractPoolSession {
    state: TypedSimpleState,
    tokens_in: Arc<Tensor>,
    mask_in: Arc<Tensor>,
    regions: usize,
    out: Option<TValue>,
}

impl PoolSession for TractPoolSession {
    fn max_regions(&self) -> usize {
        self.regions
    }

    fn pool_inputs(&mut self) -> Result<(&mut [f32], &mut [f32])> {
        Ok((
            writable(&mut self.tokens_in, "pool")?,
            writable(&mut self.mask_in, "pool")?,
        ))
    }

    fn run_pool(&mut self) -> Result<()> {
        self.out = None;
        let mut out = self
            .state
            .run(tvec![
                TValue::from_const(self.tokens_in.clone()),
                TValue::from_const(self.mask_in.clone())
            ])
            .map_err(|e| backend_error("pool", e))?;
        self.out = Some(
            out.pop()
                .ok_or_else(|| backend_error("pool", "no output"))?,
        );
        Ok(())
    }

    fn embeddings(&self) -> Result<&[f32]> {
        readable(self.out.as_ref(), "pool")
    }
}
