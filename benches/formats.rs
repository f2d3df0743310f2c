//! Fused YUV conversion vs converting the whole frame to RGB8 first, on 4K frames through the
//! encoder (embedded tiny model).
//!
//! The encoder reports how long it spent reading pixels: `preprocess` (the 378 and 1512 planes,
//! straight from the frame) and `gather` (the selected patches). The measured time of one iteration
//! is that sum (the graphs' time is the same either way and left out), plus, for the "copy" variant,
//! the full-frame conversion to RGB8 before encoding. `to_rgb8` alone is the conversion's cost;
//! `mjpeg/decode` decodes a 4K JPEG (quality 90) into `MjpegDecoder`'s reused buffer.
//!
//!     cargo bench --bench formats                 # all
//!     cargo bench --bench formats -- nv12         # one format

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use ps3rt::capture::{raw_frame_len, rgb8_to_format};
use ps3rt::{ColorSpec, EncodeOptions, Encoder, Frame, Model, PixelFormat};

const W: u32 = 3840;
const H: u32 = 2160;

fn pixel_time(encoder: &Encoder) -> Duration {
    let t = encoder.output().timings();
    Duration::from_secs_f64((t.preprocess_ms + t.gather_ms) / 1e3)
}

fn bench(c: &mut Criterion) {
    let model = Model::embedded().expect("the embedded model");
    let mut encoder = Encoder::new(
        &model,
        EncodeOptions {
            budget: None,
            steps: 1,
        },
    )
    .expect("encoder");
    let scene = ps3rt::synthetic::road_scene(W, H, 1).image.into_raw();
    let mut group = c.benchmark_group("4k");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for format in [PixelFormat::Nv12, PixelFormat::Yuyv] {
        let mut data = vec![0u8; raw_frame_len(W, H, format, 0).expect("size")];
        rgb8_to_format(&scene, W, H, format, ColorSpec::default(), 0, &mut data).expect("encode");
        let frame = Frame::packed(W, H, format, &data).expect("frame");
        group.bench_function(format!("{format}/fused"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    encoder.encode(&frame).expect("encode");
                    total += pixel_time(&encoder);
                }
                total
            })
        });
        let mut rgb = Vec::new();
        group.bench_function(format!("{format}/copy-then-encode"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let t = Instant::now();
                    frame.to_rgb8(&mut rgb);
                    total += t.elapsed();
                    let copy = Frame::packed(W, H, PixelFormat::Rgb8, &rgb).expect("frame");
                    encoder.encode(&copy).expect("encode");
                    total += pixel_time(&encoder);
                }
                total
            })
        });
        group.bench_function(format!("{format}/to_rgb8"), |b| {
            b.iter(|| frame.to_rgb8(&mut rgb))
        });
    }
    // MJPEG: decoding a 4K frame (quality 90) into the reused buffer.
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
        .encode(&scene, W, H, image::ExtendedColorType::Rgb8)
        .expect("jpeg");
    let mut decoder = ps3rt::MjpegDecoder::new();
    group.bench_function("mjpeg/decode", |b| {
        b.iter(|| decoder.decode(&jpeg).expect("decode").width())
    });
    // The RGB8 baseline: what reading an already-RGB frame costs.
    let frame = Frame::packed(W, H, PixelFormat::Rgb8, &scene).expect("frame");
    group.bench_function("rgb8/encode", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                encoder.encode(&frame).expect("encode");
                total += pixel_time(&encoder);
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
