//! GPU preprocessing (cargo feature `cuda`, src/image/gpu.rs) against the CPU resampler.
//!
//! On a machine with an NVIDIA driver, a GPU and NVRTC these compare every pixel format's planes,
//! strided frames, odd sizes and whole encodes with the CPU's, and print the GPU's timings; on a
//! machine without them they check that asking for the GPU fails with an error naming what is missing
//! and leaves the encoder working on the CPU. `PS3RT_REQUIRE_GPU=1` turns a missing GPU into a
//! failure (tools/gpu/device-check.sh sets it, so a device run cannot pass by skipping).
//!
//! Built without the `mimalloc` feature (as the device check builds it) it also counts the heap
//! allocations of steady-state frames on the GPU.
#![cfg(feature = "cuda")]

use std::path::{Path, PathBuf};

use ps3rt::image::gpu::{FrameUpload, GpuResampler};
use ps3rt::{
    BackendKind, BackendOptions, ColorSpec, EncodeOptions, Encoder, Frame, Model, Package,
    PixelFormat, Preprocess,
};

#[cfg(not(feature = "mimalloc"))]
#[path = "common/counting_alloc.rs"]
mod counting_alloc;

/// PS3-4K's largest scale and its two planes.
const S_MAX: usize = 3780;
const PLANES: [usize; 2] = [378, 1512];
/// Largest difference allowed between a GPU and a CPU plane value (normalized units, where one 8-bit
/// step is about 0.008): the sums add the same terms in another order.
const PLANE_TOLERANCE: f32 = 2e-4;

/// The committed tiny package on tract: found by the path it was compiled at, else from the current
/// directory (the device check runs a binary built on another machine from the repository root).
fn tiny_model() -> Model {
    let compiled = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/ps3-tiny-4k");
    let dir = if compiled.is_dir() {
        compiled
    } else {
        PathBuf::from("models/ps3-tiny-4k")
    };
    let options = BackendOptions {
        kind: BackendKind::Tract,
        ..BackendOptions::default()
    };
    Model::from_package(&Package::open(dir).unwrap(), &options).unwrap()
}

/// The GPU, or `None` after checking the error says why there is none.
fn gpu() -> Option<GpuResampler> {
    match GpuResampler::new(0) {
        Ok(g) => Some(g),
        Err(e) => {
            let message = e.to_string();
            assert!(
                std::env::var_os("PS3RT_REQUIRE_GPU").is_none(),
                "PS3RT_REQUIRE_GPU is set but the GPU cannot be used: {message}"
            );
            assert!(
                message.contains("cuda")
                    && (message.contains("libcuda.so.1")
                        || message.contains("NVRTC")
                        || message.contains("CUDA device")
                        || message.contains("cuInit")),
                "the error should name the missing piece: {message}"
            );
            eprintln!("no GPU here ({message}); checked the error only");
            None
        }
    }
}

/// The road scene at `w` x `h` in `format`, rows `stride` bytes apart (0: packed).
fn scene(w: u32, h: u32, format: PixelFormat, stride: usize) -> Vec<u8> {
    let rgb = ps3rt::synthetic::road_scene(w, h, 7).image;
    let mut out = vec![0u8; ps3rt::capture::raw_frame_len(w, h, format, stride).unwrap()];
    ps3rt::capture::rgb8_to_format(
        rgb.as_raw(),
        w,
        h,
        format,
        ColorSpec::default(),
        stride,
        &mut out,
    )
    .unwrap();
    out
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Each GPU plane within [`PLANE_TOLERANCE`] of the CPU's (`what`: the case, for the message); the
/// largest difference and the count go into `worst` and `compared`.
fn check_planes(
    got: &[Vec<f32>; 2],
    want: &[Vec<f32>; 2],
    what: &str,
    worst: &mut f32,
    compared: &mut usize,
) {
    for (i, &size) in PLANES.iter().enumerate() {
        let d = max_diff(&got[i], &want[i]);
        *worst = worst.max(d);
        *compared += 1;
        assert!(
            d <= PLANE_TOLERANCE,
            "{what}, plane {size}: max difference {d}"
        );
    }
}

/// Every format, packed and with padded rows, at sizes with odd edges, with each way of bringing
/// the frame to the GPU: the GPU's planes equal the CPU's within the summation-order tolerance.
#[test]
fn planes_match_the_cpu_for_every_format() {
    let Some(mut gpu) = gpu() else { return };
    let model = tiny_model();
    let norm = model.manifest().normalization;
    eprintln!(
        "GPU: {}, frames by default: 720p RGB8 {}, 8K RGB8 {}",
        gpu.device_name(),
        gpu.upload_mode(1280 * 720 * 3).name(),
        gpu.upload_mode(7680 * 4320 * 3).name()
    );
    let modes = [
        FrameUpload::Pageable,
        FrameUpload::Registered,
        FrameUpload::Staged,
        FrameUpload::Mapped,
    ];
    let (mut worst, mut compared) = (0f32, 0);
    for &(w, h) in &[(1280u32, 720u32), (641, 359), (3000, 1100)] {
        for &format in PixelFormat::all() {
            for stride in [0, format.plane_row_bytes(0, w) + 64] {
                let bytes = scene(w, h, format, stride);
                let row = if stride == 0 {
                    format.plane_row_bytes(0, w)
                } else {
                    stride
                };
                let frame = Frame::new(w, h, format, row, &bytes).unwrap();
                let want = PLANES
                    .map(|size| ps3rt::image::scale_plane(&frame, S_MAX, size, &norm).unwrap());
                for mode in modes {
                    gpu.set_upload_mode(Some(mode));
                    let got = gpu.scale_planes(&frame, S_MAX, PLANES, &norm).unwrap();
                    assert_eq!(gpu.last_upload_mode(), Some(mode));
                    let what = format!("{w}x{h} {format} stride {stride}, {}", mode.name());
                    check_planes(&got, &want, &what, &mut worst, &mut compared);
                }
            }
        }
    }
    eprintln!("{compared} planes compared, largest difference from the CPU {worst:.2e}");
}

/// Frames in page-locked memory (ps3rt's `PinnedBuffer`, at an odd offset into it): brought over
/// `pinned` by default (one DMA, or read in place on an integrated GPU) with the CPU's planes;
/// `registered` set copies them as they are (already locked); `pinned` set for a frame in pageable
/// memory is an error naming it. Without a GPU the allocation fails naming CUDA.
#[test]
fn frames_in_pinned_memory_reach_the_gpu_as_they_lie() {
    let Some(mut gpu) = gpu() else {
        let e = ps3rt::PinnedBuffer::new(0, 4096).unwrap_err().to_string();
        assert!(e.contains("cuda"), "{e}");
        return;
    };
    let model = tiny_model();
    let norm = model.manifest().normalization;
    let (mut worst, mut compared) = (0f32, 0);
    for &(w, h) in &[(1280u32, 720u32), (641, 359)] {
        for format in [
            PixelFormat::Rgb8,
            PixelFormat::Bgra8,
            PixelFormat::Nv12,
            PixelFormat::I420,
            PixelFormat::Yuyv,
        ] {
            for stride in [0, format.plane_row_bytes(0, w) + 64] {
                let bytes = scene(w, h, format, stride);
                let row = if stride == 0 {
                    format.plane_row_bytes(0, w)
                } else {
                    stride
                };
                let mut pinned = ps3rt::PinnedBuffer::new(0, bytes.len() + 8).unwrap();
                assert!(pinned.iter().all(|&b| b == 0), "not zeroed");
                pinned[3..3 + bytes.len()].copy_from_slice(&bytes);
                let frame = Frame::new(w, h, format, row, &pinned[3..3 + bytes.len()]).unwrap();
                let pageable = Frame::new(w, h, format, row, &bytes).unwrap();
                let want = PLANES
                    .map(|size| ps3rt::image::scale_plane(&pageable, S_MAX, size, &norm).unwrap());
                for mode in [
                    None,
                    Some(FrameUpload::Registered),
                    Some(FrameUpload::Pinned),
                ] {
                    gpu.set_upload_mode(mode);
                    let got = gpu.scale_planes(&frame, S_MAX, PLANES, &norm).unwrap();
                    let used = mode.unwrap_or(FrameUpload::Pinned);
                    assert_eq!(gpu.last_upload_mode(), Some(used));
                    let what = format!(
                        "{w}x{h} {format} stride {stride}, pinned memory, {}",
                        used.name()
                    );
                    check_planes(&got, &want, &what, &mut worst, &mut compared);
                }
            }
        }
    }
    eprintln!(
        "{compared} planes of frames in pinned memory compared, largest difference {worst:.2e}"
    );
    gpu.set_upload_mode(Some(FrameUpload::Pinned));
    let bytes = scene(64, 48, PixelFormat::Rgb8, 0);
    let frame = Frame::packed(64, 48, PixelFormat::Rgb8, &bytes).unwrap();
    let e = gpu
        .scale_planes(&frame, S_MAX, PLANES, &norm)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("page-locked") && e.contains("PS3RT_GPU_UPLOAD"),
        "{e}"
    );
    assert_eq!(gpu.last_upload_mode(), None);
    gpu.set_upload_mode(None);
    gpu.scale_planes(&frame, S_MAX, PLANES, &norm).unwrap();
    assert_ne!(gpu.last_upload_mode(), Some(FrameUpload::Pinned));
}

/// The live loop with `pinned_device` (what `ps3rt camera --preprocess gpu` sets): raw frames are
/// captured into page-locked memory, brought to the GPU `pinned`, and select what the CPU selects
/// from a heap copy of the same frame. Without a GPU the frames stay in ordinary memory.
#[test]
fn live_frames_captured_into_pinned_memory_go_over_pinned() {
    use ps3rt::capture::{Live, LiveOptions, SourceFormat, SyntheticSource};
    let source = SyntheticSource::new(1920, 1080, SourceFormat::Raw(PixelFormat::Nv12))
        .unwrap()
        .limited(Some(3));
    let live = Live::start(
        source,
        LiveOptions {
            pinned_device: Some(0),
            ..LiveOptions::default()
        },
    );
    let taken = live
        .next(Some(std::time::Duration::from_secs(10)))
        .unwrap()
        .unwrap();
    let Some(_gpu) = gpu() else {
        assert!(!taken.is_pinned());
        return;
    };
    assert!(taken.is_pinned() && taken.data.is_empty());
    let model = tiny_model();
    let options = EncodeOptions {
        budget: Some(256),
        steps: 1,
    };
    let mut decoder = ps3rt::MjpegDecoder::new();
    let mut cpu = Encoder::new(&model, options).unwrap();
    let copy = (*taken).clone();
    let want = cpu
        .encode(&copy.frame(&mut decoder).unwrap())
        .unwrap()
        .selected()
        .to_vec();
    let mut on_gpu = Encoder::new(&model, options).unwrap();
    on_gpu.set_preprocess(Preprocess::Gpu(0)).unwrap();
    let got = on_gpu
        .encode(&taken.frame(&mut decoder).unwrap())
        .unwrap()
        .selected()
        .to_vec();
    let timings = on_gpu.gpu_timings().unwrap();
    assert_eq!(timings.upload, Some(FrameUpload::Pinned), "{timings:?}");
    let same = got.iter().zip(&want).filter(|(a, b)| a == b).count();
    assert_eq!(same, want.len(), "{same}/{} patches the same", want.len());
    eprintln!(
        "live 1920x1080 NV12 frame in pinned memory: upload {:.2} ms, {same}/{} patches as on the CPU",
        timings.upload_ms,
        want.len()
    );
}

/// The selected patches gathered on the GPU against crops of the CPU's whole scales (756, 1512,
/// 3780): tokens at the corners, the middle and in side-by-side runs, from frames smaller and
/// larger than the model's scales. The 1512 patches are copied from the GPU's selection plane and
/// match within float rounding; the 756 and 3780 ones repeat PIL's 8-bit rounding after each pass,
/// where a sum a few ulps from a half step may round the other way: those values may differ by up
/// to two 8-bit steps, and must be rare.
#[test]
fn gathered_patches_match_crops_of_the_cpu_scales() {
    let Some(mut gpu) = gpu() else { return };
    let model = tiny_model();
    let norm = model.manifest().normalization;
    let scales = [756usize, 1512, 3780];
    const PATCH: usize = 14;
    let step = norm
        .std
        .iter()
        .map(|s| 1.0 / (255.0 * s))
        .fold(0f32, f32::max);
    let mut tokens = Vec::new();
    for (i, &size) in scales.iter().enumerate() {
        let g = (size / PATCH) as u16;
        let scale = i as u8;
        for (row, col) in [
            (0, 0),
            (0, g - 1),
            (g - 1, 0),
            (g - 1, g - 1),
            (g / 2, g / 3),
        ] {
            tokens.push(ps3rt::TokenPos { scale, row, col });
        }
        for col in 3..11 {
            tokens.push(ps3rt::TokenPos {
                scale,
                row: g / 4,
                col,
            });
        }
    }
    let (mut worst_exact, mut flips, mut worst_flip, mut compared) = (0f32, 0usize, 0f32, 0usize);
    for &(w, h) in &[(1280u32, 720u32), (3000, 1100)] {
        for format in [PixelFormat::Rgb8, PixelFormat::Nv12, PixelFormat::Yuyv] {
            let bytes = scene(w, h, format, 0);
            let frame = Frame::packed(w, h, format, &bytes).unwrap();
            let planes: Vec<Vec<f32>> = scales
                .iter()
                .map(|&s| ps3rt::image::scale_plane(&frame, S_MAX, s, &norm).unwrap())
                .collect();
            let got = gpu
                .scale_patches(
                    &frame,
                    S_MAX,
                    (PLANES[0], PLANES[1]),
                    &scales,
                    &tokens,
                    &norm,
                )
                .unwrap();
            for (k, tok) in tokens.iter().enumerate() {
                let size = scales[usize::from(tok.scale)];
                let plane = &planes[usize::from(tok.scale)];
                for c in 0..3 {
                    for r in 0..PATCH {
                        for x in 0..PATCH {
                            let y0 = usize::from(tok.row) * PATCH + r;
                            let x0 = usize::from(tok.col) * PATCH + x;
                            let want = plane[(c * size + y0) * size + x0];
                            let v = got[((k * 3 + c) * PATCH + r) * PATCH + x];
                            let d = (v - want).abs();
                            compared += 1;
                            if d <= PLANE_TOLERANCE {
                                worst_exact = worst_exact.max(d);
                                continue;
                            }
                            flips += 1;
                            worst_flip = worst_flip.max(d);
                            assert!(
                                size != 1512 && d <= 2.0 * step + 1e-4,
                                "{w}x{h} {format}, {tok:?} [{c}, {r}, {x}]: {v} against {want}"
                            );
                        }
                    }
                }
            }
        }
    }
    assert!(
        flips * 100 <= compared,
        "{flips} of {compared} values rounded to another 8-bit step"
    );
    eprintln!(
        "{compared} gathered values compared: within {worst_exact:.1e} of the CPU but {flips} rounded to another 8-bit step (at most {worst_flip:.4}, one step is {step:.4})"
    );
}

/// A BT.709 full-range frame: the YUV constants reach the kernels.
#[test]
fn color_spec_reaches_the_kernels() {
    let Some(mut gpu) = gpu() else { return };
    let model = tiny_model();
    let norm = model.manifest().normalization;
    let (w, h) = (960u32, 540u32);
    let bytes = scene(w, h, PixelFormat::Nv12, 0);
    for name in ["bt709-full", "bt601-limited", "bt709-limited"] {
        let color = ColorSpec::from_name(name).unwrap();
        let frame = Frame::packed(w, h, PixelFormat::Nv12, &bytes)
            .unwrap()
            .with_color(color);
        let got = gpu.scale_planes(&frame, S_MAX, PLANES, &norm).unwrap();
        let want = ps3rt::image::scale_plane(&frame, S_MAX, 378, &norm).unwrap();
        let d = max_diff(&got[0], &want);
        assert!(d <= PLANE_TOLERANCE, "{name}: max difference {d}");
    }
}

/// Whole encodes: the same probability map (within float noise) and the same selected patches as
/// on the CPU, at 720p and 8K; prints the GPU's timings.
#[test]
fn encodes_on_the_gpu_select_what_the_cpu_selects() {
    let model = tiny_model();
    let options = EncodeOptions {
        budget: Some(256),
        steps: 1,
    };
    let mut on_gpu = Encoder::new(&model, options).unwrap();
    if let Err(e) = on_gpu.set_preprocess(Preprocess::Gpu(0)) {
        gpu(); // checks the error (or fails under PS3RT_REQUIRE_GPU)
        let message = e.to_string();
        assert_eq!(on_gpu.preprocess(), Preprocess::Cpu, "{message}");
        // The encoder still works, on the CPU.
        let bytes = scene(320, 240, PixelFormat::Rgb8, 0);
        let frame = Frame::packed(320, 240, PixelFormat::Rgb8, &bytes).unwrap();
        on_gpu.encode(&frame).unwrap();
        assert!(on_gpu.gpu_timings().is_none());
        return;
    }
    assert_eq!(on_gpu.preprocess(), Preprocess::Gpu(0));
    let mut on_cpu = Encoder::new(&model, options).unwrap();
    for &(w, h) in &[(1280u32, 720u32), (7680, 4320)] {
        for format in [PixelFormat::Rgb8, PixelFormat::Nv12] {
            let bytes = scene(w, h, format, 0);
            let frame = Frame::packed(w, h, format, &bytes).unwrap();
            let want = on_cpu.encode(&frame).unwrap().clone();
            for _ in 0..3 {
                on_gpu.encode(&frame).unwrap();
            }
            let got = on_gpu.encode(&frame).unwrap().clone();
            let prob = max_diff(got.prob_map(), want.prob_map());
            assert!(
                prob <= 1e-4,
                "{w}x{h} {format}: probability map differs by {prob}"
            );
            let same = got
                .tokens()
                .iter()
                .zip(want.tokens())
                .filter(|(a, b)| (a.scale, a.row, a.col) == (b.scale, b.row, b.col))
                .count();
            assert!(
                same * 100 >= 99 * want.tokens().len(),
                "{w}x{h} {format}: {same} of {} selected patches the same",
                want.tokens().len()
            );
            let t = on_gpu.gpu_timings().unwrap();
            // The planes came back into the session's own buffers, page-locked once when the GPU
            // was set (one DMA per plane), on a discrete GPU unless PS3RT_GPU_DOWNLOAD says
            // otherwise; the comparisons above are of what those downloads brought.
            let integrated = ps3rt::image::gpu::probe(0).unwrap().integrated;
            let locked = match std::env::var("PS3RT_GPU_DOWNLOAD").as_deref() {
                Ok("pageable") => false,
                Ok("locked") => true,
                _ => !integrated,
            };
            assert_eq!(t.download_locked, locked, "{t:?}");
            // The patches were gathered on the GPU (PS3RT_GPU_GATHER unset): with the same
            // selection, the features are the CPU's within float rounding.
            let gathered_on_gpu = std::env::var_os("PS3RT_GPU_GATHER").is_none();
            assert_eq!(t.gather_ms > 0.0, gathered_on_gpu, "{t:?}");
            let features = max_diff(got.features(), want.features());
            if same == want.tokens().len() {
                // (Patches of the 8-bit-rounded scales may differ by a rounding step in rare
                // values: gathered_patches_match_crops_of_the_cpu_scales bounds them.)
                assert!(
                    features <= 5e-2,
                    "{w}x{h} {format}: features differ by {features}"
                );
            }
            eprintln!(
                "{w}x{h} {format}: preprocess {:.2} ms on the GPU (upload {:.2}, kernels {:.2}, download {:.2} into {} memory), {:.2} ms on the CPU; gather {:.2} ms ({} on the GPU) against {:.2}; {same}/{} patches the same, probability map within {prob:.1e}, features within {features:.1e}",
                got.timings().preprocess_ms,
                t.upload_ms,
                t.kernels_ms,
                t.download_ms,
                if t.download_locked {
                    "page-locked"
                } else {
                    "pageable"
                },
                want.timings().preprocess_ms,
                got.timings().gather_ms,
                t.gather_ms,
                want.timings().gather_ms,
                want.tokens().len()
            );
        }
    }
    // Two look-close steps on an odd-sized I420 frame: each step's patches gathered on the GPU.
    let options = EncodeOptions {
        budget: Some(300),
        steps: 2,
    };
    let (mut two_gpu, mut two_cpu) = (
        Encoder::new(&model, options).unwrap(),
        Encoder::new(&model, options).unwrap(),
    );
    two_gpu.set_preprocess(Preprocess::Gpu(0)).unwrap();
    let bytes = scene(1919, 1081, PixelFormat::I420, 0);
    let frame = Frame::packed(1919, 1081, PixelFormat::I420, &bytes).unwrap();
    let want = two_cpu.encode(&frame).unwrap().clone();
    let got = two_gpu.encode(&frame).unwrap().clone();
    let same = got
        .selected()
        .iter()
        .zip(want.selected())
        .filter(|(a, b)| a == b)
        .count();
    assert!(
        same * 100 >= 99 * want.selected().len(),
        "two steps: {same} the same"
    );
    if same == want.selected().len() {
        let features = max_diff(got.features(), want.features());
        assert!(features <= 5e-2, "two steps: features differ by {features}");
        eprintln!("1919x1081 i420, 2 steps of 300: features within {features:.1e}");
    }
    // Back to the CPU on request.
    on_gpu.set_preprocess(Preprocess::Cpu).unwrap();
    assert_eq!(on_gpu.preprocess(), Preprocess::Cpu);
}

#[test]
fn preprocess_names_parse() {
    for mode in [
        FrameUpload::Pageable,
        FrameUpload::Registered,
        FrameUpload::Staged,
        FrameUpload::Mapped,
        FrameUpload::Pinned,
    ] {
        assert_eq!(FrameUpload::parse(mode.name()), Some(mode));
    }
    assert_eq!(FrameUpload::parse("zero-copy"), None);
    assert_eq!(Preprocess::parse("cpu"), Some(Preprocess::Cpu));
    assert_eq!(Preprocess::parse("gpu"), Some(Preprocess::Gpu(0)));
    assert_eq!(Preprocess::parse("gpu:3"), Some(Preprocess::Gpu(3)));
    for bad in ["", "GPU", "gpu:", "gpu:-1", "gpu:x", "cuda"] {
        assert_eq!(Preprocess::parse(bad), None, "{bad:?}");
    }
    assert_eq!(Preprocess::Gpu(2).to_string(), "gpu:2");
    assert_eq!(
        Preprocess::parse(&Preprocess::Cpu.to_string()),
        Some(Preprocess::Cpu)
    );
}

/// With the planes resampled on a GPU (the frame's upload, the kernels' launches, the planes'
/// download), steady-state frames allocate nothing in ps3rt either. Needs an NVIDIA GPU, a driver
/// and NVRTC (tools/gpu/device-check.sh runs it there, built without mimalloc, with `PS3RT_REQUIRE_GPU=1`); elsewhere it
/// checks nothing and says so.
#[cfg(not(feature = "mimalloc"))]
#[test]
fn steady_state_gpu_preprocessing_allocates_nothing() {
    let model = tiny_model();
    let probe = Encoder::new(
        &model,
        EncodeOptions {
            budget: Some(64),
            steps: 1,
        },
    )
    .unwrap()
    .set_preprocess(Preprocess::Gpu(0));
    if let Err(e) = probe {
        assert!(
            std::env::var_os("PS3RT_REQUIRE_GPU").is_none(),
            "PS3RT_REQUIRE_GPU is set: {e}"
        );
        eprintln!("skipped: no GPU here ({e})");
        return;
    }
    for (what, ours, _) in counting_alloc::steady_state_counts(&model, Preprocess::Gpu(0)) {
        assert_eq!(
            ours, 0,
            "{what}: ps3rt allocated {ours} times in steady-state frames on the GPU"
        );
    }
    // Frames in page-locked memory (brought over `pinned`).
    let pinned = |bytes: &[u8]| {
        let mut p = ps3rt::PinnedBuffer::new(0, bytes.len()).unwrap();
        p.copy_from_slice(bytes);
        p
    };
    for (what, ours, _) in
        counting_alloc::steady_state_counts_in(&model, Preprocess::Gpu(0), pinned)
    {
        assert_eq!(
            ours, 0,
            "{what}: ps3rt allocated {ours} times in steady-state frames from pinned memory"
        );
    }
}
