//! A CPU backend limited to one thread encodes a frame on the calling thread alone: no worker pool,
//! and the resampling of the planes and patches does not fall back to rayon's global pool (which
//! starts one thread per core). Its own test binary, so no other test's threads are counted.

#![cfg(target_os = "linux")]

use ps3rt::{BackendKind, BackendOptions, EncodeOptions, Encoder, Frame, Model, PixelFormat};

/// Threads of this process.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .count()
}

#[test]
fn one_cpu_thread_encodes_on_the_calling_thread_alone() {
    let options = BackendOptions {
        kind: BackendKind::Tract,
        threads: 1,
        ..BackendOptions::default()
    };
    let model = Model::embedded_with(&options).expect("embedded model");
    let mut encoder = Encoder::new(&model, EncodeOptions::default()).expect("encoder");
    // Large enough for the planes to be split into bands and the patches into groups when more
    // than one thread is allowed.
    let (w, h) = (1280u32, 720u32);
    let pixels: Vec<u8> = (0..(w * h * 3) as usize)
        .map(|i| (i * 31 % 251) as u8)
        .collect();
    let frame = Frame::packed(w, h, PixelFormat::Rgb8, &pixels).expect("frame");
    let before = threads();
    for _ in 0..2 {
        encoder.encode(&frame).expect("encode");
    }
    assert_eq!(
        threads(),
        before,
        "encoding with one CPU thread started threads"
    );
}
