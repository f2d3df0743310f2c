//! [`Encoder`]: one frame in, PS3 features out, with every buffer reused across frames.
//!
//! Stages: resample the 378 and 1512 planes straight from the frame -> low-res graph (KV cache kept in
//! the backend session) -> high-res selection graph -> probability map -> per step: per-scale top-k,
//! gather the selected 14x14 patches (resampled from the frame; those of the 1512 scale copied from the
//! selection plane, which is the same samples) and their position rows -> high-res graph -> features
//! in token order, token metadata, regions, timings.

use std::time::Instant;

use crate::backend::Session;
use crate::error::{Error, Result};
use crate::geometry::{FrameBox, TokenPos};
use crate::image::plan::{InputPlan, SourceKind};
use crate::image::resample::{self, Affine, PlaneJob, Resampler, RowSource};
use crate::image::{Frame, TensorImage};
use crate::model::Model;
use crate::output::{Output, TokenInfo};
use crate::select::{RegionFinder, Selector, probability_map};

/// Per-encoder settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EncodeOptions {
    /// High-res tokens per step, K (`None`: the package's budget).
    pub budget: Option<usize>,
    /// Look-close steps: each step selects K new patches and encodes them (`0` is taken as 1).
    pub steps: usize,
}

/// Where an encoder resamples 8-bit frames into the model's low-res and selection planes.
///
/// Normalized tensor inputs are always resampled on the CPU; so are the selected patches of the
/// scales other than the selection plane's (their cost grows with K, not with the frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Preprocess {
    /// On the CPU, on the backend's threads (the default).
    #[default]
    Cpu,
    /// On CUDA device `n` (cargo feature `cuda`; needs an NVIDIA driver and NVRTC, docs/performance.md).
    Gpu(i32),
}

impl Preprocess {
    /// Parse "cpu", "gpu" (device 0) or "gpu:N".
    pub fn parse(s: &str) -> Option<Preprocess> {
        match s {
            "cpu" => Some(Preprocess::Cpu),
            "gpu" => Some(Preprocess::Gpu(0)),
            _ => s
                .strip_prefix("gpu:")
                .and_then(|n| n.parse().ok())
                .filter(|&n: &i32| n >= 0)
                .map(Preprocess::Gpu),
        }
    }
}

impl std::fmt::Display for Preprocess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Preprocess::Cpu => f.write_str("cpu"),
            Preprocess::Gpu(n) => write!(f, "gpu:{n}"),
        }
    }
}

/// Encodes frames with one model. Use one encoder per thread; encoders share their model.
pub struct Encoder {
    /// The planes' resampler on a GPU, when [`Encoder::set_preprocess`] asked for one. Declared
    /// before `session`, so it is dropped first: it holds page locks on the session's buffers
    /// ([`crate::image::gpu::GpuResampler::lock_outputs`]), released before those are freed.
    #[cfg(feature = "cuda")]
    gpu: Option<crate::image::gpu::GpuResampler>,
    model: Model,
    session: Box<dyn Session>,
    budget: usize,
    steps: usize,
    split: Vec<usize>,
    plan: Option<InputPlan>,
    /// One resampling scratch per preprocessing thread (planes in bands, patches in groups).
    scratch: Vec<Resampler>,
    selector: Selector,
    regions: RegionFinder,
    step_tokens: Vec<TokenPos>,
    /// (token, row in `high_features`) of every step, sorted into token order at the end.
    order: Vec<(TokenPos, u32)>,
    high_features: Vec<f32>,
    /// Selection prompt `[C]` and its projection for the high-res branch `[D]` (the prior by default).
    prompt: Vec<f32>,
    prompt_hr: Vec<f32>,
    output: Output,
    /// Region labels (issue 10): the pool session and results of `label_regions`/`label_boxes`.
    labeler: crate::labels::RegionLabeler,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("budget", &self.budget)
            .field("steps", &self.steps)
            .finish()
    }
}

/// Backend graph runs in progress, in any encoder of the process (see [`in_backend_call`]).
static BACKEND_CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Run a backend call, counting it as in progress for its duration.
fn backend_call<T>(f: impl FnOnce() -> T) -> T {
    use std::sync::atomic::Ordering;
    BACKEND_CALLS.fetch_add(1, Ordering::SeqCst);
    let out = f();
    BACKEND_CALLS.fetch_sub(1, Ordering::SeqCst);
    out
}

/// Whether a backend graph run is in progress in this process (any thread, any encoder). Lets an
/// allocation counter tell ps3rt's own per-frame allocations (there are none in steady state) from
/// the backend's (tract allocates its intermediates on every run, on its own worker threads too).
#[doc(hidden)]
pub fn in_backend_call() -> bool {
    BACKEND_CALLS.load(std::sync::atomic::Ordering::SeqCst) > 0
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

impl Encoder {
    /// An encoder for `model` with the given budget and steps.
    pub fn new(model: &Model, options: EncodeOptions) -> Result<Encoder> {
        let inner = model.inner();
        let g = &inner.geometry;
        let total = g.total_high_patches();
        let budget = options.budget.unwrap_or(inner.manifest.geometry.budget);
        let steps = options.steps.max(1);
        if budget == 0 || budget > total {
            return Err(Error::InvalidArgument(format!(
                "budget {budget} outside 1..={total} (the high-res patches of scales {:?})",
                g.high_scales()
            )));
        }
        if steps.checked_mul(budget).is_none_or(|n| n > total) {
            return Err(Error::InvalidArgument(format!(
                "{steps} steps x budget {budget} exceeds the {total} high-res patches: later steps would run out of patches"
            )));
        }
        let session = inner.backend.new_session(budget)?;
        let width = inner.manifest.model.width;
        let output = Output {
            width,
            prob_grid: g.lowres_grid(),
            prob_map: vec![0.0; g.lowres_tokens()],
            budget,
            steps,
            ..Output::default()
        };
        Ok(Encoder {
            model: model.clone(),
            session,
            budget,
            steps,
            split: g.budget_split(budget),
            plan: None,
            scratch: (0..preprocess_threads())
                .map(|_| Resampler::default())
                .collect(),
            selector: Selector::default(),
            regions: RegionFinder::default(),
            step_tokens: Vec::with_capacity(budget),
            order: Vec::with_capacity(budget * steps),
            high_features: vec![0.0; budget * steps * width],
            prompt: inner.tables.prior_prompt.clone(),
            prompt_hr: inner.tables.prior_prompt_hr.clone(),
            output,
            labeler: crate::labels::RegionLabeler::default(),
            #[cfg(feature = "cuda")]
            gpu: None,
        })
    }

    /// Resample frames on the CPU or on a GPU from the next frame on. Asking for a GPU opens the
    /// CUDA device, allocates the encoder's stream and loads the kernels (compiled by NVRTC once
    /// per process); the error names what is missing (driver, device, NVRTC) and leaves the encoder
    /// as it was.
    pub fn set_preprocess(&mut self, preprocess: Preprocess) -> Result<()> {
        match preprocess {
            Preprocess::Cpu => {
                #[cfg(feature = "cuda")]
                {
                    self.gpu = None;
                }
                Ok(())
            }
            #[cfg(feature = "cuda")]
            Preprocess::Gpu(device) => {
                let mut gpu = crate::image::gpu::GpuResampler::new(device)?;
                // The previous resampler's page locks on the same buffers go first.
                self.gpu = None;
                lock_session_outputs(&mut gpu, self.session.as_mut());
                self.gpu = Some(gpu);
                Ok(())
            }
            #[cfg(not(feature = "cuda"))]
            Preprocess::Gpu(_) => Err(Error::InvalidArgument(
                "GPU preprocessing is not compiled in (cargo feature `cuda`)".into(),
            )),
        }
    }

    /// Where this encoder resamples frames.
    pub fn preprocess(&self) -> Preprocess {
        #[cfg(feature = "cuda")]
        if let Some(gpu) = &self.gpu {
            return Preprocess::Gpu(gpu.device());
        }
        Preprocess::Cpu
    }

    /// How long the parts of the last frame's GPU preprocessing took (`None` on the CPU).
    #[cfg(feature = "cuda")]
    pub fn gpu_timings(&self) -> Option<crate::image::gpu::GpuTimings> {
        self.gpu.as_ref().map(|g| g.timings())
    }

    /// The model this encoder runs.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// High-res tokens per step.
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// Look-close steps per frame.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// Per-scale split of the budget.
    pub fn budget_split(&self) -> &[usize] {
        &self.split
    }

    /// Select top-down: rank patches by similarity to `prompt` (a `[C]` embedding in the model's
    /// joint space, e.g. a PS3 text embedding) instead of the learned prior prompt, as PS3's `prompt=`
    /// does. `None` restores bottom-up selection.
    pub fn set_prompt(&mut self, prompt: Option<&[f32]>) -> Result<()> {
        let tables = &self.model.inner().tables;
        let Some(prompt) = prompt else {
            self.prompt.clone_from(&tables.prior_prompt);
            self.prompt_hr.clone_from(&tables.prior_prompt_hr);
            return Ok(());
        };
        let c = tables.prior_prompt.len();
        if prompt.len() != c {
            return Err(Error::InvalidArgument(format!(
                "prompt has {} values, the model's width is {c}",
                prompt.len()
            )));
        }
        if prompt.iter().any(|v| !v.is_finite()) || prompt.iter().all(|&v| v == 0.0) {
            return Err(Error::InvalidArgument(
                "prompt must be finite and not all zero".into(),
            ));
        }
        self.prompt.clear();
        self.prompt.extend_from_slice(prompt);
        // prompt_proj_for_highres, first D outputs: W [D, C] x prompt + b.
        let w = &tables.prompt_proj_hr_weight;
        self.prompt_hr.clear();
        self.prompt_hr.extend(
            tables
                .prompt_proj_hr_bias
                .iter()
                .enumerate()
                .map(|(d, &b)| {
                    let row = &w[d * c..(d + 1) * c];
                    b + row.iter().zip(prompt).map(|(x, y)| x * y).sum::<f32>()
                }),
        );
        Ok(())
    }

    /// Encode an 8-bit frame of any size (squashed to the model's square input, as PS3 does).
    pub fn encode(&mut self, frame: &Frame<'_>) -> Result<&Output> {
        let norm = self.model.inner().manifest.normalization;
        let affine = Affine::from_u8_normalization(norm.mean, norm.std);
        self.run(frame, Some(frame), SourceKind::Frame, affine, None)?;
        Ok(&self.output)
    }

    /// Encode an already normalized `[3, S_max, S_max]` tensor (PS3's `pixel_values`).
    pub fn encode_tensor(&mut self, tensor: &TensorImage<'_>) -> Result<&Output> {
        self.run(tensor, None, SourceKind::Tensor, Affine::IDENTITY, None)?;
        Ok(&self.output)
    }

    /// Encode a frame with a given selection instead of the model's: `steps[s]` lists the K tokens of
    /// step s (any order). Used to compare features with a reference for one identical selection.
    pub fn encode_with_selection(
        &mut self,
        input: Input<'_>,
        steps: &[Vec<TokenPos>],
    ) -> Result<&Output> {
        if steps.len() != self.steps {
            return Err(Error::InvalidArgument(format!(
                "{} selection steps given, the encoder runs {}",
                steps.len(),
                self.steps
            )));
        }
        if let Some((i, s)) = steps
            .iter()
            .enumerate()
            .find(|(_, s)| s.len() != self.budget)
        {
            return Err(Error::InvalidArgument(format!(
                "selection step {i} has {} tokens, the budget is {}",
                s.len(),
                self.budget
            )));
        }
        match input {
            Input::Frame(frame) => {
                let norm = self.model.inner().manifest.normalization;
                let affine = Affine::from_u8_normalization(norm.mean, norm.std);
                self.run(&frame, Some(&frame), SourceKind::Frame, affine, Some(steps))?
            }
            Input::Tensor(t) => {
                self.run(&t, None, SourceKind::Tensor, Affine::IDENTITY, Some(steps))?
            }
        }
        Ok(&self.output)
    }

    /// The output of the last successful encode.
    pub fn output(&self) -> &Output {
        &self.output
    }

    /// Embed the best selected regions of the last encode with the package's pool head and score
    /// them against its label bank (docs/labels.md). Results stay valid until the next labeling.
    pub fn label_regions(
        &mut self,
        options: &crate::labels::LabelOptions,
    ) -> Result<&[crate::labels::RegionLabel]> {
        self.labeler.label(&self.model, &self.output, None, options)
    }

    /// Embed and label the given boxes (frame pixels) of the last encode instead of its regions.
    pub fn label_boxes(
        &mut self,
        boxes: &[FrameBox],
        options: &crate::labels::LabelOptions,
    ) -> Result<&[crate::labels::RegionLabel]> {
        self.labeler
            .label(&self.model, &self.output, Some(boxes), options)
    }

    /// The results of the last `label_regions` or `label_boxes`.
    pub fn region_labels(&self) -> &[crate::labels::RegionLabel] {
        self.labeler.results()
    }

    /// Select top-down with a free-text prompt, encoded by the package's text tower (PS3's
    /// `text_model(tokenizer(text)).prompt`); an error when the package has no text tower.
    pub fn set_prompt_text(&mut self, text: &str) -> Result<()> {
        let e = self.model.encode_text(text)?;
        self.set_prompt(Some(&e.prompt))
    }

    /// Select top-down with the prompt of the bank label spelled exactly `label`.
    pub fn set_prompt_label(&mut self, label: &str) -> Result<()> {
        let prompt = self
            .model
            .labels()
            .label_prompt(self.model.origin(), label)?
            .to_vec();
        self.set_prompt(Some(&prompt))
    }

    /// `frame`: the 8-bit frame `src` reads, when it is one (GPU preprocessing takes its bytes).
    fn run(
        &mut self,
        src: &(dyn RowSource + Sync),
        frame: Option<&Frame<'_>>,
        kind: SourceKind,
        affine: Affine,
        given: Option<&[Vec<TokenPos>]>,
    ) -> Result<()> {
        let t_start = Instant::now();
        let inner = self.model.inner();
        let g = &inner.geometry;
        let (w, h) = (src.width(), src.height());
        if !self.plan.as_ref().is_some_and(|p| p.fits(kind, w, h)) {
            self.plan = Some(InputPlan::new(kind, w, h, g)?);
        }
        let plan = self
            .plan
            .as_ref()
            .ok_or_else(|| Error::InvalidFrame("no sampling plan".into()))?;
        let mut timings = crate::output::Timings::default();

        // Low-res and high-res selection planes, straight from the frame.
        let t = Instant::now();
        let workers = inner.backend.worker_pool();
        let graph_workers = workers.filter(|_| inner.backend.run_graphs_on_workers());
        // As many resampling threads as the backend may use (one: this thread alone, not rayon's
        // global pool).
        let threads = inner.backend.cpu_threads().unwrap_or(self.scratch.len());
        let threads = threads.clamp(1, self.scratch.len().max(1));
        let (lowres_in, hrsel_in) = self.session.plane_inputs()?;
        #[cfg(feature = "cuda")]
        let on_gpu = match (self.gpu.as_mut(), frame) {
            (Some(gpu), Some(frame)) => {
                // On the workers: the frame's copy to the GPU runs on two of them.
                on_workers(workers, || {
                    gpu.planes(frame, plan, &affine, lowres_in, hrsel_in)
                })?;
                true
            }
            _ => false,
        };
        #[cfg(not(feature = "cuda"))]
        let on_gpu = {
            let _ = frame;
            false
        };
        if !on_gpu {
            let scratch = &mut self.scratch[..threads];
            on_workers(workers, || {
                let mut planes = [
                    PlaneJob {
                        sampler: &plan.lowres,
                        size: g.lowres_size(),
                        out: lowres_in,
                    },
                    PlaneJob {
                        sampler: &plan.hrsel,
                        size: g.hrsel_input(),
                        out: hrsel_in,
                    },
                ];
                resample::planes_parallel(scratch, src, &mut planes, &affine)
            });
        }
        timings.preprocess_ms = ms(t);

        let t = Instant::now();
        let session = &mut self.session;
        graph_run(graph_workers, || session.run_lowres())?;
        timings.lowres_ms = ms(t);
        let t = Instant::now();
        let session = &mut self.session;
        graph_run(graph_workers, || session.run_hrsel())?;
        timings.hrsel_ms = ms(t);

        let t = Instant::now();
        let tables = &inner.tables;
        probability_map(
            g,
            self.session.sel_feat()?,
            self.session.hr_feat()?,
            &self.prompt,
            &self.prompt_hr,
            &mut self.output.prob_map,
        )?;
        self.selector.reset(g);
        timings.select_ms = ms(t);

        let width = inner.manifest.model.width;
        let patch = g.patch();
        self.order.clear();
        for step in 0..self.steps {
            let t = Instant::now();
            self.step_tokens.clear();
            match given {
                Some(steps) => {
                    self.selector.mark(g, &steps[step])?;
                    self.step_tokens.extend_from_slice(&steps[step]);
                }
                None => self.selector.select_step(
                    g,
                    &self.output.prob_map,
                    &self.split,
                    &mut self.step_tokens,
                ),
            }
            if self.step_tokens.len() != self.budget {
                return Err(Error::InvalidArgument(format!(
                    "step {step} selected {} tokens instead of {}: too few patches left",
                    self.step_tokens.len(),
                    self.budget
                )));
            }
            timings.select_ms += ms(t);

            let t = Instant::now();
            let inputs = self.session.hrenc_inputs()?;
            let (patches, pos) = (inputs.patches, inputs.positions);
            // Where the planes were resampled on a GPU, the frame is still there: gather there too.
            #[cfg(feature = "cuda")]
            let gathered = match (on_gpu, self.gpu.as_mut(), frame) {
                (true, Some(gpu), Some(frame)) if gpu.gathers() => {
                    gpu.gather(
                        frame,
                        &plan.high,
                        plan.hrsel_scale,
                        &self.step_tokens,
                        patch,
                        &affine,
                        patches,
                    )?;
                    true
                }
                _ => false,
            };
            #[cfg(not(feature = "cuda"))]
            let gathered = false;
            if !gathered {
                let copies = plan.hrsel_scale.map(|scale| SelectionPlane {
                    scale,
                    size: g.hrsel_input(),
                    values: inputs.selection_plane,
                });
                let (scratch, tokens) = (&mut self.scratch[..threads], &self.step_tokens);
                let job = GatherJob {
                    src,
                    samplers: &plan.high,
                    patch,
                    affine: &affine,
                    copies,
                };
                on_workers(workers, || gather_patches(scratch, &job, tokens, patches));
            }
            for (k, tok) in self.step_tokens.iter().enumerate() {
                let s = tok.scale as usize;
                let idx = tok.row as usize * g.grid(s) + tok.col as usize;
                pos[k * width..(k + 1) * width]
                    .copy_from_slice(&tables.pos[s][idx * width..(idx + 1) * width]);
            }
            timings.gather_ms += ms(t);

            let t = Instant::now();
            let session = &mut self.session;
            graph_run(graph_workers, || session.run_hrenc())?;
            let feats = self.session.features()?;
            let base = step * self.budget;
            self.high_features[base * width..(base + self.budget) * width].copy_from_slice(feats);
            for (k, tok) in self.step_tokens.iter().enumerate() {
                self.order.push((*tok, (base + k) as u32));
            }
            timings.hrenc_ms += ms(t);
        }

        // Assemble: low-res tokens, then high-res tokens in (scale, raster) order.
        let t = Instant::now();
        self.order.sort_unstable_by_key(|&(tok, _)| tok);
        let out = &mut self.output;
        let hidden = self.session.lowres_hidden()?;
        out.features.clear();
        out.features.extend_from_slice(hidden);
        out.selected.clear();
        for &(tok, row) in &self.order {
            let row = row as usize;
            out.features
                .extend_from_slice(&self.high_features[row * width..(row + 1) * width]);
            out.selected.push(tok);
        }
        if let Some(i) = out.features.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite(format!(
                "features (token {}, channel {})",
                i / width,
                i % width
            )));
        }
        let (fw, fh) = (w as u32, h as u32);
        let g0 = g.lowres_grid();
        let cell = (fw as f32 / g0 as f32, fh as f32 / g0 as f32);
        out.tokens.clear();
        for r in 0..g0 {
            for c in 0..g0 {
                out.tokens.push(TokenInfo {
                    scale: g.lowres_size() as u32,
                    row: r as u32,
                    col: c as u32,
                    bbox: FrameBox {
                        x: c as f32 * cell.0,
                        y: r as f32 * cell.1,
                        w: cell.0,
                        h: cell.1,
                    },
                });
            }
        }
        for &tok in &out.selected {
            out.tokens.push(TokenInfo {
                scale: g.high_scales()[tok.scale as usize] as u32,
                row: tok.row as u32,
                col: tok.col as u32,
                bbox: g.token_box(tok, fw, fh),
            });
        }
        self.regions.find(
            g,
            self.selector.taken(),
            &out.prob_map,
            fw,
            fh,
            &mut out.regions,
        );
        timings.select_ms += ms(t);
        out.frame_size = (fw, fh);
        timings.total_ms = ms(t_start);
        out.timings = timings;
        Ok(())
    }
}

/// Page-lock `session`'s planes and patch buffers for `gpu`'s downloads
/// ([`crate::image::gpu::GpuResampler::lock_outputs`]); a buffer the session cannot lend now is
/// logged and stays pageable.
#[cfg(feature = "cuda")]
fn lock_session_outputs(gpu: &mut crate::image::gpu::GpuResampler, session: &mut dyn Session) {
    // SAFETY (both calls): a session's buffers are allocated with it and stay where they are for
    // its whole life (the contract of Session::plane_inputs and Session::hrenc_inputs), and the
    // encoder drops or replaces its resampler while its session lives (`gpu` is declared before
    // `session` in Encoder, so it is dropped first).
    match session.plane_inputs() {
        Ok((lowres, hrsel)) => unsafe { gpu.lock_outputs(&[&*lowres, &*hrsel]) },
        Err(e) => log::info!("GPU preprocessing: the planes stay pageable: {e}"),
    }
    match session.hrenc_inputs() {
        Ok(inputs) => unsafe { gpu.lock_outputs(&[&*inputs.patches]) },
        Err(e) => log::info!("GPU preprocessing: the patches stay pageable: {e}"),
    }
}

/// Run `f` on the backend's worker threads when it has a pool (`rayon::ThreadPool::install`: the
/// caller blocks until `f` returns; the joins inside `f` then run on that pool), else here, where
/// its joins use rayon's global pool.
fn on_workers<R: Send>(workers: Option<&rayon::ThreadPool>, f: impl FnOnce() -> R + Send) -> R {
    match workers {
        Some(pool) => pool.install(f),
        None => f(),
    }
}

/// A graph run, on `workers` when given (the backend's pool, for a backend whose runs do not use it
/// themselves: [`crate::backend::BackendModel::run_graphs_on_workers`]), so the thread that returns
/// from the run is the one that goes on with the frame's next parallel step. Run from the calling
/// thread instead, the pool's threads fall asleep during every ONNX Runtime run, and on a virtual
/// machine waking a halted vCPU takes milliseconds: the second resampling band often started only
/// after the first had finished (docs/performance.md, finding 28: 720p preprocessing 4.1 - 4.9 ->
/// 2.7 - 3.0 ms with ONNX Runtime).
fn graph_run<R: Send>(workers: Option<&rayon::ThreadPool>, f: impl FnOnce() -> R + Send) -> R {
    on_workers(workers, || backend_call(f))
}

/// Threads that resample the planes and patches: every core, up to 4 (beyond that the frame's memory
/// bandwidth, not arithmetic, bounds the resampling).
fn preprocess_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 4)
}

/// The selected patches `[K, 3, p, p]` into `out`, the tokens split across the scratches and
/// resampled in parallel (`rayon::join`: no heap allocation). Consecutive tokens that sit side by
/// side in one row of one scale (PS3 selects whole low-res cells, so a step's tokens come in runs:
/// up to 10 per row of a cell at 3780, longer across neighbouring cells) are resampled as one region ([`Resampler::patch_row`]): the same values
/// as one patch at a time, with each frame row read once per run instead of once per patch.
///
/// Patches of the selection plane's scale are copied out of that plane (already resampled for the
/// selection branch, with the same arithmetic) instead of resampled again.
fn gather_patches(
    scratch: &mut [Resampler],
    job: &GatherJob<'_>,
    tokens: &[TokenPos],
    out: &mut [f32],
) {
    let patch = job.patch;
    let len = 3 * patch * patch;
    if scratch.len() <= 1 || tokens.len() < 32 {
        if let Some(res) = scratch.first_mut() {
            let mut rest = tokens;
            let mut out = out;
            while let Some(first) = rest.first() {
                let run = side_by_side(rest);
                let Some((dst, tail)) = std::mem::take(&mut out).split_at_mut_checked(run * len)
                else {
                    // The caller sizes `out` for every token; stop rather than panic if not.
                    break;
                };
                let copied = job
                    .copies
                    .as_ref()
                    .filter(|c| c.scale == usize::from(first.scale))
                    .is_some_and(|c| c.copy_patches(first, run, patch, dst));
                if !copied {
                    res.patch_row(
                        job.src,
                        &job.samplers[first.scale as usize],
                        first.row as usize * patch,
                        first.col as usize * patch,
                        run,
                        patch,
                        job.affine,
                        dst,
                    );
                }
                (rest, out) = (&rest[run..], tail);
            }
        }
        return;
    }
    let (left, right) = scratch.split_at_mut(scratch.len() / 2);
    let split = tokens.len() * left.len() / (left.len() + right.len());
    let (ta, tb) = tokens.split_at(split);
    let (oa, ob) = out.split_at_mut(split * len);
    rayon::join(
        || gather_patches(left, job, ta, oa),
        || gather_patches(right, job, tb, ob),
    );
}

/// Where and how [`gather_patches`] reads the selected patches.
struct GatherJob<'a> {
    src: &'a (dyn RowSource + Sync),
    /// One sampler per high-res scale.
    samplers: &'a [resample::ScaleSampler],
    patch: usize,
    affine: &'a Affine,
    /// The selection plane, when one high-res scale is sampled exactly as it is.
    copies: Option<SelectionPlane<'a>>,
}

/// The high-res selection plane `[3, size, size]` as resampled for this frame, and the high-res
/// scale whose patches are crops of it.
struct SelectionPlane<'a> {
    scale: usize,
    size: usize,
    values: &'a [f32],
}

impl SelectionPlane<'_> {
    /// Copies `count` side-by-side patches starting at `first` into `out` (`[count, 3, p, p]`).
    /// Returns false, having written nothing, where a patch would lie outside the plane (the caller
    /// then resamples them).
    fn copy_patches(&self, first: &TokenPos, count: usize, patch: usize, out: &mut [f32]) -> bool {
        let (size, area) = (self.size, self.size * self.size);
        let (y0, x0) = (
            usize::from(first.row) * patch,
            usize::from(first.col) * patch,
        );
        if self.values.len() < 3 * area
            || y0 + patch > size
            || x0 + count * patch > size
            || out.len() < count * 3 * patch * patch
        {
            return false;
        }
        resample::crop_patches(self.values, (size, size), (x0, y0), count, patch, out);
        true
    }
}

/// How many of the first tokens sit side by side: same scale, same row, each one column right of
/// the one before (at least 1 for a non-empty slice, at most [`resample::MAX_PATCH_RUN`]).
fn side_by_side(tokens: &[TokenPos]) -> usize {
    let Some(first) = tokens.first() else {
        return 0;
    };
    let mut run = 1;
    while run < tokens.len().min(resample::MAX_PATCH_RUN) {
        let t = tokens[run];
        if t.scale != first.scale
            || t.row != first.row
            || usize::from(t.col) != usize::from(first.col) + run
        {
            break;
        }
        run += 1;
    }
    run
}

/// A frame or a normalized tensor.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// An 8-bit frame.
    Frame(Frame<'a>),
    /// A normalized `[3, S_max, S_max]` tensor.
    Tensor(TensorImage<'a>),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(scale: u8, row: u16, col: u16) -> TokenPos {
        TokenPos { scale, row, col }
    }

    #[test]
    fn runs_of_side_by_side_tokens_end_at_a_gap_a_new_row_or_scale_and_the_cap() {
        assert_eq!(side_by_side(&[]), 0);
        assert_eq!(side_by_side(&[tok(0, 3, 4)]), 1);
        let row = [tok(1, 2, 5), tok(1, 2, 6), tok(1, 2, 7), tok(1, 2, 9)];
        assert_eq!(side_by_side(&row), 3);
        assert_eq!(side_by_side(&[tok(1, 2, 5), tok(1, 3, 6)]), 1);
        assert_eq!(side_by_side(&[tok(1, 2, 5), tok(2, 2, 6)]), 1);
        assert_eq!(side_by_side(&[tok(1, 2, 6), tok(1, 2, 5)]), 1);
        let long: Vec<TokenPos> = (0..100).map(|c| tok(2, 0, c)).collect();
        assert_eq!(side_by_side(&long), resample::MAX_PATCH_RUN);
        assert_eq!(side_by_side(&long[90..]), 10);
    }

    /// Patches of the selection plane's scale copied from that plane are, bit for bit, the patches
    /// resampled from the frame; a wrong offset, channel stride or run split fails this.
    #[test]
    fn patches_copied_from_the_selection_plane_equal_resampled_ones() {
        use crate::geometry::Geometry;
        use crate::image::PixelFormat;
        let g = Geometry::new(14, vec![378, 756, 1512, 3780], 1512, 54).unwrap();
        let (w, h) = (643usize, 357usize);
        let stride = 3 * w + 7;
        let data: Vec<u8> = (0..stride * h)
            .map(|i| ((i * 2_654_435_761usize) >> 13) as u8)
            .collect();
        let frame = Frame::new(w as u32, h as u32, PixelFormat::Rgb8, stride, &data).unwrap();
        let plan = InputPlan::new(SourceKind::Frame, w, h, &g).unwrap();
        let scale = plan.hrsel_scale.expect("1512 is a patch scale of PS3-4K");
        let affine = Affine::from_u8_normalization([0.48, 0.46, 0.41], [0.27, 0.26, 0.28]);
        let mut scratch: Vec<Resampler> = (0..2).map(|_| Resampler::default()).collect();
        let size = g.hrsel_input();
        let mut lowres = vec![0f32; 3 * 378 * 378];
        let mut sel = vec![0f32; 3 * size * size];
        let mut planes = [
            PlaneJob {
                sampler: &plan.lowres,
                size: 378,
                out: &mut lowres,
            },
            PlaneJob {
                sampler: &plan.hrsel,
                size,
                out: &mut sel,
            },
        ];
        resample::planes_parallel(&mut scratch, &frame, &mut planes, &affine);

        // Runs inside a row, a run across a cell border, both plane edges, the other scales around.
        let s = scale as u8;
        let mut tokens = vec![tok(0, 3, 7), tok(0, 3, 8)];
        tokens.extend((0..5).map(|c| tok(s, 0, c)));
        tokens.extend((40..47).map(|c| tok(s, 17, c)));
        tokens.extend([tok(s, 107, 0), tok(s, 107, 107), tok(s, 53, 99)]);
        tokens.extend((70..80).map(|c| tok(2, 120, c)));
        tokens.extend((100..108).map(|c| tok(s, 64, c)));
        let len = 3 * 14 * 14;
        let gather = |copies: Option<SelectionPlane<'_>>, scratch: &mut [Resampler]| {
            let job = GatherJob {
                src: &frame,
                samplers: &plan.high,
                patch: 14,
                affine: &affine,
                copies,
            };
            let mut out = vec![f32::NAN; tokens.len() * len];
            gather_patches(scratch, &job, &tokens, &mut out);
            out
        };
        let copied = gather(
            Some(SelectionPlane {
                scale,
                size,
                values: &sel,
            }),
            &mut scratch,
        );
        let resampled = gather(None, &mut scratch);
        for (i, (a, b)) in copied
            .chunks_exact(len)
            .zip(resampled.chunks_exact(len))
            .enumerate()
        {
            assert!(
                a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()),
                "token {i} {:?}",
                tokens[i]
            );
        }
        // A plane too short for a patch is not read: those patches are resampled.
        let short = gather(
            Some(SelectionPlane {
                scale,
                size,
                values: &sel[..size],
            }),
            &mut scratch,
        );
        assert!(
            short
                .iter()
                .zip(&resampled)
                .all(|(x, y)| x.to_bits() == y.to_bits())
        );
    }
}
