//! Reading the CLI's inputs: images (PNG, JPEG, PPM/PGM) and `.npy` float32 tensors.

use std::path::{Path, PathBuf};

use ps3rt::Error;

/// A decoded input, owning its pixels.
pub enum LoadedInput {
    /// 8-bit RGB, packed.
    Image {
        width: u32,
        height: u32,
        rgb: Vec<u8>,
    },
    /// A normalized `[3, S, S]` float32 tensor.
    Tensor { size: usize, values: Vec<f32> },
}

impl LoadedInput {
    /// "3840x2160 rgb8" or "tensor [3, 3780, 3780]".
    pub fn describe(&self) -> String {
        match self {
            LoadedInput::Image { width, height, .. } => format!("{width}x{height} rgb8"),
            LoadedInput::Tensor { size, .. } => {
                format!("tensor [3, {size}, {size}] float32 (normalized)")
            }
        }
    }

    /// Input kind for JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            LoadedInput::Image { .. } => "image",
            LoadedInput::Tensor { .. } => "tensor",
        }
    }
}

fn input_error(path: &Path, reason: impl Into<String>) -> Error {
    Error::Input {
        path: PathBuf::from(path),
        reason: reason.into(),
    }
}

/// Load `path`: `.npy` as a tensor, anything else as an image (format detected from the content).
pub fn load(path: &Path) -> Result<LoadedInput, Error> {
    let is_npy = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npy"));
    let bytes = std::fs::read(path).map_err(|e| input_error(path, format!("cannot read: {e}")))?;
    if is_npy {
        load_npy(path, &bytes)
    } else {
        load_image(path, &bytes)
    }
}

fn load_image(path: &Path, bytes: &[u8]) -> Result<LoadedInput, Error> {
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| input_error(path, format!("cannot read: {e}")))?;
    if reader.format().is_none() {
        return Err(input_error(
            path,
            "not a PNG, JPEG or PPM/PGM image (or a .npy tensor)",
        ));
    }
    let img = reader
        .decode()
        .map_err(|e| input_error(path, format!("cannot decode: {e}")))?;
    let rgb = img.to_rgb8();
    let (width, height) = rgb.dimensions();
    Ok(LoadedInput::Image {
        width,
        height,
        rgb: rgb.into_raw(),
    })
}

fn load_npy(path: &Path, bytes: &[u8]) -> Result<LoadedInput, Error> {
    let npy = npyz::NpyFile::new(bytes)
        .map_err(|e| input_error(path, format!("not a valid .npy file: {e}")))?;
    let shape: Vec<u64> = npy.shape().to_vec();
    if npy.order() != npyz::Order::C {
        return Err(input_error(
            path,
            "Fortran-ordered arrays are not supported; save it C-ordered",
        ));
    }
    let dims: Vec<u64> = match shape.as_slice() {
        [1, rest @ ..] if rest.len() == 3 => rest.to_vec(),
        _ => shape.clone(),
    };
    let [3, h, w] = dims[..] else {
        return Err(input_error(
            path,
            format!("shape {shape:?}; expected [3, S, S] (or [1, 3, S, S])"),
        ));
    };
    if h != w {
        return Err(input_error(
            path,
            format!("shape {shape:?} is not square; PS3's pixel_values are [3, S, S]"),
        ));
    }
    let values: Vec<f32> = npy.into_vec::<f32>().map_err(|e| {
        input_error(
            path,
            format!("cannot read float32 values (dtype must be '<f4'): {e}"),
        )
    })?;
    Ok(LoadedInput::Tensor {
        size: h as usize,
        values,
    })
}
