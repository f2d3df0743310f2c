//! Per-source-size sampling plans: how the 378 and 1512 planes and every high-res patch are read from
//! a frame of a given size, following PS3's preprocessing.
//!
//! PS3 (PS3ImageProcessor + the model's own resizes) computes, for a frame of any size and aspect:
//! `x_max = PIL_bicubic_squash(frame, S_max)` (8-bit, antialiased), then every scale
//! `x_S = torch_bicubic(x_max, S)`. A plan composes the two per axis ([`kernel::compose`]), so each
//! scale is sampled from the frame directly. Where `x_S` is `x_max` itself or a point sample of it
//! (S_max/S odd, e.g. 3780 -> 756), the plan also reproduces PIL's 8-bit rounding and clipping; the 378
//! and 1512 planes skip that rounding (differences measured in docs/preprocessing.md).
//!
//! A normalized tensor input is already `x_max`: its plan is torch's bicubic alone, exact.

use super::kernel::{self, AxisWeights};
use super::resample::ScaleSampler;
use crate::error::{Error, Result};
use crate::geometry::Geometry;

/// What kind of pixels a plan samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SourceKind {
    /// An 8-bit frame of any size (squashed with PIL's bicubic first).
    Frame,
    /// A normalized `[3, S_max, S_max]` tensor (PS3's `pixel_values`).
    Tensor,
}

/// Sampling of every scale the pipeline reads, for one source size.
#[derive(Debug, Clone)]
pub(crate) struct InputPlan {
    kind: SourceKind,
    width: usize,
    height: usize,
    /// The low-res plane (378).
    pub lowres: ScaleSampler,
    /// The high-res selection plane (1512).
    pub hrsel: ScaleSampler,
    /// Each high-res scale (patches are gathered from these).
    pub high: Vec<ScaleSampler>,
    /// The high-res scale sampled exactly as the selection plane is (PS3-4K's 1512: neither is
    /// rounded to 8 bits), whose patches can be copied out of that plane instead of resampled.
    pub hrsel_scale: Option<usize>,
}

impl InputPlan {
    /// Build the plan for a source of `width` x `height`.
    pub fn new(kind: SourceKind, width: usize, height: usize, geometry: &Geometry) -> Result<Self> {
        let s_max = geometry.input_size();
        if kind == SourceKind::Tensor && (width != s_max || height != s_max) {
            return Err(Error::InvalidFrame(format!(
                "a normalized tensor input must be [3, {s_max}, {s_max}] for this model, got [3, {height}, {width}]"
            )));
        }
        let squash_x = (kind == SourceKind::Frame).then(|| kernel::pil_bicubic(width, s_max));
        let squash_y = (kind == SourceKind::Frame).then(|| kernel::pil_bicubic(height, s_max));
        let sampler =
            |size: usize| scale_sampler(kind, squash_x.as_ref(), squash_y.as_ref(), s_max, size);
        let hrsel = sampler(geometry.hrsel_input());
        let high: Vec<ScaleSampler> = geometry.high_scales().iter().map(|&s| sampler(s)).collect();
        let hrsel_scale = high.iter().position(|s| *s == hrsel);
        Ok(InputPlan {
            kind,
            width,
            height,
            lowres: sampler(geometry.lowres_size()),
            hrsel,
            high,
            hrsel_scale,
        })
    }

    /// Sampling of any square scale `size` of a source (what PS3's `F.interpolate(x_max, size)` reads).
    pub fn sampler_for(
        kind: SourceKind,
        width: usize,
        height: usize,
        s_max: usize,
        size: usize,
    ) -> ScaleSampler {
        let squash_x = (kind == SourceKind::Frame).then(|| kernel::pil_bicubic(width, s_max));
        let squash_y = (kind == SourceKind::Frame).then(|| kernel::pil_bicubic(height, s_max));
        scale_sampler(kind, squash_x.as_ref(), squash_y.as_ref(), s_max, size)
    }

    /// Whether this plan was built for a source of this kind and size.
    pub fn fits(&self, kind: SourceKind, width: usize, height: usize) -> bool {
        self.kind == kind && self.width == width && self.height == height
    }
}

/// Frame -> scale `size`: PIL's squash composed with torch's resize (or torch's alone for tensors).
fn scale_sampler(
    kind: SourceKind,
    squash_x: Option<&AxisWeights>,
    squash_y: Option<&AxisWeights>,
    s_max: usize,
    size: usize,
) -> ScaleSampler {
    let to_scale = kernel::torch_bicubic(s_max, size);
    let point = to_scale.is_point_sample();
    let axis = |squash: Option<&AxisWeights>| match squash {
        Some(sq) if size == s_max => sq.clone(),
        Some(sq) => kernel::compose(sq, &to_scale),
        None => to_scale.clone(),
    };
    // Columns are padded to whole SIMD lanes (the horizontal dot products); rows are not (a padded
    // row window would resample rows whose weight is zero).
    ScaleSampler {
        x: axis(squash_x).padded(super::resample::LANES),
        y: axis(squash_y),
        quantize: kind == SourceKind::Frame && point,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_follow_ps3_semantics() {
        let g = Geometry::new(14, vec![378, 756, 1512, 3780], 1512, 54).unwrap();
        let p = InputPlan::new(SourceKind::Frame, 3840, 2160, &g).unwrap();
        assert_eq!(p.lowres.out_len(), 378);
        assert_eq!(p.hrsel.out_len(), 1512);
        assert_eq!(
            p.high.iter().map(|s| s.out_len()).collect::<Vec<_>>(),
            vec![756, 1512, 3780]
        );
        // 756 is a point sample of the squashed image, 3780 is the squashed image: both PIL-exact.
        assert!(p.high[0].quantize && p.high[2].quantize);
        assert!(!p.high[1].quantize && !p.lowres.quantize);
        // The 1512 scale is sampled exactly as the selection plane: its patches are copied from it.
        assert_eq!(p.hrsel_scale, Some(1));
        assert_eq!(p.high[1], p.hrsel);
        assert_eq!(
            p.high[2].x,
            kernel::pil_bicubic(3840, 3780).padded(super::super::resample::LANES)
        );

        let t = InputPlan::new(SourceKind::Tensor, 3780, 3780, &g).unwrap();
        assert_eq!(
            t.high[2].x,
            kernel::identity(3780).padded(super::super::resample::LANES)
        );
        assert_eq!(t.lowres.y, kernel::torch_bicubic(3780, 378));
        assert!(!t.high[0].quantize);
        assert_eq!(t.hrsel_scale, Some(1));
        // A geometry whose selection plane is no patch scale copies nothing.
        let other = Geometry::new(14, vec![378, 756, 1512], 1134, 81).unwrap();
        assert_eq!(
            InputPlan::new(SourceKind::Frame, 1280, 720, &other)
                .unwrap()
                .hrsel_scale,
            None
        );
        assert!(InputPlan::new(SourceKind::Tensor, 378, 378, &g).is_err());
        assert!(p.fits(SourceKind::Frame, 3840, 2160) && !p.fits(SourceKind::Frame, 3840, 2161));
    }
}
