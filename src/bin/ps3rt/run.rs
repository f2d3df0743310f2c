//! `ps3rt run`: encode one image or tensor (a contract other tools rely on: extend, never rename).

use std::path::PathBuf;

use clap::Args;
use ps3rt::{
    BackendKind, BackendOptions, EncodeOptions, Encoder, Error, Frame, Geometry, Input, Model,
    PixelFormat, TensorImage, TokenPos,
};

use crate::inputs::{self, LoadedInput};
use crate::{EXIT_USAGE, Failure, report};

/// Arguments of `ps3rt run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Model package directory (default: the embedded tiny package).
    #[arg(long, value_name = "PKG")]
    pub model: Option<PathBuf>,
    /// Image (PNG, JPEG, PPM/PGM) or `.npy` float32 [3, S, S] already-normalized tensor.
    #[arg(long, value_name = "FILE")]
    pub input: PathBuf,
    /// High-res tokens per step (default: the package's budget).
    #[arg(long, value_name = "K")]
    pub budget: Option<usize>,
    /// Look-close steps (each selects and encodes K new patches).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub steps: usize,
    /// Write the selection, probability map, regions and timings as JSON.
    #[arg(long, value_name = "OUT.json")]
    pub json: Option<PathBuf>,
    /// Write the features [tokens, width] as float32 .npy.
    #[arg(long, value_name = "OUT.npy")]
    pub features: Option<PathBuf>,
    /// Encode this selection instead of the model's: JSON `{"steps": [[{"scale": 756, "row": r,
    /// "col": c}, ...], ...]}` with exactly K tokens per step (for comparisons with a reference).
    #[arg(long, value_name = "SEL.json")]
    pub selection: Option<PathBuf>,
    /// Backend: auto or tract.
    #[arg(long, default_value = "auto", value_name = "NAME")]
    pub backend: String,
    /// CPU threads (0 = all cores).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub threads: usize,
}

/// Load the model named by `--model` (or the embedded one).
pub fn load_model(path: Option<&PathBuf>, backend: &str, threads: usize) -> Result<Model, Failure> {
    let kind = BackendKind::parse(backend).ok_or_else(|| {
        Failure::new(
            EXIT_USAGE,
            format!("--backend {backend:?}: expected auto or tract"),
        )
    })?;
    let options = BackendOptions { kind, threads };
    Ok(match path {
        Some(p) => Model::load_with(p, &options)?,
        None => Model::embedded_with(&options)?,
    })
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

pub fn run(args: RunArgs) -> Result<(), Failure> {
    if args.steps == 0 {
        return Err(Failure::new(EXIT_USAGE, "--steps must be at least 1"));
    }
    let input = inputs::load(&args.input)?;
    let model = load_model(args.model.as_ref(), &args.backend, args.threads)?;
    let mut encoder = Encoder::new(
        &model,
        EncodeOptions {
            budget: args.budget,
            steps: args.steps,
        },
    )?;
    match &args.selection {
        Some(path) => {
            let steps = read_selection(path, encoder.model().geometry())?;
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
    let out = encoder.output();
    if let Some(path) = &args.json {
        report::write_json(
            path,
            &report::json_document(&encoder, out, &args.input, input.kind()),
        )?;
    }
    if let Some(path) = &args.features {
        report::write_features(path, out)?;
    }
    let described = format!("{} ({})", args.input.display(), input.describe());
    print!("{}", report::summary(&encoder, out, &described));
    Ok(())
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
