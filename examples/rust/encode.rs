//! Encode an image with the Rust API and print the selected regions.
//!
//!     cargo run --release --example encode -- [IMAGE] [PACKAGE]
//!
//! Without arguments it renders the project's synthetic 4K road scene and uses the embedded tiny
//! package (random weights: the regions show the pipeline working, not a trained model's choice).

use ps3rt::{EncodeOptions, Encoder, Frame, Model, PixelFormat};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (width, height, rgb) = match args.next() {
        Some(path) => {
            let img = image::open(&path)?.to_rgb8();
            let (w, h) = img.dimensions();
            (w, h, img.into_raw())
        }
        None => {
            let scene = ps3rt::synthetic::road_scene(3840, 2160, 1);
            let (w, h) = scene.image.dimensions();
            (w, h, scene.image.into_raw())
        }
    };
    let model = match args.next() {
        Some(dir) => Model::load(dir)?,
        None => Model::embedded()?,
    };
    // One encoder per thread; the model (and its compiled graphs) is shared.
    let mut encoder = Encoder::new(
        &model,
        EncodeOptions {
            budget: Some(1024),
            steps: 1,
        },
    )?;
    let frame = Frame::packed(width, height, PixelFormat::Rgb8, &rgb)?;
    let out = encoder.encode(&frame)?;
    println!(
        "{}x{} frame -> {} tokens x {} features in {:.1} ms ({} per scale)",
        width,
        height,
        out.token_count(),
        out.width(),
        out.timings().total_ms,
        model
            .geometry()
            .high_scales()
            .iter()
            .zip(out.selected_per_scale(model.geometry().high_scales().len()))
            .map(|(s, n)| format!("{s}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for r in out.regions().iter().take(10) {
        let b = r.bbox;
        println!(
            "  {:>4} px region at ({:.0}, {:.0}) {:.0}x{:.0}, score {:.3}, {} patches",
            r.scale, b.x, b.y, b.w, b.h, r.score, r.patches
        );
    }
    // Features of token i are out.features()[i * width..(i + 1) * width]; out.tokens()[i] says where
    // that token lies in the frame.
    Ok(())
}
