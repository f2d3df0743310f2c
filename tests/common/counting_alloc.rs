//! A counting global allocator and the steady-state count of the no-allocation tests
//! (tests/alloc.rs, and tests/gpu_preprocess.rs for GPU preprocessing). Included with `#[path]` by
//! test binaries built without the `mimalloc` feature (the library then declares no allocator).
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use ps3rt::{EncodeOptions, Encoder, Frame, Model, PixelFormat, Preprocess};

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
pub static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Both counters over three steady-state frames of each configuration, after two warm-up frames.
pub fn steady_state_counts(model: &Model, preprocess: Preprocess) -> Vec<(String, usize, usize)> {
    steady_state_counts_in(model, preprocess, <[u8]>::to_vec)
}

/// [`steady_state_counts`] with each frame's bytes where `store` puts them (e.g. page-locked memory).
pub fn steady_state_counts_in<B: std::ops::Deref<Target = [u8]>>(
    model: &Model,
    preprocess: Preprocess,
    store: impl Fn(&[u8]) -> B,
) -> Vec<(String, usize, usize)> {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let mut counts = Vec::new();
    for (w, h, budget, steps) in [
        (1280u32, 720u32, 512usize, 1usize),
        (3840, 2160, 2560, 1),
        (1919, 1081, 300, 2),
    ] {
        let scene = ps3rt::synthetic::road_scene(w, h, 3);
        let bytes = store(scene.image.as_raw());
        let frame = Frame::packed(w, h, PixelFormat::Rgb8, &bytes).unwrap();
        let mut enc = Encoder::new(
            model,
            EncodeOptions {
                budget: Some(budget),
                steps,
            },
        )
        .unwrap();
        enc.set_preprocess(preprocess).unwrap();
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
            "{w}x{h} K={budget} steps={steps}, preprocessing on {preprocess}: {ours} allocations by ps3rt, {backend} by the {} backend's Rust code over {frames} frames",
            model.backend_name()
        );
        counts.push((format!("{w}x{h} K={budget} steps={steps}"), ours, backend));
    }
    counts
}
