//! `ps3rt build-engines`: build (or find in the cache) the TensorRT engines of a package ahead of
//! time, optionally timing them and comparing their features with the tract backend.

use std::path::PathBuf;

use clap::Args;
use ps3rt::backend::tensorrt::{self, Precision, TensorRtOptions};
use ps3rt::{
    BackendKind, BackendOptions, EncodeOptions, Encoder, Frame, Input, Model, Package, PixelFormat,
    Timings,
};

use crate::{EXIT_BACKEND, EXIT_USAGE, Failure, ui};

/// Arguments of `ps3rt build-engines`.
#[derive(Args, Debug)]
pub struct BuildEnginesArgs {
    /// Model package directory (default: the embedded tiny package).
    #[arg(value_name = "PKG")]
    pub model: Option<PathBuf>,
    /// High-res budgets K to build engines for, comma-separated (default: the package's budget).
    #[arg(long, value_name = "K[,K...]", value_delimiter = ',')]
    pub budget: Vec<usize>,
    /// Engine precision: auto (fp16 where fast and TensorRT < 11, else tf32), fp16, tf32, fp32.
    #[arg(long, default_value = "auto", value_name = "P")]
    pub precision: String,
    /// Engine cache directory (default: $PS3RT_ENGINE_CACHE, else ~/.cache/ps3rt/engines).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// CUDA device ordinal.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub device: u32,
    /// Time N frames of the 4K road scene per budget (after 2 warm-up frames) and print per-stage
    /// medians.
    #[arg(long, value_name = "N")]
    pub bench: Option<usize>,
    /// Replay the stages as CUDA graphs in --bench.
    #[arg(long)]
    pub cuda_graph: bool,
    /// Encode the road scene with tract too and compare the features for the same selection.
    #[arg(long)]
    pub compare_tract: bool,
    /// With --compare-tract: fail (exit 5) if a token's cosine similarity is below this.
    #[arg(long, default_value_t = 0.99, value_name = "X")]
    pub min_cosine: f64,
}

fn options(args: &BuildEnginesArgs) -> Result<TensorRtOptions, Failure> {
    let mut o = TensorRtOptions::from_env().map_err(|e| Failure::new(EXIT_USAGE, e))?;
    o.precision = Precision::parse(&args.precision).ok_or_else(|| {
        Failure::new(
            EXIT_USAGE,
            format!(
                "--precision {:?}: expected auto, fp16, tf32 or fp32",
                args.precision
            ),
        )
    })?;
    if args.cache_dir.is_some() {
        o.cache_dir.clone_from(&args.cache_dir);
    }
    o.device = args.device;
    o.cuda_graph = args.cuda_graph;
    Ok(o)
}

fn progress_line(event: &tensorrt_events::Event) {
    tensorrt_events::print(event);
}

/// Printing of build progress (kept apart so the command works the same without the feature).
mod tensorrt_events {
    #[cfg(feature = "tensorrt")]
    pub type Event = ps3rt::backend::tensorrt::BuildEvent;
    #[cfg(not(feature = "tensorrt"))]
    pub type Event = ();

    #[cfg(feature = "tensorrt")]
    pub fn print(event: &Event) {
        use ps3rt::backend::tensorrt::{BuildEvent, EngineSource};
        let k = |b: &Option<usize>| b.map(|k| format!(" K={k}")).unwrap_or_default();
        let line = match event {
            BuildEvent::Building {
                graph,
                budget,
                reason,
            } => format!(
                "{graph}{}: building the engine ({reason}); minutes for a full-size model",
                k(budget)
            ),
            BuildEvent::Phase {
                graph,
                phase,
                parent,
                steps,
            } if parent.is_empty() => format!("{graph}: {phase} ({steps} steps)"),
            BuildEvent::Elapsed { graph, elapsed } => {
                format!("{graph}: still building ({} s)", elapsed.as_secs())
            }
            BuildEvent::Ready(r) => format!(
                "{}{}: {} {:.1} MB in {:.1} s{}",
                r.graph,
                k(&r.budget),
                match r.source {
                    EngineSource::Cache => "cached engine,",
                    EngineSource::Built => "built engine,",
                },
                r.bytes as f64 / 1e6,
                r.seconds,
                r.path
                    .as_ref()
                    .map(|p| format!(" -> {}", p.display()))
                    .unwrap_or_default()
            ),
            _ => return,
        };
        crate::ui::err(&format!("{line}\n"));
    }

    #[cfg(not(feature = "tensorrt"))]
    pub fn print(_event: &Event) {}
}

/// Run `ps3rt build-engines`.
pub fn build_engines(args: BuildEnginesArgs) -> Result<(), Failure> {
    let o = options(&args)?;
    let package = match &args.model {
        Some(p) => ui::with_spinner(
            format!("verifying package {} (SHA-256 of every file)", p.display()),
            || Package::open(p),
        )?,
        None => crate::run::embedded_package()?,
    };
    let budgets = if args.budget.is_empty() {
        vec![package.manifest().geometry.budget]
    } else {
        args.budget.clone()
    };
    let probe = tensorrt::probe(&o);
    if let Some((_, why)) = &probe.unusable {
        return Err(Failure::new(
            EXIT_BACKEND,
            format!("TensorRT cannot run here: {why}"),
        ));
    }
    ui::err(&format!(
        "{}: engines for K = {budgets:?} on {}\n",
        package.manifest().name,
        probe.summary()
    ));
    build(&package, &o, &budgets)?;
    if args.bench.is_some() || args.compare_tract {
        let trt = Model::from_package(
            &package,
            &BackendOptions {
                kind: BackendKind::TensorRt,
                threads: 0,
                tensorrt: o.clone(),
                ..BackendOptions::default()
            },
        )?;
        let scene = ps3rt::synthetic::road_scene(3840, 2160, 1);
        let frame = Frame::packed(3840, 2160, PixelFormat::Rgb8, scene.image.as_raw())?;
        for &k in &budgets {
            if let Some(n) = args.bench {
                bench(&trt, &frame, k, n)?;
            }
            if args.compare_tract {
                compare(&package, &trt, &frame, k, args.min_cosine)?;
            }
        }
    }
    Ok(())
}

#[cfg(feature = "tensorrt")]
fn build(package: &Package, o: &TensorRtOptions, budgets: &[usize]) -> Result<(), Failure> {
    let reports = tensorrt::build_engines(package, o, budgets, &mut |e| progress_line(e))?;
    let mut table = String::from("graph   K      source  MB        s  file\n");
    for r in reports {
        table.push_str(&format!(
            "{:<7} {:<6} {:<7} {:>6.1} {:>6.1}  {}\n",
            r.graph,
            r.budget
                .map(|k| k.to_string())
                .unwrap_or_else(|| "-".into()),
            match r.source {
                tensorrt::EngineSource::Cache => "cache",
                tensorrt::EngineSource::Built => "built",
            },
            r.bytes as f64 / 1e6,
            r.seconds,
            r.path
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "(not cached)".into())
        ));
    }
    ui::out(&table);
    Ok(())
}

#[cfg(not(feature = "tensorrt"))]
fn build(_package: &Package, _o: &TensorRtOptions, _budgets: &[usize]) -> Result<(), Failure> {
    let _ = progress_line;
    Err(Failure::new(
        EXIT_BACKEND,
        "TensorRT is not compiled into this build (cargo feature `tensorrt`)",
    ))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn bench(model: &Model, frame: &Frame<'_>, k: usize, n: usize) -> Result<(), Failure> {
    let mut encoder = Encoder::new(
        model,
        EncodeOptions {
            budget: Some(k),
            steps: 1,
        },
    )?;
    for _ in 0..2 {
        encoder.encode(frame)?;
    }
    let mut runs: Vec<Timings> = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        runs.push(*encoder.encode(frame)?.timings());
    }
    let col = |f: fn(&Timings) -> f64| median(runs.iter().map(f).collect());
    ui::out(&format!(
        "K = {k:<5} median of {} frames (ms): preprocess {:.2}  lowres {:.2}  hrsel {:.2}  select {:.2}  gather {:.2}  hrenc {:.2}  total {:.2}\n",
        runs.len(),
        col(|t| t.preprocess_ms),
        col(|t| t.lowres_ms),
        col(|t| t.hrsel_ms),
        col(|t| t.select_ms),
        col(|t| t.gather_ms),
        col(|t| t.hrenc_ms),
        col(|t| t.total_ms),
    ));
    Ok(())
}

/// Encode with tract, then with TensorRT for tract's selection; compare per token.
fn compare(
    package: &Package,
    trt: &Model,
    frame: &Frame<'_>,
    k: usize,
    min_cosine: f64,
) -> Result<(), Failure> {
    let tract = Model::from_package(
        package,
        &BackendOptions {
            kind: BackendKind::Tract,
            ..BackendOptions::default()
        },
    )?;
    let opts = EncodeOptions {
        budget: Some(k),
        steps: 1,
    };
    let mut a = Encoder::new(&tract, opts)?;
    let reference = a.encode(frame)?.clone();
    let mut b = Encoder::new(trt, opts)?;
    let steps = vec![reference.selected().to_vec()];
    let out = b.encode_with_selection(Input::Frame(*frame), &steps)?;
    let c = reference.width();
    let (fa, fb) = (reference.features(), out.features());
    if fa.len() != fb.len() || c == 0 {
        return Err(Failure::new(
            EXIT_BACKEND,
            format!(
                "feature sizes differ: tract {} vs TensorRT {}",
                fa.len(),
                fb.len()
            ),
        ));
    }
    let (mut min_cos, mut sum_cos, mut max_err, mut max_ref) = (f64::INFINITY, 0.0, 0.0f64, 0.0f64);
    let tokens = fa.len() / c;
    for t in 0..tokens {
        let (x, y) = (&fa[t * c..(t + 1) * c], &fb[t * c..(t + 1) * c]);
        let (mut dot, mut nx, mut ny) = (0.0f64, 0.0f64, 0.0f64);
        for (&p, &q) in x.iter().zip(y) {
            let (p, q) = (f64::from(p), f64::from(q));
            dot += p * q;
            nx += p * p;
            ny += q * q;
            max_err = max_err.max((p - q).abs());
            max_ref = max_ref.max(p.abs());
        }
        let cos = dot / (nx.sqrt() * ny.sqrt()).max(f64::MIN_POSITIVE);
        min_cos = min_cos.min(cos);
        sum_cos += cos;
    }
    let prob = reference
        .prob_map()
        .iter()
        .zip(out.prob_map())
        .map(|(p, q)| f64::from((p - q).abs()))
        .fold(0.0, f64::max);
    ui::out(&format!(
        "K = {k:<5} TensorRT vs tract, {tokens} tokens: cosine min {min_cos:.6} mean {:.6}; max abs error {max_err:.3e} ({:.3e} of the largest value); prob map max diff {prob:.2e}\n",
        sum_cos / tokens as f64,
        max_err / max_ref.max(f64::MIN_POSITIVE)
    ));
    if min_cos.is_nan() || min_cos < min_cosine {
        return Err(Failure::new(
            EXIT_BACKEND,
            format!("K = {k}: a token's cosine similarity {min_cos:.6} is below {min_cosine}"),
        ));
    }
    Ok(())
}
