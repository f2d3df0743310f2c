//! What an encode returns: features, per-token metadata, the probability map, regions and timings.
//!
//! An [`Output`] is owned by its encoder and overwritten by the next encode (its buffers are reused,
//! so steady-state encoding does not allocate); copy out what must outlive the next frame.

use crate::geometry::{FrameBox, TokenPos};
use crate::select::Region;

/// Where one feature row comes from.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct TokenInfo {
    /// Scale in pixels (378 for the low-res tokens, then 756, 1512, 3780).
    pub scale: u32,
    /// Row in the scale's token grid.
    pub row: u32,
    /// Column in the scale's token grid.
    pub col: u32,
    /// The token's footprint in frame pixels.
    #[serde(rename = "box")]
    pub bbox: FrameBox,
}

/// Wall-clock time of each stage of the last encode, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Timings {
    /// Resampling the 378 and 1512 planes from the frame.
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

impl Timings {
    /// The pipeline's stages in order, each named as `ps3rt bench` and `ps3rt batch` print them
    /// (`preprocess`, `lowres`, `hrsel`, `select`, `gather`, `hrenc`), with its milliseconds; the
    /// whole encode (`total_ms`) is not a stage.
    pub fn stages(&self) -> [(&'static str, f64); 6] {
        [
            ("preprocess", self.preprocess_ms),
            ("lowres", self.lowres_ms),
            ("hrsel", self.hrsel_ms),
            ("select", self.select_ms),
            ("gather", self.gather_ms),
            ("hrenc", self.hrenc_ms),
        ]
    }
}

/// The result of one encode.
#[derive(Debug, Clone, Default)]
pub struct Output {
    pub(crate) width: usize,
    pub(crate) features: Vec<f32>,
    pub(crate) tokens: Vec<TokenInfo>,
    pub(crate) selected: Vec<TokenPos>,
    pub(crate) prob_map: Vec<f32>,
    pub(crate) prob_grid: usize,
    pub(crate) regions: Vec<Region>,
    pub(crate) timings: Timings,
    pub(crate) budget: usize,
    pub(crate) steps: usize,
    pub(crate) frame_size: (u32, u32),
}

impl Output {
    /// Features `[tokens, width]`, row-major: the low-res tokens (27x27, raster order) first, then the
    /// selected high-res tokens ordered by scale, then raster index.
    pub fn features(&self) -> &[f32] {
        &self.features
    }

    /// Feature width C.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Number of tokens (rows of [`Output::features`]): 729 + steps x budget.
    pub fn token_count(&self) -> usize {
        self.tokens.len()
    }

    /// Metadata of every feature row, in the same order.
    pub fn tokens(&self) -> &[TokenInfo] {
        &self.tokens
    }

    /// The selected high-res tokens, in feature order (after the low-res tokens).
    pub fn selected(&self) -> &[TokenPos] {
        &self.selected
    }

    /// Selection probability of each low-res cell, row-major.
    pub fn prob_map(&self) -> &[f32] {
        &self.prob_map
    }

    /// Side of the probability map (27).
    pub fn prob_grid(&self) -> usize {
        self.prob_grid
    }

    /// Regions of adjacent selected patches, best first.
    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// Stage timings of this encode.
    pub fn timings(&self) -> &Timings {
        &self.timings
    }

    /// High-res tokens per step (K).
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// Look-close steps.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// Size of the encoded frame (the tensor side for tensor inputs).
    pub fn frame_size(&self) -> (u32, u32) {
        self.frame_size
    }

    /// Selected high-res tokens per scale, in scale order.
    pub fn selected_per_scale(&self, scales: usize) -> Vec<usize> {
        let mut n = vec![0; scales];
        for t in &self.selected {
            if let Some(c) = n.get_mut(t.scale as usize) {
                *c += 1;
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::Timings;

    #[test]
    fn stages_name_their_own_fields_in_pipeline_order() {
        let t = Timings {
            preprocess_ms: 1.0,
            lowres_ms: 2.0,
            hrsel_ms: 3.0,
            select_ms: 4.0,
            gather_ms: 5.0,
            hrenc_ms: 6.0,
            total_ms: 99.0,
        };
        assert_eq!(
            t.stages(),
            [
                ("preprocess", 1.0),
                ("lowres", 2.0),
                ("hrsel", 3.0),
                ("select", 4.0),
                ("gather", 5.0),
                ("hrenc", 6.0),
            ]
        );
    }
}
