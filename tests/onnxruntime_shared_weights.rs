//! The ONNX Runtime backend's sessions share one pre-packed copy of equal weight matrices
//! (`PS3RT_ONNXRUNTIME_SHARE_WEIGHTS`, on by default): the features must be those of sessions that
//! each pack their own, bit for bit, and the high-res session must keep working through frames.
//!
//! One test in its own binary: it switches the environment variable between two model loads, so
//! no other test may run (and read the environment) in this process at the same time.

#![cfg(feature = "onnxruntime")]

use ps3rt::{BackendKind, BackendOptions, EncodeOptions, Encoder, Frame, Model, PixelFormat};

const SHARE_ENV: &str = "PS3RT_ONNXRUNTIME_SHARE_WEIGHTS";

fn features(model: &Model, pixels: &[u8], budget: usize) -> Vec<f32> {
    let frame = Frame::packed(1280, 720, PixelFormat::Rgb8, pixels).expect("frame");
    let options = EncodeOptions {
        budget: Some(budget),
        ..EncodeOptions::default()
    };
    let mut encoder = Encoder::new(model, options).expect("encoder");
    let first = encoder.encode(&frame).expect("encode").features().to_vec();
    let second = encoder.encode(&frame).expect("second encode");
    assert_eq!(second.features(), &first[..], "the second frame differs");
    first
}

#[test]
fn shared_prepacked_weights_give_the_features_of_unshared_ones() {
    let Some(lib) = std::env::var_os("PS3RT_TEST_ONNXRUNTIME").filter(|p| !p.is_empty()) else {
        eprintln!(
            "skipped: set PS3RT_TEST_ONNXRUNTIME to an ONNX Runtime library (scripts/test.sh does)"
        );
        return;
    };
    let options = BackendOptions {
        kind: BackendKind::OnnxRuntime,
        threads: 2,
        onnxruntime_library: Some(lib.into()),
        ..BackendOptions::default()
    };
    let pixels = ps3rt::synthetic::road_scene(1280, 720, 7).image.into_raw();

    // SAFETY: this binary holds this one test, and nothing here has started a thread that reads
    // the environment yet (the models below are loaded after each change).
    unsafe { std::env::set_var(SHARE_ENV, "0") };
    let unshared =
        Model::embedded_with(&options).expect("ONNX Runtime, weights packed per session");
    // SAFETY: as above; the encoders and the first model's threads do not read the environment.
    unsafe { std::env::remove_var(SHARE_ENV) };
    let shared = Model::embedded_with(&options).expect("ONNX Runtime, shared weights");

    for budget in [256, 1024] {
        let want = features(&unshared, &pixels, budget);
        let got = features(&shared, &pixels, budget);
        assert_eq!(
            got, want,
            "K = {budget}: shared pre-packed weights changed the features"
        );
    }
}
