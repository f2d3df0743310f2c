//! One-dimensional resampling weights: PIL's antialiased bicubic, PyTorch's bicubic, and their
//! composition.
//!
//! PS3 squashes a frame to `S_max x S_max` with PIL's bicubic (antialiased, a = -0.5) and then derives
//! every scale `S` with `F.interpolate(mode="bicubic", align_corners=False)` (a = -0.75, no antialias).
//! Both are separable and linear, so the weights of "frame -> S" are the product of the two 1-D weight
//! matrices: [`compose`] builds them once per frame size, and the resampler reads each frame pixel it
//! needs once instead of materializing the `S_max x S_max` intermediate. Written here because no crate
//! reproduces these two libraries' exact conventions (PIL's support rounding and edge renormalization,
//! torch's index clamping), which the model's parity depends on.

/// Weights of one axis: output `o` is `sum_t weights[o * taps + t] * input[start[o] + t]`.
///
/// Every window lies inside the input (`start[o] + taps <= in_len`); clamped edge taps are merged into
/// the border sample, so callers never index out of range.
#[derive(Debug, Clone, PartialEq)]
pub struct AxisWeights {
    in_len: usize,
    taps: usize,
    start: Vec<usize>,
    weights: Vec<f32>,
}

impl AxisWeights {
    /// Input length.
    pub fn in_len(&self) -> usize {
        self.in_len
    }

    /// Output length.
    pub fn out_len(&self) -> usize {
        self.start.len()
    }

    /// Taps per output (the same for every output; short windows are zero-padded).
    pub fn taps(&self) -> usize {
        self.taps
    }

    /// First input index read by output `o`.
    pub fn start(&self, o: usize) -> usize {
        self.start[o]
    }

    /// The `taps` weights of output `o`.
    pub fn weights(&self, o: usize) -> &[f32] {
        &self.weights[o * self.taps..(o + 1) * self.taps]
    }

    /// Window starts of outputs `o0..o1`.
    #[cfg(target_arch = "x86_64")]
    pub fn starts(&self, o0: usize, o1: usize) -> &[usize] {
        &self.start[o0..o1]
    }

    /// Weights of outputs `o0..o1`, `taps` per output, output after output.
    #[cfg(target_arch = "x86_64")]
    pub fn weight_rows(&self, o0: usize, o1: usize) -> &[f32] {
        &self.weights[o0 * self.taps..o1 * self.taps]
    }

    /// Pad every window with zero weights to a multiple of `lanes` taps (when the input is long
    /// enough), so dot products run in whole SIMD lanes; windows near the right border move left.
    pub fn padded(&self, lanes: usize) -> AxisWeights {
        let taps = self.taps.div_ceil(lanes) * lanes;
        if taps == self.taps || taps > self.in_len {
            return self.clone();
        }
        let mut start = Vec::with_capacity(self.out_len());
        let mut weights = vec![0f32; self.out_len() * taps];
        for o in 0..self.out_len() {
            let s = self.start[o].min(self.in_len - taps);
            let shift = self.start[o] - s;
            start.push(s);
            weights[o * taps + shift..o * taps + shift + self.taps]
                .copy_from_slice(self.weights(o));
        }
        AxisWeights {
            in_len: self.in_len,
            taps,
            start,
            weights,
        }
    }

    /// Whether every output copies exactly one input sample (weight 1, others 0).
    pub fn is_point_sample(&self) -> bool {
        (0..self.out_len()).all(|o| {
            let w = self.weights(o);
            w.iter().filter(|&&v| v != 0.0).count() == 1 && w.contains(&1.0)
        })
    }

    /// Half-open input range read by outputs `o0..o1`.
    ///
    /// The smallest and largest window start over the range, not the first and the last: composed
    /// windows are trimmed of zero weights, so starts are not monotonic (upscaling kernels give
    /// sequences like `29, 33, 31`).
    pub fn input_span(&self, o0: usize, o1: usize) -> (usize, usize) {
        debug_assert!(o0 < o1 && o1 <= self.out_len());
        let starts = &self.start[o0..o1];
        let first = starts.iter().copied().min().unwrap_or(0);
        let last = starts.iter().copied().max().unwrap_or(0);
        (first, last + self.taps)
    }

    /// Build from sparse per-output (index, weight) lists; indices are clamped into the input.
    fn from_sparse(in_len: usize, rows: &[Vec<(i64, f64)>]) -> Self {
        debug_assert!(in_len > 0);
        let clamp = |i: i64| i.clamp(0, in_len as i64 - 1) as usize;
        let mut spans = Vec::with_capacity(rows.len());
        let mut taps = 1;
        for row in rows {
            let lo = row.iter().map(|&(i, _)| clamp(i)).min().unwrap_or(0);
            let hi = row.iter().map(|&(i, _)| clamp(i)).max().unwrap_or(0);
            taps = taps.max(hi - lo + 1);
            spans.push(lo);
        }
        let taps = taps.min(in_len);
        let mut start = Vec::with_capacity(rows.len());
        let mut weights = vec![0f32; rows.len() * taps];
        for (o, row) in rows.iter().enumerate() {
            let s = spans[o].min(in_len - taps);
            start.push(s);
            let mut dense = vec![0f64; taps];
            for &(i, w) in row {
                dense[clamp(i) - s] += w;
            }
            for (t, w) in dense.into_iter().enumerate() {
                weights[o * taps + t] = w as f32;
            }
        }
        AxisWeights {
            in_len,
            taps,
            start,
            weights,
        }
    }
}

/// Identity weights (a same-size resize).
pub fn identity(len: usize) -> AxisWeights {
    AxisWeights {
        in_len: len,
        taps: 1,
        start: (0..len).collect(),
        weights: vec![1.0; len],
    }
}

/// PIL's bicubic filter (a = -0.5), `ImagingResample`'s `bicubic_filter`.
fn pil_bicubic_filter(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Weights of PIL's `Image.resize(size, BICUBIC)` along one axis (what torchvision's `Resize` does to a
/// PIL image): antialiased when shrinking (support scaled by the ratio), renormalized at the borders.
pub fn pil_bicubic(in_len: usize, out_len: usize) -> AxisWeights {
    if in_len == out_len {
        return identity(in_len);
    }
    let scale = in_len as f64 / out_len as f64;
    let filterscale = scale.max(1.0);
    let support = 2.0 * filterscale;
    let ss = 1.0 / filterscale;
    let mut rows = Vec::with_capacity(out_len);
    for o in 0..out_len {
        let center = (o as f64 + 0.5) * scale;
        // PIL truncates toward zero: `(int)(center - support + 0.5)`.
        let xmin = ((center - support + 0.5) as i64).max(0);
        let xmax = ((center + support + 0.5) as i64).min(in_len as i64);
        let mut row: Vec<(i64, f64)> = (xmin..xmax)
            .map(|x| (x, pil_bicubic_filter((x as f64 - center + 0.5) * ss)))
            .collect();
        let total: f64 = row.iter().map(|&(_, w)| w).sum();
        if total != 0.0 {
            for (_, w) in &mut row {
                *w /= total;
            }
        }
        rows.push(row);
    }
    AxisWeights::from_sparse(in_len, &rows)
}

/// Weights of `torch.nn.functional.interpolate(mode="bicubic", align_corners=False, antialias=False)`
/// along one axis: a = -0.75, source index `(o + 0.5) * in/out - 0.5`, indices clamped to the border.
/// Computed in f32 like PyTorch's CPU kernel.
pub fn torch_bicubic(in_len: usize, out_len: usize) -> AxisWeights {
    if in_len == out_len {
        return identity(in_len);
    }
    const A: f32 = -0.75;
    let conv1 = |x: f32| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let conv2 = |x: f32| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    let scale = in_len as f32 / out_len as f32;
    let mut rows = Vec::with_capacity(out_len);
    for o in 0..out_len {
        let real = scale * (o as f32 + 0.5) - 0.5;
        let index = (real.floor() as i64).min(in_len as i64 - 1);
        let t = (real - index as f32).clamp(0.0, 1.0);
        let w = [conv2(t + 1.0), conv1(t), conv1(1.0 - t), conv2(2.0 - t)];
        rows.push(
            (0..4)
                .map(|k| (index - 1 + k as i64, w[k] as f64))
                .collect::<Vec<_>>(),
        );
    }
    AxisWeights::from_sparse(in_len, &rows)
}

/// Weights of `second(first(x))`: `first` maps `in -> mid`, `second` maps `mid -> out`.
pub fn compose(first: &AxisWeights, second: &AxisWeights) -> AxisWeights {
    assert_eq!(
        first.out_len(),
        second.in_len(),
        "compose: first's output is not second's input"
    );
    let mut rows = Vec::with_capacity(second.out_len());
    for o in 0..second.out_len() {
        let mut row: Vec<(i64, f64)> = Vec::new();
        for (t2, &w2) in second.weights(o).iter().enumerate() {
            if w2 == 0.0 {
                continue;
            }
            let m = second.start(o) + t2;
            for (t1, &w1) in first.weights(m).iter().enumerate() {
                if w1 != 0.0 {
                    row.push(((first.start(m) + t1) as i64, w2 as f64 * w1 as f64));
                }
            }
        }
        rows.push(row);
    }
    AxisWeights::from_sparse(first.in_len(), &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(w: &AxisWeights, input: &[f64]) -> Vec<f64> {
        (0..w.out_len())
            .map(|o| {
                w.weights(o)
                    .iter()
                    .enumerate()
                    .map(|(t, &k)| k as f64 * input[w.start(o) + t])
                    .sum()
            })
            .collect()
    }

    /// Every window of outputs `o0..o1` lies inside `input_span(o0, o1)`, also where the composed
    /// windows' starts go backwards (an upscale: trimmed zero weights).
    #[test]
    fn input_span_covers_every_window_of_the_range() {
        let w = compose(&pil_bicubic(301, 140), &torch_bicubic(140, 252)).padded(8);
        assert!(
            (1..w.out_len()).any(|o| w.start(o) < w.start(o - 1)),
            "this kernel was chosen for its non-monotonic starts"
        );
        for o0 in 0..w.out_len() {
            for o1 in o0 + 1..(o0 + 20).min(w.out_len()) {
                let (a, b) = w.input_span(o0, o1);
                for o in o0..o1 {
                    assert!(
                        a <= w.start(o) && w.start(o) + w.taps() <= b,
                        "{o0}..{o1} at {o}"
                    );
                }
            }
        }
    }

    #[test]
    fn weights_sum_to_one_and_stay_in_range() {
        for (i, o) in [
            (3840, 3780),
            (1080, 3780),
            (7680, 3780),
            (3780, 378),
            (3780, 1512),
            (3780, 756),
            (5, 3),
            (1, 7),
        ] {
            for w in [pil_bicubic(i, o), torch_bicubic(i, o)] {
                assert_eq!(w.out_len(), o);
                for k in 0..o {
                    let s: f32 = w.weights(k).iter().sum();
                    assert!((s - 1.0).abs() < 1e-5, "{i}->{o} output {k} sums to {s}");
                    assert!(w.start(k) + w.taps() <= i);
                }
            }
        }
    }

    #[test]
    fn padding_keeps_the_result() {
        let input: Vec<f64> = (0..200).map(|i| ((i * 13 % 29) as f64).cos()).collect();
        for w in [
            pil_bicubic(200, 57),
            torch_bicubic(200, 41),
            compose(&pil_bicubic(200, 90), &torch_bicubic(90, 30)),
        ] {
            let p = w.padded(4);
            assert_eq!(p.taps() % 4, 0);
            for (a, b) in apply(&w, &input).iter().zip(apply(&p, &input)) {
                assert!((a - b).abs() < 1e-6);
            }
        }
        // An input shorter than the padded window is left as it is.
        let short = torch_bicubic(3, 2);
        assert_eq!(short.padded(8), short);
    }

    #[test]
    fn torch_point_samples_when_the_ratio_is_odd() {
        // 3780 -> 756: source index 5o + 2 exactly, so every weight is (0, 1, 0, 0).
        let w = torch_bicubic(3780, 756);
        assert!(w.is_point_sample());
        for o in [0, 1, 100, 755] {
            let hit = w.weights(o).iter().position(|&v| v == 1.0).unwrap();
            assert_eq!(w.start(o) + hit, 5 * o + 2);
        }
        assert!(!torch_bicubic(3780, 1512).is_point_sample());
    }

    #[test]
    fn torch_weights_match_the_reference_formula() {
        // 3780 -> 378: source 10o + 4.5, t = 0.5, taps 10o+3..10o+6 with (-0.09375, 0.59375, 0.59375, -0.09375).
        let w = torch_bicubic(3780, 378);
        let o = 17;
        assert_eq!(w.start(o), 10 * o + 3);
        let expect = [-0.09375f32, 0.59375, 0.59375, -0.09375];
        for (a, b) in w.weights(o).iter().zip(expect) {
            assert!((a - b).abs() < 1e-7);
        }
        // Border: output 0 of 3780 -> 1512 reads source 0.75 -> taps -1..2, the -1 tap folded into 0.
        let w = torch_bicubic(3780, 1512);
        assert_eq!(w.start(0), 0);
    }

    #[test]
    fn composition_equals_applying_both() {
        let input: Vec<f64> = (0..1000).map(|i| ((i * 37 % 101) as f64).sin()).collect();
        let a = pil_bicubic(1000, 1260);
        let b = torch_bicubic(1260, 126);
        let two = apply(&b, &apply(&a, &input));
        let one = apply(&compose(&a, &b), &input);
        for (x, y) in two.iter().zip(&one) {
            assert!((x - y).abs() < 1e-5, "{x} vs {y}");
        }
    }

    #[test]
    fn pil_reproduces_a_known_downscale() {
        // Halving with PIL bicubic: support 4, taps at distances 0.5, 1.5, 2.5, 3.5 (in input px) from
        // the center, scaled by 1/2 -> filter(0.25), filter(0.75), filter(1.25), filter(1.75).
        let w = pil_bicubic(100, 50);
        let o = 20;
        let raw: Vec<f64> = [1.75, 1.25, 0.75, 0.25, 0.25, 0.75, 1.25, 1.75]
            .iter()
            .map(|&x| pil_bicubic_filter(x))
            .collect();
        let total: f64 = raw.iter().sum();
        assert_eq!(w.start(o), 2 * o - 3);
        for (a, b) in w.weights(o).iter().zip(raw.iter().map(|r| r / total)) {
            assert!((*a as f64 - b).abs() < 1e-6);
        }
    }
}
