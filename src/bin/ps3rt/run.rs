//! `ps3rt run`: encode one image or tensor (a contract other tools rely on: extend, never rename).

use std::path::PathBuf;

use clap::Args;
use ps3rt::{
    BackendKind, BackendOptions, EncodeOptions, Encoder, Frame, Model, PixelFormat, TensorImage,
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
    encode(&mut encoder, &input)?;
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
