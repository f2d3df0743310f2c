//! # ps3rt: the PS3 4K vision encoder at constant latency
//!
//! PS3 ("Scaling Vision Pre-Training to 4K Resolution", CVPR 2025) encodes a frame at 378 px, scores
//! which high-resolution patches matter, and encodes only a fixed number K of them at 756/1512/3780 px
//! with the low-res KV cache. A fixed K means a fixed amount of work per frame, whatever the frame.
//!
//! ```no_run
//! use ps3rt::{EncodeOptions, Encoder, Frame, Model, PixelFormat};
//! # fn main() -> ps3rt::Result<()> {
//! let model = Model::load("models/ps3-tiny-4k")?;
//! let mut encoder = Encoder::new(&model, EncodeOptions { budget: Some(1024), steps: 1 })?;
//! # let (width, height, pixels) = (3840u32, 2160u32, vec![0u8; 3840 * 2160 * 3]);
//! let frame = Frame::packed(width, height, PixelFormat::Rgb8, &pixels)?;
//! let out = encoder.encode(&frame)?;
//! println!("{} tokens x {} features, best region {:?}", out.token_count(), out.width(), out.regions().first());
//! # Ok(()) }
//! ```
//!
//! Data flows one way: [`image`] (frames, PS3's resizes) -> [`backend`] (the three graphs) ->
//! [`select`] (probabilities, top-k, regions) -> [`Output`].

#![deny(missing_docs)]

pub mod allocator;
pub mod backend;
pub mod capture;
#[cfg(feature = "cuda")]
mod cuda;
mod error;
pub mod ffi;
pub mod flops;
pub mod geometry;
pub mod image;
pub mod labels;
mod model;
mod output;
pub mod package;
mod pipeline;
pub mod select;
pub mod synthetic;

pub use backend::{BackendKind, BackendOptions};
#[cfg(feature = "cuda")]
pub use cuda::PinnedBuffer;
pub use error::{Error, Result};
pub use geometry::{FrameBox, Geometry, TokenPos};
pub use image::{ColorSpec, Frame, MjpegDecoder, PixelFormat, TensorImage, YuvMatrix, YuvRange};
pub use labels::{LabelBank, LabelOptions, LabelScore, RegionLabel, TextEmbedding};
pub use model::Model;
pub use output::{Output, Timings, TokenInfo};
pub use package::Package;
pub use pipeline::{EncodeOptions, Encoder, Input, Preprocess, in_backend_call};
pub use select::Region;

/// The crate version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
