//! A synthetic camera: the project's road scene, scrolling sideways, in any pixel format.

use super::{CaptureError, CaptureErrorKind, CapturedFrame, FrameSource, Pacer, SourceFormat};
use crate::error::{Error, Result};
use crate::image::{ColorSpec, PixelFormat, YuvMatrix, YuvRange};

/// Encode packed RGB8 pixels (`width * height * 3` bytes) as `format` into `out`, laid out as
/// [`Frame::new`](crate::Frame::new) describes with first-plane stride `stride` (0: packed rows);
/// `out` must hold [`raw_frame_len`](super::raw_frame_len) bytes. Padding bytes are left as they are.
///
/// Y'CbCr uses `color` (BT.601/BT.709, limited/full range: `Y = Kr R + Kg G + Kb B`,
/// `Cb = (B - Y) / (2 (1 - Kb))`, `Cr = (R - Y) / (2 (1 - Kr))`, then scaled to the range); chroma of
/// 4:2:2 and 4:2:0 is computed from the mean RGB of the 2 or 2x2 pixels it covers (1 or 2 at odd
/// edges). Gray is the BT.601 luma. For making test frames and synthetic sources.
#[allow(clippy::too_many_arguments)]
pub fn rgb8_to_format(
    rgb: &[u8],
    width: u32,
    height: u32,
    format: PixelFormat,
    color: ColorSpec,
    stride: usize,
    out: &mut [u8],
) -> Result<()> {
    let (w, h) = (width as usize, height as usize);
    if rgb.len() < w * h * 3 {
        return Err(Error::InvalidFrame(format!(
            "RGB buffer holds {} bytes, {width}x{height} needs {}",
            rgb.len(),
            w * h * 3
        )));
    }
    encode_with(width, height, format, color, stride, out, |x, y| {
        let i = 3 * (y * w + x);
        [rgb[i], rgb[i + 1], rgb[i + 2]]
    })
}

/// Like [`rgb8_to_format`], reading pixel `(x, y)` from `px`.
fn encode_with(
    width: u32,
    height: u32,
    format: PixelFormat,
    color: ColorSpec,
    stride: usize,
    out: &mut [u8],
    px: impl Fn(usize, usize) -> [u8; 3],
) -> Result<()> {
    let stride = if stride == 0 {
        format.plane_row_bytes(0, width)
    } else {
        stride
    };
    let len = super::raw_frame_len(width, height, format, stride)?;
    if stride < format.plane_row_bytes(0, width) || out.len() < len {
        return Err(Error::InvalidFrame(format!(
            "output of {} bytes with stride {stride} cannot hold a {width}x{height} {format} frame ({len} bytes)",
            out.len()
        )));
    }
    let (w, h) = (width as usize, height as usize);
    let (kr, kb) = match color.matrix {
        YuvMatrix::Bt601 => (0.299f64, 0.114f64),
        YuvMatrix::Bt709 => (0.2126, 0.0722),
    };
    let (sy, sc, y0) = match color.range {
        YuvRange::Limited => (219.0 / 255.0, 224.0 / 255.0, 16.0),
        YuvRange::Full => (1.0, 1.0, 0.0),
    };
    let q = |v: f64| v.round().clamp(0.0, 255.0) as u8;
    let luma = |p: [u8; 3]| {
        kr * f64::from(p[0]) + (1.0 - kr - kb) * f64::from(p[1]) + kb * f64::from(p[2])
    };
    let y_of = |x: usize, y: usize| q(y0 + sy * luma(px(x, y)));
    // Mean chroma over the block (x..x+bw, y..y+bh) clipped to the frame.
    let chroma = |x: usize, y: usize, bw: usize, bh: usize| {
        let (mut s, mut n) = ([0f64; 3], 0.0);
        for yy in y..(y + bh).min(h) {
            for xx in x..(x + bw).min(w) {
                let p = px(xx, yy);
                for c in 0..3 {
                    s[c] += f64::from(p[c]);
                }
                n += 1.0;
            }
        }
        let m = s.map(|v| v / n);
        let yl = kr * m[0] + (1.0 - kr - kb) * m[1] + kb * m[2];
        let cb = (m[2] - yl) / (2.0 * (1.0 - kb));
        let cr = (m[0] - yl) / (2.0 * (1.0 - kr));
        (q(128.0 + sc * cb), q(128.0 + sc * cr))
    };
    let cw = w.div_ceil(2);
    match format {
        PixelFormat::Rgb8 | PixelFormat::Bgr8 | PixelFormat::Rgba8 | PixelFormat::Bgra8 => {
            let bpp = format.bytes_per_pixel();
            let bgr = matches!(format, PixelFormat::Bgr8 | PixelFormat::Bgra8);
            for y in 0..h {
                let row = &mut out[y * stride..y * stride + w * bpp];
                for (x, d) in row.chunks_exact_mut(bpp).enumerate() {
                    let p = px(x, y);
                    let p = if bgr { [p[2], p[1], p[0]] } else { p };
                    d[..3].copy_from_slice(&p);
                    if bpp == 4 {
                        d[3] = 255;
                    }
                }
            }
        }
        PixelFormat::Gray8 => {
            for y in 0..h {
                for x in 0..w {
                    out[y * stride + x] = q(luma(px(x, y)));
                }
            }
        }
        PixelFormat::Yuyv | PixelFormat::Uyvy => {
            let (oy0, ocb, oy1, ocr) = if format == PixelFormat::Yuyv {
                (0, 1, 2, 3)
            } else {
                (1, 0, 3, 2)
            };
            for y in 0..h {
                for c in 0..cw {
                    let m = &mut out[y * stride + 4 * c..y * stride + 4 * c + 4];
                    let (cb, cr) = chroma(2 * c, y, 2, 1);
                    m[oy0] = y_of(2 * c, y);
                    // An odd width's last pair repeats its only pixel.
                    m[oy1] = y_of((2 * c + 1).min(w - 1), y);
                    m[ocb] = cb;
                    m[ocr] = cr;
                }
            }
        }
        PixelFormat::Nv12 | PixelFormat::Nv21 | PixelFormat::I420 => {
            for y in 0..h {
                for x in 0..w {
                    out[y * stride + x] = y_of(x, y);
                }
            }
            let base = stride * h;
            let ch = h.div_ceil(2);
            let cs = format.contiguous_strides(stride)[1];
            if format == PixelFormat::I420 {
                for cy in 0..ch {
                    for cx in 0..cw {
                        let (cb, cr) = chroma(2 * cx, 2 * cy, 2, 2);
                        out[base + cy * cs + cx] = cb;
                        out[base + cs * ch + cy * cs + cx] = cr;
                    }
                }
            } else {
                let (ob, or) = if format == PixelFormat::Nv12 {
                    (0, 1)
                } else {
                    (1, 0)
                };
                for cy in 0..ch {
                    for cx in 0..cw {
                        let (cb, cr) = chroma(2 * cx, 2 * cy, 2, 2);
                        out[base + cy * cs + 2 * cx + ob] = cb;
                        out[base + cy * cs + 2 * cx + or] = cr;
                    }
                }
            }
        }
    }
    Ok(())
}

/// The road scene ([`crate::synthetic::road_scene`]) as a camera: every frame the picture scrolls
/// 8 pixels to the left (wrapping around), in the pixel format asked for, optionally paced at a frame
/// rate and limited to a number of frames.
///
/// Frames of even width are made by rotating the rows of one converted frame (a copy per frame, no
/// allocation); odd-width raw frames do not move. MJPEG frames are encoded afresh each frame.
pub struct SyntheticSource {
    width: u32,
    height: u32,
    format: SourceFormat,
    color: ColorSpec,
    /// The scene in RGB8.
    rgb: Vec<u8>,
    /// The scene in `format` (raw formats), packed.
    base: Vec<u8>,
    next: u64,
    limit: Option<u64>,
    pacer: Pacer,
}

impl std::fmt::Debug for SyntheticSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// Pixels the scene scrolls per frame.
const SCROLL: usize = 8;

impl SyntheticSource {
    /// A `width` x `height` road scene in `format`, unpaced and endless.
    pub fn new(width: u32, height: u32, format: SourceFormat) -> Result<Self> {
        Self::with_color(width, height, format, ColorSpec::default())
    }

    /// The same, with YUV samples encoded with `color`.
    pub fn with_color(
        width: u32,
        height: u32,
        format: SourceFormat,
        color: ColorSpec,
    ) -> Result<Self> {
        if width == 0 || height == 0 || width > 16_384 || height > 16_384 {
            return Err(Error::InvalidArgument(format!(
                "synthetic frame size {width}x{height} outside 1..=16384"
            )));
        }
        let rgb = crate::synthetic::road_scene(width, height, 1)
            .image
            .into_raw();
        let mut base = Vec::new();
        if let SourceFormat::Raw(f) = format {
            base.resize(super::raw_frame_len(width, height, f, 0)?, 0);
            rgb8_to_format(&rgb, width, height, f, color, 0, &mut base)?;
        }
        Ok(SyntheticSource {
            width,
            height,
            format,
            color,
            rgb,
            base,
            next: 0,
            limit: None,
            pacer: Pacer::new(None),
        })
    }

    /// Release frames at `fps` frames per second like a camera (`None`: as fast as asked).
    #[must_use]
    pub fn paced(mut self, fps: Option<f64>) -> Self {
        self.pacer = Pacer::new(fps);
        self
    }

    /// End after `frames` frames (`None`: endless).
    #[must_use]
    pub fn limited(mut self, frames: Option<u64>) -> Self {
        self.limit = frames;
        self
    }

    /// The scene in RGB8 scrolled as frame `sequence` shows it (for checks).
    pub fn rgb_frame(&self, sequence: u64, out: &mut Vec<u8>) {
        let (w, h) = (self.width as usize, self.height as usize);
        let shift = self.shift(sequence);
        out.clear();
        out.reserve(w * h * 3);
        for y in 0..h {
            let row = &self.rgb[y * w * 3..(y + 1) * w * 3];
            out.extend_from_slice(&row[shift * 3..]);
            out.extend_from_slice(&row[..shift * 3]);
        }
    }

    fn shift(&self, sequence: u64) -> usize {
        let w = self.width as usize;
        if w % 2 == 1 && self.format != SourceFormat::Mjpeg {
            return 0;
        }
        ((sequence as usize % w) * SCROLL) % w
    }
}

impl FrameSource for SyntheticSource {
    fn describe(&self) -> String {
        format!(
            "synthetic road scene ({} {}x{}{})",
            self.format,
            self.width,
            self.height,
            self.pacer
                .fps()
                .map(|f| format!(" @ {f:.3} fps"))
                .unwrap_or_default()
        )
    }

    fn next_frame(&mut self, frame: &mut CapturedFrame) -> Result<bool, CaptureError> {
        if self.limit.is_some_and(|n| self.next >= n) {
            return Ok(false);
        }
        self.pacer.wait();
        let seq = self.next;
        let shift = self.shift(seq);
        let err =
            |e: Error| CaptureError::new(CaptureErrorKind::InvalidData, "synthetic", e.to_string());
        match self.format {
            SourceFormat::Raw(format) => {
                let (w, h) = (self.width, self.height);
                let data = frame
                    .prepare_raw(w, h, format, 0, self.color)
                    .map_err(err)?;
                // Rotate every row of every plane by the shift, in that plane's units.
                let mut offset = 0;
                for p in 0..format.plane_count() {
                    let row_bytes = format.plane_row_bytes(p, w);
                    let k = row_bytes * shift / w as usize;
                    for _ in 0..format.plane_rows(p, h) {
                        let src = &self.base[offset..offset + row_bytes];
                        let dst = &mut data[offset..offset + row_bytes];
                        dst[..row_bytes - k].copy_from_slice(&src[k..]);
                        dst[row_bytes - k..].copy_from_slice(&src[..k]);
                        offset += row_bytes;
                    }
                }
            }
            SourceFormat::Mjpeg => {
                let mut rgb = Vec::new();
                self.rgb_frame(seq, &mut rgb);
                frame.data.clear();
                ::image::codecs::jpeg::JpegEncoder::new_with_quality(&mut frame.data, 90)
                    .encode(
                        &rgb,
                        self.width,
                        self.height,
                        ::image::ExtendedColorType::Rgb8,
                    )
                    .map_err(|e| {
                        CaptureError::new(CaptureErrorKind::InvalidData, "synthetic", e.to_string())
                    })?;
                frame.width = self.width;
                frame.height = self.height;
                frame.format = SourceFormat::Mjpeg;
                frame.stride = 0;
                frame.color = ColorSpec::BT601_FULL;
            }
        }
        frame.sequence = seq;
        frame.captured_at = std::time::Instant::now();
        self.next += 1;
        Ok(true)
    }
}
