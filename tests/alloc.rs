//! Steady-state encoding allocates nothing in ps3rt's own code: a counting global allocator counts
//! the allocations made on any thread outside backend graph runs (tract allocates its
//! intermediates on every run by design; that count is reported, not asserted).
//!
//! The library declares mimalloc as the global allocator under its default `mimalloc` feature, so this
//! test (which installs its own) is built without it:
//! `cargo test --test alloc --no-default-features --features embedded-model` (scripts/test.sh runs it).
#![cfg(not(feature = "mimalloc"))]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use ps3rt::{EncodeOptions, Encoder, Frame, Model, PixelFormat};

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

#[test]
fn steady_state_encoding_allocates_nothing_outside_the_backend() {
    let model = Model::embedded().unwrap();
    for (w, h, budget, steps) in [
        (1280u32, 720u32, 512usize, 1usize),
        (3840, 2160, 2560, 1),
        (1919, 1081, 300, 2),
    ] {
        let scene = ps3rt::synthetic::road_scene(w, h, 3);
        let frame = Frame::packed(w, h, PixelFormat::Rgb8, scene.image.as_raw()).unwrap();
        let mut enc = Encoder::new(
            &model,
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
            "{w}x{h} K={budget} steps={steps}: {ours} allocations by ps3rt, {backend} by the tract backend over {frames} frames"
        );
        assert_eq!(
            ours, 0,
            "{w}x{h}: ps3rt allocated {ours} times in {frames} steady-state frames"
        );
        assert!(
            backend > 0,
            "the counter must see the backend's allocations (else it counts nothing)"
        );
    }
}
