//! The ONNX Runtime backend against tract on the embedded package: same selection, same features
//! (within float reordering), same region labels, buffers reused across frames and sizes; and the
//! errors a missing or wrong library gives.
//!
//! The library comes from `PS3RT_TEST_ONNXRUNTIME` (a path to `libonnxruntime.so...`):
//! `scripts/test.sh` sets it to the one in the project's Python venv (the `onnxruntime` wheel) and
//! checks that the file exists, so CI runs these tests. Without the variable the comparisons print
//! that they were skipped; the error tests need no library and always run.

#![cfg(feature = "onnxruntime")]

use std::path::PathBuf;

use ps3rt::{
    BackendKind, BackendOptions, EncodeOptions, Encoder, Error, Frame, LabelOptions, Model,
    PixelFormat,
};

fn library() -> Option<PathBuf> {
    match std::env::var_os("PS3RT_TEST_ONNXRUNTIME") {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => {
            eprintln!(
                "skipped: set PS3RT_TEST_ONNXRUNTIME to an ONNX Runtime library (scripts/test.sh does)"
            );
            None
        }
    }
}

fn model(kind: BackendKind, library: Option<PathBuf>) -> ps3rt::Result<Model> {
    Model::embedded_with(&BackendOptions {
        kind,
        threads: 2,
        onnxruntime_library: library,
        ..BackendOptions::default()
    })
}

fn road(w: u32, h: u32) -> Vec<u8> {
    ps3rt::synthetic::road_scene(w, h, 7).image.into_raw()
}

/// Largest |a - b| relative to the largest |a|.
fn relative_error(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = a.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

#[test]
fn features_selection_and_labels_match_tract() {
    let Some(lib) = library() else { return };
    let ort = model(BackendKind::OnnxRuntime, Some(lib)).expect("ONNX Runtime backend");
    assert_eq!(ort.backend_name(), "onnxruntime");
    let note = ort.backend_note().unwrap_or_default();
    assert!(note.contains("ONNX Runtime"), "note: {note}");
    let tract = model(BackendKind::Tract, None).expect("tract backend");

    for (w, h, budget) in [(1280u32, 720u32, 256usize), (1920, 1080, 1024)] {
        let pixels = road(w, h);
        let frame = Frame::packed(w, h, PixelFormat::Rgb8, &pixels).expect("frame");
        let options = EncodeOptions {
            budget: Some(budget),
            ..EncodeOptions::default()
        };
        let mut a = Encoder::new(&ort, options).expect("encoder");
        let mut b = Encoder::new(&tract, options).expect("encoder");
        let (sel_a, feat_a, map_a) = {
            let out = a.encode(&frame).expect("ONNX Runtime encode");
            (
                out.selected().to_vec(),
                out.features().to_vec(),
                out.prob_map().to_vec(),
            )
        };
        let out_b = b.encode(&frame).expect("tract encode");
        assert!(
            relative_error(out_b.prob_map(), &map_a) < 1e-5,
            "{w}x{h}: selection scores differ by {}",
            relative_error(out_b.prob_map(), &map_a)
        );
        assert_eq!(
            sel_a,
            out_b.selected(),
            "{w}x{h}: the two backends selected different patches"
        );
        let err = relative_error(out_b.features(), &feat_a);
        eprintln!(
            "{w}x{h} K={budget}: scores differ by {:.2e}, features by {err:.2e} (relative)",
            relative_error(out_b.prob_map(), &map_a)
        );
        assert!(err < 1e-5, "{w}x{h} K={budget}: features differ by {err}");

        // The same frame again through the reused session buffers: the same values exactly.
        let again = a.encode(&frame).expect("second encode");
        assert_eq!(
            again.features(),
            &feat_a[..],
            "{w}x{h}: second frame differs"
        );

        // Region labels run the pool head on both backends.
        let la = a
            .label_regions(&LabelOptions::default())
            .expect("ONNX Runtime labels")
            .to_vec();
        let lb = b
            .label_regions(&LabelOptions::default())
            .expect("tract labels")
            .to_vec();
        assert_eq!(la.len(), lb.len());
        assert!(!la.is_empty(), "{w}x{h}: no regions labelled");
        for (ra, rb) in la.iter().zip(&lb) {
            assert_eq!(ra.bbox, rb.bbox);
            let e = relative_error(&rb.embedding, &ra.embedding);
            assert!(e < 1e-5, "region embedding differs by {e}");
        }
    }
}

/// A package opened from its directory has its weights mapped, and ONNX Runtime's sessions point
/// into them; the loader then drops their pages from the resident set. The initializers ONNX
/// Runtime reads at run time fault back in from the file: the features are those of the embedded
/// package's bytes, bit for bit, on the first frame and the next.
#[test]
fn sessions_over_mapped_weights_give_the_embedded_packages_features() {
    let Some(lib) = library() else { return };
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/ps3-tiny-4k");
    let package = ps3rt::Package::open(&dir).expect("tiny package");
    if std::env::var_os(ps3rt::package::MAP_ENV).is_none() {
        assert!(
            package.is_mapped("weights.bin"),
            "the weights are not mapped"
        );
    }
    let options = BackendOptions {
        kind: BackendKind::OnnxRuntime,
        threads: 2,
        onnxruntime_library: Some(lib.clone()),
        ..BackendOptions::default()
    };
    let from_dir =
        Model::from_package(&package, &options).expect("ONNX Runtime over the directory");
    drop(package);
    let embedded = model(BackendKind::OnnxRuntime, Some(lib)).expect("ONNX Runtime, embedded");
    let pixels = road(1280, 720);
    let frame = Frame::packed(1280, 720, PixelFormat::Rgb8, &pixels).expect("frame");
    let options = EncodeOptions {
        budget: Some(256),
        ..EncodeOptions::default()
    };
    let mut a = Encoder::new(&from_dir, options).expect("encoder");
    let mut b = Encoder::new(&embedded, options).expect("encoder");
    let want = b
        .encode(&frame)
        .expect("embedded encode")
        .features()
        .to_vec();
    for round in 0..2 {
        let got = a.encode(&frame).expect("directory encode");
        assert_eq!(got.features(), &want[..], "frame {round} differs");
    }
}

#[test]
fn a_missing_library_is_an_error_that_names_it() {
    let path = PathBuf::from("/nonexistent/libonnxruntime.so.1.99");
    let e = model(BackendKind::OnnxRuntime, Some(path)).unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, Error::Backend { .. }), "{e:?}");
    assert!(
        text.contains("/nonexistent/libonnxruntime.so.1.99") && text.contains("PS3RT_ONNXRUNTIME"),
        "{text}"
    );
}

#[test]
fn a_file_that_is_not_onnx_runtime_is_refused() {
    // Not a shared library at all.
    let e = model(
        BackendKind::OnnxRuntime,
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")),
    )
    .unwrap_err();
    assert!(e.to_string().contains("cannot open"), "{e}");
    // A shared library without ONNX Runtime's entry point.
    if let Some(libc) = [
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/lib/aarch64-linux-gnu/libc.so.6",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
    {
        let e = model(BackendKind::OnnxRuntime, Some(libc)).unwrap_err();
        assert!(e.to_string().contains("no OrtGetApiBase"), "{e}");
    }
}

#[test]
fn the_backend_name_parses() {
    assert_eq!(
        BackendKind::parse("onnxruntime"),
        Some(BackendKind::OnnxRuntime)
    );
    assert_eq!(BackendKind::parse("ort"), Some(BackendKind::OnnxRuntime));
}

#[test]
fn auto_takes_onnx_runtime_when_it_loads_and_tract_when_it_does_not() {
    // No GPU backend is built into the test binary (or usable here), so Auto goes on to ONNX
    // Runtime, and without a usable library to tract, saying why.
    let missing = model(
        BackendKind::Auto,
        Some(PathBuf::from("/nonexistent/libonnxruntime.so")),
    )
    .expect("Auto falls back to tract");
    assert_eq!(missing.backend_name(), "tract");
    let note = missing.backend_note().unwrap_or_default();
    assert!(
        note.contains("ONNX Runtime not used") && note.contains("/nonexistent/libonnxruntime.so"),
        "{note}"
    );
    let Some(lib) = library() else { return };
    let found = model(BackendKind::Auto, Some(lib)).expect("Auto with a library");
    assert_eq!(found.backend_name(), "onnxruntime");
    let note = found.backend_note().unwrap_or_default();
    assert!(note.contains("TensorRT not used"), "{note}");
}

#[test]
fn encoders_on_several_threads_share_one_model() {
    let Some(lib) = library() else { return };
    let ort = model(BackendKind::OnnxRuntime, Some(lib)).expect("ONNX Runtime backend");
    let (w, h) = (960u32, 540u32);
    let pixels = road(w, h);
    let frame = Frame::packed(w, h, PixelFormat::Rgb8, &pixels).expect("frame");
    let options = EncodeOptions {
        budget: Some(512),
        steps: 2,
    };
    let expected = Encoder::new(&ort, options)
        .expect("encoder")
        .encode(&frame)
        .expect("encode")
        .features()
        .to_vec();
    // Three encoders at once on a pool of two: graph runs and resampling of different encoders
    // interleave on the same worker threads.
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                let mut enc = Encoder::new(&ort, options).expect("encoder");
                for _ in 0..4 {
                    let out = enc.encode(&frame).expect("concurrent encode");
                    let err = relative_error(&expected, out.features());
                    assert!(err < 1e-6, "a concurrent encode differs by {err}");
                }
            });
        }
    });
}
