//! Frame validation and conversion: any format, size, strides and plane split over any bytes.
//!
//! A frame that validates must cover exactly the bytes docs/formats.md says (checked with the
//! documented formulas, written out here); converting it to RGB8 must read only inside its planes;
//! and sampling a scale straight from it (the fused conversion the encoder uses, through the public
//! `ps3rt::image::scale_plane`) must give bit for bit what sampling its RGB8 copy gives. Format byte
//! 10 feeds the bytes to the MJPEG decoder instead.
//!
//! Input: `[format][mode][w u16][h u16][stride u32 x3][split u32 x2][s_max][size]`, then the pixels.
//! Mode bit 0: separate planes (split at the two offsets) instead of one buffer; bits 1-2: the
//! colour spec.

use ps3rt::image::scale_plane;
use ps3rt::package::manifest::Normalization;
use ps3rt::{ColorSpec, Error, Frame, MjpegDecoder, PixelFormat};

use super::Bytes;

const COLORS: [ColorSpec; 4] = [
    ColorSpec::BT601_LIMITED,
    ColorSpec::BT601_FULL,
    ColorSpec::BT709_LIMITED,
    ColorSpec::BT709_FULL,
];

/// Row bytes and rows of plane `p` of a `w` x `h` frame, from the table in docs/formats.md.
fn documented_plane(format: PixelFormat, p: usize, w: usize, h: usize) -> (usize, usize) {
    let half_w = w.div_ceil(2);
    let half_h = h.div_ceil(2);
    match (format, p) {
        (PixelFormat::Rgb8 | PixelFormat::Bgr8, _) => (3 * w, h),
        (PixelFormat::Rgba8 | PixelFormat::Bgra8, _) => (4 * w, h),
        (PixelFormat::Gray8, _) => (w, h),
        (PixelFormat::Yuyv | PixelFormat::Uyvy, _) => (4 * half_w, h),
        (PixelFormat::Nv12 | PixelFormat::Nv21 | PixelFormat::I420, 0) => (w, h),
        (PixelFormat::Nv12 | PixelFormat::Nv21, _) => (2 * half_w, half_h),
        (PixelFormat::I420, _) => (half_w, half_h),
        (other, _) => panic!("a format this harness does not know: {other}"),
    }
}

fn norm() -> Normalization {
    Normalization {
        mean: [0.5, 0.4, 0.3],
        std: [0.25, 0.5, 0.2],
    }
}

/// The fuzz target.
pub fn run(data: &[u8]) {
    let mut input = Bytes::new(data);
    let format_byte = input.u8() % 11;
    let mode = input.u8();
    let (w, h) = (u32::from(input.u16()), u32::from(input.u16()));
    let strides = [
        input.u32() as usize,
        input.u32() as usize,
        input.u32() as usize,
    ];
    let splits = [input.u32() as usize, input.u32() as usize];
    let s_max = usize::from(input.u8()).max(1);
    let size = usize::from(input.u8()) % s_max + 1;
    let pixels = input.rest();
    if format_byte == 10 {
        return mjpeg(pixels);
    }
    let format = PixelFormat::all()[usize::from(format_byte)];
    let color = COLORS[usize::from(mode >> 1) % COLORS.len()];
    let n = format.plane_count();
    let frame = if mode & 1 == 0 {
        Frame::new(w, h, format, strides[0], pixels)
    } else {
        // Split the bytes into the format's planes at the two offsets.
        let a = splits[0] % (pixels.len() + 1);
        let b = a + splits[1] % (pixels.len() - a + 1);
        let planes = [&pixels[..a], &pixels[a..b], &pixels[b..]];
        let planes: Vec<&[u8]> = if n == 1 {
            vec![pixels]
        } else {
            planes[..n].to_vec()
        };
        Frame::from_planes(w, h, format, &planes, &strides[..n])
    };
    let frame = match frame {
        Ok(f) => f.with_color(color),
        Err(Error::InvalidFrame(_)) => return,
        Err(e) => panic!("a bad frame must be an InvalidFrame error, got {e:?}"),
    };
    // The planes are exactly what the documentation says a frame of this description needs.
    let (wu, hu) = (w as usize, h as usize);
    assert!((1..=32_768).contains(&wu) && (1..=32_768).contains(&hu));
    for p in 0..n {
        let (row, rows) = documented_plane(format, p, wu, hu);
        let stride = frame.plane_stride(p);
        assert!(
            stride >= row,
            "{format} plane {p}: stride {stride} < row {row}"
        );
        assert_eq!(
            frame.plane(p).len(),
            stride * (rows - 1) + row,
            "{format} {w}x{h} plane {p} stride {stride}"
        );
    }
    // Conversion reads only inside the planes (a slice index would panic otherwise) ...
    let mut rgb = Vec::new();
    frame.to_rgb8(&mut rgb);
    assert_eq!(rgb.len(), wu * hu * 3);
    if format == PixelFormat::Gray8 {
        for (i, px) in rgb.chunks_exact(3).enumerate() {
            let v = frame.plane(0)[(i / wu) * frame.stride() + i % wu];
            assert_eq!(px, [v, v, v]);
        }
    }
    // ... and sampling the frame itself equals sampling its RGB8 copy, bit for bit. (Large frames
    // only at a small scale: the sampling cost grows with the frame.)
    if wu * hu > 1 << 16 && s_max > 32 {
        return;
    }
    let copy =
        Frame::packed(w, h, PixelFormat::Rgb8, &rgb).expect("the RGB8 copy is a valid frame");
    let fused = scale_plane(&frame, s_max, size, &norm()).expect("a valid scale");
    let reference = scale_plane(&copy, s_max, size, &norm()).expect("a valid scale");
    assert_eq!(fused.len(), 3 * size * size);
    let same = fused
        .iter()
        .zip(&reference)
        .all(|(a, b)| a.to_bits() == b.to_bits());
    assert!(
        same,
        "{format} {w}x{h} ({color}): fused conversion differs from the RGB8 copy at scale {size}/{s_max}"
    );
    assert!(fused.iter().all(|v| v.is_finite()));
}

/// Any bytes as an MJPEG frame: decoded into a valid RGB8 frame or refused with InvalidFrame.
fn mjpeg(data: &[u8]) {
    let mut decoder = MjpegDecoder::new();
    match decoder.decode(data) {
        Ok(f) => {
            assert_eq!(f.format(), PixelFormat::Rgb8);
            assert_eq!(
                f.plane(0).len(),
                f.width() as usize * f.height() as usize * 3
            );
        }
        Err(Error::InvalidFrame(_)) => {}
        Err(e) => panic!("a bad JPEG must be an InvalidFrame error, got {e:?}"),
    }
}
