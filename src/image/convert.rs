//! Pixel conversion: every format to RGB, pixel by pixel, as the resampler reads a row.
//!
//! This is the fused conversion: the encoder never builds an RGB copy of a YUV frame; each row the
//! resizes or a selected patch touch is converted when it is read (`RowSource::read_row`), and only
//! the columns they need. The same per-pixel code also fills a whole packed RGB8 copy
//! ([`Frame::to_rgb8`]), so both give identical 8-bit values.
//!
//! Y'CbCr -> R'G'B' (ITU-R BT.601 / BT.709, `Kg = 1 - Kr - Kb`), with `Y`, `Cb`, `Cr` the 8-bit
//! samples:
//!
//! - limited range: `y = (Y - 16) * 255 / 219`, `cb = (Cb - 128) * 255 / 224`, same for `cr`;
//! - full range: `y = Y`, `cb = Cb - 128`, `cr = Cr - 128`;
//! - `R = y + 2 (1 - Kr) cr`, `G = y - (2 Kb (1 - Kb) cb + 2 Kr (1 - Kr) cr) / Kg`,
//!   `B = y + 2 (1 - Kb) cb`, each rounded to the nearest integer and clipped to 0..=255.
//!
//! The result is what an 8-bit YUV -> RGB conversion (OpenCV's `cvtColor`, libyuv) hands to PS3's
//! processor, which takes 8-bit RGB images. Chroma is replicated over the 2 (4:2:2) or 2x2 (4:2:0)
//! pixels it covers (no interpolation, as OpenCV and libyuv do).

use super::frame::{ColorSpec, Frame, Layout, PixelFormat, YuvMatrix, YuvRange};

/// Per-frame constants of the Y'CbCr -> RGB conversion.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct YuvCoeffs {
    ky: f32,
    y_bias: f32,
    cr_r: f32,
    cb_g: f32,
    cr_g: f32,
    cb_b: f32,
}

impl YuvCoeffs {
    pub(crate) fn new(spec: ColorSpec) -> Self {
        let (kr, kb) = match spec.matrix {
            YuvMatrix::Bt601 => (0.299f64, 0.114f64),
            YuvMatrix::Bt709 => (0.2126f64, 0.0722f64),
        };
        let kg = 1.0 - kr - kb;
        let (ky, kc, y0) = match spec.range {
            YuvRange::Limited => (255.0 / 219.0, 255.0 / 224.0, 16.0),
            YuvRange::Full => (1.0, 1.0, 0.0),
        };
        YuvCoeffs {
            ky: ky as f32,
            y_bias: (-y0 * ky) as f32,
            cr_r: (2.0 * (1.0 - kr) * kc) as f32,
            cb_g: (2.0 * kb * (1.0 - kb) / kg * kc) as f32,
            cr_g: (2.0 * kr * (1.0 - kr) / kg * kc) as f32,
            cb_b: (2.0 * (1.0 - kb) * kc) as f32,
        }
    }

    /// The six constants `[ky, y_bias, cr_r, cb_g, cr_g, cb_b]`, for the GPU kernels
    /// (src/image/gpu_resample.cu), which apply them in the same order.
    #[cfg(feature = "cuda")]
    pub(crate) fn terms(&self) -> [f32; 6] {
        [
            self.ky,
            self.y_bias,
            self.cr_r,
            self.cb_g,
            self.cr_g,
            self.cb_b,
        ]
    }

    /// Chroma terms `(dr, dg, db)` of one Cb, Cr pair.
    #[inline(always)]
    fn chroma(&self, cb: u8, cr: u8) -> (f32, f32, f32) {
        let cb = f32::from(cb) - 128.0;
        let cr = f32::from(cr) - 128.0;
        (
            self.cr_r * cr,
            -(self.cb_g * cb + self.cr_g * cr),
            self.cb_b * cb,
        )
    }

    /// RGB of luma `y` with chroma terms `d`, rounded and clipped to 0..=255.
    #[inline(always)]
    fn rgb(&self, y: u8, d: (f32, f32, f32)) -> [f32; 3] {
        let yv = self.ky * f32::from(y) + self.y_bias;
        [q8(yv + d.0), q8(yv + d.1), q8(yv + d.2)]
    }
}

/// Adding and subtracting 1.5 * 2^23 rounds an f32 of magnitude below 2^22 to the nearest integer
/// (ties to even): plain float arithmetic, which vectorizes (a float-to-int cast is saturating in
/// Rust and `round` may be a library call).
const ROUND: f32 = 12_582_912.0;

/// Clip to 0..=255 and round to the nearest integer; the value stays an f32.
#[inline(always)]
fn q8(v: f32) -> f32 {
    (v.clamp(0.0, 255.0) + ROUND) - ROUND
}

/// Call `f(i, [r, g, b])` for pixels `x0..x1` of row `y` (`i = x - x0`); values are integers in
/// 0..=255. `x0 < x1 <= width`, `y < height`.
#[inline(always)]
pub(crate) fn visit_row(
    frame: &Frame<'_>,
    y: usize,
    x0: usize,
    x1: usize,
    mut f: impl FnMut(usize, [f32; 3]),
) {
    match frame.format().layout() {
        Layout::Packed {
            bpp,
            rgb: [ro, go, bo],
        } => {
            let row = &frame.plane_row(0, y)[x0 * bpp..x1 * bpp];
            for (i, px) in row.chunks_exact(bpp).enumerate() {
                f(i, [f32::from(px[ro]), f32::from(px[go]), f32::from(px[bo])]);
            }
        }
        Layout::Gray => {
            for (i, &v) in frame.plane_row(0, y)[x0..x1].iter().enumerate() {
                let v = f32::from(v);
                f(i, [v, v, v]);
            }
        }
        Layout::Packed422 { y0, cb, y1, cr } => {
            let c = YuvCoeffs::new(frame.color());
            let row = frame.plane_row(0, y);
            let px = |x: usize| {
                let m = &row[4 * (x / 2)..4 * (x / 2) + 4];
                c.rgb(
                    m[if x.is_multiple_of(2) { y0 } else { y1 }],
                    c.chroma(m[cb], m[cr]),
                )
            };
            let (a, b) = (x0.div_ceil(2), x1 / 2);
            if a >= b {
                for x in x0..x1 {
                    f(x - x0, px(x));
                }
                return;
            }
            if x0 % 2 == 1 {
                f(0, px(x0));
            }
            let base = 2 * a - x0;
            for (k, m) in row[4 * a..4 * b].chunks_exact(4).enumerate() {
                let d = c.chroma(m[cb], m[cr]);
                f(base + 2 * k, c.rgb(m[y0], d));
                f(base + 2 * k + 1, c.rgb(m[y1], d));
            }
            if x1 % 2 == 1 {
                f(x1 - 1 - x0, px(x1 - 1));
            }
        }
        Layout::SemiPlanar420 { cb, cr } => {
            let c = YuvCoeffs::new(frame.color());
            let luma = frame.plane_row(0, y);
            let chroma = frame.plane_row(1, y / 2);
            let px = |x: usize| {
                let p = 2 * (x / 2);
                c.rgb(luma[x], c.chroma(chroma[p + cb], chroma[p + cr]))
            };
            let (a, b) = (x0.div_ceil(2), x1 / 2);
            if a >= b {
                for x in x0..x1 {
                    f(x - x0, px(x));
                }
                return;
            }
            if x0 % 2 == 1 {
                f(0, px(x0));
            }
            let base = 2 * a - x0;
            let pairs = luma[2 * a..2 * b]
                .chunks_exact(2)
                .zip(chroma[2 * a..2 * b].chunks_exact(2));
            for (k, (l, ch)) in pairs.enumerate() {
                let d = c.chroma(ch[cb], ch[cr]);
                f(base + 2 * k, c.rgb(l[0], d));
                f(base + 2 * k + 1, c.rgb(l[1], d));
            }
            if x1 % 2 == 1 {
                f(x1 - 1 - x0, px(x1 - 1));
            }
        }
        Layout::Planar420 => {
            let c = YuvCoeffs::new(frame.color());
            let luma = frame.plane_row(0, y);
            let cbs = frame.plane_row(1, y / 2);
            let crs = frame.plane_row(2, y / 2);
            let px = |x: usize| c.rgb(luma[x], c.chroma(cbs[x / 2], crs[x / 2]));
            let (a, b) = (x0.div_ceil(2), x1 / 2);
            if a >= b {
                for x in x0..x1 {
                    f(x - x0, px(x));
                }
                return;
            }
            if x0 % 2 == 1 {
                f(0, px(x0));
            }
            let base = 2 * a - x0;
            let pairs = luma[2 * a..2 * b]
                .chunks_exact(2)
                .zip(cbs[a..b].iter().zip(&crs[a..b]));
            for (k, (l, (&u, &v))) in pairs.enumerate() {
                let d = c.chroma(u, v);
                f(base + 2 * k, c.rgb(l[0], d));
                f(base + 2 * k + 1, c.rgb(l[1], d));
            }
            if x1 % 2 == 1 {
                f(x1 - 1 - x0, px(x1 - 1));
            }
        }
    }
}

/// How far below the row being converted [`read_row_planar`] prefetches: the resampler reads rows
/// in order, so the row two below is read a couple of rows' conversion later.
const PREFETCH_ROWS: usize = 2;

/// Start loading the bytes of pixels `x0..x1` of row `y` (every plane of it) into the caches.
///
/// Why by hand: on this project's x86-64 machine, converting an 8K RGB8 frame row by row spent most
/// of its time waiting on the loads (the hardware prefetchers follow a row only within a 4 KiB page,
/// our reading); asking for the row two below while converting this one took one thread's 8K
/// preprocessing from 33 to 27 ms (`ps3rt bench --resolutions 7680x4320 --threads 1`).
#[inline(always)]
fn prefetch_ahead(frame: &Frame<'_>, y: usize, x0: usize, x1: usize) {
    if y >= frame.height() as usize {
        return;
    }
    let (h0, h1) = (x0 / 2, x1.div_ceil(2));
    match frame.format().layout() {
        Layout::Packed { bpp, .. } => prefetch(&frame.plane_row(0, y)[x0 * bpp..x1 * bpp]),
        Layout::Gray => prefetch(&frame.plane_row(0, y)[x0..x1]),
        Layout::Packed422 { .. } => prefetch(&frame.plane_row(0, y)[4 * h0..4 * h1]),
        Layout::SemiPlanar420 { .. } => {
            prefetch(&frame.plane_row(0, y)[x0..x1]);
            if y.is_multiple_of(2) {
                prefetch(&frame.plane_row(1, y / 2)[2 * h0..2 * h1]);
            }
        }
        Layout::Planar420 => {
            prefetch(&frame.plane_row(0, y)[x0..x1]);
            if y.is_multiple_of(2) {
                prefetch(&frame.plane_row(1, y / 2)[h0..h1]);
                prefetch(&frame.plane_row(2, y / 2)[h0..h1]);
            }
        }
    }
}

/// Ask the CPU to start loading `bytes` into its caches (x86-64; nothing elsewhere).
#[inline(always)]
fn prefetch(bytes: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    for line in bytes.chunks(64) {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: a prefetch never faults and reads nothing architecturally; the pointer is
        // in bounds anyway.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(line.as_ptr().cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

/// Packed `N`-byte pixels (red at byte `R`, green `G`, blue `B`) into three f32 planes.
#[inline(always)]
fn deinterleave<const N: usize, const R: usize, const G: usize, const B: usize>(
    row: &[u8],
    r: &mut [f32],
    g: &mut [f32],
    b: &mut [f32],
) {
    let (px, _) = row.as_chunks::<N>();
    for (((p, r), g), b) in px
        .iter()
        .zip(r.iter_mut())
        .zip(g.iter_mut())
        .zip(b.iter_mut())
    {
        *r = f32::from(p[R]);
        *g = f32::from(p[G]);
        *b = f32::from(p[B]);
    }
}

/// Pixels `x0..x1` of row `y` as planar f32 RGB into `out[..3 * (x1 - x0)]`.
///
/// YUV rows take a fast path for their whole chroma pairs (fixed-size chunks, no bounds checks,
/// branch-free arithmetic the compiler vectorizes); the odd pixel at either end goes through
/// [`visit_row`]. Both compute exactly `YuvCoeffs::rgb`, so the values are the same.
#[inline]
pub(crate) fn read_row_planar(frame: &Frame<'_>, y: usize, x0: usize, x1: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: read_row_planar_avx2 only requires AVX2, which this CPU has (checked just above).
        unsafe { read_row_planar_avx2(frame, y, x0, x1, out) };
        return;
    }
    // NEON is part of the aarch64 baseline: YUV rows through yuv_neon.
    #[cfg(target_arch = "aarch64")]
    read_row_planar_generic::<true>(frame, y, x0, x1, out);
    #[cfg(not(target_arch = "aarch64"))]
    read_row_planar_generic::<false>(frame, y, x0, x1, out);
}

/// [`read_row_planar`] compiled with AVX2 enabled (the same arithmetic, bit-identical results), YUV
/// rows eight pixels at a time with explicit AVX2 instructions ([`yuv_avx2::pairs`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn read_row_planar_avx2(frame: &Frame<'_>, y: usize, x0: usize, x1: usize, out: &mut [f32]) {
    read_row_planar_generic::<true>(frame, y, x0, x1, out);
}

/// The conversion loop; inlined into each instruction-set variant. `SIMD` is true only in
/// [`read_row_planar_avx2`] on x86-64 and always on aarch64.
#[inline(always)]
fn read_row_planar_generic<const SIMD: bool>(
    frame: &Frame<'_>,
    y: usize,
    x0: usize,
    x1: usize,
    out: &mut [f32],
) {
    let n = x1 - x0;
    let (r, rest) = out[..3 * n].split_at_mut(n);
    let (g, b) = rest.split_at_mut(n);
    prefetch_ahead(frame, y + PREFETCH_ROWS, x0, x1);
    let layout = frame.format().layout();
    let (a, e) = (x0.div_ceil(2), x1 / 2);
    let yuv = matches!(
        layout,
        Layout::Packed422 { .. } | Layout::SemiPlanar420 { .. } | Layout::Planar420
    );
    if let Layout::Packed { bpp, rgb } = layout {
        // Fixed layouts as compile-time constants: straight-line loops the compiler vectorizes.
        let row = &frame.plane_row(0, y)[x0 * bpp..x1 * bpp];
        match (bpp, rgb) {
            (3, [0, 1, 2]) => return deinterleave::<3, 0, 1, 2>(row, r, g, b),
            (3, [2, 1, 0]) => return deinterleave::<3, 2, 1, 0>(row, r, g, b),
            (4, [0, 1, 2]) => return deinterleave::<4, 0, 1, 2>(row, r, g, b),
            (4, [2, 1, 0]) => return deinterleave::<4, 2, 1, 0>(row, r, g, b),
            _ => {}
        }
    }
    if !yuv || a >= e {
        visit_row(frame, y, x0, x1, |i, px| {
            r[i] = px[0];
            g[i] = px[1];
            b[i] = px[2];
        });
        return;
    }
    // The odd pixel at either end.
    let edge = |x: usize, r: &mut [f32], g: &mut [f32], b: &mut [f32]| {
        visit_row(frame, y, x, x + 1, |_, px| {
            r[x - x0] = px[0];
            g[x - x0] = px[1];
            b[x - x0] = px[2];
        });
    };
    if x0 % 2 == 1 {
        edge(x0, r, g, b);
    }
    if x1 % 2 == 1 {
        edge(x1 - 1, r, g, b);
    }
    let base = 2 * a - x0;
    let len = 2 * (e - a);
    let (r, g, b) = (
        &mut r[base..base + len],
        &mut g[base..base + len],
        &mut b[base..base + len],
    );
    // With AVX2, whole groups of four pairs in registers; the passes below take the rest.
    #[cfg(target_arch = "x86_64")]
    let (a, r, g, b) = if SIMD {
        // SAFETY: SIMD is true only in read_row_planar_avx2, which runs only after
        // is_x86_feature_detected!("avx2") returned true.
        let done = unsafe { yuv_avx2::pairs(frame, y, (a, e), r, g, b) };
        let (r, g, b) = (&mut r[2 * done..], &mut g[2 * done..], &mut b[2 * done..]);
        (a + done, r, g, b)
    } else {
        (a, r, g, b)
    };
    // The same with NEON on aarch64.
    #[cfg(target_arch = "aarch64")]
    let (a, r, g, b) = if SIMD {
        // SAFETY: yuv_neon::pairs requires NEON, which every aarch64 CPU has (the target's
        // baseline).
        let done = unsafe { yuv_neon::pairs(frame, y, (a, e), r, g, b) };
        let (r, g, b) = (&mut r[2 * done..], &mut g[2 * done..], &mut b[2 * done..]);
        (a + done, r, g, b)
    } else {
        (a, r, g, b)
    };
    // Pass 1: the samples as floats, chroma replicated over its pair: Y into r, Cb into g, Cr into b.
    let (rp, gp, bp) = (
        r.as_chunks_mut::<2>().0,
        g.as_chunks_mut::<2>().0,
        b.as_chunks_mut::<2>().0,
    );
    match frame.format() {
        PixelFormat::Yuyv => {
            samples422::<0, 1, 2, 3>(&frame.plane_row(0, y)[4 * a..4 * e], rp, gp, bp)
        }
        PixelFormat::Uyvy => {
            samples422::<1, 0, 3, 2>(&frame.plane_row(0, y)[4 * a..4 * e], rp, gp, bp)
        }
        PixelFormat::Nv12 | PixelFormat::Nv21 => {
            let (cb, cr) = if frame.format() == PixelFormat::Nv12 {
                (0, 1)
            } else {
                (1, 0)
            };
            let luma = frame.plane_row(0, y)[2 * a..2 * e].as_chunks::<2>().0;
            let chroma = frame.plane_row(1, y / 2)[2 * a..2 * e].as_chunks::<2>().0;
            for ((((l, c), ro), go), bo) in luma.iter().zip(chroma).zip(rp).zip(gp).zip(bp) {
                *ro = [f32::from(l[0]), f32::from(l[1])];
                *go = [f32::from(c[cb]); 2];
                *bo = [f32::from(c[cr]); 2];
            }
        }
        _ => {
            let luma = frame.plane_row(0, y)[2 * a..2 * e].as_chunks::<2>().0;
            let cbs = &frame.plane_row(1, y / 2)[a..e];
            let crs = &frame.plane_row(2, y / 2)[a..e];
            for ((((l, &u), &v), ro), (go, bo)) in luma
                .iter()
                .zip(cbs)
                .zip(crs)
                .zip(rp)
                .zip(gp.iter_mut().zip(bp))
            {
                *ro = [f32::from(l[0]), f32::from(l[1])];
                *go = [f32::from(u); 2];
                *bo = [f32::from(v); 2];
            }
        }
    }
    // Pass 2: element-wise conversion (straight-line float arithmetic the compiler vectorizes),
    // the same operations in the same order as `YuvCoeffs::rgb`.
    let c = YuvCoeffs::new(frame.color());
    for ((ro, go), bo) in r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()) {
        let yv = c.ky * *ro + c.y_bias;
        let cb = *go - 128.0;
        let cr = *bo - 128.0;
        *ro = q8(yv + c.cr_r * cr);
        *go = q8(yv + -(c.cb_g * cb + c.cr_g * cr));
        *bo = q8(yv + c.cb_b * cb);
    }
}

/// Pass 1 for packed 4:2:2: Y, Cb, Cr of each pair at byte offsets `Y0, CB, Y1, CR`.
#[inline(always)]
fn samples422<const Y0: usize, const CB: usize, const Y1: usize, const CR: usize>(
    row: &[u8],
    r: &mut [[f32; 2]],
    g: &mut [[f32; 2]],
    b: &mut [[f32; 2]],
) {
    let pairs = row.as_chunks::<4>().0;
    for (((m, ro), go), bo) in pairs.iter().zip(r).zip(g).zip(b) {
        *ro = [f32::from(m[Y0]), f32::from(m[Y1])];
        *go = [f32::from(m[CB]); 2];
        *bo = [f32::from(m[CR]); 2];
    }
}

impl Frame<'_> {
    /// Convert the whole frame to packed 8-bit RGB (`width * height * 3` bytes, rows back to back)
    /// into `out`, which is resized (its allocation is reused). YUV frames use the frame's
    /// [`ColorSpec`].
    ///
    /// The encoder does not need this: it converts only the pixels it reads, with the same
    /// arithmetic, so encoding this copy as [`PixelFormat::Rgb8`](super::PixelFormat::Rgb8) gives the
    /// same result as encoding the frame itself. It serves drawing, saving and comparisons.
    pub fn to_rgb8(&self, out: &mut Vec<u8>) {
        let (w, h) = (self.width() as usize, self.height() as usize);
        out.clear();
        out.resize(w * h * 3, 0);
        for (y, row) in out.chunks_exact_mut(w * 3).enumerate() {
            visit_row(self, y, 0, w, |i, px| {
                // Values are integers in 0..=255: the casts are exact.
                row[3 * i] = px[0] as u8;
                row[3 * i + 1] = px[1] as u8;
                row[3 * i + 2] = px[2] as u8;
            });
        }
    }
}

/// YUV rows eight pixels (four chroma pairs) at a time with AVX2: the samples widened to floats in
/// registers (the compiler did not vectorize the byte-to-float spreading of pass 1: it converted one
/// sample at a time, most of an NV12 8K frame's conversion), then `YuvCoeffs::rgb`'s arithmetic in
/// the same order (no FMA), so the values are bit-identical to the scalar passes.
#[cfg(target_arch = "x86_64")]
mod yuv_avx2 {
    use super::{Frame, PixelFormat, ROUND, YuvCoeffs};
    use std::arch::x86_64::{
        __m128i, __m256, _mm_loadl_epi64, _mm_loadu_si128, _mm_set_epi32, _mm_shuffle_epi8,
        _mm_srli_si128, _mm256_add_ps, _mm256_cvtepi32_ps, _mm256_cvtepu8_epi32, _mm256_max_ps,
        _mm256_min_ps, _mm256_mul_ps, _mm256_set1_ps, _mm256_setzero_ps, _mm256_storeu_ps,
        _mm256_sub_ps,
    };

    /// Pairs `a..a + n` of YUV row `y` (pixels `2a..`) converted into `r`, `g`, `b` (from index 0),
    /// for the largest `n <= e - a` that is a multiple of 4; returns `n`. Non-YUV formats: 0.
    #[target_feature(enable = "avx2")]
    pub(super) fn pairs(
        frame: &Frame<'_>,
        y: usize,
        (a, e): (usize, usize),
        r: &mut [f32],
        g: &mut [f32],
        b: &mut [f32],
    ) -> usize {
        let groups = (e - a) / 4;
        let n = 8 * groups;
        if groups == 0 || r.len() < n || g.len() < n || b.len() < n {
            return 0;
        }
        let k = Coeffs::new(&YuvCoeffs::new(frame.color()));
        let out = |i: usize, r: &mut [f32], g: &mut [f32], b: &mut [f32], px: [__m256; 3]| {
            let rgb = k.rgb(px);
            for (plane, v) in [r, g, b].into_iter().zip(rgb) {
                let dst: &mut [f32; 8] =
                    (&mut plane[8 * i..8 * i + 8]).try_into().expect("8 floats");
                // SAFETY: dst is an [f32; 8], valid for the eight unaligned writes.
                unsafe { _mm256_storeu_ps(dst.as_mut_ptr(), v) };
            }
        };
        match frame.format() {
            PixelFormat::Nv12 | PixelFormat::Nv21 => {
                let (cb, cr) = if frame.format() == PixelFormat::Nv12 {
                    (0u8, 1u8)
                } else {
                    (1, 0)
                };
                let luma = &frame.plane_row(0, y)[2 * a..2 * a + n];
                let chroma = &frame.plane_row(1, y / 2)[2 * a..2 * a + n];
                // [cb0 cb0 cb1 cb1 cb2 cb2 cb3 cb3 | cr0 cr0 ... cr3 cr3] from [cb0 cr0 cb1 cr1 ...]
                let spread = mask(std::array::from_fn(|i| {
                    let c = if i < 8 { cb } else { cr };
                    2 * ((i as u8 % 8) / 2) + c
                }));
                for (i, (l, c)) in luma.chunks_exact(8).zip(chroma.chunks_exact(8)).enumerate() {
                    let uv = _mm_shuffle_epi8(load8(c), spread);
                    out(
                        i,
                        r,
                        g,
                        b,
                        [widen(load8(l)), widen(uv), widen(_mm_srli_si128::<8>(uv))],
                    );
                }
            }
            PixelFormat::I420 => {
                let luma = &frame.plane_row(0, y)[2 * a..2 * a + n];
                let cbs = &frame.plane_row(1, y / 2)[a..a + n / 2];
                let crs = &frame.plane_row(2, y / 2)[a..a + n / 2];
                let spread = mask(std::array::from_fn(|i| i as u8 / 2));
                for (i, l) in luma.chunks_exact(8).enumerate() {
                    let word = |s: &[u8]| {
                        i32::from_le_bytes(s[4 * i..4 * i + 4].try_into().expect("4 bytes"))
                    };
                    let uv = _mm_shuffle_epi8(_mm_set_epi32(0, 0, word(crs), word(cbs)), spread);
                    out(
                        i,
                        r,
                        g,
                        b,
                        [widen(load8(l)), widen(uv), widen(_mm_srli_si128::<8>(uv))],
                    );
                }
            }
            PixelFormat::Yuyv | PixelFormat::Uyvy => {
                let (y0, cb, y1, cr) = if frame.format() == PixelFormat::Yuyv {
                    (0u8, 1u8, 2u8, 3u8)
                } else {
                    (1, 0, 3, 2)
                };
                let row = &frame.plane_row(0, y)[4 * a..4 * a + 2 * n];
                let lumas = mask(std::array::from_fn(|i| {
                    let p = 4 * (i as u8 % 8 / 2);
                    p + if i % 2 == 0 { y0 } else { y1 }
                }));
                let spread = mask(std::array::from_fn(|i| {
                    4 * (i as u8 % 8 / 2) + if i < 8 { cb } else { cr }
                }));
                for (i, m) in row.chunks_exact(16).enumerate() {
                    let m: &[u8; 16] = m.try_into().expect("16 bytes");
                    // SAFETY: m is a [u8; 16], valid for the sixteen unaligned reads.
                    let v = unsafe { _mm_loadu_si128(m.as_ptr().cast()) };
                    let uv = _mm_shuffle_epi8(v, spread);
                    let l = _mm_shuffle_epi8(v, lumas);
                    out(
                        i,
                        r,
                        g,
                        b,
                        [widen(l), widen(uv), widen(_mm_srli_si128::<8>(uv))],
                    );
                }
            }
            _ => return 0,
        }
        groups * 4
    }

    /// A byte-shuffle mask.
    #[target_feature(enable = "avx2")]
    fn mask(bytes: [u8; 16]) -> __m128i {
        // SAFETY: bytes is a [u8; 16], valid for the sixteen unaligned reads.
        unsafe { _mm_loadu_si128(bytes.as_ptr().cast()) }
    }

    /// The first eight bytes of `s` in the low half of a vector.
    #[target_feature(enable = "avx2")]
    fn load8(s: &[u8]) -> __m128i {
        let s: &[u8; 8] = s[..8].try_into().expect("8 bytes");
        // SAFETY: s is a [u8; 8], valid for the eight unaligned reads.
        unsafe { _mm_loadl_epi64(s.as_ptr().cast()) }
    }

    /// The low eight bytes as eight floats.
    #[target_feature(enable = "avx2")]
    fn widen(v: __m128i) -> __m256 {
        _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v))
    }

    /// [`YuvCoeffs`] broadcast to every lane.
    struct Coeffs {
        ky: __m256,
        y_bias: __m256,
        cr_r: __m256,
        cb_g: __m256,
        cr_g: __m256,
        cb_b: __m256,
    }

    impl Coeffs {
        #[target_feature(enable = "avx2")]
        fn new(c: &YuvCoeffs) -> Self {
            Coeffs {
                ky: _mm256_set1_ps(c.ky),
                y_bias: _mm256_set1_ps(c.y_bias),
                cr_r: _mm256_set1_ps(c.cr_r),
                cb_g: _mm256_set1_ps(c.cb_g),
                cr_g: _mm256_set1_ps(c.cr_g),
                cb_b: _mm256_set1_ps(c.cb_b),
            }
        }

        /// `YuvCoeffs::rgb` of `[Y, Cb, Cr]` samples, lane by lane, in its order of operations
        /// (`yv + -(x)` is `yv - x` exactly).
        #[target_feature(enable = "avx2")]
        fn rgb(&self, [yv, cb, cr]: [__m256; 3]) -> [__m256; 3] {
            let half = _mm256_set1_ps(128.0);
            let yv = _mm256_add_ps(_mm256_mul_ps(self.ky, yv), self.y_bias);
            let (cb, cr) = (_mm256_sub_ps(cb, half), _mm256_sub_ps(cr, half));
            let g = _mm256_add_ps(_mm256_mul_ps(self.cb_g, cb), _mm256_mul_ps(self.cr_g, cr));
            [
                q8(_mm256_add_ps(yv, _mm256_mul_ps(self.cr_r, cr))),
                q8(_mm256_sub_ps(yv, g)),
                q8(_mm256_add_ps(yv, _mm256_mul_ps(self.cb_b, cb))),
            ]
        }
    }

    /// `super::q8` lane by lane (no NaN reaches it: the inputs are bytes).
    #[target_feature(enable = "avx2")]
    fn q8(v: __m256) -> __m256 {
        let round = _mm256_set1_ps(ROUND);
        let clamped = _mm256_min_ps(_mm256_max_ps(v, _mm256_setzero_ps()), _mm256_set1_ps(255.0));
        _mm256_sub_ps(_mm256_add_ps(clamped, round), round)
    }
}

/// [`yuv_avx2`]'s twin for aarch64 (Jetson): eight pixels at a time in two 128-bit halves, the
/// samples widened with `vmovl`, chroma spread with table lookups, then `YuvCoeffs::rgb`'s
/// arithmetic in its order with separate multiplications and additions, so the values are
/// bit-identical to the scalar passes.
#[cfg(target_arch = "aarch64")]
mod yuv_neon {
    use super::{Frame, PixelFormat, ROUND, YuvCoeffs};
    use std::arch::aarch64::{
        float32x4_t, uint8x8_t, vaddq_f32, vcvtq_f32_u32, vdupq_n_f32, vget_low_u16, vld1_u8,
        vld1q_u8, vmaxq_f32, vminq_f32, vmovl_high_u16, vmovl_u8, vmovl_u16, vmulq_f32, vqtbl1_u8,
        vst1q_f32, vsubq_f32, vtbl1_u8,
    };

    /// See [`super::yuv_avx2::pairs`]'s contract: pairs `a..a + n` of YUV row `y` into `r`, `g`,
    /// `b` from index 0, `n` the largest multiple of 4 `<= e - a`; returns `n` (0 for non-YUV).
    #[target_feature(enable = "neon")]
    pub(super) fn pairs(
        frame: &Frame<'_>,
        y: usize,
        (a, e): (usize, usize),
        r: &mut [f32],
        g: &mut [f32],
        b: &mut [f32],
    ) -> usize {
        let groups = (e - a) / 4;
        let n = 8 * groups;
        if groups == 0 || r.len() < n || g.len() < n || b.len() < n {
            return 0;
        }
        let c = YuvCoeffs::new(frame.color());
        let out = |i: usize, r: &mut [f32], g: &mut [f32], b: &mut [f32], px: [uint8x8_t; 3]| {
            let [yl, ul, vl] = [widen(px[0]), widen(px[1]), widen(px[2])];
            for half in 0..2 {
                let rgb = rgb(&c, [yl[half], ul[half], vl[half]]);
                for (plane, v) in [&mut *r, &mut *g, &mut *b].into_iter().zip(rgb) {
                    let dst: &mut [f32; 4] = (&mut plane[8 * i + 4 * half..8 * i + 4 * half + 4])
                        .try_into()
                        .expect("4 floats");
                    // SAFETY: dst is an [f32; 4], valid for the four writes.
                    unsafe { vst1q_f32(dst.as_mut_ptr(), v) };
                }
            }
        };
        match frame.format() {
            PixelFormat::Nv12 | PixelFormat::Nv21 => {
                let (cb, cr) = if frame.format() == PixelFormat::Nv12 {
                    (0u8, 1u8)
                } else {
                    (1, 0)
                };
                let luma = &frame.plane_row(0, y)[2 * a..2 * a + n];
                let chroma = &frame.plane_row(1, y / 2)[2 * a..2 * a + n];
                // [c0 c0 c1 c1 c2 c2 c3 c3] of one component from [cb0 cr0 cb1 cr1 ...]
                let us = load8(&std::array::from_fn::<u8, 8, _>(|i| 2 * (i as u8 / 2) + cb));
                let vs = load8(&std::array::from_fn::<u8, 8, _>(|i| 2 * (i as u8 / 2) + cr));
                for (i, (l, ch)) in luma.chunks_exact(8).zip(chroma.chunks_exact(8)).enumerate() {
                    let ch = load8(ch);
                    out(i, r, g, b, [load8(l), vtbl1_u8(ch, us), vtbl1_u8(ch, vs)]);
                }
            }
            PixelFormat::I420 => {
                let luma = &frame.plane_row(0, y)[2 * a..2 * a + n];
                let cbs = &frame.plane_row(1, y / 2)[a..a + n / 2];
                let crs = &frame.plane_row(2, y / 2)[a..a + n / 2];
                // [cb0 cb0 cb1 cb1 ...] and [cr0 cr0 cr1 cr1 ...] from [cb0 cb1 cb2 cb3 cr0 ... cr3]
                let us = load8(&std::array::from_fn::<u8, 8, _>(|i| i as u8 / 2));
                let vs = load8(&std::array::from_fn::<u8, 8, _>(|i| 4 + i as u8 / 2));
                for (i, l) in luma.chunks_exact(8).enumerate() {
                    let mut uv = [0u8; 8];
                    uv[..4].copy_from_slice(&cbs[4 * i..4 * i + 4]);
                    uv[4..].copy_from_slice(&crs[4 * i..4 * i + 4]);
                    let uv = load8(&uv);
                    out(i, r, g, b, [load8(l), vtbl1_u8(uv, us), vtbl1_u8(uv, vs)]);
                }
            }
            PixelFormat::Yuyv | PixelFormat::Uyvy => {
                let (y0, cb, y1, cr) = if frame.format() == PixelFormat::Yuyv {
                    (0u8, 1u8, 2u8, 3u8)
                } else {
                    (1, 0, 3, 2)
                };
                let row = &frame.plane_row(0, y)[4 * a..4 * a + 2 * n];
                let lumas = load8(&std::array::from_fn::<u8, 8, _>(|i| {
                    4 * (i as u8 / 2) + if i % 2 == 0 { y0 } else { y1 }
                }));
                let us = load8(&std::array::from_fn::<u8, 8, _>(|i| 4 * (i as u8 / 2) + cb));
                let vs = load8(&std::array::from_fn::<u8, 8, _>(|i| 4 * (i as u8 / 2) + cr));
                for (i, m) in row.chunks_exact(16).enumerate() {
                    let m: &[u8; 16] = m.try_into().expect("16 bytes");
                    // SAFETY: m is a [u8; 16], valid for the sixteen reads.
                    let q = unsafe { vld1q_u8(m.as_ptr()) };
                    out(
                        i,
                        r,
                        g,
                        b,
                        [vqtbl1_u8(q, lumas), vqtbl1_u8(q, us), vqtbl1_u8(q, vs)],
                    );
                }
            }
            _ => return 0,
        }
        groups * 4
    }

    /// The first eight bytes of `s`.
    #[target_feature(enable = "neon")]
    fn load8(s: &[u8]) -> uint8x8_t {
        let s: &[u8; 8] = s[..8].try_into().expect("8 bytes");
        // SAFETY: s is a [u8; 8], valid for the eight reads.
        unsafe { vld1_u8(s.as_ptr()) }
    }

    /// Eight bytes as two vectors of four floats.
    #[target_feature(enable = "neon")]
    fn widen(v: uint8x8_t) -> [float32x4_t; 2] {
        let w = vmovl_u8(v);
        [
            vcvtq_f32_u32(vmovl_u16(vget_low_u16(w))),
            vcvtq_f32_u32(vmovl_high_u16(w)),
        ]
    }

    /// `YuvCoeffs::rgb` of `[Y, Cb, Cr]` samples, lane by lane, in its order of operations.
    #[target_feature(enable = "neon")]
    fn rgb(c: &YuvCoeffs, [yv, cb, cr]: [float32x4_t; 3]) -> [float32x4_t; 3] {
        let k = vdupq_n_f32;
        let yv = vaddq_f32(vmulq_f32(k(c.ky), yv), k(c.y_bias));
        let (cb, cr) = (vsubq_f32(cb, k(128.0)), vsubq_f32(cr, k(128.0)));
        let g = vaddq_f32(vmulq_f32(k(c.cb_g), cb), vmulq_f32(k(c.cr_g), cr));
        [
            q8(vaddq_f32(yv, vmulq_f32(k(c.cr_r), cr))),
            q8(vsubq_f32(yv, g)),
            q8(vaddq_f32(yv, vmulq_f32(k(c.cb_b), cb))),
        ]
    }

    /// `super::q8` lane by lane (no NaN reaches it: the inputs are bytes).
    #[target_feature(enable = "neon")]
    fn q8(v: float32x4_t) -> float32x4_t {
        let round = vdupq_n_f32(ROUND);
        let clamped = vminq_f32(vmaxq_f32(v, vdupq_n_f32(0.0)), vdupq_n_f32(255.0));
        vsubq_f32(vaddq_f32(clamped, round), round)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::PixelFormat;

    /// The AVX2 build of the row conversion (its explicit YUV loop included) gives the generic
    /// build's values bit for bit, for every format and colour spec, odd widths and odd windows,
    /// windows long enough for several eight-pixel groups and a remainder, even and odd rows. On
    /// aarch64 the same test checks the NEON YUV loop (`read_row_planar` takes it there).
    #[test]
    fn simd_and_generic_conversion_agree_bit_for_bit() {
        #[cfg(target_arch = "x86_64")]
        if !std::arch::is_x86_feature_detected!("avx2") {
            return;
        }
        let (w, h) = (37u32, 5u32);
        let specs = [
            ColorSpec::BT601_LIMITED,
            ColorSpec::BT601_FULL,
            ColorSpec::BT709_LIMITED,
            ColorSpec::BT709_FULL,
        ];
        for name in [
            "rgb8", "bgr8", "rgba8", "bgra8", "gray8", "yuyv", "uyvy", "nv12", "nv21", "i420",
        ] {
            let format = PixelFormat::from_name(name).unwrap();
            let len = crate::capture::raw_frame_len(w, h, format, 0).unwrap();
            let data: Vec<u8> = (0..len).map(|i| ((i * 73 + 11) % 256) as u8).collect();
            for spec in specs {
                let frame = Frame::packed(w, h, format, &data).unwrap().with_color(spec);
                for y in [2, 3] {
                    for (x0, x1) in [(0, 37), (1, 36), (3, 4), (5, 30), (2, 27), (0, 8)] {
                        let n = x1 - x0;
                        let (mut a, mut b) = (vec![0f32; 3 * n], vec![0f32; 3 * n]);
                        read_row_planar_generic::<false>(&frame, y, x0, x1, &mut a);
                        // The AVX2 (x86-64, checked above) or NEON (aarch64) loop.
                        read_row_planar(&frame, y, x0, x1, &mut b);
                        assert!(
                            a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()),
                            "{name} {spec:?} row {y} {x0}..{x1}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn reference_colours_convert_as_published() {
        let c = YuvCoeffs::new(ColorSpec::BT601_LIMITED);
        assert_eq!(c.rgb(16, c.chroma(128, 128)), [0.0, 0.0, 0.0]);
        assert_eq!(c.rgb(235, c.chroma(128, 128)), [255.0, 255.0, 255.0]);
        // Below black and above white are clipped.
        assert_eq!(c.rgb(0, c.chroma(128, 128)), [0.0, 0.0, 0.0]);
        assert_eq!(c.rgb(255, c.chroma(128, 128)), [255.0, 255.0, 255.0]);
        // Full-range BT.601 red: R = 76 + 1.402 * 127 = 254.05, G = 0.10, B = -0.20.
        let c = YuvCoeffs::new(ColorSpec::BT601_FULL);
        assert_eq!(c.rgb(76, c.chroma(85, 255)), [254.0, 0.0, 0.0]);
        let c = YuvCoeffs::new(ColorSpec::BT709_FULL);
        assert_eq!(c.rgb(200, c.chroma(128, 128)), [200.0, 200.0, 200.0]);
    }

    #[test]
    fn partial_rows_match_full_rows() {
        // 7x3 frames of every format (colour specs too): any span through the fast path reads the
        // same values as the pixel-by-pixel path.
        let data: Vec<u8> = (0..400u32).map(|i| (i * 37 % 251) as u8).collect();
        for &format in PixelFormat::all() {
            let f = Frame::packed(7, 3, format, &data)
                .unwrap()
                .with_color(ColorSpec::BT709_FULL);
            let mut full = [0f32; 21];
            let mut part = vec![0f32; 21];
            for y in 0..3 {
                // The reference: the pixel-by-pixel path.
                visit_row(&f, y, 0, 7, |i, px| {
                    for c in 0..3 {
                        full[c * 7 + i] = px[c];
                    }
                });
                for x0 in 0..7 {
                    for x1 in x0 + 1..=7 {
                        let n = x1 - x0;
                        read_row_planar(&f, y, x0, x1, &mut part);
                        for c in 0..3 {
                            assert_eq!(
                                part[c * n..(c + 1) * n],
                                full[c * 7 + x0..c * 7 + x1],
                                "{format} y {y} {x0}..{x1} channel {c}"
                            );
                        }
                    }
                }
            }
        }
    }
}
