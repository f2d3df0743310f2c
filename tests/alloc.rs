//! Steady-state encoding allocates nothing in ps3rt's own code: a counting global allocator counts
//! the allocations made on any thread outside backend graph runs (tract allocates its
//! intermediates on every run by design; that count is reported, not asserted).
//!
//! The library declares mimalloc as the global allocator under its default `mimalloc` feature, so this
//! test (which installs its own) is built without it:
//! `cargo test --test alloc --no-default-features --features embedded-model,onnxruntime`
//! (scripts/test.sh runs it, with `PS3RT_TEST_ONNXRUNTIME` naming an ONNX Runtime library so the
//! ONNX Runtime backend is checked too).
#![cfg(not(feature = "mimalloc"))]

#[path = "common/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::steady_state_counts;
use ps3rt::{BackendKind, BackendOptions, Model, Preprocess};

#[test]
fn steady_state_encoding_allocates_nothing_outside_the_backend() {
    let model = Model::embedded_with(&BackendOptions {
        kind: BackendKind::Tract,
        ..BackendOptions::default()
    })
    .unwrap();
    for (what, ours, backend) in steady_state_counts(&model, Preprocess::Cpu) {
        assert_eq!(
            ours, 0,
            "{what}: ps3rt allocated {ours} times in steady-state frames"
        );
        assert!(
            backend > 0,
            "the counter must see the backend's allocations (else it counts nothing)"
        );
    }
}

/// With ONNX Runtime the whole Rust side allocates nothing per frame, inside backend calls too:
/// inputs and outputs are tensors made once per session (ONNX Runtime's own allocations inside a
/// run go through its C++ allocator, which this counter does not see).
#[cfg(feature = "onnxruntime")]
#[test]
fn steady_state_encoding_with_onnx_runtime_allocates_nothing_in_rust() {
    let Some(lib) = std::env::var_os("PS3RT_TEST_ONNXRUNTIME").filter(|v| !v.is_empty()) else {
        eprintln!(
            "skipped: set PS3RT_TEST_ONNXRUNTIME to an ONNX Runtime library (scripts/test.sh does)"
        );
        return;
    };
    let model = Model::embedded_with(&BackendOptions {
        kind: BackendKind::OnnxRuntime,
        onnxruntime_library: Some(lib.into()),
        ..BackendOptions::default()
    })
    .unwrap();
    assert_eq!(model.backend_name(), "onnxruntime");
    for (what, ours, backend) in steady_state_counts(&model, Preprocess::Cpu) {
        assert_eq!(
            (ours, backend),
            (0, 0),
            "{what}: the pipeline or the ONNX Runtime glue allocated in steady-state frames"
        );
    }
}
