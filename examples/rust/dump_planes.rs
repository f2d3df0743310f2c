//! Write the normalized planes ps3rt samples from an image, for comparison with other preprocessing.
//!
//!     cargo run --release --example dump_planes -- IMAGE OUT_DIR [SIZE...]
//!
//! Writes OUT_DIR/plane-SIZE.npy, float32 [3, SIZE, SIZE], for each SIZE (default: the embedded
//! model's scales and its 1512 selection input), normalized with the embedded model's mean and std.
//! tools/parity/measure_preprocessing.py compares them with PIL + torchvision + torch.

use npyz::WriterBuilder;
use ps3rt::{Frame, Model, PixelFormat};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [image_path, out_dir, sizes @ ..] = &args[..] else {
        return Err("usage: dump_planes IMAGE OUT_DIR [SIZE...]".into());
    };
    let model = Model::embedded()?;
    let s_max = model.geometry().input_size();
    let sizes: Vec<usize> = if sizes.is_empty() {
        let mut s = model.geometry().scales().to_vec();
        s.push(model.geometry().hrsel_input());
        s.sort_unstable();
        s.dedup();
        s
    } else {
        sizes.iter().map(|s| s.parse()).collect::<Result<_, _>>()?
    };
    let img = image::open(image_path)?.to_rgb8();
    let (w, h) = img.dimensions();
    let frame = Frame::packed(w, h, PixelFormat::Rgb8, img.as_raw())?;
    std::fs::create_dir_all(out_dir)?;
    for size in sizes {
        let plane =
            ps3rt::image::scale_plane(&frame, s_max, size, &model.manifest().normalization)?;
        let path = std::path::Path::new(out_dir).join(format!("plane-{size}.npy"));
        let file = std::io::BufWriter::new(std::fs::File::create(&path)?);
        let mut npy = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&[3, size as u64, size as u64])
            .writer(file)
            .begin_nd()?;
        npy.extend(plane)?;
        npy.finish()?;
        println!("{}", path.display());
    }
    Ok(())
}
