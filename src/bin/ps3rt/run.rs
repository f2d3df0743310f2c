//! `ps3rt run`: encode one image or tensor (a contract other tools rely on: extend, never rename).

use std::path::{Path, PathBuf};

use clap::Args;
use ps3rt::{
    BackendKind, BackendOptions, EncodeOptions, Encoder, Error, Frame, Geometry, Input, Model,
    Package, PixelFormat, TensorImage, TokenPos,
};

use crate::inputs::{self, InputSet, LoadedInput};
use crate::{EXIT_USAGE, Failure, Format, batch, overlay, report, ui};

/// Arguments of `ps3rt run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Model package directory (default: the embedded tiny package).
    #[arg(long, value_name = "PKG")]
    pub model: Option<PathBuf>,
    /// Image (PNG, JPEG, PPM/PGM) or `.npy` float32 [3, S, S] already-normalized tensor; or a folder
    /// (every image and .npy in it) or a quoted glob pattern such as 'frames/*.png'.
    #[arg(long, value_name = "FILE|DIR|GLOB")]
    pub input: PathBuf,
    /// High-res tokens per step (default: the package's budget).
    #[arg(long, value_name = "K")]
    pub budget: Option<usize>,
    /// Look-close steps (each selects and encodes K new patches).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub steps: usize,
    /// Write the selection, probability map, regions and timings as JSON (a folder or glob input
    /// writes JSON Lines: one object per input file, failures included).
    #[arg(long, value_name = "OUT.json")]
    pub json: Option<PathBuf>,
    /// Write the features [tokens, width] as float32 .npy (a folder or glob input: a folder, one
    /// <name>.npy per input).
    #[arg(long, value_name = "OUT.npy")]
    pub features: Option<PathBuf>,
    /// Encode this selection instead of the model's: JSON `{"steps": [[{"scale": 756, "row": r,
    /// "col": c}, ...], ...]}` with exactly K tokens per step (for comparisons with a reference).
    #[arg(long, value_name = "SEL.json")]
    pub selection: Option<PathBuf>,
    /// Backend: auto (TensorRT when built in and usable here, else ONNX Runtime when its library
    /// opens, else tract), tract, tensorrt (an
    /// error if it cannot run here) or onnxruntime (ONNX Runtime 1.18+ on the CPU, the library
    /// named by PS3RT_ONNXRUNTIME; faster than tract on full-size packages). TensorRT settings:
    /// PS3RT_ENGINE_CACHE, PS3RT_TENSORRT_PRECISION, PS3RT_TENSORRT_CUDA_GRAPH (docs/tensorrt.md).
    #[arg(long, default_value = "auto", value_name = "NAME")]
    pub backend: String,
    /// CPU threads (0 = all cores).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub threads: usize,
    #[command(flatten)]
    pub preprocess: PreprocessArg,
    /// Draw the frame with the selection probability heatmap, the selected patches (a colour per
    /// scale), the best regions and a legend, as PNG (a folder or glob input: a folder, one
    /// <name>.png per input).
    #[arg(long, value_name = "OUT.png")]
    pub overlay: Option<PathBuf>,
    /// Width of the overlay in pixels (the height follows the frame, plus the legend).
    #[arg(long, default_value_t = overlay::DEFAULT_WIDTH, value_name = "PX",
          value_parser = clap::value_parser!(u32).range(64..=16384))]
    pub overlay_width: u32,
    /// Regions drawn on the overlay, best first.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub overlay_regions: usize,
    /// What to print on stdout: a human summary (text) or the JSON document (json; JSON Lines for a
    /// folder or glob input).
    #[arg(long, value_enum, default_value_t = Format::Text, value_name = "FORMAT")]
    pub format: Format,
    /// With a folder input: include its subfolders.
    #[arg(short, long)]
    pub recursive: bool,
    /// With a folder or glob input: stop at the first file that fails (default: report it, count it
    /// and go on).
    #[arg(long)]
    pub fail_fast: bool,
    #[command(flatten)]
    pub video: inputs::VideoArgs,
    /// Select top-down with this prompt instead of bottom-up: free text encoded by the package's
    /// text tower (PS3's `prompt=`), or, for a package without one, a label of its bank.
    #[arg(long, value_name = "TEXT", conflicts_with = "prompt_npy")]
    pub prompt: Option<String>,
    /// Select top-down with a prompt of C floats computed offline (float32 .npy of shape [C]).
    #[arg(long, value_name = "PROMPT.npy")]
    pub prompt_npy: Option<PathBuf>,
    /// Label the best selected regions with the package's pool head and label bank (JSON gains
    /// "labels"; the text summary a labels line per region). One --input file only.
    #[arg(long)]
    pub labels: bool,
    /// With --labels: labels kept per region.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub top_k: usize,
    /// With --labels: most regions to label, best first (0: the pool head's region count).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub label_regions: usize,
}

impl RunArgs {
    /// The overlay settings of these arguments.
    pub fn overlay_options(&self) -> overlay::OverlayOptions {
        overlay::OverlayOptions {
            width: self.overlay_width,
            regions: self.overlay_regions,
        }
    }
}

/// The embedded tiny package, used when no `--model` is given.
#[cfg(feature = "embedded-model")]
pub fn embedded_package() -> Result<Package, Failure> {
    Ok(Package::embedded()?)
}

/// Without the `embedded-model` feature there is no default package: a usage error naming the fix.
#[cfg(not(feature = "embedded-model"))]
pub fn embedded_package() -> Result<Package, Failure> {
    Err(Failure::new(
        EXIT_USAGE,
        "no model package given, and this ps3rt was built without the embedded tiny model \
         (cargo feature `embedded-model`): pass --model PKG (or the package directory)",
    ))
}

/// Load the model named by `--model` (or the embedded one), under a spinner: verifying a large
/// package's hashes and optimizing its graphs take seconds to minutes.
pub fn load_model(path: Option<&PathBuf>, backend: &str, threads: usize) -> Result<Model, Failure> {
    let kind = BackendKind::parse(backend).ok_or_else(|| {
        Failure::new(
            EXIT_USAGE,
            format!("--backend {backend:?}: expected auto, tract, tensorrt or onnxruntime"),
        )
    })?;
    let tensorrt = ps3rt::backend::tensorrt::TensorRtOptions::from_env()
        .map_err(|e| Failure::new(EXIT_USAGE, e))?;
    let options = BackendOptions {
        kind,
        threads,
        tensorrt,
        onnxruntime_library: None,
    };
    let package = match path {
        Some(p) => ui::with_spinner(
            format!("verifying package {} (SHA-256 of every file)", p.display()),
            || Package::open(p),
        )?,
        None => embedded_package()?,
    };
    let start = std::time::Instant::now();
    let model = ui::with_spinner(
        format!("preparing {} for the backend", package.manifest().name),
        || Model::from_package(&package, &options),
    )?;
    log::info!(
        "model {} ready on {} in {:.2} s{}",
        package.manifest().name,
        model.backend_name(),
        start.elapsed().as_secs_f64(),
        model
            .backend_note()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default()
    );
    Ok(model)
}

/// `--preprocess`, shared by run, camera and bench.
#[derive(Args, Debug, Clone, Copy)]
pub struct PreprocessArg {
    /// Where frames are resampled into the model's planes: cpu, gpu (CUDA device 0) or gpu:N
    /// (an NVIDIA driver and NVRTC are needed; docs/performance.md).
    #[arg(long, default_value = "cpu", value_name = "WHERE", value_parser = parse_preprocess)]
    pub preprocess: ps3rt::Preprocess,
}

fn parse_preprocess(value: &str) -> Result<ps3rt::Preprocess, String> {
    ps3rt::Preprocess::parse(value).ok_or_else(|| "expected cpu, gpu or gpu:N".into())
}

/// The encoder for `args`' budget and steps (and prompt, if any).
pub fn new_encoder(model: &Model, args: &RunArgs) -> Result<Encoder, Failure> {
    let mut encoder = Encoder::new(
        model,
        EncodeOptions {
            budget: args.budget,
            steps: args.steps,
        },
    )?;
    encoder.set_preprocess(args.preprocess.preprocess)?;
    set_prompt(&mut encoder, args)?;
    Ok(encoder)
}

/// Apply `--prompt` / `--prompt-npy`: free text through the text tower, else an exact bank label;
/// C floats from a file.
fn set_prompt(encoder: &mut Encoder, args: &RunArgs) -> Result<(), Failure> {
    if let Some(text) = &args.prompt {
        let labels = encoder.model().labels();
        if labels.has_text_tower() {
            encoder.set_prompt_text(text)?;
        } else if labels.bank().and_then(|b| b.index_of(text)).is_some() {
            encoder.set_prompt_label(text)?;
        } else {
            return Err(Failure::new(
                EXIT_USAGE,
                format!(
                    "--prompt {text:?}: the package has no text tower for free text (re-export with tools/export/ps3_export.py --text-tower) and {text:?} is not a label of its bank (`ps3rt labels` lists them); --prompt-npy takes C floats"
                ),
            ));
        }
    }
    if let Some(path) = &args.prompt_npy {
        let bad = |reason: String| {
            Failure::from(Error::Input {
                path: path.clone(),
                reason,
            })
        };
        let bytes = std::fs::read(path).map_err(|e| bad(format!("cannot read: {e}")))?;
        let npy =
            npyz::NpyFile::new(&bytes[..]).map_err(|e| bad(format!("not a .npy file: {e}")))?;
        let shape = npy.shape().to_vec();
        let values: Vec<f32> = npy
            .into_vec()
            .map_err(|e| bad(format!("not float32: {e}")))?;
        let c = encoder.model().width();
        if shape.iter().product::<u64>() != c as u64 || values.len() != c {
            return Err(bad(format!(
                "shape {shape:?}: a prompt is [{c}] floats (the model's width)"
            )));
        }
        encoder.set_prompt(Some(&values))?;
    }
    Ok(())
}

/// Encode `input` with `encoder`.
pub fn encode(encoder: &mut Encoder, input: &LoadedInput) -> Result<(), Failure> {
    match input {
        LoadedInput::Image { width, height, rgb } => {
            encoder.encode(&Frame::packed(*width, *height, PixelFormat::Rgb8, rgb)?)?;
        }
        LoadedInput::Tensor { size, values } => {
            encoder.encode_tensor(&TensorImage::new(*size, values)?)?;
        }
    }
    Ok(())
}

/// `ps3rt run`: one file, or every file of a folder or glob (see [`batch`]).
pub fn run(args: RunArgs) -> Result<(), Failure> {
    if args.steps == 0 {
        return Err(Failure::new(EXIT_USAGE, "--steps must be at least 1"));
    }
    if args.video.raw_format.is_some()
        && (args.input.is_dir() || args.input.to_string_lossy().contains(['*', '?', '[']))
    {
        return Err(Failure::new(
            EXIT_USAGE,
            "--raw-format and --raw-size read one --input file, not a folder or glob",
        ));
    }
    match inputs::resolve(&args.input, args.recursive)? {
        InputSet::Single(path) => run_one(&args, &path),
        InputSet::Batch { .. } if args.labels => Err(Failure::new(
            EXIT_USAGE,
            "--labels reads one --input file, not a folder or glob",
        )),
        InputSet::Batch {
            files,
            base,
            skipped,
        } => batch::run(&args, &files, &base, skipped),
    }
}

fn run_one(args: &RunArgs, path: &Path) -> Result<(), Failure> {
    let input = ui::with_spinner(format!("reading {}", path.display()), || {
        inputs::load_with(path, &args.video)
    })?;
    let model = load_model(args.model.as_ref(), &args.backend, args.threads)?;
    let mut encoder = new_encoder(&model, args)?;
    let spinner = ui::Spinner::start(format!(
        "encoding {} (K = {})",
        path.display(),
        encoder.budget()
    ));
    match &args.selection {
        Some(sel) => {
            let steps = read_selection(sel, encoder.model().geometry())?;
            let input = match &input {
                LoadedInput::Image { width, height, rgb } => {
                    Input::Frame(Frame::packed(*width, *height, PixelFormat::Rgb8, rgb)?)
                }
                LoadedInput::Tensor { size, values } => {
                    Input::Tensor(TensorImage::new(*size, values)?)
                }
            };
            encoder.encode_with_selection(input, &steps)?;
        }
        None => encode(&mut encoder, &input)?,
    }
    spinner.finish();
    let labelled = if args.labels {
        let start = std::time::Instant::now();
        let options = ps3rt::LabelOptions {
            max_regions: args.label_regions,
            top_k: args.top_k,
            min_patches: 1,
        };
        encoder.label_regions(&options)?;
        Some(start.elapsed().as_secs_f64() * 1e3)
    } else {
        None
    };
    let out = encoder.output();
    let mut doc = report::json_document(&encoder, out, path, input.kind());
    if let Some(text) = &args.prompt {
        doc["prompt"] = serde_json::json!({"text": text});
    } else if let Some(npy) = &args.prompt_npy {
        doc["prompt"] = serde_json::json!({"npy": npy.display().to_string()});
    }
    if let Some(ms) = labelled {
        doc["labels"] = report::labels_json(&encoder, ms);
    }
    if let Some(json) = &args.json {
        report::write_json(json, &doc)?;
    }
    if let Some(features) = &args.features {
        report::write_features(features, out)?;
    }
    let mut written = Vec::new();
    if let Some(png) = &args.overlay {
        let size = write_overlay(&args.overlay_options(), &encoder, &input, path, png)?;
        let colours: Vec<String> = encoder
            .model()
            .geometry()
            .high_scales()
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{s} px {}", overlay::scale_colour_name(i)))
            .collect();
        written.push(format!(
            "overlay  {} ({}x{}; {})",
            png.display(),
            size.0,
            size.1,
            colours.join(", ")
        ));
    }
    match args.format {
        Format::Json => {
            let text = serde_json::to_string_pretty(&doc)
                .map_err(|e| Failure::new(1, format!("cannot format the JSON document: {e}")))?;
            ui::out(&format!("{text}\n"));
        }
        Format::Text => {
            let described = format!("{} ({})", path.display(), input.describe());
            ui::out(&report::summary(&encoder, out, &described));
            if let Some(ms) = labelled {
                ui::out(&report::labels_text(&encoder, ms));
            }
            for line in written {
                ui::out(&format!("{line}\n"));
            }
        }
    }
    Ok(())
}

/// Render the overlay of the encoder's last output and write it to `png`; returns its size.
pub fn write_overlay(
    options: &overlay::OverlayOptions,
    encoder: &Encoder,
    input: &LoadedInput,
    input_path: &Path,
    png: &Path,
) -> Result<(u32, u32), Failure> {
    let label = input_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| input_path.display().to_string());
    let start = std::time::Instant::now();
    let img = overlay::render(input, encoder, encoder.output(), &label, options).map_err(|e| {
        Failure::new(
            1,
            format!("{}: cannot draw the overlay: {e}", png.display()),
        )
    })?;
    let drawn = start.elapsed();
    overlay::write_png(png, &img)?;
    log::debug!(
        "overlay {}: drawn in {:.1} ms, written in {:.1} ms",
        png.display(),
        drawn.as_secs_f64() * 1e3,
        (start.elapsed() - drawn).as_secs_f64() * 1e3
    );
    Ok(img.dimensions())
}

/// Read a `--selection` file: per step, tokens given by scale in pixels, row and column.
fn read_selection(path: &std::path::Path, g: &Geometry) -> Result<Vec<Vec<TokenPos>>, Failure> {
    let bad = |reason: String| {
        Failure::from(Error::Input {
            path: path.to_path_buf(),
            reason,
        })
    };
    let bytes = std::fs::read(path).map_err(|e| bad(format!("cannot read: {e}")))?;
    let doc: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    let steps = doc["steps"].as_array().ok_or_else(|| {
        bad("expected {\"steps\": [[{\"scale\", \"row\", \"col\"}, ...], ...]}".into())
    })?;
    let mut out = Vec::with_capacity(steps.len());
    for (s, step) in steps.iter().enumerate() {
        let tokens = step
            .as_array()
            .ok_or_else(|| bad(format!("steps[{s}] is not a list")))?;
        let mut list = Vec::with_capacity(tokens.len());
        for (i, t) in tokens.iter().enumerate() {
            let field = |k: &str| {
                t[k].as_u64()
                    .ok_or_else(|| bad(format!("steps[{s}][{i}].{k} is missing or not a number")))
            };
            let scale = field("scale")? as usize;
            let index = g
                .high_scales()
                .iter()
                .position(|&x| x == scale)
                .ok_or_else(|| {
                    bad(format!(
                        "steps[{s}][{i}].scale {scale} is not a high-res scale {:?}",
                        g.high_scales()
                    ))
                })?;
            let (row, col) = (field("row")?, field("col")?);
            let grid = g.grid(index) as u64;
            if row >= grid || col >= grid {
                return Err(bad(format!(
                    "steps[{s}][{i}]: ({row}, {col}) outside the {grid}x{grid} grid of scale {scale}"
                )));
            }
            list.push(TokenPos {
                scale: index as u8,
                row: row as u16,
                col: col as u16,
            });
        }
        out.push(list);
    }
    Ok(out)
}
