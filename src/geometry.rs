//! PS3's multi-scale geometry: scales, token grids, the budget split, and where a token lies in the
//! caller's frame.

use crate::error::{Error, Result};

/// The scales and grids of a PS3 model (PS3-4K: 378/756/1512/3780 px, patch 14).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Geometry {
    patch: usize,
    scales: Vec<usize>,
    hrsel_input: usize,
    hrsel_grid: usize,
}

/// A high-resolution token: which high-res scale, and its cell in that scale's grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenPos {
    /// Index into the high-res scales (0 = the first scale above the low-res one, e.g. 756).
    pub scale: u8,
    /// Row in the scale's token grid.
    pub row: u16,
    /// Column in the scale's token grid.
    pub col: u16,
}

/// A box in frame pixels (floating point: a token's footprint rarely falls on whole pixels).
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct FrameBox {
    /// Left edge.
    pub x: f32,
    /// Top edge.
    pub y: f32,
    /// Width.
    pub w: f32,
    /// Height.
    pub h: f32,
}

impl Geometry {
    /// Build and check a geometry: scales ascending, multiples of the patch, each grid a multiple of
    /// the low-res grid; the high-res selection grid a multiple of the low-res grid.
    pub fn new(
        patch: usize,
        scales: Vec<usize>,
        hrsel_input: usize,
        hrsel_grid: usize,
    ) -> Result<Self> {
        let bad = |m: String| Err(Error::InvalidArgument(format!("geometry: {m}")));
        if patch == 0 || patch > 64 {
            return bad(format!("patch {patch} outside 1..=64"));
        }
        if scales.len() < 2 || scales.len() > 8 {
            return bad(format!(
                "{} scales; PS3 needs a low-res scale and 1..=7 high-res scales",
                scales.len()
            ));
        }
        if scales.windows(2).any(|w| w[0] >= w[1]) {
            return bad(format!("scales {scales:?} are not strictly ascending"));
        }
        if let Some(s) = scales.iter().find(|&&s| s % patch != 0 || s > 16_384) {
            return bad(format!(
                "scale {s} is not a multiple of patch {patch} (or exceeds 16384)"
            ));
        }
        let g0 = scales[0] / patch;
        if let Some(s) = scales.iter().find(|&&s| !(s / patch).is_multiple_of(g0)) {
            return bad(format!(
                "grid of scale {s} is not a multiple of the low-res grid {g0}"
            ));
        }
        if hrsel_grid == 0
            || !hrsel_grid.is_multiple_of(g0)
            || hrsel_input == 0
            || !hrsel_input.is_multiple_of(hrsel_grid)
        {
            return bad(format!(
                "high-res selection grid {hrsel_grid} at {hrsel_input} px does not tile the low-res grid {g0}"
            ));
        }
        Ok(Geometry {
            patch,
            scales,
            hrsel_input,
            hrsel_grid,
        })
    }

    /// Patch side in pixels (14).
    pub fn patch(&self) -> usize {
        self.patch
    }

    /// All scales, ascending; the first is the low-res scale.
    pub fn scales(&self) -> &[usize] {
        &self.scales
    }

    /// The high-res scales (all but the first).
    pub fn high_scales(&self) -> &[usize] {
        &self.scales[1..]
    }

    /// Input side the model squashes every frame to (the largest scale).
    pub fn input_size(&self) -> usize {
        self.scales[self.scales.len() - 1]
    }

    /// Low-res scale (378).
    pub fn lowres_size(&self) -> usize {
        self.scales[0]
    }

    /// Low-res token grid side (27).
    pub fn lowres_grid(&self) -> usize {
        self.scales[0] / self.patch
    }

    /// Number of low-res tokens (729).
    pub fn lowres_tokens(&self) -> usize {
        self.lowres_grid() * self.lowres_grid()
    }

    /// Token grid side of high-res scale `i`.
    pub fn grid(&self, scale: usize) -> usize {
        self.scales[scale + 1] / self.patch
    }

    /// Input side of the high-res selection branch (1512).
    pub fn hrsel_input(&self) -> usize {
        self.hrsel_input
    }

    /// Output grid side of the high-res selection branch (54).
    pub fn hrsel_grid(&self) -> usize {
        self.hrsel_grid
    }

    /// Number of high-res patches over all high-res scales (87,480 at 4K).
    pub fn total_high_patches(&self) -> usize {
        (0..self.high_scales().len())
            .map(|i| self.grid(i) * self.grid(i))
            .sum()
    }

    /// Split `budget` over the high-res scales by pixel count, `floor(K * S_i^2 / sum S_j^2)`, the last
    /// scale taking the remainder (PS3's GitHub code). 4K, K = 2560 -> [85, 341, 2134].
    pub fn budget_split(&self, budget: usize) -> Vec<usize> {
        let px: Vec<u128> = self
            .high_scales()
            .iter()
            .map(|&s| (s * s) as u128)
            .collect();
        let total: u128 = px.iter().sum();
        let mut split: Vec<usize> = px
            .iter()
            .map(|&p| (budget as u128 * p / total) as usize)
            .collect();
        let head: usize = split[..split.len() - 1].iter().sum();
        let last = split.len() - 1;
        split[last] = budget - head;
        split
    }

    /// The box of `token` in a frame of `width` x `height` (PS3 squashes the frame to a square, so a
    /// token covers `patch / S` of the frame's width and height).
    pub fn token_box(&self, token: TokenPos, width: u32, height: u32) -> FrameBox {
        let s = self.scales[token.scale as usize + 1] as f32;
        let fx = width as f32 / s;
        let fy = height as f32 / s;
        let p = self.patch as f32;
        FrameBox {
            x: token.col as f32 * p * fx,
            y: token.row as f32 * p * fy,
            w: p * fx,
            h: p * fy,
        }
    }

    /// The low-res cell (row, col) that contains `token`.
    pub fn lowres_cell(&self, token: TokenPos) -> (usize, usize) {
        let f = self.grid(token.scale as usize) / self.lowres_grid();
        (token.row as usize / f, token.col as usize / f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ps3_4k() -> Geometry {
        Geometry::new(14, vec![378, 756, 1512, 3780], 1512, 54).unwrap()
    }

    #[test]
    fn budget_split_follows_the_remainder_rule() {
        let g = ps3_4k();
        assert_eq!(g.budget_split(2560), vec![85, 341, 2134]);
        assert_eq!(g.budget_split(1280), vec![42, 170, 1068]);
        assert_eq!(g.budget_split(1), vec![0, 0, 1]);
        for k in [1, 7, 256, 1024, 2559, 2560, 87_480] {
            assert_eq!(g.budget_split(k).iter().sum::<usize>(), k);
        }
        let g15 = Geometry::new(14, vec![378, 756, 1512], 1512, 54).unwrap();
        assert_eq!(g15.budget_split(1280).iter().sum::<usize>(), 1280);
    }

    #[test]
    fn grids_and_boxes() {
        let g = ps3_4k();
        assert_eq!(
            (g.lowres_grid(), g.grid(0), g.grid(1), g.grid(2)),
            (27, 54, 108, 270)
        );
        assert_eq!(g.total_high_patches(), 87_480);
        let b = g.token_box(
            TokenPos {
                scale: 2,
                row: 269,
                col: 0,
            },
            3840,
            2160,
        );
        assert!((b.x - 0.0).abs() < 1e-3 && (b.y + b.h - 2160.0).abs() < 1e-2);
        assert!((b.w - 14.0 * 3840.0 / 3780.0).abs() < 1e-3);
        assert_eq!(
            g.lowres_cell(TokenPos {
                scale: 2,
                row: 269,
                col: 15
            }),
            (26, 1)
        );
        assert_eq!(
            g.lowres_cell(TokenPos {
                scale: 0,
                row: 3,
                col: 53
            }),
            (1, 26)
        );
    }

    #[test]
    fn rejects_inconsistent_geometry() {
        assert!(Geometry::new(14, vec![378, 700], 1512, 54).is_err());
        assert!(Geometry::new(14, vec![756, 378], 1512, 54).is_err());
        assert!(Geometry::new(14, vec![378], 1512, 54).is_err());
        assert!(Geometry::new(14, vec![378, 756], 1512, 50).is_err());
        assert!(Geometry::new(0, vec![378, 756], 1512, 54).is_err());
    }
}
