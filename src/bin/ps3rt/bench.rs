//! `ps3rt bench`: raw frame in, features out, per stage and end to end, across resolutions, pixel
//! formats and budgets; a table, JSON and a PNG plot.
//!
//! Every configuration encodes the project's synthetic road scene rendered at that resolution, with
//! its own encoder reused across frames (what a camera loop does): `--warmup` frames first, then
//! `--frames` timed ones. By default the timed frames of one budget's configurations are interleaved
//! (frame 1 of every resolution and format, then frame 2, ...), so that a shared machine's slow
//! minutes fall on every configuration alike and the ratios between resolutions measure the frame
//! size, not the time of day; `--sequential` times each configuration's frames back to back.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use image::{Rgb, RgbImage};
use ps3rt::{EncodeOptions, Encoder, Frame, PixelFormat, Timings};
use serde_json::{Value, json};

use crate::overlay::{draw_text, fill_rect, text_width, write_png};
use crate::{EXIT_USAGE, Failure, procfs, report, run, timing_floor, ui};

/// Arguments of `ps3rt bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Model package directory (default: the embedded tiny package).
    #[arg(long, value_name = "PKG")]
    pub model: Option<PathBuf>,
    /// Budgets K, comma separated (default: the package's).
    #[arg(long, value_name = "K[,K...]", value_delimiter = ',')]
    pub budget: Vec<usize>,
    /// Frame sizes, comma separated.
    #[arg(
        long,
        value_name = "WxH[,...]",
        value_delimiter = ',',
        default_value = "1280x720,1920x1080,3840x2160,7680x4320"
    )]
    pub resolutions: Vec<String>,
    /// Pixel formats of the raw frames, comma separated (rgb8, bgr8, rgba8, bgra8, gray8, yuyv,
    /// uyvy, nv12, nv21, i420).
    #[arg(
        long,
        value_name = "FMT[,...]",
        value_delimiter = ',',
        default_value = "rgb8"
    )]
    pub formats: Vec<String>,
    /// Timed frames per configuration.
    #[arg(long, default_value_t = 30, value_name = "N")]
    pub frames: usize,
    /// Untimed frames per configuration first (fills caches, buffers, the sampling plan).
    #[arg(long, default_value_t = 3, value_name = "W")]
    pub warmup: usize,
    /// Look-close steps.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub steps: usize,
    /// CPU threads (0 = all cores).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub threads: usize,
    /// Backend: auto, tract, tensorrt or onnxruntime.
    #[arg(long, default_value = "auto", value_name = "NAME")]
    pub backend: String,
    #[command(flatten)]
    pub preprocess: run::PreprocessArg,
    /// Where the raw frames lie: pageable (ordinary heap memory) or pinned (page-locked memory
    /// mapped into the GPU, as a camera capturing into ps3rt's PinnedBuffer gives; with --preprocess
    /// gpu it is copied with one DMA, or read in place on a Jetson). pinned needs an NVIDIA driver.
    #[arg(long, value_enum, default_value_t = FrameMemory::Pageable, value_name = "WHERE")]
    pub frame_memory: FrameMemory,
    /// Write the results as JSON.
    #[arg(long, value_name = "OUT.json")]
    pub json: Option<PathBuf>,
    /// Draw latency against resolution and against budget as a PNG.
    #[arg(long, value_name = "OUT.png")]
    pub plot: Option<PathBuf>,
    /// Time each configuration's frames back to back instead of interleaving the configurations of
    /// a budget frame by frame.
    #[arg(long)]
    pub sequential: bool,
    /// Rounds of the timing floor, after the frames: a fixed 2.5 ms job on each of --threads
    /// threads (and on one), timed round by round, for the p99/p50 the machine itself adds to work
    /// split over the threads. Each round takes ~2.5 ms, three ways with several threads (the
    /// default: ~7.5 s); 0 skips it.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub timing_floor_rounds: usize,
}

/// Where `ps3rt bench` puts its raw frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FrameMemory {
    /// Ordinary (pageable) heap memory.
    Pageable,
    /// Page-locked memory mapped into the GPU (`ps3rt::PinnedBuffer`).
    Pinned,
}

impl FrameMemory {
    fn name(self) -> &'static str {
        match self {
            FrameMemory::Pageable => "pageable",
            FrameMemory::Pinned => "pinned",
        }
    }
}

/// A frame's bytes, where `--frame-memory` says.
enum FrameBytes {
    Heap(Vec<u8>),
    #[cfg(feature = "cuda")]
    Pinned(ps3rt::PinnedBuffer),
}

impl FrameBytes {
    fn new(pixels: Vec<u8>, memory: FrameMemory, device: i32) -> Result<FrameBytes, Failure> {
        match memory {
            FrameMemory::Pageable => Ok(FrameBytes::Heap(pixels)),
            #[cfg(feature = "cuda")]
            FrameMemory::Pinned => {
                let mut pinned = ps3rt::PinnedBuffer::new(device, pixels.len())?;
                pinned.copy_from_slice(&pixels);
                Ok(FrameBytes::Pinned(pinned))
            }
            #[cfg(not(feature = "cuda"))]
            FrameMemory::Pinned => {
                let _ = device;
                Err(Failure::new(
                    EXIT_USAGE,
                    "--frame-memory pinned: this build has no CUDA support (cargo feature cuda)",
                ))
            }
        }
    }
}

impl std::ops::Deref for FrameBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            FrameBytes::Heap(v) => v,
            #[cfg(feature = "cuda")]
            FrameBytes::Pinned(p) => p,
        }
    }
}

/// One measured configuration.
struct Measured {
    resolution: (u32, u32),
    format: PixelFormat,
    budget: usize,
    totals: Vec<f64>,
    stages: Vec<Timings>,
    /// GPU preprocessing's upload, kernels, download and gather of each frame, ms (empty on the
    /// CPU).
    gpu: Vec<[f64; 4]>,
    /// How the last frame was brought to the GPU (`PS3RT_GPU_UPLOAD`'s names).
    upload: Option<&'static str>,
    /// Where the last frame's planes came back to: "locked" (page-locked buffers, one DMA) or
    /// "pageable" (`PS3RT_GPU_DOWNLOAD`).
    download: Option<&'static str>,
    /// The process's resident set after this budget's timed frames, every encoder of the budget
    /// still alive.
    resident: Option<u64>,
}

/// A frame's GPU preprocessing parts (upload, kernels, download, gather ms), how the frame was
/// brought to the GPU and what its planes came back to ("locked" or "pageable").
type GpuParts = ([f64; 4], Option<&'static str>, &'static str);

/// The last frame's [`GpuParts`], if it ran on a GPU.
fn gpu_parts(encoder: &Encoder) -> Option<GpuParts> {
    #[cfg(feature = "cuda")]
    if let Some(t) = encoder.gpu_timings() {
        return Some((
            [t.upload_ms, t.kernels_ms, t.download_ms, t.gather_ms],
            t.upload.map(|u| u.name()),
            if t.download_locked {
                "locked"
            } else {
                "pageable"
            },
        ));
    }
    let _ = encoder;
    None
}

/// Nearest-rank percentile `p` (0 - 100) of sorted values (NaN for none).
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn parse_format(s: &str) -> Option<PixelFormat> {
    PixelFormat::from_name(s)
}

/// The RGB scene in `format`, packed as `Frame::packed` reads it (YUV in the frame's default
/// colour spec, which the encoder then converts back as it reads the rows).
fn convert(rgb: &RgbImage, format: PixelFormat) -> ps3rt::Result<Vec<u8>> {
    if format == PixelFormat::Rgb8 {
        return Ok(rgb.as_raw().clone());
    }
    let (w, h) = rgb.dimensions();
    let mut out = vec![0u8; ps3rt::capture::raw_frame_len(w, h, format, 0)?];
    ps3rt::capture::rgb8_to_format(
        rgb.as_raw(),
        w,
        h,
        format,
        ps3rt::ColorSpec::default(),
        0,
        &mut out,
    )?;
    Ok(out)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// The pipeline's stage names, in order ([`Timings::stages`]).
fn stage_names() -> [&'static str; 6] {
    Timings::default().stages().map(|(name, _)| name)
}

/// Mean milliseconds per stage (`"stages"`: `{"preprocess_ms": .., ...}`), from
/// [`stage_percentiles`]'s `mean_ms`.
fn stage_means(spread: &Value) -> Value {
    let map: serde_json::Map<String, Value> = stage_names()
        .iter()
        .map(|name| (format!("{name}_ms"), spread[*name]["mean_ms"].clone()))
        .collect();
    Value::Object(map)
}

/// Each stage's distribution over the frames (`"stage_percentiles"`:
/// `{"preprocess": {"p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms"}, ...}`): where a slow frame's
/// extra time went.
fn stage_percentiles(stages: &[Timings]) -> Value {
    let map: serde_json::Map<String, Value> = stage_names()
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let mut v: Vec<f64> = stages.iter().map(|t| t.stages()[i].1).collect();
            v.sort_by(f64::total_cmp);
            let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
            let stats = json!({
                "p50_ms": percentile(&v, 50.0),
                "p90_ms": percentile(&v, 90.0),
                "p99_ms": percentile(&v, 99.0),
                "max_ms": percentile(&v, 100.0),
                "mean_ms": mean,
            });
            (name.to_string(), stats)
        })
        .collect();
    Value::Object(map)
}

pub fn bench(args: BenchArgs) -> Result<(), Failure> {
    if args.frames == 0 || args.steps == 0 {
        return Err(Failure::new(
            EXIT_USAGE,
            "--frames and --steps must be at least 1",
        ));
    }
    let mut resolutions = Vec::new();
    for r in &args.resolutions {
        let size = r
            .split_once('x')
            .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)))
            .filter(|&(w, h)| w > 0 && h > 0 && w <= 16384 && h <= 16384)
            .ok_or_else(|| {
                Failure::new(
                    EXIT_USAGE,
                    format!("--resolutions: {r:?} is not WxH (1..16384)"),
                )
            })?;
        resolutions.push(size);
    }
    let mut formats = Vec::new();
    for f in &args.formats {
        formats.push(parse_format(f).ok_or_else(|| {
            Failure::new(EXIT_USAGE, format!("--formats: unknown pixel format {f:?}"))
        })?);
    }
    let preprocess = args.preprocess.preprocess;
    let model = run::load_model(args.model.as_ref(), &args.backend, args.threads)?;
    let rss_loaded = procfs::resident_bytes();
    let budgets = if args.budget.is_empty() {
        vec![model.default_budget()]
    } else {
        args.budget.clone()
    };
    let mut results = Vec::new();
    let configs = resolutions.len() * formats.len() * budgets.len();
    let bar = ui::bar((configs * (args.frames + args.warmup)) as u64);
    let mut scenes = Vec::new();
    for &(w, h) in &resolutions {
        let scene = ps3rt::synthetic::road_scene(w, h, 1);
        for &format in &formats {
            let device = match preprocess {
                ps3rt::Preprocess::Gpu(n) => n,
                _ => 0,
            };
            let pixels =
                FrameBytes::new(convert(&scene.image, format)?, args.frame_memory, device)?;
            scenes.push(((w, h), format, pixels));
        }
    }
    for &k in &budgets {
        let options = EncodeOptions {
            budget: Some(k),
            steps: args.steps,
        };
        // One encoder per configuration: each keeps its frame size's sampling plan and buffers.
        let mut runs = Vec::with_capacity(scenes.len());
        for ((w, h), format, pixels) in &scenes {
            let frame = Frame::packed(*w, *h, *format, pixels)?;
            let mut encoder = Encoder::new(&model, options)?;
            encoder.set_preprocess(preprocess)?;
            bar.set_message(format!("K={k} {w}x{h} {format} warm-up"));
            for _ in 0..args.warmup {
                encoder.encode(&frame)?;
                bar.inc(1);
            }
            runs.push((
                encoder,
                frame,
                Measured {
                    resolution: (*w, *h),
                    format: *format,
                    budget: k,
                    totals: Vec::with_capacity(args.frames),
                    stages: Vec::with_capacity(args.frames),
                    gpu: Vec::with_capacity(args.frames),
                    upload: None,
                    download: None,
                    resident: None,
                },
            ));
        }
        let time_one = |(encoder, frame, m): &mut (Encoder, Frame<'_>, Measured)| {
            let t = Instant::now();
            let out = encoder.encode(frame)?;
            m.totals.push(t.elapsed().as_secs_f64() * 1e3);
            m.stages.push(*out.timings());
            if let Some((parts, upload, download)) = gpu_parts(encoder) {
                m.gpu.push(parts);
                m.upload = upload;
                m.download = Some(download);
            }
            bar.inc(1);
            Ok::<(), ps3rt::Error>(())
        };
        if args.sequential {
            for run in &mut runs {
                bar.set_message(format!(
                    "K={k} {}x{} {}",
                    run.2.resolution.0, run.2.resolution.1, run.2.format
                ));
                for _ in 0..args.frames {
                    time_one(run)?;
                }
            }
        } else {
            bar.set_message(format!("K={k}, {} configurations interleaved", runs.len()));
            for _ in 0..args.frames {
                for run in &mut runs {
                    time_one(run)?;
                }
            }
        }
        // The resident set with every encoder of this budget alive and warm (what a process
        // running these configurations holds), before they are dropped.
        let resident = procfs::resident_bytes();
        results.extend(runs.into_iter().map(|(_, _, m)| Measured { resident, ..m }));
    }
    bar.finish_and_clear();
    let rss = procfs::peak_resident_bytes();
    // The memory floor under the frame-size-dependent work: PS3's squash reads every pixel, so the
    // largest frame of each format costs at least its extra bytes at this machine's read bandwidth.
    let threads = if args.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        args.threads
    };
    let mut floors = Vec::new();
    for &f in &formats {
        if let Some((_, _, pixels)) = scenes
            .iter()
            .filter(|(_, format, _)| *format == f)
            .max_by_key(|(_, _, pixels)| pixels.len())
        {
            floors.push((f, pixels.len(), read_ms(pixels, threads)));
        }
    }

    // The timing floor: the tail a fixed job split over the same threads takes on this machine
    // (and on one thread, for comparison).
    use timing_floor::Between;
    let rounds = args.timing_floor_rounds;
    let timing = timing_floor::measure(threads, rounds, Between::Spin);
    let (timing_sleep, timing_one) = if threads > 1 {
        (
            timing_floor::measure(threads, rounds, Between::Sleep),
            timing_floor::measure(1, rounds, Between::Spin),
        )
    } else {
        (None, None)
    };

    // Table.
    let mut table = String::new();
    table.push_str(&format!(
        "model {} ({}), backend {}, preprocessing on {preprocess} (frames in {} memory), {} steps, {} frames after {} warm-up, {}\n",
        model.manifest().name,
        model.origin(),
        model.backend_name(),
        args.frame_memory.name(),
        args.steps,
        args.frames,
        args.warmup,
        cpu_model()
    ));
    table.push_str("resolution  format  budget    p50 ms    p90 ms    p99 ms    max ms     fps   preproc   lowres    hrsel   gather    hrenc\n");
    let mut stage_table = String::from("\nper stage, p50 / p99 ms:\nresolution  format  budget");
    for name in stage_names() {
        stage_table.push_str(&format!("  {name:>13}"));
    }
    stage_table.push('\n');
    let mut rows = Vec::new();
    let mut gpu_table = String::new();
    for r in &results {
        let mut sorted = r.totals.clone();
        sorted.sort_by(f64::total_cmp);
        let mean = sorted.iter().sum::<f64>() / sorted.len() as f64;
        let (p50, p90, p99, max) = (
            percentile(&sorted, 50.0),
            percentile(&sorted, 90.0),
            percentile(&sorted, 99.0),
            percentile(&sorted, 100.0),
        );
        let spread = stage_percentiles(&r.stages);
        let st = stage_means(&spread);
        let g = |k: &str| st[k].as_f64().unwrap_or(f64::NAN);
        let q = |stage: &str, k: &str| spread[stage][k].as_f64().unwrap_or(f64::NAN);
        stage_table.push_str(&format!(
            "{:>10}  {:>6}  {:>6}",
            format!("{}x{}", r.resolution.0, r.resolution.1),
            r.format.name(),
            r.budget
        ));
        for name in stage_names() {
            let cell = format!("{:.1} / {:.1}", q(name, "p50_ms"), q(name, "p99_ms"));
            stage_table.push_str(&format!("  {cell:>13}"));
        }
        stage_table.push('\n');
        table.push_str(&format!(
            "{:>10}  {:>6}  {:>6}  {:>8.1}  {:>8.1}  {:>8.1}  {:>8.1}  {:>6.2}  {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8.1}\n",
            format!("{}x{}", r.resolution.0, r.resolution.1),
            r.format.name(),
            r.budget,
            p50,
            p90,
            p99,
            max,
            1e3 / mean,
            g("preprocess_ms"),
            g("lowres_ms"),
            g("hrsel_ms"),
            g("gather_ms"),
            g("hrenc_ms")
        ));
        rows.push(json!({
            "resolution": format!("{}x{}", r.resolution.0, r.resolution.1),
            "format": r.format.name(),
            "budget": r.budget,
            "p50_ms": p50, "p90_ms": p90, "p99_ms": p99, "max_ms": max, "mean_ms": mean,
            "fps": 1e3 / mean,
            "frames": r.totals.len(),
            "stages": st,
            "stage_percentiles": spread,
            "preprocess": preprocess.to_string(),
            "frame_memory": args.frame_memory.name(),
            "rss_bytes": r.resident,
        }));
        if !r.gpu.is_empty() {
            let part = |i: usize| {
                let mut v: Vec<f64> = r.gpu.iter().map(|p| p[i]).collect();
                v.sort_by(f64::total_cmp);
                (percentile(&v, 50.0), percentile(&v, 99.0))
            };
            let (up, kern, down, gather) = (part(0), part(1), part(2), part(3));
            gpu_table.push_str(&format!(
                "{:>10}  {:>6}  {:>6}  {:>8.2} / {:<6.2}  {:>8.2} / {:<6.2}  {:>8.2} / {:<6.2}  {:>7.2} / {:<6.2}  {:<12}  {}\n",
                format!("{}x{}", r.resolution.0, r.resolution.1),
                r.format.name(),
                r.budget,
                up.0,
                up.1,
                kern.0,
                kern.1,
                down.0,
                down.1,
                gather.0,
                gather.1,
                r.upload.unwrap_or("-"),
                r.download.unwrap_or("-")
            ));
            if let Some(row) = rows.last_mut() {
                row["gpu_preprocess"] = json!({
                    "upload_p50_ms": up.0, "upload_p99_ms": up.1,
                    "kernels_p50_ms": kern.0, "kernels_p99_ms": kern.1,
                    "download_p50_ms": down.0, "download_p99_ms": down.1,
                    "gather_p50_ms": gather.0, "gather_p99_ms": gather.1,
                    "upload": r.upload,
                    "download": r.download,
                });
            }
        }
    }
    table.push_str(&stage_table);
    if !gpu_table.is_empty() {
        table.push_str(&format!(
            "\nGPU preprocessing ({preprocess}), p50 / p99 ms:\nresolution  format  budget     upload frame     planes kernels    download planes   patch gather  frame upload  planes into\n{gpu_table}"
        ));
    }
    // Constant latency: the largest frame against the smallest, per budget and format.
    let mut checks = Vec::new();
    for &k in &budgets {
        for &f in &formats {
            let sel: Vec<&Value> = rows
                .iter()
                .filter(|r| r["budget"] == k && r["format"] == f.name())
                .collect();
            let px = |r: &Value| {
                let s = r["resolution"].as_str().unwrap_or("0x0");
                s.split_once('x')
                    .map(|(a, b)| a.parse::<u64>().unwrap_or(0) * b.parse::<u64>().unwrap_or(0))
                    .unwrap_or(0)
            };
            if let (Some(lo), Some(hi)) = (
                sel.iter().min_by_key(|r| px(r)),
                sel.iter().max_by_key(|r| px(r)),
            ) {
                let ratio = hi["p50_ms"].as_f64().unwrap_or(f64::NAN)
                    / lo["p50_ms"].as_f64().unwrap_or(f64::NAN);
                let tail_of = |r: &Value| {
                    r["p99_ms"].as_f64().unwrap_or(0.0) / r["p50_ms"].as_f64().unwrap_or(1.0)
                };
                let worst = sel
                    .iter()
                    .max_by(|a, b| tail_of(a).total_cmp(&tail_of(b)))
                    .unwrap_or(hi);
                let tail = tail_of(worst);
                // Where the worst configuration's slow frames spent their extra time: the stage
                // whose p99 stands furthest above its p50.
                let (wide_stage, wide_ms) = stage_names()
                    .into_iter()
                    .map(|name| {
                        let st = &worst["stage_percentiles"][name];
                        let spread = st["p99_ms"].as_f64().unwrap_or(0.0)
                            - st["p50_ms"].as_f64().unwrap_or(0.0);
                        (name, spread)
                    })
                    .max_by(|a, b| a.1.total_cmp(&b.1))
                    .unwrap_or(("none", 0.0));
                // The stages whose work grows with the frame (the graphs' do not).
                let framed = |r: &Value| {
                    r["stages"]["preprocess_ms"].as_f64().unwrap_or(f64::NAN)
                        + r["stages"]["gather_ms"].as_f64().unwrap_or(f64::NAN)
                };
                table.push_str(&format!(
                    "constant latency, K={k} {}: p50 {} / p50 {} = {ratio:.3} (target <= 1.15); worst p99/p50 = {tail:.3} at {} (target <= 1.25; widest stage: {wide_stage}, p99 {wide_ms:.1} ms over p50); preprocess + gather {:.1} -> {:.1} ms\n",
                    f.name(),
                    hi["resolution"].as_str().unwrap_or("?"),
                    lo["resolution"].as_str().unwrap_or("?"),
                    worst["resolution"].as_str().unwrap_or("?"),
                    framed(lo),
                    framed(hi)
                ));
                // What the 1.15 target leaves for everything the larger frame adds, against the
                // time its extra bytes take to read at the bandwidth measured on the largest frame.
                let bytes = |r: &Value| {
                    let (w, h) = r["resolution"]
                        .as_str()
                        .and_then(|s| s.split_once('x'))
                        .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
                        .unwrap_or((0, 0));
                    ps3rt::capture::raw_frame_len(w, h, f, 0).unwrap_or(0)
                };
                let floor = floors
                    .iter()
                    .find(|(ff, _, _)| *ff == f)
                    .map(|&(_, n, ms)| {
                        let extra = bytes(hi).saturating_sub(bytes(lo));
                        (n, ms, ms * extra as f64 / n.max(1) as f64)
                    });
                let allowance = 0.15 * lo["p50_ms"].as_f64().unwrap_or(f64::NAN);
                if let Some((n, ms, extra_ms)) = floor {
                    table.push_str(&format!(
                        "  memory floor: reading a {} {} frame ({:.1} MB) takes {ms:.2} ms on {threads} threads ({:.1} GB/s), so {} adds >= {extra_ms:.2} ms over {}; the target leaves {allowance:.2} ms{}\n",
                        hi["resolution"].as_str().unwrap_or("?"),
                        f.name(),
                        n as f64 / 1e6,
                        n as f64 / ms / 1e6,
                        hi["resolution"].as_str().unwrap_or("?"),
                        lo["resolution"].as_str().unwrap_or("?"),
                        if extra_ms > allowance {
                            " (below the floor: no exact preprocessing meets it on this machine)"
                        } else {
                            ""
                        }
                    ));
                }
                checks.push(json!({
                    "budget": k,
                    "format": f.name(),
                    "largest_over_smallest_p50": ratio,
                    "worst_p99_over_p50": tail,
                    "worst_tail": {
                        "resolution": worst["resolution"],
                        "widest_stage": wide_stage,
                        "stage_p99_minus_p50_ms": wide_ms,
                    },
                    "preprocess_and_gather_ms": {"smallest": framed(lo), "largest": framed(hi)},
                    "allowance_ms": allowance,
                    "memory_floor": floor.map(|(n, ms, extra_ms)| json!({
                        "largest_frame_bytes": n,
                        "read_ms": ms,
                        "threads": threads,
                        "extra_read_ms": extra_ms,
                        "target_reachable": extra_ms <= allowance,
                    })),
                }));
            }
        }
    }
    if let Some(t) = timing {
        table.push_str(&format!(
            "timing floor: a fixed {:.1} ms job on each of {} thread{}, {} rounds (nothing of ps3rt in it): p99/p50 {:.3} with the threads spinning between rounds{}{}\n",
            timing_floor::STEP_MS,
            t.threads,
            if t.threads == 1 { "" } else { "s" },
            t.rounds,
            t.tail(),
            timing_sleep.map_or(String::new(), |s| format!(
                ", {:.3} with them sleeping between rounds as a thread pool's do (p99 {:.2} against p50 {:.2} ms)",
                s.tail(),
                s.p99_ms,
                s.p50_ms
            )),
            timing_one.map_or(String::new(), |o| format!("; {:.3} on 1 thread", o.tail())),
        ));
    }
    if let Some(b) = rss {
        table.push_str(&format!(
            "peak RSS of this process: {:.1} MB\n",
            b as f64 / 1e6
        ));
    }
    let mb = |b: Option<u64>| b.map_or("-".to_string(), |b| format!("{:.1} MB", b as f64 / 1e6));
    let mut resident = format!("resident set: after the model load {}", mb(rss_loaded));
    for &k in &budgets {
        if let Some(r) = results.iter().find(|r| r.budget == k) {
            resident.push_str(&format!("; K={k} encoders warm {}", mb(r.resident)));
        }
    }
    table.push_str(&resident);
    table.push('\n');
    ui::out(&table);

    let doc = json!({
        "machine": {
            "cpu": cpu_model(),
            "logical_cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "arch": std::env::consts::ARCH,
            "os": std::env::consts::OS,
            "threads": args.threads,
            "backend": model.backend_name(),
            "ps3rt_version": ps3rt::VERSION,
            "model": model.manifest().name,
            "peak_rss_bytes": rss,
            "rss_after_load_bytes": rss_loaded,
            "timing_floor": timing.map(|t| {
                let spread = |s: timing_floor::Spread| json!({
                    "threads": s.threads,
                    "p50_ms": s.p50_ms,
                    "p99_ms": s.p99_ms,
                    "p99_over_p50": s.tail(),
                });
                json!({
                    "step_ms": timing_floor::STEP_MS,
                    "rounds": t.rounds,
                    "spinning": spread(t),
                    "sleeping": timing_sleep.map(spread),
                    "one_thread": timing_one.map(spread),
                })
            }),
        },
        "steps": args.steps,
        "order": if args.sequential { "sequential" } else { "interleaved" },
        "frames": args.frames,
        "warmup": args.warmup,
        "results": rows,
        "constant_latency": checks,
    });
    if let Some(path) = &args.json {
        report::write_json(path, &doc)?;
    }
    if let Some(path) = &args.plot {
        write_png(path, &plot(&doc))?;
    }
    Ok(())
}

// ------------------------------------------------------------------ plot

/// Milliseconds to read every byte of `bytes` once on `threads` threads (the fastest of seven passes
/// after one untimed pass): about the least time any code that reads the whole frame can take.
/// Frames larger than the last-level cache come from memory on every pass, as a camera's frame
/// written by DMA does. The threads spin between passes ([`timing_floor::spin_synced_rounds_ms`]),
/// and the calling thread reads the first share itself.
fn read_ms(bytes: &[u8], threads: usize) -> f64 {
    const PASSES: usize = 8;
    let threads = threads.clamp(1, 64);
    let share = bytes.len().div_ceil(threads).max(1);
    let parts: Vec<&[u8]> = bytes.chunks(share).collect();
    let times = timing_floor::spin_synced_rounds_ms(parts.len(), PASSES, |i| {
        std::hint::black_box(parts.get(i).map_or(0, |p| sum_bytes(p)));
    });
    times[1..].iter().copied().fold(f64::INFINITY, f64::min)
}

/// The bytes of `part` summed as little-endian 64-bit words (four independent sums, so the loop
/// runs at the memory's speed, not an add chain's).
fn sum_bytes(part: &[u8]) -> u64 {
    let (words, rest) = part.as_chunks::<8>();
    let (quads, tail) = words.as_chunks::<4>();
    let mut acc = [0u64; 4];
    for q in quads {
        for (a, w) in acc.iter_mut().zip(q) {
            *a = a.wrapping_add(u64::from_le_bytes(*w));
        }
    }
    let words = tail
        .iter()
        .fold(acc.iter().fold(0u64, |x, &a| x.wrapping_add(a)), |x, w| {
            x.wrapping_add(u64::from_le_bytes(*w))
        });
    rest.iter()
        .fold(words, |x, &b| x.wrapping_add(u64::from(b)))
}

/// One point: x, p50, p90, p99.
type Point = (f64, f64, f64, f64);
/// A named series of points.
type Series = (String, Vec<Point>);

const W: u32 = 1200;
const H: u32 = 520;
const BG: [u8; 3] = [255, 255, 255];
const INK: [u8; 3] = [30, 30, 30];
const GRID: [u8; 3] = [225, 225, 225];
const SERIES: [[u8; 3]; 6] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
];

/// Two panels: p50 latency (with p90-p99 whiskers) against frame pixels per budget, and against the
/// budget per resolution. Drawn with the image crate and the font8x8 glyphs the overlays use.
fn plot(doc: &Value) -> RgbImage {
    let mut img = RgbImage::from_pixel(W, H, Rgb(BG));
    let rows: Vec<&Value> = doc["results"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let title = format!(
        "ps3rt bench: {} on {} ({}), {} frames each",
        doc["machine"]["model"].as_str().unwrap_or("?"),
        doc["machine"]["backend"].as_str().unwrap_or("?"),
        doc["machine"]["cpu"].as_str().unwrap_or("?"),
        doc["frames"]
    );
    draw_text(&mut img, 16, 10, &title, 2, INK);
    let get = |r: &Value, k: &str| r[k].as_f64().unwrap_or(f64::NAN);
    let pixels = |r: &Value| {
        let s = r["resolution"].as_str().unwrap_or("0x0");
        s.split_once('x')
            .map(|(a, b)| a.parse::<f64>().unwrap_or(0.0) * b.parse::<f64>().unwrap_or(0.0) / 1e6)
            .unwrap_or(0.0)
    };
    let ymax = rows
        .iter()
        .map(|r| get(r, "p99_ms"))
        .fold(0.0f64, f64::max)
        .max(1e-3)
        * 1.1;
    // Left: latency vs megapixels, one series per (budget, format).
    let mut series: Vec<Series> = Vec::new();
    for r in &rows {
        let key = format!("K={} {}", r["budget"], r["format"].as_str().unwrap_or(""));
        let point = (
            pixels(r),
            get(r, "p50_ms"),
            get(r, "p90_ms"),
            get(r, "p99_ms"),
        );
        match series.iter_mut().find(|(k, _)| *k == key) {
            Some((_, pts)) => pts.push(point),
            None => series.push((key, vec![point])),
        }
    }
    let xmax = rows
        .iter()
        .map(|r| pixels(r))
        .fold(0.0f64, f64::max)
        .max(1e-3)
        * 1.05;
    panel(
        &mut img,
        (70, 60, 560, 430),
        "frame size (megapixels)",
        xmax,
        ymax,
        &series,
    );
    // Right: latency vs budget, one series per resolution.
    let mut by_res: Vec<Series> = Vec::new();
    for r in &rows {
        let key = format!(
            "{} {}",
            r["resolution"].as_str().unwrap_or(""),
            r["format"].as_str().unwrap_or("")
        );
        let point = (
            get(r, "budget"),
            get(r, "p50_ms"),
            get(r, "p90_ms"),
            get(r, "p99_ms"),
        );
        match by_res.iter_mut().find(|(k, _)| *k == key) {
            Some((_, pts)) => pts.push(point),
            None => by_res.push((key, vec![point])),
        }
    }
    let kmax = rows
        .iter()
        .map(|r| get(r, "budget"))
        .fold(0.0f64, f64::max)
        .max(1.0)
        * 1.05;
    panel(
        &mut img,
        (680, 60, 1170, 430),
        "budget K (tokens per step)",
        kmax,
        ymax,
        &by_res,
    );
    img
}

/// One panel: axes, grid, labels, series (p50 points joined, p90..p99 whiskers), legend below.
fn panel(
    img: &mut RgbImage,
    (x0, y0, x1, y1): (i64, i64, i64, i64),
    xlabel: &str,
    xmax: f64,
    ymax: f64,
    series: &[Series],
) {
    let sx = |x: f64| x0 + ((x / xmax) * (x1 - x0) as f64).round() as i64;
    let sy = |y: f64| y1 - ((y / ymax) * (y1 - y0) as f64).round() as i64;
    for i in 0..=5 {
        let y = ymax * i as f64 / 5.0;
        let py = sy(y);
        fill_rect(img, [x0, py, x1, py], GRID);
        let label = format!("{y:.0}");
        draw_text(img, x0 - 8 - text_width(&label, 1), py - 4, &label, 1, INK);
        let x = xmax * i as f64 / 5.0;
        let px = sx(x);
        fill_rect(img, [px, y0, px, y1], GRID);
        let label = if xmax < 100.0 {
            format!("{x:.1}")
        } else {
            format!("{x:.0}")
        };
        draw_text(img, px - text_width(&label, 1) / 2, y1 + 6, &label, 1, INK);
    }
    fill_rect(img, [x0, y0, x0 + 1, y1], INK);
    fill_rect(img, [x0, y1 - 1, x1, y1], INK);
    draw_text(
        img,
        (x0 + x1) / 2 - text_width(xlabel, 1) / 2,
        y1 + 20,
        xlabel,
        1,
        INK,
    );
    draw_text(
        img,
        x0,
        y0 - 14,
        "latency ms (p50, whisker p90..p99)",
        1,
        INK,
    );
    for (i, (name, pts)) in series.iter().enumerate() {
        let colour = SERIES[i % SERIES.len()];
        let mut pts = pts.clone();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        for w in pts.windows(2) {
            line(
                img,
                (sx(w[0].0), sy(w[0].1)),
                (sx(w[1].0), sy(w[1].1)),
                colour,
            );
        }
        for &(x, p50, p90, p99) in &pts {
            let (px, py) = (sx(x), sy(p50));
            fill_rect(img, [px - 3, py - 3, px + 3, py + 3], colour);
            fill_rect(img, [px, sy(p99), px, sy(p90)], colour);
            fill_rect(img, [px - 3, sy(p99), px + 3, sy(p99)], colour);
        }
        let ly = y1 + 38 + (i as i64 / 2) * 14;
        let lx = x0 + (i as i64 % 2) * ((x1 - x0) / 2);
        fill_rect(img, [lx, ly, lx + 10, ly + 8], colour);
        draw_text(img, lx + 16, ly, name, 1, INK);
    }
}

/// A one-pixel line (Bresenham).
fn line(img: &mut RgbImage, (mut x0, mut y0): (i64, i64), (x1, y1): (i64, i64), colour: [u8; 3]) {
    let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
    let (stx, sty) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
    let mut err = dx + dy;
    loop {
        fill_rect(img, [x0, y0, x0, y0 + 1], colour);
        if x0 == x1 && y0 == y1 {
            break;
        }
        let e2 = 2 * err;
        if e2 >= dy {
            err += dy;
            x0 += stx;
        }
        if e2 <= dx {
            err += dx;
            y0 += sty;
        }
    }
}
