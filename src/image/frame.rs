//! Borrowed views of the pixels handed to the encoder: camera-style frames and normalized tensors.
//!
//! Nothing here copies pixels: a [`Frame`] borrows the caller's buffer or planes (with their row
//! strides) and the preprocessing reads only the rows and columns the resizes and the selected
//! patches need. YUV frames are converted to RGB pixel by pixel as they are read (see
//! `docs/formats.md`), with the [`ColorSpec`] the frame carries.

use crate::error::{Error, Result};

/// Layout of the pixels of a frame: packed 8-bit RGB/gray, packed 4:2:2 YUV, or planar and
/// semi-planar 4:2:0 YUV.
///
/// Chroma of the subsampled formats covers `ceil(width / 2)` columns (and `ceil(height / 2)` rows
/// for 4:2:0), so frames of odd size are accepted: the last column (row) uses the chroma of its pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PixelFormat {
    /// 3 bytes per pixel: red, green, blue.
    Rgb8,
    /// 3 bytes per pixel: blue, green, red (OpenCV's default).
    Bgr8,
    /// 4 bytes per pixel: red, green, blue, alpha (alpha ignored).
    Rgba8,
    /// 4 bytes per pixel: blue, green, red, alpha (alpha ignored).
    Bgra8,
    /// 1 byte per pixel: luminance, replicated to the three channels.
    Gray8,
    /// Packed 4:2:2 Y'CbCr, 4 bytes per 2 pixels `Y0 Cb Y1 Cr` (V4L2 `YUYV`, FourCC `YUY2`).
    Yuyv,
    /// Packed 4:2:2 Y'CbCr, 4 bytes per 2 pixels `Cb Y0 Cr Y1` (FourCC `UYVY`, ROS 2 `yuv422`).
    Uyvy,
    /// 4:2:0 Y'CbCr, two planes: Y (1 byte per pixel), then interleaved `Cb Cr` pairs at half width
    /// and half height.
    Nv12,
    /// 4:2:0 Y'CbCr, two planes: Y, then interleaved `Cr Cb` pairs (Android's camera default).
    Nv21,
    /// 4:2:0 Y'CbCr, three planes: Y, Cb, Cr (the last two at half width and half height; also
    /// called YUV420P, IYUV).
    I420,
}

/// Whether the chroma of a format is subsampled, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// One plane, `bytes_per_pixel` bytes per pixel, RGB byte offsets.
    Packed { bpp: usize, rgb: [usize; 3] },
    /// One plane of 1-byte luminance.
    Gray,
    /// One plane, 4 bytes per pixel pair; offsets of Y0, Cb, Y1, Cr inside a pair.
    Packed422 {
        y0: usize,
        cb: usize,
        y1: usize,
        cr: usize,
    },
    /// Y plane, then one plane of interleaved chroma; offsets of Cb and Cr inside a pair.
    SemiPlanar420 { cb: usize, cr: usize },
    /// Y, Cb and Cr planes.
    Planar420,
}

/// Every format, in the order of the C API's values (`ps3rt_pixel_format` 1, 2, ...).
pub(crate) const ALL_FORMATS: [PixelFormat; 10] = [
    PixelFormat::Rgb8,
    PixelFormat::Bgr8,
    PixelFormat::Rgba8,
    PixelFormat::Bgra8,
    PixelFormat::Gray8,
    PixelFormat::Yuyv,
    PixelFormat::Uyvy,
    PixelFormat::Nv12,
    PixelFormat::Nv21,
    PixelFormat::I420,
];

impl PixelFormat {
    /// Every pixel format this version knows.
    pub fn all() -> &'static [PixelFormat] {
        &ALL_FORMATS
    }

    /// Bytes per pixel of the first plane (for YUYV/UYVY 2: 4 bytes per pair of pixels; for the
    /// 4:2:0 formats 1, their luminance plane).
    pub const fn bytes_per_pixel(self) -> usize {
        match self {
            PixelFormat::Rgb8 | PixelFormat::Bgr8 => 3,
            PixelFormat::Rgba8 | PixelFormat::Bgra8 => 4,
            PixelFormat::Yuyv | PixelFormat::Uyvy => 2,
            PixelFormat::Gray8 | PixelFormat::Nv12 | PixelFormat::Nv21 | PixelFormat::I420 => 1,
        }
    }

    pub(crate) const fn layout(self) -> Layout {
        match self {
            PixelFormat::Rgb8 => Layout::Packed {
                bpp: 3,
                rgb: [0, 1, 2],
            },
            PixelFormat::Bgr8 => Layout::Packed {
                bpp: 3,
                rgb: [2, 1, 0],
            },
            PixelFormat::Rgba8 => Layout::Packed {
                bpp: 4,
                rgb: [0, 1, 2],
            },
            PixelFormat::Bgra8 => Layout::Packed {
                bpp: 4,
                rgb: [2, 1, 0],
            },
            PixelFormat::Gray8 => Layout::Gray,
            PixelFormat::Yuyv => Layout::Packed422 {
                y0: 0,
                cb: 1,
                y1: 2,
                cr: 3,
            },
            PixelFormat::Uyvy => Layout::Packed422 {
                y0: 1,
                cb: 0,
                y1: 3,
                cr: 2,
            },
            PixelFormat::Nv12 => Layout::SemiPlanar420 { cb: 0, cr: 1 },
            PixelFormat::Nv21 => Layout::SemiPlanar420 { cb: 1, cr: 0 },
            PixelFormat::I420 => Layout::Planar420,
        }
    }

    /// Number of planes (1 for the packed formats, 2 for NV12/NV21, 3 for I420).
    pub const fn plane_count(self) -> usize {
        match self.layout() {
            Layout::SemiPlanar420 { .. } => 2,
            Layout::Planar420 => 3,
            _ => 1,
        }
    }

    /// Whether the pixels are Y'CbCr (converted to RGB with the frame's [`ColorSpec`]).
    pub const fn is_yuv(self) -> bool {
        matches!(
            self.layout(),
            Layout::Packed422 { .. } | Layout::SemiPlanar420 { .. } | Layout::Planar420
        )
    }

    /// Bytes of one row of plane `plane` of a frame `width` pixels wide (the smallest stride).
    pub const fn plane_row_bytes(self, plane: usize, width: u32) -> usize {
        let w = width as usize;
        let half = w.div_ceil(2);
        match (self.layout(), plane) {
            (Layout::Packed { bpp, .. }, _) => w * bpp,
            (Layout::Gray, _) => w,
            (Layout::Packed422 { .. }, _) => 4 * half,
            (Layout::SemiPlanar420 { .. }, 0) | (Layout::Planar420, 0) => w,
            (Layout::SemiPlanar420 { .. }, _) => 2 * half,
            (Layout::Planar420, _) => half,
        }
    }

    /// Rows of plane `plane` of a frame `height` rows high.
    pub const fn plane_rows(self, plane: usize, height: u32) -> usize {
        match (self.layout(), plane) {
            (Layout::SemiPlanar420 { .. } | Layout::Planar420, p) if p > 0 => {
                (height as usize).div_ceil(2)
            }
            _ => height as usize,
        }
    }

    /// Row strides of every plane of a frame held in one buffer whose first plane has row stride
    /// `stride` ([`Frame::new`]'s layout): NV12/NV21 chroma `2 * ceil(stride / 2)`, I420 chroma
    /// `ceil(stride / 2)`; entries of planes the format does not have repeat `stride`.
    pub const fn contiguous_strides(self, stride: usize) -> [usize; MAX_PLANES] {
        match self.layout() {
            Layout::SemiPlanar420 { .. } => {
                let c = stride.div_ceil(2) * 2;
                [stride, c, c]
            }
            Layout::Planar420 => {
                let c = stride.div_ceil(2);
                [stride, c, c]
            }
            _ => [stride; MAX_PLANES],
        }
    }

    /// Lower-case name used by the CLI and in messages.
    pub const fn name(self) -> &'static str {
        match self {
            PixelFormat::Rgb8 => "rgb8",
            PixelFormat::Bgr8 => "bgr8",
            PixelFormat::Rgba8 => "rgba8",
            PixelFormat::Bgra8 => "bgra8",
            PixelFormat::Gray8 => "gray8",
            PixelFormat::Yuyv => "yuyv",
            PixelFormat::Uyvy => "uyvy",
            PixelFormat::Nv12 => "nv12",
            PixelFormat::Nv21 => "nv21",
            PixelFormat::I420 => "i420",
        }
    }

    /// The format called `name`: a [`name`](Self::name) or a common alias (`yuy2`, `yuv422_yuy2`,
    /// `yuv422` (ROS 2's UYVY), `mono8`, `gray`, `yuv420p`, `iyuv`), case-insensitive.
    pub fn from_name(name: &str) -> Option<PixelFormat> {
        let n = name.to_ascii_lowercase();
        if let Some(f) = ALL_FORMATS.iter().find(|f| f.name() == n) {
            return Some(*f);
        }
        Some(match n.as_str() {
            "rgb" | "rgb24" => PixelFormat::Rgb8,
            "bgr" | "bgr24" => PixelFormat::Bgr8,
            "rgba" => PixelFormat::Rgba8,
            "bgra" => PixelFormat::Bgra8,
            "gray" | "grey" | "mono8" | "y8" | "gray8" => PixelFormat::Gray8,
            "yuy2" | "yuv422_yuy2" | "yuyv422" => PixelFormat::Yuyv,
            "yuv422" | "uyvy422" => PixelFormat::Uyvy,
            "yuv420p" | "iyuv" | "yuv420" => PixelFormat::I420,
            _ => return None,
        })
    }
}

impl std::fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for PixelFormat {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        PixelFormat::from_name(s).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "unknown pixel format {s:?}; expected one of {}",
                ALL_FORMATS.map(|f| f.name()).join(", ")
            ))
        })
    }
}

/// The Y'CbCr -> R'G'B' matrix of a YUV frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum YuvMatrix {
    /// ITU-R BT.601 (Kr = 0.299, Kb = 0.114): SD video, JPEG, most webcams (UVC), V4L2's default.
    #[default]
    Bt601,
    /// ITU-R BT.709 (Kr = 0.2126, Kb = 0.0722): HD video, many HD and automotive cameras.
    Bt709,
}

/// The quantization range of a YUV frame's 8-bit samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum YuvRange {
    /// "Studio" / "TV" range: Y in 16..=235, Cb and Cr in 16..=240 (V4L2's default for YUV).
    #[default]
    Limited,
    /// "PC" / "JPEG" range: Y, Cb and Cr in 0..=255.
    Full,
}

/// How a YUV frame's samples map to RGB. The default is BT.601, limited range: what V4L2 assumes for
/// YUV formats when the driver reports no encoding, what UVC webcams deliver, and what OpenCV's
/// `cvtColor` and libyuv compute. RGB and gray frames ignore it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ColorSpec {
    /// The matrix.
    pub matrix: YuvMatrix,
    /// The range.
    pub range: YuvRange,
}

impl ColorSpec {
    /// BT.601, limited range (the default).
    pub const BT601_LIMITED: ColorSpec = ColorSpec {
        matrix: YuvMatrix::Bt601,
        range: YuvRange::Limited,
    };
    /// BT.601, full range (JPEG/JFIF).
    pub const BT601_FULL: ColorSpec = ColorSpec {
        matrix: YuvMatrix::Bt601,
        range: YuvRange::Full,
    };
    /// BT.709, limited range (HD video).
    pub const BT709_LIMITED: ColorSpec = ColorSpec {
        matrix: YuvMatrix::Bt709,
        range: YuvRange::Limited,
    };
    /// BT.709, full range.
    pub const BT709_FULL: ColorSpec = ColorSpec {
        matrix: YuvMatrix::Bt709,
        range: YuvRange::Full,
    };

    /// Parse `"bt601"`, `"bt709"`, optionally followed by `-limited`/`-full` (or `-tv`/`-pc`;
    /// default limited), case-insensitive.
    pub fn from_name(name: &str) -> Option<ColorSpec> {
        let n = name.to_ascii_lowercase();
        let (m, r) = n
            .split_once(['-', '/', ':'])
            .unwrap_or((n.as_str(), "limited"));
        let matrix = match m {
            "bt601" | "601" | "smpte170m" => YuvMatrix::Bt601,
            "bt709" | "709" => YuvMatrix::Bt709,
            _ => return None,
        };
        let range = match r {
            "limited" | "tv" | "studio" => YuvRange::Limited,
            "full" | "pc" | "jpeg" => YuvRange::Full,
            _ => return None,
        };
        Some(ColorSpec { matrix, range })
    }

    /// `"bt601-limited"` and so on.
    pub fn name(&self) -> &'static str {
        match (self.matrix, self.range) {
            (YuvMatrix::Bt601, YuvRange::Limited) => "bt601-limited",
            (YuvMatrix::Bt601, YuvRange::Full) => "bt601-full",
            (YuvMatrix::Bt709, YuvRange::Limited) => "bt709-limited",
            (YuvMatrix::Bt709, YuvRange::Full) => "bt709-full",
        }
    }
}

impl std::fmt::Display for ColorSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Largest frame side accepted (a 16K frame is 15360 px wide); larger sizes are rejected up front so
/// size arithmetic can never overflow.
pub const MAX_FRAME_SIDE: u32 = 32_768;

/// Most planes a frame has (I420: Y, Cb, Cr).
pub const MAX_PLANES: usize = 3;

/// A borrowed 8-bit frame: `height` rows of `width` pixels in one to three planes; row `y` of plane
/// `p` starts at byte `y * stride[p]` of that plane.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    width: u32,
    height: u32,
    format: PixelFormat,
    planes: [&'a [u8]; MAX_PLANES],
    strides: [usize; MAX_PLANES],
    color: ColorSpec,
}

const PLANE_NAMES: [[&str; MAX_PLANES]; 3] = [
    ["pixels", "", ""],
    ["Y plane", "chroma plane", ""],
    ["Y plane", "Cb plane", "Cr plane"],
];

fn check_size(width: u32, height: u32) -> Result<()> {
    if width == 0 || height == 0 {
        return Err(Error::InvalidFrame(format!(
            "size {width}x{height} is empty"
        )));
    }
    if width > MAX_FRAME_SIDE || height > MAX_FRAME_SIDE {
        return Err(Error::InvalidFrame(format!(
            "size {width}x{height} exceeds the largest supported side {MAX_FRAME_SIDE}"
        )));
    }
    Ok(())
}

/// Bytes plane `p` needs with `stride`: `stride * (rows - 1) + row_bytes`; checks the stride.
fn plane_len(
    format: PixelFormat,
    p: usize,
    width: u32,
    height: u32,
    stride: usize,
) -> Result<usize> {
    let row_bytes = format.plane_row_bytes(p, width);
    let rows = format.plane_rows(p, height);
    let what = PLANE_NAMES[format.plane_count() - 1][p];
    if stride < row_bytes {
        return Err(Error::InvalidFrame(if format.plane_count() == 1 {
            format!(
                "stride {stride} is smaller than one {format} row of {width} pixels ({row_bytes} bytes)"
            )
        } else {
            format!(
                "{what} stride {stride} is smaller than one {format} {what} row of a {width} pixel wide frame ({row_bytes} bytes)"
            )
        }));
    }
    stride
        .checked_mul(rows - 1)
        .and_then(|n| n.checked_add(row_bytes))
        .ok_or_else(|| {
            Error::InvalidFrame(format!(
                "{}stride {stride} x {rows} rows overflows",
                if format.plane_count() == 1 {
                    String::new()
                } else {
                    format!("{what} ")
                }
            ))
        })
}

impl<'a> Frame<'a> {
    /// Describe a frame held in one buffer; checks that the sizes are usable and that `data` holds
    /// every row of every plane.
    ///
    /// `stride` is the distance in bytes between the starts of two rows of the first plane (at least
    /// [`PixelFormat::plane_row_bytes`]); the last row needs only its own bytes. The planes of the
    /// 4:2:0 formats follow each other in `data`: NV12/NV21's chroma plane starts at
    /// `stride * height` with the same stride (rounded up to even); I420's Cb plane at
    /// `stride * height` and its Cr plane after `ceil(height / 2)` Cb rows, both with stride
    /// `ceil(stride / 2)` (the V4L2 and FFmpeg layout). Use [`Frame::from_planes`] for planes
    /// elsewhere or with other strides.
    /// ([`PixelFormat::contiguous_strides`]: a packed odd-width NV12 frame's chroma rows are one
    /// byte longer than its Y rows, as FFmpeg lays them out.)
    pub fn new(
        width: u32,
        height: u32,
        format: PixelFormat,
        stride: usize,
        data: &'a [u8],
    ) -> Result<Self> {
        check_size(width, height)?;
        let n = format.plane_count();
        let strides = format.contiguous_strides(stride);
        let overflow =
            || Error::InvalidFrame(format!("stride {stride} x height {height} overflows"));
        // Planes follow each other; all but the last occupy whole rows (stride x rows).
        let (mut offsets, mut lens) = ([0usize; MAX_PLANES], [0usize; MAX_PLANES]);
        let mut needed = 0usize;
        for p in 0..n {
            lens[p] = plane_len(format, p, width, height, strides[p])?;
            offsets[p] = needed;
            let span = if p + 1 < n {
                strides[p]
                    .checked_mul(format.plane_rows(p, height))
                    .ok_or_else(overflow)?
            } else {
                lens[p]
            };
            needed = needed.checked_add(span).ok_or_else(overflow)?;
        }
        if data.len() < needed {
            return Err(Error::InvalidFrame(format!(
                "buffer holds {} bytes, a {width}x{height} {format} frame with stride {stride} needs {needed}",
                data.len()
            )));
        }
        let mut planes: [&[u8]; MAX_PLANES] = [&[]; MAX_PLANES];
        for p in 0..n {
            planes[p] = &data[offsets[p]..offsets[p] + lens[p]];
        }
        Ok(Frame {
            width,
            height,
            format,
            planes,
            strides,
            color: ColorSpec::default(),
        })
    }

    /// A frame whose rows are packed back to back (stride = [`PixelFormat::plane_row_bytes`] of the
    /// first plane), its planes one after the other as [`Frame::new`] describes.
    pub fn packed(width: u32, height: u32, format: PixelFormat, data: &'a [u8]) -> Result<Self> {
        Self::new(
            width,
            height,
            format,
            format.plane_row_bytes(0, width),
            data,
        )
    }

    /// Describe a frame whose planes are separate buffers, each with its own stride: `planes[p]` and
    /// `strides[p]` for each of the format's [`PixelFormat::plane_count`] planes (Y, then chroma).
    /// Each plane must hold `stride * (rows - 1) + row_bytes` bytes.
    pub fn from_planes(
        width: u32,
        height: u32,
        format: PixelFormat,
        planes: &[&'a [u8]],
        strides: &[usize],
    ) -> Result<Self> {
        check_size(width, height)?;
        let n = format.plane_count();
        if planes.len() != n || strides.len() != n {
            return Err(Error::InvalidFrame(format!(
                "a {format} frame has {n} plane{}, got {} plane{} and {} stride{}",
                if n == 1 { "" } else { "s" },
                planes.len(),
                if planes.len() == 1 { "" } else { "s" },
                strides.len(),
                if strides.len() == 1 { "" } else { "s" },
            )));
        }
        let mut out: [&[u8]; MAX_PLANES] = [&[]; MAX_PLANES];
        let mut st = [0usize; MAX_PLANES];
        let mut lens = [0usize; MAX_PLANES];
        // Every stride is checked before any plane's length, so a bad stride is named as such even
        // when the caller (e.g. the C ABI, which makes no slice from a description it finds
        // invalid) passes empty planes.
        for p in 0..n {
            lens[p] = plane_len(format, p, width, height, strides[p])?;
        }
        for p in 0..n {
            let len = lens[p];
            if planes[p].len() < len {
                let what = PLANE_NAMES[n - 1][p];
                return Err(Error::InvalidFrame(format!(
                    "{what} holds {} bytes, a {width}x{height} {format} frame with {what} stride {} needs {len}",
                    planes[p].len(),
                    strides[p]
                )));
            }
            out[p] = &planes[p][..len];
            st[p] = strides[p];
        }
        Ok(Frame {
            width,
            height,
            format,
            planes: out,
            strides: st,
            color: ColorSpec::default(),
        })
    }

    /// The same frame with YUV samples converted to RGB by `color` (ignored by RGB and gray frames).
    #[must_use]
    pub fn with_color(mut self, color: ColorSpec) -> Self {
        self.color = color;
        self
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Pixel format.
    pub fn format(&self) -> PixelFormat {
        self.format
    }

    /// Row stride in bytes of the first plane.
    pub fn stride(&self) -> usize {
        self.strides[0]
    }

    /// Row stride in bytes of plane `plane` (0 for planes the format does not have).
    pub fn plane_stride(&self, plane: usize) -> usize {
        if plane < self.format.plane_count() {
            self.strides[plane]
        } else {
            0
        }
    }

    /// The bytes of plane `plane` this frame reads (empty for planes the format does not have).
    pub fn plane(&self, plane: usize) -> &'a [u8] {
        if plane < self.format.plane_count() {
            self.planes[plane]
        } else {
            &[]
        }
    }

    /// How YUV samples are converted to RGB.
    pub fn color(&self) -> ColorSpec {
        self.color
    }

    /// Row `y` of plane `p` (exactly its row bytes). Callers pass rows inside the plane: every
    /// constructor checked that each plane holds all its rows.
    #[inline]
    pub(crate) fn plane_row(&self, p: usize, y: usize) -> &'a [u8] {
        let start = y * self.strides[p];
        &self.planes[p][start..start + self.format.plane_row_bytes(p, self.width)]
    }

    /// The bytes of row `y` of the first plane.
    #[cfg(test)]
    pub(crate) fn row(&self, y: usize) -> &'a [u8] {
        self.plane_row(0, y)
    }
}

/// A borrowed, already normalized pixel tensor `[3, size, size]` (channel-major, f32), taken as PS3's
/// `pixel_values` at the model's input size: no squash, no normalization is applied to it.
#[derive(Debug, Clone, Copy)]
pub struct TensorImage<'a> {
    size: usize,
    data: &'a [f32],
}

impl<'a> TensorImage<'a> {
    /// Describe a `[3, size, size]` tensor; every value must be finite.
    pub fn new(size: usize, data: &'a [f32]) -> Result<Self> {
        if size == 0 || size > MAX_FRAME_SIDE as usize {
            return Err(Error::InvalidFrame(format!(
                "tensor side {size} outside 1..={MAX_FRAME_SIDE}"
            )));
        }
        let needed = 3 * size * size;
        if data.len() != needed {
            return Err(Error::InvalidFrame(format!(
                "tensor holds {} values, [3, {size}, {size}] needs {needed}",
                data.len()
            )));
        }
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            let plane = size * size;
            return Err(Error::InvalidFrame(format!(
                "tensor value at [{}, {}, {}] is {} (pixels must be finite)",
                i / plane,
                (i % plane) / size,
                i % size,
                data[i]
            )));
        }
        Ok(TensorImage { size, data })
    }

    /// Side length.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Channel `c`, row `y` (`size` values).
    pub(crate) fn row(&self, c: usize, y: usize) -> &'a [f32] {
        let start = (c * self.size + y) * self.size;
        &self.data[start..start + self.size]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_check_sizes_strides_and_buffers() {
        let data = vec![0u8; 10 * 3 * 4];
        assert!(Frame::packed(10, 4, PixelFormat::Rgb8, &data).is_ok());
        // padded stride: the last row needs no padding
        assert!(Frame::new(9, 4, PixelFormat::Rgb8, 30, &data[..30 * 3 + 27]).is_ok());
        let msg = |r: Result<Frame<'_>>| r.unwrap_err().to_string();
        assert!(msg(Frame::packed(0, 4, PixelFormat::Rgb8, &data)).contains("empty"));
        assert!(
            msg(Frame::new(10, 4, PixelFormat::Rgb8, 29, &data)).contains("stride 29 is smaller")
        );
        assert!(msg(Frame::packed(10, 5, PixelFormat::Rgb8, &data)).contains("needs 150"));
        assert!(
            msg(Frame::packed(40_000, 1, PixelFormat::Gray8, &data)).contains("largest supported")
        );
        assert!(
            msg(Frame::new(
                10,
                MAX_FRAME_SIDE,
                PixelFormat::Rgba8,
                usize::MAX / 2,
                &data
            ))
            .contains("overflows")
        );
        let f = Frame::new(2, 2, PixelFormat::Bgra8, 12, &data).unwrap();
        assert_eq!(f.row(1).len(), 8);
    }

    #[test]
    fn yuv_frames_lay_out_their_planes() {
        // 5x3 NV12, stride 8: Y 3 rows (2 * 8 + 5), UV from 24: 2 rows of 6 bytes (8 + 6).
        let data: Vec<u8> = (0..=255).collect();
        let f = Frame::new(5, 3, PixelFormat::Nv12, 8, &data[..24 + 14]).unwrap();
        assert_eq!(f.plane(0).len(), 21);
        assert_eq!(f.plane(1)[0], 24);
        assert_eq!(f.plane(1).len(), 14);
        assert_eq!(f.plane_row(1, 1), &data[32..38]);
        let e = Frame::new(5, 3, PixelFormat::Nv12, 8, &data[..37])
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs 38"), "{e}");
        // I420 5x3 packed: Y 15, Cb 3x2 at 15 (stride 3), Cr at 21.
        let f = Frame::packed(5, 3, PixelFormat::I420, &data[..27]).unwrap();
        assert_eq!(
            (f.plane_stride(1), f.plane(1)[0], f.plane(2)[0]),
            (3, 15, 21)
        );
        assert!(Frame::packed(5, 3, PixelFormat::I420, &data[..26]).is_err());
        // YUYV: an odd width still takes whole pairs.
        assert_eq!(PixelFormat::Yuyv.plane_row_bytes(0, 5), 12);
        let e = Frame::new(5, 2, PixelFormat::Yuyv, 10, &data)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("stride 10 is smaller than one yuyv row of 5 pixels (12 bytes)"),
            "{e}"
        );
        // Separate planes.
        let (y, uv) = (vec![0u8; 40], vec![0u8; 9]);
        let e = Frame::from_planes(5, 3, PixelFormat::Nv21, &[&y, &uv], &[8, 6])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("chroma plane holds 9 bytes") && e.contains("needs 12"),
            "{e}"
        );
        let e = Frame::from_planes(5, 3, PixelFormat::Nv21, &[&y], &[8])
            .unwrap_err()
            .to_string();
        assert!(e.contains("has 2 planes, got 1 plane"), "{e}");
        let e = Frame::from_planes(5, 3, PixelFormat::I420, &[&y, &uv, &uv], &[8, 2, 3])
            .unwrap_err()
            .to_string();
        assert!(e.contains("Cb plane stride 2 is smaller"), "{e}");
        let f = Frame::from_planes(5, 3, PixelFormat::I420, &[&y, &uv, &uv], &[8, 3, 3]).unwrap();
        assert_eq!(f.color(), ColorSpec::BT601_LIMITED);
        assert_eq!(
            f.with_color(ColorSpec::BT709_FULL).color().name(),
            "bt709-full"
        );
    }

    #[test]
    fn names_parse() {
        for f in PixelFormat::all() {
            assert_eq!(PixelFormat::from_name(f.name()), Some(*f));
        }
        assert_eq!(PixelFormat::from_name("YUY2"), Some(PixelFormat::Yuyv));
        assert_eq!(PixelFormat::from_name("yuv422"), Some(PixelFormat::Uyvy));
        assert!("mjpeg".parse::<PixelFormat>().is_err());
        assert_eq!(
            ColorSpec::from_name("BT709"),
            Some(ColorSpec::BT709_LIMITED)
        );
        assert_eq!(
            ColorSpec::from_name("bt601-full"),
            Some(ColorSpec::BT601_FULL)
        );
        assert_eq!(ColorSpec::from_name("bt2020"), None);
    }

    #[test]
    fn tensors_must_be_complete_and_finite() {
        let v = vec![0.5f32; 3 * 4 * 4];
        assert!(TensorImage::new(4, &v).is_ok());
        assert!(
            TensorImage::new(5, &v)
                .unwrap_err()
                .to_string()
                .contains("needs 75")
        );
        let mut bad = v.clone();
        bad[16 + 4 + 2] = f32::NAN;
        let e = TensorImage::new(4, &bad).unwrap_err().to_string();
        assert!(e.contains("[1, 1, 2]") && e.contains("NaN"), "{e}");
        bad[22] = f32::INFINITY;
        assert!(TensorImage::new(4, &bad).is_err());
    }
}
