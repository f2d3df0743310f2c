//! Streaming separable resampling of any region of a scale, straight from the caller's frame.
//!
//! A region of output rows is produced by resampling, horizontally, only the source rows its vertical
//! taps touch (kept in a small ring of `taps` rows) and only the source columns its horizontal taps
//! touch; then each output row is a weighted sum of ring rows. So the 378 and 1512 planes read each
//! frame pixel about once, a 14x14 patch reads only its footprint, and no full-resolution float image
//! is ever built. Scratch buffers live in [`Resampler`] and are reused across frames.

use super::frame::{Frame, TensorImage};
use super::kernel::AxisWeights;

/// Something rows of pixels can be read from, as three planar f32 channels.
pub(crate) trait RowSource {
    /// Width in pixels.
    fn width(&self) -> usize;
    /// Height in pixels.
    fn height(&self) -> usize;
    /// Pixels `x0..x1` of row `y`, planar: `out[c * n + i]` with `n = x1 - x0`.
    fn read_row(&self, y: usize, x0: usize, x1: usize, out: &mut [f32]);
}

impl RowSource for Frame<'_> {
    fn width(&self) -> usize {
        Frame::width(self) as usize
    }

    fn height(&self) -> usize {
        Frame::height(self) as usize
    }

    /// Converts as it reads (YUV with the frame's colour spec): the fused conversion, see
    /// `convert.rs`.
    fn read_row(&self, y: usize, x0: usize, x1: usize, out: &mut [f32]) {
        super::convert::read_row_planar(self, y, x0, x1, out);
    }
}

impl RowSource for TensorImage<'_> {
    fn width(&self) -> usize {
        self.size()
    }

    fn height(&self) -> usize {
        self.size()
    }

    fn read_row(&self, y: usize, x0: usize, x1: usize, out: &mut [f32]) {
        let n = x1 - x0;
        for c in 0..3 {
            out[c * n..(c + 1) * n].copy_from_slice(&self.row(c, y)[x0..x1]);
        }
    }
}

/// Per-channel `value * scale + bias`, applied to every output sample (the model's normalization).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Affine {
    pub scale: [f32; 3],
    pub bias: [f32; 3],
}

impl Affine {
    /// No change.
    pub const IDENTITY: Affine = Affine {
        scale: [1.0; 3],
        bias: [0.0; 3],
    };

    /// 8-bit values to `(v / 255 - mean) / std`.
    pub fn from_u8_normalization(mean: [f32; 3], std: [f32; 3]) -> Self {
        let mut a = Affine::IDENTITY;
        for c in 0..3 {
            a.scale[c] = 1.0 / (255.0 * std[c]);
            a.bias[c] = -mean[c] / std[c];
        }
        a
    }
}

/// How one output scale is sampled from a source of a given size.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ScaleSampler {
    /// Column weights (source width -> scale).
    pub x: AxisWeights,
    /// Row weights (source height -> scale).
    pub y: AxisWeights,
    /// Round and clip to 0..=255 after each pass, as PIL's 8-bit resize does; set where the scale's
    /// samples are samples of PIL's squashed image itself (the largest scale, and point samples of it).
    pub quantize: bool,
}

impl ScaleSampler {
    /// Output side length.
    #[cfg(test)]
    pub fn out_len(&self) -> usize {
        self.x.out_len()
    }
}

/// SIMD lanes of the horizontal dot products: column windows are padded to a multiple of this, and
/// each dot keeps this many partial sums (one 256-bit AVX2 vector; two SSE2 or NEON vectors).
pub(crate) const LANES: usize = 8;

/// `sum(w[i] * v[i])` over `w.len()` taps, in `LANES` independent accumulators (vectorizes; the taps
/// of a padded axis are a multiple of `LANES`, any remainder is handled too).
#[inline(always)]
fn dot(w: &[f32], v: &[f32]) -> f32 {
    let v = &v[..w.len()];
    let (wc, wr) = w.as_chunks::<LANES>();
    let (vc, vr) = v.as_chunks::<LANES>();
    let mut acc = [0f32; LANES];
    for (a, b) in wc.iter().zip(vc) {
        for l in 0..LANES {
            acc[l] += a[l] * b[l];
        }
    }
    let mut sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (a, b) in wr.iter().zip(vr) {
        sum += a * b;
    }
    sum
}

/// The first outputs of a horizontal pass, eight at a time, with AVX2 on x86-64 and NEON on
/// aarch64: `dst[i] = dot(x.weights(o), line[x.start(o) - ix0..])` for `o = ox0 + i`, exactly as
/// [`dot`] computes it. Returns how many outputs it wrote (all of them for windows of 8 - 32 taps;
/// with AVX2 a multiple of 8 for longer windows, with NEON none; 0 when the windows are not whole
/// vectors, or on other architectures), the caller computes the rest with [`dot`].
///
/// Why by hand: [`dot`] ends each output with a horizontal sum of its eight partial sums, and for the
/// short windows PS3's scales have (12-16 taps once composed) that reduction costs as much as the
/// products. Reducing eight outputs' accumulators together takes three `hadd`s per pair of vectors
/// and one cross-lane add, in the order `((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))` that
/// [`dot`] uses, so the values are bit-identical. Compilers do not find this transposition.
#[inline(always)]
fn horizontal_simd(
    x: &AxisWeights,
    line: &[f32],
    ix0: usize,
    ox0: usize,
    dst: &mut [f32],
) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        if x.taps().is_multiple_of(LANES) {
            // SAFETY: horizontal_simd is called only with SIMD = true, which only
            // Resampler::regions_avx2 passes, and that runs only after
            // is_x86_feature_detected!("avx2") returned true.
            return unsafe { avx2::horizontal8(x, line, ix0, ox0, dst) };
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        if x.taps().is_multiple_of(LANES) {
            // SAFETY: neon::horizontal8 requires NEON, which every aarch64 CPU has (the target's
            // baseline).
            return unsafe { neon::horizontal8(x, line, ix0, ox0, dst) };
        }
    }
    let _ = (x, line, ix0, ox0, dst);
    0
}

/// [`horizontal_simd`] for the three channels of a row at once (`lines[c]` into `dsts[c]`, equal
/// lengths), each output's weights loaded once for the three: returns how many outputs of each it
/// wrote, all or none (none for windows that are not 8 - 32 taps, and on CPUs other than x86-64
/// and aarch64, where the caller goes channel by channel).
#[inline(always)]
fn horizontal_simd_rgb(
    x: &AxisWeights,
    lines: [&[f32]; 3],
    ix0: usize,
    ox0: usize,
    dsts: [&mut [f32]; 3],
) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: horizontal_simd_rgb is called only with SIMD = true, which on x86-64 only
        // Resampler::regions_avx2 passes, and that runs only after
        // is_x86_feature_detected!("avx2") returned true.
        unsafe { avx2::horizontal8_rgb(x, lines, ix0, ox0, dsts) }
    }
    #[cfg(target_arch = "aarch64")]
    {
        // SAFETY: neon::horizontal8_rgb requires NEON, which every aarch64 CPU has (the target's
        // baseline).
        unsafe { neon::horizontal8_rgb(x, lines, ix0, ox0, dsts) }
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let _ = (x, lines, ix0, ox0, dsts);
        0
    }
}

/// The AVX2 loops' twin for the Cortex-A cores of Jetsons: eight outputs' dot products with NEON
/// (two 128-bit vectors of partial sums each, multiplications and additions kept apart as [`dot`]
/// does: no fused multiply-add), reduced together with pairwise adds in [`dot`]'s order
/// `((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))`, so the values are bit-identical to the
/// generic loop. NEON is part of the aarch64 baseline: no run-time detection.
#[cfg(target_arch = "aarch64")]
mod neon {
    use super::{AxisWeights, LANES};
    use std::arch::aarch64::{
        float32x4_t, vaddq_f32, vdupq_n_f32, vld1q_f32, vmulq_f32, vpaddq_f32, vst1q_f32,
    };

    /// See [`super::horizontal_simd`]: windows of 8, 16, 24 or 32 taps; 0 (nothing written) for
    /// other lengths, which the generic loop takes.
    #[target_feature(enable = "neon")]
    pub(super) fn horizontal8(
        x: &AxisWeights,
        line: &[f32],
        ix0: usize,
        ox0: usize,
        dst: &mut [f32],
    ) -> usize {
        match x.taps() / LANES {
            1 => fixed::<1>(x, line, ix0, ox0, dst),
            2 => fixed::<2>(x, line, ix0, ox0, dst),
            3 => fixed::<3>(x, line, ix0, ox0, dst),
            4 => fixed::<4>(x, line, ix0, ox0, dst),
            _ => 0,
        }
    }

    /// Windows of exactly `V` groups of eight taps; writes all of `dst` (a last group of fewer
    /// than eight outputs repeats its last output in the spare lanes).
    #[target_feature(enable = "neon")]
    #[inline(never)]
    fn fixed<const V: usize>(
        x: &AxisWeights,
        line: &[f32],
        ix0: usize,
        ox0: usize,
        dst: &mut [f32],
    ) -> usize {
        let taps = V * LANES;
        assert_eq!(x.taps(), taps);
        let n = dst.len();
        for (g, out) in dst.chunks_mut(8).enumerate() {
            let mut sums = [vdupq_n_f32(0.0); 2];
            for (half, sum) in sums.iter_mut().enumerate() {
                let mut pairs = [vdupq_n_f32(0.0); 4];
                for (j, pair) in pairs.iter_mut().enumerate() {
                    let o = ox0 + (g * 8 + half * 4 + j).min(n - 1);
                    let (lo, hi) =
                        dot8::<V>(&x.weights(o)[..taps], &line[x.start(o) - ix0..][..taps]);
                    // [a0 + a1, a2 + a3, a4 + a5, a6 + a7]
                    *pair = vpaddq_f32(lo, hi);
                }
                // [(a0 + a1) + (a2 + a3), (a4 + a5) + (a6 + a7)] of outputs 0 and 1, then 2 and 3
                let q01 = vpaddq_f32(pairs[0], pairs[1]);
                let q23 = vpaddq_f32(pairs[2], pairs[3]);
                *sum = vpaddq_f32(q01, q23);
            }
            let mut all = [0f32; 8];
            // SAFETY: all is an [f32; 8]: valid for four writes at 0 and four at 4.
            unsafe {
                vst1q_f32(all.as_mut_ptr(), sums[0]);
                vst1q_f32(all.as_mut_ptr().add(4), sums[1]);
            }
            out.copy_from_slice(&all[..out.len()]);
        }
        n
    }

    /// [`horizontal8`] for the three channels of one source row at once (see
    /// [`super::horizontal_simd_rgb`]): each output's weights are loaded once for R, G and B, and
    /// every channel's sums are reduced exactly as [`fixed`] reduces them, so the values are
    /// bit-identical. Windows of 8, 16, 24 or 32 taps; 0 (nothing written) for other lengths.
    #[target_feature(enable = "neon")]
    pub(super) fn horizontal8_rgb(
        x: &AxisWeights,
        lines: [&[f32]; 3],
        ix0: usize,
        ox0: usize,
        dsts: [&mut [f32]; 3],
    ) -> usize {
        if !x.taps().is_multiple_of(LANES) {
            return 0;
        }
        match x.taps() / LANES {
            1 => rgb_fixed::<1>(x, lines, ix0, ox0, dsts),
            2 => rgb_fixed::<2>(x, lines, ix0, ox0, dsts),
            3 => rgb_fixed::<3>(x, lines, ix0, ox0, dsts),
            4 => rgb_fixed::<4>(x, lines, ix0, ox0, dsts),
            _ => 0,
        }
    }

    /// [`horizontal8_rgb`] for windows of exactly `V` groups of eight taps; writes all of every
    /// `dsts[c]` (equal lengths; a last group of fewer than eight outputs repeats its last output
    /// in the spare lanes, as [`fixed`] does).
    #[target_feature(enable = "neon")]
    #[inline(never)]
    fn rgb_fixed<const V: usize>(
        x: &AxisWeights,
        lines: [&[f32]; 3],
        ix0: usize,
        ox0: usize,
        dsts: [&mut [f32]; 3],
    ) -> usize {
        let taps = V * LANES;
        assert_eq!(x.taps(), taps);
        let n = dsts[0].len();
        assert!(dsts.iter().all(|d| d.len() == n));
        let mut dsts = dsts;
        for g in 0..n.div_ceil(8) {
            let mut sums = [[vdupq_n_f32(0.0); 2]; 3];
            for half in 0..2 {
                let mut pairs = [[vdupq_n_f32(0.0); 4]; 3];
                for j in 0..4 {
                    let o = ox0 + (g * 8 + half * 4 + j).min(n - 1);
                    let w = &x.weights(o)[..taps];
                    let s = x.start(o) - ix0;
                    let mut wv = [[vdupq_n_f32(0.0); 2]; V];
                    for (k, wk) in wv.iter_mut().enumerate() {
                        // SAFETY: w holds taps = 8 * V floats and k < V: four reads at 8k and
                        // four at 8k + 4.
                        unsafe {
                            wk[0] = vld1q_f32(w.as_ptr().add(8 * k));
                            wk[1] = vld1q_f32(w.as_ptr().add(8 * k + 4));
                        }
                    }
                    for (pair, line) in pairs.iter_mut().zip(lines) {
                        let v = &line[s..][..taps];
                        let (mut lo, mut hi) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
                        for (k, wk) in wv.iter().enumerate() {
                            // SAFETY: v holds taps = 8 * V floats and k < V: four reads at 8k
                            // and four at 8k + 4.
                            unsafe {
                                let p = v.as_ptr().add(8 * k);
                                lo = vaddq_f32(lo, vmulq_f32(wk[0], vld1q_f32(p)));
                                hi = vaddq_f32(hi, vmulq_f32(wk[1], vld1q_f32(p.add(4))));
                            }
                        }
                        // [a0 + a1, a2 + a3, a4 + a5, a6 + a7], as in `fixed`
                        pair[j] = vpaddq_f32(lo, hi);
                    }
                }
                for (sum, pair) in sums.iter_mut().zip(&pairs) {
                    let q01 = vpaddq_f32(pair[0], pair[1]);
                    let q23 = vpaddq_f32(pair[2], pair[3]);
                    sum[half] = vpaddq_f32(q01, q23);
                }
            }
            let end = (g * 8 + 8).min(n);
            for (dst, sum) in dsts.iter_mut().zip(&sums) {
                let mut all = [0f32; 8];
                // SAFETY: all is an [f32; 8]: valid for four writes at 0 and four at 4.
                unsafe {
                    vst1q_f32(all.as_mut_ptr(), sum[0]);
                    vst1q_f32(all.as_mut_ptr().add(4), sum[1]);
                }
                dst[g * 8..end].copy_from_slice(&all[..end - g * 8]);
            }
        }
        n
    }

    /// Partial sums of one output: lanes 0-3 and 4-7 of [`super::dot`]'s eight accumulators.
    #[target_feature(enable = "neon")]
    #[inline]
    fn dot8<const V: usize>(w: &[f32], v: &[f32]) -> (float32x4_t, float32x4_t) {
        assert!(w.len() >= 8 * V && v.len() >= 8 * V);
        let (mut lo, mut hi) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
        for k in 0..V {
            // SAFETY: w and v hold at least 8 * V floats (asserted above) and k < V, so the four
            // reads at 8k and the four at 8k + 4 are in bounds.
            unsafe {
                let (w, v) = (w.as_ptr().add(8 * k), v.as_ptr().add(8 * k));
                lo = vaddq_f32(lo, vmulq_f32(vld1q_f32(w), vld1q_f32(v)));
                hi = vaddq_f32(hi, vmulq_f32(vld1q_f32(w.add(4)), vld1q_f32(v.add(4))));
            }
        }
        (lo, hi)
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{AxisWeights, LANES};
    use std::arch::x86_64::{
        __m256, _mm256_add_ps, _mm256_hadd_ps, _mm256_loadu_ps, _mm256_mul_ps,
        _mm256_permute2f128_ps, _mm256_setzero_ps, _mm256_storeu_ps,
    };

    /// See [`super::horizontal_simd`]; requires `x.taps() % 8 == 0` and AVX2.
    ///
    /// The windows PS3's scales have are 8 or 16 taps (up to 4K frames: 8; 8K: 16), so those, and 24
    /// and 32, get a copy of the loop with the window length fixed at compile time: fully unrolled,
    /// one bounds check per output instead of one per vector, no loop counter. Any other length takes
    /// the same arithmetic with the length read at run time.
    ///
    /// The loops are never inlined: inlined into the resampling loop they made that loop ~10%
    /// slower (`ps3rt bench`, 8K planes, 17.6 -> 19.6 ms), and which way the compiler went changed
    /// with unrelated edits.
    #[target_feature(enable = "avx2")]
    #[inline(never)]
    pub(super) fn horizontal8(
        x: &AxisWeights,
        line: &[f32],
        ix0: usize,
        ox0: usize,
        dst: &mut [f32],
    ) -> usize {
        debug_assert!(x.taps().is_multiple_of(LANES));
        match x.taps() / LANES {
            1 => horizontal8_fixed::<1>(x, line, ix0, ox0, dst),
            2 => horizontal8_fixed::<2>(x, line, ix0, ox0, dst),
            3 => horizontal8_fixed::<3>(x, line, ix0, ox0, dst),
            4 => horizontal8_fixed::<4>(x, line, ix0, ox0, dst),
            _ => horizontal8_any(x, line, ix0, ox0, dst),
        }
    }

    /// [`horizontal8`] for windows of exactly `V` vectors (`x.taps() == 8 * V`). Writes all of
    /// `dst`: a last group of fewer than eight outputs repeats its last output in the spare lanes and
    /// keeps only the real ones (each lane's arithmetic is independent of the others, so the values
    /// are the same), which matters for 14-wide patches: 8 + 6 outputs, not 8 + 6 scalar dots.
    #[target_feature(enable = "avx2")]
    #[inline(never)]
    fn horizontal8_fixed<const V: usize>(
        x: &AxisWeights,
        line: &[f32],
        ix0: usize,
        ox0: usize,
        dst: &mut [f32],
    ) -> usize {
        let taps = V * LANES;
        assert_eq!(x.taps(), taps);
        let n = dst.len();
        let whole = n / 8 * 8;
        let (body, tail) = dst.split_at_mut(whole);
        let starts = x.starts(ox0, ox0 + whole);
        let weights = x.weight_rows(ox0, ox0 + whole);
        for ((out, st), w) in body
            .chunks_exact_mut(8)
            .zip(starts.chunks_exact(8))
            .zip(weights.chunks_exact(8 * taps))
        {
            let mut acc = [_mm256_setzero_ps(); 8];
            for (j, a) in acc.iter_mut().enumerate() {
                dot8::<V>(a, &w[j * taps..][..taps], &line[st[j] - ix0..][..taps]);
            }
            let out: &mut [f32; 8] = out.try_into().expect("chunks_exact_mut(8)");
            // SAFETY: out is an [f32; 8], valid for the eight unaligned writes.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr(), reduce8(&acc)) };
        }
        if !tail.is_empty() {
            let mut acc = [_mm256_setzero_ps(); 8];
            for (j, a) in acc.iter_mut().enumerate() {
                let o = ox0 + whole + j.min(tail.len() - 1);
                dot8::<V>(a, &x.weights(o)[..taps], &line[x.start(o) - ix0..][..taps]);
            }
            let mut all = [0f32; 8];
            // SAFETY: all is an [f32; 8], valid for the eight unaligned writes.
            unsafe { _mm256_storeu_ps(all.as_mut_ptr(), reduce8(&acc)) };
            tail.copy_from_slice(&all[..tail.len()]);
        }
        n
    }

    /// `acc += w[8k..8k + 8] * v[8k..8k + 8]` for `k < V`, lane by lane.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn dot8<const V: usize>(acc: &mut __m256, w: &[f32], v: &[f32]) {
        assert!(w.len() >= 8 * V && v.len() >= 8 * V);
        for k in 0..V {
            // SAFETY: w and v hold at least 8 * V floats (asserted above) and k < V, so both
            // pointers are valid for the eight unaligned reads at 8 * k.
            let (wv, vv) = unsafe {
                (
                    _mm256_loadu_ps(w.as_ptr().add(8 * k)),
                    _mm256_loadu_ps(v.as_ptr().add(8 * k)),
                )
            };
            *acc = _mm256_add_ps(*acc, _mm256_mul_ps(wv, vv));
        }
    }

    /// [`horizontal8`] for any window that is a multiple of 8 taps.
    #[target_feature(enable = "avx2")]
    #[inline(never)]
    fn horizontal8_any(
        x: &AxisWeights,
        line: &[f32],
        ix0: usize,
        ox0: usize,
        dst: &mut [f32],
    ) -> usize {
        let taps = x.taps();
        let groups = dst.len() / 8;
        for (g, out) in dst.chunks_exact_mut(8).enumerate() {
            let mut acc = [_mm256_setzero_ps(); 8];
            for (j, a) in acc.iter_mut().enumerate() {
                let o = ox0 + g * 8 + j;
                let s = x.start(o) - ix0;
                let (w, _) = x.weights(o).as_chunks::<LANES>();
                let (v, _) = line[s..s + taps].as_chunks::<LANES>();
                for (wk, vk) in w.iter().zip(v) {
                    // SAFETY: each chunk is an [f32; 8], so both pointers are valid for the
                    // eight unaligned reads.
                    let (wv, vv) =
                        unsafe { (_mm256_loadu_ps(wk.as_ptr()), _mm256_loadu_ps(vk.as_ptr())) };
                    *a = _mm256_add_ps(*a, _mm256_mul_ps(wv, vv));
                }
            }
            let sums = reduce8(&acc);
            let out: &mut [f32; 8] = out.try_into().expect("chunks_exact_mut(8)");
            // SAFETY: out is an [f32; 8], valid for the eight unaligned writes.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr(), sums) };
        }
        groups * 8
    }

    /// [`horizontal8`] for the three channels of one source row at once: `dsts[c][i]` from
    /// `lines[c]`, exactly as three calls would compute them. Windows of 8, 16, 24 or 32 taps;
    /// returns 0 (nothing written) for other lengths, which the per-channel loops take.
    ///
    /// Why: the channels share their weights, and a pass per channel streams the whole weight
    /// table (1512 outputs x 16 taps at 8K: 97 KB, more than L1) three times per row and spends a
    /// third of its loads on it. Here each output's weights are loaded once into registers for all
    /// three channels, and the eight outputs' sums are reduced pair by pair as they are ready (the
    /// same `hadd` tree as [`reduce8`], so the values are bit-identical) to keep the live vectors
    /// within the 16 registers.
    #[target_feature(enable = "avx2")]
    #[inline(never)]
    pub(super) fn horizontal8_rgb(
        x: &AxisWeights,
        lines: [&[f32]; 3],
        ix0: usize,
        ox0: usize,
        dsts: [&mut [f32]; 3],
    ) -> usize {
        if !x.taps().is_multiple_of(LANES) {
            return 0;
        }
        match x.taps() / LANES {
            1 => rgb_fixed::<1>(x, lines, ix0, ox0, dsts),
            2 => rgb_fixed::<2>(x, lines, ix0, ox0, dsts),
            3 => rgb_fixed::<3>(x, lines, ix0, ox0, dsts),
            4 => rgb_fixed::<4>(x, lines, ix0, ox0, dsts),
            _ => 0,
        }
    }

    /// Partial sums of outputs `j` and `j + 1` of a group (weights `w`, `taps = 8 * V` per output,
    /// windows starting at `st`), `hadd`ed together, for each of the three channels: the first
    /// level of [`reduce8`]'s tree. A macro, not a function, so that it is always inlined into the
    /// loop with its vectors in registers (functions with `target_feature` cannot be
    /// `inline(always)`, and a closure or a function this size was not inlined: the vectors went
    /// through memory and the loop ran slower than three per-channel passes).
    macro_rules! rgb_pair {
        ($v:expr, $w:expr, $st:expr, $lines:expr, $ix0:expr, $j:expr) => {{
            let taps = $v * LANES;
            let mut acc = [[_mm256_setzero_ps(); 2]; 3];
            for k in 0..2 {
                let wj = &$w[($j + k) * taps..][..taps];
                let s = $st[$j + k] - $ix0;
                let mut wv = [_mm256_setzero_ps(); $v];
                for (i, v) in wv.iter_mut().enumerate() {
                    // SAFETY: wj holds taps = 8 * V floats and i < V: eight reads at 8 * i.
                    *v = unsafe { _mm256_loadu_ps(wj.as_ptr().add(8 * i)) };
                }
                for (a, line) in acc.iter_mut().zip($lines) {
                    let v = &line[s..][..taps];
                    for (i, wi) in wv.iter().enumerate() {
                        // SAFETY: v holds taps = 8 * V floats and i < V: eight reads at 8 * i.
                        let vi = unsafe { _mm256_loadu_ps(v.as_ptr().add(8 * i)) };
                        a[k] = _mm256_add_ps(a[k], _mm256_mul_ps(*wi, vi));
                    }
                }
            }
            [
                _mm256_hadd_ps(acc[0][0], acc[0][1]),
                _mm256_hadd_ps(acc[1][0], acc[1][1]),
                _mm256_hadd_ps(acc[2][0], acc[2][1]),
            ]
        }};
    }

    /// The sums of eight outputs for each of the three channels, reduced as [`reduce8`] reduces
    /// them (see [`rgb_pair`]).
    macro_rules! rgb_group {
        ($v:expr, $w:expr, $st:expr, $lines:expr, $ix0:expr) => {{
            let (ab, cd) = (
                rgb_pair!($v, $w, $st, $lines, $ix0, 0),
                rgb_pair!($v, $w, $st, $lines, $ix0, 2),
            );
            let abcd = [
                _mm256_hadd_ps(ab[0], cd[0]),
                _mm256_hadd_ps(ab[1], cd[1]),
                _mm256_hadd_ps(ab[2], cd[2]),
            ];
            let (ef, gh) = (
                rgb_pair!($v, $w, $st, $lines, $ix0, 4),
                rgb_pair!($v, $w, $st, $lines, $ix0, 6),
            );
            let efgh = [
                _mm256_hadd_ps(ef[0], gh[0]),
                _mm256_hadd_ps(ef[1], gh[1]),
                _mm256_hadd_ps(ef[2], gh[2]),
            ];
            let mut sums = [_mm256_setzero_ps(); 3];
            for (c, sum) in sums.iter_mut().enumerate() {
                let lo = _mm256_permute2f128_ps::<0x20>(abcd[c], efgh[c]);
                let hi = _mm256_permute2f128_ps::<0x31>(abcd[c], efgh[c]);
                *sum = _mm256_add_ps(lo, hi);
            }
            sums
        }};
    }

    /// [`horizontal8_rgb`] for windows of exactly `V` vectors. Writes all of every `dsts[c]` (equal
    /// lengths); a last group of fewer than eight outputs repeats its last output in the spare
    /// lanes, as [`horizontal8_fixed`] does.
    #[target_feature(enable = "avx2")]
    #[inline(never)]
    fn rgb_fixed<const V: usize>(
        x: &AxisWeights,
        lines: [&[f32]; 3],
        ix0: usize,
        ox0: usize,
        dsts: [&mut [f32]; 3],
    ) -> usize {
        let taps = V * LANES;
        assert_eq!(x.taps(), taps);
        let n = dsts[0].len();
        assert!(dsts.iter().all(|d| d.len() == n));
        let whole = n / 8 * 8;
        let starts = x.starts(ox0, ox0 + whole);
        let weights = x.weight_rows(ox0, ox0 + whole);
        let [d0, d1, d2] = dsts;
        for (g, (st, w)) in starts
            .chunks_exact(8)
            .zip(weights.chunks_exact(8 * taps))
            .enumerate()
        {
            let st: &[usize; 8] = st.try_into().expect("chunks_exact(8)");
            let sums = rgb_group!(V, w, st, lines, ix0);
            for (d, s) in [&mut *d0, &mut *d1, &mut *d2].into_iter().zip(sums) {
                let out: &mut [f32; 8] = (&mut d[g * 8..g * 8 + 8])
                    .try_into()
                    .expect("a group of eight outputs");
                // SAFETY: out is an [f32; 8], valid for the eight unaligned writes.
                unsafe { _mm256_storeu_ps(out.as_mut_ptr(), s) };
            }
        }
        let tail = n - whole;
        if tail > 0 {
            let mut w = [0f32; 8 * 32];
            let mut st = [0usize; 8];
            for (j, s) in st.iter_mut().enumerate() {
                let o = ox0 + whole + j.min(tail - 1);
                *s = x.start(o);
                w[j * taps..(j + 1) * taps].copy_from_slice(x.weights(o));
            }
            let w = &w[..8 * taps];
            let sums = rgb_group!(V, w, st, lines, ix0);
            for (d, s) in [d0, d1, d2].into_iter().zip(sums) {
                let mut all = [0f32; 8];
                // SAFETY: all is an [f32; 8], valid for the eight unaligned writes.
                unsafe { _mm256_storeu_ps(all.as_mut_ptr(), s) };
                d[whole..].copy_from_slice(&all[..tail]);
            }
        }
        n
    }

    /// Lane j of the result is the horizontal sum of `acc[j]`, summed as
    /// `((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7))`.
    #[target_feature(enable = "avx2")]
    fn reduce8(acc: &[__m256; 8]) -> __m256 {
        // [a01 a23 b01 b23 | a45 a67 b45 b67]
        let ab = _mm256_hadd_ps(acc[0], acc[1]);
        let cd = _mm256_hadd_ps(acc[2], acc[3]);
        let ef = _mm256_hadd_ps(acc[4], acc[5]);
        let gh = _mm256_hadd_ps(acc[6], acc[7]);
        // [a0123 b0123 c0123 d0123 | a4567 b4567 c4567 d4567]
        let abcd = _mm256_hadd_ps(ab, cd);
        let efgh = _mm256_hadd_ps(ef, gh);
        // low halves of all eight, then high halves of all eight, added lane by lane
        let lo = _mm256_permute2f128_ps::<0x20>(abcd, efgh);
        let hi = _mm256_permute2f128_ps::<0x31>(abcd, efgh);
        _mm256_add_ps(lo, hi)
    }
}

/// One output region for [`Resampler::regions`]: rows `rows.0..rows.1` and columns `cols.0..cols.1`
/// of `sampler`'s scale, written into one slice per channel, each `rows x cols` row-major.
pub(crate) struct RegionJob<'a> {
    /// The scale to sample.
    pub sampler: &'a ScaleSampler,
    /// Output rows, first and one past the last.
    pub rows: (usize, usize),
    /// Output columns, first and one past the last.
    pub cols: (usize, usize),
    /// The three channel slices.
    pub out: [&'a mut [f32]; 3],
}

/// The most regions [`Resampler::regions`] produces in one pass over the source rows (the low-res
/// and the selection plane).
pub(crate) const MAX_JOBS: usize = 2;

/// Horizontally resampled source rows of one region, kept while its vertical taps need them.
#[derive(Debug, Default)]
struct Ring {
    /// `taps` slots of `3 x width` samples; source row `y` lives in slot `y % taps`.
    rows: Vec<f32>,
    /// The source row each slot holds (`usize::MAX`: none).
    tags: Vec<usize>,
}

/// Reusable scratch for [`Resampler::region`] and [`Resampler::regions`]; grows to the largest
/// request, then never allocates.
#[derive(Debug, Default)]
pub(crate) struct Resampler {
    line: Vec<f32>,
    rings: [Ring; MAX_JOBS],
    /// Side-by-side patches as one region, before [`Resampler::patch_row`] splits them.
    staging: Vec<f32>,
}

/// The most side-by-side patches [`Resampler::patch_row`] resamples as one region (bounds its
/// staging buffer: `3 x 14 x 14 x 32` floats for 14 px patches).
pub(crate) const MAX_PATCH_RUN: usize = 32;

#[inline(always)]
fn quantize8(v: f32) -> f32 {
    (v + 0.5).floor().clamp(0.0, 255.0)
}

impl Resampler {
    /// Output rows `oy0..oy1` and columns `ox0..ox1` of `sampler`'s scale, normalized with `affine`,
    /// written into one slice per channel, each `(oy1 - oy0) x (ox1 - ox0)` row-major.
    pub fn region(
        &mut self,
        src: &dyn RowSource,
        sampler: &ScaleSampler,
        rows: (usize, usize),
        cols: (usize, usize),
        affine: &Affine,
        out: [&mut [f32]; 3],
    ) {
        let job = RegionJob {
            sampler,
            rows,
            cols,
            out,
        };
        self.regions(src, &mut [job], affine);
    }

    /// `count` patches side by side in one row of `sampler`'s scale: patch `i` is output rows
    /// `row0..row0 + patch` and columns `col0 + i * patch..col0 + (i + 1) * patch`, written into
    /// `out[i * 3 * patch * patch..]` as `[3, patch, patch]`. Resampled as one region (each source
    /// row read and converted once for all of them, the horizontal passes in whole groups of eight
    /// outputs), then split; every value is exactly what [`Resampler::region`] gives that patch
    /// alone. At most [`MAX_PATCH_RUN`] patches (callers split longer runs).
    #[allow(clippy::too_many_arguments)]
    pub fn patch_row(
        &mut self,
        src: &dyn RowSource,
        sampler: &ScaleSampler,
        row0: usize,
        col0: usize,
        count: usize,
        patch: usize,
        affine: &Affine,
        out: &mut [f32],
    ) {
        let len = 3 * patch * patch;
        assert!(count <= MAX_PATCH_RUN && out.len() >= count * len);
        if count == 1 {
            self.region(
                src,
                sampler,
                (row0, row0 + patch),
                (col0, col0 + patch),
                affine,
                planes(&mut out[..len], patch * patch),
            );
            return;
        }
        let width = count * patch;
        let mut staging = std::mem::take(&mut self.staging);
        // Sized for the longest run on first use, so a later frame's longer run does not allocate.
        grow(&mut staging, 3 * patch * patch * MAX_PATCH_RUN);
        self.region(
            src,
            sampler,
            (row0, row0 + patch),
            (col0, col0 + width),
            affine,
            planes(&mut staging[..3 * patch * width], patch * width),
        );
        crop_patches(&staging, (width, patch), (0, 0), count, patch, out);
        self.staging = staging;
    }

    /// Up to [`MAX_JOBS`] regions (of different scales) in one pass over the source: each source
    /// row any of them needs is read and converted once and resampled horizontally for every
    /// region that needs it next, so the 378 and 1512 planes of a frame convert each frame row once,
    /// not once per plane. Each region's values are exactly those [`Resampler::region`] gives it
    /// alone (the same arithmetic on the same rows). Extra jobs beyond [`MAX_JOBS`] are ignored.
    ///
    /// On x86-64 CPUs with AVX2 the same code is compiled for 256-bit vectors and chosen at run time
    /// (the default x86-64 target has only SSE2), and the horizontal dot products are reduced eight
    /// outputs at a time with explicit AVX2 instructions. The arithmetic is the same, lane for lane (no
    /// FMA contraction, same accumulation and reduction order), so the results are bit-identical
    /// either way.
    pub fn regions(&mut self, src: &dyn RowSource, jobs: &mut [RegionJob<'_>], affine: &Affine) {
        let count = jobs.len().min(MAX_JOBS);
        let jobs = &mut jobs[..count];
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: regions_avx2 only requires AVX2, which this CPU has (checked just above).
            unsafe { self.regions_avx2(src, jobs, affine) };
            return;
        }
        // NEON is part of the aarch64 baseline.
        #[cfg(target_arch = "aarch64")]
        self.regions_generic::<true>(src, jobs, affine);
        #[cfg(not(target_arch = "aarch64"))]
        self.regions_generic::<false>(src, jobs, affine);
    }

    /// [`Resampler::regions`] compiled with AVX2 enabled.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn regions_avx2(&mut self, src: &dyn RowSource, jobs: &mut [RegionJob<'_>], affine: &Affine) {
        self.regions_generic::<true>(src, jobs, affine);
    }

    /// The resampling loop; inlined into each instruction-set variant. `SIMD` is true only in
    /// [`Resampler::regions_avx2`] on x86-64 and always on aarch64, where the horizontal dot
    /// products run eight outputs at a time ([`horizontal_simd`]).
    ///
    /// The regions' output rows are produced in the order their vertical windows end; the rows a
    /// window needs are resampled into its ring as they are read, and a row read for one region is
    /// also resampled into another's ring when that region's current window already reaches it
    /// (its ring then evicts only rows it will not need again: windows start in increasing order).
    #[inline(always)]
    fn regions_generic<const SIMD: bool>(
        &mut self,
        src: &dyn RowSource,
        jobs: &mut [RegionJob<'_>],
        affine: &Affine,
    ) {
        // The source columns any region reads, read once per row.
        let (mut ix0, mut ix1) = (usize::MAX, 0);
        for job in jobs.iter() {
            let (h, w) = (job.rows.1 - job.rows.0, job.cols.1 - job.cols.0);
            debug_assert!(h > 0 && w > 0 && job.out.iter().all(|o| o.len() >= h * w));
            debug_assert_eq!(job.sampler.x.in_len(), src.width());
            debug_assert_eq!(job.sampler.y.in_len(), src.height());
            let (a, b) = job.sampler.x.input_span(job.cols.0, job.cols.1);
            (ix0, ix1) = (ix0.min(a), ix1.max(b));
        }
        if jobs.is_empty() {
            return;
        }
        let n = ix1 - ix0;
        grow(&mut self.line, 3 * n);
        let mut line_row = usize::MAX;
        for (job, ring) in jobs.iter().zip(self.rings.iter_mut()) {
            let cap = job.sampler.y.taps();
            grow(&mut ring.rows, cap * 3 * (job.cols.1 - job.cols.0));
            ring.tags.clear();
            ring.tags.resize(cap, usize::MAX);
        }
        let mut next = [0usize; MAX_JOBS];
        for (nx, job) in next.iter_mut().zip(jobs.iter()) {
            *nx = job.rows.0;
        }

        loop {
            // The region whose next output row's window ends first.
            let mut pick: Option<(usize, usize)> = None;
            for (i, job) in jobs.iter().enumerate() {
                if next[i] < job.rows.1 {
                    let end = job.sampler.y.start(next[i]) + job.sampler.y.taps();
                    if pick.is_none_or(|(_, e)| end < e) {
                        pick = Some((i, end));
                    }
                }
            }
            let Some((p, _)) = pick else { break };
            let oy = next[p];
            let (ys, cap) = (jobs[p].sampler.y.start(oy), jobs[p].sampler.y.taps());
            for y in ys..ys + cap {
                if self.rings[p].tags[y % cap] == y {
                    continue;
                }
                if line_row != y {
                    src.read_row(y, ix0, ix1, &mut self.line);
                    line_row = y;
                }
                for (i, (job, ring)) in jobs.iter().zip(self.rings.iter_mut()).enumerate() {
                    let (start, taps) = (
                        job.sampler.y.start(next[i].min(job.rows.1 - 1)),
                        job.sampler.y.taps(),
                    );
                    // y < start + taps holds already (p's window ends first and y is in it);
                    // checked anyway, as it is what keeps the ring from evicting a needed row.
                    let wanted =
                        i == p || (next[i] < job.rows.1 && (start..start + taps).contains(&y));
                    if wanted && ring.tags[y % taps] != y {
                        horizontal_row::<SIMD>(job, ring, &self.line[..3 * n], ix0, y);
                    }
                }
            }
            vertical_row(&mut jobs[p], &self.rings[p], oy, affine);
            next[p] += 1;
        }
    }
}

/// Source row `y` (planar, `line[c * n..]` from column `ix0`) resampled horizontally into its slot of
/// `ring`, rounded to 8 bits where the scale asks for it.
#[inline(always)]
fn horizontal_row<const SIMD: bool>(
    job: &RegionJob<'_>,
    ring: &mut Ring,
    line: &[f32],
    ix0: usize,
    y: usize,
) {
    let x = &job.sampler.x;
    let (ox0, w) = (job.cols.0, job.cols.1 - job.cols.0);
    let n = line.len() / 3;
    let slot = y % ring.tags.len();
    let ring_row = &mut ring.rows[slot * 3 * w..(slot + 1) * 3 * w];
    let all_done = SIMD && {
        let (l0, rest) = line.split_at(n);
        let (l1, l2) = rest.split_at(n);
        let (d0, rest) = ring_row.split_at_mut(w);
        let (d1, d2) = rest.split_at_mut(w);
        horizontal_simd_rgb(x, [l0, l1, l2], ix0, ox0, [d0, d1, d2]) == w
    };
    for c in 0..3 {
        let line = &line[c * n..(c + 1) * n];
        let dst = &mut ring_row[c * w..(c + 1) * w];
        let done = if all_done {
            w
        } else if SIMD {
            horizontal_simd(x, line, ix0, ox0, dst)
        } else {
            0
        };
        for (i, d) in dst.iter_mut().enumerate().skip(done) {
            let o = ox0 + i;
            *d = dot(x.weights(o), &line[x.start(o) - ix0..]);
        }
        if job.sampler.quantize {
            for d in dst.iter_mut() {
                *d = quantize8(*d);
            }
        }
    }
    ring.tags[slot] = y;
}

/// Output row `oy` of `job`: the vertical taps over the ring's rows, then `affine`.
///
/// Column block by column block, the block's sums stay in registers over all taps and are stored
/// once: the summation per output is the same as adding one tap's row at a time into the output
/// row (`0 + k0 * v0`, then `+ k1 * v1`, ..., zero-weight taps skipped), so the values are bit for
/// bit what that simpler loop gives, without its load and store of every output for every tap
/// (16 taps at 8K: 16 loads and stores of each output became one store).
#[inline(always)]
fn vertical_row(job: &mut RegionJob<'_>, ring: &Ring, oy: usize, affine: &Affine) {
    /// Columns summed in registers at a time (four 256-bit or two 512-bit vectors).
    const BLOCK: usize = 32;
    /// Taps looked up at a time. Longer windows (downscales of frames past ~30K px to the 378
    /// plane) are summed in runs of this many taps, each run going on from the sums the previous
    /// one stored: the same additions in the same order.
    const RUN: usize = 64;
    let y = &job.sampler.y;
    let (ys, cap) = (y.start(oy), y.taps());
    let w = job.cols.1 - job.cols.0;
    let row = oy - job.rows.0;
    let quantize = job.sampler.quantize;
    let wy = y.weights(oy);
    let runs = wy.len().div_ceil(RUN).max(1);
    for run in 0..runs {
        let (first, last) = (run == 0, run + 1 == runs);
        // The run's nonzero taps: their weights and their rows' offsets in the ring (channel 0).
        let mut ks = [0f32; RUN];
        let mut offsets = [0usize; RUN];
        let mut used = 0;
        for (t, &k) in wy.iter().enumerate().skip(run * RUN).take(RUN) {
            if k != 0.0 {
                ks[used] = k;
                offsets[used] = ((ys + t) % cap) * 3 * w;
                used += 1;
            }
        }
        let taps = (&ks[..used], &offsets[..used]);
        for (c, plane) in job.out.iter_mut().enumerate() {
            let row_out = &mut plane[row * w..(row + 1) * w];
            let (scale, bias) = (affine.scale[c], affine.bias[c]);
            let finish = |d: &mut f32| {
                *d = if quantize {
                    quantize8(*d) * scale + bias
                } else {
                    *d * scale + bias
                };
            };
            let (blocks, rest) = row_out.as_chunks_mut::<BLOCK>();
            for (b, block) in blocks.iter_mut().enumerate() {
                let x = c * w + b * BLOCK;
                let mut acc = if first { [0f32; BLOCK] } else { *block };
                for (&k, &off) in taps.0.iter().zip(taps.1) {
                    let v: &[f32; BLOCK] = ring.rows[off + x..off + x + BLOCK]
                        .try_into()
                        .expect("a block of the ring row");
                    for (a, &v) in acc.iter_mut().zip(v) {
                        *a += k * v;
                    }
                }
                *block = acc;
                if last {
                    block.iter_mut().for_each(finish);
                }
            }
            let x0 = c * w + blocks.len() * BLOCK;
            for (i, d) in rest.iter_mut().enumerate() {
                let mut acc = if first { 0f32 } else { *d };
                for (&k, &off) in taps.0.iter().zip(taps.1) {
                    acc += k * ring.rows[off + x0 + i];
                }
                *d = acc;
                if last {
                    finish(d);
                }
            }
        }
    }
}

/// Split a planar `[3, h, w]` buffer into its three channel planes.
pub(crate) fn planes(buf: &mut [f32], plane_len: usize) -> [&mut [f32]; 3] {
    let (r, rest) = buf.split_at_mut(plane_len);
    let (g, rest) = rest.split_at_mut(plane_len);
    [r, g, &mut rest[..plane_len]]
}

/// A whole `size x size` plane of `sampler`'s scale into the planar buffer `out` (`[3, size, size]`),
/// for [`planes_parallel`].
pub(crate) struct PlaneJob<'a> {
    /// The scale to sample.
    pub sampler: &'a ScaleSampler,
    /// Side length of the plane.
    pub size: usize,
    /// `[3, size, size]`, planar.
    pub out: &'a mut [f32],
}

/// A whole `size x size` plane of `sampler`'s scale into the planar buffer `out` (`[3, size, size]`),
/// split into horizontal bands computed in parallel (one band per scratch, `rayon::join`, which
/// needs no heap allocation).
#[cfg(test)]
pub(crate) fn plane_parallel(
    scratch: &mut [Resampler],
    src: &(dyn RowSource + Sync),
    sampler: &ScaleSampler,
    size: usize,
    affine: &Affine,
    out: &mut [f32],
) {
    planes_parallel(scratch, src, &mut [PlaneJob { sampler, size, out }], affine);
}

/// Up to [`MAX_JOBS`] whole planes of different scales in one pass over the source, split into
/// horizontal bands computed in parallel: band `t` of every plane goes to scratch `t`, which reads
/// (and converts) each source row its bands need once for all of them ([`Resampler::regions`]).
/// `rayon::join` splits the work, which needs no heap allocation. Extra planes are ignored.
pub(crate) fn planes_parallel(
    scratch: &mut [Resampler],
    src: &(dyn RowSource + Sync),
    planes_out: &mut [PlaneJob<'_>],
    affine: &Affine,
) {
    let Some(first) = planes_out.first() else {
        return;
    };
    let mut jobs: [RegionJob<'_>; MAX_JOBS] =
        std::array::from_fn(|_| RegionJob::empty(first.sampler));
    let mut count = 0;
    for plane in planes_out.iter_mut().take(MAX_JOBS) {
        let size = plane.size;
        jobs[count] = RegionJob {
            sampler: plane.sampler,
            rows: (0, size),
            cols: (0, size),
            out: planes(&mut *plane.out, size * size),
        };
        count += 1;
    }
    bands(scratch, src, jobs, count, affine);
}

impl<'a> RegionJob<'a> {
    /// A region with no rows and nowhere to write (a placeholder in fixed-size arrays).
    fn empty(sampler: &'a ScaleSampler) -> Self {
        RegionJob {
            sampler,
            rows: (0, 0),
            cols: (0, 0),
            out: [&mut [], &mut [], &mut []],
        }
    }

    /// Split into the first `rows` output rows and the rest (full-width regions only).
    fn split_rows(self, rows: usize) -> (Self, Self) {
        let w = self.cols.1 - self.cols.0;
        let [r, g, b] = self.out;
        let (ra, rb) = r.split_at_mut(rows * w);
        let (ga, gb) = g.split_at_mut(rows * w);
        let (ba, bb) = b.split_at_mut(rows * w);
        let mid = self.rows.0 + rows;
        (
            RegionJob {
                sampler: self.sampler,
                rows: (self.rows.0, mid),
                cols: self.cols,
                out: [ra, ga, ba],
            },
            RegionJob {
                sampler: self.sampler,
                rows: (mid, self.rows.1),
                cols: self.cols,
                out: [rb, gb, bb],
            },
        )
    }
}

/// The first `count` of `jobs` (full-width bands of different planes) split across `scratch`: each
/// job's rows are divided in the same proportion as the scratches.
fn bands(
    scratch: &mut [Resampler],
    src: &(dyn RowSource + Sync),
    jobs: [RegionJob<'_>; MAX_JOBS],
    count: usize,
    affine: &Affine,
) {
    let most_rows = jobs[..count]
        .iter()
        .map(|j| j.rows.1 - j.rows.0)
        .max()
        .unwrap_or(0);
    if scratch.len() <= 1 || most_rows < 2 {
        if let Some(res) = scratch.first_mut() {
            let mut jobs = jobs;
            res.regions(src, &mut jobs[..count], affine);
        }
        return;
    }
    let (left, right) = scratch.split_at_mut(scratch.len() / 2);
    let sampler = jobs[0].sampler;
    let mut sides: [([RegionJob<'_>; MAX_JOBS], usize); 2] = [
        (std::array::from_fn(|_| RegionJob::empty(sampler)), 0),
        (std::array::from_fn(|_| RegionJob::empty(sampler)), 0),
    ];
    for job in jobs.into_iter().take(count) {
        let rows = job.rows.1 - job.rows.0;
        let split = rows * left.len() / (left.len() + right.len());
        let (a, b) = job.split_rows(split);
        for (side, part) in sides.iter_mut().zip([a, b]) {
            if part.rows.1 > part.rows.0 {
                side.0[side.1] = part;
                side.1 += 1;
            }
        }
    }
    let [(ja, ca), (jb, cb)] = sides;
    rayon::join(
        || bands(left, src, ja, ca, affine),
        || bands(right, src, jb, cb, affine),
    );
}

/// `count` side-by-side `patch x patch` crops of the planar image `planes` (`[3, height, width]`,
/// `(width, height)` = `size`), the first with its top-left corner at `(x0, y0)`, into `out` as
/// `[count, 3, patch, patch]`. The caller keeps every crop inside the image and sizes `out`.
pub(crate) fn crop_patches(
    planes: &[f32],
    (width, height): (usize, usize),
    (x0, y0): (usize, usize),
    count: usize,
    patch: usize,
    out: &mut [f32],
) {
    let area = width * height;
    for (i, dst) in out
        .chunks_exact_mut(3 * patch * patch)
        .take(count)
        .enumerate()
    {
        for (c, dst) in dst.chunks_exact_mut(patch * patch).enumerate() {
            for (y, d) in dst.chunks_exact_mut(patch).enumerate() {
                let s = c * area + (y0 + y) * width + x0 + i * patch;
                d.copy_from_slice(&planes[s..s + patch]);
            }
        }
    }
}

/// Grow `v` to at least `len` elements (never shrinks, so steady state does not allocate).
fn grow(v: &mut Vec<f32>, len: usize) {
    if v.len() < len {
        v.resize(len, 0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::PixelFormat;
    use crate::image::kernel::{compose, pil_bicubic, torch_bicubic};

    /// Direct 2-D evaluation: out[c][oy][ox] = sum_ty sum_tx wy * wx * src.
    fn direct(src: &dyn RowSource, s: &ScaleSampler, oy: usize, ox: usize) -> [f32; 3] {
        let n = src.width();
        let mut line = vec![0f32; 3 * n];
        let mut acc = [0f64; 3];
        for (ty, &ky) in s.y.weights(oy).iter().enumerate() {
            src.read_row(s.y.start(oy) + ty, 0, n, &mut line);
            for c in 0..3 {
                let mut h = 0f64;
                for (tx, &kx) in s.x.weights(ox).iter().enumerate() {
                    h += kx as f64 * line[c * n + s.x.start(ox) + tx] as f64;
                }
                acc[c] += ky as f64 * h;
            }
        }
        acc.map(|v| v as f32)
    }

    fn test_frame(w: usize, h: usize, stride: usize) -> Vec<u8> {
        let mut data = vec![0u8; stride * h];
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    data[y * stride + 3 * x + c] =
                        ((x * 7 + y * 13 + c * 50 + (x * y) % 31) % 256) as u8;
                }
            }
        }
        data
    }

    /// PS3's sampling of a `w x h` frame at `size` px through a 140 px squash (the composed PIL and
    /// torch kernels, column windows padded to whole vectors).
    fn squash_sampler(w: usize, h: usize, size: usize, quantize: bool) -> ScaleSampler {
        ScaleSampler {
            x: compose(&pil_bicubic(w, 140), &torch_bicubic(140, size)).padded(LANES),
            y: compose(&pil_bicubic(h, 140), &torch_bicubic(140, size)),
            quantize,
        }
    }

    /// The AVX2 build of the loops gives the generic build's values bit for bit (RGB and NV12
    /// sources, with and without PIL's 8-bit rounding), for every column window the AVX2 loop has a
    /// fixed-length copy for (8, 16, 24 and 32 taps), a longer one (its run-time-length loop) and
    /// output counts that are not multiples of eight.
    ///
    /// On aarch64 the same test checks the NEON loops (`Resampler::regions` takes them there).
    #[test]
    fn simd_and_generic_loops_agree_bit_for_bit() {
        #[cfg(target_arch = "x86_64")]
        if !std::arch::is_x86_feature_detected!("avx2") {
            return;
        }
        let h = 61;
        let mut seen = Vec::new();
        for w in [97, 250, 400, 560, 800] {
            let stride = w * 3 + 5;
            let rgb = test_frame(w, h, stride);
            let rgb = Frame::new(w as u32, h as u32, PixelFormat::Rgb8, stride, &rgb).unwrap();
            let nv12: Vec<u8> = (0..w * h + 2 * w.div_ceil(2) * h.div_ceil(2))
                .map(|i| ((i * 37) % 251) as u8)
                .collect();
            let nv12 = Frame::packed(w as u32, h as u32, PixelFormat::Nv12, &nv12).unwrap();
            for frame in [&rgb, &nv12] {
                for quantize in [false, true] {
                    let s = squash_sampler(w, h, 53, quantize);
                    seen.push(s.x.taps());
                    let affine = Affine::from_u8_normalization([0.5; 3], [0.25; 3]);
                    let mut generic = vec![0f32; 3 * 53 * 53];
                    let mut avx2 = vec![0f32; 3 * 53 * 53];
                    let mut r = Resampler::default();
                    let job = |out| RegionJob {
                        sampler: &s,
                        rows: (0, 53),
                        cols: (0, 53),
                        out,
                    };
                    r.regions_generic::<false>(
                        frame,
                        &mut [job(planes(&mut generic, 53 * 53))],
                        &affine,
                    );
                    // The AVX2 (x86-64, checked above) or NEON (aarch64) loops.
                    r.regions(frame, &mut [job(planes(&mut avx2, 53 * 53))], &affine);
                    let same = generic
                        .iter()
                        .zip(&avx2)
                        .all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(
                        same,
                        "{} {w} px, {} taps, quantize={quantize}",
                        frame.format(),
                        s.x.taps()
                    );
                }
            }
        }
        for taps in [8, 16, 24, 32] {
            assert!(seen.contains(&taps), "no {taps}-tap window in {seen:?}");
        }
        assert!(seen.iter().any(|&t| t > 32), "no long window in {seen:?}");
    }

    /// Side-by-side patches resampled as one region are the patches resampled one at a time, bit
    /// for bit: every run length up to the cap, both rounding modes, runs starting at the left edge
    /// and ending at the right edge of the scale.
    #[test]
    fn a_row_of_patches_matches_each_patch_alone() {
        let (w, h, stride) = (301, 61, 301 * 3 + 5);
        let data = test_frame(w, h, stride);
        let frame = Frame::new(w as u32, h as u32, PixelFormat::Rgb8, stride, &data).unwrap();
        let (patch, size) = (7, 7 * 36);
        let affine = Affine::from_u8_normalization([0.5; 3], [0.25; 3]);
        let len = 3 * patch * patch;
        let mut r = Resampler::default();
        for quantize in [false, true] {
            let s = squash_sampler(w, h, size, quantize);
            for count in 1..=MAX_PATCH_RUN {
                for col0 in [0, 36 - count] {
                    let row0 = 2 * patch;
                    let mut together = vec![f32::NAN; count * len];
                    r.patch_row(
                        &frame,
                        &s,
                        row0,
                        col0 * patch,
                        count,
                        patch,
                        &affine,
                        &mut together,
                    );
                    for (i, got) in together.chunks_exact(len).enumerate() {
                        let mut alone = vec![0f32; len];
                        let c = (col0 + i) * patch;
                        r.region(
                            &frame,
                            &s,
                            (row0, row0 + patch),
                            (c, c + patch),
                            &affine,
                            planes(&mut alone, patch * patch),
                        );
                        assert!(
                            got.iter()
                                .zip(&alone)
                                .all(|(a, b)| a.to_bits() == b.to_bits()),
                            "run of {count} from column {col0}, patch {i}, quantize={quantize}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn region_matches_direct_evaluation() {
        let (w, h, stride) = (97, 61, 97 * 3 + 5);
        let data = test_frame(w, h, stride);
        let frame = Frame::new(w as u32, h as u32, PixelFormat::Rgb8, stride, &data).unwrap();
        let s = squash_sampler(w, h, 56, false);
        let mut r = Resampler::default();
        let mut full = vec![0f32; 3 * 56 * 56];
        r.region(
            &frame,
            &s,
            (0, 56),
            (0, 56),
            &Affine::IDENTITY,
            planes(&mut full, 56 * 56),
        );
        let mut patch = vec![0f32; 3 * 14 * 14];
        r.region(
            &frame,
            &s,
            (14, 28),
            (28, 42),
            &Affine::IDENTITY,
            planes(&mut patch, 14 * 14),
        );
        // Bands computed in parallel give the same plane, bit for bit.
        for threads in [2, 3, 5] {
            let mut scratch: Vec<Resampler> = (0..threads).map(|_| Resampler::default()).collect();
            let mut banded = vec![0f32; 3 * 56 * 56];
            plane_parallel(&mut scratch, &frame, &s, 56, &Affine::IDENTITY, &mut banded);
            assert_eq!(banded, full, "{threads} bands");
        }
        for oy in 0..56 {
            for ox in 0..56 {
                let d = direct(&frame, &s, oy, ox);
                for c in 0..3 {
                    let v = full[(c * 56 + oy) * 56 + ox];
                    assert!((v - d[c]).abs() < 1e-3, "({c},{oy},{ox}): {v} vs {}", d[c]);
                }
            }
        }
        for py in 0..14 {
            for px in 0..14 {
                for c in 0..3 {
                    assert_eq!(
                        patch[(c * 14 + py) * 14 + px],
                        full[(c * 56 + 14 + py) * 56 + 28 + px]
                    );
                }
            }
        }
    }

    /// A vertical window longer than the 64 taps `vertical_row` looks up at a time (a 6,000-row
    /// source squashed to 40 rows: over 128 taps, summed in three runs) gives the directly
    /// evaluated values, in the 32-column blocks and in the columns after them.
    #[test]
    fn long_vertical_windows_are_summed_in_runs() {
        const S: usize = 40;
        let (w, h, stride) = (200, 6000, 200 * 3);
        let data = test_frame(w, h, stride);
        let frame = Frame::new(w as u32, h as u32, PixelFormat::Rgb8, stride, &data).unwrap();
        let s = squash_sampler(w, h, S, false);
        assert!(s.y.taps() > 128, "{} taps", s.y.taps());
        let mut out = vec![0f32; 3 * S * S];
        Resampler::default().region(
            &frame,
            &s,
            (0, S),
            (0, S),
            &Affine::IDENTITY,
            planes(&mut out, S * S),
        );
        for oy in 0..S {
            for ox in 0..S {
                let d = direct(&frame, &s, oy, ox);
                for c in 0..3 {
                    let v = out[(c * S + oy) * S + ox];
                    assert!((v - d[c]).abs() < 1e-2, "({c},{oy},{ox}): {v} vs {}", d[c]);
                }
            }
        }
    }

    /// Two planes of different scales computed in one pass (each row converted once) are the
    /// planes computed one at a time, bit for bit, on any number of threads, for both the generic
    /// and the AVX2 loops and with PIL's 8-bit rounding on one of them.
    #[test]
    fn two_planes_in_one_pass_match_each_plane_alone() {
        let (w, h, stride) = (97, 61, 97 * 3 + 5);
        let data = test_frame(w, h, stride);
        let frame = Frame::new(w as u32, h as u32, PixelFormat::Rgb8, stride, &data).unwrap();
        let small = squash_sampler(w, h, 27, false);
        let large = squash_sampler(w, h, 112, true);
        let affine = Affine::from_u8_normalization([0.5; 3], [0.25; 3]);
        let alone = |s: &ScaleSampler, size: usize| {
            let mut out = vec![0f32; 3 * size * size];
            Resampler::default().region(
                &frame,
                s,
                (0, size),
                (0, size),
                &affine,
                planes(&mut out, size * size),
            );
            out
        };
        let (want_small, want_large) = (alone(&small, 27), alone(&large, 112));
        for threads in [1, 2, 3, 4] {
            let mut scratch: Vec<Resampler> = (0..threads).map(|_| Resampler::default()).collect();
            let (mut got_small, mut got_large) =
                (vec![0f32; 3 * 27 * 27], vec![0f32; 3 * 112 * 112]);
            let mut jobs = [
                PlaneJob {
                    sampler: &small,
                    size: 27,
                    out: &mut got_small,
                },
                PlaneJob {
                    sampler: &large,
                    size: 112,
                    out: &mut got_large,
                },
            ];
            planes_parallel(&mut scratch, &frame, &mut jobs, &affine);
            let same =
                |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(
                same(&got_small, &want_small),
                "small plane, {threads} threads"
            );
            assert!(
                same(&got_large, &want_large),
                "large plane, {threads} threads"
            );
        }
        // The generic loops in one pass, against the same planes.
        let (mut got_small, mut got_large) = (vec![0f32; 3 * 27 * 27], vec![0f32; 3 * 112 * 112]);
        let mut jobs = [
            RegionJob {
                sampler: &small,
                rows: (0, 27),
                cols: (0, 27),
                out: planes(&mut got_small, 27 * 27),
            },
            RegionJob {
                sampler: &large,
                rows: (0, 112),
                cols: (0, 112),
                out: planes(&mut got_large, 112 * 112),
            },
        ];
        Resampler::default().regions_generic::<false>(&frame, &mut jobs, &affine);
        assert_eq!(got_small, want_small);
        assert_eq!(got_large, want_large);
    }

    #[test]
    fn formats_read_the_same_colors() {
        let (w, h) = (5, 3);
        let rgb = test_frame(w, h, 3 * w);
        let mut bgra = Vec::new();
        for px in rgb.chunks_exact(3) {
            bgra.extend_from_slice(&[px[2], px[1], px[0], 255]);
        }
        let a = Frame::packed(w as u32, h as u32, PixelFormat::Rgb8, &rgb).unwrap();
        let b = Frame::packed(w as u32, h as u32, PixelFormat::Bgra8, &bgra).unwrap();
        let (mut la, mut lb) = (vec![0f32; 3 * w], vec![0f32; 3 * w]);
        for y in 0..h {
            a.read_row(y, 0, w, &mut la);
            b.read_row(y, 0, w, &mut lb);
            assert_eq!(la, lb);
        }
    }

    #[test]
    fn quantize_rounds_and_clips_like_pil() {
        assert_eq!(quantize8(-3.0), 0.0);
        assert_eq!(quantize8(254.6), 255.0);
        assert_eq!(quantize8(300.0), 255.0);
        assert_eq!(quantize8(10.49), 10.0);
        assert_eq!(quantize8(10.5), 11.0);
    }
}
