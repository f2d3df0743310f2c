//! Pixels in: frame views, PS3's resizes composed per axis, and streaming resampling of the planes and
//! patches the pipeline needs.

mod frame;
pub(crate) mod kernel;
pub(crate) mod plan;
pub(crate) mod resample;

pub use frame::{Frame, MAX_FRAME_SIDE, PixelFormat, TensorImage};
