//! The frame descriptor the C side fills to describe its pixels, and its conversion to a [`Frame`]
//! view (no copy).

use crate::image::{ColorSpec, Frame, MAX_FRAME_SIDE, PixelFormat, YuvMatrix, YuvRange};

use super::status::Failure;

/// Number of plane slots in a `ps3rt_frame` (packed formats use the first; planar camera formats
/// use up to this many).
pub const PS3RT_MAX_PLANES: usize = 4;

/// Pixel formats of `ps3rt_frame.format`. 0 is deliberately not a format, so a zero-initialized
/// descriptor is refused with a clear message.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ps3rt_pixel_format {
    /// One plane, 3 bytes per pixel: red, green, blue.
    Rgb8 = 1,
    /// One plane, 3 bytes per pixel: blue, green, red (OpenCV's default).
    Bgr8 = 2,
    /// One plane, 4 bytes per pixel: red, green, blue, alpha (alpha ignored).
    Rgba8 = 3,
    /// One plane, 4 bytes per pixel: blue, green, red, alpha (alpha ignored).
    Bgra8 = 4,
    /// One plane, 1 byte per pixel: luminance, replicated to the three channels.
    Gray8 = 5,
    /// One plane, packed 4:2:2 Y'CbCr, 4 bytes per 2 pixels `Y0 Cb Y1 Cr` (V4L2 YUYV, YUY2); a row
    /// holds `4 * ceil(width / 2)` bytes.
    Yuyv = 6,
    /// One plane, packed 4:2:2 Y'CbCr, 4 bytes per 2 pixels `Cb Y0 Cr Y1` (ROS 2 `yuv422`).
    Uyvy = 7,
    /// Two planes: `planes[0]` Y (`width` bytes a row), `planes[1]` interleaved `Cb Cr` at half
    /// resolution (`ceil(height / 2)` rows of `2 * ceil(width / 2)` bytes).
    Nv12 = 8,
    /// Two planes like NV12, chroma interleaved `Cr Cb` (Android's camera default).
    Nv21 = 9,
    /// Three planes: Y, Cb, Cr; the chroma planes have `ceil(height / 2)` rows of
    /// `ceil(width / 2)` bytes (YUV420P, IYUV).
    I420 = 10,
}

/// The Y'CbCr -> RGB matrix of `ps3rt_encoder_set_yuv_color`.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ps3rt_yuv_matrix {
    /// ITU-R BT.601 (the default: webcams, V4L2's default, JPEG).
    Bt601 = 0,
    /// ITU-R BT.709 (HD cameras).
    Bt709 = 1,
}

/// The sample range of `ps3rt_encoder_set_yuv_color`.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ps3rt_yuv_range {
    /// Y 16..235, Cb/Cr 16..240 (the default: V4L2's default for YUV).
    Limited = 0,
    /// 0..255.
    Full = 1,
}

/// The colour spec named by two `ps3rt_yuv_*` values.
pub(crate) fn color_spec(matrix: i32, range: i32) -> Result<ColorSpec, Failure> {
    let matrix = match matrix {
        0 => YuvMatrix::Bt601,
        1 => YuvMatrix::Bt709,
        v => {
            return Err(Failure::invalid(format!(
                "matrix {v} is not a ps3rt_yuv_matrix (0 BT.601, 1 BT.709)"
            )));
        }
    };
    let range = match range {
        0 => YuvRange::Limited,
        1 => YuvRange::Full,
        v => {
            return Err(Failure::invalid(format!(
                "range {v} is not a ps3rt_yuv_range (0 limited, 1 full)"
            )));
        }
    };
    Ok(ColorSpec { matrix, range })
}

/// A frame in the caller's memory: `height` rows of `width` pixels. ps3rt reads the pixels during the
/// encode call only and never copies the frame (it samples the rows the resizes and the selected
/// patches need); the memory must stay valid and unchanged until the call returns.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ps3rt_frame {
    /// Width in pixels (1..=32768).
    pub width: u32,
    /// Height in pixels (1..=32768).
    pub height: u32,
    /// A `ps3rt_pixel_format` value.
    pub format: i32,
    /// Plane pointers: the packed formats use `planes[0]` (row `y` starts at
    /// `planes[0] + y * strides[0]`), NV12/NV21 `planes[0..2]`, I420 `planes[0..3]`; entries a format
    /// does not use are ignored.
    pub planes: [*const u8; PS3RT_MAX_PLANES],
    /// Row strides in bytes, one per plane: at least the plane's row size (`width * bytes_per_pixel`
    /// for packed RGB/gray; see `ps3rt_pixel_format` for the YUV planes), or 0 for rows packed back
    /// to back. A plane must hold `stride * (rows - 1) + row_size` bytes.
    pub strides: [usize; PS3RT_MAX_PLANES],
}

fn pixel_format(value: i32) -> Result<PixelFormat, Failure> {
    Ok(match value {
        1 => PixelFormat::Rgb8,
        2 => PixelFormat::Bgr8,
        3 => PixelFormat::Rgba8,
        4 => PixelFormat::Bgra8,
        5 => PixelFormat::Gray8,
        6 => PixelFormat::Yuyv,
        7 => PixelFormat::Uyvy,
        8 => PixelFormat::Nv12,
        9 => PixelFormat::Nv21,
        10 => PixelFormat::I420,
        0 => {
            return Err(Failure::new(
                super::ps3rt_status::InvalidFrame,
                "frame format is 0 (not set): use a PS3RT_PIXEL_FORMAT_* value",
            ));
        }
        v => {
            return Err(Failure::new(
                super::ps3rt_status::InvalidFrame,
                format!("frame format {v} is not a ps3rt_pixel_format (1..=10 in this version)"),
            ));
        }
    })
}

/// A [`Frame`] view of the pixels `desc` describes.
///
/// # Safety
/// If the format, size and every stride are valid, then for each plane `p` the format uses,
/// `desc.planes[p]` is NULL or points to at least `stride * (rows - 1) + row_bytes` readable bytes
/// (stride as given, or the packed row size when 0) that stay valid and unmodified for `'a`. The
/// pointers of an invalid description are never used.
pub(crate) unsafe fn frame_view<'a>(desc: &ps3rt_frame) -> Result<Frame<'a>, Failure> {
    let format = pixel_format(desc.format)?;
    let (w, h) = (desc.width, desc.height);
    let n = format.plane_count();
    let mut planes: [&[u8]; 3] = [&[]; 3];
    let mut strides = [0usize; 3];
    let mut lens = [0usize; 3];
    // Sizes and strides Frame::from_planes refuses leave the planes empty, so its message names the
    // real problem; no slice is made from any pointer unless the whole description is valid (a
    // caller may leave the pointers of a description it got wrong unset).
    let sized = w > 0 && h > 0 && w <= MAX_FRAME_SIDE && h <= MAX_FRAME_SIDE;
    let mut valid = sized;
    for p in 0..n {
        let row_bytes = format.plane_row_bytes(p, w);
        let stride = match desc.strides[p] {
            0 => row_bytes,
            s => s,
        };
        strides[p] = stride;
        if !sized || stride < row_bytes {
            valid = false;
            continue;
        }
        let rows = format.plane_rows(p, h);
        lens[p] = stride
            .checked_mul(rows - 1)
            .and_then(|v| v.checked_add(row_bytes))
            .filter(|&v| v <= isize::MAX as usize)
            .ok_or_else(|| {
                Failure::new(
                    super::ps3rt_status::InvalidFrame,
                    format!("invalid frame: stride {stride} x {rows} rows overflows"),
                )
            })?;
    }
    if valid {
        for p in 0..n {
            if desc.planes[p].is_null() {
                return Err(Failure::new(
                    super::ps3rt_status::InvalidFrame,
                    if n == 1 {
                        format!("invalid frame: planes[{p}] is NULL")
                    } else {
                        format!(
                            "invalid frame: planes[{p}] is NULL (a {format} frame has {n} planes)"
                        )
                    },
                ));
            }
        }
        for p in 0..n {
            // SAFETY: planes[p] is non-NULL; the caller guarantees `lens[p]` readable bytes there
            // (the contract documented on ps3rt_frame) for 'a; u8 has no alignment requirement and
            // `lens[p]` is at most isize::MAX.
            planes[p] = unsafe { std::slice::from_raw_parts(desc.planes[p], lens[p]) };
        }
    }
    Ok(Frame::from_planes(
        w,
        h,
        format,
        &planes[..n],
        &strides[..n],
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(w: u32, h: u32, format: i32, data: &[u8], stride: usize) -> ps3rt_frame {
        ps3rt_frame {
            width: w,
            height: h,
            format,
            planes: [
                data.as_ptr(),
                std::ptr::null(),
                std::ptr::null(),
                std::ptr::null(),
            ],
            strides: [stride, 0, 0, 0],
        }
    }

    fn err(d: &ps3rt_frame) -> String {
        // SAFETY: the descriptors built here point into live test buffers of the size they claim.
        unsafe { frame_view(d) }.unwrap_err().message
    }

    #[test]
    fn descriptors_become_frames_without_copies() {
        let px = vec![7u8; 5 * 3 * 4];
        // SAFETY: 60 bytes back a packed 5x4 rgb8 frame.
        let f = unsafe { frame_view(&desc(5, 4, 1, &px, 0)) }.unwrap();
        assert_eq!((f.width(), f.height(), f.stride()), (5, 4, 15));
        assert_eq!(f.format(), PixelFormat::Rgb8);
        // SAFETY: a 4x3 bgra8 frame with stride 20 needs 2 * 20 + 16 = 56 of the 60 bytes.
        let f = unsafe { frame_view(&desc(4, 3, 4, &px, 20)) }.unwrap();
        assert_eq!((f.stride(), f.format()), (20, PixelFormat::Bgra8));
    }

    #[test]
    fn bad_descriptors_name_the_problem() {
        let px = vec![0u8; 16];
        assert!(err(&desc(2, 2, 0, &px, 0)).contains("format is 0"));
        assert!(err(&desc(2, 2, 42, &px, 0)).contains("format 42"));
        assert!(err(&desc(0, 2, 1, &px, 0)).contains("empty"));
        assert!(err(&desc(2, 2, 1, &px, 5)).contains("stride 5 is smaller"));
        assert!(err(&desc(40_000, 1, 5, &px, 0)).contains("largest supported"));
        let mut d = desc(2, 2, 5, &px, 0);
        d.planes[0] = std::ptr::null();
        assert!(err(&d).contains("planes[0] is NULL"));
        let d = desc(10, 32_768, 3, &px, usize::MAX / 4);
        assert!(err(&d).contains("overflows"));
        // NV12 needs its chroma plane.
        assert!(err(&desc(2, 2, 8, &px, 0)).contains("planes[1] is NULL"));
        assert!(err(&desc(2, 2, 11, &px, 0)).contains("1..=10"));
    }

    #[test]
    fn nv12_descriptors_use_two_planes() {
        let (y, uv) = (vec![16u8; 6 * 3], vec![128u8; 6 * 2]);
        let mut d = desc(5, 3, 8, &y, 6);
        d.planes[1] = uv.as_ptr();
        d.strides[1] = 6;
        // SAFETY: Y 3 rows of stride 6 (18 bytes), chroma 2 rows of 6 (12 bytes).
        let f = unsafe { frame_view(&d) }.unwrap();
        assert_eq!((f.format(), f.plane_stride(1)), (PixelFormat::Nv12, 6));
        d.strides[1] = 5;
        assert!(err(&d).contains("chroma plane stride 5 is smaller"));
        assert!(
            color_spec(1, 1).is_ok() && color_spec(2, 0).is_err() && color_spec(0, -1).is_err()
        );
    }
}
