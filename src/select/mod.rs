//! Bottom-up selection: the 27x27 probability map and the per-scale top-k under a fixed budget.
//!
//! Probability (PS3's `_calculate_select_probs` with the prior prompt, or a top-down prompt):
//! `p = sigmoid(clamp(5 * (cos_lr + maxpool(cos_hr)) / 2, -10, 10))` where `cos_lr` is the cosine of
//! the low-res selection features with the prompt on the 27x27 grid and `cos_hr` that of the high-res
//! branch's features with the projected prompt on its finer grid, max-pooled to 27x27. Every high-res
//! scale uses this same map, nearest-upsampled.
//!
//! Selection of step s takes `n_i` patches at each high-res scale i (the budget split; a scale with
//! fewer patches left passes the rest to the next scale, as PS3 does; what the last scale cannot take
//! goes back to the scales below it, highest first), never a patch an earlier step took.
//! **Tie rule:** patches are ranked by probability, descending, and among equal probabilities by
//! raster index in their scale's grid, ascending. Because p is constant over each 27x27 cell, ties are
//! the rule: a cell that only partly fits gives its top-left patches first. (PyTorch's `topk` picks
//! scattered patches among ties, so parity with the official code is defined per cell: the same number
//! of patches from every cell.)

mod regions;

pub use regions::Region;
pub use regions::RegionFinder;

use crate::error::{Error, Result};
use crate::geometry::{Geometry, TokenPos};

/// Cosine of `a` and `b` as `F.normalize(a) . F.normalize(b)` (norms clamped at 1e-12), in f64.
fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x as f64, y as f64);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    ab / (aa.sqrt().max(1e-12) * bb.sqrt().max(1e-12))
}

/// Fill `out` (27x27, row-major) with the selection probability of every low-res cell.
///
/// `sel_feat` is `[729, C]`, `hr_feat` is `[g_h * g_h, D]`; `prompt` is `[C]` and `prompt_hr` `[D]`.
pub(crate) fn probability_map(
    geometry: &Geometry,
    sel_feat: &[f32],
    hr_feat: &[f32],
    prompt: &[f32],
    prompt_hr: &[f32],
    out: &mut [f32],
) -> Result<()> {
    let g0 = geometry.lowres_grid();
    let gh = geometry.hrsel_grid();
    let f = gh / g0;
    let (c, d) = (prompt.len(), prompt_hr.len());
    debug_assert_eq!(sel_feat.len(), g0 * g0 * c);
    debug_assert_eq!(hr_feat.len(), gh * gh * d);
    for r in 0..g0 {
        for q in 0..g0 {
            let cell = r * g0 + q;
            let cos_lr = cosine(&sel_feat[cell * c..(cell + 1) * c], prompt);
            let mut pooled = f64::NEG_INFINITY;
            for dy in 0..f {
                for dx in 0..f {
                    let h = (r * f + dy) * gh + q * f + dx;
                    pooled = pooled.max(cosine(&hr_feat[h * d..(h + 1) * d], prompt_hr));
                }
            }
            let logit = ((cos_lr + pooled) / 2.0 * 5.0).clamp(-10.0, 10.0);
            let p = 1.0 / (1.0 + (-logit).exp());
            if !p.is_finite() {
                return Err(Error::NonFinite(format!(
                    "selection probability of cell ({r}, {q}): the backend's selection features are not finite"
                )));
            }
            out[cell] = p as f32;
        }
    }
    Ok(())
}

/// Per-scale top-k selection with the documented tie rule; scratch reused across frames.
#[derive(Debug, Default)]
pub struct Selector {
    /// Per high-res scale: which patches are taken (by earlier steps of this frame, or this one).
    taken: Vec<Vec<bool>>,
    cell_order: Vec<usize>,
    candidates: Vec<u32>,
    picked: Vec<u32>,
}

impl Selector {
    /// Forget all taken patches (start of a frame).
    pub fn reset(&mut self, geometry: &Geometry) {
        let n = geometry.high_scales().len();
        self.taken.resize_with(n, Vec::new);
        for (i, t) in self.taken.iter_mut().enumerate() {
            let g = geometry.grid(i);
            t.clear();
            t.resize(g * g, false);
        }
    }

    /// Patches taken so far, per scale (row-major grids).
    pub fn taken(&self) -> &[Vec<bool>] {
        &self.taken
    }

    /// Mark `tokens` as taken (an externally given selection).
    pub fn mark(&mut self, geometry: &Geometry, tokens: &[TokenPos]) -> Result<()> {
        for t in tokens {
            let s = t.scale as usize;
            if s >= self.taken.len() {
                return Err(Error::InvalidArgument(format!(
                    "selected token has scale index {s}; the model has {}",
                    self.taken.len()
                )));
            }
            let g = geometry.grid(s);
            if t.row as usize >= g || t.col as usize >= g {
                return Err(Error::InvalidArgument(format!(
                    "selected token ({s}, {}, {}) lies outside the {g}x{g} grid",
                    t.row, t.col
                )));
            }
            let slot = &mut self.taken[s][t.row as usize * g + t.col as usize];
            if *slot {
                return Err(Error::InvalidArgument(format!(
                    "token ({s}, {}, {}) is selected twice",
                    t.row, t.col
                )));
            }
            *slot = true;
        }
        Ok(())
    }

    /// Select one step: `split[i]` patches at scale i (carrying shortfalls to the next scale), appended
    /// to `out` in token order (scale, then raster index). Marks them taken. What the last scale
    /// cannot take goes back to the scales below it, highest first, so a step always gets
    /// `sum(split)` patches while that many are left (PS3 only carries forward; going back matters
    /// only when `steps * K` comes within a few patches of all the patches, where carrying forward
    /// alone would leave the last step short).
    pub fn select_step(
        &mut self,
        geometry: &Geometry,
        prob: &[f32],
        split: &[usize],
        out: &mut Vec<TokenPos>,
    ) {
        let g0 = geometry.lowres_grid();
        self.cell_order.clear();
        self.cell_order.extend(0..g0 * g0);
        // Probability descending; cell index breaks ties only for grouping (patches are merged below).
        // (Unstable sort: no scratch allocation; the key is a total order.)
        self.cell_order
            .sort_unstable_by(|&a, &b| prob[b].total_cmp(&prob[a]).then(a.cmp(&b)));
        let start = out.len();
        let mut carry = 0usize;
        for (s, &want) in split.iter().enumerate() {
            let need = want + carry;
            carry = need - self.take(geometry, prob, s, need, out);
        }
        let mut back = false;
        for s in (0..split.len().saturating_sub(1)).rev() {
            if carry == 0 {
                break;
            }
            carry -= self.take(geometry, prob, s, carry, out);
            back = true;
        }
        if back {
            out[start..].sort_unstable();
        }
    }

    /// Take up to `need` untaken patches of scale `s`, best cells first (ties: raster index), append
    /// them to `out` in raster order and mark them taken; returns how many were taken.
    fn take(
        &mut self,
        geometry: &Geometry,
        prob: &[f32],
        s: usize,
        need: usize,
        out: &mut Vec<TokenPos>,
    ) -> usize {
        let g0 = geometry.lowres_grid();
        let g = geometry.grid(s);
        let f = g / g0;
        let available = self.taken[s].iter().filter(|&&t| !t).count();
        let mut need = need.min(available);
        self.picked.clear();
        let mut i = 0;
        while need > 0 && i < self.cell_order.len() {
            // The group of cells sharing this probability.
            let p = prob[self.cell_order[i]];
            let mut j = i;
            self.candidates.clear();
            while j < self.cell_order.len() && prob[self.cell_order[j]] == p {
                let cell = self.cell_order[j];
                let (r, q) = (cell / g0, cell % g0);
                for y in r * f..(r + 1) * f {
                    for x in q * f..(q + 1) * f {
                        let idx = y * g + x;
                        if !self.taken[s][idx] {
                            self.candidates.push(idx as u32);
                        }
                    }
                }
                j += 1;
            }
            if self.candidates.len() > need {
                self.candidates.sort_unstable();
                self.candidates.truncate(need);
            }
            need -= self.candidates.len();
            self.picked.extend_from_slice(&self.candidates);
            i = j;
        }
        self.picked.sort_unstable();
        for &idx in &self.picked {
            self.taken[s][idx as usize] = true;
            out.push(TokenPos {
                scale: s as u8,
                row: (idx as usize / g) as u16,
                col: (idx as usize % g) as u16,
            });
        }
        self.picked.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geometry() -> Geometry {
        Geometry::new(14, vec![378, 756, 1512, 3780], 1512, 54).unwrap()
    }

    fn cell_counts(g: &Geometry, tokens: &[TokenPos]) -> Vec<Vec<usize>> {
        let mut counts = vec![vec![0; 729]; 3];
        for t in tokens {
            let (r, c) = g.lowres_cell(*t);
            counts[t.scale as usize][r * 27 + c] += 1;
        }
        counts
    }

    #[test]
    fn takes_whole_cells_by_probability_then_top_left_patches() {
        let g = geometry();
        let mut p: Vec<f32> = (0..729)
            .map(|i| (i as f32 * 0.37).sin() * 0.5 + 0.5)
            .collect();
        p[100] = 2.0; // best cell
        let mut s = Selector::default();
        s.reset(&g);
        let mut out = Vec::new();
        s.select_step(&g, &p, &[3, 16, 100], &mut out);
        assert_eq!(out.len(), 119);
        let counts = cell_counts(&g, &out);
        // 756: 4 patches per cell, only 3 wanted: top-left three of the best cell.
        assert_eq!(counts[0][100], 3);
        let first: Vec<_> = out
            .iter()
            .filter(|t| t.scale == 0)
            .map(|t| (t.row, t.col))
            .collect();
        let (r, c) = (100 / 27 * 2, 100 % 27 * 2);
        assert_eq!(first, vec![(r, c), (r, c + 1), (r + 1, c)]);
        // 1512: 16 per cell: exactly the best cell.
        assert_eq!(counts[1][100], 16);
        // 3780: 100 per cell: exactly the best cell.
        assert_eq!(counts[2][100], 100);
        // token order: scale, then raster
        assert!(
            out.windows(2)
                .all(|w| (w[0].scale, w[0].row, w[0].col) < (w[1].scale, w[1].row, w[1].col))
        );
    }

    #[test]
    fn ties_across_cells_merge_by_raster_index() {
        let g = geometry();
        let p = vec![0.5f32; 729];
        let mut s = Selector::default();
        s.reset(&g);
        let mut out = Vec::new();
        s.select_step(&g, &p, &[0, 0, 300], &mut out);
        // all cells tie: the first 300 patches in raster order = the first row (270) + 30 of the second.
        assert_eq!(out.len(), 300);
        assert!(
            out[..270]
                .iter()
                .enumerate()
                .all(|(i, t)| t.row == 0 && t.col as usize == i)
        );
        assert!(
            out[270..]
                .iter()
                .enumerate()
                .all(|(i, t)| t.row == 1 && t.col as usize == i)
        );
    }

    #[test]
    fn steps_exclude_taken_patches_and_carry_shortfalls() {
        let g = Geometry::new(14, vec![378, 756], 1512, 54).unwrap();
        let p: Vec<f32> = (0..729).map(|i| i as f32).collect();
        let mut s = Selector::default();
        s.reset(&g);
        let mut a = Vec::new();
        s.select_step(&g, &p, &[1000], &mut a);
        let mut b = Vec::new();
        s.select_step(&g, &p, &[1000], &mut b);
        assert_eq!(a.len(), 1000);
        assert_eq!(b.len(), 1000);
        let mut all: Vec<_> = a.iter().chain(&b).copied().collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 2000);
        // the highest cells first: cell 728 is the bottom-right one
        assert!(a.contains(&TokenPos {
            scale: 0,
            row: 53,
            col: 53
        }));

        // shortfall carry: 756 has 2916 patches; ask for 3000 there and 10 at 1512.
        let g = geometry();
        s.reset(&g);
        let mut c = Vec::new();
        s.select_step(&g, &p, &[3000, 10, 0], &mut c);
        let per_scale: Vec<usize> = (0..3)
            .map(|k| c.iter().filter(|t| t.scale == k).count())
            .collect();
        assert_eq!(per_scale, vec![2916, 94, 0]);
    }

    #[test]
    fn probability_map_matches_the_formula() {
        let g = geometry();
        let (c, d) = (4, 3);
        let sel: Vec<f32> = (0..729 * c)
            .map(|i| ((i * 31 % 17) as f32 - 8.0) / 8.0)
            .collect();
        let hr: Vec<f32> = (0..2916 * d)
            .map(|i| ((i * 13 % 11) as f32 - 5.0) / 5.0)
            .collect();
        let prompt = [0.3, -0.2, 0.9, 0.1];
        let prompt_hr = [0.5, 0.5, -0.7];
        let mut p = vec![0f32; 729];
        probability_map(&g, &sel, &hr, &prompt, &prompt_hr, &mut p).unwrap();
        let cell = 5 * 27 + 7;
        let cos = |a: &[f32], b: &[f32]| {
            let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            dot / (a.iter().map(|x| x * x).sum::<f32>().sqrt()
                * b.iter().map(|x| x * x).sum::<f32>().sqrt())
        };
        let lr = cos(&sel[cell * c..cell * c + c], &prompt);
        let mut hr_max = f32::MIN;
        for (y, x) in [(10, 14), (10, 15), (11, 14), (11, 15)] {
            let h = y * 54 + x;
            hr_max = hr_max.max(cos(&hr[h * d..h * d + d], &prompt_hr));
        }
        let expect = 1.0 / (1.0 + (-(lr + hr_max) / 2.0 * 5.0).exp());
        assert!((p[cell] - expect).abs() < 1e-6, "{} vs {expect}", p[cell]);
    }

    #[test]
    fn no_step_comes_up_short_while_patches_remain() {
        // Carrying shortfalls only forward, these (steps, K) with steps * K <= 87480 left the last
        // step short (2 x 43739: 43737 patches in step 1), so every encode failed.
        let g = geometry();
        let p = vec![0.5f32; 729];
        for (steps, k) in [
            (2, 43_739),
            (3, 29_159),
            (8, 10_935),
            (25, 3_499),
            (1, 87_480),
        ] {
            let mut s = Selector::default();
            s.reset(&g);
            let split = g.budget_split(k);
            for step in 0..steps {
                let mut out = Vec::new();
                s.select_step(&g, &p, &split, &mut out);
                assert_eq!(out.len(), k, "{steps} x {k}: step {step}");
                assert!(out.windows(2).all(|w| w[0] < w[1]), "token order");
            }
        }
        // Without a shortfall the split is kept exactly.
        let mut s = Selector::default();
        s.reset(&g);
        let mut out = Vec::new();
        s.select_step(&g, &p, &g.budget_split(2560), &mut out);
        let per_scale: Vec<usize> = (0..3)
            .map(|i| out.iter().filter(|t| t.scale == i).count())
            .collect();
        assert_eq!(per_scale, vec![85, 341, 2134]);
    }
}
