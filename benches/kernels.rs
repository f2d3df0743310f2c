//! Micro-benchmarks of the hot kernels other than pixel-format conversion (benches/formats.rs):
//!
//! - `resize/378` and `resize/1512`: PS3's composed resize (PIL bicubic squash to 3780, then torch
//!   bicubic) of a 4K RGB8 frame straight to the low-res and the selection-branch planes, as the
//!   encoder's preprocessing computes them (`ps3rt::image::scale_plane`; the benchmark's output
//!   buffer is allocated per call, the encoder's is reused);
//! - `gather/K`: cutting the K selected 14x14 patches out of the frame at their scales (the
//!   encoder's `gather` stage, read from its timings, so only that stage is measured);
//! - `topk/K`: per-scale top-k over the 27x27 probability map with the tie rule, for one step;
//! - `regions/K`: grouping the selected patches into regions (frame boxes, scores).
//!
//! Run:
//!
//!     cargo bench --bench kernels                 # all
//!     cargo bench --bench kernels -- topk         # one group

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use ps3rt::package::manifest::Normalization;
use ps3rt::select::{RegionFinder, Selector};
use ps3rt::{EncodeOptions, Encoder, Frame, Geometry, Model, PixelFormat};

const W: u32 = 3840;
const H: u32 = 2160;
const BUDGETS: [usize; 3] = [256, 1024, 2560];

/// A probability map with PS3's structure: one value per low-res cell, a few cells tied.
fn prob_map() -> Vec<f32> {
    (0..729u32)
        .map(|i| {
            let h = i.wrapping_mul(2_654_435_761) >> 8;
            (h % 64) as f32 / 64.0
        })
        .collect()
}

fn geometry() -> Geometry {
    Geometry::new(14, vec![378, 756, 1512, 3780], 1512, 54).expect("PS3-4K geometry")
}

fn bench(c: &mut Criterion) {
    let scene = ps3rt::synthetic::road_scene(W, H, 1).image.into_raw();
    let frame = Frame::new(W, H, PixelFormat::Rgb8, 3 * W as usize, &scene).expect("frame");
    let norm = Normalization {
        mean: [0.5; 3],
        std: [0.5; 3],
    };

    let mut group = c.benchmark_group("resize");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for size in [378usize, 1512] {
        group.bench_function(format!("{size}"), |b| {
            b.iter(|| {
                ps3rt::image::scale_plane(black_box(&frame), 3780, size, &norm).expect("plane")
            })
        });
    }
    group.finish();

    let model = Model::embedded().expect("the embedded model");
    let mut group = c.benchmark_group("gather");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for k in BUDGETS {
        let mut encoder = Encoder::new(
            &model,
            EncodeOptions {
                budget: Some(k),
                steps: 1,
            },
        )
        .expect("encoder");
        group.bench_function(format!("{k}"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    encoder.encode(&frame).expect("encode");
                    total += Duration::from_secs_f64(encoder.output().timings().gather_ms / 1e3);
                }
                total
            })
        });
    }
    group.finish();

    let g = geometry();
    let prob = prob_map();
    let mut selector = Selector::default();
    let mut finder = RegionFinder::default();
    let mut tokens = Vec::with_capacity(4096);
    let mut regions = Vec::with_capacity(256);
    let mut group = c.benchmark_group("topk");
    for k in BUDGETS {
        let split = g.budget_split(k);
        group.bench_function(format!("{k}"), |b| {
            b.iter(|| {
                selector.reset(&g);
                tokens.clear();
                selector.select_step(&g, black_box(&prob), &split, &mut tokens);
                tokens.len()
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("regions");
    for k in BUDGETS {
        selector.reset(&g);
        tokens.clear();
        selector.select_step(&g, &prob, &g.budget_split(k), &mut tokens);
        group.bench_function(format!("{k}"), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    finder.find(&g, selector.taken(), black_box(&prob), W, H, &mut regions);
                }
                start.elapsed()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
