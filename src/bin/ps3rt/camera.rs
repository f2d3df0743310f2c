//! `ps3rt camera`: encode live frames at constant latency, from a V4L2 camera, a video file, a
//! folder of images or the synthetic road scene.
//!
//! Capture runs on its own thread into a latest-frame-wins slot (`ps3rt::capture::Live`): when the
//! encoder is ready it takes the newest frame, and frames that went stale meanwhile are dropped and
//! counted, so the time from capture to features stays one encode long. One line per frame, a
//! summary after `--frames N`, at the end of a file, or on Ctrl-C.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use ps3rt::capture::{
    CaptureError, FrameSource, ImageSource, Live, LiveOptions, RawVideoSource, SourceFormat,
    SyntheticSource, Y4mSource,
};
use ps3rt::{EncodeOptions, Encoder, Error, MjpegDecoder, Output};
use serde_json::json;

use crate::inputs::{self, LoadedInput, VideoArgs};
use crate::{EXIT_USAGE, Failure, overlay, run, ui};

/// What `ps3rt camera` prints per frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CameraOutput {
    /// One line per frame and a summary table.
    Text,
    /// One JSON object per frame (JSON Lines), then a summary object.
    Json,
}

/// Arguments of `ps3rt camera`.
#[derive(Args, Debug)]
pub struct CameraArgs {
    /// V4L2 capture device (the default source when neither --input nor --synthetic is given).
    #[arg(long, value_name = "DEV", conflicts_with_all = ["input", "synthetic"])]
    pub device: Option<PathBuf>,
    /// Play a file as a camera instead: a .y4m video, a raw video (with --raw-format and
    /// --raw-size), an image, or a folder of images; paced at --fps (the y4m's rate by default).
    #[arg(long, value_name = "FILE|DIR", conflicts_with = "synthetic")]
    pub input: Option<PathBuf>,
    /// Use the synthetic road scene (scrolling) as the camera, at this size.
    #[arg(long, value_name = "WxH", num_args = 0..=1, default_missing_value = "1920x1080")]
    pub synthetic: Option<String>,
    /// Pixel format to ask the camera for (mjpeg, yuyv, uyvy, nv12, nv21, i420, rgb8, bgr8, gray8);
    /// default: the best mode the camera offers. With --synthetic: the format frames are made in
    /// (default yuyv).
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// Frame size to ask for, e.g. 1920x1080 (default: the largest at the rate).
    #[arg(long, value_name = "WxH")]
    pub size: Option<String>,
    /// Frame rate to ask for; files and the synthetic scene are released at this rate (0: as fast
    /// as they can be read).
    #[arg(long, value_name = "FPS")]
    pub fps: Option<u32>,
    /// High-res tokens per step (default: the package's budget).
    #[arg(long, value_name = "K")]
    pub budget: Option<usize>,
    /// Look-close steps per frame.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub steps: usize,
    /// Stop after encoding N frames (default: until the source ends or Ctrl-C).
    #[arg(long, value_name = "N")]
    pub frames: Option<u64>,
    /// Write an overlay of every M-th encoded frame into DIR (frame-000000.png, ...).
    #[arg(long, num_args = 2, value_names = ["M", "DIR"])]
    pub overlay_every: Option<Vec<String>>,
    /// Model package directory (default: the embedded tiny package).
    #[arg(long, value_name = "PKG")]
    pub model: Option<PathBuf>,
    /// Backend: auto, tract, tensorrt or onnxruntime.
    #[arg(long, default_value = "auto", value_name = "NAME")]
    pub backend: String,
    /// CPU threads (0 = all cores).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub threads: usize,
    #[command(flatten)]
    pub preprocess: run::PreprocessArg,
    /// What to print on stdout.
    #[arg(long, value_enum, default_value_t = CameraOutput::Text, value_name = "FORMAT")]
    pub output: CameraOutput,
    /// Regions listed per frame.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub top: usize,
    /// Seconds to wait for a frame before reporting a stall.
    #[arg(long, default_value_t = 5.0, value_name = "S")]
    pub timeout: f64,
    /// Do not reopen the camera after it is unplugged or stalls; stop with an error instead.
    #[arg(long)]
    pub no_reconnect: bool,
    #[command(flatten)]
    pub video: VideoArgs,
}

fn usage(message: String) -> Failure {
    Failure::new(EXIT_USAGE, message)
}

/// A capture failure is a failure of the input (exit code 4).
fn cap(e: CaptureError) -> Failure {
    Failure::from(Error::from(e))
}

/// Open the source the arguments name.
fn open_source(args: &CameraArgs) -> Result<Box<dyn FrameSource>, Failure> {
    let format = args
        .format
        .as_deref()
        .map(|f| {
            SourceFormat::from_name(f).ok_or_else(|| {
                usage(format!(
                    "--format {f:?}: expected mjpeg, yuyv, uyvy, nv12, nv21, i420, rgb8, bgr8, rgba8, bgra8 or gray8"
                ))
            })
        })
        .transpose()?;
    let size = args
        .size
        .as_deref()
        .map(|s| {
            inputs::parse_size(s).ok_or_else(|| {
                usage(format!(
                    "--size {s:?}: expected WIDTHxHEIGHT, e.g. 1920x1080"
                ))
            })
        })
        .transpose()?;
    let color = args.video.color()?;
    let pace = |default: Option<f64>| match args.fps {
        Some(0) => None,
        Some(f) => Some(f64::from(f)),
        None => default,
    };
    if let Some(spec) = &args.synthetic {
        let (w, h) = inputs::parse_size(spec)
            .ok_or_else(|| usage(format!("--synthetic {spec:?}: expected WIDTHxHEIGHT")))?;
        let format = format.unwrap_or(SourceFormat::Raw(ps3rt::PixelFormat::Yuyv));
        let source = SyntheticSource::with_color(w, h, format, color.unwrap_or_default())?
            .paced(pace(Some(30.0)));
        return Ok(Box::new(source));
    }
    if let Some(path) = &args.input {
        if let Some((f, w, h)) = args.video.raw()? {
            let s = RawVideoSource::open(path, w, h, f)
                .map_err(cap)?
                .paced(pace(Some(30.0)));
            return Ok(Box::new(match color {
                Some(c) => s.with_color(c),
                None => s,
            }));
        }
        if inputs::is_y4m(path) {
            let s = Y4mSource::open(path).map_err(cap)?;
            let default = s.fps().or(Some(30.0));
            let s = s.paced(pace(default));
            return Ok(Box::new(match color {
                Some(c) => s.with_color(c),
                None => s,
            }));
        }
        return Ok(Box::new(
            ImageSource::open(path)
                .map_err(cap)?
                .paced(pace(Some(30.0))),
        ));
    }
    let device = args
        .device
        .clone()
        .unwrap_or_else(|| PathBuf::from("/dev/video0"));
    open_camera(device, format, size, args, color)
}

#[cfg(all(feature = "v4l2", target_os = "linux"))]
fn open_camera(
    device: PathBuf,
    format: Option<SourceFormat>,
    size: Option<(u32, u32)>,
    args: &CameraArgs,
    color: Option<ps3rt::ColorSpec>,
) -> Result<Box<dyn FrameSource>, Failure> {
    use ps3rt::capture::{V4l2Options, V4l2Source};
    let mut options = V4l2Options::new(device);
    options.format = format;
    options.size = size;
    options.fps = args.fps.filter(|&f| f > 0);
    options.color = color;
    options.timeout = Duration::from_secs_f64(args.timeout.clamp(0.1, 3600.0));
    let source = ui::with_spinner(format!("opening {}", options.device.display()), || {
        V4l2Source::open(options)
    })
    .map_err(cap)?;
    Ok(Box::new(source))
}

#[cfg(not(all(feature = "v4l2", target_os = "linux")))]
fn open_camera(
    device: PathBuf,
    _format: Option<SourceFormat>,
    _size: Option<(u32, u32)>,
    _args: &CameraArgs,
    _color: Option<ps3rt::ColorSpec>,
) -> Result<Box<dyn FrameSource>, Failure> {
    Err(Failure::new(
        crate::EXIT_INPUT,
        format!(
            "{}: this ps3rt was built without V4L2 capture (Linux, cargo feature v4l2); use --input or --synthetic",
            device.display()
        ),
    ))
}

/// Percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((p / 100.0 * (sorted.len() - 1) as f64).round() as usize).min(sorted.len() - 1)]
}

fn top_regions(out: &Output, n: usize) -> Vec<serde_json::Value> {
    out.regions()
        .iter()
        .take(n)
        .map(|r| {
            json!({
                "scale": r.scale,
                "box": {"x": r.bbox.x, "y": r.bbox.y, "w": r.bbox.w, "h": r.bbox.h},
                "score": r.score,
                "patches": r.patches,
            })
        })
        .collect()
}

/// `ps3rt camera`.
pub fn camera(args: CameraArgs) -> Result<(), Failure> {
    if args.steps == 0 {
        return Err(usage("--steps must be at least 1".into()));
    }
    if args.video.raw_format.is_some() && args.input.is_none() {
        return Err(usage(
            "--raw-format and --raw-size describe an --input file".into(),
        ));
    }
    let overlay_every = match &args.overlay_every {
        Some(v) => {
            let m: u64 = v[0].parse().ok().filter(|&m| m > 0).ok_or_else(|| {
                usage(format!(
                    "--overlay-every {:?}: M must be a positive number",
                    v[0]
                ))
            })?;
            let dir = PathBuf::from(&v[1]);
            std::fs::create_dir_all(&dir).map_err(|e| {
                Failure::from(Error::Io {
                    path: dir.clone(),
                    source: e,
                })
            })?;
            Some((m, dir))
        }
        None => None,
    };
    // The source first, so a missing or busy camera is reported before the model loads (V4L2
    // streaming starts with the first frame read, after the model is ready).
    let preprocess = args.preprocess.preprocess;
    let source = open_source(&args)?;
    let model = run::load_model(args.model.as_ref(), &args.backend, args.threads)?;
    let mut encoder = Encoder::new(
        &model,
        EncodeOptions {
            budget: args.budget,
            steps: args.steps,
        },
    )?;
    encoder.set_preprocess(preprocess)?;
    let live_options = LiveOptions {
        reconnect: !args.no_reconnect,
        // Frames resampled on a GPU are captured into page-locked memory: one DMA each.
        pinned_device: match preprocess {
            ps3rt::Preprocess::Gpu(device) => Some(device),
            _ => None,
        },
        ..LiveOptions::default()
    };
    let mut live = Live::start(source, live_options);
    let stopper = live.stopper();
    if let Err(e) = ctrlc::set_handler(move || stopper.stop()) {
        log::warn!("cannot install the Ctrl-C handler: {e}");
    }
    if args.output == CameraOutput::Text {
        ui::out(&format!(
            "source   {}\nmodel    {} on {}, K = {} per step, {} step{}\n",
            live.describe(),
            model.manifest().name,
            model.backend_name(),
            encoder.budget(),
            encoder.steps(),
            if encoder.steps() == 1 { "" } else { "s" }
        ));
    }
    let timeout = Duration::from_secs_f64(args.timeout.clamp(0.1, 3600.0) + 1.0);
    let mut decoder = MjpegDecoder::new();
    let mut rgb = Vec::new();
    let (mut latencies, mut encodes) = (Vec::new(), Vec::new());
    let mut encoded = 0u64;
    let mut bad_frames = 0u64;
    let mut last_dropped = 0u64;
    let started = Instant::now();
    let overlay_options = overlay::OverlayOptions {
        width: overlay::DEFAULT_WIDTH,
        regions: 10,
    };
    let mut failure = None;
    while args.frames.is_none_or(|n| encoded < n) {
        let taken = match live.next(Some(timeout)) {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                failure = Some(cap(e));
                break;
            }
        };
        let frame = match taken.frame(&mut decoder) {
            Ok(f) => f,
            Err(e) => {
                // A corrupted MJPEG frame from the camera: report, count, go on.
                bad_frames += 1;
                log::warn!("frame {}: {e}", taken.sequence);
                continue;
            }
        };
        if let Err(e) = encoder.encode(&frame) {
            failure = Some(Failure::from(e));
            break;
        }
        let latency = taken.captured_at.elapsed().as_secs_f64() * 1e3;
        let out = encoder.output();
        let stats = live.stats();
        let dropped = stats.dropped - last_dropped;
        last_dropped = stats.dropped;
        latencies.push(latency);
        encodes.push(out.timings().total_ms);
        match args.output {
            CameraOutput::Json => {
                let doc = json!({
                    "frame": encoded,
                    "sequence": taken.sequence,
                    "size": [frame.width(), frame.height()],
                    "format": taken.format.name(),
                    "latency_ms": latency,
                    "encode_ms": out.timings().total_ms,
                    "dropped": dropped,
                    "dropped_total": stats.dropped,
                    "regions": top_regions(out, args.top),
                });
                ui::out(&format!("{doc}\n"));
            }
            CameraOutput::Text => {
                let regions: Vec<String> = out
                    .regions()
                    .iter()
                    .take(args.top)
                    .map(|r| {
                        format!(
                            "{} px ({:.0},{:.0} {:.0}x{:.0}) p {:.2}",
                            r.scale, r.bbox.x, r.bbox.y, r.bbox.w, r.bbox.h, r.score
                        )
                    })
                    .collect();
                ui::out(&format!(
                    "frame {encoded:>5}  seq {:>6}  latency {latency:>7.1} ms  encode {:>7.1} ms  dropped {dropped:>3} ({:>5} total)  top: {}\n",
                    taken.sequence,
                    out.timings().total_ms,
                    stats.dropped,
                    if regions.is_empty() {
                        "-".into()
                    } else {
                        regions.join("; ")
                    }
                ));
            }
        }
        if let Some((m, dir)) = &overlay_every
            && encoded.is_multiple_of(*m)
        {
            frame.to_rgb8(&mut rgb);
            let input = LoadedInput::Image {
                width: frame.width(),
                height: frame.height(),
                rgb: std::mem::take(&mut rgb),
            };
            let png = dir.join(format!("frame-{encoded:06}.png"));
            let label = PathBuf::from(format!("{} #{}", live.describe(), taken.sequence));
            let written = run::write_overlay(&overlay_options, &encoder, &input, &label, &png);
            if let LoadedInput::Image { rgb: back, .. } = input {
                rgb = back;
            }
            written?;
        }
        encoded += 1;
    }
    live.stop();
    let stats = live.stats();
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    encodes.sort_by(f64::total_cmp);
    let drop_rate = if stats.captured > 0 {
        100.0 * stats.dropped as f64 / stats.captured as f64
    } else {
        0.0
    };
    match args.output {
        CameraOutput::Json => {
            let doc = json!({
                "summary": {
                    "source": live.describe(),
                    "frames_encoded": encoded,
                    "frames_captured": stats.captured,
                    "frames_dropped": stats.dropped,
                    "frames_bad": bad_frames,
                    "reconnects": stats.reconnects,
                    "seconds": elapsed,
                    "latency_ms": {"p50": percentile(&latencies, 50.0), "p95": percentile(&latencies, 95.0), "max": latencies.last().copied()},
                    "encode_ms": {"p50": percentile(&encodes, 50.0), "p95": percentile(&encodes, 95.0)},
                }
            });
            ui::out(&format!("{doc}\n"));
        }
        CameraOutput::Text => {
            ui::out(&format!(
                "summary  {encoded} frames encoded in {elapsed:.1} s ({:.2} fps); captured {}, dropped {} ({drop_rate:.0} %){}{}\n         latency capture -> features: p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms; encode p50 {:.1} ms\n",
                if elapsed > 0.0 {
                    encoded as f64 / elapsed
                } else {
                    0.0
                },
                stats.captured,
                stats.dropped,
                if bad_frames > 0 {
                    format!(", {bad_frames} undecodable")
                } else {
                    String::new()
                },
                if stats.reconnects > 0 {
                    format!(", {} reconnects", stats.reconnects)
                } else {
                    String::new()
                },
                percentile(&latencies, 50.0),
                percentile(&latencies, 95.0),
                latencies.last().copied().unwrap_or(f64::NAN),
                percentile(&encodes, 50.0),
            ));
        }
    }
    match failure {
        Some(f) => Err(f),
        None => Ok(()),
    }
}
