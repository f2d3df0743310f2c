//! Borrowed views of the pixels handed to the encoder: camera-style frames and normalized tensors.
//!
//! Nothing here copies pixels: a [`Frame`] borrows the caller's buffer (with its row stride) and the
//! preprocessing reads only the rows and columns the resizes and the selected patches need.

use crate::error::{Error, Result};

/// Layout of one pixel of an 8-bit packed frame.
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
}

impl PixelFormat {
    /// Bytes per pixel.
    pub const fn bytes_per_pixel(self) -> usize {
        match self {
            PixelFormat::Rgb8 | PixelFormat::Bgr8 => 3,
            PixelFormat::Rgba8 | PixelFormat::Bgra8 => 4,
            PixelFormat::Gray8 => 1,
        }
    }

    /// Byte offsets of red, green and blue inside one pixel.
    pub(crate) const fn rgb_offsets(self) -> [usize; 3] {
        match self {
            PixelFormat::Rgb8 | PixelFormat::Rgba8 => [0, 1, 2],
            PixelFormat::Bgr8 | PixelFormat::Bgra8 => [2, 1, 0],
            PixelFormat::Gray8 => [0, 0, 0],
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
        }
    }
}

impl std::fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Largest frame side accepted (a 16K frame is 15360 px wide); larger sizes are rejected up front so
/// size arithmetic can never overflow.
pub const MAX_FRAME_SIDE: u32 = 32_768;

/// A borrowed 8-bit frame: `height` rows of `width` pixels, row `y` starting at byte `y * stride`.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    width: u32,
    height: u32,
    format: PixelFormat,
    stride: usize,
    data: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Describe a frame; checks that the sizes are usable and that `data` holds every row.
    ///
    /// `stride` is the distance in bytes between the starts of two rows (at least
    /// `width * bytes_per_pixel`); the last row needs only `width * bytes_per_pixel` bytes.
    pub fn new(
        width: u32,
        height: u32,
        format: PixelFormat,
        stride: usize,
        data: &'a [u8],
    ) -> Result<Self> {
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
        let row_bytes = width as usize * format.bytes_per_pixel();
        if stride < row_bytes {
            return Err(Error::InvalidFrame(format!(
                "stride {stride} is smaller than one {format} row of {width} pixels ({row_bytes} bytes)"
            )));
        }
        let needed = stride
            .checked_mul(height as usize - 1)
            .and_then(|n| n.checked_add(row_bytes))
            .ok_or_else(|| {
                Error::InvalidFrame(format!("stride {stride} x height {height} overflows"))
            })?;
        if data.len() < needed {
            return Err(Error::InvalidFrame(format!(
                "buffer holds {} bytes, a {width}x{height} {format} frame with stride {stride} needs {needed}",
                data.len()
            )));
        }
        Ok(Frame {
            width,
            height,
            format,
            stride,
            data,
        })
    }

    /// A frame whose rows are packed back to back (stride = width * bytes per pixel).
    pub fn packed(width: u32, height: u32, format: PixelFormat, data: &'a [u8]) -> Result<Self> {
        Self::new(
            width,
            height,
            format,
            width as usize * format.bytes_per_pixel(),
            data,
        )
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

    /// Row stride in bytes.
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// The bytes of row `y` (exactly `width * bytes_per_pixel` of them).
    pub(crate) fn row(&self, y: usize) -> &'a [u8] {
        let start = y * self.stride;
        &self.data[start..start + self.width as usize * self.format.bytes_per_pixel()]
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
