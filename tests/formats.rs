//! Pixel formats against conversions written independently here from the standards' formulas, on
//! synthetic frames of odd sizes with padded strides and separate planes; the fused conversion
//! (what the encoder reads) against a full RGB8 copy.

use ps3rt::capture::{CapturedFrame, SourceFormat, raw_frame_len, rgb8_to_format};
use ps3rt::image::scale_plane;
use ps3rt::package::manifest::Normalization;
use ps3rt::{ColorSpec, Frame, MjpegDecoder, PixelFormat, YuvMatrix, YuvRange};

/// A deterministic byte stream (xorshift).
fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 24) as u8
        })
        .collect()
}

/// Rec. ITU-R BT.601-7 / BT.709-6: E'R = E'Y + (1 - Kr) * 2 * E'Cr, E'B = E'Y + (1 - Kb) * 2 * E'Cb,
/// E'G = (E'Y - Kr E'R - Kb E'B) / Kg, with the 8-bit quantization D'Y = 219 E'Y + 16,
/// D'C = 224 E'C + 128 (limited) or 255 E'Y, 255 E'C + 128 (full). Returns unrounded 0..255 values.
fn reference_rgb(y: u8, cb: u8, cr: u8, spec: ColorSpec) -> [f64; 3] {
    let (kr, kb) = match spec.matrix {
        YuvMatrix::Bt601 => (0.299, 0.114),
        YuvMatrix::Bt709 => (0.2126, 0.0722),
    };
    let (ey, ecb, ecr) = match spec.range {
        YuvRange::Limited => (
            (f64::from(y) - 16.0) / 219.0,
            (f64::from(cb) - 128.0) / 224.0,
            (f64::from(cr) - 128.0) / 224.0,
        ),
        YuvRange::Full => (
            f64::from(y) / 255.0,
            (f64::from(cb) - 128.0) / 255.0,
            (f64::from(cr) - 128.0) / 255.0,
        ),
    };
    let r = ey + (1.0 - kr) * 2.0 * ecr;
    let b = ey + (1.0 - kb) * 2.0 * ecb;
    let g = (ey - kr * r - kb * b) / (1.0 - kr - kb);
    [r * 255.0, g * 255.0, b * 255.0]
}

/// Expected 8-bit RGB of pixel (x, y), straight from the plane bytes of a format.
struct Planes<'a> {
    format: PixelFormat,
    planes: Vec<(&'a [u8], usize)>,
}

impl Planes<'_> {
    fn yuv(&self, x: usize, y: usize) -> (u8, u8, u8) {
        let p = &self.planes;
        match self.format {
            PixelFormat::Yuyv => {
                let m = &p[0].0[y * p[0].1 + (x / 2) * 4..];
                (if x.is_multiple_of(2) { m[0] } else { m[2] }, m[1], m[3])
            }
            PixelFormat::Uyvy => {
                let m = &p[0].0[y * p[0].1 + (x / 2) * 4..];
                (if x.is_multiple_of(2) { m[1] } else { m[3] }, m[0], m[2])
            }
            PixelFormat::Nv12 | PixelFormat::Nv21 => {
                let luma = p[0].0[y * p[0].1 + x];
                let c = &p[1].0[(y / 2) * p[1].1 + (x / 2) * 2..];
                if self.format == PixelFormat::Nv12 {
                    (luma, c[0], c[1])
                } else {
                    (luma, c[1], c[0])
                }
            }
            PixelFormat::I420 => (
                p[0].0[y * p[0].1 + x],
                p[1].0[(y / 2) * p[1].1 + x / 2],
                p[2].0[(y / 2) * p[2].1 + x / 2],
            ),
            f => panic!("{f} is not YUV"),
        }
    }
}

/// Compare `frame.to_rgb8` with the reference: equal, except one level where the reference lies
/// within 0.002 of a rounding boundary (f32 vs f64 arithmetic).
fn check_against_reference(frame: &Frame<'_>, planes: &Planes<'_>, what: &str) {
    let (w, h) = (frame.width() as usize, frame.height() as usize);
    let mut rgb = Vec::new();
    frame.to_rgb8(&mut rgb);
    assert_eq!(rgb.len(), w * h * 3);
    for y in 0..h {
        for x in 0..w {
            let (yy, cb, cr) = planes.yuv(x, y);
            let want = reference_rgb(yy, cb, cr, frame.color());
            for c in 0..3 {
                let v = want[c].clamp(0.0, 255.0);
                let got = f64::from(rgb[3 * (y * w + x) + c]);
                let exact = (v + 0.5).floor();
                let near_half = (v.fract() - 0.5).abs() < 0.002;
                assert!(
                    got == exact || (near_half && (got - exact).abs() <= 1.0),
                    "{what}: pixel ({x}, {y}) channel {c}: got {got}, want {v:.4} from YUV ({yy}, {cb}, {cr})"
                );
            }
        }
    }
}

const SIZES: [(u32, u32); 6] = [(1, 1), (2, 2), (7, 5), (8, 6), (13, 9), (33, 3)];
const SPECS: [ColorSpec; 4] = [
    ColorSpec::BT601_LIMITED,
    ColorSpec::BT601_FULL,
    ColorSpec::BT709_LIMITED,
    ColorSpec::BT709_FULL,
];
const YUV: [PixelFormat; 5] = [
    PixelFormat::Yuyv,
    PixelFormat::Uyvy,
    PixelFormat::Nv12,
    PixelFormat::Nv21,
    PixelFormat::I420,
];

#[test]
fn yuv_formats_match_the_reference_in_one_buffer_with_padded_strides() {
    for format in YUV {
        for (w, h) in SIZES {
            for pad in [0usize, 3, 64] {
                let stride = format.plane_row_bytes(0, w) + pad;
                let len = raw_frame_len(w, h, format, stride).unwrap();
                let data = bytes(len, u64::from(w * 31 + h) + pad as u64);
                for spec in SPECS {
                    let frame = Frame::new(w, h, format, stride, &data)
                        .unwrap()
                        .with_color(spec);
                    // The layout Frame::new documents, written out here.
                    let half = (w as usize).div_ceil(2);
                    let planes = match format {
                        PixelFormat::Nv12 | PixelFormat::Nv21 => {
                            let cs = stride.div_ceil(2) * 2;
                            vec![(&data[..], stride), (&data[stride * h as usize..], cs)]
                        }
                        PixelFormat::I420 => {
                            let cs = stride.div_ceil(2);
                            let u = stride * h as usize;
                            let v = u + cs * (h as usize).div_ceil(2);
                            vec![(&data[..], stride), (&data[u..], cs), (&data[v..], cs)]
                        }
                        _ => vec![(&data[..], stride)],
                    };
                    assert!(half > 0);
                    check_against_reference(
                        &frame,
                        &Planes { format, planes },
                        &format!("{format} {w}x{h} stride {stride} {spec}"),
                    );
                }
                // One byte short is refused, never read out of bounds.
                let e = Frame::new(w, h, format, stride, &data[..len - 1]).unwrap_err();
                assert!(e.to_string().contains(&format!("needs {len}")), "{e}");
            }
        }
    }
}

#[test]
fn separate_planes_with_their_own_strides() {
    for format in [PixelFormat::Nv12, PixelFormat::Nv21, PixelFormat::I420] {
        for (w, h) in SIZES {
            let n = format.plane_count();
            let strides: Vec<usize> = (0..n)
                .map(|p| format.plane_row_bytes(p, w) + 5 * p + 1)
                .collect();
            let bufs: Vec<Vec<u8>> = (0..n)
                .map(|p| {
                    let rows = format.plane_rows(p, h);
                    bytes(strides[p] * rows, 7 + p as u64 + u64::from(w))
                })
                .collect();
            let refs: Vec<&[u8]> = bufs.iter().map(|b| b.as_slice()).collect();
            let frame = Frame::from_planes(w, h, format, &refs, &strides)
                .unwrap()
                .with_color(ColorSpec::BT709_LIMITED);
            let planes = Planes {
                format,
                planes: refs.iter().copied().zip(strides.iter().copied()).collect(),
            };
            check_against_reference(&frame, &planes, &format!("{format} {w}x{h} planes"));
            // A plane shorter than its rows is refused.
            let last = n - 1;
            let need =
                strides[last] * (format.plane_rows(last, h) - 1) + format.plane_row_bytes(last, w);
            let mut short = refs.clone();
            short[last] = &bufs[last][..need - 1];
            assert!(Frame::from_planes(w, h, format, &short, &strides).is_err());
        }
    }
}

#[test]
fn packed_rgb_and_gray_formats() {
    let (w, h) = (13u32, 7u32);
    for format in [
        PixelFormat::Rgb8,
        PixelFormat::Bgr8,
        PixelFormat::Rgba8,
        PixelFormat::Bgra8,
        PixelFormat::Gray8,
    ] {
        let bpp = format.bytes_per_pixel();
        let stride = w as usize * bpp + 9;
        let data = bytes(stride * h as usize, 99);
        let frame = Frame::new(w, h, format, stride, &data).unwrap();
        let mut rgb = Vec::new();
        frame.to_rgb8(&mut rgb);
        for y in 0..h as usize {
            for x in 0..w as usize {
                let px = &data[y * stride + x * bpp..];
                let want = match format {
                    PixelFormat::Rgb8 | PixelFormat::Rgba8 => [px[0], px[1], px[2]],
                    PixelFormat::Bgr8 | PixelFormat::Bgra8 => [px[2], px[1], px[0]],
                    _ => [px[0]; 3],
                };
                assert_eq!(
                    &rgb[3 * (y * w as usize + x)..][..3],
                    &want,
                    "{format} ({x}, {y})"
                );
            }
        }
    }
}

fn norm() -> Normalization {
    Normalization {
        mean: [0.5, 0.5, 0.5],
        std: [0.5, 0.5, 0.5],
    }
}

#[test]
fn fused_conversion_equals_encoding_an_rgb8_copy() {
    // The encoder's planes of a YUV frame are bit-identical to those of its RGB8 copy: the fused
    // path converts the same way, only lazily.
    let (w, h) = (61u32, 37u32);
    for format in YUV {
        let len = raw_frame_len(w, h, format, format.plane_row_bytes(0, w) + 2).unwrap();
        let data = bytes(len, 5);
        let frame = Frame::new(w, h, format, format.plane_row_bytes(0, w) + 2, &data)
            .unwrap()
            .with_color(ColorSpec::BT709_FULL);
        let mut rgb = Vec::new();
        frame.to_rgb8(&mut rgb);
        let copy = Frame::packed(w, h, PixelFormat::Rgb8, &rgb).unwrap();
        for size in [54, 151] {
            let a = scale_plane(&frame, 756, size, &norm()).unwrap();
            let b = scale_plane(&copy, 756, size, &norm()).unwrap();
            assert_eq!(a, b, "{format} scale {size}");
        }
    }
}

#[test]
fn rgb_to_yuv_and_back_stays_close() {
    // The test-frame encoder (rgb8_to_format) and the decoder agree on smooth content.
    let (w, h) = (21u32, 11u32);
    let rgb: Vec<u8> = (0..h)
        .flat_map(|y| {
            (0..w).flat_map(move |x| [(40 + x * 8) as u8, (60 + y * 12) as u8, (200 - x * 5) as u8])
        })
        .collect();
    for format in PixelFormat::all().iter().copied() {
        for spec in SPECS {
            let mut out = vec![0u8; raw_frame_len(w, h, format, 0).unwrap()];
            rgb8_to_format(&rgb, w, h, format, spec, 0, &mut out).unwrap();
            let frame = Frame::packed(w, h, format, &out).unwrap().with_color(spec);
            let mut back = Vec::new();
            frame.to_rgb8(&mut back);
            let tol = match format {
                PixelFormat::Gray8 => continue,
                f if f.is_yuv() => 12, // chroma averaged over 2 or 2x2 pixels of an 8/px ramp
                _ => 0,
            };
            for (i, (a, b)) in rgb.iter().zip(&back).enumerate() {
                assert!(
                    (i32::from(*a) - i32::from(*b)).abs() <= tol,
                    "{format} {spec}: byte {i}: {a} -> {b}"
                );
            }
        }
    }
}

#[test]
fn mjpeg_frames_decode_through_a_reused_decoder() {
    let (w, h) = (30u32, 17u32);
    let img =
        image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 8) as u8, (y * 15) as u8, 90]));
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 98)
        .encode_image(&img)
        .unwrap();
    let captured = CapturedFrame {
        width: w,
        height: h,
        format: SourceFormat::Mjpeg,
        data: jpeg,
        ..CapturedFrame::default()
    };
    let mut decoder = MjpegDecoder::new();
    let frame = captured.frame(&mut decoder).unwrap();
    assert_eq!(
        (frame.width(), frame.height(), frame.format()),
        (w, h, PixelFormat::Rgb8)
    );
    let mut rgb = Vec::new();
    frame.to_rgb8(&mut rgb);
    let err: f64 = rgb
        .iter()
        .zip(img.as_raw())
        .map(|(a, b)| (f64::from(*a) - f64::from(*b)).abs())
        .sum::<f64>()
        / rgb.len() as f64;
    assert!(err < 3.0, "mean error {err}");
    let broken = CapturedFrame {
        data: b"\xff\xd8garbage".to_vec(),
        ..captured
    };
    let e = broken.frame(&mut decoder).unwrap_err().to_string();
    assert!(e.contains("MJPEG"), "{e}");
}

#[test]
fn format_names_cover_ros2_and_gstreamer_spellings() {
    for (name, f) in [
        ("rgb8", PixelFormat::Rgb8),
        ("bgr8", PixelFormat::Bgr8),
        ("rgba8", PixelFormat::Rgba8),
        ("bgra8", PixelFormat::Bgra8),
        ("mono8", PixelFormat::Gray8),
        ("yuv422", PixelFormat::Uyvy),
        ("yuv422_yuy2", PixelFormat::Yuyv),
        ("nv21", PixelFormat::Nv21),
        ("NV12", PixelFormat::Nv12),
        ("I420", PixelFormat::I420),
        ("YUY2", PixelFormat::Yuyv),
        ("GRAY8", PixelFormat::Gray8),
        ("RGBA", PixelFormat::Rgba8),
    ] {
        assert_eq!(PixelFormat::from_name(name), Some(f), "{name}");
    }
    assert_eq!(SourceFormat::from_name("MJPG"), Some(SourceFormat::Mjpeg));
}
