//! `ps3rt soak`: encode many frames, watch resident memory and latency, give a verdict.
//!
//! T threads each own an [`Encoder`] made from one shared [`Model`] (what a multi-camera process
//! does) and encode the project's synthetic road scene (a few seeds in turn, so the selection
//! changes from frame to frame) until N frames are done. After a warm-up (buffers, plans and the
//! allocator's pools reach their steady size) the process's resident set (VmRSS from
//! `/proc/self/status`) is the baseline; it is sampled again at intervals and once more when every
//! thread has finished, with every encoder still alive. The verdict fails (exit code 1) when the
//! final resident set is more than `--max-rss-growth-mb` above the baseline, or when the median
//! latency of the last 10% of each thread's frames is more than `--max-drift` above that of the
//! first 10%.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use ps3rt::capture::rgb8_to_format;
use ps3rt::{ColorSpec, EncodeOptions, Encoder, Frame, Model, PixelFormat};
use serde_json::{Value, json};

use crate::{EXIT_USAGE, Failure, inputs, report, run, ui};

/// Exit code of a soak whose verdict is a failure (memory grew or latency drifted).
pub const EXIT_SOAK_FAILED: u8 = 1;

/// Distinct scenes the threads cycle through (seeds of the road scene).
const SCENES: u64 = 4;

/// Most frames one soak may run (8 bytes of latency are kept per frame: 800 MB at this limit).
const MAX_FRAMES: usize = 100_000_000;

/// Share of each thread's frames in the first and the last latency window.
const WINDOW: f64 = 0.10;

/// Arguments of `ps3rt soak`.
#[derive(Args, Debug)]
pub struct SoakArgs {
    /// Model package directory (default: the embedded tiny package).
    #[arg(long, value_name = "PKG")]
    pub model: Option<PathBuf>,
    /// Frames to encode after the warm-up, over all threads together.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub frames: usize,
    /// Encoder threads: T encoders made from one shared model, each on its own thread.
    #[arg(long, default_value_t = 1, value_name = "T")]
    pub threads: usize,
    /// Budget K (default: the package's).
    #[arg(long, value_name = "K")]
    pub budget: Option<usize>,
    /// Look-close steps.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub steps: usize,
    /// Frame size.
    #[arg(long, default_value = "1280x720", value_name = "WxH")]
    pub resolution: String,
    /// Pixel format of the frames: rgb8 or nv12 (BT.601 limited range).
    #[arg(long, default_value = "rgb8", value_name = "FMT")]
    pub format: String,
    #[command(flatten)]
    pub preprocess: run::PreprocessArg,
    /// Untimed frames per thread before the baseline is taken (at least one per scene).
    #[arg(long, default_value_t = 40, value_name = "W")]
    pub warmup: usize,
    /// Sample the resident set every M frames (default: N / 10).
    #[arg(long, value_name = "M")]
    pub interval: Option<usize>,
    /// Fail when the resident set grows by more than this many MB (10^6 bytes) after the warm-up
    /// (a negative limit cannot be met: it checks the failing path).
    #[arg(
        long,
        default_value_t = 1.0,
        value_name = "MB",
        allow_negative_numbers = true
    )]
    pub max_rss_growth_mb: f64,
    /// Fail when the last window's median latency exceeds the first's by more than this fraction
    /// (0.1 = 10%; -1 or less cannot be met).
    #[arg(
        long,
        default_value_t = 0.10,
        value_name = "FRACTION",
        allow_negative_numbers = true
    )]
    pub max_drift: f64,
    /// CPU threads of the backend's worker pool, shared by all encoders (0 = all cores).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub cpu_threads: usize,
    /// Backend: auto, tract, tensorrt or onnxruntime.
    #[arg(long, default_value = "auto", value_name = "NAME")]
    pub backend: String,
    /// Write the measurements and the verdict as JSON.
    #[arg(long, value_name = "OUT.json")]
    pub json: Option<PathBuf>,
}

/// Page faults of the whole process so far, `(minor, major)` (fields 10 and 12 of `/proc/self/stat`),
/// where the system has them. Minor faults in steady state mean memory being handed back to the OS
/// and faulted in again (see `ps3rt::allocator`); a real-time loop should have none.
fn page_faults() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let minor = fields.nth(7)?.parse().ok()?;
    let major = fields.nth(1)?.parse().ok()?;
    Some((minor, major))
}

/// The system's transparent huge page mode (`always`, `madvise` or `never`: the bracketed word of
/// `/sys/kernel/mm/transparent_hugepage/enabled`), where the system has it.
fn thp_mode() -> Option<String> {
    let text = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").ok()?;
    let open = text.find('[')?;
    let close = open + text[open..].find(']')?;
    Some(text[open + 1..close].to_string())
}

/// Anonymous memory of the process backed by transparent huge pages, in bytes (`AnonHugePages` of
/// `/proc/self/smaps_rollup`). Where huge pages back the heap the resident set moves in 2 MiB steps:
/// one new page touched in a fresh 2 MiB range makes the whole range resident.
fn huge_page_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/smaps_rollup").ok()?;
    let line = text.lines().find(|l| l.starts_with("AnonHugePages:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Nearest-rank percentile of unsorted values (NaN for none).
fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (p / 100.0 * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// One resident-set sample.
#[derive(Debug, Clone, Copy)]
struct Sample {
    frames: usize,
    elapsed_s: f64,
    rss: u64,
    /// `(minor, major)` page faults of the process so far.
    faults: Option<(u64, u64)>,
    /// Anonymous memory backed by transparent huge pages.
    huge: Option<u64>,
}

/// The frames of one scene seed, in the soak's pixel format.
struct Scene {
    width: u32,
    height: u32,
    format: PixelFormat,
    bytes: Vec<u8>,
}

impl Scene {
    fn render(width: u32, height: u32, format: PixelFormat, seed: u64) -> Result<Scene, Failure> {
        let rgb = ps3rt::synthetic::road_scene(width, height, seed).image;
        let bytes = match format {
            PixelFormat::Rgb8 => rgb.into_raw(),
            _ => {
                let len = ps3rt::capture::raw_frame_len(width, height, format, 0)?;
                let mut out = vec![0u8; len];
                rgb8_to_format(
                    rgb.as_raw(),
                    width,
                    height,
                    format,
                    ColorSpec::default(),
                    0,
                    &mut out,
                )?;
                out
            }
        };
        Ok(Scene {
            width,
            height,
            format,
            bytes,
        })
    }

    fn frame(&self) -> Result<Frame<'_>, Failure> {
        Ok(
            Frame::packed(self.width, self.height, self.format, &self.bytes)?
                .with_color(ColorSpec::default()),
        )
    }
}

/// What one thread measured: the latency of each frame after its warm-up, in order.
type Latencies = Vec<f64>;

/// Run `ps3rt soak`.
pub fn soak(args: SoakArgs) -> Result<(), Failure> {
    let usage = |m: String| Failure::new(EXIT_USAGE, m);
    if args.threads == 0 || args.threads > 256 {
        return Err(usage(format!(
            "--threads {}: use 1 to 256 encoder threads",
            args.threads
        )));
    }
    if args.frames > MAX_FRAMES {
        return Err(usage(format!(
            "--frames {}: at most {MAX_FRAMES} (each frame's latency is kept)",
            args.frames
        )));
    }
    if args.frames < args.threads {
        return Err(usage(format!(
            "--frames {} is fewer than one frame per thread ({} threads)",
            args.frames, args.threads
        )));
    }
    if args.steps == 0 {
        return Err(usage("--steps must be at least 1".into()));
    }
    if args.warmup < SCENES as usize {
        return Err(usage(format!(
            "--warmup {}: at least {SCENES} frames per thread (one per scene)",
            args.warmup
        )));
    }
    // Negative limits are allowed: they cannot be met, which checks the failing path.
    if !args.max_rss_growth_mb.is_finite() {
        return Err(usage(format!(
            "--max-rss-growth-mb {}: a number of MB",
            args.max_rss_growth_mb
        )));
    }
    if !args.max_drift.is_finite() {
        return Err(usage(format!(
            "--max-drift {}: a fraction (0.1 = 10%)",
            args.max_drift
        )));
    }
    let (width, height) = inputs::parse_size(&args.resolution)
        .filter(|&(w, h)| (1..=16_384).contains(&w) && (1..=16_384).contains(&h))
        .ok_or_else(|| {
            usage(format!(
                "--resolution {:?}: expected WxH, each 1..16384",
                args.resolution
            ))
        })?;
    let format = match args.format.as_str() {
        "rgb8" => PixelFormat::Rgb8,
        "nv12" => PixelFormat::Nv12,
        other => {
            return Err(usage(format!("--format {other:?}: expected rgb8 or nv12")));
        }
    };
    let interval = match args.interval {
        Some(0) => return Err(usage("--interval must be at least 1".into())),
        Some(m) => m,
        None => (args.frames / 10).max(1),
    };

    let model = run::load_model(args.model.as_ref(), &args.backend, args.cpu_threads)?;
    let options = EncodeOptions {
        budget: args.budget,
        steps: args.steps,
    };
    // Refuse a budget the model cannot take before starting any thread.
    let budget = Encoder::new(&model, options)?.budget();
    let scenes: Vec<Scene> = ui::with_spinner(
        format!("rendering {SCENES} road scenes at {width}x{height}"),
        || {
            (1..=SCENES)
                .map(|seed| Scene::render(width, height, format, seed))
                .collect::<Result<_, _>>()
        },
    )?;

    let header = format!(
        "soak     {} on {}, K = {budget}, {} step{}, {width}x{height} {format}, {} frames on {} encoder thread{} (warm-up {} frames each)\nheap     {}\n",
        model.manifest().name,
        model.backend_name(),
        args.steps,
        if args.steps == 1 { "" } else { "s" },
        args.frames,
        args.threads,
        if args.threads == 1 { "" } else { "s" },
        args.warmup,
        ps3rt::allocator::configure_heap(),
    );
    ui::out(&header);

    let measured = measure(&args, &model, options, &scenes, interval)?;
    let verdict = Verdict::judge(&args, &measured);
    ui::out(&verdict.text(&measured));
    if let Some(path) = &args.json {
        let doc = verdict.json(&args, &model, budget, (width, height), format, &measured);
        report::write_json(path, &doc)?;
    }
    if verdict.failures.is_empty() {
        Ok(())
    } else {
        Err(Failure::new(
            EXIT_SOAK_FAILED,
            format!("soak failed: {}", verdict.failures.join("; ")),
        ))
    }
}

/// Everything the run measured.
struct Measured {
    /// The baseline (after the warm-up), the interval samples, and the final sample.
    samples: Vec<Sample>,
    latencies: Vec<Latencies>,
    elapsed_s: f64,
}

/// Frames each thread encodes after its warm-up: `frames` shared out, the first threads taking the
/// remainder.
fn shares(frames: usize, threads: usize) -> Vec<usize> {
    (0..threads)
        .map(|t| frames / threads + usize::from(t < frames % threads))
        .collect()
}

fn measure(
    args: &SoakArgs,
    model: &Model,
    options: EncodeOptions,
    scenes: &[Scene],
    interval: usize,
) -> Result<Measured, Failure> {
    let threads = args.threads;
    let shares = shares(args.frames, threads);
    // The threads and the sampler meet at four points, so both fixed samples are taken while every
    // encoder is alive and idle: warm-up done, baseline taken, measurement done, final sample taken.
    let warm = Barrier::new(threads + 1);
    let go = Barrier::new(threads + 1);
    let done = Barrier::new(threads + 1);
    let release = Barrier::new(threads + 1);
    let counted = AtomicUsize::new(0);
    let failed = AtomicU64::new(0);
    let first_error: Mutex<Option<Failure>> = Mutex::new(None);
    let bar = ui::bar(args.frames as u64);
    // Made resident now (written, then cleared; the capacity stays), so recording samples adds
    // nothing to what they measure.
    let blank = Sample {
        frames: 0,
        elapsed_s: 0.0,
        rss: 0,
        faults: None,
        huge: None,
    };
    let mut samples = vec![blank; args.frames / interval + 3];
    samples.clear();
    let mut latencies = Vec::new();
    let mut elapsed_s = 0.0;

    std::thread::scope(|scope| -> Result<(), Failure> {
        let mut handles = Vec::new();
        for (t, &share) in shares.iter().enumerate() {
            let (warm, go, done, release) = (&warm, &go, &done, &release);
            let (counted, failed, first_error, bar) = (&counted, &failed, &first_error, &bar);
            handles.push(scope.spawn(move || -> Latencies {
                // Written in full now, so its pages are resident before the baseline: filling it
                // during the run would add 8 bytes a frame to the resident set (80 KB for 10,000).
                let mut lat = vec![f64::NAN; share];
                let mut measured = 0;
                // Every thread reaches every barrier, whatever happens, so none waits forever.
                let preprocess = args.preprocess.preprocess;
                let made = Encoder::new(model, options).and_then(|mut e| {
                    e.set_preprocess(preprocess)?;
                    Ok(e)
                });
                let mut encoder = match made {
                    Ok(e) => Some(e),
                    Err(e) => {
                        fail(failed, first_error, Failure::from(e));
                        None
                    }
                };
                let mut encode = |i: usize| -> Option<f64> {
                    let enc = encoder.as_mut()?;
                    if failed.load(Ordering::Relaxed) != 0 {
                        return None;
                    }
                    // Threads start at different scenes so they do not encode in lockstep.
                    let scene = &scenes[(i + t) % scenes.len()];
                    let started = Instant::now();
                    // A panic (a bug) is reported like an error, so no thread misses a barrier.
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        scene.frame().and_then(|f| Ok(enc.encode(&f).map(|_| ())?))
                    }))
                    .unwrap_or_else(|_| Err(Failure::new(1, "an encode call panicked")));
                    let ms = started.elapsed().as_secs_f64() * 1e3;
                    match result {
                        Ok(()) => Some(ms),
                        Err(e) => {
                            fail(failed, first_error, e);
                            None
                        }
                    }
                };
                for i in 0..args.warmup {
                    if encode(i).is_none() {
                        break;
                    }
                }
                warm.wait();
                go.wait();
                for (i, slot) in lat.iter_mut().enumerate() {
                    match encode(args.warmup + i) {
                        Some(ms) => *slot = ms,
                        None => break,
                    }
                    measured += 1;
                    counted.fetch_add(1, Ordering::Relaxed);
                    bar.inc(1);
                }
                // Hold the encoder until the final sample is taken.
                done.wait();
                release.wait();
                drop(encoder);
                lat.truncate(measured);
                lat
            }));
        }

        warm.wait();
        let start = Instant::now();
        let sample = |frames: usize| {
            crate::procfs::resident_bytes().map(|rss| Sample {
                frames,
                elapsed_s: start.elapsed().as_secs_f64(),
                rss,
                faults: page_faults(),
                huge: huge_page_bytes(),
            })
        };
        let mut text = String::new();
        if let Some(s) = sample(0) {
            text = format!("rss      after warm-up {:.2} MB\n", s.rss as f64 / 1e6);
            samples.push(s);
        } else {
            text.push_str("rss      not available on this system (no /proc/self/status)\n");
        }
        bar.suspend(|| ui::out(&text));
        go.wait();
        let base = samples.first().map(|s| s.rss);
        let mut next = interval;
        while next < args.frames && failed.load(Ordering::Relaxed) == 0 {
            let now = counted.load(Ordering::Relaxed);
            if now >= next {
                if let (Some(s), Some(base)) = (sample(now), base) {
                    let line = format!(
                        "rss      frame {:>7}: {:.2} MB ({:+.3} MB), {:.1} s\n",
                        s.frames,
                        s.rss as f64 / 1e6,
                        (s.rss as f64 - base as f64) / 1e6,
                        s.elapsed_s
                    );
                    bar.suspend(|| ui::out(&line));
                    samples.push(s);
                }
                next += interval;
            } else {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        done.wait();
        elapsed_s = start.elapsed().as_secs_f64();
        if let Some(s) = sample(counted.load(Ordering::Relaxed)) {
            samples.push(s);
        }
        release.wait();
        bar.finish_and_clear();
        for h in handles {
            match h.join() {
                Ok(l) => latencies.push(l),
                Err(_) => {
                    return Err(Failure::new(1, "an encoder thread panicked"));
                }
            }
        }
        Ok(())
    })?;
    if let Some(f) = first_error.into_inner().ok().flatten() {
        return Err(f);
    }
    Ok(Measured {
        samples,
        latencies,
        elapsed_s,
    })
}

/// Record a thread's failure (the first one is reported) and stop the others.
fn fail(failed: &AtomicU64, first: &Mutex<Option<Failure>>, f: Failure) {
    failed.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut slot) = first.lock()
        && slot.is_none()
    {
        *slot = Some(f);
    }
}

/// The numbers the verdict is made of, and what failed.
struct Verdict {
    first: Vec<f64>,
    last: Vec<f64>,
    all: Vec<f64>,
    first_p50: f64,
    last_p50: f64,
    drift: f64,
    growth: Option<i64>,
    peak_growth: Option<i64>,
    /// `(minor, major)` page faults between the baseline and the final sample.
    faults: Option<(u64, u64)>,
    /// Minor page faults between each pair of consecutive samples.
    fault_intervals: Vec<FaultInterval>,
    failures: Vec<String>,
}

/// Minor page faults between two resident-set samples.
#[derive(Debug, Clone, Copy, PartialEq)]
struct FaultInterval {
    /// Frames done at the earlier sample.
    from: usize,
    /// Frames done at the later sample.
    to: usize,
    /// Minor page faults in between.
    minor: u64,
}

impl FaultInterval {
    /// Minor faults per frame of the interval (an interval without frames counts as one frame).
    fn per_frame(&self) -> f64 {
        self.minor as f64 / self.to.saturating_sub(self.from).max(1) as f64
    }
}

/// The minor faults between consecutive samples that both have fault counts.
///
/// Why per interval as well as in total: a steady-state loop that hands memory back to the OS and
/// faults it in again does so in every interval, while a one-off rise of the heap's high-water mark
/// (two encoder threads' allocations interleaving in a way the warm-up did not see: +1.9 and
/// +4.2 MB in two CI runs, 471 and 472 faults with 4 KiB pages; up to +8.5 MB in a few 2 MiB huge
/// pages with a busy loop beside the soak here) lands in one or two; the median over the intervals
/// tells the first from the second.
fn fault_intervals(samples: &[Sample]) -> Vec<FaultInterval> {
    samples
        .windows(2)
        .filter_map(|w| {
            let ((a, _), (b, _)) = (w[0].faults?, w[1].faults?);
            Some(FaultInterval {
                from: w[0].frames,
                to: w[1].frames,
                minor: b.saturating_sub(a),
            })
        })
        .collect()
}

/// Median (nearest rank) of the intervals' minor faults per frame; NaN for no interval.
fn median_faults_per_frame(intervals: &[FaultInterval]) -> f64 {
    let rates: Vec<f64> = intervals.iter().map(FaultInterval::per_frame).collect();
    percentile(&rates, 50.0)
}

impl Verdict {
    fn judge(args: &SoakArgs, m: &Measured) -> Verdict {
        let (mut first, mut last, mut all) = (Vec::new(), Vec::new(), Vec::new());
        for lat in &m.latencies {
            let n = ((lat.len() as f64 * WINDOW).round() as usize).clamp(1, lat.len().max(1));
            first.extend_from_slice(&lat[..n.min(lat.len())]);
            last.extend_from_slice(&lat[lat.len().saturating_sub(n)..]);
            all.extend_from_slice(lat);
        }
        let (first_p50, last_p50) = (percentile(&first, 50.0), percentile(&last, 50.0));
        let drift = last_p50 / first_p50 - 1.0;
        let base = m.samples.first().map(|s| s.rss as i64);
        let growth = base.zip(m.samples.last()).map(|(b, s)| s.rss as i64 - b);
        let peak_growth = base.and_then(|b| m.samples.iter().map(|s| s.rss as i64 - b).max());
        let faults = m
            .samples
            .first()
            .and_then(|s| s.faults)
            .zip(m.samples.last().and_then(|s| s.faults))
            .map(|((b_min, b_maj), (e_min, e_maj))| {
                (e_min.saturating_sub(b_min), e_maj.saturating_sub(b_maj))
            });
        let fault_intervals = fault_intervals(&m.samples);
        let mut failures = Vec::new();
        let limit = (args.max_rss_growth_mb * 1e6) as i64;
        if let Some(g) = growth
            && g > limit
        {
            failures.push(format!(
                "the resident set grew by {:.3} MB after the warm-up (limit {} MB)",
                g as f64 / 1e6,
                args.max_rss_growth_mb
            ));
        }
        if drift > args.max_drift {
            failures.push(format!(
                "median latency drifted by {:+.1}% from the first to the last 10% of frames ({first_p50:.2} -> {last_p50:.2} ms; limit {:+.1}%)",
                drift * 100.0,
                args.max_drift * 100.0
            ));
        }
        Verdict {
            first,
            last,
            all,
            first_p50,
            last_p50,
            drift,
            growth,
            peak_growth,
            faults,
            fault_intervals,
            failures,
        }
    }

    fn text(&self, m: &Measured) -> String {
        let mut s = String::new();
        if let (Some(g), Some(p), Some(last)) = (self.growth, self.peak_growth, m.samples.last()) {
            s.push_str(&format!(
                "rss      final {:.2} MB: growth {:+.3} MB after the warm-up (peak {:+.3} MB)\n",
                last.rss as f64 / 1e6,
                g as f64 / 1e6,
                p as f64 / 1e6
            ));
        }
        if let (Some(mode), Some(base), Some(end)) = (
            thp_mode(),
            m.samples.first().and_then(|s| s.huge),
            m.samples.last().and_then(|s| s.huge),
        ) {
            s.push_str(&format!(
                "thp      transparent huge pages: {mode}; {:.1} MB of anonymous huge pages after the warm-up, {:.1} MB at the end\n",
                base as f64 / 1e6,
                end as f64 / 1e6
            ));
        }
        if let Some((minor, major)) = self.faults {
            s.push_str(&format!(
                "faults   {minor} minor, {major} major page faults after the warm-up ({:.3} per frame)\n",
                minor as f64 / self.all.len().max(1) as f64
            ));
            if !self.fault_intervals.is_empty() {
                let each: Vec<String> = self
                    .fault_intervals
                    .iter()
                    .map(|i| i.minor.to_string())
                    .collect();
                s.push_str(&format!(
                    "faults   minor, sample to sample: {}; median {:.3} per frame\n",
                    each.join(", "),
                    median_faults_per_frame(&self.fault_intervals)
                ));
            }
        }
        s.push_str(&format!(
            "latency  p50 first 10% {:.2} ms ({} frames), last 10% {:.2} ms ({} frames): drift {:+.1}%\n",
            self.first_p50,
            self.first.len(),
            self.last_p50,
            self.last.len(),
            self.drift * 100.0
        ));
        s.push_str(&format!(
            "latency  all {} frames: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {:.1} frames/s over {:.1} s\n",
            self.all.len(),
            percentile(&self.all, 50.0),
            percentile(&self.all, 99.0),
            self.all.iter().copied().fold(f64::NAN, f64::max),
            self.all.len() as f64 / m.elapsed_s.max(1e-9),
            m.elapsed_s
        ));
        if self.failures.is_empty() {
            s.push_str("verdict  PASS\n");
        } else {
            s.push_str(&format!("verdict  FAIL: {}\n", self.failures.join("; ")));
        }
        s
    }

    fn json(
        &self,
        args: &SoakArgs,
        model: &Model,
        budget: usize,
        (width, height): (u32, u32),
        format: PixelFormat,
        m: &Measured,
    ) -> Value {
        let window = |v: &[f64]| {
            json!({
                "frames": v.len(),
                "p50_ms": percentile(v, 50.0),
                "p99_ms": percentile(v, 99.0),
            })
        };
        json!({
            "model": model.manifest().name,
            "backend": model.backend_name(),
            "heap": ps3rt::allocator::configure_heap().to_string(),
            "budget": budget,
            "steps": args.steps,
            "resolution": format!("{width}x{height}"),
            "format": format.name(),
            "frames": self.all.len(),
            "threads": args.threads,
            "warmup_per_thread": args.warmup,
            "elapsed_s": m.elapsed_s,
            "frames_per_s": self.all.len() as f64 / m.elapsed_s.max(1e-9),
            "rss": {
                "source": "VmRSS of /proc/self/status",
                "after_warmup_bytes": m.samples.first().map(|s| s.rss),
                "final_bytes": m.samples.last().map(|s| s.rss),
                "growth_bytes": self.growth,
                "peak_growth_bytes": self.peak_growth,
                "samples": m.samples.iter().map(|s| json!({
                    "frames": s.frames,
                    "elapsed_s": s.elapsed_s,
                    "rss_bytes": s.rss,
                })).collect::<Vec<_>>(),
            },
            "transparent_huge_pages": {
                "mode": thp_mode(),
                "source": "AnonHugePages of /proc/self/smaps_rollup",
                "after_warmup_bytes": m.samples.first().and_then(|s| s.huge),
                "final_bytes": m.samples.last().and_then(|s| s.huge),
            },
            "page_faults": self.faults.map(|(minor, major)| json!({
                "source": "/proc/self/stat, between the baseline and the final sample",
                "minor": minor,
                "major": major,
                "minor_per_frame": minor as f64 / self.all.len().max(1) as f64,
                "intervals": self.fault_intervals.iter().map(|i| json!({
                    "from_frames": i.from,
                    "to_frames": i.to,
                    "minor": i.minor,
                    "minor_per_frame": i.per_frame(),
                })).collect::<Vec<_>>(),
                "median_interval_minor_per_frame":
                    (!self.fault_intervals.is_empty())
                        .then(|| median_faults_per_frame(&self.fault_intervals)),
            })),
            "latency": {
                "first_window": window(&self.first),
                "last_window": window(&self.last),
                "drift": self.drift,
                "all": window(&self.all),
            },
            "limits": {
                "max_rss_growth_mb": args.max_rss_growth_mb,
                "max_drift": args.max_drift,
            },
            "pass": self.failures.is_empty(),
            "failures": self.failures,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_shared_out_to_the_first_threads_first() {
        assert_eq!(shares(10, 3), vec![4, 3, 3]);
        assert_eq!(shares(3, 3), vec![1, 1, 1]);
        assert_eq!(shares(10_000, 1), vec![10_000]);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        assert_eq!(percentile(&[3.0, 1.0, 2.0], 50.0), 2.0);
        assert_eq!(percentile(&[5.0], 99.0), 5.0);
        assert!(percentile(&[], 50.0).is_nan());
    }

    #[test]
    fn faults_are_counted_per_interval_and_their_median_ignores_a_one_off_rise() {
        let sample = |frames: usize, minor: Option<u64>| Sample {
            frames,
            elapsed_s: 0.0,
            rss: 1,
            faults: minor.map(|m| (m, 0)),
            huge: None,
        };
        // A one-off rise of 471 faults in the second interval, none elsewhere.
        let samples = [
            sample(0, Some(1000)),
            sample(50, Some(1000)),
            sample(100, Some(1471)),
            sample(150, Some(1471)),
            sample(200, Some(1472)),
        ];
        let intervals = fault_intervals(&samples);
        assert_eq!(
            intervals.iter().map(|i| i.minor).collect::<Vec<_>>(),
            vec![0, 471, 0, 1]
        );
        assert_eq!(intervals[1].from, 50);
        assert_eq!(intervals[1].to, 100);
        assert!((intervals[1].per_frame() - 9.42).abs() < 1e-9);
        assert!(median_faults_per_frame(&intervals) < 0.05);
        // Memory handed back and faulted in again every interval: the median sees it.
        let purging: Vec<Sample> = (0..5)
            .map(|i| sample(50 * i, Some(2650 * i as u64)))
            .collect();
        assert!((median_faults_per_frame(&fault_intervals(&purging)) - 53.0).abs() < 1e-9);
        // A sample without fault counts ends no interval; no interval gives NaN.
        let gap = [sample(0, Some(5)), sample(50, None), sample(100, Some(9))];
        assert!(fault_intervals(&gap).is_empty());
        assert!(median_faults_per_frame(&[]).is_nan());
        // An interval without frames divides by one.
        let zero = FaultInterval {
            from: 7,
            to: 7,
            minor: 3,
        };
        assert_eq!(zero.per_frame(), 3.0);
    }

    #[test]
    fn page_faults_are_read_on_linux_and_count_first_touches() {
        if !cfg!(target_os = "linux") {
            return;
        }
        let (minor, _) = page_faults().expect("/proc/self/stat");
        // Touch 64 fresh pages: the count must rise. 64 MiB from the system allocator is above
        // glibc's largest mmap threshold, so the pages are new to the process whatever ran before.
        use std::alloc::{GlobalAlloc, Layout, System};
        let layout = Layout::from_size_align(64 << 20, 4096).expect("valid layout");
        // SAFETY: the layout has a non-zero size; the pointer is checked for null, written only
        // inside the allocation (64 pages of 4096 bytes < 64 MiB) and freed with the same layout.
        let after = unsafe {
            let p = System.alloc(layout);
            assert!(!p.is_null(), "64 MiB");
            for page in 0..64 {
                p.add(page * 4096).write_volatile(1);
            }
            let after = page_faults();
            System.dealloc(p, layout);
            after
        };
        let (after, _) = after.expect("/proc/self/stat");
        assert!(after > minor, "{minor} -> {after}");
    }
}
