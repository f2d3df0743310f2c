//! Pixels in: frame views, PS3's resizes composed per axis, and streaming resampling of the planes and
//! patches the pipeline needs.

mod convert;
mod frame;
#[cfg(feature = "cuda")]
pub mod gpu;
mod jpeg;
pub(crate) mod kernel;
pub(crate) mod plan;
pub(crate) mod resample;

pub use frame::{
    ColorSpec, Frame, MAX_FRAME_SIDE, MAX_PLANES, PixelFormat, TensorImage, YuvMatrix, YuvRange,
};
pub use jpeg::MjpegDecoder;

use crate::error::{Error, Result};
use crate::package::manifest::Normalization;
use plan::{InputPlan, SourceKind};
use resample::{Affine, Resampler};

/// PS3's normalized `[3, size, size]` input at scale `size`, computed from `frame` exactly as the
/// encoder samples it: PIL's bicubic squash to `s_max` composed with torch's bicubic resize to `size`.
///
/// For inspection and comparisons with other preprocessing; the encoder itself never builds a
/// full-resolution plane of the high-res scales.
pub fn scale_plane(
    frame: &Frame<'_>,
    s_max: usize,
    size: usize,
    normalization: &Normalization,
) -> Result<Vec<f32>> {
    if size == 0 || size > s_max || s_max > MAX_FRAME_SIDE as usize {
        return Err(Error::InvalidArgument(format!(
            "scale {size} must be in 1..={s_max}"
        )));
    }
    let (w, h) = (frame.width() as usize, frame.height() as usize);
    let sampler = InputPlan::sampler_for(SourceKind::Frame, w, h, s_max, size);
    let affine = Affine::from_u8_normalization(normalization.mean, normalization.std);
    let mut out = vec![0f32; 3 * size * size];
    Resampler::default().region(
        frame,
        &sampler,
        (0, size),
        (0, size),
        &affine,
        resample::planes(&mut out, size * size),
    );
    Ok(out)
}
