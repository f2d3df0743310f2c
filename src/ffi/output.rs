//! The result view of an encode: C structs pointing into the encoder's buffers.

use crate::geometry::FrameBox;
use crate::output::{Output, Timings};
use crate::select::Region;

/// A box in frame pixels (floating point: a token's footprint rarely falls on whole pixels).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ps3rt_box {
    /// Left edge.
    pub x: f32,
    /// Top edge.
    pub y: f32,
    /// Width.
    pub w: f32,
    /// Height.
    pub h: f32,
}

impl From<FrameBox> for ps3rt_box {
    fn from(b: FrameBox) -> Self {
        ps3rt_box {
            x: b.x,
            y: b.y,
            w: b.w,
            h: b.h,
        }
    }
}

/// Where one feature row comes from.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ps3rt_token {
    /// Scale in pixels: 378 for the low-res tokens, then the high-res scales (756, 1512, 3780).
    pub scale: u32,
    /// Row in the scale's token grid.
    pub row: u32,
    /// Column in the scale's token grid.
    pub col: u32,
    /// The token's footprint in frame pixels.
    pub bbox: ps3rt_box,
}

/// A group of 4-connected selected patches at one scale.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ps3rt_region {
    /// The scale in pixels (756, 1512, 3780).
    pub scale: u32,
    /// Number of selected patches in the group.
    pub patches: u32,
    /// Bounding box in frame pixels.
    pub bbox: ps3rt_box,
    /// Highest selection probability among the group's patches.
    pub score: f32,
    /// Mean selection probability over the group's patches.
    pub mean_score: f32,
}

/// Wall-clock time of each stage of an encode, in milliseconds.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ps3rt_timings {
    /// Resampling the 378 and 1512 px planes from the frame.
    pub preprocess_ms: f64,
    /// The low-res graph.
    pub lowres_ms: f64,
    /// The high-res selection graph.
    pub hrsel_ms: f64,
    /// Probability map, top-k and regions.
    pub select_ms: f64,
    /// Gathering the selected patches and their position rows.
    pub gather_ms: f64,
    /// The high-res graph (all steps).
    pub hrenc_ms: f64,
    /// The whole encode.
    pub total_ms: f64,
}

impl From<&Timings> for ps3rt_timings {
    fn from(t: &Timings) -> Self {
        ps3rt_timings {
            preprocess_ms: t.preprocess_ms,
            lowres_ms: t.lowres_ms,
            hrsel_ms: t.hrsel_ms,
            select_ms: t.select_ms,
            gather_ms: t.gather_ms,
            hrenc_ms: t.hrenc_ms,
            total_ms: t.total_ms,
        }
    }
}

/// The result of one encode. The struct and every array it points to are owned by the encoder that
/// produced it and stay valid and unchanged until that encoder's next encode call (successful or
/// not) or its destruction; copy out what must live longer. Later versions may append fields.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ps3rt_output {
    /// Features `[token_count, width]`, row-major `float`: the `lowres_token_count` low-res tokens
    /// (raster order) first, then the selected high-res tokens ordered by scale, then raster index.
    pub features: *const f32,
    /// Number of tokens (rows of `features`, entries of `tokens`): `lowres_token_count + steps * budget`.
    pub token_count: usize,
    /// Feature width C (columns of `features`).
    pub width: usize,
    /// Number of low-res tokens at the start (`prob_grid * prob_grid`, 729 for PS3-4K).
    pub lowres_token_count: usize,
    /// Metadata of every feature row, `token_count` entries, same order as `features`.
    pub tokens: *const ps3rt_token,
    /// Regions of adjacent selected patches, best first (NULL when `region_count` is 0).
    pub regions: *const ps3rt_region,
    /// Number of regions.
    pub region_count: usize,
    /// Selection probability of each low-res cell, `prob_grid * prob_grid` floats, row-major.
    pub prob_map: *const f32,
    /// Side of the probability map (27 for PS3-4K).
    pub prob_grid: usize,
    /// High-res tokens per step (K).
    pub budget: usize,
    /// Look-close steps.
    pub steps: usize,
    /// Width of the encoded frame (the tensor side for tensor inputs).
    pub frame_width: u32,
    /// Height of the encoded frame (the tensor side for tensor inputs).
    pub frame_height: u32,
    /// Stage timings of this encode.
    pub timings: ps3rt_timings,
}

/// The C view of an encoder's [`Output`], with the converted token and region arrays it points to
/// (their buffers are reused from frame to frame).
#[derive(Debug)]
pub(crate) struct OutputView {
    view: ps3rt_output,
    tokens: Vec<ps3rt_token>,
    regions: Vec<ps3rt_region>,
}

impl Default for OutputView {
    fn default() -> Self {
        OutputView {
            view: ps3rt_output {
                features: std::ptr::null(),
                token_count: 0,
                width: 0,
                lowres_token_count: 0,
                tokens: std::ptr::null(),
                regions: std::ptr::null(),
                region_count: 0,
                prob_map: std::ptr::null(),
                prob_grid: 0,
                budget: 0,
                steps: 0,
                frame_width: 0,
                frame_height: 0,
                timings: ps3rt_timings::default(),
            },
            tokens: Vec::new(),
            regions: Vec::new(),
        }
    }
}

fn region(r: &Region) -> ps3rt_region {
    ps3rt_region {
        scale: r.scale,
        patches: r.patches,
        bbox: r.bbox.into(),
        score: r.score,
        mean_score: r.mean_score,
    }
}

impl OutputView {
    /// Point the view at `out` (which must not change while the view is handed out) and return it.
    pub fn refresh(&mut self, out: &Output) -> &ps3rt_output {
        self.tokens.clear();
        self.tokens.extend(out.tokens().iter().map(|t| ps3rt_token {
            scale: t.scale,
            row: t.row,
            col: t.col,
            bbox: t.bbox.into(),
        }));
        self.regions.clear();
        self.regions.extend(out.regions().iter().map(region));
        let (frame_width, frame_height) = out.frame_size();
        self.view = ps3rt_output {
            features: out.features().as_ptr(),
            token_count: out.token_count(),
            width: out.width(),
            lowres_token_count: out.prob_grid() * out.prob_grid(),
            tokens: self.tokens.as_ptr(),
            regions: if self.regions.is_empty() {
                std::ptr::null()
            } else {
                self.regions.as_ptr()
            },
            region_count: self.regions.len(),
            prob_map: out.prob_map().as_ptr(),
            prob_grid: out.prob_grid(),
            budget: out.budget(),
            steps: out.steps(),
            frame_width,
            frame_height,
            timings: out.timings().into(),
        };
        &self.view
    }
}
