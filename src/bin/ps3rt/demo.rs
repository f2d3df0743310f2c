//! `ps3rt demo`: the project's own 4K road scene through the embedded model, end to end.

use std::path::PathBuf;

use clap::Args;
use ps3rt::{EncodeOptions, Encoder, Frame, PixelFormat};

use crate::inputs::LoadedInput;
use crate::{Failure, overlay, report, run, ui};

/// Arguments of `ps3rt demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Where to write road-WxH.png, result.json and features.npy.
    #[arg(long, default_value = "target/ps3rt-demo", value_name = "DIR")]
    pub out_dir: PathBuf,
    /// Frame size.
    #[arg(long, default_value = "3840x2160", value_name = "WxH")]
    pub size: String,
    /// High-res tokens per step (default: the package's budget).
    #[arg(long, value_name = "K")]
    pub budget: Option<usize>,
    /// Model package directory (default: the embedded tiny package).
    #[arg(long, value_name = "PKG")]
    pub model: Option<PathBuf>,
    /// Also draw the frame with the selection heatmap, the selected patches, the best regions and a
    /// legend, as PNG (see `ps3rt run --overlay`).
    #[arg(long, value_name = "OUT.png")]
    pub overlay: Option<PathBuf>,
    /// Width of the overlay in pixels.
    #[arg(long, default_value_t = overlay::DEFAULT_WIDTH, value_name = "PX",
          value_parser = clap::value_parser!(u32).range(64..=16384))]
    pub overlay_width: u32,
    /// Regions drawn on the overlay, best first.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub overlay_regions: usize,
}

pub fn demo(args: DemoArgs) -> Result<(), Failure> {
    let (w, h) = args
        .size
        .split_once('x')
        .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)))
        .filter(|&(w, h)| w > 0 && h > 0 && w <= 16384 && h <= 16384)
        .ok_or_else(|| {
            Failure::new(
                crate::EXIT_USAGE,
                format!("--size {:?}: expected WxH, e.g. 3840x2160", args.size),
            )
        })?;
    std::fs::create_dir_all(&args.out_dir).map_err(|e| {
        Failure::from(ps3rt::Error::Io {
            path: args.out_dir.clone(),
            source: e,
        })
    })?;
    let scene = ui::with_spinner(format!("rendering the {w}x{h} road scene"), || {
        ps3rt::synthetic::road_scene(w, h, 1)
    });
    let image_path = args.out_dir.join(format!("road-{w}x{h}.png"));
    // Through a temporary file and a rename, as every output.
    ui::with_spinner(format!("writing {}", image_path.display()), || {
        overlay::write_png(&image_path, &scene.image)
    })?;
    let model = run::load_model(args.model.as_ref(), "auto", 0)?;
    let mut encoder = Encoder::new(
        &model,
        EncodeOptions {
            budget: args.budget,
            steps: 1,
        },
    )?;
    let frame = Frame::packed(w, h, PixelFormat::Rgb8, scene.image.as_raw())?;
    // First frame builds the sampling plan and warms the backend; the second shows steady state.
    ui::with_spinner(
        "encoding the frame twice (warm-up, then steady state)",
        || {
            encoder.encode(&frame)?;
            encoder.encode(&frame).map(|_| ())
        },
    )?;
    let out = encoder.output();
    let json = args.out_dir.join("result.json");
    report::write_json(
        &json,
        &report::json_document(&encoder, out, &image_path, "image"),
    )?;
    let features = args.out_dir.join("features.npy");
    report::write_features(&features, out)?;
    let described = format!(
        "{} ({w}x{h} rgb8, the project's synthetic road scene, {} signs)",
        image_path.display(),
        scene
            .objects
            .iter()
            .filter(|o| o.kind == ps3rt::synthetic::ObjectKind::Sign)
            .count()
    );
    let mut wrote = vec![
        image_path.display().to_string(),
        json.display().to_string(),
        features.display().to_string(),
    ];
    if let Some(png) = &args.overlay {
        let options = overlay::OverlayOptions {
            width: args.overlay_width,
            regions: args.overlay_regions,
        };
        // The overlay reads the frame from here (moved, not copied).
        let input = LoadedInput::Image {
            width: w,
            height: h,
            rgb: scene.image.into_raw(),
        };
        run::write_overlay(&options, &encoder, &input, &image_path, png)?;
        wrote.push(png.display().to_string());
    }
    ui::out(&report::summary(&encoder, out, &described));
    ui::out(&format!("wrote    {}\n", wrote.join(", ")));
    Ok(())
}
