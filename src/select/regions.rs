//! Selected regions: 4-connected groups of selected patches of one scale, as boxes in frame pixels.

use crate::geometry::{FrameBox, Geometry, TokenPos};

/// A group of adjacent selected patches at one scale.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Region {
    /// The scale in pixels (756, 1512, 3780).
    pub scale: u32,
    /// Bounding box in frame pixels.
    #[serde(rename = "box")]
    pub bbox: FrameBox,
    /// Number of selected patches in the group.
    pub patches: u32,
    /// Highest selection probability among the group's patches.
    pub score: f32,
    /// Mean selection probability over the group's patches.
    pub mean_score: f32,
}

/// Finds regions; scratch reused across frames.
#[derive(Debug, Default)]
pub struct RegionFinder {
    visited: Vec<bool>,
    stack: Vec<(u16, u16)>,
}

impl RegionFinder {
    /// Regions of the selected patches `taken` (per scale, row-major), sorted by score descending, then
    /// size descending, then position. `prob` is the 27x27 map.
    pub fn find(
        &mut self,
        geometry: &Geometry,
        taken: &[Vec<bool>],
        prob: &[f32],
        width: u32,
        height: u32,
        out: &mut Vec<Region>,
    ) {
        out.clear();
        for (s, grid_taken) in taken.iter().enumerate() {
            let g = geometry.grid(s);
            self.visited.clear();
            self.visited.resize(g * g, false);
            for start in 0..g * g {
                if !grid_taken[start] || self.visited[start] {
                    continue;
                }
                self.visited[start] = true;
                self.stack.clear();
                self.stack.push(((start / g) as u16, (start % g) as u16));
                let (mut r0, mut c0, mut r1, mut c1) = (usize::MAX, usize::MAX, 0, 0);
                let (mut n, mut sum, mut best) = (0u32, 0f64, f32::MIN);
                while let Some((r, c)) = self.stack.pop() {
                    let (r, c) = (r as usize, c as usize);
                    (r0, c0, r1, c1) = (r0.min(r), c0.min(c), r1.max(r), c1.max(c));
                    let (lr, lc) = geometry.lowres_cell(TokenPos {
                        scale: s as u8,
                        row: r as u16,
                        col: c as u16,
                    });
                    let p = prob[lr * geometry.lowres_grid() + lc];
                    n += 1;
                    sum += p as f64;
                    best = best.max(p);
                    let neighbours = [
                        (r.wrapping_sub(1), c),
                        (r + 1, c),
                        (r, c.wrapping_sub(1)),
                        (r, c + 1),
                    ];
                    for (nr, nc) in neighbours {
                        if nr < g && nc < g {
                            let i = nr * g + nc;
                            if grid_taken[i] && !self.visited[i] {
                                self.visited[i] = true;
                                self.stack.push((nr as u16, nc as u16));
                            }
                        }
                    }
                }
                let a = geometry.token_box(
                    TokenPos {
                        scale: s as u8,
                        row: r0 as u16,
                        col: c0 as u16,
                    },
                    width,
                    height,
                );
                let b = geometry.token_box(
                    TokenPos {
                        scale: s as u8,
                        row: r1 as u16,
                        col: c1 as u16,
                    },
                    width,
                    height,
                );
                out.push(Region {
                    scale: geometry.high_scales()[s] as u32,
                    bbox: FrameBox {
                        x: a.x,
                        y: a.y,
                        w: b.x + b.w - a.x,
                        h: b.y + b.h - a.y,
                    },
                    patches: n,
                    score: best,
                    mean_score: (sum / n as f64) as f32,
                });
            }
        }
        // Unstable sort: no scratch allocation; the key is a total order, so the result is the same.
        out.sort_unstable_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then(b.patches.cmp(&a.patches))
                .then(a.scale.cmp(&b.scale))
                .then(a.bbox.y.total_cmp(&b.bbox.y))
                .then(a.bbox.x.total_cmp(&b.bbox.x))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adjacent_patches_merge_and_diagonals_do_not() {
        let g = Geometry::new(14, vec![378, 756], 1512, 54).unwrap();
        let mut taken = vec![vec![false; 54 * 54]];
        for (r, c) in [(0, 0), (0, 1), (1, 1), (10, 10), (11, 11)] {
            taken[0][r * 54 + c] = true;
        }
        let mut prob = vec![0.1f32; 729];
        prob[5 * 27 + 5] = 0.9; // cell of (10,10) and (11,11)
        let mut out = Vec::new();
        RegionFinder::default().find(&g, &taken, &prob, 756, 756, &mut out);
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].patches, 1);
        assert!((out[0].score - 0.9).abs() < 1e-6);
        let big = out.iter().find(|r| r.patches == 3).unwrap();
        assert_eq!(
            big.bbox,
            FrameBox {
                x: 0.0,
                y: 0.0,
                w: 28.0,
                h: 28.0
            }
        );
        assert_eq!(big.scale, 756);
    }
}
