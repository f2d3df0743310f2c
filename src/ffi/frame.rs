//! The frame descriptor the C side fills to describe its pixels, and its conversion to a [`Frame`]
//! view (no copy).

use crate::image::{Frame, MAX_FRAME_SIDE, PixelFormat};

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
    /// `planes[0] + y * strides[0]`); entries a format does not use are ignored.
    pub planes: [*const u8; PS3RT_MAX_PLANES],
    /// Row strides in bytes, one per plane: at least `width * bytes_per_pixel`, or 0 for rows packed
    /// back to back. A plane must hold `stride * (height - 1) + width * bytes_per_pixel` bytes.
    pub strides: [usize; PS3RT_MAX_PLANES],
}

fn pixel_format(value: i32) -> Result<PixelFormat, Failure> {
    Ok(match value {
        1 => PixelFormat::Rgb8,
        2 => PixelFormat::Bgr8,
        3 => PixelFormat::Rgba8,
        4 => PixelFormat::Bgra8,
        5 => PixelFormat::Gray8,
        0 => {
            return Err(Failure::new(
                super::ps3rt_status::InvalidFrame,
                "frame format is 0 (not set): use a PS3RT_PIXEL_FORMAT_* value",
            ));
        }
        v => {
            return Err(Failure::new(
                super::ps3rt_status::InvalidFrame,
                format!("frame format {v} is not a ps3rt_pixel_format (1..=5 in this version)"),
            ));
        }
    })
}

/// A [`Frame`] view of the pixels `desc` describes.
///
/// # Safety
/// `desc.planes[0]` points to at least `stride * (height - 1) + width * bytes_per_pixel` readable
/// bytes (stride as given, or the packed row size when 0) that stay valid and unmodified for `'a`.
pub(crate) unsafe fn frame_view<'a>(desc: &ps3rt_frame) -> Result<Frame<'a>, Failure> {
    let format = pixel_format(desc.format)?;
    let (w, h) = (desc.width, desc.height);
    let row_bytes = w as usize * format.bytes_per_pixel();
    let stride = match desc.strides[0] {
        0 => row_bytes,
        s => s,
    };
    // Sizes Frame::new refuses get an empty buffer, so its message names the real problem before
    // any pointer arithmetic is done.
    let sane = w > 0 && h > 0 && w <= MAX_FRAME_SIDE && h <= MAX_FRAME_SIDE && stride >= row_bytes;
    let data: &[u8] = if sane {
        let len = stride
            .checked_mul(h as usize - 1)
            .and_then(|n| n.checked_add(row_bytes))
            .filter(|&n| n <= isize::MAX as usize)
            .ok_or_else(|| {
                Failure::new(
                    super::ps3rt_status::InvalidFrame,
                    format!("invalid frame: stride {stride} x height {h} overflows"),
                )
            })?;
        if desc.planes[0].is_null() {
            return Err(Failure::new(
                super::ps3rt_status::InvalidFrame,
                "invalid frame: planes[0] is NULL",
            ));
        }
        // SAFETY: planes[0] is non-NULL; the caller guarantees `len` readable bytes there (the
        // contract documented on ps3rt_frame) for 'a; u8 has no alignment requirement and `len` is
        // at most isize::MAX.
        unsafe { std::slice::from_raw_parts(desc.planes[0], len) }
    } else {
        &[]
    };
    Ok(Frame::new(w, h, format, stride, data)?)
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
        assert!(err(&desc(2, 2, 9, &px, 0)).contains("format 9"));
        assert!(err(&desc(0, 2, 1, &px, 0)).contains("empty"));
        assert!(err(&desc(2, 2, 1, &px, 5)).contains("stride 5 is smaller"));
        assert!(err(&desc(40_000, 1, 5, &px, 0)).contains("largest supported"));
        let mut d = desc(2, 2, 5, &px, 0);
        d.planes[0] = std::ptr::null();
        assert!(err(&d).contains("planes[0] is NULL"));
        let d = desc(10, 32_768, 3, &px, usize::MAX / 4);
        assert!(err(&d).contains("overflows"));
    }
}
