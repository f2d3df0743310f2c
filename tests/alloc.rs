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

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use ps3rt::{BackendKind, BackendOptions, EncodeOptions, Encoder, Frame, Model, PixelFormat};

struct Counting;

static OURS: AtomicUsize = AtomicUsize::new(0);
static BACKEND: AtomicUsize = AtomicUsize::new(0);

/// Counting on: every thread's allocations count (ps3rt resamples on rayon's worker threads too).
static ACTIVE: AtomicBool = AtomicBool::new(false);

fn count() {
    if ACTIVE.load(Ordering::Relaxed) {
        if ps3rt::in_backend_call() {
            BACKEND.fetch_add(1, Ordering::Relaxed);
        } else {
            OURS.fetch_add(1, Ordering::Relaxed);
        }
    }
}

// SAFETY: forwards every call to the system allocator unchanged; the counters and the flag are
// atomics, which do not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The counters are process-wide: the tests of this binary take turns.
static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Both counters over three steady-state frames of each configuration, after two warm-up frames.
fn steady_state_counts(model: &Model) -> Vec<(String, usize, usize)> {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let mut counts = Vec::new();
    for (w, h, budget, steps) in [
        (1280u32, 720u32, 512usize, 1usize),
        (3840, 2160, 2560, 1),
        (1919, 1081, 300, 2),
    ] {
        let scene = ps3rt::synthetic::road_scene(w, h, 3);
        let frame = Frame::packed(w, h, PixelFormat::Rgb8, scene.image.as_raw()).unwrap();
        let mut enc = Encoder::new(
            model,
            EncodeOptions {
                budget: Some(budget),
                steps,
            },
        )
        .unwrap();
        for _ in 0..2 {
            enc.encode(&frame).unwrap();
        }
        OURS.store(0, Ordering::Relaxed);
        BACKEND.store(0, Ordering::Relaxed);
        ACTIVE.store(true, Ordering::SeqCst);
        let frames = 3;
        for _ in 0..frames {
            enc.encode(&frame).unwrap();
        }
        ACTIVE.store(false, Ordering::SeqCst);
        let (ours, backend) = (
            OURS.load(Ordering::Relaxed),
            BACKEND.load(Ordering::Relaxed),
        );
        println!(
            "{w}x{h} K={budget} steps={steps}: {ours} allocations by ps3rt, {backend} by the {} backend's Rust code over {frames} frames",
            model.backend_name()
        );
        counts.push((format!("{w}x{h} K={budget} steps={steps}"), ours, backend));
    }
    counts
}

#[test]
fn steady_state_encoding_allocates_nothing_outside_the_backend() {
    let model = Model::embedded_with(&BackendOptions {
        kind: BackendKind::Tract,
        ..BackendOptions::default()
    })
    .unwrap();
    for (what, ours, backend) in steady_state_counts(&model) {
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
    for (what, ours, backend) in steady_state_counts(&model) {
        assert_eq!(
            (ours, backend),
            (0, 0),
            "{what}: the pipeline or the ONNX Runtime glue allocated in steady-state frames"
        );
    }
}
