//! Bad inputs, each with the named error it gets (the table in docs/reliability.md lists every row
//! and the test that proves it; rows covered elsewhere point to tests/package.rs, tests/formats.rs,
//! tests/capture.rs, tests/c and unit tests). Nothing here may panic, hang or read outside a buffer.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use ps3rt::capture::{
    CaptureError, CaptureErrorKind, CapturedFrame, FrameSource, Live, LiveOptions, SourceFormat,
    SyntheticSource,
};
use ps3rt::geometry::TokenPos;
use ps3rt::image::scale_plane;
use ps3rt::package::manifest::Normalization;
use ps3rt::{
    ColorSpec, EncodeOptions, Encoder, Error, Frame, Input, MjpegDecoder, Model, Package,
    PixelFormat, TensorImage,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| Model::embedded().expect("the embedded model loads"))
}

fn encoder(budget: usize, steps: usize) -> Encoder {
    Encoder::new(
        model(),
        EncodeOptions {
            budget: Some(budget),
            steps,
        },
    )
    .expect("a valid budget")
}

/// The error's variant and message must match.
#[track_caller]
fn assert_invalid_frame<T: std::fmt::Debug>(r: ps3rt::Result<T>, parts: &[&str]) {
    match r {
        Err(Error::InvalidFrame(m)) => {
            for p in parts {
                assert!(m.contains(p), "{m:?} does not mention {p:?}");
            }
        }
        other => panic!("expected InvalidFrame mentioning {parts:?}, got {other:?}"),
    }
}

#[track_caller]
fn assert_invalid_argument<T: std::fmt::Debug>(r: ps3rt::Result<T>, parts: &[&str]) {
    match r {
        Err(Error::InvalidArgument(m)) => {
            for p in parts {
                assert!(m.contains(p), "{m:?} does not mention {p:?}");
            }
        }
        other => panic!("expected InvalidArgument mentioning {parts:?}, got {other:?}"),
    }
}

// ----------------------------------------------------------------------------------- packages

fn tiny_files() -> BTreeMap<String, Arc<[u8]>> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(common::tiny_package()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name != "README.md" {
            files.insert(name, Arc::<[u8]>::from(std::fs::read(&path).unwrap()));
        }
    }
    files
}

fn manifest_of(files: &BTreeMap<String, Arc<[u8]>>) -> Value {
    serde_json::from_slice(&files["manifest.json"]).unwrap()
}

fn set_manifest(files: &mut BTreeMap<String, Arc<[u8]>>, m: &Value) {
    files.insert(
        "manifest.json".into(),
        serde_json::to_vec_pretty(m).unwrap().into(),
    );
}

/// Replace `file` and give the manifest its true hash and size, so only the check under test fires.
fn replace_file(files: &mut BTreeMap<String, Arc<[u8]>>, file: &str, bytes: Vec<u8>) {
    let mut m = manifest_of(files);
    let hex: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    m["files"][file]["sha256"] = Value::from(hex);
    m["files"][file]["bytes"] = Value::from(bytes.len());
    files.insert(file.into(), bytes.into());
    set_manifest(files, &m);
}

/// Load in memory up to the backend (the tables included); the error must be a package error.
#[track_caller]
fn package_error(files: BTreeMap<String, Arc<[u8]>>, parts: &[&str]) {
    let result = Package::from_files("test", files).and_then(|p| {
        for role in ps3rt::package::GraphRole::ALL {
            p.graph_proto(role)?;
        }
        p.check_tables()
    });
    match result {
        Err(e @ Error::Package { .. }) => {
            let m = e.to_string();
            for p in parts {
                assert!(m.contains(p), "{m:?} does not mention {p:?}");
            }
        }
        other => panic!("expected a package error mentioning {parts:?}, got {other:?}"),
    }
}

#[test]
fn the_pristine_package_passes_every_check() {
    let p = Package::from_files("test", tiny_files()).unwrap();
    for role in ps3rt::package::GraphRole::ALL {
        p.graph_proto(role).unwrap();
    }
    p.check_tables().unwrap();
}

#[test]
fn manifest_not_utf8() {
    let mut files = tiny_files();
    files.insert(
        "manifest.json".into(),
        Arc::from(&b"{\"format\": \"\xff\"}"[..]),
    );
    package_error(files, &["manifest.json", "not UTF-8 text"]);
}

#[test]
fn manifest_larger_than_1_mib() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = std::fs::read(common::tiny_package().join("manifest.json")).unwrap();
    text.resize(text.len() + (1 << 20), b' ');
    std::fs::write(dir.path().join("manifest.json"), text).unwrap();
    let e = Package::open(dir.path()).unwrap_err();
    assert!(matches!(e, Error::Package { .. }), "{e:?}");
    assert!(
        e.to_string().contains("more than the 1048576 expected"),
        "{e}"
    );
}

#[test]
fn graph_missing() {
    let mut files = tiny_files();
    files.remove("lowres.onnx");
    package_error(
        files,
        &["lowres.onnx", "listed in the manifest but missing"],
    );
}

#[test]
fn garbage_graph_with_a_matching_hash() {
    let mut files = tiny_files();
    replace_file(
        &mut files,
        "hrenc.onnx",
        b"\x0a\xff\xff\xff\xff\x0fnot protobuf".to_vec(),
    );
    package_error(files, &["hrenc.onnx", "not a valid ONNX model"]);
}

#[test]
fn graph_external_data_outside_the_package() {
    // The graph's initializers name their external file; "weights.bin" -> "/etc/passwd" (same
    // length, so the protobuf stays well-formed).
    let mut files = tiny_files();
    let mut bytes = files["lowres.onnx"].to_vec();
    let at = bytes
        .windows(11)
        .position(|w| w == b"weights.bin")
        .expect("an external data location");
    bytes[at..at + 11].copy_from_slice(b"/etc/passwd");
    replace_file(&mut files, "lowres.onnx", bytes);
    package_error(
        files,
        &[
            "lowres.onnx",
            "refers to external file Some(\"/etc/passwd\")",
            "only the package's weights.bin is allowed",
        ],
    );
}

#[test]
fn absolute_file_name_in_the_manifest() {
    let mut files = tiny_files();
    let mut m = manifest_of(&files);
    m["files"]["/etc/passwd"] = m["files"]["weights.bin"].clone();
    set_manifest(&mut files, &m);
    package_error(files, &["\"/etc/passwd\" is not a plain file name"]);
}

#[test]
fn package_path_is_a_file() {
    let e = Package::open(common::tiny_package().join("manifest.json")).unwrap_err();
    assert!(matches!(e, Error::Package { .. }), "{e:?}");
    assert!(e.to_string().contains("not a directory"), "{e}");
}

#[test]
fn declared_size_over_64_gib() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in tiny_files() {
        std::fs::write(dir.path().join(&name), &bytes[..]).unwrap();
    }
    let path = dir.path().join("manifest.json");
    let mut m: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    m["files"]["weights.bin"]["bytes"] = Value::from(1u64 << 40);
    std::fs::write(&path, serde_json::to_vec(&m).unwrap()).unwrap();
    let e = Package::open(dir.path()).unwrap_err();
    assert!(
        e.to_string()
            .contains("weights.bin: declared size 1099511627776 exceeds the 64 GiB limit"),
        "{e}"
    );
}

#[test]
fn sha256_not_hex() {
    let mut files = tiny_files();
    let mut m = manifest_of(&files);
    m["files"]["weights.bin"]["sha256"] = Value::from("zz".repeat(32));
    set_manifest(&mut files, &m);
    package_error(
        files,
        &["files.weights.bin.sha256 is not a 64-digit hex SHA-256"],
    );
}

#[test]
fn head_count_times_head_width_overflows() {
    // 2 x (2^63 + 16) wraps to 32, the width: found by the manifest fuzz target (a debug build
    // panicked on the multiplication; a release build accepted the manifest).
    let mut files = tiny_files();
    let mut m = manifest_of(&files);
    m["model"]["head_dim"] = Value::from(9_223_372_036_854_775_824u64);
    set_manifest(&mut files, &m);
    package_error(
        files,
        &["model.heads 2 x head_dim 9223372036854775824 != width 32"],
    );
}

#[test]
fn selection_grid_beyond_any_image() {
    let mut files = tiny_files();
    let mut m = manifest_of(&files);
    let big = 27u64 << 58;
    m["geometry"]["hrsel_input"] = Value::from(big);
    m["geometry"]["hrsel_grid"] = Value::from(big);
    set_manifest(&mut files, &m);
    package_error(files, &["geometry.hrsel_input", "exceeds 16384"]);
}

#[test]
fn tables_with_a_nan() {
    let mut files = tiny_files();
    let st = safetensors::SafeTensors::deserialize(&files["tables.safetensors"]).unwrap();
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(name, t)| (name, t.shape().to_vec(), t.data().to_vec()))
        .collect();
    let prior = tensors
        .iter_mut()
        .find(|t| t.0 == "prior_prompt")
        .expect("prior_prompt");
    prior.2[8..12].copy_from_slice(&f32::NAN.to_le_bytes());
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(n, shape, data)| {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                    .unwrap();
            (n.clone(), view)
        })
        .collect();
    let bytes = safetensors::serialize(views, None).unwrap();
    replace_file(&mut files, "tables.safetensors", bytes);
    package_error(
        files,
        &[
            "tables.safetensors",
            "tensor prior_prompt holds a non-finite value at flat index 2",
        ],
    );
}

// ------------------------------------------------------------------------------------- frames

#[test]
fn zero_sized_frames() {
    let data = [0u8; 64];
    for (w, h) in [(0, 4), (4, 0), (0, 0)] {
        assert_invalid_frame(
            Frame::packed(w, h, PixelFormat::Rgb8, &data),
            &[&format!("size {w}x{h} is empty")],
        );
    }
    let e = Frame::from_planes(0, 2, PixelFormat::Nv12, &[&data, &data], &[4, 4]);
    assert_invalid_frame(e, &["size 0x2 is empty"]);
}

#[test]
fn huge_frames() {
    let data = [0u8; 64];
    assert_invalid_frame(
        Frame::new(40_000, 1, PixelFormat::Gray8, 40_000, &data),
        &["size 40000x1 exceeds the largest supported side 32768"],
    );
    assert_invalid_frame(
        Frame::new(1, 32_769, PixelFormat::Gray8, 1, &data),
        &["exceeds the largest supported side"],
    );
}

#[test]
fn stride_smaller_than_a_row() {
    let data = vec![0u8; 1000];
    assert_invalid_frame(
        Frame::new(10, 4, PixelFormat::Bgr8, 29, &data),
        &["stride 29 is smaller than one bgr8 row of 10 pixels (30 bytes)"],
    );
    // The minimum itself is fine (rows of exactly their bytes, odd chroma width included).
    assert!(
        Frame::from_planes(7, 3, PixelFormat::I420, &[&data, &data, &data], &[7, 4, 4]).is_ok()
    );
    assert_invalid_frame(
        Frame::from_planes(7, 3, PixelFormat::I420, &[&data, &data, &data], &[7, 4, 3]),
        &[
            "Cr plane stride 3 is smaller than one i420 Cr plane row of a 7 pixel wide frame (4 bytes)",
        ],
    );
}

#[test]
fn strides_whose_frame_size_overflows() {
    let data = [0u8; 16];
    assert_invalid_frame(
        Frame::new(10, 32_768, PixelFormat::Rgba8, usize::MAX / 2, &data),
        &["overflows"],
    );
    let y = vec![0u8; 10 * 32_768];
    assert_invalid_frame(
        Frame::from_planes(
            10,
            32_768,
            PixelFormat::Nv12,
            &[&y, &data],
            &[10, usize::MAX / 4],
        ),
        &["chroma plane stride", "overflows"],
    );
}

#[test]
fn buffer_shorter_than_described() {
    let data = vec![0u8; 10 * 3 * 5 - 1];
    assert_invalid_frame(
        Frame::packed(10, 5, PixelFormat::Rgb8, &data),
        &["buffer holds 149 bytes, a 10x5 rgb8 frame with stride 30 needs 150"],
    );
    // One buffer of 4:2:0: the chroma rows count.
    let data = vec![0u8; 5 * 3 + 3 * 2 * 2 - 1];
    assert_invalid_frame(Frame::packed(5, 3, PixelFormat::I420, &data), &["needs 27"]);
}

#[test]
fn missing_planes() {
    let y = vec![16u8; 64];
    assert_invalid_frame(
        Frame::from_planes(4, 4, PixelFormat::Nv12, &[&y], &[4]),
        &["a nv12 frame has 2 planes, got 1 plane and 1 stride"],
    );
    assert_invalid_frame(
        Frame::from_planes(4, 4, PixelFormat::I420, &[&y, &y], &[4, 2, 2]),
        &["a i420 frame has 3 planes, got 2 planes and 3 strides"],
    );
    // An empty plane where the format needs one.
    assert_invalid_frame(
        Frame::from_planes(4, 4, PixelFormat::Nv21, &[&y, &[]], &[4, 4]),
        &["chroma plane holds 0 bytes", "needs 8"],
    );
}

#[test]
fn chroma_planes_too_short_or_too_narrow() {
    let (y, c) = (vec![0u8; 40], vec![0u8; 9]);
    assert_invalid_frame(
        Frame::from_planes(5, 3, PixelFormat::Nv21, &[&y, &c], &[8, 6]),
        &["chroma plane holds 9 bytes, a 5x3 nv21 frame with chroma plane stride 6 needs 12"],
    );
    assert_invalid_frame(
        Frame::from_planes(5, 3, PixelFormat::I420, &[&y, &c, &c], &[8, 2, 3]),
        &[
            "Cb plane stride 2 is smaller than one i420 Cb plane row of a 5 pixel wide frame (3 bytes)",
        ],
    );
}

fn norm() -> Normalization {
    Normalization {
        mean: [0.5; 3],
        std: [0.5; 3],
    }
}

#[test]
fn misaligned_planes_are_read_like_aligned_ones() {
    // u8 planes have no alignment requirement: a frame starting at an odd address (and with an odd
    // stride) is accepted and read exactly like the same pixels at an aligned address.
    let (w, h) = (37u32, 23u32);
    let stride = 37 * 3 + 3;
    let pixels: Vec<u8> = (0..stride * 23).map(|i| (i * 31 % 251) as u8).collect();
    let mut shifted = vec![0u8; pixels.len() + 1];
    shifted[1..].copy_from_slice(&pixels);
    let aligned = Frame::new(w, h, PixelFormat::Rgb8, stride, &pixels).unwrap();
    let odd = Frame::new(w, h, PixelFormat::Rgb8, stride, &shifted[1..]).unwrap();
    assert_eq!(
        odd.plane(0).as_ptr() as usize % 2,
        1 - aligned.plane(0).as_ptr() as usize % 2
    );
    let a = scale_plane(&aligned, 64, 27, &norm()).unwrap();
    let b = scale_plane(&odd, 64, 27, &norm()).unwrap();
    assert_eq!(a, b);
    // Through the encoder too.
    let mut e = encoder(16, 1);
    let fa = e.encode(&aligned).unwrap().features().to_vec();
    let fb = e.encode(&odd).unwrap().features().to_vec();
    assert_eq!(fa, fb);
}

/// BT.601 full range, the reference formula of docs/formats.md, rounded and clipped.
fn rgb_of(y: u8, cb: u8, cr: u8) -> [u8; 3] {
    let (y, cb, cr) = (f64::from(y), f64::from(cb) - 128.0, f64::from(cr) - 128.0);
    let (kr, kb) = (0.299, 0.114);
    let kg = 1.0 - kr - kb;
    let r = y + 2.0 * (1.0 - kr) * cr;
    let b = y + 2.0 * (1.0 - kb) * cb;
    let g = y - (2.0 * kb * (1.0 - kb) * cb + 2.0 * kr * (1.0 - kr) * cr) / kg;
    [r, g, b].map(|v| v.round().clamp(0.0, 255.0) as u8)
}

#[test]
fn odd_widths_of_422_are_whole_pairs() {
    // 5 pixels of YUYV are 3 pairs (12 bytes a row): the last pixel is the first of its pair and
    // uses that pair's chroma; the pair's second Y is padding.
    let row = [
        10u8, 90, 20, 160, /* pair 0 */ 30, 100, 40, 170, /* pair 1 */ 200, 60, 255,
        220, /* pair 2: Y1 padding */
    ];
    let f = Frame::new(5, 1, PixelFormat::Yuyv, 12, &row)
        .unwrap()
        .with_color(ColorSpec::BT601_FULL);
    let mut rgb = Vec::new();
    f.to_rgb8(&mut rgb);
    assert_eq!(rgb.len(), 15);
    let expected: Vec<u8> = [
        rgb_of(10, 90, 160),
        rgb_of(20, 90, 160),
        rgb_of(30, 100, 170),
        rgb_of(40, 100, 170),
        rgb_of(200, 60, 220),
    ]
    .concat();
    assert_eq!(rgb, expected);
    // A row one byte short of the third pair is refused.
    assert_invalid_frame(
        Frame::new(5, 1, PixelFormat::Yuyv, 11, &row),
        &["stride 11 is smaller than one yuyv row of 5 pixels (12 bytes)"],
    );
}

#[test]
fn odd_sizes_of_420_use_the_chroma_of_their_pair() {
    // 3x3 I420: chroma 2x2; pixel (2, 2) (last column, last row) uses chroma (1, 1).
    let y: Vec<u8> = (0..9).map(|i| 20 + 20 * i).collect();
    let cb = [100u8, 110, 120, 130];
    let cr = [140u8, 150, 160, 170];
    let f = Frame::from_planes(3, 3, PixelFormat::I420, &[&y, &cb, &cr], &[3, 2, 2])
        .unwrap()
        .with_color(ColorSpec::BT601_FULL);
    let mut rgb = Vec::new();
    f.to_rgb8(&mut rgb);
    for py in 0..3 {
        for px in 0..3 {
            let c = (py / 2) * 2 + px / 2;
            let want = rgb_of(y[py * 3 + px], cb[c], cr[c]);
            assert_eq!(&rgb[(py * 3 + px) * 3..][..3], &want, "pixel ({px}, {py})");
        }
    }
    // The same pixels as NV12 with a packed odd-width chroma row (2 * ceil(3/2) = 4 bytes).
    let uv: Vec<u8> = cb.iter().zip(&cr).flat_map(|(&b, &r)| [b, r]).collect();
    let nv = Frame::from_planes(3, 3, PixelFormat::Nv12, &[&y, &uv], &[3, 4])
        .unwrap()
        .with_color(ColorSpec::BT601_FULL);
    let mut rgb2 = Vec::new();
    nv.to_rgb8(&mut rgb2);
    assert_eq!(rgb, rgb2);
}

#[test]
fn unknown_pixel_format_names() {
    let e = "rgb565".parse::<PixelFormat>();
    assert_invalid_argument(e, &["unknown pixel format \"rgb565\"", "nv12"]);
}

#[test]
fn non_finite_tensor_pixels() {
    let mut v = vec![0.25f32; 3 * 8 * 8];
    v[64 + 8 * 2 + 3] = f32::NAN;
    assert_invalid_frame(
        TensorImage::new(8, &v),
        &["tensor value at [1, 2, 3] is NaN (pixels must be finite)"],
    );
    v[64 + 8 * 2 + 3] = 0.0;
    v[5] = f32::NEG_INFINITY;
    assert_invalid_frame(TensorImage::new(8, &v), &["[0, 0, 5] is -inf"]);
}

#[test]
fn tensor_of_the_wrong_side() {
    let v = vec![0.0f32; 3 * 64 * 64];
    let t = TensorImage::new(64, &v).unwrap();
    let mut e = encoder(16, 1);
    assert_invalid_frame(
        e.encode_tensor(&t),
        &["a normalized tensor input must be [3, 3780, 3780] for this model, got [3, 64, 64]"],
    );
    assert_invalid_frame(
        TensorImage::new(0, &[]),
        &["tensor side 0 outside 1..=32768"],
    );
    assert_invalid_frame(
        TensorImage::new(4, &v),
        &["tensor holds 12288 values, [3, 4, 4] needs 48"],
    );
}

#[test]
fn corrupt_and_truncated_jpegs() {
    let mut d = MjpegDecoder::new();
    assert_invalid_frame(d.decode(b"not a jpeg"), &["MJPEG frame"]);
    assert_invalid_frame(d.decode(&[]), &["MJPEG frame"]);
    let img = image::RgbImage::from_fn(40, 30, |x, y| {
        image::Rgb([(x * 6) as u8, (y * 8) as u8, 90])
    });
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
        .encode_image(&img)
        .unwrap();
    assert!(d.decode(&jpeg).is_ok());
    // Cut in the middle of its headers.
    assert_invalid_frame(d.decode(&jpeg[..40]), &["MJPEG frame"]);
}

/// Peak resident memory of this process (VmHWM), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[test]
fn jpeg_headers_claiming_a_huge_image() {
    // A valid small JPEG whose frame header (SOF0) claims 32768 x 32768: 3.2 GB of RGB for a few
    // hundred bytes. It must be refused before that buffer exists.
    let img = image::RgbImage::from_fn(16, 16, |x, y| {
        image::Rgb([(x * 16) as u8, (y * 16) as u8, 7])
    });
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
        .encode_image(&img)
        .unwrap();
    let sof = jpeg
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("a baseline frame header");
    // SOF0: FF C0, length (2), precision (1), height (2), width (2).
    jpeg[sof + 5..sof + 9].copy_from_slice(&[0x80, 0x00, 0x80, 0x00]);
    let before = peak_rss();
    let started = Instant::now();
    let mut d = MjpegDecoder::new();
    assert_invalid_frame(
        d.decode(&jpeg),
        &[
            "the headers claim 32768x32768 pixels",
            "more than",
            "bytes can encode",
        ],
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    let grown = peak_rss().saturating_sub(before);
    assert!(grown < 512 << 20, "peak memory grew by {} MB", grown >> 20);
}

// ----------------------------------------------------------------------------- encoder options

#[test]
fn budget_zero() {
    assert_invalid_argument(
        Encoder::new(
            model(),
            EncodeOptions {
                budget: Some(0),
                steps: 1,
            },
        ),
        &["budget 0 outside 1..=87480 (the high-res patches of scales [756, 1512, 3780])"],
    );
}

#[test]
fn budget_beyond_the_grids() {
    assert_invalid_argument(
        Encoder::new(
            model(),
            EncodeOptions {
                budget: Some(87_481),
                steps: 1,
            },
        ),
        &["budget 87481 outside 1..=87480"],
    );
}

#[test]
fn steps_beyond_what_is_left() {
    assert_invalid_argument(
        Encoder::new(
            model(),
            EncodeOptions {
                budget: Some(40_000),
                steps: 3,
            },
        ),
        &["3 steps x budget 40000 exceeds the 87480 high-res patches"],
    );
    assert_invalid_argument(
        Encoder::new(
            model(),
            EncodeOptions {
                budget: Some(2),
                steps: usize::MAX,
            },
        ),
        &["steps x budget 2 exceeds"],
    );
}

#[test]
fn given_selections_that_do_not_fit() {
    let mut e = encoder(2, 1);
    let px = vec![128u8; 32 * 24 * 3];
    let frame = Frame::packed(32, 24, PixelFormat::Rgb8, &px).unwrap();
    let t = |scale, row, col| TokenPos { scale, row, col };
    assert_invalid_argument(
        e.encode_with_selection(Input::Frame(frame), &[vec![t(0, 0, 0)]]),
        &["selection step 0 has 1 tokens, the budget is 2"],
    );
    assert_invalid_argument(
        e.encode_with_selection(Input::Frame(frame), &[vec![t(0, 0, 0)], vec![t(0, 0, 1)]]),
        &["2 selection steps given, the encoder runs 1"],
    );
    assert_invalid_argument(
        e.encode_with_selection(Input::Frame(frame), &[vec![t(0, 0, 0), t(0, 0, 0)]]),
        &["token (0, 0, 0) is selected twice"],
    );
    assert_invalid_argument(
        e.encode_with_selection(Input::Frame(frame), &[vec![t(0, 54, 0), t(0, 0, 0)]]),
        &["selected token (0, 54, 0) lies outside the 54x54 grid"],
    );
    assert_invalid_argument(
        e.encode_with_selection(Input::Frame(frame), &[vec![t(3, 0, 0), t(0, 0, 0)]]),
        &["selected token has scale index 3; the model has 3"],
    );
    // The encoder is still usable.
    assert!(e.encode(&frame).is_ok());
}

#[test]
fn bad_prompts() {
    let mut e = encoder(4, 1);
    assert_invalid_argument(
        e.set_prompt(Some(&[1.0; 31])),
        &["prompt has 31 values, the model's width is 32"],
    );
    let mut p = vec![0.5f32; 32];
    p[7] = f32::INFINITY;
    assert_invalid_argument(
        e.set_prompt(Some(&p)),
        &["prompt must be finite and not all zero"],
    );
    assert_invalid_argument(e.set_prompt(Some(&[0.0; 32])), &["not all zero"]);
    assert!(e.set_prompt(None).is_ok());
}

// ---------------------------------------------------------------------------------- the C ABI

mod c_api {
    use std::ffi::CStr;
    use std::ptr;

    use ps3rt::ffi::*;

    fn last_error() -> String {
        // SAFETY: never NULL; valid until the next failure on this thread.
        unsafe { CStr::from_ptr(ps3rt_last_error()) }
            .to_string_lossy()
            .into_owned()
    }

    #[track_caller]
    fn fails(status: ps3rt_status, function: &str, needle: &str) {
        assert_eq!(status, ps3rt_status::InvalidArgument, "{}", last_error());
        let m = last_error();
        assert!(
            m.starts_with(&format!("{function}: ")) && m.contains(needle),
            "{m:?}: want {function} and {needle:?}"
        );
    }

    /// NULL in every pointer position of every entry point: refused with INVALID_ARGUMENT and a
    /// message naming the function and the argument (destroy functions accept NULL). The same in
    /// C, under AddressSanitizer and valgrind: tests/c/robustness_test.c.
    #[test]
    fn null_at_every_entry_point() {
        let mut model = ptr::null_mut();
        // SAFETY: NULL options mean the defaults; a valid out-pointer.
        let s = unsafe { ps3rt_model_load_embedded(ptr::null(), &mut model) };
        assert_eq!(s, ps3rt_status::Ok);
        let mut enc = ptr::null_mut();
        // SAFETY: a live model, default options, a valid out-pointer.
        let s = unsafe { ps3rt_encoder_create(model, ptr::null(), &mut enc) };
        assert_eq!(s, ps3rt_status::Ok);
        let frame = ps3rt_frame {
            width: 4,
            height: 4,
            format: 5,
            planes: [ptr::null(); PS3RT_MAX_PLANES],
            strides: [0; PS3RT_MAX_PLANES],
        };
        let mut out = ptr::null();
        let mut info = ptr::null();
        let mut m2 = ptr::null_mut();
        let mut e2 = ptr::null_mut();
        let f = 1.0f32;
        // SAFETY: every call gets NULL where the test says and valid pointers elsewhere.
        unsafe {
            fails(
                ps3rt_model_options_init(ptr::null_mut(), 16),
                "ps3rt_model_options_init",
                "options is NULL",
            );
            fails(
                ps3rt_encoder_options_init(ptr::null_mut(), 24),
                "ps3rt_encoder_options_init",
                "options is NULL",
            );
            fails(
                ps3rt_model_load(ptr::null(), ptr::null(), &mut m2),
                "ps3rt_model_load",
                "path is NULL",
            );
            fails(
                ps3rt_model_load(c"/nonexistent".as_ptr(), ptr::null(), ptr::null_mut()),
                "ps3rt_model_load",
                "model (the out-parameter) is NULL",
            );
            fails(
                ps3rt_model_load_embedded(ptr::null(), ptr::null_mut()),
                "ps3rt_model_load_embedded",
                "model (the out-parameter) is NULL",
            );
            fails(
                ps3rt_model_get_info(ptr::null(), &mut info),
                "ps3rt_model_get_info",
                "model is NULL",
            );
            fails(
                ps3rt_model_get_info(model, ptr::null_mut()),
                "ps3rt_model_get_info",
                "info (the out-parameter) is NULL",
            );
            fails(
                ps3rt_encoder_create(ptr::null(), ptr::null(), &mut e2),
                "ps3rt_encoder_create",
                "model is NULL",
            );
            fails(
                ps3rt_encoder_create(model, ptr::null(), ptr::null_mut()),
                "ps3rt_encoder_create",
                "encoder (the out-parameter) is NULL",
            );
            fails(
                ps3rt_encoder_set_prompt(ptr::null_mut(), &f, 1),
                "ps3rt_encoder_set_prompt",
                "encoder is NULL",
            );
            fails(
                ps3rt_encoder_set_prompt(enc, ptr::null(), 32),
                "ps3rt_encoder_set_prompt",
                "prompt is NULL but its length is 32",
            );
            fails(
                ps3rt_encoder_encode(ptr::null_mut(), &frame, &mut out),
                "ps3rt_encoder_encode",
                "encoder is NULL",
            );
            fails(
                ps3rt_encoder_encode(enc, ptr::null(), &mut out),
                "ps3rt_encoder_encode",
                "frame is NULL",
            );
            fails(
                ps3rt_encoder_encode(enc, &frame, ptr::null_mut()),
                "ps3rt_encoder_encode",
                "output (the out-parameter) is NULL",
            );
            fails(
                ps3rt_encoder_encode_tensor(ptr::null_mut(), &f, 1, &mut out),
                "ps3rt_encoder_encode_tensor",
                "encoder is NULL",
            );
            fails(
                ps3rt_encoder_encode_tensor(enc, ptr::null(), 3780, &mut out),
                "ps3rt_encoder_encode_tensor",
                "tensor is NULL",
            );
            fails(
                ps3rt_encoder_encode_tensor(enc, &f, 1, ptr::null_mut()),
                "ps3rt_encoder_encode_tensor",
                "output (the out-parameter) is NULL",
            );
            fails(
                ps3rt_encoder_set_yuv_color(ptr::null_mut(), 0, 0),
                "ps3rt_encoder_set_yuv_color",
                "encoder is NULL",
            );
            fails(
                ps3rt_encoder_encode_jpeg(ptr::null_mut(), [0u8].as_ptr(), 1, &mut out),
                "ps3rt_encoder_encode_jpeg",
                "encoder is NULL",
            );
            fails(
                ps3rt_encoder_encode_jpeg(enc, ptr::null(), 10, &mut out),
                "ps3rt_encoder_encode_jpeg",
                "data is NULL but its length is 10",
            );
            fails(
                ps3rt_encoder_encode_jpeg(enc, [0u8].as_ptr(), 1, ptr::null_mut()),
                "ps3rt_encoder_encode_jpeg",
                "output (the out-parameter) is NULL",
            );
            // A NULL plane of a valid description is an invalid frame.
            let s = ps3rt_encoder_encode(enc, &frame, &mut out);
            assert_eq!(s, ps3rt_status::InvalidFrame);
            assert!(
                last_error().contains("planes[0] is NULL"),
                "{}",
                last_error()
            );
            // NULL callbacks turn logging off; NULL handles are ignored by the destroy functions.
            assert_eq!(
                ps3rt_set_log_callback(None, ptr::null_mut(), 3),
                ps3rt_status::Ok
            );
            ps3rt_encoder_destroy(ptr::null_mut());
            ps3rt_model_destroy(ptr::null_mut());
            assert!(out.is_null() && info.is_null() && m2.is_null() && e2.is_null());
            // A handle of the other type is refused by its tag and not freed.
            ps3rt_encoder_destroy(model.cast());
            assert!(last_error().contains("encoder is not a live ps3rt_encoder"));
            ps3rt_model_destroy(enc.cast());
            assert!(last_error().contains("model is not a live ps3rt_model"));
            assert_eq!(ps3rt_model_get_info(model, &mut info), ps3rt_status::Ok);
            ps3rt_encoder_destroy(enc);
            ps3rt_model_destroy(model);
        }
    }
}

// ------------------------------------------------------------------------------ camera faults

/// A source scripted frame by frame: `Ok(format, w, h)` delivers such a frame, `Err(kind)` fails,
/// `Stall(d)` blocks that long before the next step (ignoring stop requests, like a read without a
/// timeout), `Panic` panics.
#[derive(Clone, Debug)]
enum Step {
    Frame(PixelFormat, u32, u32),
    Fail(CaptureErrorKind),
    Stall(Duration),
    Panic,
}

struct Scripted {
    steps: Vec<Step>,
    at: usize,
    sequence: u64,
}

impl Scripted {
    fn new(steps: Vec<Step>) -> Self {
        Scripted {
            steps,
            at: 0,
            sequence: 0,
        }
    }
}

impl FrameSource for Scripted {
    fn describe(&self) -> String {
        "scripted".into()
    }

    fn next_frame(&mut self, frame: &mut CapturedFrame) -> Result<bool, CaptureError> {
        loop {
            let Some(step) = self.steps.get(self.at).cloned() else {
                return Ok(false);
            };
            self.at += 1;
            match step {
                Step::Frame(format, w, h) => {
                    let data = frame
                        .prepare_raw(w, h, format, 0, ColorSpec::default())
                        .map_err(|e| {
                            CaptureError::new(
                                CaptureErrorKind::InvalidData,
                                "scripted",
                                e.to_string(),
                            )
                        })?;
                    for (i, b) in data.iter_mut().enumerate() {
                        *b = (i * 7 % 256) as u8;
                    }
                    frame.sequence = self.sequence;
                    frame.captured_at = Instant::now();
                    self.sequence += 1;
                    return Ok(true);
                }
                Step::Fail(kind) => {
                    return Err(CaptureError::new(kind, "scripted", "scripted failure"));
                }
                // A stall delays the next step. (It used to deliver the buffer it was handed as
                // a frame: a buffer never filled, 0x0, whenever the loop handed it a fresh one,
                // and a fresh-clone CI run failed on that empty frame.)
                Step::Stall(d) => std::thread::sleep(d),
                Step::Panic => panic!("scripted source bug"),
            }
        }
    }

    fn reconnect(&mut self) -> Result<(), CaptureError> {
        Ok(())
    }
}

#[test]
fn format_changes_mid_stream_are_encoded_as_they_come() {
    // The camera switches from NV12 640x360 to YUYV 320x240 to RGB 200x100 between frames: each
    // frame carries its own description and the encoder re-plans for the new size.
    let steps = vec![
        Step::Frame(PixelFormat::Nv12, 640, 360),
        Step::Stall(Duration::from_millis(1)),
        Step::Frame(PixelFormat::Yuyv, 320, 240),
        Step::Frame(PixelFormat::Rgb8, 200, 100),
    ];
    let live = Live::start(Scripted::new(steps), LiveOptions::default());
    let mut e = encoder(8, 1);
    let mut jpeg = MjpegDecoder::new();
    let mut sizes = Vec::new();
    // Take every frame (a slow consumer may miss some; at least the last arrives).
    while let Some(f) = live.next(Some(Duration::from_secs(10))).unwrap() {
        let frame = f.frame(&mut jpeg).unwrap();
        let out = e.encode(&frame).unwrap();
        assert_eq!(out.frame_size(), (frame.width(), frame.height()));
        sizes.push((frame.format(), frame.width()));
    }
    assert_eq!(sizes.last(), Some(&(PixelFormat::Rgb8, 200)));
}

#[test]
fn a_stalled_source_times_out_and_recovers() {
    // No frame for 600 ms: the consumer gets a Timeout error (a recoverable state: the loop keeps
    // running), then the frames that come after the stall.
    let steps = vec![
        Step::Frame(PixelFormat::Gray8, 8, 8),
        Step::Stall(Duration::from_millis(600)),
        Step::Frame(PixelFormat::Gray8, 8, 8),
    ];
    let live = Live::start(Scripted::new(steps), LiveOptions::default());
    assert!(live.next(Some(Duration::from_secs(5))).unwrap().is_some());
    let t = Instant::now();
    let e = live.next(Some(Duration::from_millis(100))).unwrap_err();
    assert_eq!(e.kind, CaptureErrorKind::Timeout);
    assert!(e.is_recoverable());
    assert_eq!(e.to_string(), "scripted: no frame within 0.1 s");
    assert!(t.elapsed() < Duration::from_secs(1));
    // Then the frame after the stall.
    let mut got = 0;
    while live.next(Some(Duration::from_secs(5))).unwrap().is_some() {
        got += 1;
    }
    assert!(got >= 1);
}

#[test]
fn a_panicking_source_ends_the_loop_with_an_error() {
    let steps = vec![Step::Frame(PixelFormat::Gray8, 8, 8), Step::Panic];
    let live = Live::start(Scripted::new(steps), LiveOptions::default());
    let mut error = None;
    let t = Instant::now();
    // No timeout: before the fix this waited forever (the capture thread died without saying so).
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        loop {
            match live.next(None) {
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        let after = live.next(None).map(|f| f.is_none());
        let _ = tx.send((error, after));
    });
    let (error, after) = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the consumer was left waiting");
    let error = error.expect("an error");
    assert_eq!(error.kind, CaptureErrorKind::Io);
    assert_eq!(
        error.to_string(),
        "scripted: the source panicked: scripted source bug"
    );
    assert_eq!(after.ok(), Some(true));
    assert!(t.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_source_that_ignores_stop_cannot_hang_stop() {
    let steps = vec![
        Step::Frame(PixelFormat::Gray8, 8, 8),
        Step::Stall(Duration::from_secs(3)),
    ];
    let mut live = Live::start(Scripted::new(steps), LiveOptions::default());
    assert!(live.next(Some(Duration::from_secs(5))).unwrap().is_some());
    std::thread::sleep(Duration::from_millis(50)); // the source is now blocked in its read
    let t = Instant::now();
    assert!(
        !live.stop_within(Duration::from_millis(200)),
        "the stall cannot have ended"
    );
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    assert!(live.next(Some(Duration::from_secs(1))).unwrap().is_none());
}

#[test]
fn unrecoverable_source_errors_surface_once() {
    let steps = vec![
        Step::Frame(PixelFormat::Gray8, 8, 8),
        Step::Fail(CaptureErrorKind::PermissionDenied),
    ];
    let live = Live::start(Scripted::new(steps), LiveOptions::default());
    let mut kinds = Vec::new();
    loop {
        match live.next(Some(Duration::from_secs(5))) {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => kinds.push(e.kind),
        }
    }
    assert_eq!(kinds, vec![CaptureErrorKind::PermissionDenied]);
}

#[cfg(all(feature = "v4l2", target_os = "linux"))]
#[test]
fn v4l2_timeouts_outside_what_poll_takes() {
    use ps3rt::capture::{V4l2Options, V4l2Source};
    for timeout in [
        Duration::ZERO,
        Duration::from_micros(500),
        Duration::from_secs(30 * 86_400),
    ] {
        let mut o = V4l2Options::new("/dev/video-none");
        o.timeout = timeout;
        let e = V4l2Source::open(o).unwrap_err();
        assert_eq!(e.kind, CaptureErrorKind::Unsupported);
        assert!(e.message.contains("use 1 ms to 24 days"), "{e}");
    }
}

#[test]
fn the_synthetic_source_in_every_format_survives_the_live_loop() {
    // Every raw format and MJPEG through the live loop and the encoder: no panics, sizes kept.
    let mut e = encoder(4, 1);
    let mut jpeg = MjpegDecoder::new();
    let mut formats: Vec<SourceFormat> = PixelFormat::all()
        .iter()
        .map(|f| SourceFormat::Raw(*f))
        .collect();
    formats.push(SourceFormat::Mjpeg);
    for format in formats {
        let source = SyntheticSource::new(33, 17, format)
            .unwrap()
            .limited(Some(1));
        let live = Live::start(source, LiveOptions::default());
        let f = live
            .next(Some(Duration::from_secs(10)))
            .unwrap()
            .expect("a frame");
        let frame = f.frame(&mut jpeg).unwrap();
        assert_eq!((frame.width(), frame.height()), (33, 17), "{format}");
        assert!(e.encode(&frame).is_ok(), "{format}");
    }
}
